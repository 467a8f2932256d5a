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
def test_damaged_middle_line_names_its_number(journal, bad):
    journal.append("pin-set", iccid=ICCID_1)
    with open(journal.path, "ab") as f:
        f.write(bad + b"\n")
    journal.append("pin-forgotten", iccid=ICCID_1)
    with pytest.raises(StateError, match=r"journal.jsonl: line 2 is damaged$") as exc:
        journal.events()
    assert "\n" not in str(exc.value)


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
