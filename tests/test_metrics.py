"""The Prometheus textfile: read back with a small parser of the text
exposition format (0.0.4), written for real into a temporary directory."""

from __future__ import annotations

import logging
import math
import os
import re
import stat
import threading
from enum import Enum

import pytest
from hypothesis import given, strategies as st

from mtcd.metrics import Metrics, escape_label_value, format_value

FAMILIES = {
    "mtcd_up": "gauge",
    "mtcd_paired": "gauge",
    "mtcd_link_up": "gauge",
    "mtcd_modem_up": "gauge",
    "mtcd_sim_present": "gauge",
    "mtcd_pin_retries": "gauge",
    "mtcd_decisions_total": "counter",
    "mtcd_last_decision_timestamp_seconds": "gauge",
}

_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m[1]], text)


def parse(text: str) -> tuple[dict[str, str], dict[str, str], dict[tuple, float]]:
    """(types, helps, samples) with samples keyed by (name, sorted label pairs).
    Strict: every line must be a HELP, a TYPE or a sample, every sample of a
    family declared before it, no sample twice."""
    assert text.endswith("\n")
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    samples: dict[tuple, float] = {}
    for line in text.split("\n")[:-1]:  # the format ends lines with LF only
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            helps[name] = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("gauge", "counter"), line
            assert name not in types, f"TYPE twice: {line}"
            types[name] = kind
        else:
            m = _SAMPLE.fullmatch(line)
            assert m, f"not a sample line: {line!r}"
            name, labels, value = m[1], m[2], m[3]
            assert name in types, f"sample before its TYPE: {line}"
            pairs = []
            if labels:
                body = labels[1:-1]
                pos = 0
                while pos < len(body):
                    lm = _LABEL.match(body, pos)
                    assert lm, f"bad labels: {labels}"
                    pairs.append((lm[1], _unescape(lm[2])))
                    pos = lm.end()
            key = (name, tuple(sorted(pairs)))
            assert key not in samples, f"sample twice: {line}"
            samples[key] = float(value)
    return types, helps, samples


def read(path) -> tuple[dict, dict, dict]:
    return parse(path.read_text())


def test_initial_file(tmp_path):
    path = tmp_path / "mtcd.prom"
    assert Metrics(path).write() is True
    types, helps, samples = read(path)
    assert types == FAMILIES
    assert set(helps) == set(FAMILIES) and all(helps.values())
    assert samples == {
        ("mtcd_up", ()): 1,
        ("mtcd_paired", ()): 0,
        ("mtcd_link_up", ()): 0,
        ("mtcd_modem_up", ()): 0,
        ("mtcd_sim_present", ()): 0,
    }


def test_values_after_decisions(tmp_path):
    path = tmp_path / "mtcd.prom"
    m = Metrics(path)
    m.set_modem(True)
    m.set_sim_present(True)
    m.record_decision("refused", "retry-guard", 1, when=1714560000.0)
    m.record_decision("refused", "retry-guard", 1, when=1714560001.0)

    class Reason(Enum):
        UNKNOWN_SIM = "unknown-sim"

    m.record_decision("refused", Reason.UNKNOWN_SIM, None, when=1714560002.0)
    m.record_decision("paired", None, 3, when=1714560003.5)
    m.set_link(True)
    m.write()
    _, _, samples = read(path)
    assert samples == {
        ("mtcd_up", ()): 1,
        ("mtcd_paired", ()): 1,
        ("mtcd_link_up", ()): 1,
        ("mtcd_modem_up", ()): 1,
        ("mtcd_sim_present", ()): 1,
        ("mtcd_pin_retries", ()): 3,
        ("mtcd_decisions_total", (("outcome", "paired"), ("reason", ""))): 1,
        ("mtcd_decisions_total", (("outcome", "refused"), ("reason", "retry-guard"))): 2,
        ("mtcd_decisions_total", (("outcome", "refused"), ("reason", "unknown-sim"))): 1,
        ("mtcd_last_decision_timestamp_seconds", ()): 1714560003.5,
    }


def test_unknown_retries_leave_the_series_out(tmp_path):
    path = tmp_path / "mtcd.prom"
    m = Metrics(path)
    m.record_decision("refused", "pin-rejected", 2)
    m.write()
    assert read(path)[2][("mtcd_pin_retries", ())] == 2
    m.record_decision("paired", None, None)  # after an unlock: not read
    m.write()
    _, _, samples = read(path)
    assert ("mtcd_pin_retries", ()) not in samples
    assert not [l for l in path.read_text().splitlines() if l.startswith("mtcd_pin_retries")]
    m.set_pin_retries(3)
    m.write()
    assert read(path)[2][("mtcd_pin_retries", ())] == 3


def test_sim_removed_after_pairing(tmp_path):
    path = tmp_path / "mtcd.prom"
    m = Metrics(path)
    m.record_decision("paired", None, None)
    m.set_link(True)
    m.set_paired(False)
    m.set_link(False)
    m.set_sim_present(False)
    m.write()
    _, _, samples = read(path)
    assert samples[("mtcd_paired", ())] == 0 and samples[("mtcd_link_up", ())] == 0
    # the counter keeps the decision
    assert samples[("mtcd_decisions_total", (("outcome", "paired"), ("reason", "")))] == 1


def test_last_decision_time_defaults_to_now(tmp_path):
    import time

    path = tmp_path / "mtcd.prom"
    m = Metrics(path)
    before = time.time()
    m.record_decision("paired")
    m.write()
    stamp = read(path)[2][("mtcd_last_decision_timestamp_seconds", ())]
    assert before - 1 <= stamp <= time.time() + 1


