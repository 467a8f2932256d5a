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

Several processes hold a Keystore at once (the service, mtcctl, the keyring
backend).  Every mutation is a transaction under keystore.lock that reads the
file's bytes, reloads when they differ from the ones this object last read or
wrote, and only then writes: no write is ever made from a stale copy.

Past `keystore_buckets.INLINE_MAX` entries the store is bucketed:
keystore.json becomes a manifest naming bucket files under keystore.d, so a
decision reads and writes one bucket, not every entry (design, per-decision
work, rollback and crash safety: keystore_buckets).

Rollback: the file carries a generation, raised by every write and covered
by its MAC, and keystore.witness (written right after the store, MACed under
the same key) remembers the last one; with a TPM2 sealer, the TPM's NV
counter (advanced after both) remembers it outside the state directory.  A
keystore.json older than these is an older copy put back, which could bring
back a PIN the card rejected: it is refused.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import functools
import binascii
import json
import os
import stat
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from .errors import EXIT_REFUSED, KeystoreError, StateError
from . import keystore_buckets as buckets
from .fsutil import atomic_write, check_private_dir, ensure_private_dir, fsync_dir
from .identity import Iccid
from .keystore_buckets import BUCKET_DIR, BucketRef, Manifest
from .mac import equal as _equal, hmac_sha256
from .secret import Pin

FORMAT = "mtcd-keystore/2"
LEGACY_FORMAT = "mtcd-keystore/1"  # before the generation: read as generation 0
ENTRY_FORMAT = "mtcd-keystore/1"  # in each entry's associated data; unchanged by /2
WITNESS_FORMAT = "mtcd-keystore-witness/1"
STORE_NAME = "keystore.json"
KEY_NAME = "keystore.key"
LOCK_NAME = "keystore.lock"
WITNESS_NAME = "keystore.witness"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # 96-bit GCM nonce, random per write of an entry

ACTIVE = "active"
REJECTED = "rejected"  # the card refused the current PIN: never presented again
COMPROMISED = "compromised"  # presumed known to an attacker: rotate at the next pairing
STATES = (ACTIVE, REJECTED, COMPROMISED)

CURRENT = "current"
PENDING = "pending"
# Where a pending PIN came from: our own rotation (the card cannot hold it
# once it accepted the current PIN) or the operator's over-the-air change
# (the card may receive it at any time, so it is kept).
ROTATION = "rotation"
STAGED = "staged"
# The third candidate: the PIN the card was last seen to accept, kept (in
# its own sealed field, not the pending slot a rotation needs) while the
# current PIN was set by a change only the modem's OK vouches for.  A modem
# may answer OK to AT+CPWD, or a reader 9000 to CHANGE REFERENCE DATA, that
# never reached the card; the counter does not move either way.
FALLBACK = "fallback"
CANDIDATES = (CURRENT, PENDING, FALLBACK)

# 10,000 entries of a few hundred bytes each stay far below this.
_MAX_STORE_BYTES = 64 * 1024 * 1024
_RECORD_FIELDS = {
    "pin", "pending_pin", "pending_origin", "pending_rejected", "state", "transport",
    "created", "updated", "rotated", "last_imei", "attempt", "attempts_before",
}
# Written only when not empty, so an entry that never had one reads the same
# to a release without it.
_OPTIONAL_FIELDS = {"unsettled", "change", "fallback"}
_FALLBACK_FIELDS = {"pin", "state", "transport", "rotated"}


class ChangeNotSettled(KeystoreError):
    """Not damage but a refusal: the pending slot holds a PIN the card may
    hold already (a rotation's, an over-the-air change's), or an OTA PIN is
    staged while our last change is unproven (a third candidate), so the
    new change's PIN is not stored.  The callers look before they begin,
    outside the lock; this is the same answer for one that lands second."""

    exit_code = EXIT_REFUSED
    code = "refused"


class PinNotStored(KeystoreError):
    """No entry for the ICCID: for a caller that looked a moment ago, a
    person's forget (another process, no lock held between the look and the
    write); the caller says so rather than "keystore-damaged"."""


@dataclass(frozen=True)
class PinEntry:
    iccid: Iccid
    pin: Pin  # repr shows <PIN ****>, never the digits
    pending_pin: Pin | None  # a new PIN the card may hold already (rotation or OTA)
    state: str  # "active" | "rejected" | "compromised"
    created: str  # ISO 8601 UTC
    updated: str
    last_imei: str | None
    # Which PIN ("current" | "pending") was presented (or about to be) with
    # its outcome not yet recorded; None when no presentation is in flight.
    attempt: str | None = None
    # PIN1 attempts the card reported just before that presentation (None:
    # not reported); the next boot compares it with the counter to learn
    # whether the lost attempt was rejected.
    attempts_before: int | None = None
    pending_origin: str | None = None  # "rotation" | "staged"
    pending_rejected: bool = False
    transport: bool = False  # the operator's transport PIN: replace it when adopted
    rotated: str | None = None  # when the current PIN was set or last changed
    # Candidates ("current" | "pending") presented earlier whose outcome no
    # counter could settle, beyond the one in `attempt`: the card may have
    # refused them, so none is presented again until a person stores a PIN.
    unsettled: tuple[str, ...] = ()
    # The open attempt is a PIN change (AT+CPWD, the current PIN as the old
    # one, the pending PIN as the new): if the counter shows it was refused,
    # the card never took the new PIN either.
    attempt_change: bool = False
    # The PIN the card was last seen to accept, while the current one is
    # unproven (see FALLBACK), and what it was as the current PIN (state,
    # transport, rotated): if the card still holds it, it is current again
    # as it was (still compromised, still the operator's, as old).
    fallback_pin: Pin | None = None
    fallback_of: tuple[str, bool, str | None] | None = None

    @property
    def rejected(self) -> bool:
        return self.state == REJECTED

    @property
    def compromised(self) -> bool:
        return self.state == COMPROMISED

    @property
    def adoption_unproven(self) -> bool:
        """The fallback is a transport PIN: the adoption's change has only
        the modem's OK for it, and the card may still hold the PIN others know."""
        return self.fallback_of is not None and self.fallback_of[1]

    @property
    def attempt_started(self) -> bool:
        return self.attempt is not None

    def candidate(self, which: str) -> Pin | None:
        if which == FALLBACK:
            return self.fallback_pin
        return self.pin if which == CURRENT else self.pending_pin


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
        key = os.urandom(KEY_BYTES)  # what secrets.token_bytes returns, without loading hmac
        atomic_write(self.path, key, 0o600)
        return key


