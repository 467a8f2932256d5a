"""The sealed PIN store: one PIN1 per ICCID, encrypted and authenticated at rest.

TR 33.868 §7.5: the PIN is low-entropy, so the stored copy is what an attacker
goes for; it must be sealed. The store is an envelope:

- a 32-byte data key, kept by a *sealer* (`FileSealer`: a 0600 file next to
  the store; later sealers can wrap it with systemd-creds or a TPM2 without
  touching the entry format);
- `keystore.json`, one AES-256-GCM record per ICCID. The associated data
  binds each record to its ICCID, so a record copied under another ICCID
  fails authentication instead of sending one SIM's PIN to another card.

Each record also carries the persistent "rejected" latch and the
"attempt started" mark that together keep guarantee 1: a PIN the card refused
is never presented again automatically, and a presentation whose outcome was
lost (power cut between AT+CPIN and its reply) is visible at the next boot.

Writers are expected to be serialised by the service's state lock: every
mutation rewrites the whole file from this object's memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import stat
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import KeystoreError, StateError
from .fsutil import atomic_write, check_private_dir, ensure_private_dir
from .identity import Iccid
from .secret import Pin

FORMAT = "mtcd-keystore/1"
STORE_NAME = "keystore.json"
KEY_NAME = "keystore.key"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96-bit GCM nonce, random per write of an entry

ACTIVE = "active"
REJECTED = "rejected"
STATES = (ACTIVE, REJECTED)

# A store of a few entries is a few hundred bytes; anything huge is not ours.
_MAX_STORE_BYTES = 4 * 1024 * 1024
_RECORD_FIELDS = {
    "pin", "pending_pin", "state", "created", "updated", "last_imei", "attempt_started",
    "attempts_before",
}


@dataclass(frozen=True)
class PinEntry:
    iccid: Iccid
    pin: Pin  # repr shows <PIN ****>, never the digits
    pending_pin: Pin | None  # a new PIN being set on the card, kept until confirmed
    state: str  # "active" | "rejected"
    created: str  # ISO 8601 UTC
    updated: str
    last_imei: str | None
    attempt_started: bool  # PIN presented (or about to be), outcome not yet recorded
    # PIN1 attempts the card reported just before that presentation (None:
    # not reported); the next boot compares it with the counter to learn
    # whether the lost attempt was rejected.
    attempts_before: int | None = None

    @property
    def rejected(self) -> bool:
        return self.state == REJECTED


class Sealer(Protocol):
    """Keeps the data key. `load_key` returns None when no key exists yet."""

    def load_key(self) -> bytes | None: ...

    def create_key(self) -> bytes: ...


class FileSealer:
    """The data key in a 0600 file: protects against other users on the
    gateway, not against root or someone holding the SD card."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / KEY_NAME

    def load_key(self) -> bytes | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise KeystoreError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise KeystoreError(f"{self.path} is not a regular file")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o177:
                raise KeystoreError(
                    f"{self.path} has mode {mode:04o}, wider than 0600; refusing to use it"
                )
            key = os.read(fd, KEY_BYTES + 1)
        except OSError as exc:
            raise KeystoreError(f"cannot read {self.path}: {exc.strerror}") from None
        finally:
            os.close(fd)
        if len(key) != KEY_BYTES:
            raise KeystoreError(
                f"{self.path} is damaged: the key must be {KEY_BYTES} bytes"
            )
        return key

    def create_key(self) -> bytes:
        if os.path.lexists(self.path):
            # Replacing a key would make every sealed entry unreadable.
            raise KeystoreError(f"{self.path} already exists; refusing to replace the key")
        key = secrets.token_bytes(KEY_BYTES)
        atomic_write(self.path, key, 0o600)
        return key


