"""A run's second candidate goes only to the card whose ICCID it is stored
for (guarantee 1), even when the modem gives no word of a swap.

A stored card with a staged PIN has two candidates; when the card refuses
the current one, the gate may present the other in the same run.  The AT layer
checks a PIN against the ICCID it read last, and without a SIM-state URC
that reading is the one from before the first presentation: a card swapped
in right after the refusal would get the other candidate, and pay an
attempt for it.  The gate reads the ICCID again before a second candidate."""

from __future__ import annotations

from mtcd.gate import pair
from mtcd.identity import Iccid, Imei
from mtcd.keystore import STAGED, Keystore
from mtcd.policy import PinOutcome, PolicySettings
from mtcd.secret import Pin
from mtcd.simlock import SimLock
from mtcd.uicc import PresentationRefused

from simfixtures import StubCard, make_iccid, make_imei

A = Iccid(make_iccid(31))
B = Iccid(make_iccid(32))
IMEI = Imei(make_imei(31))
CARDS_PIN = Pin("31415926")
STALE_PIN = Pin("27182818")  # stored as current; the card holds the staged one


class BlindSwap(StubCard):
    """As the AT layer sees it: the PIN is checked against the ICCID read
    last.  Card A is swapped for B (which also asks for its PIN) right after
    A refuses a PIN, with no URC."""

    def __init__(self):
        super().__init__(CARDS_PIN, A)
        self.slot = A
        self.read: Iccid | None = None
        self.to: list[tuple[Iccid, Pin]] = []  # (the card in the slot, the PIN it got)

    def iccid(self):
        self.read = self.slot
        return self.slot

    def may_present(self, iccid):
        return self.state is SimLock.SIM_PIN and self.read == iccid

    def present_pin(self, pin, for_iccid):
        if for_iccid != self.read:
            raise PresentationRefused("the secret was not looked up for the ICCID of this card")
        self.to.append((self.slot, pin))
        if self.slot != A:
            self.left -= 1  # B's counter pays for A's PIN
            return PinOutcome.REJECTED
        outcome = super().present_pin(pin, for_iccid)
        if outcome is PinOutcome.REJECTED:
            self.slot = B
        return outcome


def _two_candidates(state):
    Keystore.open(state).set_pin(A, STALE_PIN)
    Keystore.open(state).stage_pending(A, CARDS_PIN, STAGED)


def test_the_second_candidate_does_not_go_to_a_card_swapped_in_unseen(tmp_path):
    state = tmp_path / "state"
    _two_candidates(state)
    card = BlindSwap()
    outcome = pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    assert len(card.to) == 1, f"a second candidate went out after the swap: {[str(s) for s, _ in card.to]}"
    assert card.to[0][0] == A
    assert not outcome.paired and outcome.iccid == B  # B is decided from scratch: unknown here


def test_without_a_swap_the_second_candidate_still_goes_to_the_same_card(tmp_path):
    """The extra read costs no attempt and keeps the two-candidate run."""
    state = tmp_path / "state"
    _two_candidates(state)
    card = StubCard(CARDS_PIN, A)
    outcome = pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    assert outcome.paired
    assert card.presented == [STALE_PIN, CARDS_PIN]
