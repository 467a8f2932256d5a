"""Hostile review of `mtcctl pin try`: an attempt whose answer was lost on a
modem without counters stays unsettled, and the card may have refused that
PIN.  A second `pin try` must not present the same candidate again (it
would spend a second attempt on a PIN the card may already have rejected);
only the other candidate, or a PIN a person stores again, may be presented."""

from __future__ import annotations

import json

from conftest import pin_presentations, puk_commands
from simfixtures import TEST_PIN, make_card, sim_modem

WRONG_PIN = "11112222"
NO_COUNTERS = {"has_cpinr": False, "has_csim": False}


def _try(gateway, *flags):
    return gateway.mtcctl("pin", "try", *flags, timeout=60)


def test_a_second_try_never_repeats_an_unsettled_pin(gateway):
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        modem.fail_after("AT+CPIN=", "drop")
        first = _try(gateway, "--below-guard", "--yes", "--json")
        assert first.returncode == 75 and json.loads(first.stdout)["outcome"] == "unknown", first.stdout
        assert card.pin_attempts == 2
        for _ in range(2):
            modem.power_loss()
            again = _try(gateway, "--below-guard", "--last-attempt", "--yes")
            assert again.returncode == 1, again.stdout + again.stderr
            assert f"`mtcctl pin set {card.iccid}`" in again.stderr, again.stderr
            assert WRONG_PIN not in again.stdout + again.stderr
        assert len(pin_presentations(modem.commands)) == 1 and card.pin_attempts == 2
        assert gateway.keystore().get(card.iccid).attempt_started
        # A person stores the right PIN: that lifts the marker, and it is presented.
        gateway.store_pin(str(card.iccid))
        ok = _try(gateway, "--below-guard", "--yes")
        assert ok.returncode == 0, ok.stderr
        assert card.verified and card.pin_attempts == 3
        assert puk_commands(modem.commands) == []


def test_after_an_interrupted_rotation_no_candidate_is_presented_twice(gateway):
    """Interrupted rotation without counters (the card took the new PIN),
    and the answer to the next presentation is lost too: each later try
    presents a candidate not yet presented, so at most one attempt is spent
    on the wrong one and the SIM is never brought to its last attempt."""
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
        modem.fail_after("AT+CPWD", "drop")
        assert gateway.mtcctl("pin", "rotate", timeout=60).returncode == 75
        assert card.pin != TEST_PIN
        modem.power_loss()
        before = len(pin_presentations(modem.commands))
        modem.fail_after("AT+CPIN=", "drop")
        for _ in range(3):
            run = _try(gateway, "--below-guard", "--yes")
            assert card.pin_attempts >= 2, "a candidate was presented twice"
            if run.returncode == 0:
                break
            modem.power_loss()
        assert card.verified and len(pin_presentations(modem.commands)) - before <= 2
        entry = gateway.keystore().get(card.iccid)
        assert entry.pin.reveal() == card.pin and entry.pending_pin is None and not entry.attempt_started