class Keystore:
    """PINs by ICCID. Open with `Keystore.open(state_dir)`."""

    def __init__(self, state_dir: Path, sealer: Sealer, key: bytes | None,
                 entries: dict[Iccid, PinEntry]):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / STORE_NAME
        self._sealer = sealer
        self._key = key
        self._entries = entries

    @classmethod
    def open(cls, state_dir: Path, sealer: Sealer | None = None) -> "Keystore":
        """Load and authenticate every entry. Missing files mean an empty store;
        the key is created on the first write."""
        state_dir = Path(state_dir)
        sealer = sealer if sealer is not None else FileSealer(state_dir)
        path = state_dir / STORE_NAME
        if state_dir.exists():
            check_private_dir(state_dir)
        raw = _read_store(path)
        key = sealer.load_key()
        if raw is None:
            return cls(state_dir, sealer, key, {})
        sealed = _parse_store(path, raw)
        if sealed and key is None:
            raise KeystoreError(
                f"{path} holds {len(sealed)} sealed entries but the key is missing"
            )
        entries = {iccid: _unseal(path, key, iccid, blob) for iccid, blob in sealed.items()}
        return cls(state_dir, sealer, key, entries)

    # --- reading ---

    def get(self, iccid: Iccid) -> PinEntry | None:
        return self._entries.get(iccid)

    def entries(self) -> list[PinEntry]:
        return [self._entries[i] for i in sorted(self._entries, key=lambda i: i.value)]

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, iccid: Iccid) -> bool:
        return iccid in self._entries

    def __repr__(self) -> str:
        return f"<Keystore {self.path} entries={len(self._entries)}>"

    # --- mutations: each is exactly one atomic rewrite of keystore.json ---

    def set_pin(self, iccid: Iccid, pin: Pin) -> PinEntry:
        """Store `pin` for `iccid` (new or replacing): active, latch cleared."""
        if not isinstance(pin, Pin):
            raise TypeError("set_pin needs a Pin")
        now = _now()
        old = self._entries.get(iccid)
        entry = PinEntry(
            iccid=iccid,
            pin=pin,
            pending_pin=None,
            state=ACTIVE,
            created=old.created if old else now,
            updated=now,
            # A person provisioning the PIN accepts this SIM in this device
            # anew, so an IMEI change recorded earlier no longer counts.
            last_imei=None,
            attempt_started=False,
        )
        self._commit(entry)
        return entry

    def begin_attempt(self, iccid: Iccid, attempts_before: int | None = None) -> None:
        """Persist that the PIN is about to be presented. Call BEFORE sending it,
        so a power cut mid-presentation is visible at the next boot."""
        entry = self._require(iccid)
        if entry.rejected:
            # Defence in depth for guarantee 1; the policy should never get here.
            raise KeystoreError(
                f"the PIN stored for ICCID {iccid} was rejected by the card; "
                "it is not presented again until a new PIN is set"
            )
        self._commit(replace(entry, attempt_started=True, attempts_before=attempts_before, updated=_now()))

    def record_accepted(self, iccid: Iccid, imei: str | None) -> None:
        entry = self._require(iccid)
        self._commit(replace(
            entry,
            state=ACTIVE,
            attempt_started=False,
            attempts_before=None,
            last_imei=str(imei) if imei is not None else None,
            updated=_now(),
        ))

    def record_rejected(self, iccid: Iccid) -> None:
        """Set the persistent latch: this PIN is never presented again automatically."""
        entry = self._require(iccid)
        self._commit(replace(entry, state=REJECTED, attempt_started=False, attempts_before=None, updated=_now()))

    def forget(self, iccid: Iccid) -> bool:
        if iccid not in self._entries:
            return False
        remaining = dict(self._entries)
        del remaining[iccid]
        self._write(remaining)
        self._entries = remaining
        return True

    # --- internals ---

    def _require(self, iccid: Iccid) -> PinEntry:
        entry = self._entries.get(iccid)
        if entry is None:
            raise KeystoreError(f"no PIN is stored for ICCID {iccid}")
        return entry

    def _commit(self, entry: PinEntry) -> None:
        updated = dict(self._entries)
        updated[entry.iccid] = entry
        self._write(updated)
        # Memory follows the disk only once the disk has it.
        self._entries = updated

    def _write(self, entries: dict[Iccid, PinEntry]) -> None:
        ensure_private_dir(self.state_dir)
        if self._key is None:
            self._key = self._sealer.load_key() or self._sealer.create_key()
        aead = AESGCM(self._key)
        sealed = {}
        for iccid in sorted(entries, key=lambda i: i.value):
            nonce = secrets.token_bytes(NONCE_BYTES)
            plain = json.dumps(_record(entries[iccid]), sort_keys=True).encode()
            blob = aead.encrypt(nonce, plain, _associated_data(iccid))
            sealed[iccid.value] = {"nonce": _b64(nonce), "sealed": _b64(blob)}
        doc = {"format": FORMAT, "entries": sealed}
        atomic_write(self.path, (json.dumps(doc, indent=1) + "\n").encode(), 0o600)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _associated_data(iccid: Iccid) -> bytes:
    return f"{FORMAT}|{iccid.value}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _record(entry: PinEntry) -> dict:
    # The only place a PIN leaves its Secret wrapper: straight into the cipher.
    return {
        "pin": entry.pin.reveal(),
        "pending_pin": entry.pending_pin.reveal() if entry.pending_pin else None,
        "state": entry.state,
        "created": entry.created,
        "updated": entry.updated,
        "last_imei": entry.last_imei,
        "attempt_started": entry.attempt_started,
        "attempts_before": entry.attempts_before,
    }


