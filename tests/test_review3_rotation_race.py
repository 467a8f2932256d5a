"""review3: a rotation settles its AT+CPWD on the keystore entry it wrote,
not on whatever a person stored meanwhile.

`mtcctl pin set` and `mtcctl pin stage` need no modem, so they run while the
service's rotation waits for the card's answer to AT+CPWD (up to
modem.pin_timeout, 20 s on a gateway).  The rotation then settled the answer
on the entry as it is now: a refusal latched the PIN the person had just
stored (the card never saw it) and discarded the PIN the person had staged
for an over-the-air change that exited 0 (the back end then sends it: the
card holds a PIN nobody has, guarantee 5); an acceptance lost the card's new
PIN, because the person's store had removed the pending one.

The card here is a small model behind the Uicc calls `Lifecycle` makes; the
person is a second Keystore on the same directory (another process)."""

from __future__ import annotations

import pytest

from mtcd.config import PolicyConfig
from mtcd.identity import Iccid, Imei
from mtcd.journal import PairingJournal
from mtcd.keystore import CURRENT, PENDING, STAGED, Keystore
from mtcd.lifecycle import Lifecycle, LifecycleRefused, REQUESTED
from mtcd.policy import PinOutcome
from mtcd.secret import Pin
from mtcd.simlock import PinAttempts, SimLock

from simfixtures import make_iccid, make_imei

ICCID = Iccid(make_iccid(7))
IMEI = Imei(make_imei(7))
STORED_WRONG = Pin("11112222")
CARDS_PIN = Pin("27182818")
OTA_PIN = Pin("55667788")


class Card:
    """An unlocked card and the three Uicc calls a rotation makes; `during`
    runs while AT+CPWD is on its way (the person's command)."""

    def __init__(self, pin: Pin, during=None):
        self.pin = pin
        self.left = 3
        self.during = during
        self.presented: list[Pin] = []

    def lock(self, settle: bool = True) -> SimLock:
        return SimLock.READY

    def iccid(self) -> Iccid:
        return ICCID

    def attempts(self) -> PinAttempts:
        return PinAttempts(pin1=self.left, puk1=10)

    def change_pin(self, old: Pin, new: Pin, for_iccid: Iccid) -> PinOutcome:
        self.presented.append(old)
        if self.during is not None:
            self.during()
        if old == self.pin:
            self.pin, self.left = new, 3
            return PinOutcome.ACCEPTED
        self.left -= 1
        return PinOutcome.REJECTED


def _lifecycle(state, card) -> Lifecycle:
    return Lifecycle(card, Keystore.open(state), PairingJournal(state), PolicyConfig(), IMEI)


def test_a_refused_change_keeps_the_pin_a_person_stored_and_staged_meanwhile(tmp_path):
    state = tmp_path / "state"
    Keystore.open(state).set_pin(ICCID, STORED_WRONG)

    def person():
        # The right PIN stored, then an OTA PIN staged (`mtcctl pin stage`
        # exits 0: the back end sends the change to the card next).
        other = Keystore.open(state)
        other.set_pin(ICCID, CARDS_PIN)
        other.stage_pending(ICCID, OTA_PIN, STAGED, over_rotation=False)

    card = Card(CARDS_PIN, during=person)
    with pytest.raises(LifecycleRefused):
        _lifecycle(state, card).rotate(REQUESTED)
    assert card.presented == [STORED_WRONG] and card.left == 2
    entry = Keystore.open(state).get(ICCID)
    assert entry.pending_pin == OTA_PIN and entry.pending_origin == STAGED, \
        "the staged PIN that exited 0 is gone; after the OTA change nobody has the card's PIN"
    assert entry.pin == CARDS_PIN and not entry.rejected, \
        "the PIN the person stored was latched as rejected, though the card never saw it"


