"""Where log lines go, with which priority, and changing the level at run time.

Under systemd, stderr is a stream to journald.  Each line we write there is
prefixed with its syslog priority, `<3>` for an error, `<4>` for a warning
(sd-daemon(3)), which journald takes as the entry's PRIORITY because units
default to SyslogLevelPrefix=yes; `journalctl -p warning` then shows
refusals and failures, and nothing else.

Why prefixes rather than systemd-python's JournalHandler: they need nothing
but the standard library, so the priorities survive a missing or broken
python3-systemd; every line, from logging, from the event fallback and the
last error line of a command alike, goes through the one stream systemd
gave us, in the order it was written; and journald attributes stream lines
to the unit even for a process that exits at once (`mtcd once`), which a
datagram sent just before exit may lose.  The structured events
(mtcd.events) still go to the journal socket with their own fields.

Without the journal (a terminal, a pipe, a file), lines keep the format
people read: `mtcd: WARNING: refused: ...`.

The level: -v chooses it at start (warning, info, debug); SIGUSR1 raises it
one step (debug shows the AT traces, PIN-redacted as always), SIGUSR2 brings
back the level the command started with; `mtcctl log-level` sets one by name
through the control socket.  All three change it here, in _change.
"""

from __future__ import annotations

import logging
import os
import sys

# The steps SIGUSR1 climbs, from quiet to everything.
LEVELS = (logging.WARNING, logging.INFO, logging.DEBUG)

_configured = logging.WARNING


def level_for(verbose: int) -> int:
    return LEVELS[min(max(verbose, 0), len(LEVELS) - 1)]


def syslog_priority(levelno: int) -> int:
    """A logging level as a syslog priority (0 emerg ... 7 debug)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def stderr_is_journal(environ=os.environ, fd: int = 2) -> bool:
    """systemd's documented test: JOURNAL_STREAM holds `device:inode` of
    the stream it connected, and it is still our stderr (not a descriptor
    that was redirected, or inherited by a child whose stderr is elsewhere)."""
    value = environ.get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def with_priority(priority: int, text: str) -> str:
    """`<N>` before every line: journald reads the prefix per line, so a
    second line without one would fall back to the default priority."""
    return "\n".join(f"<{priority}>{line}" for line in (text.splitlines() or [""]))


class JournalFormatter(logging.Formatter):
    """`<N>message`: journald supplies the identifier, pid and time."""

    def format(self, record: logging.LogRecord) -> str:
        return with_priority(syslog_priority(record.levelno), super().format(record))


def setup(prog: str, verbose: int, environ=os.environ) -> None:
    """Log to stderr at the level -v asks for, with priorities when stderr
    is the journal.  Like logging.basicConfig, nothing changes when the
    root logger already has handlers (a test harness owns them)."""
    global _configured
    _configured = level_for(verbose)
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal(environ):
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter(f"{prog}: %(levelname)s: %(message)s"))
    logging.basicConfig(level=_configured, handlers=[handler])


def error_line(prog: str, text: str, environ=os.environ) -> str:
    """A command's last word (why it failed), as it goes to stderr."""
    if stderr_is_journal(environ):
        return with_priority(3, text)
    return f"{prog}: {text}"


# The names `mtcctl log-level` takes; "reset" is the configured level.
LEVEL_NAMES = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
RESET = "reset"


def level_name(level: int) -> str:
    return logging.getLevelName(level).lower()


def _change(level: int, why: str) -> int:
    """The one place the running level changes.  The change is said at info
    while the louder of the two levels is in force, so it is seen whenever
    either level shows info lines."""
    root = logging.getLogger()
    current = root.getEffectiveLevel()
    if level == current:
        return level
    announce = logging.getLogger("mtcd").info
    verb = "raised to" if level < current else "lowered to" if level != _configured else "back to"
    if level < current:
        root.setLevel(level)
        announce("log level %s %s (%s)", verb, level_name(level), why)
    else:
        announce("log level %s %s (%s)", verb, level_name(level), why)
        root.setLevel(level)
    return level


def more_verbose() -> int:
    """SIGUSR1: one step more (warning -> info -> debug); the new level."""
    current = logging.getLogger().getEffectiveLevel()
    return _change(next((lv for lv in LEVELS if lv < current), min(LEVELS)), "SIGUSR1")


def configured_verbosity() -> int:
    """SIGUSR2: back to the level the command started with."""
    return _change(_configured, "SIGUSR2")


def set_level(name: str, why: str) -> int:
    """A level by name (LEVEL_NAMES), or RESET for the configured one."""
    if name == RESET:
        return _change(_configured, why)
    return _change(LEVEL_NAMES[name], why)
