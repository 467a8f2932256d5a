"""Modems that lie about the card's answer to a command carrying a PIN.

Seen in the field: an `OK` to `AT+CPIN=` although the card refused the PIN,
and a plain `ERROR` (or no answer) to `AT+CPWD` although the card counted a
wrong old PIN.  Whatever the modem says, only the card's own state settles
an attempt: READY for acceptance, the counter for a rejection; with neither,
the attempt stays unsettled and no further attempt is made automatically.
Through the real commands against the simulator."""

from __future__ import annotations

import json

import pytest

from conftest import network_commands, pin_presentations, puk_commands
from simfixtures import TEST_PIN, make_card, sim_modem

WRONG_PIN = "11112222"
NO_COUNTERS = {"has_cpinr": False, "has_csim": False}


def _events(gateway) -> list[dict]:
    return gateway.history()


def test_ok_to_a_wrong_pin_without_counters_never_blocks_the_sim(gateway, boots=4):
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        modem.fail_after("AT+CPIN=", "ok", times=10)
        reasons = []
        for _ in range(boots):
            run = gateway.mtcd("once", "--json")
            assert run.returncode == 1, run.stderr
            reasons.append(run.last_json["reason"])
            assert modem.radio == 4, "radio must be off after a refusal"
            modem.power_loss()
        # One presentation in all, then the unsettled attempt blocks the rest.
        assert len(pin_presentations(modem.commands)) == 1
        assert card.pin_attempts == 2 and not card.blocked
        assert reasons[0] == "sim-error" and set(reasons[1:]) == {"retry-guard"}
        assert network_commands(modem.commands) == []
        assert puk_commands(modem.commands) == []
        assert gateway.keystore().get(card.iccid).attempt_started


def test_ok_to_a_wrong_pin_is_settled_by_the_counter_at_once(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        modem.fail_after("AT+CPIN=", "ok", times=10)
        run = gateway.mtcd("once", "--json")
        assert run.last_json["reason"] == "pin-rejected"
        assert card.pin_attempts == 2
        for _ in range(3):
            modem.power_loss()
            assert gateway.mtcd("once", "--json").last_json["reason"] == "pin-rejected"
        assert len(pin_presentations(modem.commands)) == 1 and card.pin_attempts == 2
        entry = gateway.keystore().get(card.iccid)
        assert entry.rejected and not entry.attempt_started
        assert [e for e in _events(gateway) if e["event"] == "pin-attempt-rejected"] != []


def test_ok_to_the_right_pin_is_recorded_once_the_card_is_ready(gateway):
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CPIN=", "ok")
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stderr
        assert not gateway.keystore().get(card.iccid).attempt_started


def test_lost_answer_with_the_card_unlocked_counts_as_accepted(gateway):
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CPIN=", "error")  # the card took it, the modem said ERROR
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stderr
        assert not gateway.keystore().get(card.iccid).attempt_started
        modem.power_loss()
        assert gateway.mtcd("once", "--json").last_json["state"] == "paired"


def _unlocked_with_a_wrong_stored_pin(gateway, modem, port, card):
    """The card was unlocked by someone else with its real PIN; the store
    holds a PIN the card does not have (a stale copy)."""
    gateway.configure(port)
    gateway.store_pin(str(card.iccid), WRONG_PIN)
    assert card.verify(TEST_PIN) == 0x9000


@pytest.mark.parametrize("fault", ["error", "drop"])
def test_pin_change_with_a_wrong_old_pin_and_a_lying_modem(gateway, fault):
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        _unlocked_with_a_wrong_stored_pin(gateway, modem, port, card)
        modem.fail_after("AT+CPWD", fault)
        run = gateway.mtcctl("pin", "rotate", "--json", timeout=60)
        # Not done, and said so: a temporary failure with the reason.
        assert run.returncode == 75, run.stdout + run.stderr
        assert json.loads(run.stdout)["outcome"] == "interrupted"
        assert card.pin_attempts == 2  # the wrong old PIN was counted
        # Every later boot: the unsettled attempt blocks any presentation.
        for _ in range(3):
            modem.power_loss()
            once = gateway.mtcd("once", "--json")
            assert once.last_json["reason"] == "retry-guard", once.stdout
        assert pin_presentations(modem.commands) == []
        assert card.pin_attempts == 2 and not card.blocked
        assert puk_commands(modem.commands) == []


def test_pin_change_with_a_plain_error_is_settled_by_the_counter(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        _unlocked_with_a_wrong_stored_pin(gateway, modem, port, card)
        modem.fail_after("AT+CPWD", "error")
        run = gateway.mtcctl("pin", "rotate", "--json", timeout=60)
        # The counter fell: the card refused the old PIN, nothing was changed.
        assert run.returncode == 1, run.stdout + run.stderr
        entry = gateway.keystore().get(card.iccid)
        assert entry.rejected and entry.pending_pin is None and not entry.attempt_started
        modem.power_loss()
        assert gateway.mtcd("once", "--json").last_json["reason"] == "pin-rejected"
        assert pin_presentations(modem.commands) == [] and card.pin_attempts == 2


def test_an_interrupted_rotation_exits_75_and_the_next_boot_pairs(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CPWD", "drop")  # the card changed, the answer was lost
        run = gateway.mtcctl("pin", "rotate", timeout=60)
        assert run.returncode == 75 and "lost" in run.stdout, run.stdout + run.stderr
        modem.power_loss()
        once = gateway.mtcd("once", "--json")
        assert once.last_json["state"] == "paired", once.stdout + once.stderr
        entry = gateway.keystore().get(card.iccid)
        assert entry.pin.reveal() == card.pin and entry.pending_pin is None
        events = [e["event"] for e in _events(gateway)]
        # The old PIN spent, then the new one promoted: both journaled.
        assert "pin-attempt-rejected" in events and "pin-promoted" in events


def test_a_blocked_sim_is_reported_with_its_iccid(gateway):
    card = make_card(pin_attempts=0)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcd("once", "--json")
        assert run.last_json["reason"] == "sim-blocked"
        assert run.last_json["iccid"] == str(card.iccid)
        assert puk_commands(modem.commands) == [] and pin_presentations(modem.commands) == []


def test_ok_to_a_pin_change_the_card_refused_is_caught_by_the_counter(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        _unlocked_with_a_wrong_stored_pin(gateway, modem, port, card)
        modem.fail_after("AT+CPWD", "ok")
        run = gateway.mtcctl("pin", "rotate", "--json", timeout=60)
        assert run.returncode == 1, run.stdout + run.stderr
        entry = gateway.keystore().get(card.iccid)
        # The new PIN was never promoted over the one the card still holds.
        assert entry.pin.reveal() == WRONG_PIN and entry.pending_pin is None and entry.rejected
        assert card.pin == TEST_PIN and card.pin_attempts == 2
