"""`mtcctl history --follow`: the journal's newest events, then each new
one as it is journaled, like `tail -f`.  Ends with exit 0 on SIGINT or
SIGTERM, and quietly (141) when the reader of a pipe goes away, even while
nothing new is journaled."""

from __future__ import annotations

import os
import select
import signal
import stat
import sys
import time
from collections.abc import Callable
from datetime import datetime

from ..errors import EXIT_OK
from ..journal import PairingJournal, _time_of
from ..journaltail import JournalTail
from .common import reader_gone

# How often the journal is looked at: new events show within this.
POLL_SECONDS = 0.25


def follow_journal(journal: PairingJournal, backlog: Callable[[], list[dict]], show: Callable[[dict], None],
                   since: datetime | None) -> int:
    stopping: list[int] = []

    def stop(signum, _frame) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with JournalTail(journal) as tail:
            for event in tail.start(backlog):
                show(event)
            sys.stdout.flush()
            while not stopping:
                if _reader_left():
                    reader_gone()
                for event in tail.poll():
                    when = _time_of(event)
                    if since is None or (when is not None and when >= since):
                        show(event)
                if not stopping:
                    time.sleep(POLL_SECONDS)
        return EXIT_OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _reader_left() -> bool:
    """Whether stdout is a pipe or socket whose other end has closed."""
    try:
        fd = sys.__stdout__.fileno()
        if not (stat.S_ISFIFO(os.fstat(fd).st_mode) or stat.S_ISSOCK(os.fstat(fd).st_mode)):
            return False
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


__all__ = ["POLL_SECONDS", "follow_journal"]
