"""review3: the pairing gate latches a lost attempt only on the entry the
counter was compared with.

The policy decides "latch the lost attempt" from the stored view read at the
start of the walk and the counter read after it; the gate then latched
`keystore.get(iccid).attempt` as it was by then.  A person who stored the
right PIN in between (`mtcctl pin set`, which clears the marker) had it
latched as rejected although the card never saw it (attempt None was taken
for the current PIN), and a person who forgot the entry meanwhile made the
gate fail with an AttributeError traceback."""

from __future__ import annotations

from mtcd.gate import pair
from mtcd.identity import Iccid, Imei
from mtcd.keystore import CURRENT, Keystore
from mtcd.policy import PolicySettings
from mtcd.secret import Pin

from simfixtures import StubCard, make_iccid, make_imei

ICCID = Iccid(make_iccid(9))
IMEI = Imei(make_imei(9))
OLD, RIGHT = Pin("11112222"), Pin("27182818")


class LockedCard(StubCard):
    """Asks for its PIN; 2 attempts left (the lost one was refused); `person`
    runs when the counter is read, before the gate acts on it."""

    def __init__(self, person):
        super().__init__(RIGHT, ICCID, left=2)
        self.person = person

    def attempts(self):
        if self.person is not None:
            person, self.person = self.person, None
            person()
        return super().attempts()


def _lost_attempt(state):
    ks = Keystore.open(state)
    ks.set_pin(ICCID, OLD)
    ks.begin_attempt(ICCID, attempts_before=3, which=CURRENT)  # then the power failed


def test_a_pin_stored_while_the_counter_was_read_is_not_latched(tmp_path):
    state = tmp_path / "state"
    _lost_attempt(state)
    card = LockedCard(lambda: Keystore.open(state).set_pin(ICCID, RIGHT))
    outcome = pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    entry = Keystore.open(state).get(ICCID)
    assert not entry.rejected, "the PIN the person stored was latched as rejected; the card never saw it"
    # The person's PIN, with 2 attempts left (the guard), once; never the old one.
    assert card.presented == [RIGHT] and outcome.paired


def test_an_entry_forgotten_while_the_counter_was_read_is_a_refusal_not_a_traceback(tmp_path):
    state = tmp_path / "state"
    _lost_attempt(state)
    card = LockedCard(lambda: Keystore.open(state).forget(ICCID))
    outcome = pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    assert not outcome.paired and card.presented == []


def test_pin_try_does_not_latch_a_pin_stored_while_it_read_the_counter(tmp_path):
    """The same for `mtcctl pin try` (mtcd.recovery.try_pin), which latches
    the lost attempt itself before it plans its one presentation."""
    from mtcd.journal import PairingJournal
    from mtcd.recovery import TryRequest, try_pin

    state = tmp_path / "state"
    _lost_attempt(state)
    card = LockedCard(lambda: Keystore.open(state).set_pin(ICCID, RIGHT))
    answer = try_pin(card, Keystore.open(state), PairingJournal(state), PolicySettings(), IMEI, TryRequest())
    entry = Keystore.open(state).get(ICCID)
    assert not entry.rejected, "the PIN the person stored was latched as rejected; the card never saw it"
    assert answer["outcome"] == "accepted" and card.presented == [RIGHT]