@pytest.mark.parametrize("outcome", ["ok", "", None, "PAIRED"])
def test_bad_outcome(outcome):
    with pytest.raises(ValueError, match="outcome must be"):
        Metrics(None).record_decision(outcome, None, None)


@pytest.mark.parametrize("retries", [-1, True, "3", 2.0])
def test_bad_retries(retries):
    with pytest.raises(ValueError, match="pin_retries"):
        Metrics(None).record_decision("refused", "retry-guard", retries)


@given(st.text())
def test_label_values_round_trip(reason):
    m = Metrics(None)
    m.record_decision("refused", reason, None, when=0)
    _, _, samples = parse(m.render())
    assert samples[("mtcd_decisions_total", (("outcome", "refused"), ("reason", reason)))] == 1


def test_label_escaping():
    assert escape_label_value('a\\b"c\nd') == 'a\\\\b\\"c\\nd'


def test_value_formatting():
    assert format_value(True) == "1" and format_value(False) == "0"
    assert format_value(3) == "3"
    assert format_value(1714560003.5) == "1714560003.5"
    assert format_value(math.nan) == "NaN"
    assert format_value(math.inf) == "+Inf" and format_value(-math.inf) == "-Inf"


# --- the file ---------------------------------------------------------------

def test_no_path_writes_nothing(tmp_path):
    m = Metrics(None)
    m.record_decision("paired")
    assert m.write() is False
    assert list(tmp_path.iterdir()) == []


def test_replaced_atomically_with_mode_0644_whatever_the_umask(tmp_path):
    path = tmp_path / "mtcd.prom"
    path.write_text("old\n")
    os.chmod(path, 0o600)
    old_umask = os.umask(0o077)  # as under a unit with UMask=0077
    try:
        m = Metrics(path)
        m.record_decision("refused", "no-sim")
        assert m.write() is True
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["mtcd.prom"]  # no temporary left
    assert read(path)[0] == FAMILIES


def test_collector_never_reads_half_a_file(tmp_path):
    """A reader polling the file while it is rewritten sees whole files only."""
    path = tmp_path / "mtcd.prom"
    m = Metrics(path)
    for i in range(50):  # a long file: many counter series
        m.record_decision("refused", f"reason-{i:02d}-" + "x" * 40, 2)
    m.write()
    stop = threading.Event()
    seen: list[str] = []

    def collector():
        while not stop.is_set():
            seen.append(path.read_text())

    reader = threading.Thread(target=collector)
    reader.start()
    try:
        for i in range(300):
            m.record_decision("refused", f"reason-{i % 50:02d}-" + "x" * 40, i % 4)
            assert m.write()
    finally:
        stop.set()
        reader.join()
    assert len(seen) > 10
    for text in set(seen):  # thousands of reads, a few hundred distinct files: each checked once
        types, _, samples = parse(text)
        assert types == FAMILIES
        assert sum(1 for (name, _) in samples if name == "mtcd_decisions_total") == 50
    assert [p.name for p in tmp_path.iterdir()] == ["mtcd.prom"]


@pytest.mark.parametrize("where", ["missing-dir", "under-a-file", "is-a-directory"])
def test_unwritable_path_warns_once_and_never_raises(tmp_path, caplog, where):
    if where == "missing-dir":
        path = tmp_path / "nope" / "mtcd.prom"
    elif where == "under-a-file":
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "mtcd.prom"
    else:
        path = tmp_path / "mtcd.prom"
        path.mkdir()
    m = Metrics(path)
    with caplog.at_level(logging.WARNING, logger="mtcd"):
        assert m.write() is False
        m.record_decision("paired")
        assert m.write() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(path) in warnings[0].getMessage()
    assert "Traceback" not in caplog.text
    # no temporary left behind
    assert sorted(p.name for p in tmp_path.rglob("*.tmp")) == []


def test_warns_again_after_recovering(tmp_path, caplog):
    directory = tmp_path / "textfile"
    path = directory / "mtcd.prom"
    m = Metrics(path)
    with caplog.at_level(logging.INFO, logger="mtcd"):
        assert m.write() is False
        directory.mkdir()
        assert m.write() is True
        directory.joinpath("mtcd.prom").unlink()
        directory.rmdir()
        assert m.write() is False
    levels = [r.levelname for r in caplog.records if r.name == "mtcd"]
    assert levels == ["WARNING", "INFO", "WARNING"]


def test_updates_from_two_threads(tmp_path):
    m = Metrics(tmp_path / "mtcd.prom")

    def decide(outcome):
        for _ in range(500):
            m.record_decision(outcome, None if outcome == "paired" else "no-sim", None)

    threads = [threading.Thread(target=decide, args=(o,)) for o in ("paired", "refused")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, _, samples = parse(m.render())
    assert samples[("mtcd_decisions_total", (("outcome", "paired"), ("reason", "")))] == 500
    assert samples[("mtcd_decisions_total", (("outcome", "refused"), ("reason", "no-sim")))] == 500


def test_a_stopped_service_leaves_no_paired_gateway_behind(tmp_path):
    path = tmp_path / "mtcd.prom"
    m = Metrics(path)
    m.set_modem(True)
    m.record_decision("paired", None, 3, when=1714560000.0)
    m.set_link(True)
    m.mark_stopped()
    assert m.write()
    _, _, samples = read(path)
    assert samples[("mtcd_up", ())] == 0
    assert samples[("mtcd_paired", ())] == 0 and samples[("mtcd_link_up", ())] == 0
    assert samples[("mtcd_modem_up", ())] == 0
    # What was counted stays: a restart starts its own counters anyway.
    assert samples[("mtcd_decisions_total", (("outcome", "paired"), ("reason", "")))] == 1
