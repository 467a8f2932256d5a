"""R2 (review of issue 7, guarantee 5): an adoption whose PIN change was
interrupted (the card took the new PIN, its answer to AT+CPWD was lost)
leaves current = transport PIN, pending = the new PIN.  Running `mtcctl pair`
again with the transport PIN — the natural reaction to "interrupted" —
stores the transport PIN over the entry (set_pin clears the pending PIN),
so the only copy of the PIN the card holds is thrown away, and the CPWD that
follows spends an attempt on the transport PIN."""

from __future__ import annotations

from simfixtures import make_card, sim_modem

TRANSPORT_PIN = "1234"


def test_R2_adopting_again_after_an_interrupted_adoption_keeps_the_cards_pin(gateway):
    card = make_card(pin=TRANSPORT_PIN)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        modem.fail_after("AT+CPWD", "drop")  # the card takes the new PIN, the answer is lost
        first = gateway.mtcctl("pair", stdin=TRANSPORT_PIN + "\n")
        new = card.pin
        assert new != TRANSPORT_PIN, first.stderr
        entry = gateway.keystore().get(card.iccid)
        assert entry.pending_pin is not None and entry.pending_pin.reveal() == new  # still safe here
        print("first pair:", first.returncode, first.stderr.strip())
        # The SIM is still unlocked; the person runs the adoption again.
        again = gateway.mtcctl("pair", stdin=TRANSPORT_PIN + "\n")
        print("second pair:", again.returncode, again.stderr.strip())
        entry = gateway.keystore().get(card.iccid)
        held = {entry.pin.reveal()} | ({entry.pending_pin.reveal()} if entry.pending_pin else set())
        assert card.pin in held, (
            f"the keystore lost the card's PIN (card attempts left {card.pin_attempts}, "
            f"second pair exit {again.returncode}: {again.stderr.strip()})"
        )


def test_R2_service_adoption_interrupted_then_pair_again(gateway, notify_socket):
    """The same through `mtcd run`: the service adopts a transport PIN on its
    first pairing (rotate_on_adopt), the AT+CPWD answer is lost; the agent
    then asks the service to adopt the SIM again (README: exit 75 means try
    again)."""
    import time

    from simfixtures import wait_until
    from test_service import service

    card = make_card(pin=TRANSPORT_PIN)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        assert gateway.mtcctl("pin", "set", str(card.iccid), "--transport",
                              stdin=TRANSPORT_PIN + "\n").returncode == 0
        modem.fail_after("AT+CPWD", "drop")
        with service(gateway, notify_socket):
            wait_until(lambda: card.pin != TRANSPORT_PIN, 30, "the service's rotation reached the card")
            notify_socket.wait_for("STATUS", f"paired ICCID {card.iccid}, link up", timeout=30)
            again = gateway.mtcctl("pair", stdin=TRANSPORT_PIN + "\n", timeout=60)
            print("pair through the service:", again.returncode, again.stderr.strip(), again.stdout.strip())
            time.sleep(1)
        entry = gateway.keystore().get(card.iccid)
        held = {entry.pin.reveal()} | ({entry.pending_pin.reveal()} if entry.pending_pin else set())
        assert card.pin in held, f"the keystore lost the card's PIN (card attempts left {card.pin_attempts})"
