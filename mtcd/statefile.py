"""The journal's summary: what a pairing decision needs, in one small file.

`<state_dir>/journal.state`, mode 0600, replaced atomically (fsutil). It
holds the last decision, the last association that paired (ICCID, IMEI) and
where in the journal that decision ends (the file's inode and the byte
offset after its line), so a reader can tell whether lines were appended
since without reading the journal. A SHA-256 over the content catches a
flipped byte: a damaged summary is rebuilt from the journal, never trusted.

The file is a cache of the journal, never the other way round: the journal
line is written first, this file second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .fsutil import atomic_write

STATE_NAME = "journal.state"
VERSION = 1


@dataclass
class JournalSummary:
    last_decision: dict | None = None
    last_paired: tuple[str | None, str | None] = (None, None)  # (iccid, imei)
    # Where the last decision's line ends: (inode, offset); None when unknown.
    position: tuple[int, int] | None = None

    def with_decision(self, record: dict, position: tuple[int, int] | None) -> "JournalSummary":
        paired = self.last_paired
        if record.get("outcome") == "paired":
            paired = (record.get("iccid"), record.get("imei"))
        return JournalSummary(record, paired, position)


def _sha256(text: str) -> str:
    # Not hashlib: it maps OpenSSL's libcrypto (3.7 MiB resident), which
    # `mtcctl status` and `history` need for nothing else (mtcd.mac).
    from .mac import sha256

    return sha256(text.encode()).hex()


def encode(summary: JournalSummary) -> bytes:
    body = {
        "version": VERSION,
        "last_decision": summary.last_decision,
        "last_paired": {"iccid": summary.last_paired[0], "imei": summary.last_paired[1]},
        "position": None if summary.position is None
        else {"inode": summary.position[0], "offset": summary.position[1]},
    }
    text = json.dumps(body, ensure_ascii=True, sort_keys=True)
    digest = _sha256(text)
    return (json.dumps({"sha256": digest, "state": body}, ensure_ascii=True, sort_keys=True) + "\n").encode()


def decode(data: bytes) -> JournalSummary:
    """The summary in `data`; ValueError naming what is wrong."""
    try:
        outer = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(outer, dict) or not isinstance(outer.get("state"), dict):
        raise ValueError("no state object")
    body = outer["state"]
    text = json.dumps(body, ensure_ascii=True, sort_keys=True)
    if _sha256(text) != outer.get("sha256"):
        raise ValueError("checksum mismatch")
    if body.get("version") != VERSION:
        raise ValueError(f"unknown version {body.get('version')!r}")
    decision = body.get("last_decision")
    if decision is not None and not (isinstance(decision, dict) and decision.get("event") == "decision"):
        raise ValueError("last_decision is not a decision")
    paired = body.get("last_paired")
    if not isinstance(paired, dict):
        raise ValueError("last_paired missing")
    position = body.get("position")
    if position is not None:
        inode, offset = position.get("inode"), position.get("offset")
        if not (isinstance(inode, int) and isinstance(offset, int) and offset > 0):
            raise ValueError("bad position")
        position = (inode, offset)
    return JournalSummary(decision, (paired.get("iccid"), paired.get("imei")), position)


def load(state_dir: Path) -> JournalSummary | None:
    """The summary on disk; None when there is none; ValueError when it is
    damaged; OSError when it cannot be read."""
    try:
        data = (Path(state_dir) / STATE_NAME).read_bytes()
    except FileNotFoundError:
        return None
    if len(data) > 1 << 20:
        raise ValueError("too large")
    return decode(data)


def save(state_dir: Path, summary: JournalSummary) -> None:
    # Not fsynced: the journal line it summarises is, before this is written.
    # After a power cut this file is the new one, the old one (its position
    # is then behind the journal, whose newer lines are read) or fails its
    # checksum (rebuilt from the journal); two fsyncs fewer per decision,
    # which sit between the decision and the radio going on.
    atomic_write(Path(state_dir) / STATE_NAME, encode(summary), durable=False)
