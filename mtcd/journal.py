"""The pairing journal: what the gateway decided, one JSON object per line.

TR 33.868 §7.5: with pairing done in the device the network never sees a bad
IMSI/IMEI combination, so the gateway must record and report it itself
(TS 22.368 §7.2.8: detect a change of the ME-USIM association). This file is
that record; its summary (`mtcd.statefile`) is the memory of the last
decision and the last good association across reboots.

`<state_dir>/journal.jsonl`, mode 0600, append-only. Each line:
``{"time": "<ISO 8601 UTC>", "event": "<name>", ...fields}``. Field values
are JSON scalars (str, int, bool, None); a Secret is refused outright.

Rotated by size: an append that would take the file past `JOURNAL_MAX_BYTES`
first renames it to `journal.jsonl.1` (`.1` to `.2`, ... up to
`JOURNAL_KEEP` old files; the oldest is dropped), so the journal on disk is
bounded. Every reader goes backwards in bounded chunks, never whole files.

The journal is an audit trail, not a gate: a damaged line (a flipped byte,
invalid UTF-8, a line longer than `MAX_LINE`) is reported once per process
as a warning naming its line number, and skipped.

Events written by mtcd (fields):
  decision             outcome ("paired"|"refused"), reason, imei, imeisv,
                       iccid, imsi (masked unless service.show_imsi),
                       pin_retries
  association-changed  old_iccid, new_iccid, old_imei, new_imei,
                       change ("sim"|"imei"|"both")
  card-record          after a decision: iccid, decided (the decision's
                       time), card_record, card_service, card_ips,
                       card_latest, card_device (mtcd.service)
  pin-rejected, pin-set, pin-forgotten   iccid
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import stat
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from . import statefile
from .errors import StateError
from .fsutil import ensure_private_dir, fsync_dir
from .secret import Secret
from .statefile import JournalSummary

JOURNAL_NAME = "journal.jsonl"
JOURNAL_MAX_BYTES = 1 << 20  # rotate before a file grows past 1 MiB
JOURNAL_KEEP = 5  # old files kept: at most 6 MiB of journal in all
MAX_LINE = 64 << 10  # an event is well under 1 KiB; longer is damage
_CHUNK = 64 << 10

DECISION = "decision"
ASSOCIATION_CHANGED = "association-changed"
PIN_REJECTED = "pin-rejected"
PIN_SET = "pin-set"
PIN_FORGOTTEN = "pin-forgotten"

_RESERVED = ("time", "event")

log = logging.getLogger("mtcd")

# Damaged lines already reported by this process: (device, inode, offset).
_reported: set[tuple[int, int, int]] = set()


class PairingJournal:
    def __init__(self, state_dir: Path, *, max_bytes: int = JOURNAL_MAX_BYTES, keep: int = JOURNAL_KEEP):
        if keep < 1 or max_bytes < 1:
            raise ValueError("the journal keeps at least one old file of at least one byte")
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / JOURNAL_NAME
        self.max_bytes = max_bytes
        self.keep = keep
        # Lines skipped by the last events() call: a torn tail, damaged lines.
        self.skipped_lines = 0

    # --- writing ---

    def append(self, event: str, **fields) -> dict:
        """Write one event durably (fsync) and return the record written.
        A decision also updates the summary, after its line is durable."""
        if not isinstance(event, str) or not event:
            raise TypeError("a journal event needs a non-empty name")
        for name, value in fields.items():
            if name in _RESERVED:
                raise TypeError(f"journal field {name!r} is reserved")
            if isinstance(value, Secret):
                # Guarantee 4: the message names the field, never the value.
                raise TypeError(
                    f"journal field {name!r} is a {value.kind}; secrets are never journaled"
                )
            if value is not None and not isinstance(value, (str, int, bool)):
                raise TypeError(
                    f"journal field {name!r} must be str, int, bool or None, "
                    f"not {type(value).__name__}"
                )
        record = {"time": _now(), "event": event, **fields}
        line = (json.dumps(record, ensure_ascii=True) + "\n").encode()
        if len(line) > MAX_LINE:
            # A reader would take it for damage.
            raise ValueError(f"journal event {event!r} is too large ({len(line)} bytes)")
        self._append_line(line, record)
        return record

    def _append_line(self, line: bytes, record: dict) -> None:
        ensure_private_dir(self.path.parent)
        while True:
            try:
                fd = os.open(
                    self.path,
                    os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                    0o600,
                )
            except OSError as exc:
                raise StateError(f"cannot write {self.path}: {exc.strerror}") from None
            try:
                # The daemon and mtcctl may append at the same time.
                fcntl.flock(fd, fcntl.LOCK_EX)
                inode = os.fstat(fd).st_ino
                if not _is_current(self.path, inode):
                    continue  # rotated while we waited for the lock: open the new one
                _cut_torn_tail(fd)
                size = os.fstat(fd).st_size
                if size > 0 and size + len(line) > self.max_bytes:
                    self._rotate()
                    continue
                prior = self.summary() if record["event"] == DECISION else None
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                if size == 0:
                    fsync_dir(self.path.parent)
                if prior is not None:
                    self._save_summary(prior.with_decision(record, (inode, size + len(line))))
                return
            except OSError as exc:
                raise StateError(f"cannot write {self.path}: {exc.strerror}") from None
            finally:
                os.close(fd)  # also releases the lock

    def _save_summary(self, summary: JournalSummary) -> None:
        # The journal line is durable already; a summary that cannot be
        # written is rebuilt from the journal by the next reader.
        try:
            statefile.save(self.state_dir, summary)
        except StateError as exc:
            log.warning("%s; the journal summary will be rebuilt from the journal", exc)

    def _rotate(self) -> None:
        """journal.jsonl -> .1 -> .2 ... -> .keep (the oldest dropped). Each
        rename is atomic; a power cut between two leaves a gap, not a loss."""
        try:
            for n in range(self.keep, 1, -1):
                older = self._old(n - 1)
                if older.exists():
                    os.replace(older, self._old(n))
            os.replace(self.path, self._old(1))
        except OSError as exc:
            raise StateError(f"cannot rotate {self.path}: {exc.strerror}") from None
        fsync_dir(self.path.parent)

    def _old(self, n: int) -> Path:
        return self.path.with_name(f"{JOURNAL_NAME}.{n}")

    def files(self) -> list[Path]:
        """The journal's files on disk, oldest first."""
        names = [self._old(n) for n in range(self.keep, 0, -1)] + [self.path]
        return [p for p in names if p.exists()]

    # --- the summary: last decision and last association ---

    def last(self, event: str) -> dict | None:
        """The newest event of this kind, or None (also when unknown)."""
        if event == DECISION:
            return self.summary().last_decision
        try:
            for record in self.backwards():
                if record["event"] == event:
                    return record
        except StateError as exc:
            log.warning("%s", exc)
        return None

    def last_association(self) -> tuple[str | None, str | None]:
        """(iccid, imei) of the last "decision" event with outcome "paired".

        Only a successful pairing establishes an association: an
        "association-changed" event or a refusal records what was seen, not
        what was accepted, so they are deliberately not used here.
        (None, None) when the gateway never paired, or it is unknown.
        """
        return self.summary().last_paired

    def summary(self) -> JournalSummary:
        """The summary file, brought up to date with any decision journaled
        after it (a power cut between the two writes); rebuilt from the
        journal when missing or damaged; empty ("unknown") when even that
        fails. Never raises for a damaged or unreadable journal."""
        try:
            base = statefile.load(self.state_dir)
        except ValueError as exc:
            log.warning("%s is damaged (%s); rebuilding it from the journal",
                        self.state_dir / statefile.STATE_NAME, exc)
            base = None
        except OSError as exc:
            log.warning("cannot read %s: %s; rebuilding it from the journal",
                        self.state_dir / statefile.STATE_NAME, exc.strerror)
            base = None
        try:
            return self._catch_up(base)
        except (OSError, StateError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            log.warning("cannot read the journal (%s); last decision %s", why,
                        "as of the summary" if base else "unknown")
            return base or JournalSummary()

    def _catch_up(self, base: JournalSummary | None) -> JournalSummary:
        position = base.position if base is not None else None
        if position is not None:
            try:
                st = os.stat(self.path)
                if (st.st_ino, st.st_size) == position:
                    return base  # nothing appended since: the usual case
            except FileNotFoundError:
                pass
        newest = newest_position = paired = None
        with self._open_newest_first() as files:
            for path, fd, st in files:
                start = 0
                reached = position is not None and st.st_ino == position[0] and self._ends_there(fd, st, base)
                if reached:
                    start = position[1]
                for end, record in _records_backward(path, fd, st, start, needle=b'"decision"'):
                    if record["event"] != DECISION:
                        continue
                    if newest is None:
                        newest, newest_position = record, (st.st_ino, end)
                    if record.get("outcome") == "paired":
                        paired = (record.get("iccid"), record.get("imei"))
                        break
                if reached or paired is not None:
                    break
        if base is None:
            base = JournalSummary()
        if newest is None:
            return base
        return JournalSummary(newest, paired if paired is not None else base.last_paired, newest_position)

    @staticmethod
    def _ends_there(fd: int, st: os.stat_result, base: JournalSummary) -> bool:
        """Whether the summary's decision is the line that ends at its
        recorded offset in this file (an inode can be reused)."""
        offset = base.position[1]
        if base.last_decision is None or offset > st.st_size or os.pread(fd, 1, offset - 1) != b"\n":
            return False
        for _, line in _reverse_lines(fd, 0, offset):
            return line is not None and _decode(line) == base.last_decision
        return False

    # --- reading ---

    def backwards(self, needle: bytes | None = None) -> Iterator[dict]:
        """Every event, newest first, across the rotated files, in bounded
        memory. Damaged lines are reported (once) and skipped. StateError
        when a file cannot be read."""
        with self._open_newest_first() as files:
            for path, fd, st in files:
                for _, record in _records_backward(path, fd, st, 0, needle=needle):
                    yield record

    def recent(self, limit: int | None = 50, since: datetime | None = None) -> list[dict]:
        """The newest `limit` events (None: all) at or after `since`,
        oldest first. Memory is bounded by `limit`."""
        found: list[dict] = []
        if limit == 0:
            return found
        for record in self.backwards():
            if since is not None:
                when = _time_of(record)
                # Clocks jump (no RTC before NTP): filter, do not stop early.
                if when is None or when < since:
                    continue
            found.append(record)
            if limit is not None and len(found) >= limit:
                break
        found.reverse()
        return found

    def events(self) -> list[dict]:
        """Every event, oldest first (the whole journal in memory: for tests
        and small journals; `recent` and `backwards` are bounded).

        A last line without its newline (a power cut in the middle of an
        append) and damaged lines are skipped and counted in `skipped_lines`.
        """
        self.skipped_lines = 0
        records = []
        with self._open_newest_first() as files:
            for path, fd, st in reversed(files):
                size = st.st_size
                end = _complete_end(fd, size)
                if end < size:
                    self.skipped_lines += 1
                for offset, number, line in _forward_lines(fd, end):
                    record = _decode(line) if line is not None else None
                    if record is None:
                        self.skipped_lines += 1
                        _report(path, fd, st, offset, number)
                    else:
                        records.append(record)
        return records

    @contextlib.contextmanager
    def _open_newest_first(self):
        """(path, fd, stat) of each journal file, newest first. All are
        opened before any is read, and an inode seen twice (a rotation
        between two opens) is skipped, so no line is read twice."""
        opened = []
        seen = set()
        try:
            for path in [self.path] + [self._old(n) for n in range(1, self.keep + 1)]:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise StateError(f"cannot read {path}: {exc.strerror}") from None
                st = os.fstat(fd)
                if st.st_ino in seen or not _is_regular(st):
                    os.close(fd)
                    if not _is_regular(st):
                        raise StateError(f"cannot read {path}: not a regular file")
                    continue
                seen.add(st.st_ino)
                opened.append((path, fd, st))
            yield opened
        finally:
            for _, fd, _ in opened:
                os.close(fd)


def _is_regular(st: os.stat_result) -> bool:
    return stat.S_ISREG(st.st_mode)


def _is_current(path: Path, inode: int) -> bool:
    try:
        return os.stat(path).st_ino == inode
    except FileNotFoundError:
        return False


def _decode(line: bytes) -> dict | None:
    """A journal record, or None for a damaged line."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if (not isinstance(record, dict)
            or not isinstance(record.get("event"), str)
            or not isinstance(record.get("time"), str)):
        return None
    return record


def _time_of(record: dict) -> datetime | None:
    try:
        when = datetime.fromisoformat(record["time"])
    except (ValueError, TypeError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _complete_end(fd: int, size: int) -> int:
    """The offset after the last newline: what follows is a torn append."""
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _records_backward(path: Path, fd: int, st: os.stat_result, start: int,
                      needle: bytes | None = None) -> Iterator[tuple[int, dict]]:
    """(offset after the line, record) of each complete line after
    `start`, newest first. Lines without `needle` are passed over unparsed."""
    end = _complete_end(fd, st.st_size)
    for offset, line in _reverse_lines(fd, start, end):
        if line is not None and needle is not None and needle not in line:
            continue
        record = _decode(line) if line is not None else None
        if record is None:
            _report(path, fd, st, offset)
            continue
        yield offset + (len(line) + 1), record


def _reverse_lines(fd: int, start: int, end: int) -> Iterator[tuple[int, bytes | None]]:
    """(offset, line) of each line in [start, end), newest first; `end`
    follows a newline. A line longer than MAX_LINE comes as None: it is
    never held whole."""
    if end <= start:
        return
    pos = end - 1  # the last line's content ends before its newline
    parts: list[bytes] = []
    size = 0
    too_long = False
    while pos > start:
        n = min(_CHUNK, pos - start)
        pos -= n
        block = os.pread(fd, n, pos)
        high = len(block)
        while True:
            newline = block.rfind(b"\n", 0, high)
            if not too_long:
                piece = block[newline + 1 : high]
                size += len(piece)
                if size > MAX_LINE:
                    too_long, parts = True, []
                else:
                    parts.append(piece)
            if newline < 0:
                break
            yield pos + newline + 1, None if too_long else b"".join(reversed(parts))
            parts, size, too_long = [], 0, False
            high = newline
    yield start, None if too_long else b"".join(reversed(parts))


def _forward_lines(fd: int, end: int) -> Iterator[tuple[int, int, bytes | None]]:
    """(offset, line number, line) of each line in [0, end), oldest first;
    a line longer than MAX_LINE comes as None."""
    pos = line_start = 0
    number = 1
    parts: list[bytes] = []
    size = 0
    too_long = False
    while pos < end:
        block = os.pread(fd, min(_CHUNK, end - pos), pos)
        if not block:
            break
        low = 0
        while True:
            newline = block.find(b"\n", low)
            piece = block[low:] if newline < 0 else block[low:newline]
            if not too_long:
                size += len(piece)
                if size > MAX_LINE:
                    too_long, parts = True, []
                else:
                    parts.append(piece)
            if newline < 0:
                break
            yield line_start, number, None if too_long else b"".join(parts)
            number += 1
            line_start = pos + newline + 1
            parts, size, too_long = [], 0, False
            low = newline + 1
        pos += len(block)


def _report(path: Path, fd: int, st: os.stat_result, offset: int, number: int | None = None) -> None:
    """A damaged line, once per process (an inode keeps its lines through
    a rotation), as a warning naming its line number."""
    key = (st.st_dev, st.st_ino, offset)
    if key in _reported:
        return
    _reported.add(key)
    if number is None:
        number = _line_number(fd, offset)
    log.warning("%s: line %s is damaged; skipped", path, number)


def _line_number(fd: int, offset: int) -> int:
    """1 + the newlines before `offset`, counted in bounded chunks."""
    count = pos = 0
    while pos < offset:
        block = os.pread(fd, min(_CHUNK, offset - pos), pos)
        if not block:
            break
        count += block.count(b"\n")
        pos += len(block)
    return count + 1


def _cut_torn_tail(fd: int) -> None:
    """Drop an unfinished last line (a power cut mid-append) so the next line
    does not get glued onto it and damage the journal for good."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    os.ftruncate(fd, _complete_end(fd, size))


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