def _read_store(path: Path) -> bytes | None:
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_STORE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > _MAX_STORE_BYTES:
        raise KeystoreError(f"{path} is damaged: far too large for a keystore")
    return raw


def _parse_store(path: Path, raw: bytes) -> dict[Iccid, tuple[bytes, bytes]]:
    """The sealed entries of the file, checked for shape (not yet authenticity)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeystoreError(f"{path} is damaged: it is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise KeystoreError(f"{path} is damaged: unknown format (expected {FORMAT})")
    entries = doc.get("entries")
    if not isinstance(entries, dict) or set(doc) != {"format", "entries"}:
        raise KeystoreError(f"{path} is damaged: unexpected layout")
    out = {}
    for name, item in entries.items():
        try:
            iccid = Iccid(name)
        except (TypeError, ValueError):
            raise KeystoreError(
                f"{path} is damaged: entry {name[:24]!r} is not an ICCID"
            ) from None
        try:
            nonce = base64.b64decode(item["nonce"], validate=True)
            blob = base64.b64decode(item["sealed"], validate=True)
        except (TypeError, KeyError, binascii.Error):
            raise KeystoreError(f"{path} is damaged: entry {iccid} is malformed") from None
        if len(nonce) != NONCE_BYTES:
            raise KeystoreError(f"{path} is damaged: entry {iccid} is malformed")
        out[iccid] = (nonce, blob)
    return out


def _unseal(path: Path, key: bytes, iccid: Iccid, sealed: tuple[bytes, bytes]) -> PinEntry:
    nonce, blob = sealed
    try:
        plain = AESGCM(key).decrypt(nonce, blob, _associated_data(iccid))
    except InvalidTag:
        raise KeystoreError(
            f"{path} is damaged: entry {iccid} fails authentication"
        ) from None
    # Authenticated, so written by us; still checked, so a bug cannot turn
    # into a traceback or a half-valid entry.
    try:
        record = json.loads(plain)
        if not isinstance(record, dict) or set(record) != _RECORD_FIELDS:
            raise ValueError
        pending = record["pending_pin"]
        imei = record["last_imei"]
        entry = PinEntry(
            iccid=iccid,
            pin=Pin(record["pin"]),
            pending_pin=Pin(pending) if pending is not None else None,
            state=record["state"],
            created=record["created"],
            updated=record["updated"],
            last_imei=imei,
            attempt_started=record["attempt_started"],
            attempts_before=record["attempts_before"],
        )
        if (entry.state not in STATES
                or not isinstance(entry.created, str)
                or not isinstance(entry.updated, str)
                or not (imei is None or isinstance(imei, str))
                or not isinstance(entry.attempt_started, bool)
                or not (entry.attempts_before is None
                        or (type(entry.attempts_before) is int and 0 <= entry.attempts_before <= 15))):
            raise ValueError
    except (ValueError, TypeError):
        raise KeystoreError(f"{path} is damaged: entry {iccid} has an invalid record") from None
    return entry