def _transaction(method):
    """A mutation: under the lock file, on the newest store on disk."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with self._locked():
            return method(self, *args, **kwargs)
    return run


class Keystore:
    """PINs by ICCID.  Open with `Keystore.open(state_dir)`.

    Opening checks keystore.json's MAC (tampering, truncation, removed or
    swapped entries; in a bucketed store, the manifest) but unseals an entry
    only when it is asked for.  A bucketed store reads a bucket, checked
    against the manifest, the first time one of its entries is asked for, so
    a maintenance gateway holding 10,000 SIMs opens and looks one up reading
    the manifest and one bucket.  A mutation re-seals only the entry it
    changes and writes its bucket and keystore.json once.
    """

    def __init__(self, state_dir: Path, sealer: Sealer):
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / STORE_NAME
        self.witness_path = self.state_dir / WITNESS_NAME
        self._sealer = sealer
        self._key: bytes | None = None
        self.bucket_dir = self.state_dir / BUCKET_DIR
        # A single-file store: every entry, ICCID -> (nonce, ciphertext).
        self._sealed: dict[Iccid, tuple[bytes, bytes]] = {}
        # A bucketed store: its manifest, and the buckets read so far (None: single file).
        self._manifest: Manifest | None = None
        self._loaded: dict[int, dict[Iccid, tuple[bytes, bytes]]] = {}
        self._bkey: bytes | None = None
        self._sweep = True  # bucket files no manifest names may be left: delete at the next write
        self._cache: dict[Iccid, PinEntry] = {}
        # Exactly the bytes `_sealed` or `_manifest` came from (None: there was no file).
        # A transaction compares them with the file's bytes, never a stat
        # signature: inode numbers are reused and mtimes are coarse.
        self._raw: bytes | None = None
        self._generation = 0  # of `_raw`
        self._witnessed = 0  # the witness's generation when last read or written
        self._counted: int | None = None  # the TPM counter's value in `_raw`, if any
        self._counter = None  # the sealer's rollback counter (TPM2), once the key exists
        # The file `_raw` was read from, kept open: its inode cannot be reused
        # while we hold it, so a read outside a transaction may trust "same
        # inode, size and times as when read" to mean "same bytes".
        self._held: _HeldFile | None = None
        self.reloads = 0  # how often another process's write was loaded (the service watches this)
        self._lock_fd: int | None = None
        self._lock_depth = 0

    @classmethod
    def open(cls, state_dir: Path, sealer: Sealer | None = None) -> "Keystore":
        """Load and authenticate the store. Missing files mean an empty store;
        the key is created on the first write."""
        state_dir = Path(state_dir)
        sealer = sealer if sealer is not None else FileSealer(state_dir)
        if state_dir.exists():
            check_private_dir(state_dir)
        keystore = cls(state_dir, sealer)
        keystore._key = sealer.load_key()
        keystore._reload_unlocked()
        keystore.reloads = 0  # the first load is no change
        return keystore

    # --- reading ---

    def get(self, iccid: Iccid) -> PinEntry | None:
        self._refresh()
        return self._entry(iccid)

    def _entry(self, iccid: Iccid) -> PinEntry | None:
        entry = self._cache.get(iccid)
        if entry is None:
            sealed = self._sealed_for(iccid)
            if iccid in sealed:
                entry = _unseal(self._file_of(iccid), self._key, iccid, sealed[iccid])
                self._cache[iccid] = entry
        return entry

    def entries(self) -> list[PinEntry]:
        return [self._entry(i) for i in self.iccids()]

    def iccids(self) -> list[Iccid]:
        """Every ICCID: reads every bucket of a bucketed store (O(n) by nature)."""
        self._refresh()
        if self._manifest is None:
            return sorted(self._sealed, key=lambda i: i.value)
        return sorted((i for bucket in self._all_buckets() for i in bucket), key=lambda i: i.value)

    def __len__(self) -> int:
        self._refresh()
        return self._count()

    def __contains__(self, iccid: Iccid) -> bool:
        self._refresh()
        return iccid in self._sealed_for(iccid)

    def __repr__(self) -> str:
        return f"<Keystore {self.path} entries={self._count()}>"

    # --- mutations: each is one commit, exactly one atomic rewrite of keystore.json
    # (after the bucket files it names, in a bucketed store) ---

    @_transaction
    def set_pin(self, iccid: Iccid, pin: Pin, *, transport: bool = False) -> PinEntry:
        """Store `pin` for `iccid` (new or replacing): active, every latch and
        pending PIN cleared.  `transport`: the operator's PIN, to be replaced
        by one unique to this gateway when the SIM is adopted."""
        if not isinstance(pin, Pin):
            raise TypeError("set_pin needs a Pin")
        now = _now()
        old = self.get(iccid)
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
            transport=transport,
            rotated=now,
        )
        self._commit([entry])
        return entry

    @_transaction
    def set_pins(self, pins: list[tuple[Iccid, Pin]]) -> None:
        """Store many new PINs in one write (provisioning a fleet's SIMs)."""
        now = _now()
        entries = []
        for iccid, pin in pins:
            if not isinstance(pin, Pin):
                raise TypeError("set_pins needs Pin values")
            old = self.get(iccid)
            entries.append(PinEntry(iccid=iccid, pin=pin, pending_pin=None, state=ACTIVE,
                                    created=old.created if old else now, updated=now,
                                    last_imei=None, rotated=now))
        if entries:
            self._commit(entries)

    @_transaction
    def stage_pending(self, iccid: Iccid, pin: Pin, origin: str, *, over_rotation: bool = True) -> PinEntry:
        """Keep `pin` as the PIN the card may hold next.  Written (and fsynced)
        before the card is asked to change, so no power cut can leave the card
        with a PIN the gateway does not have.  `over_rotation=False`: refuse
        to replace any pending PIN (an OTA staging: the card may hold it
        already; a person's unblock may replace it, the card's PUK decides)."""
        if not isinstance(pin, Pin):
            raise TypeError("stage_pending needs a Pin")
        if origin not in (ROTATION, STAGED):
            raise ValueError("origin must be rotation or staged")
        entry = self._require(iccid)
        if entry.pending_pin is not None and (origin == ROTATION or not over_rotation):
            # The rotation checked before it began, outside this lock; a PIN
            # staged meanwhile may be on its way to the card: never lose it.
            raise ChangeNotSettled(
                f"a pending PIN of ICCID {iccid} is not settled yet; "
                f"the {origin} PIN is not stored (it is settled when the SIM is next unlocked)"
            )
        if origin == STAGED and not over_rotation and entry.fallback_pin is not None:
            # An OTA staging, and a rotation settled by the modem's OK alone
            # since the caller looked: current, staged and fallback would be
            # three candidates, and only two fit above the guard
            # (lifecycle.change_waits).  A person's unblock goes on: the
            # card's PUK decides, and it drops the fallback.
            raise ChangeNotSettled(f"the last PIN change of ICCID {iccid} is not proven yet; "
                                   "the staged PIN is not stored")
        entry = replace(entry, pending_pin=pin, pending_origin=origin, pending_rejected=False,
                        unsettled=_without(entry.unsettled, PENDING), updated=_now())
        self._commit([entry])
        return entry

    @_transaction
    def promote_pending(self, iccid: Iccid, imei: str | None = None, pin: Pin | None = None) -> PinEntry | None:
        """The card holds the pending PIN now: it becomes the current one.
        With `pin`, only if that is still the pending PIN (None otherwise):
        a person may have stored or staged another one meanwhile."""
        old = self._require(iccid)
        if pin is not None and old.pending_pin != pin:
            return None
        if old.pending_pin is None:
            raise KeystoreError(f"no pending PIN is stored for ICCID {iccid}")
        # Proven (the card unlocked with it) or a person's (unblock): the
        # fallback has nothing left to cover.
        entry = replace(_promoted(old, imei), fallback_pin=None, fallback_of=None)
        self._commit([entry])
        return entry

    @_transaction
    def promote_unproven(self, iccid: Iccid, imei: str | None, pin: Pin) -> PinEntry | None:
        """Our change to `pin`, the pending PIN, was answered OK and no
        counter fell: the card made it, or the modem never passed it on.
        `pin` becomes current; the old current, which the card was last seen
        to accept (no change begins while one is unproven:
        lifecycle.change_waits), is kept as the fallback as it was.  Were a
        fallback held already (change_waits refuses that), it is the one
        proven and stays.  One write, so no power cut loses
        either.  None (nothing written) when `pin` is no
        longer our pending change: a person stored, staged or forgot a PIN
        meanwhile, which wins."""
        old = self.get(iccid)
        if old is None or old.pending_pin != pin or old.pending_origin != ROTATION:
            return None
        if old.fallback_pin is not None:
            kept, of = old.fallback_pin, old.fallback_of
        else:
            kept, of = old.pin, (old.state, old.transport, old.rotated)
        entry = replace(_promoted(old, imei), fallback_pin=kept, fallback_of=of)
        self._commit([entry])
        return entry

    @_transaction
    def discard_pending(self, iccid: Iccid, pin: Pin | None = None) -> None:
        """Drop the pending PIN; with `pin`, only if it is still that one
        (never a PIN a person staged after the caller looked).  Nothing to
        do when a person forgot the entry meanwhile."""
        entry = self.get(iccid)
        if entry is not None and entry.pending_pin is not None and (pin is None or entry.pending_pin == pin):
            self._commit([replace(entry, pending_pin=None, pending_origin=None, pending_rejected=False,
                                  unsettled=_without(entry.unsettled, PENDING), updated=_now())])

    @_transaction
    def begin_attempt(self, iccid: Iccid, attempts_before: int | None = None,
                      which: str = CURRENT, presenting: Pin | None = None,
                      unsettled_ok: bool = False, change: bool = False) -> bool:
        """Persist that a PIN is about to be presented. Call BEFORE sending it,
        so a power cut mid-presentation is visible at the next boot.
        `presenting`: the PIN the caller looked up; when another process
        replaced it since, nothing is marked and False says "look again".
        `unsettled_ok`: a person asked for an unsettled candidate (pin try
        --unsettled); its new attempt replaces the old unsettled one.
        `change`: the PIN goes out as the old PIN of a change to the pending one."""
        entry = self._require(iccid)
        if presenting is not None and entry.candidate(which) != presenting:
            return False
        if _is_rejected(entry, which) or entry.candidate(which) is None \
                or (which in entry.unsettled and not unsettled_ok):
            # Defence in depth for guarantee 1; the policy should never get here.
            raise KeystoreError(
                f"the {which} PIN stored for ICCID {iccid} is missing, was rejected by the card "
                "or its earlier attempt was never settled; it is not presented again until a new PIN is set"
            )
        unsettled = _without(entry.unsettled, which)
        if entry.attempt not in (None, which) and not _settled_unspent(entry.attempts_before, attempts_before):
            # The other candidate's attempt is still open and no counter
            # shows it unspent: keep it, or a later presentation could spend
            # an attempt the card already counted (guarantee 1).
            unsettled = _with(unsettled, entry.attempt)
        self._commit([replace(entry, attempt=which, attempts_before=attempts_before,
                              unsettled=unsettled, attempt_change=change, updated=_now())])
        return True

    @_transaction
    def cancel_attempt(self, iccid: Iccid, which: str, before: PinEntry) -> None:
        """Nothing was sent after begin_attempt (the UICC layer refused: the
        card's state changed meanwhile): put the attempt fields back as they
        were in `before`, unless the entry changed since in another way."""
        entry = self.get(iccid)
        if entry is None or entry.attempt != which or entry.candidate(which) != before.candidate(which):
            return
        self._commit([replace(entry, attempt=before.attempt, attempts_before=before.attempts_before,
                              unsettled=before.unsettled, attempt_change=before.attempt_change,
                              updated=_now())])

    @_transaction
    def record_accepted(self, iccid: Iccid, imei: str | None, which: str = CURRENT) -> PinEntry:
        """The card accepted `which` (or was found unlocked with it).
        The current PIN accepted is proven: the fallback is dropped.  The
        fallback accepted: the change that replaced it never reached the
        card, and it is current again as it was."""
        if which == PENDING:
            return self.promote_pending(iccid, imei)
        if which == FALLBACK:
            return self._fallback_accepted(iccid, imei)
        entry = self._require(iccid)
        unsettled = entry.unsettled
        if entry.attempt == PENDING:
            # Still open: the card, holding the current PIN, refused it if it got it.
            unsettled = _with(unsettled, PENDING)
        changes = dict(attempt=None, attempts_before=None, attempt_change=False,
                       last_imei=str(imei) if imei is not None else None,
                       fallback_pin=None, fallback_of=None, unsettled=_without(unsettled, FALLBACK))
        if entry.pending_origin == ROTATION:
            # The card holds the current PIN, so our own interrupted change
            # never reached it: that pending PIN is void.
            changes.update(pending_pin=None, pending_origin=None, pending_rejected=False,
                           unsettled=_without(changes.get("unsettled", entry.unsettled), PENDING))
        if all(getattr(entry, k) == v for k, v in changes.items()):
            return entry  # nothing new: no write at every boot
        entry = replace(entry, updated=_now(), **changes)
        self._commit([entry])
        return entry

    def _fallback_accepted(self, iccid: Iccid, imei: str | None) -> PinEntry:
        old = self._require(iccid)
        if old.fallback_pin is None:
            raise KeystoreError(f"no fallback PIN is stored for ICCID {iccid}")
        entry = replace(_restored(old), updated=_now(),
                        last_imei=str(imei) if imei is not None else old.last_imei)
        self._commit([entry])
        return entry

    @_transaction
    def note_paired(self, iccid: Iccid, imei: str | None) -> None:
        """Found unlocked in this modem without a presentation: only the IMEI
        it is paired with is new (no write when it is the same)."""
        entry = self._require(iccid)
        imei = str(imei) if imei is not None else None
        if entry.last_imei != imei:
            self._commit([replace(entry, last_imei=imei, updated=_now())])

    @_transaction
    def record_rejected(self, iccid: Iccid, which: str = CURRENT, presented: Pin | None = None) -> None:
        """Set the persistent latch: this PIN is never presented again
        automatically.  With `presented`, only if that is still the stored
        PIN: a person may have stored a new one meanwhile (mtcctl pin set),
        which the card has not seen."""
        entry = self._require(iccid)
        if presented is not None and entry.candidate(which) != presented:
            return
        if which == PENDING:
            entry = replace(entry, pending_rejected=True)
        elif which == FALLBACK:
            # The card holds neither it nor the current PIN: nothing is
            # left for it to cover, and it is never presented again.
            entry = replace(entry, fallback_pin=None, fallback_of=None)
        else:
            entry = replace(entry, state=REJECTED)
        if which == CURRENT and entry.attempt == CURRENT and entry.attempt_change \
                and entry.pending_origin == ROTATION:
            # The lost attempt was our change's AT+CPWD and the card refused
            # its old PIN, so it never took the new one: presenting that
            # pending PIN now could only spend another attempt.
            entry = replace(entry, pending_pin=None, pending_origin=None, pending_rejected=False,
                            unsettled=_without(entry.unsettled, PENDING))
        # The latch is stronger than "unsettled"; the other candidate's open
        # attempt, if any, stays unsettled rather than being forgotten.
        unsettled = _without(entry.unsettled, which)
        if entry.attempt not in (None, which):
            unsettled = _with(unsettled, entry.attempt)
        self._commit([replace(entry, attempt=None, attempts_before=None, unsettled=unsettled,
                              attempt_change=False, updated=_now())])

    @_transaction
    def mark_compromised(self, iccids: list[Iccid] | None = None) -> int:
        """Presume these PINs (default: all) known to an attacker.  One write."""
        now = _now()
        changed = []
        for iccid in (iccids if iccids is not None else self.iccids()):
            entry = self._require(iccid)
            marked = replace(entry, state=COMPROMISED) if entry.state == ACTIVE else entry
            if entry.fallback_of is not None and entry.fallback_of[0] != COMPROMISED:
                # The fallback, sealed in the same store, is as known: if the
                # card still holds it, it is still to be replaced.
                marked = replace(marked, fallback_of=(COMPROMISED, *entry.fallback_of[1:]))
            if marked != entry:
                changed.append(replace(marked, updated=now))
        if changed:
            self._commit(changed)
        return len(changed)

    @_transaction
    def forget(self, iccid: Iccid) -> bool:
        if iccid not in self._sealed_for(iccid):
            return False
        self._write({iccid: None}, forgotten=iccid)
        return True

    # --- internals ---

    def _refresh(self) -> None:
        """Before a read outside a transaction: reload when the file is not
        the one we read (inside one, `_locked` has just compared the bytes)."""
        if self._lock_depth:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise StateError(f"cannot read {self.path}: {exc.strerror}") from None
        if st is None and self._raw is None:
            return
        if st is not None and self._held is not None and self._held.unchanged(st):
            return
        self._reload_unlocked()

    def _reload_unlocked(self) -> None:
        try:
            self._reload()
            return
        except RolledBack:
            pass
        # Without the lock, writes landing between our reads of the witness
        # and the store can look like a rollback (a new store's first witness
        # appearing meanwhile); under it, the verdict stands.
        with self._locked():
            pass

    def _reload(self) -> None:
        """Read the witness, then the store, and take the store's bytes as the
        new state when they differ from ours.  The witness first: it is
        written after the store, so a witness read before the store can never
        be newer than a store that is not an older copy."""
        if self._key is None:
            self._key = self._sealer.load_key()
        counter = self._rollback_counter()
        count = counter.read() if counter is not None else None
        witnessed = _read_witness(self.witness_path, self._key) if self._key is not None else None
        raw, held = _read_store(self.path)
        if raw is None or raw != self._raw:
            sealed, manifest, generation, counted = _load_sealed(self.path, raw, self._key)
        else:
            sealed, manifest, generation, counted = self._sealed, self._manifest, self._generation, self._counted
        if raw is not None and self._key is not None:
            if counter is not None:
                self._check_counter(counter, counted, count)
            self._check_not_rolled_back(generation, witnessed)
        if raw != self._raw:
            self.reloads += 1  # our own writes set _raw: this is another process's
            self._forget_changed_buckets(manifest)
            self._sealed = sealed
            self._manifest = manifest
            self._raw = raw
            self._generation = generation
            self._counted = counted
        self._held = held
        self._witnessed = witnessed or 0

    def _forget_changed_buckets(self, manifest: Manifest | None) -> None:
        """Drop what was read from buckets the new manifest no longer vouches
        for (all of it, unless both are bucketed alike)."""
        old = self._manifest
        if old is None or manifest is None or old.fanout != manifest.fanout:
            self._cache.clear()
            self._loaded.clear()
            return
        changed = {i for i in old.buckets.keys() | manifest.buckets.keys()
                   if old.buckets.get(i) != manifest.buckets.get(i)}
        for index in changed:
            self._loaded.pop(index, None)
        for iccid in [i for i in self._cache if self._bucket_index(i, manifest.fanout) in changed]:
            del self._cache[iccid]

    def _count(self) -> int:
        return len(self._sealed) if self._manifest is None else self._manifest.count

    def _bucket_key(self) -> bytes:
        if self._bkey is None:
            self._bkey = buckets.bucket_key(self._key)
        return self._bkey

    def _bucket_index(self, iccid: Iccid, fanout: int) -> int:
        return buckets.bucket_of(self._bucket_key(), iccid.value, fanout)

    def _sealed_for(self, iccid: Iccid) -> dict[Iccid, tuple[bytes, bytes]]:
        """The sealed entries among which `iccid`'s would be: all of them in a
        single-file store, its bucket in a bucketed one."""
        try:
            return self._sealed_for_now(iccid)
        except _Moved:
            pass
        with self._locked():  # reloads; under the lock no bucket moves
            return self._sealed_for_now(iccid)

    def _sealed_for_now(self, iccid: Iccid) -> dict[Iccid, tuple[bytes, bytes]]:
        if self._manifest is None:
            return self._sealed
        if not self._manifest.buckets:
            return {}
        return self._bucket(self._bucket_index(iccid, self._manifest.fanout))

    def _file_of(self, iccid: Iccid) -> Path:
        """The file `iccid`'s entry is read from, to name in a complaint."""
        if self._manifest is None:
            return self.path
        index = self._bucket_index(iccid, self._manifest.fanout)
        ref = self._manifest.buckets.get(index)
        return self.bucket_dir / ref.name(index) if ref is not None else self.path

    def _all_buckets(self) -> list[dict[Iccid, tuple[bytes, bytes]]]:
        try:
            return [self._bucket(index) for index in sorted(self._manifest.buckets)]
        except _Moved:
            pass
        with self._locked():
            if self._manifest is None:
                return [self._sealed]
            return [self._bucket(index) for index in sorted(self._manifest.buckets)]

    def _bucket(self, index: int) -> dict[Iccid, tuple[bytes, bytes]]:
        """One bucket's sealed entries, read and checked against the manifest
        the first time they are needed."""
        loaded = self._loaded.get(index)
        if loaded is not None:
            return loaded
        ref = self._manifest.buckets.get(index)
        if ref is None:
            return {}
        path = self.bucket_dir / ref.name(index)
        raw, _ = _read_store(path)
        if raw is None:
            if self._lock_depth == 0:
                raise _Moved  # another process committed and deleted it since: look again under the lock
            raise KeystoreError(f"{self.path} is damaged: its bucket file {path} is missing")
        self._loaded[index] = sealed = _load_bucket(path, raw, ref, index, self._manifest.fanout,
                                                    self._bucket_key(), self.path)
        return sealed

    def _sweep_buckets(self) -> None:
        """Delete the bucket files no manifest names (left by a cut write or a
        failed one); under the lock, after the reload."""
        if not self._sweep:
            return
        named = set() if self._manifest is None else {
            ref.name(index) for index, ref in self._manifest.buckets.items()}
        fd = self._open_bucket_dir()
        if fd is not None:
            # Names relative to the descriptor: a symlink swapped in meanwhile is not followed.
            try:
                leftovers = [name for name in os.listdir(fd) if name not in named]
                if leftovers:
                    # The manifest kept must be durable before the files the one before it
                    # named go: a write that could not sync it leaves both possible after a cut.
                    fsync_dir(self.state_dir)
                for name in leftovers:
                    try:
                        os.unlink(name, dir_fd=fd)
                    except OSError:
                        pass  # left for the next write's sweep
            except OSError as exc:
                raise StateError(f"cannot read {self.bucket_dir}: {exc.strerror}") from None
            finally:
                os.close(fd)
        self._sweep = False

    def _open_bucket_dir(self) -> int | None:
        """keystore.d, never through a symlink (None: there is none): the
        sweep deletes every name in it the manifest does not hold, so a
        symlink there would have it delete files wherever it points."""
        try:
            return os.open(self.bucket_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise StateError(f"{self.bucket_dir} is not a directory (a symlink?); "
                                 f"refusing to use it") from None
            raise StateError(f"cannot read {self.bucket_dir}: {exc.strerror}") from None

    def _rollback_counter(self):
        """The sealer's monotonic counter outside the state directory (a
        TPM2 NV counter), when it has one and the key exists."""
        if self._counter is None and self._key is not None:
            make = getattr(self._sealer, "rollback_counter", None)
            self._counter = make() if make is not None else None
        return self._counter

    def _check_counter(self, counter, counted: int | None, count: int | None) -> None:
        """Each write records the counter's value and then advances it, so
        the newest store holds the value just below the counter's (or equal
        to it, when the power failed before the increment).  Stores written
        before the counter was in use hold none: only the witness checks them."""
        if counted is None:
            return
        if count is None:
            why = f"the {counter.describe()} it was counted on is gone"
        elif counted < count - 1:
            why = f"the {counter.describe()} is at {count}, the store was counted at {counted}"
        else:
            return
        raise RolledBack(self.path, why)

    def _check_not_rolled_back(self, generation: int, witnessed: int | None) -> None:
        """A store older than the last one written (by the witness, or by what
        this object itself saw) is an older copy put back: it may hold a PIN
        the card rejected as active again."""
        last = max(witnessed or 0, self._generation if self._raw is not None else 0)
        if generation < last:
            why = f"it is generation {generation}, the last one written was {last}"
        elif witnessed is None and generation > 1:
            # The first write may be cut before its witness; later ones find it.
            why = f"{WITNESS_NAME}, written with every change, is missing"
        else:
            return
        raise RolledBack(self.path, why)

    @contextlib.contextmanager
    def _locked(self):
        if self._lock_depth == 0:
            ensure_private_dir(self.state_dir)
            try:
                fd = os.open(self.state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise StateError(f"cannot lock {self.state_dir / LOCK_NAME}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                os.close(fd)
                raise StateError(f"cannot lock {self.state_dir / LOCK_NAME}: {exc.strerror}") from None
            self._lock_fd = fd
        self._lock_depth += 1
        try:
            if self._lock_depth == 1:
                # Always the bytes on disk now, whatever stat says.
                self._reload()
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                os.close(self._lock_fd)
                self._lock_fd = None

    def _require(self, iccid: Iccid) -> PinEntry:
        entry = self.get(iccid)
        if entry is None:
            raise PinNotStored(f"no PIN is stored for ICCID {iccid}")
        return entry

    def _commit(self, entries: list[PinEntry]) -> None:
        ensure_private_dir(self.state_dir)
        if self._key is None:
            self._key = self._sealer.load_key() or self._sealer.create_key()
        aead = _aesgcm(self._key)
        changes = {}
        for entry in entries:
            nonce = os.urandom(NONCE_BYTES)
            plain = json.dumps(_record(entry), sort_keys=True).encode()
            changes[entry.iccid] = (nonce, aead.encrypt(nonce, plain, _associated_data(entry.iccid)))
        self._write(changes, entries)

    def _write(self, changes: dict[Iccid, tuple[bytes, bytes] | None], entries: list[PinEntry] = (),
               forgotten: Iccid | None = None) -> None:
        """Write `changes` (ICCID -> sealed entry, None: removed).  Only ever
        called in a transaction, after `_locked` reloaded."""
        assert self._lock_depth > 0, "keystore writes happen in a transaction"
        ensure_private_dir(self.state_dir)
        if self._key is None:
            self._key = self._sealer.load_key() or self._sealer.create_key()
        generation = max(self._generation, self._witnessed) + 1
        counter = self._rollback_counter()
        counted = None
        if counter is not None:
            # Its first increment is what starts a TPM counter (at the
            # highest value any counter there ever had), so start it first.
            counted = counter.read()
            if counted is None:
                counted = counter.advance()
        self._sweep_buckets()
        old_manifest, manifest, touched = self._manifest, None, {}
        sealed = dict(self._sealed)
        if old_manifest is None:
            _apply(sealed, changes)
            if len(sealed) > buckets.INLINE_MAX:
                # Migration: every bucket is written before keystore.json,
                # the single file until then, is replaced by the manifest.
                old_manifest, manifest = Manifest(buckets.FANOUT, {}), Manifest(buckets.FANOUT, {})
                for iccid, item in sealed.items():
                    touched.setdefault(self._bucket_index(iccid, buckets.FANOUT), {})[iccid] = item
                sealed = {}
        else:
            manifest = old_manifest
            for iccid, item in changes.items():
                index = self._bucket_index(iccid, manifest.fanout)
                if index not in touched:
                    touched[index] = dict(self._bucket(index))
                _apply(touched[index], {iccid: item})
        try:
            if manifest is None:
                doc = {
                    "format": FORMAT,
                    "generation": generation,
                    "entries": _entries_doc(sealed),
                    "mac": _b64(_file_mac(self._key, sealed, generation, counted)),
                }
                if counted is not None:
                    doc["counter"] = counted
                raw = (json.dumps(doc, indent=1) + "\n").encode()
            else:
                manifest, raw = self._write_buckets(manifest, touched, generation, counted)
            atomic_write(self.path, raw, 0o600)
        except BaseException:
            self._sweep = True  # a bucket written for a manifest that never came
            raise
        # Memory follows the disk only once the disk has it.
        if manifest is not None and self._manifest is None:
            self._loaded.clear()
        for index, contents in touched.items():
            if contents:
                self._loaded[index] = contents
            else:
                self._loaded.pop(index, None)
        self._sealed = sealed
        self._manifest = manifest
        self._raw = raw
        self._generation = generation
        self._counted = counted
        self._held = _HeldFile.open(self.path)  # ours: the lock keeps others from replacing it
        for entry in entries:
            self._cache[entry.iccid] = entry
        if forgotten is not None:
            self._cache.pop(forgotten, None)
        # The witness second: a power cut between the two leaves a store one
        # generation ahead of its witness, which opens (the next write
        # catches up); the other order would leave a store that refuses to.
        _write_witness(self.witness_path, self._key, generation)
        self._witnessed = generation
        if counter is not None:
            counter.advance()  # last, for the same reason
        # Only now that the manifest naming them is durable and vouched for.
        for index in touched:
            old = old_manifest.buckets.get(index)
            if old is not None and old != manifest.buckets.get(index):
                _unlink_quietly(self.bucket_dir / old.name(index))

    def _write_buckets(self, manifest: Manifest, touched: dict[int, dict[Iccid, tuple[bytes, bytes]]],
                       generation: int, counted: int | None) -> tuple[Manifest, bytes]:
        """Write each touched bucket under its new name; the new manifest
        and its bytes (not written yet)."""
        refs = dict(manifest.buckets)
        if any(touched.values()):
            fd = self._open_bucket_dir()  # refuses a symlink: the sweep may not have run in this object
            if fd is not None:
                os.close(fd)
            ensure_private_dir(self.bucket_dir)
            if fd is None:
                fsync_dir(self.state_dir)  # the directory durable before any manifest names a file in it
        for index, contents in sorted(touched.items()):
            if not contents:
                refs.pop(index, None)
                continue
            data = buckets.encode_bucket(index, generation, _entries_doc(contents))
            ref = BucketRef(generation, len(contents), buckets.digest(data))
            atomic_write(self.bucket_dir / ref.name(index), data, 0o600)
            refs[index] = ref
        manifest = Manifest(manifest.fanout, refs)
        mac = buckets.manifest_mac(_mac_key(self._key), manifest, generation, counted)
        return manifest, buckets.encode_manifest(manifest, generation, counted, mac)


class RolledBack(KeystoreError):
    """keystore.json, or one of its bucket files, is older than the last one written."""

    def __init__(self, path: Path, why: str, aside: Path | None = None):
        super().__init__(
            f"{path} is an older copy put back ({why}) and may bring back a PIN the "
            f"card rejected; it is not used: move {'it' if aside is None else aside} aside, then store "
            f"each SIM's PIN again with `mtcctl pin set ICCID` once you have checked it"
        )


class _Moved(Exception):
    """A bucket file named by the manifest read outside the lock is gone."""


def _apply(sealed: dict[Iccid, tuple[bytes, bytes]], changes: dict[Iccid, tuple[bytes, bytes] | None]) -> None:
    for iccid, item in changes.items():
        if item is None:
            sealed.pop(iccid, None)
        else:
            sealed[iccid] = item


def _unlink_quietly(path: Path) -> None:
    """A file no manifest names: if it stays (a cut, an error), the next write's sweep gets it."""
    try:
        os.unlink(path)
    except OSError:
        pass


def _load_bucket(path: Path, raw: bytes, ref: BucketRef, index: int, fanout: int, bkey: bytes,
                 store: Path) -> dict[Iccid, tuple[bytes, bytes]]:
    """The sealed entries of a bucket file whose bytes must be the ones the
    authenticated manifest holds the digest of."""
    if not _equal(buckets.digest(raw), ref.digest):
        doc = buckets.bucket_doc(path, raw)
        if doc is not None and doc["bucket"] == index and doc["generation"] < ref.generation:
            raise RolledBack(path, f"it is generation {doc['generation']}, the store's manifest "
                                   f"records {ref.generation}", aside=store)
        raise KeystoreError(f"{path} is damaged: it fails authentication")
    doc = buckets.bucket_doc(path, raw)
    if doc is None or doc["bucket"] != index or doc["generation"] != ref.generation:
        raise KeystoreError(f"{path} is damaged: unexpected layout")
    sealed = _parse_entries(path, doc["entries"])
    if len(sealed) != ref.count or any(buckets.bucket_of(bkey, i.value, fanout) != index for i in sealed):
        raise KeystoreError(f"{path} is damaged: unexpected layout")
    return sealed


class _HeldFile:
    """An open descriptor on the store file as read, and its fstat then."""

    def __init__(self, fd: int, st: os.stat_result):
        self.fd = fd
        self.signature = _signature(st)

    @classmethod
    def open(cls, path: Path) -> "_HeldFile | None":
        try:
            # O_NONBLOCK: opening a FIFO put in its place would otherwise wait for a writer forever.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read {path}: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise KeystoreError(f"{path} is not a regular file")
        return cls(fd, st)

    def unchanged(self, st: os.stat_result) -> bool:
        return _signature(st) == self.signature

    def __del__(self):
        try:
            os.close(self.fd)
        except OSError:
            pass


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _load_sealed(path: Path, raw: bytes | None, key: bytes | None
                 ) -> tuple[dict[Iccid, tuple[bytes, bytes]], Manifest | None, int, int | None]:
    """The sealed entries (a single file) or the manifest (a bucketed
    store), the generation and the rollback counter's value (if any) of the
    store file's bytes `raw` (None: no file), authenticated when the key is
    known."""
    if raw is None:
        return {}, None, 0, None
    sealed, manifest, generation, counted, mac = _parse_store(path, raw)
    held = len(sealed) if manifest is None else manifest.count
    if held and key is None:
        raise KeystoreError(
            f"{path} holds {held} sealed entries but the key is missing"
        )
    if manifest is not None:
        if key is not None and not _equal(
                mac, buckets.manifest_mac(_mac_key(key), manifest, generation, counted)):
            raise KeystoreError(f"{path} is damaged: the file fails authentication")
        return sealed, manifest, generation, counted
    if key is not None and not _equal(mac, _file_mac(key, sealed, generation, counted)):
        # Name the entry at fault when one is; otherwise the file as a whole
        # was altered (an entry removed, or an old copy of one put back).
        for iccid, blob in sealed.items():
            _unseal(path, key, iccid, blob)
        raise KeystoreError(f"{path} is damaged: the file fails authentication")
    return sealed, None, generation or 0, counted


def _promoted(old: PinEntry, imei: str | None) -> PinEntry:
    """`old` with its pending PIN as the current one, every latch and marker cleared."""
    now = _now()
    return replace(old, pin=old.pending_pin, pending_pin=None, pending_origin=None,
                   pending_rejected=False, state=ACTIVE, transport=False,
                   attempt=None, attempts_before=None, unsettled=(), attempt_change=False,
                   rotated=now, updated=now,
                   last_imei=str(imei) if imei is not None else old.last_imei)


def _restored(old: PinEntry) -> PinEntry:
    """`old` with its fallback current again, as it was (the card never made
    the change that replaced it), and the PIN that change set gone.  Our own
    rotation's pending PIN was a change from that PIN, so it is void too; a
    staged one (the operator's) stays, as its marks do."""
    state, transport, rotated = old.fallback_of or (ACTIVE, False, old.rotated)
    keep_pending = old.pending_origin == STAGED
    unsettled = tuple(u for u in old.unsettled if u == PENDING and keep_pending)
    return replace(old, pin=old.fallback_pin, fallback_pin=None, fallback_of=None,
                   # Only the presumption of compromise: never a latch of another PIN.
                   state=COMPROMISED if state == COMPROMISED else ACTIVE,
                   transport=transport, rotated=rotated,
                   attempt=None, attempts_before=None, attempt_change=False, unsettled=unsettled,
                   **({} if keep_pending else dict(pending_pin=None, pending_origin=None,
                                                    pending_rejected=False)))


def _is_rejected(entry: PinEntry, which: str) -> bool:
    if which == FALLBACK:
        return False  # a refused fallback is dropped, never kept
    return entry.pending_rejected if which == PENDING else entry.rejected


def _settled_unspent(before: int | None, now: int | None) -> bool:
    """Whether the counter shows that an attempt started at `before` spent
    nothing (both read, and it has not fallen)."""
    return before is not None and now is not None and now >= before


def _with(unsettled: tuple[str, ...], which: str) -> tuple[str, ...]:
    return unsettled if which in unsettled else tuple(sorted((*unsettled, which)))


def _without(unsettled: tuple[str, ...], which: str) -> tuple[str, ...]:
    return tuple(u for u in unsettled if u != which)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _associated_data(iccid: Iccid) -> bytes:
    return f"{ENTRY_FORMAT}|{iccid.value}".encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _entries_doc(sealed: dict[Iccid, tuple[bytes, bytes]]) -> dict:
    return {
        iccid.value: {"nonce": _b64(nonce), "sealed": _b64(blob)}
        for iccid, (nonce, blob) in sorted(sealed.items(), key=lambda kv: kv[0].value)
    }


def _file_mac(key: bytes, sealed: dict[Iccid, tuple[bytes, bytes]], generation: int | None,
              counted: int | None = None) -> bytes:
    """HMAC-SHA256 over the generation and every entry, under a key derived
    from the data key: catches an entry removed, an older sealed copy of one
    put back, or the generation changed.  None: a LEGACY_FORMAT file."""
    mac_key = _mac_key(key)
    if generation is None:
        parts = [LEGACY_FORMAT.encode()]
    else:
        parts = [FORMAT.encode(), generation.to_bytes(8, "big"),
                 b"\0" if counted is None else b"\1" + counted.to_bytes(8, "big")]
    for iccid, (nonce, blob) in sorted(sealed.items(), key=lambda kv: kv[0].value):
        for part in (iccid.value.encode(), nonce, blob):
            parts += (len(part).to_bytes(4, "big"), part)
    return hmac_sha256(mac_key, parts)


def _mac_key(key: bytes) -> bytes:
    return hmac_sha256(key, [b"mtcd-keystore/1 file mac"])


def _record(entry: PinEntry) -> dict:
    # The only place a PIN leaves its Secret wrapper: straight into the cipher.
    return {
        "pin": entry.pin.reveal(),
        "pending_pin": entry.pending_pin.reveal() if entry.pending_pin else None,
        "pending_origin": entry.pending_origin,
        "pending_rejected": entry.pending_rejected,
        "state": entry.state,
        "transport": entry.transport,
        "created": entry.created,
        "updated": entry.updated,
        "rotated": entry.rotated,
        "last_imei": entry.last_imei,
        "attempt": entry.attempt,
        "attempts_before": entry.attempts_before,
    } | ({"unsettled": list(entry.unsettled)} if entry.unsettled else {}) \
        | ({"change": True} if entry.attempt_change else {}) \
        | ({"fallback": {"pin": entry.fallback_pin.reveal(), "state": entry.fallback_of[0],
                         "transport": entry.fallback_of[1], "rotated": entry.fallback_of[2]}}
           if entry.fallback_pin is not None else {})


def _read_store(path: Path) -> tuple[bytes | None, "_HeldFile | None"]:
    """The bytes of the store file or of a bucket file (None: no file) and
    the open file they came from, its fstat taken on the same descriptor:
    every read of the store goes through here."""
    held = _HeldFile.open(path)
    if held is None:
        return None, None
    chunks, size = [], 0
    try:
        while chunk := os.read(held.fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_STORE_BYTES:
                raise KeystoreError(f"{path} is damaged: far too large for a keystore")
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    return b"".join(chunks), held


def _witness_mac(key: bytes, generation: int) -> bytes:
    mac_key = hmac_sha256(key, [b"mtcd-keystore witness mac"])
    return hmac_sha256(mac_key, [f"{WITNESS_FORMAT}|{generation}".encode()])


def _read_witness(path: Path, key: bytes) -> int | None:
    """The generation the witness vouches for; None when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        raw = os.read(fd, 4096)
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict) or set(doc) != {"format", "generation", "mac"}:
            raise ValueError
        generation = doc["generation"]
        if doc["format"] != WITNESS_FORMAT or type(generation) is not int or generation < 0:
            raise ValueError
        mac = base64.b64decode(doc["mac"], validate=True)
    except (UnicodeDecodeError, ValueError, TypeError, binascii.Error):
        raise KeystoreError(f"{path} is damaged: not a {WITNESS_FORMAT} file") from None
    if not _equal(mac, _witness_mac(key, generation)):
        raise KeystoreError(f"{path} is damaged: it fails authentication")
    return generation


def _write_witness(path: Path, key: bytes, generation: int) -> None:
    doc = {"format": WITNESS_FORMAT, "generation": generation,
           "mac": _b64(_witness_mac(key, generation))}
    atomic_write(path, (json.dumps(doc) + "\n").encode(), 0o600)


def _parse_store(path: Path, raw: bytes):
    """The sealed entries of a single file, or the manifest of a bucketed
    store, its generation (None: LEGACY_FORMAT), rollback counter value and
    MAC, checked for shape (not yet authenticity)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeystoreError(f"{path} is damaged: it is not valid JSON") from None
    if isinstance(doc, dict) and doc.get("format") == buckets.MANIFEST_FORMAT:
        manifest, generation, counted, mac = buckets.parse_manifest(path, doc)
        return {}, manifest, generation, counted, mac
    if not isinstance(doc, dict) or doc.get("format") not in (FORMAT, LEGACY_FORMAT):
        raise KeystoreError(f"{path} is damaged: unknown format (expected {FORMAT})")
    layout = {"format", "entries", "mac"} | ({"generation"} if doc["format"] == FORMAT else set())
    entries = doc.get("entries")
    if not isinstance(entries, dict) or set(doc) - {"counter"} != layout:
        raise KeystoreError(f"{path} is damaged: unexpected layout")
    generation, counted = doc.get("generation"), doc.get("counter")
    if doc["format"] == FORMAT and (type(generation) is not int or not 0 < generation < 2**63):
        raise KeystoreError(f"{path} is damaged: unexpected layout")
    if "counter" in doc and (doc["format"] != FORMAT or type(counted) is not int
                             or not 0 <= counted < 2**64):
        raise KeystoreError(f"{path} is damaged: unexpected layout")
    try:
        mac = base64.b64decode(doc["mac"], validate=True)
    except (TypeError, binascii.Error):
        raise KeystoreError(f"{path} is damaged: unexpected layout") from None
    return _parse_entries(path, entries), None, generation, counted, mac


def _parse_entries(path: Path, entries: dict) -> dict[Iccid, tuple[bytes, bytes]]:
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


def _aesgcm(key: bytes):
    """The AEAD for entries.  Imported here, not at the top: `cryptography`
    maps its own OpenSSL (about 6 MB resident), and opening the store,
    counting its entries or checking its MAC (`mtcctl status`) never needs it."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _unseal(path: Path, key: bytes, iccid: Iccid, sealed: tuple[bytes, bytes]) -> PinEntry:
    from cryptography.exceptions import InvalidTag

    nonce, blob = sealed
    try:
        plain = _aesgcm(key).decrypt(nonce, blob, _associated_data(iccid))
    except InvalidTag:
        raise KeystoreError(
            f"{path} is damaged: entry {iccid} fails authentication"
        ) from None
    # Authenticated, so written by us; still checked, so a bug cannot turn
    # into a traceback or a half-valid entry.
    try:
        record = json.loads(plain)
        if not isinstance(record, dict) or set(record) - _OPTIONAL_FIELDS != _RECORD_FIELDS:
            raise ValueError
        pending = record["pending_pin"]
        unsettled = record.get("unsettled", [])
        if not isinstance(unsettled, list) or len(set(unsettled)) != len(unsettled) \
                or not set(unsettled) <= set(CANDIDATES):
            raise ValueError
        # Absent in an entry written before the fallback: none held.
        fallback = record.get("fallback")
        if fallback is not None:
            if not isinstance(fallback, dict) or set(fallback) != _FALLBACK_FIELDS \
                    or fallback["state"] not in STATES or type(fallback["transport"]) is not bool \
                    or not (fallback["rotated"] is None or isinstance(fallback["rotated"], str)):
                raise ValueError
        entry = PinEntry(
            iccid=iccid,
            pin=Pin(record["pin"]),
            pending_pin=Pin(pending) if pending is not None else None,
            state=record["state"],
            created=record["created"],
            updated=record["updated"],
            last_imei=record["last_imei"],
            attempt=record["attempt"],
            attempts_before=record["attempts_before"],
            pending_origin=record["pending_origin"],
            pending_rejected=record["pending_rejected"],
            transport=record["transport"],
            rotated=record["rotated"],
            unsettled=tuple(sorted(unsettled)),
            attempt_change=record.get("change", False),
            fallback_pin=Pin(fallback["pin"]) if fallback is not None else None,
            fallback_of=(fallback["state"], fallback["transport"], fallback["rotated"])
            if fallback is not None else None,
        )
        checks = (
            entry.state in STATES,
            isinstance(entry.created, str) and isinstance(entry.updated, str),
            entry.rotated is None or isinstance(entry.rotated, str),
            entry.last_imei is None or isinstance(entry.last_imei, str),
            entry.attempt in (None, *CANDIDATES),
            entry.attempts_before is None
            or (type(entry.attempts_before) is int and 0 <= entry.attempts_before <= 15),
            entry.pending_origin in ((None,) if pending is None else (ROTATION, STAGED)),
            type(entry.pending_rejected) is bool and type(entry.transport) is bool,
            type(entry.attempt_change) is bool and (not entry.attempt_change or entry.attempt == CURRENT),
        )
        if not all(checks):
            raise ValueError
    except (ValueError, TypeError):
        raise KeystoreError(f"{path} is damaged: entry {iccid} has an invalid record") from None
    return entry
