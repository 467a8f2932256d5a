"""`mtcctl pin try`: a person presents the stored PIN once, now.  Each rule
that keeps guarantees 1, 2 and 5 has a test here that fails if the rule is
dropped; through the real CLIs against the simulator, with and without the
running service."""

from __future__ import annotations

import json

import pytest

from conftest import network_commands, pin_presentations, puk_commands
from simfixtures import TEST_PIN, make_card, sim_modem, wait_until

WRONG_PIN = "11112222"
NO_COUNTERS = {"has_cpinr": False, "has_csim": False}


def _tries(gateway) -> list[dict]:
    return [e for e in gateway.history() if e["event"] == "pin-try"]


def _try(gateway, *flags, stdin=None):
    return gateway.mtcctl("pin", "try", *flags, stdin=stdin, timeout=60)


def test_accepted_unlocks_and_is_journaled(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = _try(gateway, "--json")
        assert run.returncode == 0, run.stderr
        answer = json.loads(run.stdout)
        assert answer["outcome"] == "accepted" and answer["pin"] == "current" and answer["iccid"] == str(card.iccid)
        assert card.verified and len(pin_presentations(modem.commands)) == 1
        assert TEST_PIN not in run.stdout + run.stderr
        assert [t["outcome"] for t in _tries(gateway)] == ["accepted"]
        assert network_commands(modem.commands) == [] and modem.radio == 4


def test_only_when_the_sim_asks_for_exactly_sim_pin(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert card.verify(TEST_PIN) == 0x9000  # unlocked elsewhere: READY
        run = _try(gateway, "--below-guard", "--last-attempt", "--yes")
        assert run.returncode == 1 and "unlocked already" in run.stderr, run.stderr
        assert pin_presentations(modem.commands) == []
        assert _tries(gateway)[-1]["reason"] == "not-asking-for-pin"


def test_a_puk_blocked_sim_gets_neither_pin_nor_puk(gateway):
    card = make_card(pin_attempts=0)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = _try(gateway, "--below-guard", "--last-attempt", "--yes")
        assert run.returncode == 1 and "`mtcctl sim unblock`" in run.stderr, run.stderr
        assert pin_presentations(modem.commands) == [] and puk_commands(modem.commands) == []
        assert card.puk_attempts == 10


def test_never_another_sims_pin(gateway):
    card, other = make_card(serial_number=1), make_card(serial_number=2)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(other.iccid))  # a PIN for another SIM only
        run = _try(gateway, "--below-guard", "--last-attempt", "--yes")
        assert run.returncode == 1, run.stderr
        assert f"mtcctl pin set {card.iccid}" in run.stderr
        assert pin_presentations(modem.commands) == [] and card.pin_attempts == 3


def test_below_the_guard_needs_the_flag_and_a_confirmation(gateway):
    card = make_card(pin_attempts=2)
    with sim_modem(card) as (modem, port):
        gateway.configure(port, policy="min_retries = 3")
        gateway.store_pin(str(card.iccid))
        plain = _try(gateway, "--last-attempt", "--yes")
        assert plain.returncode == 1 and "`mtcctl pin try --below-guard`" in plain.stderr, plain.stderr
        # Off a terminal the flag alone is not enough: --yes is named.
        unconfirmed = _try(gateway, "--below-guard")
        assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr, unconfirmed.stderr
        assert pin_presentations(modem.commands) == []
        assert [t["reason"] for t in _tries(gateway)] == ["retry-guard", "not-confirmed"]
        done = _try(gateway, "--below-guard", "--yes")
        assert done.returncode == 0, done.stderr
        assert len(pin_presentations(modem.commands)) == 1 and card.verified


def test_never_on_the_last_attempt_without_last_attempt(gateway):
    card = make_card(pin_attempts=1)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = _try(gateway, "--below-guard", "--yes")
        assert run.returncode == 1, run.stderr
        assert "`mtcctl pin try --below-guard --last-attempt`" in run.stderr
        assert pin_presentations(modem.commands) == []
        assert card.pin_attempts == 1 and _tries(gateway)[-1]["reason"] == "last-attempt"
        ok = _try(gateway, "--below-guard", "--last-attempt", "--yes")
        assert ok.returncode == 0, ok.stderr
        assert card.verified and card.pin_attempts == 3


def test_an_unknown_count_needs_below_guard_and_says_so(gateway):
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = _try(gateway)
        assert run.returncode == 1 and "does not report its attempts" in run.stderr, run.stderr
        assert pin_presentations(modem.commands) == []
        ok = _try(gateway, "--below-guard", "--yes")
        assert ok.returncode == 0, ok.stderr
        assert card.verified


def test_a_rejected_pin_is_recorded_and_never_presented_again(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        run = _try(gateway, "--json")
        assert run.returncode == 1, run.stderr
        answer = json.loads(run.stdout)
        assert answer["outcome"] == "rejected" and answer["attempts_left"] == 2
        assert f"`mtcctl pin set {card.iccid}`" in answer["detail"]
        assert gateway.keystore().get(card.iccid).rejected
        assert any(e["event"] == "pin-attempt-rejected" for e in gateway.history())
        # Not again, whatever the flags: the person stores a PIN first.
        again = _try(gateway, "--below-guard", "--last-attempt", "--yes")
        assert again.returncode == 1 and f"`mtcctl pin set {card.iccid}`" in again.stderr, again.stderr
        assert len(pin_presentations(modem.commands)) == 1 and card.pin_attempts == 2
        # Re-stored by the person: presented on request.
        gateway.store_pin(str(card.iccid))
        assert _try(gateway).returncode == 0
        assert card.verified
        assert [t["outcome"] for t in _tries(gateway)] == ["rejected", "refused", "accepted"]
        assert puk_commands(modem.commands) == []


def test_the_attempt_marker_is_written_before_the_pin_goes_out(gateway):
    """The card refuses, the answer is lost, and there is no counter: the
    marker stays, and the automatic path presents nothing afterwards."""
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        modem.fail_after("AT+CPIN=", "drop")
        run = _try(gateway, "--below-guard", "--yes", "--json")
        assert run.returncode == 75, run.stdout + run.stderr
        assert json.loads(run.stdout)["outcome"] == "unknown"
        entry = gateway.keystore().get(card.iccid)
        assert entry.attempt_started and entry.attempt == "current"
        modem.power_loss()
        once = gateway.mtcd("once", "--json")
        assert once.last_json["reason"] == "retry-guard"
        assert len(pin_presentations(modem.commands)) == 1 and card.pin_attempts == 2


def test_a_lost_attempt_settled_by_the_counter_is_latched_first(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        # A power cut left this: the marker written at 3 attempts, and the
        # card counted the wrong PIN before the cut.
        gateway.keystore().begin_attempt(card.iccid, attempts_before=3, which="current")
        assert card.verify(WRONG_PIN) != 0x9000 and card.pin_attempts == 2
        run = _try(gateway, "--below-guard", "--yes")
        assert run.returncode == 1 and f"`mtcctl pin set {card.iccid}`" in run.stderr, run.stderr
        assert pin_presentations(modem.commands) == [] and card.pin_attempts == 2
        entry = gateway.keystore().get(card.iccid)
        assert entry.rejected and not entry.attempt_started


def _interrupted_rotation(gateway, modem, card, reached_card: bool):
    """Paired, then a rotation whose AT+CPWD answer is lost on a modem
    without counters: the gate refuses with retry-guard from then on."""
    gateway.configure(modem.port_path)
    gateway.store_pin(str(card.iccid))
    assert gateway.mtcd("once").returncode == 0
    modem.fail_after("AT+CPWD", "drop" if reached_card else "before")
    run = gateway.mtcctl("pin", "rotate", timeout=60)
    assert run.returncode == 75, run.stdout + run.stderr
    assert (card.pin != TEST_PIN) is reached_card
    modem.power_loss()
    once = gateway.mtcd("once")
    assert once.returncode == 1 and "retry-guard" in once.stdout, once.stdout
    assert "`mtcctl pin try --below-guard`" in once.stdout


@pytest.mark.parametrize("reached_card", [True, False], ids=["card-took-new-pin", "card-kept-old-pin"])
def test_an_interrupted_rotation_without_counters_has_a_way_out(gateway, reached_card):
    """The lost change leaves the current PIN's attempt unsettled (no counter
    tells whether the card refused it as the old PIN): the pending PIN is
    presented first.  If the card refused that too, it may have spent two
    attempts (the change and the pending PIN), so the current PIN is not
    presented again until a person types it (`mtcctl pin set`)."""
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        modem.port_path = port
        _interrupted_rotation(gateway, modem, card, reached_card)
        before = len(pin_presentations(modem.commands))
        first = _try(gateway, "--below-guard", "--yes", "--json")
        answer = json.loads(first.stdout)
        assert answer["pin"] == "pending"  # never the unsettled candidate first
        assert len(pin_presentations(modem.commands)) == before + 1  # one per command
        if not reached_card:
            assert first.returncode == 1 and answer["outcome"] == "rejected"
            refused = _try(gateway, "--below-guard", "--last-attempt", "--yes", "--json")
            assert refused.returncode == 1 and json.loads(refused.stdout)["reason"] == "attempt-unsettled"
            assert f"`mtcctl pin set {card.iccid}`" in refused.stdout, refused.stdout
            assert len(pin_presentations(modem.commands)) == before + 1
            gateway.store_pin(str(card.iccid))  # the person types the PIN the card holds
            second = _try(gateway, "--below-guard", "--yes", "--json")
            assert second.returncode == 0, second.stderr
            assert json.loads(second.stdout)["pin"] == "current"
            assert len(pin_presentations(modem.commands)) == before + 2
        else:
            assert first.returncode == 0 and answer["outcome"] == "accepted", first.stderr
        entry = gateway.keystore().get(card.iccid)
        assert entry.pin.reveal() == card.pin and entry.pending_pin is None and not entry.attempt_started
        assert card.verified and card.pin_attempts == 3
        modem.power_loss()
        assert gateway.mtcd("once").returncode == 0
        assert puk_commands(modem.commands) == []


def test_through_the_running_service(gateway, notify_socket):
    from test_service import service

    card = make_card(pin_attempts=1)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("STATUS", "refused: retry-guard")
            unconfirmed = _try(gateway, "--below-guard", "--last-attempt")
            assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr, unconfirmed.stderr
            assert pin_presentations(modem.commands) == []
            run = _try(gateway, "--below-guard", "--last-attempt", "--yes", "--json")
            assert run.returncode == 0, run.stderr
            assert json.loads(run.stdout)["outcome"] == "accepted"
            wait_until(lambda: modem.pdp_active, 15, "paired and the link up after the try")
        assert len(pin_presentations(modem.commands)) == 1
        assert [t["outcome"] for t in _tries(gateway)] == ["refused", "accepted"]


def test_a_rejection_through_the_service_presents_nothing_more(gateway, notify_socket):
    """After an interrupted rotation on a modem without counters, a person's
    try through the service spends the pending PIN (the card kept its old
    one): the service does not go on to present the current one by itself,
    nor does a second try (its attempt in the change was never settled);
    the PIN a person stores again is presented."""
    import time

    from test_service import service

    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        modem.port_path = port
        _interrupted_rotation(gateway, modem, card, reached_card=False)
        with service(gateway, notify_socket):
            notify_socket.wait_for("STATUS", "refused: retry-guard")
            before = len(pin_presentations(modem.commands))
            first = _try(gateway, "--below-guard", "--yes", "--json")
            assert first.returncode == 1 and json.loads(first.stdout)["outcome"] == "rejected", first.stderr
            time.sleep(5)  # two periodic checks: nothing more is presented
            assert len(pin_presentations(modem.commands)) == before + 1 and not modem.pdp_active
            second = _try(gateway, "--below-guard", "--yes", "--json")
            assert second.returncode == 1 and json.loads(second.stdout)["reason"] == "attempt-unsettled"
            assert len(pin_presentations(modem.commands)) == before + 1 and not modem.pdp_active
            gateway.store_pin(str(card.iccid))
            wait_until(lambda: modem.pdp_active, 15, "paired with the PIN stored again")
        assert len(pin_presentations(modem.commands)) == before + 2
        assert gateway.keystore().get(card.iccid).pin.reveal() == card.pin
