"""review10: a person's `mtcctl pin forget` (no modem needed, another
process) may land at any moment of a rotation or an OTA staging, not only
while AT+CPWD is out.  Wherever it lands the person's word wins (nothing is
stored again) and the command ends as a one-line refusal (exit 1) or an
"interrupted" result that says nothing is stored, never a keystore error
(exit 65 "keystore-damaged" tells an agent the sealed store is broken)."""

from __future__ import annotations

import pytest

from mtcd.config import PolicyConfig
from mtcd.errors import KeystoreError
from mtcd.journal import PairingJournal
from mtcd.keystore import Keystore
from mtcd.lifecycle import REQUESTED, Lifecycle, LifecycleRefused, stage
from mtcd.policy import PinOutcome
from mtcd.secret import Pin, Puk
from mtcd.simlock import SimLock

from simfixtures import make_iccid
from test_chained_fallback import CARDS_PIN, ICCID, IMEI, Card, _store

OTA_PIN = Pin("55501234")


def _forget_first(state, target, name):
    """Run a person's forget, from another process's keystore, just before
    `target.name` runs."""
    method = getattr(target, name)

    def forgotten_first(*args, **kwargs):
        assert Keystore.open(state).forget(ICCID)
        return method(*args, **kwargs)

    setattr(target, name, forgotten_first)


def _no_pin_in(text: str, *pins: Pin) -> None:
    assert "\n" not in text
    for pin in (CARDS_PIN, OTA_PIN, *pins):
        assert pin.reveal() not in text


@pytest.mark.parametrize("moment", ["stage_pending", "begin_attempt"])
def test_a_forget_before_the_change_goes_out_refuses_it_and_sends_nothing(tmp_path, moment):
    state = tmp_path / "state"
    _store(state)
    keystore, card = Keystore.open(state), Card()
    _forget_first(state, keystore, moment)
    lifecycle = Lifecycle(card, keystore, PairingJournal(state), PolicyConfig(), IMEI)
    try:
        lifecycle.rotate(REQUESTED)
    except LifecycleRefused as refused:
        assert refused.exit_code == 1
        assert "forgotten" in str(refused) and "nothing was sent" in str(refused), refused
        _no_pin_in(str(refused))
    except KeystoreError as damaged:  # the old code: exit 65
        pytest.fail(f"keystore error for a person's forget: {damaged.exit_code} {damaged}")
    else:
        pytest.fail("a rotation went on for a forgotten PIN")
    assert card.changes == [] and card.pin == CARDS_PIN  # AT+CPWD never went out
    assert Keystore.open(state).get(ICCID) is None
    events = [r["event"] for r in PairingJournal(state).events()]
    assert "pin-rotated" not in events and "pin-rotation-interrupted" not in events, events


class RefusingCard(Card):
    """Holds another PIN than the stored one: it refuses AT+CPWD's old PIN."""

    def __init__(self):
        super().__init__()
        self.pin = Pin("99990000")


def test_a_forget_just_before_the_refusal_is_latched_is_a_refusal(tmp_path):
    # The rotation looked (the entry was there) and a forget landed before
    # record_rejected took the keystore's lock.
    state = tmp_path / "state"
    _store(state)
    keystore, card = Keystore.open(state), RefusingCard()
    _forget_first(state, keystore, "record_rejected")
    lifecycle = Lifecycle(card, keystore, PairingJournal(state), PolicyConfig(), IMEI)
    with pytest.raises(LifecycleRefused) as refused:
        lifecycle.rotate(REQUESTED)
    assert refused.value.exit_code == 1 and "forgot" in str(refused.value), refused.value
    _no_pin_in(str(refused.value), card.pin)
    assert Keystore.open(state).get(ICCID) is None


