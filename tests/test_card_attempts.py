"""The PIN counter of a card reached in APDUs (`[uicc] backend = "csim"`)
whose PIN is verified: VERIFY without data answers 9000 and no count (TS
102 221 §11.1.9), and the counter is back at the card's own maximum, which
need not be 3.  mtcd never puts a number of its own in its place: doctor
says the count was not told, and a change whose answer was lost, with no
counter read before it, is settled without presenting a PIN the card may
have refused."""

from __future__ import annotations

import json

from simfixtures import TEST_PIN, make_card, sim_modem

OTA_PIN = "55556666"


def _csim(gateway, port) -> None:
    gateway.configure(port)
    with open(gateway.config, "a") as f:
        f.write('[uicc]\nbackend = "csim"\n')


def _spy_on_verify(card) -> list[str]:
    """The PINs VERIFY carried to the card, in order (this test's own card, in process)."""
    presented: list[str] = []
    verify = card.verify

    def spy(pin=None):
        if pin is not None:
            presented.append(str(pin))
        return verify(pin)
    card.verify = spy
    return presented


def test_doctor_on_a_verified_card_gives_no_count_the_card_did_not_give(gateway):
    card = make_card(pin_max=5)
    with sim_modem(card) as (modem, port):
        _csim(gateway, port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once", "--json").last_json["state"] == "paired"
        assert card.verified and card.pin_attempts == 5
        facts = json.loads(gateway.mtcctl("doctor", "--json").stdout)["modem"]
        human = gateway.mtcctl("doctor")
    assert facts["pin_attempts"] is None, facts  # not 3: this card starts at 5
    assert "not told" in facts["unreadable"]["pin_attempts"]
    assert facts["puk_attempts"] == 10
    assert "PIN attempts left" in human.stdout and "not told" in " ".join(human.stdout.split())


def test_a_lost_change_the_card_refused_never_gets_its_old_pin_again(gateway):
    """A card starting at 5 attempts, verified; its PIN changed over the air
    meanwhile, so our stored PIN is no longer its PIN.  The rotation's CHANGE
    carries that old PIN: the card refuses it (5 -> 4), and the answer is
    lost.  At the next pairing the counter says 4.  With a guessed 3 as the
    count before the change, 4 >= 3 read as "nothing spent" and the refused
    PIN went out again (guarantee 1); the count before is unknown, so the
    refused PIN is never presented again automatically."""
    card = make_card(pin_max=5)
    with sim_modem(card) as (modem, port):
        _csim(gateway, port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once", "--json").last_json["state"] == "paired"
        card.set_pin_over_the_air(OTA_PIN)  # the card stays verified
        presented = _spy_on_verify(card)
        modem.fail_after('AT+CSIM=42,"0024', "drop")  # the card acts on the CHANGE; its answer is lost
        rotate = gateway.mtcctl("pin", "rotate", timeout=60)
        assert rotate.returncode != 0, rotate.stdout + rotate.stderr
        assert card.pin == OTA_PIN and card.pin_attempts == 4  # the card refused the old PIN
        entry = gateway.keystore().get(card.iccid)
        assert entry.attempt_started and entry.attempt_change, entry  # the marker of the lost change
        modem.power_loss()  # the card forgets its verification and asks for its PIN
        run = gateway.mtcd("once", "--json")
    assert run.last_json["state"] != "paired", run.stdout + run.stderr
    assert TEST_PIN not in presented, "the PIN the card refused in the CHANGE was presented again"
    assert card.pin_attempts >= 3  # at most the never-presented new PIN was tried
    entry = gateway.keystore().get(card.iccid)
    assert "current" in entry.unsettled or entry.rejected  # left for a person, never retried by itself
    assert TEST_PIN not in run.stdout + run.stderr + rotate.stdout + rotate.stderr
