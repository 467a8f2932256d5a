"""An over-the-air PIN is not staged while our last change is unproven.

A change the modem dropped plus an OTA change staged and never sent would
make three candidates (current, staged, fallback); only two fit above the
guard, so the card's PIN, the fallback, would wait for a person on the
card's last attempt.  So staging waits for the proof like a rotation
(lifecycle.change_waits), also when the rotation settles between the
stage's look and its write under the keystore's lock."""

from __future__ import annotations

import json

import pytest

from mtcd.cli.jsonout import error_code
from mtcd.config import PolicyConfig
from mtcd.journal import PairingJournal
from mtcd.keystore import ROTATION, STAGED, Keystore
from mtcd.lifecycle import LifecycleRefused, stage
from mtcd.secret import Pin

from simfixtures import TEST_PIN, make_card, sim_modem
from test_chained_fallback import CARDS_PIN, ICCID, IMEI, Card, _entry, _pair, _rotate, _store
from test_unproven_waits import unproven_rotation

OTA_PIN = Pin("55667788")


def _stage(state):
    return stage(Keystore.open(state), PairingJournal(state), PolicyConfig(), ICCID, OTA_PIN)


def _refused(raised, *pins):
    said = str(raised.value)
    assert raised.value.exit_code == 1 and error_code(raised.value, 1) == "refused"
    assert "\n" not in said and "not proven yet" in said and '"fallback": false' in said, said
    for pin in pins:
        assert pin.reveal() not in said


def test_a_stage_after_a_change_with_only_the_modem_s_ok_is_refused_until_the_proof(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = Card(True)  # the modem drops the rotation's change
    _rotate(state, card)
    entry = _entry(state)
    with pytest.raises(LifecycleRefused) as raised:
        _stage(state)
    _refused(raised, CARDS_PIN, entry.pin, OTA_PIN)
    assert _entry(state) == entry and "pin-staged" not in [r["event"] for r in PairingJournal(state).events()]
    # The next boot pairs by itself (current refused once, fallback), and
    # then the OTA PIN is staged.
    card.power_cycle()
    assert _pair(state, card).paired and card.left == 3 and _entry(state).fallback_pin is None
    assert _stage(state).outcome == "staged" and _entry(state).pending_pin == OTA_PIN


def test_a_rotation_settling_inside_a_stage_refuses_the_stage(tmp_path, monkeypatch):
    """The stage looked (nothing pending, nothing unproven); a rotation then
    ran to its modem's OK before the stage's write: the lock's check
    refuses the stage with exit 1 and stores nothing."""
    state = tmp_path / "state"
    _store(state)
    original = Keystore.stage_pending
    rotated = Pin("90817263")

    def rotation_first(self, iccid, pin, origin, **kwargs):
        if origin == STAGED:
            other = Keystore.open(state)
            original(other, iccid, rotated, ROTATION)
            assert other.promote_unproven(iccid, IMEI.value, rotated) is not None
        return original(self, iccid, pin, origin, **kwargs)

    monkeypatch.setattr(Keystore, "stage_pending", rotation_first)
    with pytest.raises(LifecycleRefused) as raised:
        _stage(state)
    _refused(raised, CARDS_PIN, rotated, OTA_PIN)
    entry = _entry(state)
    assert entry.pin == rotated and entry.fallback_pin == CARDS_PIN and entry.pending_pin is None


def test_mtcctl_pin_stage_while_unproven_exits_1_and_names_the_way(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        unproven = unproven_rotation(gateway, modem, port, card)
        run = gateway.mtcctl("pin", "stage", str(card.iccid), "--json", stdin="66554433\n")
        out = run.stdout + run.stderr
        assert run.returncode == 1 and json.loads(run.stdout)["error"] == "refused", out
        assert "not proven yet" in out and "Traceback" not in out
        assert all(p not in out for p in (TEST_PIN, unproven, "66554433"))
        assert gateway.keystore().get(card.iccid).pending_pin is None
        modem.power_loss()
        assert gateway.mtcd("once", "--json").last_json["state"] == "paired"
        run = gateway.mtcctl("pin", "stage", str(card.iccid), stdin="66554433\n")
        assert run.returncode == 0, run.stderr
