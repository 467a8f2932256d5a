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
from mtcd.keystore import Keystore
from mtcd.policy import PolicySettings
from mtcd.secret import Pin

from simfixtures import BlindSwap, StubCard, make_iccid, make_imei, stage_two_candidates

A = Iccid(make_iccid(31))
B = Iccid(make_iccid(32))
IMEI = Imei(make_imei(31))
CARDS_PIN = Pin("31415926")
STALE_PIN = Pin("27182818")  # stored as current; the card holds the staged one


class BlindSwapCard(BlindSwap, StubCard):
    """Card A holds the staged PIN; B is swapped in, unseen, after A refuses."""

    def __init__(self):
        super().__init__(CARDS_PIN, A)
        self.blind_swap(A, B)


def _two_candidates(state):
    stage_two_candidates(state, A, STALE_PIN, CARDS_PIN)


def test_the_second_candidate_does_not_go_to_a_card_swapped_in_unseen(tmp_path):
    state = tmp_path / "state"
    _two_candidates(state)
    card = BlindSwapCard()
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
