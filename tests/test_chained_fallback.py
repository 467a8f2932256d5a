"""A PIN change the modem said OK to but the card never made must not lock
the gateway out (guarantee 5).

An OK to AT+CPWD (or 9000 to CHANGE REFERENCE DATA) with the counter
unchanged is either a change the card made or a command the modem never
passed on; nothing readable while the card is unlocked tells them apart.
So the rotation promotes the new PIN and keeps, in the entry's own sealed
fallback field, the PIN the card was last seen to accept.  The pairing
tries current, pending, then the fallback, each once under the guard.  No
later change begins until the card has unlocked with one of them
(lifecycle.change_waits), so the card always holds one of the two."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mtcd import keystore as keystore_module
from mtcd import keystore_buckets
from mtcd.config import PolicyConfig
from mtcd.gate import pair
from mtcd.identity import Iccid, Imei
from mtcd.journal import PairingJournal
from mtcd.keystore import FALLBACK, ROTATION, Keystore
from mtcd.lifecycle import (ADOPTED, COMPROMISED, REQUESTED, SCHEDULED, ChangeResult, Lifecycle,
                            LifecycleRefused, rotation_due)
from mtcd.policy import PinOutcome, PolicySettings, Reason
from mtcd.recovery import TryRequest, try_pin
from mtcd.secret import Pin, Puk
from mtcd.simlock import SimLock

from simfixtures import BlindSwap, StubCard, make_iccid, make_imei

ICCID = Iccid(make_iccid(31))
IMEI = Imei(make_imei(31))
CARDS_PIN = Pin("27182818")
DATA = Path(__file__).parent / "data"


class PowerCut(Exception):
    pass


class Card(StubCard):
    """Unlocked.  `lies`: for each AT+CPWD in turn, whether the modem answers
    OK without passing it on (True) or the card carries it out (False: it
    changes its PIN, or refuses a wrong old PIN and counts it); past the
    list, honest.  `cut`: (n, "before" | "after"): the power goes at the
    n-th presentation (0-based), before the card acts on it or after (its
    answer lost).  After `power_cycle()` it asks for its PIN."""

    def __init__(self, *lies: bool):
        super().__init__(CARDS_PIN, ICCID, state=SimLock.READY)
        self.lies = list(lies)
        self.refused: list[str] = []  # every PIN the card counted as wrong
        self.changes: list[Pin] = []  # the old PIN of every AT+CPWD sent
        self.cut: tuple[int, str] | None = None
        self.calls = 0

    def power_cycle(self):
        self.state = SimLock.SIM_PIN

    def change_pin(self, old, new, for_iccid):
        self.changes.append(old)
        if self.lies and self.lies.pop(0):
            return PinOutcome.ACCEPTED  # the modem's OK; the card never saw the command
        if old != self.pin:
            self.left -= 1
            self.refused.append(old.reveal())
            return PinOutcome.REJECTED
        self.pin = new
        return PinOutcome.ACCEPTED

    def present_pin(self, pin, for_iccid):
        call, self.calls = self.calls, self.calls + 1
        if self.cut == (call, "before"):
            raise PowerCut()
        left = self.left
        outcome = super().present_pin(pin, for_iccid)
        if self.left < left:
            self.refused.append(pin.reveal())
        if self.cut == (call, "after"):
            raise PowerCut()
        return outcome

    def pin_enabled(self):
        return True


def _store(state: Path, **kwargs) -> None:
    Keystore.open(state).set_pin(ICCID, CARDS_PIN, **kwargs)


def _rotate(state: Path, card: Card, reason: str = REQUESTED, policy: PolicyConfig = PolicyConfig()) -> ChangeResult:
    return Lifecycle(card, Keystore.open(state), PairingJournal(state), policy, IMEI).rotate(reason)


def _pair(state: Path, card: Card, settings: PolicySettings = PolicySettings()):
    return pair(card, Keystore.open(state), settings, IMEI, None)


def _entry(state: Path):
    return Keystore.open(state).get(ICCID)


def _events(state: Path) -> list[str]:
    return [r["event"] for r in PairingJournal(state).events()]


# -- the lying change, and the honest one -------------------------------------


def test_a_change_the_card_never_made_keeps_the_old_pin_as_the_fallback(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = Card(True)
    assert _rotate(state, card).outcome == "done"
    entry = _entry(state)
    new = entry.pin
    assert new != CARDS_PIN and entry.fallback_pin == CARDS_PIN
    assert entry.pending_pin is None and entry.pending_origin is None  # the pending slot stays free
    card.power_cycle()
    outcome = _pair(state, card)
    assert outcome.paired, outcome.decision
    assert card.presented == [new, CARDS_PIN] and card.left == 3
    assert [e for e, _ in outcome.pin_events] == ["pin-attempt-rejected", "pin-change-not-made"]
    entry = _entry(state)
    assert entry.pin == CARDS_PIN and entry.fallback_pin is None and not entry.rejected
    # The refused PIN is gone: never presented again.
    card.power_cycle()
    assert _pair(state, card).paired and card.presented == [new, CARDS_PIN, CARDS_PIN]


def test_an_honest_change_costs_nothing(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = Card(False)
    _rotate(state, card)
    new = _entry(state).pin
    assert card.pin == new and _entry(state).fallback_pin == CARDS_PIN  # unproven until the card says
    card.power_cycle()
    outcome = _pair(state, card)
    assert outcome.paired and card.presented == [new] and card.left == 3 and card.refused == []
    entry = _entry(state)
    assert entry.pin == new and entry.fallback_pin is None and entry.fallback_of is None
    card.power_cycle()
    assert _pair(state, card).paired and card.presented == [new, new]


def test_an_unlocked_card_proves_nothing(tmp_path):
    """Found unlocked (no presentation): the fallback stays."""
    state = tmp_path / "state"
    _store(state)
    card = Card(True)
    _rotate(state, card)
    assert _pair(state, card).paired and card.presented == []
    assert _entry(state).fallback_pin == CARDS_PIN


def test_no_second_change_begins_while_the_first_is_unproven(tmp_path):
    """The first change has only the modem's OK: a second one on top of it
    is refused, nothing sent, the entry as it was.  Were it made and
    dropped too, the card could hold a PIN two changes back, which neither
    the current PIN nor the fallback is."""
    state = tmp_path / "state"
    _store(state)
    card = Card(False, True)  # the first change reaches the card; the second would be dropped
    _rotate(state, card)
    entry = _entry(state)
    assert card.pin == entry.pin != CARDS_PIN and entry.fallback_pin == CARDS_PIN
    for reason in (REQUESTED, COMPROMISED, SCHEDULED):
        with pytest.raises(LifecycleRefused, match="not proven yet") as refused:
            _rotate(state, card, reason)
        said = str(refused.value)
        assert "\n" not in said and "power-cycle the modem" in said
        assert CARDS_PIN.reveal() not in said and entry.pin.reveal() not in said
    assert card.changes == [CARDS_PIN] and card.presented == [] and card.left == 3
    assert _entry(state) == entry
    # Once the card unlocks with the new PIN it is proven, and the next
    # change goes ahead from it (this one the modem drops).
    card.power_cycle()
    assert _pair(state, card).paired and card.presented == [entry.pin]
    assert _entry(state).fallback_pin is None
    assert _rotate(state, card).outcome == "done"
    dropped = _entry(state)
    assert card.pin == entry.pin and dropped.fallback_pin == entry.pin
    card.power_cycle()
    outcome = _pair(state, card)
    assert outcome.paired and card.presented == [entry.pin, dropped.pin, entry.pin] and card.left == 3


def test_a_change_refused_after_its_fallback_settled_starts_from_the_pin_proven(tmp_path):
    """Dropped, then the card asks for its PIN: the fallback is current again,
    and the rotation made then starts from it (the card's PIN) and is made."""
    state = tmp_path / "state"
    _store(state)
    card = Card(True)
    _rotate(state, card)
    dropped = _entry(state).pin
    card.power_cycle()
    assert _pair(state, card).paired and _entry(state).pin == CARDS_PIN
    assert _rotate(state, card).outcome == "done"
    assert card.changes == [CARDS_PIN, CARDS_PIN] and card.pin == _entry(state).pin != CARDS_PIN
    assert card.refused == [dropped.reveal()] and card.left == 3  # only the dropped PIN, once


def test_a_rotation_refused_without_a_fallback_latches_as_before(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = Card()
    card.pin = Pin("99998888")  # the card holds another PIN
    with pytest.raises(LifecycleRefused, match="rejected its stored PIN"):
        _rotate(state, card)
    entry = _entry(state)
    assert entry.rejected and entry.pin == CARDS_PIN and entry.fallback_pin is None


# -- power cuts, the guard, a person ------------------------------------------


@pytest.mark.parametrize("lie", [True, False])
@pytest.mark.parametrize("call", [0, 1])
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_power_cut_at_each_presentation_settles_by_the_counter(tmp_path, lie, call, when):
    state = tmp_path / "state"
    _store(state)
    card = Card(lie)
    _rotate(state, card)
    new = _entry(state).pin
    card.power_cycle()
    card.cut = (call, when)
    try:
        _pair(state, card)
    except PowerCut:
        pass
    card.cut = None
    card.power_cycle()
    outcome = _pair(state, card)
    assert outcome.paired, outcome.decision
    # Never a PIN the card refused presented again; every attempt back.
    assert len(card.refused) == len(set(card.refused)) <= 1 and card.left == 3
    assert card.refused == [] if not lie else card.refused == [new.reveal()]
    assert sum(1 for p in card.presented if p == CARDS_PIN) <= 1 + (call == 1 and when == "after")
    entry = _entry(state)
    assert entry.pin == card.pin and entry.fallback_pin is None and not entry.rejected
    assert card.pin == (CARDS_PIN if lie else new)


def test_a_power_cut_after_the_fallback_reached_the_card_is_settled_not_repeated(tmp_path):
    """The fallback goes out, the card takes it and the answer is lost: the
    next boot finds the card asking again (power cycled), the counter back
    at 3, so the attempt spent nothing; the fallback was never refused."""
    state = tmp_path / "state"
    _store(state)
    card = Card(True)
    _rotate(state, card)
    new = _entry(state).pin
    card.power_cycle()
    card.cut = (1, "after")
    with pytest.raises(PowerCut):
        _pair(state, card)
    entry = _entry(state)
    assert entry.attempt == FALLBACK and entry.rejected  # marker written before it went out
    card.cut = None
    card.power_cycle()
    assert _pair(state, card).paired
    assert card.presented == [new, CARDS_PIN, CARDS_PIN] and card.refused == [new.reveal()]


def test_a_fallback_refused_in_a_power_cut_is_latched_by_the_counter(tmp_path):
    """Both PINs wrong (the card holds a third), the fallback's answer lost:
    the counter shows it was refused; it is dropped, never presented again."""
    state = tmp_path / "state"
    _store(state)
    card = Card(True)
    _rotate(state, card)
    new = _entry(state).pin
    card.pin = Pin("99998888")
    card.power_cycle()
    card.left = 3
    card.cut = (1, "after")
    with pytest.raises(PowerCut):
        _pair(state, card)
    card.cut = None
    outcome = _pair(state, card)
    assert outcome.reason is Reason.PIN_REJECTED
    assert card.presented == [new, CARDS_PIN] and card.left == 1
    assert [e for e, _ in outcome.pin_events] == ["pin-attempt-rejected"]
    entry = _entry(state)
    assert entry.fallback_pin is None and entry.rejected and entry.attempt is None


def test_at_the_guard_after_the_current_s_refusal_the_fallback_is_not_presented(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = Card(True)
    _rotate(state, card)
    new = _entry(state).pin
    card.power_cycle()
    card.left = 2  # an attempt spent before, elsewhere
    outcome = _pair(state, card)
    assert outcome.reason is Reason.RETRY_GUARD and card.presented == [new] and card.left == 1
    entry = _entry(state)
    assert entry.rejected and entry.fallback_pin == CARDS_PIN
    assert _pair(state, card).reason is Reason.RETRY_GUARD and card.presented == [new]
    # A person's `pin try` presents the fallback, the only PIN not refused.
    answer = try_pin(card, Keystore.open(state), PairingJournal(state), PolicySettings(), IMEI,
                     TryRequest(below_guard=True, last_attempt=True, confirmed=True, iccid=ICCID))
    assert answer["outcome"] == "accepted" and answer["pin"] == FALLBACK
    assert card.presented == [new, CARDS_PIN] and card.left == 3
    entry = _entry(state)
    assert entry.pin == CARDS_PIN and entry.fallback_pin is None and not entry.rejected


def test_a_person_s_pin_drops_the_fallback(tmp_path):
    state = tmp_path / "state"
    _store(state)
    _rotate(state, Card(True))
    Keystore.open(state).set_pin(ICCID, Pin("99990000"))
    entry = _entry(state)
    assert entry.pin == Pin("99990000") and entry.fallback_pin is None and entry.fallback_of is None
    assert entry.pending_pin is None


def test_a_person_s_unblock_drops_the_fallback(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = Card(True)
    _rotate(state, card)
    card.state = SimLock.SIM_PUK
    card.puk_attempts = lambda: 10
    card.unblock = lambda puk, pin, for_iccid: PinOutcome.ACCEPTED
    Lifecycle(card, Keystore.open(state), PairingJournal(state), PolicyConfig(), IMEI).unblock(
        Puk("12345678"), Pin("44443333"))
    entry = _entry(state)
    assert entry.pin == Pin("44443333") and entry.fallback_pin is None


def test_a_person_s_store_during_the_change_wins(tmp_path):
    """`mtcctl pin set` while AT+CPWD is out: the OK promotes nothing and
    keeps no fallback over the person's PIN."""
    state = tmp_path / "state"
    _store(state)
    card = Card()
    person = Pin("99990000")
    card.change_pin = lambda old, new, for_iccid: (Keystore.open(state).set_pin(ICCID, person),
                                                   PinOutcome.ACCEPTED)[1]
    assert _rotate(state, card).outcome == "interrupted"
    entry = _entry(state)
    assert entry.pin == person and entry.fallback_pin is None


def test_the_fallback_is_sealed(tmp_path):
    state = tmp_path / "state"
    _store(state)
    _rotate(state, Card(True))
    assert _entry(state).fallback_pin == CARDS_PIN
    assert CARDS_PIN.reveal() not in repr(_entry(state))
    for path in state.rglob("*"):
        if path.is_file():
            assert CARDS_PIN.reveal().encode() not in path.read_bytes(), path


# -- review5: a change not made restores the old PIN as it was ---------------


def _not_made(state: Path, reason: str, policy: PolicyConfig = PolicyConfig()):
    card = Card(True)
    _rotate(state, card, reason, policy)
    card.power_cycle()
    outcome = _pair(state, card)
    assert outcome.paired and outcome.pin_events[-1][0] == "pin-change-not-made"
    entry = _entry(state)
    assert entry.pin == CARDS_PIN == card.pin
    return entry


def test_a_change_not_made_keeps_the_pin_compromised(tmp_path):
    state = tmp_path / "state"
    _store(state)
    Keystore.open(state).mark_compromised([ICCID])
    entry = _not_made(state, COMPROMISED)
    assert entry.compromised and rotation_due(entry, PolicyConfig(), datetime.now(timezone.utc)) == COMPROMISED


def test_a_change_not_made_keeps_the_transport_pin_a_transport_pin(tmp_path):
    state = tmp_path / "state"
    _store(state, transport=True)
    entry = _not_made(state, ADOPTED)
    assert entry.transport and rotation_due(entry, PolicyConfig(), datetime.now(timezone.utc)) == ADOPTED


def test_a_change_not_made_keeps_the_pin_s_age(tmp_path, monkeypatch):
    state = tmp_path / "state"
    old = (datetime.now(timezone.utc) - timedelta(days=100)).isoformat()
    with monkeypatch.context() as m:
        m.setattr(keystore_module, "_now", lambda: old)
        _store(state)
    policy = PolicyConfig(rotate_every=90 * 86400.0)
    entry = _not_made(state, SCHEDULED, policy)
    assert entry.rotated == old and rotation_due(entry, policy, datetime.now(timezone.utc)) == SCHEDULED


def test_a_compromise_marked_while_a_fallback_is_held_covers_it(tmp_path):
    """`mtcctl pin compromised` while the old PIN is kept: it is in the same
    store, so as known; also after the new PIN was refused (current
    latched, not active: the mark must not skip the entry)."""
    state = tmp_path / "state"
    _store(state)
    card = Card(True)
    _rotate(state, card, SCHEDULED)
    card.power_cycle()
    card.left = 2
    assert not _pair(state, card).paired
    assert _entry(state).rejected and _entry(state).fallback_pin == CARDS_PIN
    assert Keystore.open(state).mark_compromised() == 1
    answer = try_pin(card, Keystore.open(state), PairingJournal(state), PolicySettings(), IMEI,
                     TryRequest(below_guard=True, last_attempt=True, confirmed=True, iccid=ICCID))
    assert answer["outcome"] == "accepted" and answer["pin"] == FALLBACK
    entry = _entry(state)
    assert entry.pin == CARDS_PIN and entry.compromised


# -- cards that tell no count, swaps ----------------------------------------


class CountlessCard(Card):
    """Never reports the PIN count (`verified_only`: only while the PIN is
    not verified, as a UICC over APDUs)."""

    def __init__(self, *lies, verified_only: bool = False):
        super().__init__(*lies)
        self.verified_only = verified_only

    def attempts(self):
        if self.verified_only and self.state is SimLock.SIM_PIN:
            return super().attempts()
        return None


def test_a_fallback_on_a_card_that_tells_no_count_is_presented_once_on_a_later_run(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = CountlessCard(True)
    _rotate(state, card)
    new = _entry(state).pin
    card.power_cycle()
    first = _pair(state, card)
    assert first.reason is Reason.RETRY_GUARD and card.presented == [new]  # nothing more without a count
    second = _pair(state, card)
    assert second.paired and card.presented == [new, CARDS_PIN] and card.refused == [new.reveal()]


def test_a_power_cut_at_a_countless_fallback_is_never_presented_again(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = CountlessCard(True)
    _rotate(state, card)
    new = _entry(state).pin
    card.power_cycle()
    _pair(state, card)
    card.cut = (1, "after")
    with pytest.raises(PowerCut):
        _pair(state, card)
    card.cut = None
    card.power_cycle()
    third = _pair(state, card)
    assert third.reason is Reason.RETRY_GUARD and card.presented == [new, CARDS_PIN]


def test_a_lying_change_on_a_verified_apdu_card_settles_by_the_count_read_locked(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = CountlessCard(True, verified_only=True)
    _rotate(state, card)
    new = _entry(state).pin
    card.power_cycle()
    assert _pair(state, card).paired and card.presented == [new, CARDS_PIN] and card.left == 3


class BlindSwapCard(BlindSwap, Card):
    """A is swapped for B right after it refuses the current PIN, with no
    word from the modem (simfixtures.BlindSwap)."""

    OTHER = Iccid(make_iccid(32))

    def __init__(self, *lies):
        super().__init__(*lies)
        self.blind_swap(ICCID, self.OTHER)


def test_a_blind_swap_after_the_current_s_refusal_does_not_give_b_the_fallback(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = BlindSwapCard(True)
    _rotate(state, card)
    new = _entry(state).pin
    card.power_cycle()
    outcome = _pair(state, card)
    assert card.to == [(ICCID, new)], "A's fallback went to card B"
    assert outcome.reason is Reason.UNKNOWN_SIM and outcome.iccid == BlindSwapCard.OTHER
    assert _entry(state).fallback_pin == CARDS_PIN
    card.slot = ICCID  # A back
    assert _pair(state, card).paired and card.to == [(ICCID, new), (ICCID, CARDS_PIN)]


# -- entries written before the fallback --------------------------------------


@pytest.mark.parametrize("name", ["keystore-before-fallback", "keystore-bucketed-before-fallback"])
def test_a_store_written_before_the_fallback_still_opens(tmp_path, name):
    """Written by main before this field (flat at 5f4ee7d, bucketed at
    5a84552): an entry, and one with a rotation pending.  Each reads as no
    fallback, settles as before, and a lying change then keeps one."""
    state = tmp_path / "state"
    shutil.copytree(DATA / name, state)
    for path in [state, *state.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)
    bucketed = json.loads((state / "keystore.json").read_text())["format"] == "mtcd-keystore/3"
    assert bucketed == (name != "keystore-before-fallback")
    keystore = Keystore.open(state)
    plain = keystore.get(Iccid(make_iccid(21)))
    assert plain.pin == Pin("11112222") and plain.pending_pin is None and plain.fallback_pin is None
    changing = keystore.get(Iccid(make_iccid(22)))
    assert changing.pin == Pin("33334444") and changing.pending_pin == Pin("55556666")
    assert changing.pending_origin == ROTATION and changing.fallback_pin is None
    keystore.record_accepted(changing.iccid, IMEI.value)
    assert Keystore.open(state).get(changing.iccid).pending_pin is None
    keystore.stage_pending(plain.iccid, Pin("77778888"), ROTATION)
    keystore.promote_unproven(plain.iccid, IMEI.value, Pin("77778888"))
    entry = Keystore.open(state).get(plain.iccid)
    assert entry.pin == Pin("77778888") and entry.fallback_pin == Pin("11112222")
    assert (json.loads((state / "keystore.json").read_text())["format"] == "mtcd-keystore/3") == bucketed


def test_a_fallback_survives_a_bucketed_store(tmp_path, monkeypatch):
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 0)
    state = tmp_path / "state"
    _store(state)
    card = Card(True)
    _rotate(state, card)
    assert json.loads((state / "keystore.json").read_text())["format"] == "mtcd-keystore/3"
    new = _entry(state).pin
    card.power_cycle()
    assert _pair(state, card).paired and card.presented == [new, CARDS_PIN]


def test_a_damaged_fallback_record_is_a_keystore_error_not_a_traceback(tmp_path):
    from mtcd.errors import KeystoreError

    state = tmp_path / "state"
    _store(state)
    _rotate(state, Card(True))
    keystore = Keystore.open(state)
    entry = keystore.get(ICCID)
    bad = keystore_module._record(entry)
    bad["fallback"]["state"] = "nonsense"
    record = keystore_module._record
    keystore_module._record = lambda e: bad
    try:
        keystore._locked  # noqa: B018
        with keystore._locked():
            keystore._commit([entry])
    finally:
        keystore_module._record = record
    with pytest.raises(KeystoreError, match="invalid record"):
        Keystore.open(state).get(ICCID)


# -- what a technician sees ---------------------------------------------------


def test_pin_list_shows_a_fallback_never_the_pin(gateway):
    iccid = make_iccid(33)
    gateway.configure(str(gateway.root / "ttyUSB9"))  # no modem: the list needs none
    gateway.store_pin(iccid)
    keystore = gateway.keystore()
    keystore.stage_pending(Iccid(iccid), Pin("31415926"), ROTATION)
    assert keystore.promote_unproven(Iccid(iccid), IMEI.value, Pin("31415926")) is not None
    text = gateway.mtcctl("pin", "list")
    assert text.returncode == 0 and "old PIN kept until the card proves the new one" in text.stdout
    listed = gateway.mtcctl("pin", "list", "--json")
    assert [(e["fallback"], e["pending"]) for e in json.loads(listed.stdout)["pins"]] == [(True, None)]
    stored = gateway.keystore().get(Iccid(iccid)).fallback_pin.reveal()
    for out in (text, listed):
        assert "31415926" not in out.stdout + out.stderr and stored not in out.stdout + out.stderr
    gateway.store_pin(iccid)  # a person's PIN: the fallback goes
    assert json.loads(gateway.mtcctl("pin", "list", "--json").stdout)["pins"][0]["fallback"] is False


def test_doctor_names_a_fallback():
    from mtcd.doctor import entry_summary

    entry = {"state": "active", "transport": False, "pending": None, "pending_rejected": False, "fallback": True}
    assert "old PIN kept until the card proves the new one" in entry_summary(entry)
    assert "no further change until then" in entry_summary(entry)
    # A compromise marked meanwhile waits for that proof too: doctor says how.
    assert "power-cycle the modem" in entry_summary({**entry, "state": "compromised"})
    assert "at the next pairing" in entry_summary({**entry, "state": "compromised", "fallback": False})
    assert "power-cycle the modem" in entry_summary({**entry, "state": "compromised", "fallback": False,
                                                      "pending": "rotation"})
    assert "last seen to accept is kept" in entry_summary({**entry, "state": "rejected"})
    assert "never presented again" in entry_summary({**entry, "state": "rejected", "fallback": False})


def test_pin_try_plans_the_fallback_last_and_an_unsettled_one_only_on_a_person_s_word():
    from mtcd.policy import StoredPin
    from mtcd.recovery import UNSETTLED, plan_try

    held = StoredPin(rejected=True, has_fallback=True)
    assert plan_try(SimLock.SIM_PIN, ICCID, held, 3, 2).which == FALLBACK
    both = StoredPin(rejected=True, has_pending=True, has_fallback=True)
    assert plan_try(SimLock.SIM_PIN, ICCID, both, 3, 2).which == "pending"
    lost = StoredPin(rejected=True, has_fallback=True, unsettled=("fallback",))
    assert plan_try(SimLock.SIM_PIN, ICCID, lost, None, 2).refusal.reason == UNSETTLED
    plan = plan_try(SimLock.SIM_PIN, ICCID, lost, None, 2, below_guard=True, last_attempt=True, unsettled_ok=True)
    assert plan.which == FALLBACK and plan.unsettled


def test_a_dry_run_names_the_fallback_and_presents_nothing(tmp_path):
    from mtcd.recovery import dry_run

    state = tmp_path / "state"
    _store(state)
    card = Card(True)
    _rotate(state, card)
    new = _entry(state).pin
    card.power_cycle()
    card.left = 2
    _pair(state, card)  # the new PIN refused; at the guard
    card.left = 3  # counter back (a person's try elsewhere)
    answer = dry_run(card, Keystore.open(state), PolicySettings(), IMEI, None)
    assert answer["state"] == "would-present" and answer["pin"] == FALLBACK
    assert card.presented == [new] and CARDS_PIN.reveal() not in json.dumps(answer)
