"""The last test of every session: the card is back as it started (same
ICCID, full counters, PIN enabled as it was and, after destructive tests,
the starting PIN).  conftest.py sorts it last and prints a banner when it
fails; it also runs when this test was deselected."""

from __future__ import annotations

from conftest import run_restore_check


def test_card_back_as_it_started(bench):
    problems = run_restore_check(bench)
    assert not problems, "THE TEST SIM WAS NOT RESTORED: " + "; ".join(problems)
