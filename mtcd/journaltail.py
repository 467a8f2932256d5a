"""Following the pairing journal as it grows (`mtcctl history --follow`).

A reader holds `journal.jsonl` open and reads the complete lines appended
after the point it has reached.  A rotation renames that file away; the
file is read to its end, then any files rotated after it, then the new
`journal.jsonl` from its start: nothing is missed or read twice.

Writers append and rotate under an exclusive flock on `journal.jsonl`
(mtcd/journal.py); this reader takes a shared one for the moments it must
see a still picture: where the backlog ends, and a rotation's hand-over.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator

from .errors import StateError
from .journal import PairingJournal, _complete_end, _decode

_CHUNK = 64 * 1024


class JournalTail:
    def __init__(self, journal: PairingJournal):
        self.journal = journal
        self._fd: int | None = None
        self._inode: int | None = None
        self._offset = 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "JournalTail":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self, backlog: Callable[[], list[dict]]) -> list[dict]:
        """`backlog()` (the events already journaled that are to be shown)
        while no append can happen, and following from right after them."""
        with self._still() as fd:
            records = backlog()
            if fd is not None:
                self._follow(fd, at_end=True)
        return records

    def poll(self) -> list[dict]:
        """The events journaled since the last call, oldest first."""
        if self._fd is None:
            with self._still() as fd:  # no journal yet: from the first file's start
                if fd is None:
                    return []
                self._follow(fd, at_end=False)
        records = self._read_new()
        if self._is_current():
            return records
        with self._still() as fd:  # rotated: hand over with rotations held off
            records += self._read_new()
            for path in self._rotated_after():
                records += _whole_file(path)
            self.close()
            if fd is not None:
                self._follow(fd, at_end=False)
                records += self._read_new()
        return records

    # --- inside ---

    @contextlib.contextmanager
    def _still(self) -> Iterator[int | None]:
        """journal.jsonl open and share-locked (None when there is none)."""
        path = self.journal.path
        while True:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except FileNotFoundError:
                yield None
                return
            except OSError as exc:
                raise StateError(f"cannot read {path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                if _inode_at(path) != os.fstat(fd).st_ino:
                    continue  # rotated between open and lock: the new one
                yield fd
                return
            finally:
                os.close(fd)

    def _follow(self, fd: int, *, at_end: bool) -> None:
        """Follow the file `fd` (locked) has open.  Through an open of its
        own: a dup would share the lock, and hold off every writer."""
        self.close()
        own = os.open(self.journal.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        if os.fstat(own).st_ino != os.fstat(fd).st_ino:  # cannot be: the lock holds rotations off
            os.close(own)
            raise StateError(f"cannot follow {self.journal.path}: it was replaced by something else than a rotation")
        self._fd = own
        self._inode = os.fstat(own).st_ino
        self._offset = _complete_end(own, os.fstat(own).st_size) if at_end else 0

    def _is_current(self) -> bool:
        return _inode_at(self.journal.path) == self._inode

    def _read_new(self) -> list[dict]:
        fd = self._fd
        if fd is None:
            return []
        end = _complete_end(fd, os.fstat(fd).st_size)
        if end < self._offset:  # cut back (never by mtcd's writers): go on from there
            self._offset = end
        records = _records(fd, self._offset, end)
        self._offset = end
        return records

    def _rotated_after(self) -> list:
        """The rotated files newer than the one followed, oldest first (all
        of them when it has been dropped already)."""
        olds = [self.journal.path.with_name(f"{self.journal.path.name}.{n}") for n in range(1, self.journal.keep + 1)]
        inodes = [_inode_at(p) for p in olds]
        newer = olds[: inodes.index(self._inode)] if self._inode in inodes else olds
        return [p for p in reversed(newer) if p.exists()]


def _inode_at(path) -> int | None:
    try:
        return os.stat(path, follow_symlinks=False).st_ino
    except FileNotFoundError:
        return None


def _whole_file(path) -> list[dict]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return _records(fd, 0, _complete_end(fd, os.fstat(fd).st_size))
    finally:
        os.close(fd)


def _records(fd: int, start: int, end: int) -> list[dict]:
    """The records of the complete lines in [start, end); damaged ones
    (which the other readers report) are skipped."""
    records = []
    rest = b""
    pos = start
    while pos < end:
        block = os.pread(fd, min(_CHUNK, end - pos), pos)
        if not block:
            break
        pos += len(block)
        *lines, rest = (rest + block).split(b"\n")
        records.extend(r for r in map(_decode, lines) if r is not None)
    return records


__all__ = ["JournalTail"]
