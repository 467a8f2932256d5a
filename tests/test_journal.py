"""The pairing journal: append-only JSON lines that survive power cuts."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mtcd.errors import StateError
from mtcd.journal import PairingJournal
from mtcd.secret import Pin, Puk

ICCID_1 = "8949100000000000017"
ICCID_2 = "8949100000000000025"
IMEI_1 = "490154203237518"
IMEI_2 = "356938035643809"


@pytest.fixture
def journal(tmp_path: Path) -> PairingJournal:
    return PairingJournal(tmp_path / "state")


def paired(journal, iccid=ICCID_1, imei=IMEI_1, reason="pin-accepted"):
    return journal.append(
        "decision", outcome="paired", reason=reason, imei=imei,
        imeisv=None, iccid=iccid, imsi="26201*****", pin_retries=3,
    )


def test_empty_journal(journal):
    assert journal.events() == []
    assert journal.last("decision") is None
    assert journal.last_association() == (None, None)
    assert journal.skipped_lines == 0
    assert not journal.path.exists()


def test_append_writes_one_json_line(journal):
    record = journal.append("pin-set", iccid=ICCID_1)
    lines = journal.path.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2
    on_disk = json.loads(lines[0])
    assert on_disk == record
    assert list(on_disk)[:2] == ["time", "event"]
    assert on_disk["event"] == "pin-set" and on_disk["iccid"] == ICCID_1
    when = datetime.fromisoformat(on_disk["time"])
    assert when.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 60


def test_events_in_order_and_types_kept(journal):
    journal.append("pin-set", iccid=ICCID_1)
    paired(journal)
    journal.append("pin-rejected", iccid=ICCID_2, retries=None, manual=False)
    events = journal.events()
    assert [e["event"] for e in events] == ["pin-set", "decision", "pin-rejected"]
    assert events[1]["pin_retries"] == 3 and events[1]["imeisv"] is None
    assert events[2]["manual"] is False and events[2]["retries"] is None


def test_file_and_directory_are_private(journal):
    old = os.umask(0)
    try:
        journal.append("pin-set", iccid=ICCID_1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(journal.path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(journal.path.parent).st_mode) == 0o700


def test_append_only_keeps_earlier_bytes(journal):
    journal.append("pin-set", iccid=ICCID_1)
    before = journal.path.read_bytes()
    journal.append("pin-forgotten", iccid=ICCID_1)
    assert journal.path.read_bytes().startswith(before)


@pytest.mark.parametrize("secret", [Pin("1234"), Pin("87654321"), Puk("12345678")])
def test_secrets_are_refused_without_showing_them(journal, secret):
    with pytest.raises(TypeError) as exc:
        journal.append("pin-set", iccid=ICCID_1, pin=secret)
    assert "'pin'" in str(exc.value)
    assert secret.reveal() not in str(exc.value)
    assert not journal.path.exists()  # nothing written at all


@pytest.mark.parametrize("value", [1.5, b"bytes", [1], {"a": 1}, object()])
def test_non_json_scalars_are_refused(journal, value):
    with pytest.raises(TypeError, match="'field'"):
        journal.append("decision", field=value)
    assert not journal.path.exists()


def test_reserved_and_bad_event_names(journal):
    with pytest.raises(TypeError, match="reserved"):
        journal.append("decision", time="yesterday")
    for bad in ("", None, 5):
        with pytest.raises(TypeError):
            journal.append(bad)
    assert not journal.path.exists()


def test_last(journal):
    paired(journal, reason="first")
    journal.append("decision", outcome="refused", reason="second")
    journal.append("pin-set", iccid=ICCID_1)
    assert journal.last("decision")["reason"] == "second"
    assert journal.last("pin-set")["iccid"] == ICCID_1
    assert journal.last("pin-forgotten") is None


def test_last_association_is_the_last_successful_pairing(journal):
    paired(journal, ICCID_1, IMEI_1)
    assert journal.last_association() == (ICCID_1, IMEI_1)
    # A foreign SIM was seen and refused: the association did not change.
    journal.append("association-changed", old_iccid=ICCID_1, new_iccid=ICCID_2,
                   old_imei=IMEI_1, new_imei=IMEI_1, change="sim")
    journal.append("decision", outcome="refused", reason="no-pin-for-iccid",
                   imei=IMEI_1, iccid=ICCID_2)
    assert journal.last_association() == (ICCID_1, IMEI_1)
    # It paired in another gateway body: now that is the association.
    paired(journal, ICCID_1, IMEI_2)
    assert journal.last_association() == (ICCID_1, IMEI_2)


def test_survives_reopen(journal):
    paired(journal)
    again = PairingJournal(journal.path.parent)
    assert again.last_association() == (ICCID_1, IMEI_1)


# --- power cuts and damage ---

@pytest.mark.parametrize("cut", [1, 10, -2])
def test_torn_last_line_is_skipped_and_counted(journal, cut):
    journal.append("pin-set", iccid=ICCID_1)
    good = journal.path.read_bytes()
    paired(journal)
    whole = journal.path.read_bytes()
    # A power cut in the middle of the second append.
    journal.path.write_bytes(whole[: len(good) + (cut if cut > 0 else len(whole) - len(good) + cut)])
    events = journal.events()
    assert [e["event"] for e in events] == ["pin-set"]
    assert journal.skipped_lines == 1


def test_zero_filled_tail_counts_as_torn(journal):
    """ext4 can leave a block of NULs where the unsynced append was."""
    journal.append("pin-set", iccid=ICCID_1)
    with open(journal.path, "ab") as f:
        f.write(b"\0" * 100)
    assert len(journal.events()) == 1 and journal.skipped_lines == 1


def test_append_after_a_torn_line_repairs_the_tail(journal):
    journal.append("pin-set", iccid=ICCID_1)
    with open(journal.path, "ab") as f:
        f.write(b'{"time": "2026-01-01T00:00:00+00:00", "event": "deci')
    journal.append("pin-forgotten", iccid=ICCID_1)
    events = journal.events()
    assert [e["event"] for e in events] == ["pin-set", "pin-forgotten"]
    assert journal.skipped_lines == 0


def test_append_after_a_file_that_is_only_a_torn_line(journal):
    journal.path.parent.mkdir(mode=0o700)
    journal.path.write_bytes(b'{"time": "20')
    os.chmod(journal.path, 0o600)
    journal.append("pin-set", iccid=ICCID_1)
    assert [e["event"] for e in journal.events()] == ["pin-set"]


@pytest.mark.parametrize(
    "bad",
    [b"not json", b"", b"[1, 2]", b'{"event": "x"}', b'{"time": "t", "event": 5}', b"\xff\xfe"],
)
def test_damaged_middle_line_is_reported_with_its_number_and_skipped(journal, bad, caplog):
    journal.append("pin-set", iccid=ICCID_1)
    with open(journal.path, "ab") as f:
        f.write(bad + b"\n")
    journal.append("pin-forgotten", iccid=ICCID_1)
    caplog.set_level("WARNING", logger="mtcd")
    assert [e["event"] for e in journal.events()] == ["pin-set", "pin-forgotten"]
    assert journal.skipped_lines == 1
    assert [e["event"] for e in journal.recent()] == ["pin-set", "pin-forgotten"]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    # Once per process, however many times it is read.
    assert len(warnings) == 1 and warnings[0].endswith("journal.jsonl: line 2 is damaged; skipped")


def test_many_appends_then_read(journal):
    for n in range(200):
        journal.append("decision", outcome="refused", reason=f"r{n}", pin_retries=n % 4)
    events = journal.events()
    assert len(events) == 200 and events[-1]["reason"] == "r199"


def test_unwritable_journal_is_a_state_error(journal):
    journal.path.mkdir(parents=True)  # a directory where the file should be
    with pytest.raises(StateError, match="cannot write .*journal.jsonl"):
        journal.append("pin-set", iccid=ICCID_1)
    with pytest.raises(StateError, match="cannot read .*journal.jsonl"):
        journal.events()


# --- any scalar value comes back as written, one line per event ---


scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text())


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(st.text(min_size=1).filter(lambda k: k not in ("time", "event")),
                              scalars, max_size=5),
       event=st.text(min_size=1))
def test_round_trip_of_any_scalar(tmp_path, fields, event):
    journal = PairingJournal(tmp_path / "state")
    before = len(journal.events())
    written = journal.append(event, **fields)
    events = journal.events()
    assert len(events) == before + 1
    assert events[-1] == written
    assert journal.path.read_bytes().count(b"\n") == before + 1


# --- rotation, the summary, bounded reading ---

import subprocess  # noqa: E402
import sys  # noqa: E402
import tracemalloc  # noqa: E402

import mtcd.journal as journal_module  # noqa: E402
from mtcd import statefile  # noqa: E402


def test_rotation_at_the_size_bound_keeps_a_bounded_number_of_files(tmp_path):
    journal = PairingJournal(tmp_path / "state", max_bytes=1000, keep=3)
    for n in range(200):
        journal.append("pin-set", iccid=ICCID_1, n=n)
        files = journal.files()
        assert len(files) <= 4
        assert all(p.stat().st_size <= 1000 for p in files)
    assert [p.name for p in journal.files()] == ["journal.jsonl.3", "journal.jsonl.2", "journal.jsonl.1", "journal.jsonl"]
    # What is kept is the newest, in order, with no gap and nothing twice.
    kept = [e["n"] for e in journal.events()]
    assert kept == list(range(200 - len(kept), 200)) and len(kept) > 15
    assert [e["n"] for e in journal.recent(10)] == list(range(190, 200))
    assert [e["n"] for e in journal.backwards()] == kept[::-1]


def test_last_decision_and_association_survive_rotation(tmp_path):
    journal = PairingJournal(tmp_path / "state", max_bytes=800, keep=2)
    paired(journal, ICCID_1, IMEI_1)
    journal.append("decision", outcome="refused", reason="unknown-sim", imei=IMEI_1, iccid=ICCID_2)
    for n in range(50):  # pushes both decisions out of the kept files
        journal.append("pin-set", iccid=ICCID_1, n=n)
    assert all(e["event"] == "pin-set" for e in journal.events())
    again = PairingJournal(journal.state_dir)
    assert again.last("decision")["iccid"] == ICCID_2
    assert again.last_association() == (ICCID_1, IMEI_1)


def test_summary_missing_or_damaged_is_rebuilt_from_the_journal(tmp_path, caplog):
    journal = PairingJournal(tmp_path / "state", max_bytes=600, keep=4)
    paired(journal, ICCID_1, IMEI_1)
    for n in range(3):
        journal.append("pin-set", iccid=ICCID_1, n=n)
    journal.append("decision", outcome="refused", reason="unknown-sim", imei=IMEI_2, iccid=ICCID_2)
    journal.append("pin-set", iccid=ICCID_2)
    assert b'"paired"' not in journal.path.read_bytes()  # it is in an older file
    summary = journal.state_dir / statefile.STATE_NAME
    good = summary.read_bytes()
    flipped = bytearray(good)
    flipped[good.index(ICCID_2.encode()) + 3] ^= 0x01  # still JSON, another ICCID
    caplog.set_level("WARNING", logger="mtcd")
    for damage in (None, bytes(flipped), b"", good[:40], b"\xff" * 10):
        if damage is None:
            summary.unlink()
        else:
            summary.write_bytes(damage)
        assert journal.last("decision")["iccid"] == ICCID_2
        assert journal.last_association() == (ICCID_1, IMEI_1)
    assert any("journal.state is damaged (checksum mismatch)" in r.getMessage() for r in caplog.records)


def test_unreadable_journal_and_no_summary_is_unknown_not_an_error(journal, caplog):
    journal.path.mkdir(parents=True)  # a directory where the file should be
    caplog.set_level("WARNING", logger="mtcd")
    assert journal.last("decision") is None
    assert journal.last("pin-set") is None
    assert journal.last_association() == (None, None)
    assert any("cannot read the journal" in r.getMessage() for r in caplog.records)


def test_power_cut_between_journal_line_and_summary(tmp_path):
    """A real process killed where the summary would be written."""
    state = tmp_path / "state"
    journal = PairingJournal(state)
    paired(journal, ICCID_1, IMEI_1)
    script = (
        "import os, sys\n"
        "from mtcd import statefile\n"
        "from mtcd.journal import PairingJournal\n"
        "statefile.save = lambda *a, **k: os._exit(9)\n"
        f"PairingJournal(sys.argv[1]).append('decision', outcome='paired', imei={IMEI_2!r}, iccid={ICCID_2!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(state)], capture_output=True)
    assert done.returncode == 9, done.stderr
    assert statefile.load(state).last_decision["iccid"] == ICCID_1  # the summary is behind
    again = PairingJournal(state)
    assert again.last("decision")["iccid"] == ICCID_2
    assert again.last_association() == (ICCID_2, IMEI_2)
    # The next decision writes a summary that is whole again.
    again.append("decision", outcome="refused", reason="no-sim", imei=IMEI_2, iccid=None)
    on_disk = statefile.load(state)
    assert on_disk.last_decision["reason"] == "no-sim" and on_disk.last_paired == (ICCID_2, IMEI_2)


def test_no_journal_scan_when_the_summary_is_current(journal, monkeypatch):
    paired(journal)
    monkeypatch.setattr(journal_module, "_records_backward", lambda *a, **k: pytest.fail("journal scanned"))
    assert journal.last("decision")["iccid"] == ICCID_1
    assert journal.last_association() == (ICCID_1, IMEI_1)


def test_rebuild_and_history_read_a_big_journal_in_bounded_memory(tmp_path):
    """30 MB (as left by a version without rotation), the only decision at
    its start: the rebuild reads all of it, backwards, holding little."""
    state = tmp_path / "state"
    journal = PairingJournal(state)
    paired(journal, ICCID_1, IMEI_1)
    line = (json.dumps({"time": "2026-01-01T00:00:00.000+00:00", "event": "pin-revealed",
                        "iccid": ICCID_1, "via": "keyring"}) + "\n").encode()
    with open(journal.path, "ab") as f:
        f.write(line * ((30 << 20) // len(line)))
    (state / statefile.STATE_NAME).unlink()
    tracemalloc.start()
    try:
        assert PairingJournal(state).last_association() == (ICCID_1, IMEI_1)
        assert len(PairingJournal(state).recent(50)) == 50
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, peak


@settings(max_examples=60, deadline=None)
@given(lines=st.lists(st.one_of(
    st.binary(max_size=40).filter(lambda b: b"\n" not in b),
    st.builds(lambda n: b"x" * n, st.integers(0, 300)),
), max_size=25), chunk=st.integers(1, 50))
def test_backward_and_forward_readers_agree(tmp_path_factory, lines, chunk):
    """Any bytes, any chunk size: both readers see the same lines, and a
    line longer than MAX_LINE is never handed out."""
    path = tmp_path_factory.mktemp("r") / "f"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    expected = [line if len(line) <= 100 else None for line in lines]
    offsets = [sum(len(x) + 1 for x in lines[:i]) for i in range(len(lines))]
    saved = journal_module._CHUNK, journal_module.MAX_LINE
    journal_module._CHUNK, journal_module.MAX_LINE = chunk, 100
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        backward = list(journal_module._reverse_lines(fd, 0, end))
        forward = list(journal_module._forward_lines(fd, end))
    finally:
        os.close(fd)
        journal_module._CHUNK, journal_module.MAX_LINE = saved
    assert backward[::-1] == list(zip(offsets, expected))
    assert forward == [(o, n, line) for n, (o, line) in enumerate(zip(offsets, expected), 1)]


def test_an_event_too_large_to_read_back_is_refused(journal):
    with pytest.raises(ValueError, match="too large"):
        journal.append("pin-set", note="x" * (70 << 10))
    assert not journal.path.exists()


def test_the_journal_and_its_summary_never_hold_a_pin(journal):
    pin = Pin("27182818")
    with pytest.raises(TypeError):
        journal.append("decision", outcome="paired", iccid=ICCID_1, pin=pin)
    paired(journal)
    for p in journal.state_dir.iterdir():
        assert b"27182818" not in p.read_bytes()
