"""The short fuzzing run of `make test`: every target of tests/fuzz/targets.py
over its saved corpus and a fixed number of seeded mutations (the same
inputs on every run), a few seconds in all.  `make fuzz` runs the long,
coverage-guided one (tests/fuzz/run.py).
"""

from __future__ import annotations

import threading
import time

import pytest

from fuzz import engine, targets
from fuzz import run as fuzz_run
from mtcd.at.reader import MAX_LINE, NEED_DATA, AtReader

# Inputs per target beyond the corpus: well under a second each on one core
# (the configuration loader writes files, hence fewer).
SHORT_RUN = {"reader": 5000, "parser": 8000, "apdu": 8000, "config": 2000, "control": 8000}


@pytest.mark.parametrize("target", sorted(targets.TARGETS))
def test_short_fuzz_run(target):
    started = time.monotonic()
    try:
        ran = engine.run(target, targets.TARGETS[target], seed=1, count=SHORT_RUN[target], per_input=2.0)
    except BaseException as exc:
        data = getattr(exc, "fuzz_input", None)
        pytest.fail(f"{target}: {type(exc).__name__}: {exc} on input {data!r}"[:2000])
    assert ran == len(engine.corpus(target)) + SHORT_RUN[target]
    assert time.monotonic() - started < 15, "the short run is meant to take about a second"


def test_every_target_has_a_corpus_and_a_name_in_the_runner():
    assert set(fuzz_run.TARGET_NAMES) == set(targets.TARGETS) == set(SHORT_RUN)
    for target in targets.TARGETS:
        assert engine.corpus(target), f"tests/fuzz/corpus/{target} is empty"


def test_the_engine_reports_an_unexpected_exception_with_its_input():
    def fragile(data):
        if b"\r" in data:
            raise ValueError("boom")

    with pytest.raises(ValueError) as caught:
        engine.run("reader", fragile, count=500)
    assert b"\r" in caught.value.fuzz_input


def test_the_engine_reports_a_hang():
    def slow(data):
        time.sleep(1)

    started = time.monotonic()
    with pytest.raises(engine.Hang):
        engine.run("apdu", slow, count=1, per_input=0.05)
    assert time.monotonic() - started < 0.5


def test_the_engine_reports_a_slow_input_outside_the_main_thread():
    caught = []

    def work():
        try:
            engine.run("apdu", lambda data: time.sleep(0.1), count=1, per_input=0.05)
        except engine.Hang as exc:
            caught.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert caught


def test_the_reader_target_notices_a_leaked_pin(monkeypatch):
    """The secret property can fail: without redaction the PIN comes out."""
    from mtcd.at import reader as reader_mod

    class Blind:
        def __init__(self, *args):
            pass

        def redact(self, line):
            return line, False

    monkeypatch.setattr(reader_mod, "SecretPattern", Blind)
    with pytest.raises(targets.Fault, match="PIN came out"):
        targets.reader(bytes([1, 0, 0]) + b"\r\n+CPIN: 71539284\r\nOK\r\n")


def test_an_endless_line_without_cr_or_lf_stays_bounded():
    """A modem that streams one line forever: the reader keeps at most
    MAX_LINE bytes, whatever the size of the pieces it is fed."""
    reader = AtReader()
    for size in (1, 7, 4096, 65536, 1 << 20):
        for _ in range(3):
            reader.receive_data(b"\xfe" * size)
            assert reader.next_event() is NEED_DATA
            assert len(reader._buf) <= MAX_LINE
    assert reader.discarded_lines == 1