class ForgottenInFlight(Card):
    """The forget lands while AT+CPWD is out; then the card answers."""

    def __init__(self, state, answer: str):
        super().__init__()
        self.state_dir, self.answer = state, answer

    def change_pin(self, old, new, for_iccid):
        assert Keystore.open(self.state_dir).forget(ICCID)
        outcome = super().change_pin(old, new, for_iccid)
        if self.answer == "counter fell":  # an OK, but the count says the card refused
            self.pin, self.left = old, self.left - 1
        if self.answer == "swap":  # another card in the slot, its counter lower
            self._iccid, self.left = make_iccid(32), self.left - 1
        return PinOutcome.UNKNOWN if self.answer == "lost" else outcome


@pytest.mark.parametrize("answer", ["accepted", "lost", "counter fell", "swap"])
def test_a_forget_while_the_change_is_out_never_says_a_pairing_settles_it(tmp_path, answer):
    state = tmp_path / "state"
    _store(state)
    card = ForgottenInFlight(state, answer)
    lifecycle = Lifecycle(card, Keystore.open(state), PairingJournal(state), PolicyConfig(), IMEI)
    try:
        result = lifecycle.rotate(REQUESTED)
    except LifecycleRefused as refused:
        assert answer == "counter fell" and refused.exit_code == 1, refused
        assert "forgot" in str(refused)
        _no_pin_in(str(refused))
    except KeystoreError as damaged:
        pytest.fail(f"keystore error for a person's forget: {damaged}")
    else:
        assert answer != "counter fell" and result.outcome == "interrupted", result
        # Nothing is stored: no pairing settles anything for this SIM.
        assert "forgotten" in result.detail and "settles" not in result.detail, result.detail
        # The card may hold the rotation's PIN, which nobody has: the way
        # back is its PUK, and the person is told so.
        assert "nobody" in result.detail and "`mtcctl sim unblock`" in result.detail, result.detail
        _no_pin_in(result.detail)
    assert Keystore.open(state).get(ICCID) is None


def test_a_forget_just_before_an_ota_staging_is_stored_is_a_refusal(tmp_path):
    state = tmp_path / "state"
    _store(state)
    keystore = Keystore.open(state)
    _forget_first(state, keystore, "stage_pending")
    with pytest.raises(LifecycleRefused) as refused:
        stage(keystore, PairingJournal(state), PolicyConfig(), ICCID, OTA_PIN)
    assert refused.value.exit_code == 1 and "no PIN is stored" in str(refused.value), refused.value
    _no_pin_in(str(refused.value))
    assert Keystore.open(state).get(ICCID) is None


# -- a person's unblock (mtcctl sim unblock) meets a forget -------------------

NEW_PIN = Pin("44443333")


class BlockedCard(Card):
    """PUK-blocked; the PUK answer is `answer`, and a forget lands while it is out."""

    def __init__(self, state, answer: PinOutcome, forget_in_flight: bool = True):
        super().__init__()
        self.state_dir, self.answer, self.forget_in_flight = state, answer, forget_in_flight
        self.state = SimLock.SIM_PUK
        self.unblocks = 0

    def puk_attempts(self):
        return 10

    def unblock(self, puk, pin, for_iccid):
        self.unblocks += 1
        if self.forget_in_flight:
            assert Keystore.open(self.state_dir).forget(ICCID)
        return self.answer


def _unblock(state, card, keystore=None):
    keystore = keystore if keystore is not None else Keystore.open(state)
    return Lifecycle(card, keystore, PairingJournal(state), PolicyConfig(), IMEI).unblock(Puk("12345678"), NEW_PIN)


def test_a_forget_before_the_puk_goes_out_refuses_the_unblock_and_sends_nothing(tmp_path):
    state = tmp_path / "state"
    _store(state)
    keystore, card = Keystore.open(state), BlockedCard(state, PinOutcome.ACCEPTED, forget_in_flight=False)
    _forget_first(state, keystore, "stage_pending")
    try:
        _unblock(state, card, keystore)
    except LifecycleRefused as refused:
        assert refused.exit_code == 1 and "forgotten" in str(refused) and "nothing was sent" in str(refused)
        _no_pin_in(str(refused), NEW_PIN)
    except KeystoreError as damaged:
        pytest.fail(f"keystore error for a person's forget: {damaged.exit_code} {damaged}")
    else:
        pytest.fail("an unblock went on for a PIN forgotten before it began")
    assert card.unblocks == 0 and Keystore.open(state).get(ICCID) is None


