"""SIM hot-swap where the slot allows it (--hotswap): the modem reports the
card gone and back, and the same card is found again.  Read-only."""

from __future__ import annotations

import time

import pytest

from conftest import ask_person, read_counters


def _state(bench) -> tuple[str, str | None]:
    try:
        with bench.open_modem() as modem:
            lock, iccid, *_ = read_counters(modem)
            return lock, iccid
    except Exception as exc:  # noqa: BLE001
        return f"error: {exc}", None


def test_pull_and_insert(request, bench):
    if not request.config.getoption("--hotswap"):
        pytest.skip("needs a slot that takes a SIM with the power on: --hotswap (the suite asks you to pull it)")
    ask_person(request, "Pull the SIM out now (leave the modem powered)")
    deadline = time.monotonic() + 30
    while _state(bench)[1] is not None and time.monotonic() < deadline:
        time.sleep(1)
    assert _state(bench)[1] is None, "the modem still reads a card"
    ask_person(request, "Insert the same SIM again")
    deadline = time.monotonic() + 30
    while _state(bench)[1] is None and time.monotonic() < deadline:
        time.sleep(1)
    lock, iccid = _state(bench)
    assert iccid == bench.start.iccid and lock in ("SIM PIN", "READY"), (lock, iccid)
