"""Who holds a serial port: said when the exclusive open fails, so that
"resource temporarily unavailable" becomes "held by mtcd.service (pid 812)".

Read from /proc at the one moment it is needed; the parsing is pure.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PROC = Path("/proc")


def unit_of(cgroup_text: str) -> str | None:
    """The systemd unit in a /proc/<pid>/cgroup text, or None.

    cgroup v2 has one line "0::/system.slice/mtcd.service"; v1 has several,
    of which the "name=systemd" one carries the unit.  The innermost
    .service or .scope wins (a unit's own sub-cgroups are below it)."""
    for line in cgroup_text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or parts[1] not in ("", "name=systemd"):
            continue
        units = [p for p in parts[2].split("/") if re.fullmatch(r"[^\s/]+\.(service|scope)", p)]
        if units:
            return units[-1]
    return None


def holders_of(port: str, proc: Path = PROC) -> list[int]:
    """The pids with the port's device open (other than this process)."""
    try:
        wanted = os.stat(port).st_rdev
    except (OSError, ValueError):
        return []
    if not wanted:
        return []
    found = []
    me = os.getpid()
    try:
        entries = list(proc.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or not ours to look at
            continue
        for fd in fds:
            try:
                st = os.stat(fd)
            except OSError:
                continue
            if st.st_rdev == wanted and (st.st_mode & 0o170000) == 0o020000:
                found.append(int(entry.name))
                break
    return sorted(found)


def flock_holder(locks_text: str, dev: int, ino: int) -> int | None:
    """The pid holding a flock on the file (dev, ino), from /proc/locks text:
    "1: FLOCK  ADVISORY  WRITE 812 00:05:87 0 EOF" (device numbers in hex)."""
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    for line in locks_text.splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter, not the holder
            continue
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == want and fields[4].isdigit():
            pid = int(fields[4])
            return pid if pid > 0 else None
    return None


def describe_holder(port: str, proc: Path = PROC) -> str:
    """'the port is held by mtcd.service (pid 812)', '... by pid 4711', or
    '' when nobody can be named (another user's process /proc hides)."""
    try:
        st = os.stat(port)
        pid = flock_holder((proc / "locks").read_text(), st.st_dev, st.st_ino)
    except (OSError, ValueError):
        pid = None
    if pid is None:
        # No lock seen (another pid namespace): name the holder only when
        # there is exactly one process with the port open.
        pids = holders_of(port, proc)
        if len(pids) != 1:
            return ""
        pid = pids[0]
    try:
        unit = unit_of((proc / str(pid) / "cgroup").read_text())
    except OSError:
        unit = None
    # A login session's scope says nothing useful about who holds the port.
    if unit and unit.endswith(".service"):
        return f"the port is held by {unit} (pid {pid})"
    return f"the port is held by pid {pid}"
