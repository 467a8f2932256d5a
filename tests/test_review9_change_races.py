"""Review 9: a PIN change and an over-the-air staging that race each other.

`Lifecycle.rotate` and `lifecycle.stage` look at the entry (change_waits,
"no pending PIN") outside the keystore's lock; the lock's own check in
`Keystore.stage_pending` then refuses the one that lands second.  That is
a refusal, not damage: it must exit 1 ("refused"), as the first check
would have, never 65 ("keystore-damaged", which tells an agent the sealed
store is broken), and the service's due rotation must take it as a
rotation not done, not as a failed session."""

from __future__ import annotations

import pytest

from mtcd.cli.jsonout import error_code
from mtcd.config import PolicyConfig
from mtcd.journal import PairingJournal
from mtcd.keystore import ROTATION, STAGED, Keystore
from mtcd.lifecycle import REQUESTED, Lifecycle, LifecycleRefused, stage
from mtcd.secret import Pin

from test_chained_fallback import CARDS_PIN, ICCID, IMEI, Card, _entry, _store

OTA_PIN = Pin("55667788")


class StagedDuringTheGuardRead(Card):
    """An over-the-air `mtcctl pin stage` (another process, no modem needed)
    lands while the rotation reads the counter for its guard: after the
    rotation looked at the entry, before it stages its own PIN."""

    def __init__(self, state):
        super().__init__()
        self.state_dir = state
        self.staged = False

    def attempts(self):
        if not self.staged:
            self.staged = True
            stage(Keystore.open(self.state_dir), PairingJournal(self.state_dir), PolicyConfig(), ICCID, OTA_PIN)
        return super().attempts()


def _refused_cleanly(exc: LifecycleRefused, *pins: Pin) -> None:
    said = str(exc)
    assert exc.exit_code == 1 and error_code(exc, exc.exit_code) == "refused", (type(exc), exc.exit_code)
    assert "\n" not in said and "damaged" not in said, said
    for pin in pins:
        assert pin.reveal() not in said


def test_a_stage_landing_inside_a_rotation_refuses_the_rotation_with_exit_1(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = StagedDuringTheGuardRead(state)
    lifecycle = Lifecycle(card, Keystore.open(state), PairingJournal(state), PolicyConfig(), IMEI)
    with pytest.raises(LifecycleRefused) as refused:
        lifecycle.rotate(REQUESTED)
    _refused_cleanly(refused.value, CARDS_PIN, OTA_PIN)
    assert "not settled" in str(refused.value), str(refused.value)
    # Nothing went to the card; the staged PIN that exited 0 is kept.
    assert card.staged and card.changes == [] and card.pin == CARDS_PIN
    entry = _entry(state)
    assert entry.pin == CARDS_PIN and entry.pending_pin == OTA_PIN and entry.pending_origin == STAGED


def test_a_rotation_landing_inside_a_stage_refuses_the_stage_with_exit_1(tmp_path, monkeypatch):
    """`mtcctl pin stage` looked (no pending PIN), then a rotation staged its
    own PIN before the stage's write: the stage is refused (the back end
    must not send the OTA change), with exit 1, and the rotation's PIN kept."""
    state = tmp_path / "state"
    _store(state)
    rotation_pin = Pin("90817263")
    original = Keystore.stage_pending

    def rotation_first(self, iccid, pin, origin, **kwargs):
        if origin == STAGED:
            original(Keystore.open(state), iccid, rotation_pin, ROTATION)
        return original(self, iccid, pin, origin, **kwargs)

    monkeypatch.setattr(Keystore, "stage_pending", rotation_first)
    with pytest.raises(LifecycleRefused) as refused:
        stage(Keystore.open(state), PairingJournal(state), PolicyConfig(), ICCID, OTA_PIN)
    _refused_cleanly(refused.value, CARDS_PIN, OTA_PIN, rotation_pin)
    entry = _entry(state)
    assert entry.pending_pin == rotation_pin and entry.pending_origin == ROTATION
    assert "pin-staged" not in [r["event"] for r in PairingJournal(state).events()]


def test_the_service_s_due_rotation_takes_that_race_as_a_rotation_not_done(tmp_path, caplog):
    """The service's own due rotation (here: a compromised PIN) with the
    stage landing in the same window: logged as not done, and the pairing
    goes on to bring the link up (the session is not dropped as if the
    store were damaged)."""
    from types import SimpleNamespace

    from mtcd.service import Gateway

    state = tmp_path / "state"
    _store(state)
    Keystore.open(state).mark_compromised()
    card = StagedDuringTheGuardRead(state)
    keystore = Keystore.open(state)
    gateway = SimpleNamespace(
        keystore=keystore, config=SimpleNamespace(policy=PolicyConfig()),
        lifecycle=lambda: Lifecycle(card, keystore, PairingJournal(state), PolicyConfig(), IMEI))
    with caplog.at_level("WARNING", logger="mtcd"):
        Gateway._rotate_if_due(gateway, ICCID)  # raises nothing
    assert card.staged and card.changes == []
    assert any("not done" in r.getMessage() and "not settled" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]
    assert _entry(state).pending_pin == OTA_PIN and _entry(state).compromised
