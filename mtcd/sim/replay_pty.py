"""Serve a recorded dialogue (mtcd.sim.replay.Script) on a pseudo-terminal,
so that mtcd talks to the recorded modem exactly as to /dev/ttyUSB2.

The modem's echo and framing are whatever the recording says: nothing is
added here.  Pauses (`@`) are waited out on the server's thread; stopping
the server ends them at once.
"""

from __future__ import annotations

import errno
import os
import select
import sys
import threading
import tty
from pathlib import Path

from .replay import Script

_WRITE_GIVE_UP = 2.0  # seconds; a modem drops output nobody reads


class ReplayPtyServer:
    """Context manager: `with ReplayPtyServer(script, link=...) as server:`
    then open `server.port`.  Mismatches go to `script.mismatches` and, one
    line each, to `report` (stderr by default)."""

    def __init__(self, script: Script, *, link: str | os.PathLike | None = None, report=None):
        self.script = script
        self.link = Path(link) if link is not None else None
        self.report = report if report is not None else (lambda line: print(line, file=sys.stderr, flush=True))
        self._stop = threading.Event()
        self._opened = False
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or CR/LF translation: the recording has its own
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._wake = os.pipe()
        self.port = os.ttyname(slave)
        self._thread = threading.Thread(target=self._run, name=f"replay {self.port}", daemon=True)

    def __enter__(self) -> "ReplayPtyServer":
        self._thread.start()
        if self.link is not None:
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            if tmp.is_symlink():
                tmp.unlink()
            os.symlink(self.port, tmp)
            os.replace(tmp, self.link)
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        os.write(self._wake[1], b"x")
        self._thread.join(5)
        for fd in (self._master, self._slave, *self._wake):
            os.close(fd)
        if self.link is not None and self.link.is_symlink():
            self.link.unlink()

    def _run(self) -> None:
        pending = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master, self._wake[0]], [], [])
            if self._wake[0] in ready:
                return
            try:
                data = os.read(self._master, 4096)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno == errno.EIO:  # no client holds the port right now
                    self._stop.wait(0.05)
                    continue
                raise
            pending += data
            while b"\r" in pending:
                line, _, rest = pending.partition(b"\r")
                pending = bytearray(rest)
                command = line.decode("latin-1").strip("\r\n \t")
                if command:
                    self._serve(command)

    def _serve(self, command: str) -> None:
        if not self._opened:
            # What the modem said before the first command (boot URCs):
            # written now, so that a client's buffer flush at open keeps it.
            self._opened = True
            self._play(self.script.opening())
        before = len(self.script.mismatches)
        output = self.script.answer(command)
        for line in self.script.mismatches[before:]:
            self.report(f"mtcd-sim replay: {line}")
        self._play(output)

    def _play(self, output: list[bytes | float]) -> None:
        for item in output:
            if isinstance(item, float):
                if self._stop.wait(item):
                    return
            else:
                self._write(item)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                if not select.select([], [self._master], [], _WRITE_GIVE_UP)[1]:
                    return
            except OSError:
                return
