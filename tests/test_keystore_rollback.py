"""An older copy of keystore.json put back (a restored backup, a copied SD
card image) must not bring back a PIN the card rejected (guarantee 1): the
real CLIs against the simulator."""

from __future__ import annotations

from conftest import network_commands, pin_presentations
from simfixtures import TEST_PIN, make_card, sim_modem

WRONG_PIN = "1111"


def test_restored_store_never_re_presents_a_rejected_pin(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        store = gateway.state_dir / "keystore.json"
        backup = store.read_bytes()  # taken while the wrong PIN still looked fine

        first = gateway.mtcd("once")
        assert first.returncode != 0
        assert len(pin_presentations(modem.commands)) == 1  # the card refused it: latched
        store.write_bytes(backup)  # someone restores the backup

        seen = len(modem.commands)
        runs = (gateway.mtcd("once"), gateway.mtcctl("pin", "list"))
        assert pin_presentations(modem.commands[seen:]) == [], "the rejected PIN was presented again"
        for run in runs:
            assert run.returncode == 65, run.stderr
            lines = run.stderr.strip().splitlines()
            assert len(lines) == 1 and "older copy put back" in lines[0], run.stderr
            assert "mtcctl pin set" in lines[0] and "Traceback" not in run.stderr
        assert network_commands(modem.commands) == []
        assert modem.radio == 4

        # What the message says: move it aside, store the PIN again once checked.
        store.rename(store.with_name("keystore.json.restored"))
        gateway.store_pin(str(card.iccid), TEST_PIN)
        assert gateway.mtcd("once").returncode == 0
        assert card.pin_attempts == 3  # the right PIN, accepted
