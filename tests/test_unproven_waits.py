"""No PIN change begins while the last one has only the modem's OK
(guarantee 5 against a modem that passes some changes on and drops others).

An OK to AT+CPWD with the counter unchanged is a change the card made or
one the modem dropped.  The entry keeps the PIN the card last accepted as
the fallback, but only two presentations fit above the guard: after two
unproven changes the card could hold a PIN that is neither current nor
fallback (made, then dropped).  So every further change waits until the
card has unlocked with one of the two."""

from __future__ import annotations

import json
import random
import time

import pytest

from mtcd.keystore import Keystore
from mtcd.lifecycle import LifecycleRefused, change_waits

from simfixtures import TEST_PIN, make_card, sim_modem
from test_chained_fallback import CARDS_PIN, Card, _entry, _pair, _rotate, _store
from test_review8_fallback import GuardedCard


@pytest.mark.parametrize("seed", range(40))
def test_any_mix_of_passed_and_dropped_changes_pairs_again_by_itself(tmp_path, seed):
    """Random rotations, each passed on or dropped by the modem, and boots at
    random between them.  At every boot the gateway pairs by itself with
    the default guard, never spending an attempt at 1 left nor a refused
    PIN twice.  On the code that let changes pile up, the plainest pattern
    (one passed on, then one dropped, no boot between) left it locked out."""
    rng = random.Random(seed)
    state = tmp_path / "state"
    _store(state)
    card = GuardedCard()
    for step in range(30):
        if rng.random() < 0.6:
            card.lies.append(rng.random() < 0.5)
            try:
                _rotate(state, card)
            except LifecycleRefused as refused:
                assert "not proven yet" in str(refused), refused
                card.lies.pop()  # nothing went out
        else:
            card.power_cycle()
            outcome = _pair(state, card)
            assert outcome.paired, (seed, step, outcome.reason, outcome.decision)
            assert _entry(state).pin == card.pin and _entry(state).fallback_pin is None
        entry = _entry(state)
        assert card.pin in (entry.pin, entry.fallback_pin), (seed, step)
    assert all(left >= 2 for left in card.spent_at), card.spent_at
    assert len(card.refused) == len(set(card.refused)) and card.left >= 2, card.refused


def test_the_plainest_mixed_pattern_is_refused_before_anything_is_sent(tmp_path):
    """Passed on, then a second change asked for before any boot: refused
    with one line naming the way out, no command sent, the entry as it was;
    the service's own due rotation (change_waits) waits the same way."""
    state = tmp_path / "state"
    _store(state)
    card = Card(False, True)
    _rotate(state, card)
    entry = _entry(state)
    assert change_waits(entry) is not None and "not proven yet" in change_waits(entry)
    with pytest.raises(LifecycleRefused) as refused:
        _rotate(state, card)
    assert refused.value.exit_code == 1
    said = str(refused.value)
    assert "\n" not in said and "power-cycle the modem, then `mtcctl repair`" in said, said
    assert CARDS_PIN.reveal() not in said and entry.pin.reveal() not in said
    assert card.changes == [CARDS_PIN] and _entry(state) == entry
    card.power_cycle()
    assert _pair(state, card).paired and card.presented == [entry.pin]
    assert change_waits(_entry(state)) is None


def test_a_person_s_pin_lets_the_next_change_begin(tmp_path):
    """A person storing the PIN (`pin set`) settles it: nothing is unproven
    by the gateway any more."""
    state = tmp_path / "state"
    _store(state)
    card = Card(True)
    _rotate(state, card)
    Keystore.open(state).set_pin(card.iccid(), CARDS_PIN)
    assert change_waits(_entry(state)) is None
    assert _rotate(state, card).outcome == "done" and card.pin == _entry(state).pin


# -- the real binaries against the simulated modem ----------------------------


def _cpwd(modem) -> int:
    return len([c for c in modem.commands if c.upper().startswith("AT+CPWD=")])


def test_a_due_rotation_waits_for_the_proof_then_follows_it(gateway):
    """rotate_every = 1s; the modem drops the first AT+CPWD.  While the card
    stays unlocked, later runs send no further change (the log says why)
    and still pair; once it asks for its PIN, the fallback unlocks it and
    the rotation due is made from that PIN."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, policy='rotate_every = "1s"')
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CPWD=", "unsent")
        time.sleep(1.1)
        assert gateway.mtcd("once", "--json").returncode == 0
        assert _cpwd(modem) == 1 and card.pin == TEST_PIN
        assert gateway.keystore().get(card.iccid).fallback_pin.reveal() == TEST_PIN
        time.sleep(1.1)
        run = gateway.mtcd("once", "--json", "-v")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stderr
        assert _cpwd(modem) == 1, modem.commands
        assert "PIN rotation (scheduled) waits: the last PIN change" in run.stderr, run.stderr
        dry = gateway.mtcd("once", "--dry-run", "--json")
        assert "change its PIN" not in json.loads(dry.stdout)["detail"], dry.stdout
        modem.power_loss()
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stderr
        assert _cpwd(modem) == 2 and card.pin != TEST_PIN and card.pin_attempts == 3
        entry = gateway.keystore().get(card.iccid)
        assert entry.pin.reveal() == card.pin and entry.fallback_pin.reveal() == TEST_PIN
        for run in (gateway.mtcctl("history", "--json"), dry):
            assert TEST_PIN not in run.stdout + run.stderr and card.pin not in run.stdout + run.stderr


def unproven_rotation(gateway, modem, port, card) -> str:
    """Paired, then a `pin rotate` whose AT+CPWD the modem answers OK and
    never passes on: the unproven PIN (for the tests' leak checks)."""
    gateway.configure(port)
    gateway.store_pin(str(card.iccid))
    assert gateway.mtcd("once").returncode == 0
    modem.fail_after("AT+CPWD=", "unsent")
    assert gateway.mtcctl("pin", "rotate").returncode == 0
    return gateway.keystore().get(card.iccid).pin.reveal()


def test_mtcctl_rotate_and_compromise_while_unproven_say_so_and_send_nothing(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        unproven = unproven_rotation(gateway, modem, port, card)
        for args in (("pin", "rotate"), ("pin", "rotate", "--json"), ("compromise",)):
            run = gateway.mtcctl(*args)
            out = run.stdout + run.stderr
            assert run.returncode == 1, (args, out)
            assert "not proven yet" in out and "Traceback" not in out, out
            assert TEST_PIN not in out and unproven not in out
        assert _cpwd(modem) == 1 and card.pin == TEST_PIN and card.pin_attempts == 3
        assert gateway.keystore().get(card.iccid).compromised
        # The way out the message names: the card asks for its PIN, the
        # fallback unlocks it, and the compromised PIN is changed then.
        modem.power_loss()
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stderr
        entry = gateway.keystore().get(card.iccid)
        assert card.pin not in (TEST_PIN, unproven) and entry.pin.reveal() == card.pin
        assert not entry.compromised and entry.fallback_pin.reveal() == TEST_PIN
