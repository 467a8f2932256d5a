"""Read-only checks of a real modem and SIM: identities, lock state and
every source of the attempts counter agree with each other."""

from __future__ import annotations

import pytest

from mtcd.identity import Imei
from mtcd.simlock import SimLock
from mtcd.uicc import Uicc


def _needs_a_sim(bench) -> None:
    if bench.start.iccid is None:
        pytest.skip("no SIM in the modem's slot (a PC/SC session: the test SIM is in the reader)")


def test_imei_is_valid(modem):
    imei = modem.imei()
    assert isinstance(imei, Imei)
    sv = modem.imeisv()
    if sv is not None:
        assert sv.belongs_to(imei)


def test_sim_lock_is_understood(modem):
    assert Uicc(modem).lock() is not SimLock.OTHER


def test_iccid_sources_agree(bench, modem):
    _needs_a_sim(bench)
    queries = modem.dialect.iccid_queries()
    answers = {q.command.text: modem.first_answer([q]) for q in queries}
    found = {str(v) for v in answers.values() if v is not None}
    assert found, f"no ICCID source answered: {sorted(answers)}"
    assert len(found) == 1, f"ICCID sources disagree: {answers}"


def test_attempt_counters_agree(modem):
    if Uicc(modem).lock() is not SimLock.SIM_PIN:
        pytest.skip("the SIM is not asking for its PIN; counters are only compared then")
    answers = {}
    for q in modem.dialect.attempts_queries():
        got = modem.first_answer([q])
        if got is not None and got.pin1 is not None:
            answers[q.command.loggable] = got.pin1
    assert answers, "no source reports the PIN attempts"
    assert len(set(answers.values())) == 1, f"attempt counters disagree: {answers}"
