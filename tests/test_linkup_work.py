"""Work between a pairing decision and the link that no guarantee needs.

The journal's summary file is a cache of the journal (mtcd.statefile): the
decision's own line is fsynced before it, and a summary lost, old or torn
by a power cut is caught and rebuilt.  So writing it costs no fsync; the
journal line keeps its own.  Comparing PINs takes the stdlib's constant-time
comparison without loading OpenSSL for it."""

from __future__ import annotations

import os
import subprocess
import sys

from mtcd import statefile
from mtcd.journal import PairingJournal


def fsyncs_of(monkeypatch, action) -> list[str]:
    synced: list[str] = []
    real = os.fsync

    def counting(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    action()
    monkeypatch.setattr(os, "fsync", real)
    return synced


def test_a_decision_fsyncs_its_journal_line_not_the_summary(tmp_path, monkeypatch):
    journal = PairingJournal(tmp_path)
    journal.append("decision", outcome="refused", iccid="8949020000000000014", imei="359999010000015")
    synced = fsyncs_of(monkeypatch, lambda: journal.append(
        "decision", outcome="paired", iccid="8949020000000000014", imei="359999010000015"))
    assert synced == [str(journal.path)]
    # The summary was written all the same, and says what the journal says.
    assert statefile.load(tmp_path).last_decision["outcome"] == "paired"
    assert journal.last_association() == ("8949020000000000014", "359999010000015")


def test_a_summary_left_behind_by_a_power_cut_is_caught_up(tmp_path):
    """What a summary written without fsync may be after a power cut: the
    old one (its decision is behind the journal's), or torn."""
    journal = PairingJournal(tmp_path)
    journal.append("decision", outcome="paired", iccid="8949020000000000014", imei="359999010000015")
    old = (tmp_path / statefile.STATE_NAME).read_bytes()
    journal.append("decision", outcome="refused", iccid="8949020000000000022", imei="359999010000015")
    (tmp_path / statefile.STATE_NAME).write_bytes(old)
    assert journal.last("decision")["iccid"] == "8949020000000000022"
    (tmp_path / statefile.STATE_NAME).write_bytes(old[: len(old) // 2])
    assert journal.last("decision")["iccid"] == "8949020000000000022"
    assert journal.last_association() == ("8949020000000000014", "359999010000015")


def test_comparing_pins_does_not_load_openssl():
    code = ("import sys; from mtcd.secret import Pin; "
            "assert Pin('1234') == Pin('1234') and Pin('1234') != Pin('1235') and Pin('1234') != Pin('12345'); "
            "print(sorted(m for m in ('_hashlib', 'hmac', 'hashlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
