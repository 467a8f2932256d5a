"""Review 9: stores written by the code before "no change while unproven",
which let a second change begin while the first had only the modem's OK.
They open; no further change begins from them; pairing presents within
the guard, nothing refused twice, never a third candidate after two spent;
and it pairs, or holds the card's PIN for a person's `pin try` — except the
one state that code could reach and no store can undo: the card holding the
PIN between two unproven changes, which that code had already thrown away."""

from __future__ import annotations

import pytest

from mtcd.journal import PairingJournal
from mtcd.keystore import CURRENT, ROTATION, Keystore
from mtcd.lifecycle import LifecycleRefused, change_waits
from mtcd.policy import PolicySettings
from mtcd.recovery import TryRefused, TryRequest, try_pin
from mtcd.secret import Pin

from test_chained_fallback import CARDS_PIN, ICCID, IMEI, _entry, _pair, _rotate, _store
from test_review8_fallback import GuardedCard

FIRST, SECOND = Pin("11112222"), Pin("33334444")


def _chain(state, lost_answer: bool) -> None:
    """As the earlier code left it: FIRST set by a change with only the
    modem's OK (fallback CARDS_PIN), then a change to SECOND begun from it:
    its answer lost (pending SECOND, the attempt open) or answered OK
    (SECOND current, the fallback kept as the PIN last proven)."""
    _store(state)
    keystore = Keystore.open(state)
    keystore.stage_pending(ICCID, FIRST, ROTATION)
    keystore.promote_unproven(ICCID, None, FIRST)
    keystore.stage_pending(ICCID, SECOND, ROTATION)
    keystore.begin_attempt(ICCID, attempts_before=3, which=CURRENT, presenting=FIRST, change=True)
    if not lost_answer:
        keystore.promote_unproven(ICCID, None, SECOND)


@pytest.mark.parametrize("lost_answer", [True, False])
@pytest.mark.parametrize("holds", ["cards", "first", "second"])
def test_a_chain_left_by_the_earlier_code(tmp_path, lost_answer, holds):
    state = tmp_path / "state"
    _chain(state, lost_answer)
    entry = _entry(state)
    assert entry.fallback_pin == CARDS_PIN and change_waits(entry) is not None
    card = GuardedCard()
    card.pin = {"cards": CARDS_PIN, "first": FIRST, "second": SECOND}[holds]
    with pytest.raises(LifecycleRefused, match="not"):
        _rotate(state, card)
    assert card.changes == []
    card.power_cycle()
    paired = any(_pair(state, card).paired for _ in range(3))
    assert all(left >= 2 for left in card.spent_at), card.spent_at
    assert len(card.refused) == len(set(card.refused)) and card.left >= 1, card.refused
    assert len(card.presented) <= 2
    held = [p for p in (_entry(state).pin, _entry(state).pending_pin, _entry(state).fallback_pin) if p]
    if paired:
        assert _entry(state).pin == card.pin and change_waits(_entry(state)) is None
        return
    if holds == "first" and not lost_answer:
        # Thrown away by the earlier code when SECOND was promoted: nobody
        # has it.  The gateway spent two attempts (SECOND, the fallback)
        # and stops there: the card keeps its last one for its PUK holder.
        assert card.pin not in held and card.left == 1
        return
    assert card.pin in held
    for _ in range(2):
        try:
            try_pin(card, Keystore.open(state), PairingJournal(state), PolicySettings(), IMEI,
                    TryRequest(below_guard=True, last_attempt=True, confirmed=True, iccid=ICCID))
        except TryRefused:
            pass
    assert card.state.name == "READY" and _entry(state).pin == card.pin
