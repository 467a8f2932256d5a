"""Files under the state directory: private, and replaced atomically.

The keystore and the journal survive power cuts on a gateway with no UPS, so
a file is either the old version or the new one, never half of each: write a
temporary file next to it, fsync it, rename it over the old one, fsync the
directory (so the rename itself is durable).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import StateError


def atomic_write(path: Path, data: bytes, mode: int = 0o600, *, durable: bool = True) -> None:
    """Replace `path` with `data`, all or nothing.

    `durable=False` skips the two fsyncs (the data before the rename, the
    directory after it) for a cache whose loss or damage in a power cut is
    detected and rebuilt from what it caches: readers see the old file or
    the new one, and after a power cut possibly the old one, or a file that
    fails its own check.

    The temporary file is created with `mode` already set (O_EXCL, so never
    someone else's file and never readable by others, even briefly). On any
    failure the temporary file is removed and the old `path` is left as it
    was; the failure is raised as StateError naming the file.
    """
    path = Path(path)
    # os.urandom, not `secrets`: that imports hmac and OpenSSL's libcrypto
    # (3.5 MB resident) into every reader that only might write.
    tmp = path.with_name(f".{path.name}.tmp-{os.urandom(4).hex()}")
    fd = -1
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode
        )
        # The umask can only narrow `mode`; fchmod makes it exact either way.
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except OSError as exc:
        if fd >= 0:
            os.close(fd)
        _remove_quietly(tmp)
        raise StateError(f"cannot write {path}: {_reason(exc)}") from None
    except BaseException:
        if fd >= 0:
            os.close(fd)
        _remove_quietly(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make a rename or creation in `directory` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise StateError(f"cannot sync directory {directory}: {_reason(exc)}") from None
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems cannot fsync a directory at all; that is not a failure.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise StateError(f"cannot sync directory {directory}: {_reason(exc)}") from None
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and its parents) as a 0700 directory, or check the one there."""
    path = Path(path)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        pass  # something that is not a directory: check_private_dir names it
    except OSError as exc:
        raise StateError(f"cannot create state directory {path}: {_reason(exc)}") from None
    check_private_dir(path)
    return path


def check_private_dir(path: Path) -> None:
    """Refuse a state directory that others could write into.

    Whoever can write the directory can swap the keystore and its key, or
    delete the journal, so group/other write access is refused. Read access
    is tolerated (the files themselves are 0600). The owner is not checked:
    root administering a service user's directory is normal.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise StateError(f"cannot use state directory {path}: {_reason(exc)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise StateError(f"state directory {path} is not a directory")
    if st.st_mode & 0o022:
        raise StateError(
            f"state directory {path} is writable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 0700 it"
        )


def _remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _reason(exc: OSError) -> str:
    return exc.strerror or exc.__class__.__name__
