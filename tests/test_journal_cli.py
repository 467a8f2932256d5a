"""The pairing journal through the real commands against the simulator: a
damaged journal never keeps the gateway offline, the IMSI is masked unless
configured, history is bounded and reads across rotated files, and a power
cut between the journal line and its summary changes nothing."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from simfixtures import TEST_IMSI, TEST_PIN, make_card, sim_modem

MASKED_IMSI = TEST_IMSI[:5] + "*" * (len(TEST_IMSI) - 5)


def journal_lines(gateway) -> list[bytes]:
    return (gateway.state_dir / "journal.jsonl").read_bytes().split(b"\n")[:-1]


def write_lines(gateway, lines: list[bytes]) -> None:
    (gateway.state_dir / "journal.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


def flip_a_byte(line: bytes) -> bytes:
    return bytes([line[0] ^ 0x01]) + line[1:]  # "{" becomes "z"


def invalid_utf8(line: bytes) -> bytes:
    at = line.index(b'"outcome"') + 2
    return line[:at] + b"\xff\xfe" + line[at + 2:]


def truncated(line: bytes) -> bytes:
    return line[: len(line) // 2]


DAMAGE = {"flipped byte": flip_a_byte, "invalid UTF-8": invalid_utf8, "truncated line": truncated}


@pytest.mark.parametrize("summary_lost", [False, True], ids=["summary kept", "summary lost"])
@pytest.mark.parametrize("damage", [*DAMAGE, "huge line"])
def test_a_damaged_journal_line_is_reported_and_skipped(gateway, damage, summary_lost):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        for _ in range(2):
            assert gateway.mtcd("once").returncode == 0
        lines = journal_lines(gateway)
        assert [json.loads(line)["event"] for line in lines] == ["pin-set"] + ["decision", "card-record"] * 2
        if damage == "huge line":
            lines.insert(1, b'{"time": "' + b"9" * (8 << 20) + b'"}')  # 8 MB, no newline inside
        else:
            lines[1] = DAMAGE[damage](lines[1])
        write_lines(gateway, lines)
        if summary_lost:
            (gateway.state_dir / "journal.state").unlink()

        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0, run.stderr
        assert run.last_json["state"] == "paired" and modem.pdp_active

    status = gateway.mtcctl("status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["last_decision"]["outcome"] == "paired"
    history = gateway.mtcctl("history", "--json")
    assert history.returncode == 0, history.stderr
    # The damaged line is gone (an inserted one hid none); the new decision is there.
    pairs = ["decision", "card-record"]
    kept = pairs * 3 if damage == "huge line" else ["card-record"] + pairs * 2
    assert [e["event"] for e in history.json_lines] == ["pin-set"] + kept
    # One warning line, naming the file and the line.
    warnings = [line for line in history.stderr.splitlines() if "damaged" in line]
    assert len(warnings) == 1, history.stderr
    # 8 MB is past the size bound: the append of the new decision rotated it.
    where = "journal.jsonl.1" if damage == "huge line" else "journal.jsonl"
    assert warnings[0].startswith("mtcctl: WARNING: ") and warnings[0].endswith(f"/{where}: line 2 is damaged; skipped")
    assert gateway.mtcctl("history").returncode == 0


def test_imsi_is_masked_in_the_journal_and_history_by_default(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
    journal = (gateway.state_dir / "journal.jsonl").read_text()
    assert TEST_IMSI not in journal
    assert json.loads(journal.splitlines()[-2])["imsi"] == MASKED_IMSI  # the decision, then the card's record
    assert TEST_IMSI.encode() not in (gateway.state_dir / "journal.state").read_bytes()
    history = gateway.mtcctl("history")
    assert TEST_IMSI not in history.stdout and f"imsi={MASKED_IMSI}" in history.stdout
    assert gateway.history()[-2]["imsi"] == MASKED_IMSI
    status = gateway.mtcctl("status", "--json")
    assert json.loads(status.stdout)["last_decision"]["imsi"] == MASKED_IMSI


def test_a_full_imsi_journaled_earlier_is_masked_when_shown(gateway):
    """A journal from before the IMSI was masked, or from a time show_imsi was on."""
    gateway.configure("/dev/null")
    gateway.state_dir.mkdir(mode=0o700)
    record = {"time": "2026-01-01T00:00:00.000+00:00", "event": "decision", "outcome": "paired",
              "iccid": "8949020000000000014", "imei": "359999010000015", "imsi": TEST_IMSI}
    write_lines(gateway, [json.dumps(record).encode()])
    for args in (("history",), ("history", "--json"), ("status", "--json"), ("status",)):
        run = gateway.mtcctl(*args)
        assert run.returncode == 0, run.stderr
        assert TEST_IMSI not in run.stdout
    assert gateway.history()[0]["imsi"] == MASKED_IMSI


def test_show_imsi_keeps_it_in_full(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, service="show_imsi = true")
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
    assert gateway.history()[-2]["imsi"] == TEST_IMSI  # the decision, then the card's record
    assert TEST_IMSI in (gateway.state_dir / "journal.jsonl").read_text()


def test_no_pin_in_the_journal_or_its_summary(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
        assert gateway.mtcctl("history").returncode == 0
    files = sorted(gateway.state_dir.glob("journal*"))
    assert gateway.state_dir / "journal.jsonl" in files
    for path in files:
        data = path.read_bytes()
        assert TEST_PIN.encode() not in data and TEST_PIN.encode().hex().encode() not in data.lower(), path


def test_power_cut_between_the_journal_line_and_its_summary(gateway):
    """The decision and its association change are journaled, the summary
    still speaks of the SIM before: nothing is announced twice, status tells
    the newest decision."""
    first, second = make_card(serial_number=1), make_card(serial_number=2)
    with sim_modem(first) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(first.iccid))
        assert gateway.mtcd("once").returncode == 0
        summary = gateway.state_dir / "journal.state"
        before = summary.read_bytes()
        modem.remove_card()
        modem.insert_card(second)
        assert gateway.mtcd("once").returncode == 1  # unknown SIM
        summary.write_bytes(before)  # as if the power went before the summary was replaced
        status = json.loads(gateway.mtcctl("status", "--json").stdout)
        assert status["last_decision"]["iccid"] == str(second.iccid)
        assert gateway.mtcd("once").returncode == 1
    changes = [e for e in gateway.history() if e["event"] == "association-changed"]
    assert [(c["old_iccid"], c["new_iccid"]) for c in changes] == [(str(first.iccid), str(second.iccid))]


# --- history: newest first, bounded, across rotated files --------------------

def _event(when: datetime, n: int) -> bytes:
    return json.dumps({"time": when.isoformat(timespec="milliseconds"), "event": "pin-set",
                       "iccid": "8949020000000000014", "n": n}).encode()


@pytest.fixture
def rotated(gateway):
    """30 events a day apart, ending yesterday, in journal.jsonl.2, .1 and
    journal.jsonl (10 each)."""
    gateway.configure("/dev/null")
    gateway.state_dir.mkdir(mode=0o700)
    start = datetime.now(timezone.utc) - timedelta(days=30)
    events = [_event(start + timedelta(days=n), n) for n in range(30)]
    for name, part in (("journal.jsonl.2", events[:10]), ("journal.jsonl.1", events[10:20]), ("journal.jsonl", events[20:])):
        (gateway.state_dir / name).write_bytes(b"".join(e + b"\n" for e in part))
    return gateway, start


def numbers(run) -> list[int]:
    assert run.returncode == 0, run.stderr
    return [e["n"] for e in run.json_lines]


def test_history_limit_reads_across_rotated_files(rotated):
    gateway, _ = rotated
    assert numbers(gateway.mtcctl("history", "--json", "--limit", "15")) == list(range(15, 30))
    assert numbers(gateway.mtcctl("history", "--json", "--limit", "25")) == list(range(5, 30))
    assert numbers(gateway.mtcctl("history", "--json", "--limit", "0")) == list(range(30))
    assert numbers(gateway.mtcctl("history", "--json")) == list(range(30))  # default 50
    text = gateway.mtcctl("history", "--limit", "2").stdout.splitlines()
    assert len(text) == 2 and "n=28" in text[0] and "n=29" in text[1]


def test_history_since_reads_across_rotated_files(rotated):
    gateway, start = rotated
    # 7d: the events of the last seven days (day 23 is a little more than 7 days ago).
    assert numbers(gateway.mtcctl("history", "--json", "--since", "7d")) == list(range(24, 30))
    day = (start + timedelta(days=8)).date().isoformat()
    assert numbers(gateway.mtcctl("history", "--json", "--since", day, "--limit", "0")) == list(range(8, 30))
    assert numbers(gateway.mtcctl("history", "--json", "--since", day, "--limit", "3")) == [27, 28, 29]
    exact = (start + timedelta(days=12)).isoformat(timespec="milliseconds")
    assert numbers(gateway.mtcctl("history", "--json", "--since", exact, "--limit", "0"))[0] == 12


@pytest.mark.parametrize("args", [("--since", "yesterday"), ("--since", "0d"), ("--limit", "-1"), ("--limit", "x")])
def test_history_bad_arguments_are_usage_errors(rotated, args):
    gateway, _ = rotated
    run = gateway.mtcctl("history", *args)
    assert run.returncode == 64
    assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
    assert args[0] in run.stderr


def test_status_after_rotation(gateway):
    """The last decision lives in a rotated file; many other events since."""
    from mtcd.journal import PairingJournal

    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
    journal = PairingJournal(gateway.state_dir, max_bytes=2000, keep=3)
    summary = gateway.state_dir / "journal.state"
    kept = summary.read_bytes()

    def last_iccid(summary_lost: bool):
        summary.write_bytes(kept)
        if summary_lost:
            summary.unlink()
        status = gateway.mtcctl("status", "--json")
        assert status.returncode == 0, status.stderr
        return (json.loads(status.stdout)["last_decision"] or {}).get("iccid")

    for n in range(15):
        journal.append("pin-revealed", iccid=str(card.iccid), via="keyring", n=n)
    assert (gateway.state_dir / "journal.jsonl.1").exists()
    # In a rotated file: the summary knows it, and it is found again without.
    assert last_iccid(False) == last_iccid(True) == str(card.iccid)
    for n in range(100):
        journal.append("pin-revealed", iccid=str(card.iccid), via="keyring", n=n)
    assert sorted(p.name for p in gateway.state_dir.glob("journal.jsonl*")) == [
        "journal.jsonl", "journal.jsonl.1", "journal.jsonl.2", "journal.jsonl.3"]
    # Rotated out of the kept files: only the summary still knows it.
    assert last_iccid(False) == str(card.iccid)
    assert last_iccid(True) is None


def test_a_legacy_journal_too_big_is_rotated_whole(gateway, tmp_path):
    """A journal written before rotation existed: kept as journal.jsonl.1."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
        big = gateway.state_dir / "journal.jsonl"
        line = big.read_bytes().split(b"\n")[-2]
        with open(big, "ab") as f:
            f.write((line + b"\n") * ((2 << 20) // len(line)))
        saved = tmp_path / "saved"
        shutil.copy(big, saved)
        assert gateway.mtcd("once").returncode == 0
    assert (gateway.state_dir / "journal.jsonl.1").read_bytes() == saved.read_bytes()
    assert [e["event"] for e in gateway.history()][-2:] == ["decision", "card-record"]
    assert (gateway.state_dir / "journal.jsonl").stat().st_size < 1000
