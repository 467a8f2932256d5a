"""The pairing journal: what the gateway decided, one JSON object per line.

TR 33.868 §7.5: with pairing done in the device the network never sees a bad
IMSI/IMEI combination, so the gateway must record and report it itself
(TS 22.368 §7.2.8: detect a change of the ME-USIM association). This file is
that record, and the memory of the last good association across reboots.

`<state_dir>/journal.jsonl`, mode 0600, append-only. Each line:
``{"time": "<ISO 8601 UTC>", "event": "<name>", ...fields}``. Field values
are JSON scalars (str, int, bool, None); a Secret is refused outright.

Events written by mtcd (fields):
  decision             outcome ("paired"|"refused"), reason, imei, imeisv,
                       iccid, imsi (masked or full, the caller decides),
                       pin_retries
  association-changed  old_iccid, new_iccid, old_imei, new_imei,
                       change ("sim"|"imei"|"both")
  pin-rejected, pin-set, pin-forgotten   iccid
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from .errors import StateError
from .fsutil import ensure_private_dir, fsync_dir
from .secret import Secret

JOURNAL_NAME = "journal.jsonl"

DECISION = "decision"
ASSOCIATION_CHANGED = "association-changed"
PIN_REJECTED = "pin-rejected"
PIN_SET = "pin-set"
PIN_FORGOTTEN = "pin-forgotten"

_RESERVED = ("time", "event")


class PairingJournal:
    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / JOURNAL_NAME
        # Torn trailing lines skipped by the last events() call (0 or 1).
        self.skipped_lines = 0

    def append(self, event: str, **fields) -> dict:
        """Write one event durably (fsync) and return the record written."""
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
        self._append_line(line)
        return record

    def events(self) -> list[dict]:
        """Every event, oldest first.

        A last line without its newline is what a power cut in the middle of
        an append leaves: it is skipped (and counted in `skipped_lines`). A
        damaged line anywhere else raises StateError naming the line number.
        """
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            self.skipped_lines = 0
            return []
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror}") from None
        lines = data.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline
        self.skipped_lines = 1 if torn else 0
        return [self._parse(number, line) for number, line in enumerate(lines, 1)]

    def last(self, event: str) -> dict | None:
        for record in reversed(self.events()):
            if record["event"] == event:
                return record
        return None

    def last_association(self) -> tuple[str | None, str | None]:
        """(iccid, imei) of the last "decision" event with outcome "paired".

        Only a successful pairing establishes an association: an
        "association-changed" event or a refusal records what was seen, not
        what was accepted, so they are deliberately not used here.
        (None, None) when the gateway never paired.
        """
        for record in reversed(self.events()):
            if record["event"] == DECISION and record.get("outcome") == "paired":
                return record.get("iccid"), record.get("imei")
        return None, None

    def _parse(self, number: int, line: bytes) -> dict:
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if (not isinstance(record, dict)
                or not isinstance(record.get("event"), str)
                or not isinstance(record.get("time"), str)):
            raise StateError(f"{self.path}: line {number} is damaged")
        return record

    def _append_line(self, line: bytes) -> None:
        ensure_private_dir(self.path.parent)
        try:
            created = not self.path.exists()
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
            _cut_torn_tail(fd)
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            raise StateError(f"cannot write {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)  # also releases the lock
        if created:
            fsync_dir(self.path.parent)


def _cut_torn_tail(fd: int) -> None:
    """Drop an unfinished last line (a power cut mid-append) so the next line
    does not get glued onto it and damage the journal for good."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - 4096)
        chunk = os.pread(fd, end - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            os.ftruncate(fd, start + newline + 1)
            return
        end = start
    os.ftruncate(fd, 0)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
