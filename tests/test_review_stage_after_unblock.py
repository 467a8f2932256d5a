"""R8 (review of issue 7, guarantee 5): an unblock whose answer was lost keeps
the new PIN as a *staged* pending PIN, and `mtcctl pin stage` (an OTA agent)
is allowed to overwrite a staged PIN.  The card holds the unblock's PIN; if
the OTA change is then never delivered (README: "the current PIN keeps
working"), the only copy of the card's PIN is gone."""

from __future__ import annotations

from conftest import pin_presentations
from simfixtures import TEST_PIN, TEST_PUK, make_card, sim_modem

NEW_PIN = "47110815"
OTA_PIN = "55667788"


def test_R8_stage_after_an_interrupted_unblock_keeps_the_cards_pin(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        while not card.blocked:
            card.verify("0000")  # blocked elsewhere, not by the gateway
        modem.fail_after("AT+CPIN=", "drop")  # the card takes the PUK and the new PIN; the answer is lost
        run = gateway.mtcctl("sim", "unblock", stdin=f"{TEST_PUK}\n{NEW_PIN}\n", timeout=60)
        print("unblock:", run.returncode, run.stdout.strip(), run.stderr.strip())
        assert card.pin == NEW_PIN
        staged = gateway.mtcctl("pin", "stage", str(card.iccid), stdin=OTA_PIN + "\n")
        print("stage:", staged.returncode, staged.stdout.strip(), staged.stderr.strip())
        # The OTA change is never delivered.
        modem.power_loss()
        once = gateway.mtcd("once", "--json")
        entry = gateway.keystore().get(card.iccid)
        held = {entry.pin.reveal()} | ({entry.pending_pin.reveal()} if entry.pending_pin else set())
        print("once:", once.last_json, "attempts:", card.pin_attempts)
        assert staged.returncode != 0 or card.pin in held, "the keystore lost the card's PIN"


def test_R8b_a_second_stage_before_the_first_settled_keeps_the_cards_pin(gateway):
    """Same root: a staged PIN the card may already hold (its OTA change was
    delivered, the SIM stayed unlocked so nothing settled it) is overwritten
    by the next `pin stage`; if that second OTA change is not delivered, the
    card holds a PIN the gateway no longer has."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0  # paired, unlocked
        first = gateway.mtcctl("pin", "stage", str(card.iccid), stdin=NEW_PIN + "\n")
        assert first.returncode == 0
        assert card.change(TEST_PIN, NEW_PIN) == 0x9000  # the first OTA change is delivered
        second = gateway.mtcctl("pin", "stage", str(card.iccid), stdin=OTA_PIN + "\n")
        print("second stage:", second.returncode, second.stdout.strip(), second.stderr.strip())
        modem.power_loss()  # the second OTA change never arrives
        once = gateway.mtcd("once", "--json")
        entry = gateway.keystore().get(card.iccid)
        held = {entry.pin.reveal()} | ({entry.pending_pin.reveal()} if entry.pending_pin else set())
        print("once:", once.last_json["state"], once.last_json["reason"], "attempts:", card.pin_attempts)
        assert second.returncode != 0 or card.pin in held, "the keystore lost the card's PIN"
