"""review7: the gate's ICCID read before a run's second candidate
(mtcd.gate._still_the_card) when that read fails: a modem busy with the SIM
(+CME ERROR 14 on every ICCID query: no reading) or gone quiet (a timeout).
Nothing goes out on the reading from before the refusal, no attempt is left
marked for a PIN that never went out, and the run ends (no loop); a read that
fails once and then answers with the same card keeps the two-candidate run."""

from __future__ import annotations

from mtcd.errors import ModemUnavailable
from mtcd.gate import pair
from mtcd.identity import Iccid, Imei
from mtcd.keystore import CURRENT, Keystore
from mtcd.policy import PolicySettings
from mtcd.secret import Pin

from simfixtures import StubCard, make_iccid, make_imei, stage_two_candidates

A = Iccid(make_iccid(61))
IMEI = Imei(make_imei(61))
CARDS_PIN = Pin("31415926")
STALE_PIN = Pin("16180339")


class RereadFails(StubCard):
    """Card A; the ICCID reads after its first refusal fail `failures`
    times (None: no reading, as first_answer gives when every query is
    refused; or `raises`: the modem gone quiet)."""

    def __init__(self, failures: int, raises: bool = False):
        super().__init__(CARDS_PIN, A)
        self.failures, self.raises = failures, raises
        self.reads_after_refusal = 0

    def iccid(self):
        if self.presented and self.failures > 0:
            self.failures -= 1
            self.reads_after_refusal += 1
            if self.raises:
                raise ModemUnavailable("/dev/ttyUSB2: the modem did not answer AT+CCID within 5 s")
            return None
        return super().iccid()


def _two_candidates(state):
    stage_two_candidates(state, A, STALE_PIN, CARDS_PIN)


def test_an_iccid_read_that_fails_once_costs_no_attempt_and_keeps_the_run(tmp_path):
    state = tmp_path / "state"
    _two_candidates(state)
    card = RereadFails(failures=1)
    outcome = pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    assert card.presented == [STALE_PIN, CARDS_PIN] and outcome.paired
    assert card.reads_after_refusal == 1


def test_an_iccid_read_that_keeps_failing_sends_nothing_more_and_ends(tmp_path):
    state = tmp_path / "state"
    _two_candidates(state)
    card = RereadFails(failures=100)
    outcome = pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    assert card.presented == [STALE_PIN], "a second candidate went out on the reading from before the refusal"
    assert not outcome.paired and card.left == 2
    entry = Keystore.open(state).get(A)
    assert not entry.attempt_started, "an attempt stays marked for a PIN that never went out"
    assert entry.rejected and entry.pending_pin == CARDS_PIN and not entry.pending_rejected


def test_a_modem_gone_quiet_at_the_read_sends_nothing_more(tmp_path):
    state = tmp_path / "state"
    _two_candidates(state)
    card = RereadFails(failures=100, raises=True)
    try:
        outcome = pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    except ModemUnavailable:
        outcome = None  # the session is lost; the next one reads the card afresh
    assert card.presented == [STALE_PIN]
    assert outcome is None or not outcome.paired
    entry = Keystore.open(state).get(A)
    assert not entry.attempt_started and entry.rejected and entry.candidate(CURRENT) == STALE_PIN
