"""R9 (review of issue 7, exit codes): `mtcctl pair` on a SIM with its PIN
disabled whose AT+CLCK (enable) answer is lost exits 1 ("refused"), not 75
as the README's exit-code table says for a PIN change whose answer from the
card was lost; the entry (and its attempt marker) is forgotten."""

from __future__ import annotations

from simfixtures import make_card, sim_modem

TRANSPORT_PIN = "1234"


def test_R9_lost_answer_to_enabling_the_pin_exits_75(gateway):
    card = make_card(pin=TRANSPORT_PIN, pin_enabled=False)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        modem.fail_after('AT+CLCK="SC",1', "drop")
        run = gateway.mtcctl("pair", stdin=TRANSPORT_PIN + "\n", timeout=60)
        print("pair:", run.returncode, run.stderr.strip(), "enabled:", card.pin_enabled,
              "entry:", gateway.keystore().get(card.iccid))
        assert run.returncode == 75, run.stderr
