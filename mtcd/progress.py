"""Feedback while mtcd waits on something slow: the SIM initialising, the
modem answering, the data link coming up, a busy service.

Every such wait is bounded elsewhere (a configured timeout); this module
only says what is being waited for.  A wait shorter than SHOW_AFTER says
nothing.  A longer one:
- on a terminal (stderr is a TTY): one progress line, redrawn in place
  with a carriage return ("waiting for the SIM to finish initialising… 4 s")
  and erased when the wait ends, so it never mixes with output or logs;
- once it has lasted ANNOUNCE_AFTER, elsewhere (journald, a pipe, a file)
  one log line at INFO, nothing more; and, when given, `on_start(text)`,
  with `on_end()` when it is over: the service's STATUS=.  Later than the
  line, so that a modem slow on every command (a second each) does not
  turn each command into two status messages.

Waits nest (the data link, inside it an AT command); the innermost wait
that has lasted SHOW_AFTER is the one shown.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TextIO

log = logging.getLogger("mtcd")

SHOW_AFTER = 1.0  # seconds before a wait is worth a progress line
ANNOUNCE_AFTER = 2.0  # seconds before it is worth a log line and a status
_TICK = 0.25
_ERASE = "\r\x1b[K"  # back to the start of the line, erase it


class _Wait:
    __slots__ = ("what", "bound", "start", "announced")

    def __init__(self, what: str, bound: float | None, start: float):
        self.what, self.bound, self.start, self.announced = what, bound, start, False


class Waits:
    def __init__(self, stream: TextIO | None = None, *, on_start: Callable[[str], None] | None = None,
                 on_end: Callable[[], None] | None = None, show_after: float = SHOW_AFTER,
                 announce_after: float = ANNOUNCE_AFTER, clock: Callable[[], float] = time.monotonic):
        self.stream = stream if stream is not None and _is_tty(stream) else None
        self.on_start, self.on_end = on_start, on_end
        self.show_after = show_after
        self.announce_after = max(announce_after, show_after)
        self._clock = clock
        self._stack: list[_Wait] = []
        # Reentrant: a log record written while the line is drawn (even by
        # on_start, in this thread) erases the line first (_LineGuard).
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._drawn = ""  # the progress line on the terminal now ("" none)
        self._shown: _Wait | None = None  # the wait it is about
        self._dots = _ellipsis(self.stream)
        self._ticker: threading.Thread | None = None
        # When the ticker wakes next by itself (clock time; None: only when
        # notified).  A wait due later needs no wake-up: three quick
        # commands in a row wake it once, not three times.
        self._ticker_wakes: float | None = None
        if self.stream is not None:
            _LineGuard.install(self)

    @contextlib.contextmanager
    def waiting(self, what: str, bound: float | None = None, *, nudged: bool = False) -> Iterator[None]:
        """`what` is a phrase ("waiting for the data link"); `bound` the
        timeout in seconds that ends the wait, said once when it starts.
        `nudged`: the waiting thread calls nudge() at least every
        show_after seconds while it waits, so the ticker is woken only for
        a wait that lasts (not at all for a command answered at once)."""
        wait = _Wait(what, bound, self._clock())
        with self._lock:
            idle = not self._stack
            self._stack.append(wait)
            if self._ticker is None or not self._ticker.is_alive():
                if not nudged:
                    self._ticker = threading.Thread(target=self._tick, name="mtcd-waits", daemon=True)
                    self._ticker.start()
            elif not nudged and idle and (self._ticker_wakes is None
                                          or self._ticker_wakes > wait.start + self.show_after):
                self._wake.notify()  # the ticker sleeps until a wait starts, or past this one's due time
        try:
            yield
        finally:
            with self._lock:
                self._stack.remove(wait)
                if wait is self._shown or not self._stack:
                    self._erase()  # an outer wait still going is drawn again at the next tick
                # The last announced wait is over: whatever was said before it holds again.
                ended = wait.announced and not any(w.announced for w in self._stack)
            if ended and self.on_end is not None:
                self.on_end()

    def nudge(self) -> None:
        """From a thread in a `nudged` wait that is still waiting: make sure
        the ticker looks at the waits (it may be asleep with nothing due)."""
        with self._lock:
            if not self._stack:
                return
            if self._ticker is None or not self._ticker.is_alive():
                self._ticker = threading.Thread(target=self._tick, name="mtcd-waits", daemon=True)
                self._ticker.start()
            elif self._ticker_wakes is None:
                self._wake.notify()

    def _tick(self) -> None:
        # One thread for the life of the Waits, asleep while nothing is
        # waited for and until the oldest wait is due to be shown: a service
        # sending a quick command every few seconds neither starts a thread
        # nor wakes one for each of them.
        while True:
            with self._lock:
                if not self._stack:
                    self._ticker_wakes = None
                    self._wake.wait()
                    continue
                now = self._clock()
                due = self._stack[0].start + self.show_after - now
                if due > 0:
                    self._ticker_wakes = now + due
                    self._wake.wait(due)
                    continue
                old = [w for w in self._stack if now - w.start >= self.show_after]
                if old:
                    shown = old[-1]
                    if self.stream is not None:
                        self._shown = shown
                        self._draw(f"{shown.what}{self._dots} {int(now - shown.start)} s")
                    if not shown.announced and now - shown.start >= self.announce_after:
                        # Under the lock: the end of this wait (on_end) cannot
                        # overtake its start (on_start).
                        shown.announced = True
                        text = shown.what + (f" (up to {shown.bound:g} s)" if shown.bound else "")
                        if self.stream is None:
                            log.info("%s", text)
                        if self.on_start is not None:
                            self.on_start(text)
                self._ticker_wakes = now + _TICK
                self._wake.wait(_TICK)

    # -- the line (under self._lock) ----------------------------------------------
    def _draw(self, text: str) -> None:
        if text == self._drawn:
            return
        try:
            self.stream.write(_ERASE + text)
            self.stream.flush()
            self._drawn = text
        except (OSError, ValueError):
            self.stream = None  # the terminal went away: stay quiet

    def _erase(self) -> None:
        if self._drawn and self.stream is not None:
            try:
                self.stream.write(_ERASE)
                self.stream.flush()
            except (OSError, ValueError):
                self.stream = None
        self._drawn, self._shown = "", None

    def erase_line(self) -> None:
        """Before anything else is written to the terminal (a log line)."""
        with self._lock:
            self._erase()


class _LineGuard(logging.Filter):
    """On the root logger's handlers: a log record first erases the progress
    line, so that it starts at the beginning of a clean line (the next tick
    draws the progress line again below it)."""

    def __init__(self, waits: Waits):
        super().__init__()
        self.waits = waits

    def filter(self, record: logging.LogRecord) -> bool:
        self.waits.erase_line()
        return True

    @classmethod
    def install(cls, waits: Waits) -> None:
        for handler in logging.getLogger().handlers:
            for old in [f for f in handler.filters if isinstance(f, cls)]:
                handler.removeFilter(old)
            handler.addFilter(cls(waits))


def _ellipsis(stream) -> str:
    try:
        "…".encode(getattr(stream, "encoding", None) or "ascii")
        return "…"
    except (LookupError, UnicodeEncodeError):
        return "..."


def _is_tty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


NO_WAITS = Waits()  # says nothing on a terminal; logs a long wait at INFO

_stderr_waits: Waits | None = None


def stderr_waits() -> Waits:
    """One Waits on this process's stderr, made when first needed (after
    logging is set up, so its line guard finds the handlers)."""
    global _stderr_waits
    if _stderr_waits is None:
        import sys

        _stderr_waits = Waits(sys.stderr)
    return _stderr_waits
