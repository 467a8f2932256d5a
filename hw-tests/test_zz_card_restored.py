"""The last tests of every session: the card is back as it started (same
ICCID, full counters, PIN enabled as it was and, after destructive tests,
the starting PIN), in the modem and in the PC/SC reader.  conftest.py
sorts them last and prints a banner when one fails; each check also runs
when its test was deselected."""

from __future__ import annotations

import pytest

from conftest import run_reader_restore_check, run_restore_check


def test_card_back_as_it_started(bench):
    problems = run_restore_check(bench)
    assert not problems, "THE TEST SIM WAS NOT RESTORED: " + "; ".join(problems)


@pytest.mark.pcsc
def test_pcsc_card_back_as_it_started(pcsc_bench):
    problems = run_reader_restore_check(pcsc_bench)
    assert not problems, "THE TEST SIM IN THE PC/SC READER WAS NOT RESTORED: " + "; ".join(problems)
