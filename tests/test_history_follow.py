"""`mtcctl history --json` as JSON lines, and `--follow` (issue 9 item 7):
a real `mtcctl history --follow` process while other processes journal,
across rotations, stopped by SIGINT/SIGTERM (exit 0) or by its reader
going away (141)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

import jsoncheck
from simfixtures import make_iccid

from mtcd.journal import PairingJournal


class Follower:
    """`mtcctl history --follow ...` with its stdout read line by line."""

    def __init__(self, gateway, *args: str):
        self.argv = ["history", "--follow", *args]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(gateway.config), *self.argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=gateway.env)
        self.buffer = b""
        self.lines: list[str] = []

    def wait_for_lines(self, count: int, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while len(self.lines) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"{len(self.lines)} lines of {count}: {self.lines[-3:]}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"stdout closed after {self.lines}; stderr: {self.proc.stderr.read()!r}"
                self.buffer += chunk
                *done, self.buffer = self.buffer.split(b"\n")
                self.lines += [line.decode() for line in done]
        return self.lines

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=20)
        self.lines += [line for line in (self.buffer + out).decode().splitlines()]
        return self.proc.returncode, err.decode()


@pytest.fixture
def journaled(gateway):
    gateway.configure("/dev/null")
    gateway.store_pin(make_iccid(1))
    return gateway


def test_history_json_is_json_lines(journaled):
    journaled.store_pin(make_iccid(2))
    run = journaled.mtcctl("history", "--json")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["pin-set", "pin-set"]
    assert all(jsoncheck.validate(json.loads(line), jsoncheck.schema("mtcctl-history")) == [] for line in lines)
    assert journaled.mtcctl("history", "--json", "--since", "2999-01-01").stdout == ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_follow_prints_what_another_process_journals_then_stops_cleanly(journaled, sig):
    follower = Follower(journaled, "--json")
    try:
        first = follower.wait_for_lines(1)
        assert json.loads(first[0])["event"] == "pin-set"
        journaled.store_pin(make_iccid(3))  # a real `mtcctl pin set`, another process
        journaled.mtcctl("pin", "forget", make_iccid(1))
        events = [json.loads(line) for line in follower.wait_for_lines(3)]
        assert [(e["event"], e["iccid"]) for e in events[1:]] == [("pin-set", make_iccid(3)),
                                                                   ("pin-forgotten", make_iccid(1))]
    finally:
        code, err = follower.stop(sig)
    assert (code, err) == (0, "")
    assert len(follower.lines) == 3  # nothing more, nothing twice
    for line in follower.lines:
        assert jsoncheck.validate(json.loads(line), jsoncheck.schema("mtcctl-history")) == []


def test_follow_goes_on_across_rotations_without_loss_or_repeat(journaled):
    follower = Follower(journaled, "--json", "--limit", "0")
    try:
        follower.wait_for_lines(1)
        # Another writer whose files rotate every ~20 lines, as the real one does at 1 MiB.
        writer = PairingJournal(journaled.state_dir, max_bytes=2000, keep=5)
        for n in range(60):
            writer.append("test-event", n=n)
            time.sleep(0.01)
        follower.wait_for_lines(61)
    finally:
        code, _ = follower.stop()
    assert code == 0
    assert (journaled.state_dir / "journal.jsonl.2").exists(), "the journal did not rotate twice"
    numbers = [json.loads(line).get("n") for line in follower.lines[1:]]
    assert numbers == list(range(60))


def test_follow_human_lines_and_since_filter(journaled):
    follower = Follower(journaled, "--since", "1h")
    try:
        follower.wait_for_lines(1)
        PairingJournal(journaled.state_dir).append("decision", outcome="refused", reason="no-sim", iccid=None)
        line = follower.wait_for_lines(2)[1]
    finally:
        code, _ = follower.stop()
    assert code == 0
    assert "decision" in line and "reason=no-sim" in line and "None" not in line


def test_follow_ends_with_141_when_its_reader_goes_away(journaled):
    """`mtcctl history --follow | head -1` ends although nothing new is journaled."""
    started = time.monotonic()
    done = subprocess.run(
        ["bash", "-c", f'"$0" -m mtcd.cli.ctl --config "$1" history --follow | head -1; echo "rc=${{PIPESTATUS[0]}}"',
         sys.executable, str(journaled.config)],
        capture_output=True, text=True, timeout=30, env=journaled.env)
    assert done.stdout.splitlines()[-1] == "rc=141", done
    assert "pin-set" in done.stdout.splitlines()[0]
    assert done.stderr == ""
    assert time.monotonic() - started < 20


def test_follow_waits_for_a_journal_that_does_not_exist_yet(gateway):
    gateway.configure("/dev/null")
    follower = Follower(gateway, "--json")
    try:
        time.sleep(0.5)
        gateway.store_pin(make_iccid(4))
        assert json.loads(follower.wait_for_lines(1)[0])["iccid"] == make_iccid(4)
    finally:
        code, _ = follower.stop()
    assert code == 0
