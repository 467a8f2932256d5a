"""Review 9: an over-the-air PIN staged while the last change is unproven
(three candidates), as the README's worked example now says: a dropped
change plus an OTA change never sent costs two attempts, and the fallback,
the card's PIN, waits for a person on the card's last attempt."""

from __future__ import annotations

from mtcd.config import PolicyConfig
from mtcd.journal import PairingJournal
from mtcd.keystore import Keystore
from mtcd.lifecycle import stage
from mtcd.policy import PolicySettings, Reason
from mtcd.recovery import TryRefused, TryRequest, try_pin
from mtcd.secret import Pin

from test_chained_fallback import CARDS_PIN, ICCID, IMEI, Card, _entry, _pair, _rotate, _store


def _try(state, card, **flags):
    return try_pin(card, Keystore.open(state), PairingJournal(state), PolicySettings(), IMEI,
                   TryRequest(confirmed=True, iccid=ICCID, **flags))


def test_a_stage_never_sent_after_a_dropped_change_leaves_the_fallback_for_a_person(tmp_path):
    state = tmp_path / "state"
    _store(state)
    card = Card(True)  # the modem drops the rotation's change
    _rotate(state, card)
    unproven = _entry(state).pin
    stage(Keystore.open(state), PairingJournal(state), PolicyConfig(), ICCID, Pin("55667788"))  # never sent
    card.power_cycle()
    outcome = _pair(state, card)
    assert not outcome.paired and outcome.reason is Reason.RETRY_GUARD
    assert "--below-guard --last-attempt" in outcome.decision.detail, outcome.decision.detail
    assert card.presented == [unproven, Pin("55667788")] and card.left == 1
    assert _pair(state, card).reason is Reason.RETRY_GUARD and len(card.presented) == 2  # nothing more
    # Only the flags the message names let the person present it.
    try:
        _try(state, card, below_guard=True)
    except TryRefused as refused:
        assert refused.reason == "last-attempt"
    else:
        raise AssertionError("presented on the last attempt without --last-attempt")
    answer = _try(state, card, below_guard=True, last_attempt=True)
    assert answer["outcome"] == "accepted" and answer["pin"] == "fallback"
    assert card.left == 3 and _entry(state).pin == CARDS_PIN and _entry(state).fallback_pin is None
