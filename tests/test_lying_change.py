"""A modem that answers OK to AT+CPWD the card never carried out (the counter
does not move) must not make the gateway drop the PIN the card still holds
(guarantee 5); found by review3.

An OK to a change is overruled only by a counter that fell.  A card that
refused the change counts it, so "OK, counter unchanged" is either a change
the card made or a command the modem never passed on, and nothing the
gateway can read tells them apart while the card is unlocked.  So the
rotation promotes the new PIN and keeps the old one in the same sealed
entry as the pending *fallback* until the card has accepted the new PIN
once.  The next pairing presents the new PIN first; accepted, the fallback
is dropped; refused (the counter falls), the new PIN is latched and the old
one, never refused, is presented once under the guard like any other
candidate, and is current again if the card takes it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mtcd.config import PolicyConfig
from mtcd.gate import pair
from mtcd.identity import Iccid, Imei
from mtcd.journal import PairingJournal
from mtcd.keystore import FALLBACK, PENDING, ROTATION, Keystore
from mtcd.lifecycle import Lifecycle, LifecycleRefused, REQUESTED
from mtcd.policy import PinOutcome, PolicySettings, Reason
from mtcd.recovery import TryRequest, try_pin
from mtcd.secret import Pin
from mtcd.simlock import PinAttempts, SimLock

from simfixtures import make_iccid, make_imei

ICCID = Iccid(make_iccid(11))
IMEI = Imei(make_imei(11))
CARDS_PIN = Pin("27182818")


class PowerCut(Exception):
    pass


class Card:
    """Unlocked; `honest`: the card makes the change AT+CPWD asks for;
    otherwise the modem answers OK and the card never gets it.  After
    `power_cycle()` it asks for its PIN.  `cut`: (n, "before" | "after"):
    the power goes at the n-th presentation (0-based), before the card acts
    on it or after (its answer lost)."""

    def __init__(self, honest: bool = False):
        self.pin = CARDS_PIN
        self.left = 3
        self.state = SimLock.READY
        self.honest = honest
        self.presented: list[Pin] = []  # every PIN that reached the card
        self.refused: list[str] = []  # every one it counted as wrong
        self.cut: tuple[int, str] | None = None
        self.calls = 0

    def power_cycle(self):
        self.state = SimLock.SIM_PIN

    def lock(self, settle: bool = True):
        return self.state

    def iccid(self):
        return ICCID

    def attempts(self):
        return PinAttempts(pin1=self.left, puk1=10)

    def change_pin(self, old, new, for_iccid):
        if self.honest:
            assert old == self.pin
            self.pin = new
        return PinOutcome.ACCEPTED  # the modem's OK, whether or not the card saw the command

    def may_present(self, iccid):
        return self.state is SimLock.SIM_PIN

    def present_pin(self, pin, for_iccid):
        call, self.calls = self.calls, self.calls + 1
        if self.cut == (call, "before"):
            raise PowerCut()
        self.presented.append(pin)
        if pin == self.pin:
            self.state, self.left = SimLock.READY, 3
            outcome = PinOutcome.ACCEPTED
        else:
            self.left -= 1
            self.refused.append(pin.reveal())
            outcome = PinOutcome.REJECTED
        if self.cut == (call, "after"):
            raise PowerCut()
        return outcome

    def pin_enabled(self):
        return True

    def imsi(self):
        return None


def _rotate(state: Path, card: Card) -> Pin:
    Keystore.open(state).set_pin(ICCID, CARDS_PIN)
    Lifecycle(card, Keystore.open(state), PairingJournal(state), PolicyConfig(), IMEI).rotate(REQUESTED)
    entry = Keystore.open(state).get(ICCID)
    assert entry.pending_origin == FALLBACK and entry.pending_pin == CARDS_PIN and entry.pin != CARDS_PIN
    return entry.pin


def test_an_ok_the_card_never_acted_on_does_not_lose_its_pin(tmp_path):
    state = tmp_path / "state"
    card = Card()
    new = _rotate(state, card)
    card.power_cycle()
    outcome = pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    assert outcome.paired, f"the gateway no longer has the SIM's PIN: {outcome.reason}"
    assert card.presented == [new, CARDS_PIN] and card.left == 3
    entry = Keystore.open(state).get(ICCID)
    assert entry.pin == CARDS_PIN and entry.pending_pin is None and not entry.rejected
    assert [e for e, _ in outcome.pin_events] == ["pin-attempt-rejected", "pin-change-not-made"]


def test_an_honest_change_costs_nothing_more(tmp_path):
    state = tmp_path / "state"
    card = Card(honest=True)
    new = _rotate(state, card)
    card.power_cycle()
    assert pair(card, Keystore.open(state), PolicySettings(), IMEI, None).paired
    assert card.presented == [new] and card.left == 3
    entry = Keystore.open(state).get(ICCID)
    assert entry.pin == new and entry.pending_pin is None and entry.pending_origin is None
    # And the next boot presents the new PIN once more, nothing else.
    card.power_cycle()
    assert pair(card, Keystore.open(state), PolicySettings(), IMEI, None).paired
    assert card.presented == [new, new]


def test_an_unlocked_card_proves_nothing(tmp_path):
    """Found unlocked (no presentation), the card said nothing about the
    new PIN: the fallback stays."""
    state = tmp_path / "state"
    card = Card()
    _rotate(state, card)
    assert pair(card, Keystore.open(state), PolicySettings(), IMEI, None).paired
    assert card.presented == [] and Keystore.open(state).get(ICCID).pending_origin == FALLBACK


@pytest.mark.parametrize("honest", [False, True])
@pytest.mark.parametrize("call", [0, 1])
@pytest.mark.parametrize("when", ["before", "after"])
def test_a_power_cut_at_each_presentation_settles_by_the_counter(tmp_path, honest, call, when):
    state = tmp_path / "state"
    card = Card(honest=honest)
    new = _rotate(state, card)
    card.power_cycle()
    card.cut = (call, when)
    try:
        pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    except PowerCut:
        pass
    card.cut = None
    card.power_cycle()
    outcome = pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    assert outcome.paired, outcome.decision
    # Never a PIN the card refused presented again, and the card ends with
    # every attempt back.
    assert len(card.refused) == len(set(card.refused)) <= 1 and card.left == 3
    entry = Keystore.open(state).get(ICCID)
    assert entry.pin == card.pin and entry.pending_pin is None and not entry.rejected
    assert card.pin == (new if honest else CARDS_PIN)


def test_at_the_guard_after_the_new_pin_is_refused_only_a_person_goes_on(tmp_path):
    state = tmp_path / "state"
    card = Card()
    new = _rotate(state, card)
    card.power_cycle()
    card.left = 2  # an attempt spent before, elsewhere
    outcome = pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    assert not outcome.paired and outcome.reason is Reason.RETRY_GUARD
    assert card.presented == [new] and card.left == 1
    entry = Keystore.open(state).get(ICCID)
    assert entry.rejected and entry.pending_pin == CARDS_PIN and not entry.pending_rejected
    # Another automatic run presents nothing.
    assert pair(card, Keystore.open(state), PolicySettings(), IMEI, None).reason is Reason.RETRY_GUARD
    assert card.presented == [new]
    # A person's `pin try` presents the old PIN, the only one not refused.
    answer = try_pin(card, Keystore.open(state), PairingJournal(state), PolicySettings(), IMEI,
                     TryRequest(below_guard=True, last_attempt=True, confirmed=True, iccid=ICCID))
    assert answer["outcome"] == "accepted" and answer["pin"] == PENDING
    assert card.presented == [new, CARDS_PIN] and card.left == 3
    entry = Keystore.open(state).get(ICCID)
    assert entry.pin == CARDS_PIN and entry.pending_pin is None and not entry.rejected


def test_a_person_s_pin_replaces_the_fallback(tmp_path):
    state = tmp_path / "state"
    _rotate(state, Card())
    Keystore.open(state).set_pin(ICCID, Pin("99990000"))
    entry = Keystore.open(state).get(ICCID)
    assert entry.pin == Pin("99990000") and entry.pending_pin is None


def test_the_fallback_is_sealed(tmp_path):
    state = tmp_path / "state"
    _rotate(state, Card())
    for path in state.rglob("*"):
        if path.is_file():
            assert CARDS_PIN.reveal().encode() not in path.read_bytes(), path


def test_a_store_written_before_the_fallback_still_opens(tmp_path):
    """Written by the code of main at 5f4ee7d (an entry, and one with a
    rotation pending): reads as no fallback, and settles as before."""
    state = tmp_path / "state"
    shutil.copytree(Path(__file__).parent / "data" / "keystore-before-fallback", state)
    state.chmod(0o700)
    for path in state.iterdir():
        path.chmod(0o600)
    keystore = Keystore.open(state)
    plain = keystore.get(Iccid(make_iccid(21)))
    assert plain.pin == Pin("11112222") and plain.pending_pin is None and plain.pending_origin is None
    changing = keystore.get(Iccid(make_iccid(22)))
    assert changing.pin == Pin("33334444") and changing.pending_pin == Pin("55556666")
    assert changing.pending_origin == ROTATION
    keystore.record_accepted(changing.iccid, IMEI.value)
    assert Keystore.open(state).get(changing.iccid).pending_pin is None


def test_a_second_rotation_waits_until_the_change_is_proven(tmp_path):
    """Changing again against an unproven change would send AT+CPWD with a
    PIN the card may not hold and lose the one it does."""
    state = tmp_path / "state"
    card = Card()
    new = _rotate(state, card)
    lifecycle = Lifecycle(card, Keystore.open(state), PairingJournal(state), PolicyConfig(), IMEI)
    with pytest.raises(LifecycleRefused, match="not proven yet"):
        lifecycle.rotate(REQUESTED)
    entry = Keystore.open(state).get(ICCID)
    assert entry.pin == new and entry.pending_pin == CARDS_PIN and entry.pending_origin == FALLBACK


def test_pin_list_shows_an_unproven_change(gateway):
    iccid = make_iccid(12)
    gateway.configure(str(gateway.root / "ttyUSB9"))  # no modem: the list needs none
    gateway.store_pin(iccid)
    keystore = gateway.keystore()
    keystore.stage_pending(Iccid(iccid), Pin("31415926"), ROTATION)
    assert keystore.promote_unproven(Iccid(iccid), IMEI.value, Pin("31415926")) is not None
    text = gateway.mtcctl("pin", "list")
    assert text.returncode == 0 and "change not proven yet: old PIN kept" in text.stdout
    listed = json.loads(gateway.mtcctl("pin", "list", "--json").stdout)["pins"]
    assert [e["pending"] for e in listed] == ["fallback"]
    assert "31415926" not in text.stdout + text.stderr


def test_doctor_names_an_unproven_change():
    from mtcd.doctor import entry_summary

    entry = {"state": "active", "transport": False, "pending": "fallback", "pending_rejected": False}
    assert "change not proven yet" in entry_summary(entry)
    assert "old PIN is kept" in entry_summary({**entry, "state": "rejected"})
    assert "never presented again" in entry_summary({**entry, "state": "rejected", "pending_rejected": True})


def test_a_person_s_pin_stored_during_the_change_wins(tmp_path):
    """`mtcctl pin set` while AT+CPWD is out: the OK promotes nothing and
    keeps no fallback over the person's PIN; the card may hold the change's
    new PIN, so that stays the other candidate (a rotation's pending PIN)."""
    state = tmp_path / "state"
    Keystore.open(state).set_pin(ICCID, CARDS_PIN)
    card = Card()
    person = Pin("99990000")
    sent = []
    card.change_pin = lambda old, new, for_iccid: (sent.append(new), Keystore.open(state).set_pin(ICCID, person),
                                                   PinOutcome.ACCEPTED)[2]
    result = Lifecycle(card, Keystore.open(state), PairingJournal(state), PolicyConfig(), IMEI).rotate(REQUESTED)
    assert result.outcome == "interrupted"
    entry = Keystore.open(state).get(ICCID)
    assert entry.pin == person
    assert entry.pending_pin == sent[0] and entry.pending_origin == ROTATION