@pytest.mark.parametrize("answer", [PinOutcome.ACCEPTED, PinOutcome.REJECTED, PinOutcome.UNKNOWN])
def test_a_forget_while_the_puk_is_out_stays_forgotten_and_is_said(tmp_path, answer):
    state = tmp_path / "state"
    _store(state)
    card = BlockedCard(state, answer)
    try:
        result = _unblock(state, card)
    except LifecycleRefused as refused:
        assert answer is PinOutcome.REJECTED and refused.exit_code == 1, refused
        _no_pin_in(str(refused), NEW_PIN)
    except KeystoreError as damaged:  # the old code, for an accepted PUK: exit 65
        pytest.fail(f"keystore error for a person's forget: {damaged.exit_code} {damaged}")
    else:
        assert answer is not PinOutcome.REJECTED, result
        # Not "its new PIN is stored" / "kept as pending": nothing is.
        assert "forgotten" in result.detail and "new PIN is stored" not in result.detail \
            and "kept as pending" not in result.detail, result.detail
        _no_pin_in(result.detail, NEW_PIN)
    assert Keystore.open(state).get(ICCID) is None


# -- an adoption enabling the SIM's PIN meets a forget ---------------------------

TRANSPORT = Pin("11112222")


class DisabledCard(Card):
    """Unlocked, its PIN disabled (the transport PIN); a forget lands before
    AT+CLCK goes out or while it is out."""

    def __init__(self, state, answer: PinOutcome | None):
        super().__init__()
        self.pin, self.enabled = TRANSPORT, False
        self.state_dir, self.answer = state, answer
        self.enables = 0

    def pin_enabled(self):
        return self.enabled

    def enable_pin(self, pin, for_iccid):
        self.enables += 1
        assert Keystore.open(self.state_dir).forget(ICCID)
        if self.answer is PinOutcome.ACCEPTED:
            self.enabled = True
        return self.answer


def _adopt(state, card, keystore=None):
    keystore = keystore if keystore is not None else Keystore.open(state)  # an empty store is falsy
    lifecycle = Lifecycle(card, keystore, PairingJournal(state), PolicyConfig(), IMEI)
    return lifecycle.adopt(TRANSPORT, pair=lambda: pytest.fail("no pairing for an unlocked card"))


def test_a_forget_before_an_adoption_enables_the_pin_refuses_it_and_sends_nothing(tmp_path):
    state = tmp_path / "state"
    keystore, card = Keystore.open(state), DisabledCard(state, PinOutcome.ACCEPTED)
    _forget_first(state, keystore, "begin_attempt")
    try:
        _adopt(state, card, keystore)
    except LifecycleRefused as refused:
        assert refused.exit_code == 1 and "forgotten" in str(refused), refused
        _no_pin_in(str(refused), TRANSPORT)
    except KeystoreError as damaged:
        pytest.fail(f"keystore error for a person's forget: {damaged.exit_code} {damaged}")
    else:
        pytest.fail("an adoption went on for a PIN forgotten before it began")
    assert card.enables == 0 and Keystore.open(state).get(ICCID) is None


@pytest.mark.parametrize("answer", [PinOutcome.ACCEPTED, PinOutcome.REJECTED])
def test_a_forget_while_an_adoption_enables_the_pin_is_a_refusal(tmp_path, answer):
    state = tmp_path / "state"
    card = DisabledCard(state, answer)
    try:
        _adopt(state, card)
    except LifecycleRefused as refused:
        assert refused.exit_code == 1 and "forgotten" in str(refused), refused
        _no_pin_in(str(refused), TRANSPORT)
    except KeystoreError as damaged:  # the old code: exit 65
        pytest.fail(f"keystore error for a person's forget: {damaged.exit_code} {damaged}")
    else:
        pytest.fail("an adoption went on for a PIN forgotten meanwhile")
    assert card.changes == [] and Keystore.open(state).get(ICCID) is None  # no rotation from it