def test_an_accepted_change_keeps_the_cards_new_pin_after_a_person_stored_the_old_one(tmp_path):
    state = tmp_path / "state"
    Keystore.open(state).set_pin(ICCID, CARDS_PIN)
    # The person stores the PIN again (the same one) while AT+CPWD is out.
    card = Card(CARDS_PIN, during=lambda: Keystore.open(state).set_pin(ICCID, CARDS_PIN))
    try:
        _lifecycle(state, card).rotate(REQUESTED)
    except LifecycleRefused:
        pass  # a refusal is fine; losing the card's PIN is not
    entry = Keystore.open(state).get(ICCID)
    held = [entry.candidate(CURRENT), entry.candidate(PENDING)]
    assert card.pin != CARDS_PIN  # the card took the change
    assert card.pin in held, "the card holds the rotation's new PIN and the gateway has it nowhere"
    assert not entry.rejected


def test_a_lost_answer_keeps_the_new_pin_after_a_person_stored_the_old_one(tmp_path):
    state = tmp_path / "state"
    Keystore.open(state).set_pin(ICCID, CARDS_PIN)

    class Lost(Card):
        def change_pin(self, old, new, for_iccid):
            super().change_pin(old, new, for_iccid)
            return PinOutcome.UNKNOWN  # the card took it; its answer was lost

    card = Lost(CARDS_PIN, during=lambda: Keystore.open(state).set_pin(ICCID, CARDS_PIN))
    result = _lifecycle(state, card).rotate(REQUESTED)
    assert result.outcome == "interrupted"
    entry = Keystore.open(state).get(ICCID)
    assert card.pin != CARDS_PIN
    assert card.pin in [entry.candidate(CURRENT), entry.candidate(PENDING)], \
        "the card may hold the rotation's new PIN and the gateway has it nowhere"


# -- a SIM swapped while AT+CPWD was out --------------------------------------

OTHER = Iccid(make_iccid(8))


class SwappedAfterChange(Card):
    """The card takes the change, the modem answers `answer`, and before the
    counter is read the slot holds another SIM with 1 attempt left."""

    def __init__(self, pin: Pin, answer: PinOutcome):
        super().__init__(pin)
        self.answer = answer
        self.swapped = False

    def iccid(self) -> Iccid:
        return OTHER if self.swapped else ICCID

    def attempts(self) -> PinAttempts:
        return PinAttempts(pin1=1, puk1=10) if self.swapped else super().attempts()

    def change_pin(self, old, new, for_iccid):
        super().change_pin(old, new, for_iccid)
        self.swapped = True
        return self.answer


@pytest.mark.parametrize("answer", [PinOutcome.ACCEPTED, PinOutcome.UNKNOWN])
def test_another_cards_counter_never_settles_the_change(tmp_path, answer):
    state = tmp_path / "state"
    Keystore.open(state).set_pin(ICCID, CARDS_PIN)
    card = SwappedAfterChange(CARDS_PIN, answer)
    try:
        _lifecycle(state, card).rotate(REQUESTED)
    except LifecycleRefused:
        pass
    entry = Keystore.open(state).get(ICCID)
    assert card.pin != CARDS_PIN  # the first card holds the new PIN
    assert not (entry.rejected and entry.pending_pin is None), \
        "the other SIM's counter latched this SIM's PIN and dropped the new one: nobody has its PIN"
    assert card.pin in [entry.candidate(CURRENT), entry.candidate(PENDING)]


def test_a_pin_stored_before_the_marker_is_written_stops_the_change(tmp_path, monkeypatch):
    """`mtcctl pin set` lands between the rotation's staging and its attempt
    marker: the marker would sit on the person's PIN while AT+CPWD carries
    the old one, and the next boot's counter would latch the person's PIN,
    which the card never saw.  Nothing is sent instead."""
    state = tmp_path / "state"
    Keystore.open(state).set_pin(ICCID, STORED_WRONG)
    original = Keystore.begin_attempt

    def person_first(self, *args, **kwargs):
        Keystore.open(state).set_pin(ICCID, CARDS_PIN)
        monkeypatch.setattr(Keystore, "begin_attempt", original)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Keystore, "begin_attempt", person_first)
    card = Card(CARDS_PIN)
    with pytest.raises(LifecycleRefused):
        _lifecycle(state, card).rotate(REQUESTED)
    assert card.presented == [], "AT+CPWD went out with a PIN no longer stored"
    entry = Keystore.open(state).get(ICCID)
    assert entry.pin == CARDS_PIN and not entry.rejected and entry.attempt is None and entry.pending_pin is None
