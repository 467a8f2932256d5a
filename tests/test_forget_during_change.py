"""A person forgets the SIM's PIN (`mtcctl pin forget`, no modem needed)
while a rotation's AT+CPWD is out.  The person's word wins: nothing is
stored again.  Whatever the card answered, the rotation ends in a refusal
or an "interrupted" result, never a keystore error (exit 65,
"keystore-damaged", which tells an agent the sealed store is broken)."""

from __future__ import annotations

import pytest

from mtcd.errors import KeystoreError
from mtcd.journal import PairingJournal
from mtcd.keystore import Keystore
from mtcd.lifecycle import LifecycleRefused
from mtcd.policy import PinOutcome
from mtcd.secret import Pin

from test_chained_fallback import CARDS_PIN, ICCID, Card, _rotate, _store


class ForgottenMidChange(Card):
    def __init__(self, state, answer: PinOutcome):
        super().__init__()
        self.state_dir, self.answer = state, answer

    def change_pin(self, old, new, for_iccid):
        assert Keystore.open(self.state_dir).forget(ICCID)
        if self.answer is PinOutcome.REJECTED:
            self.pin = Pin("99990000")  # the card held another PIN: it refuses the old one
        outcome = super().change_pin(old, new, for_iccid)
        return PinOutcome.UNKNOWN if self.answer is PinOutcome.UNKNOWN else outcome


@pytest.mark.parametrize("answer", [PinOutcome.ACCEPTED, PinOutcome.REJECTED, PinOutcome.UNKNOWN])
def test_a_pin_forgotten_while_the_change_is_out_stays_forgotten_without_a_keystore_error(tmp_path, answer):
    state = tmp_path / "state"
    _store(state)
    card = ForgottenMidChange(state, answer)
    try:
        result = _rotate(state, card)
    except LifecycleRefused as refused:
        assert answer is PinOutcome.REJECTED and refused.exit_code == 1, refused
        assert "\n" not in str(refused) and CARDS_PIN.reveal() not in str(refused)
    except KeystoreError as damaged:  # what the old code raised: exit 65
        pytest.fail(f"keystore error for a person's forget: {damaged}")
    else:
        assert answer is not PinOutcome.REJECTED and result.outcome == "interrupted", result
        assert CARDS_PIN.reveal() not in result.detail and card.pin.reveal() not in result.detail
    assert Keystore.open(state).get(ICCID) is None
    events = [r["event"] for r in PairingJournal(state).events()]
    assert "pin-rotated" not in events, events
