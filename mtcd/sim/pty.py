"""Serve a `SimulatedModem` on a pseudo-terminal, so that clients open it
with pyserial exactly like /dev/ttyUSB2.

Framing is a modem's with ATV1: the command is echoed (when echo is on) as
received up to its CR, then each reply line goes out as "\\r\\n<line>\\r\\n".
Unsolicited result codes are written between replies, framed the same way.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import traceback
import tty
from pathlib import Path

from .modem import SMS_PROMPT, SimulatedModem

_WRITE_GIVE_UP = 2.0  # seconds; a modem drops output nobody reads


class PtyModemServer:
    """Context manager: `with PtyModemServer(modem, link=...) as server:`
    then open `server.port` (or the link) with pyserial."""

    def __init__(self, modem: SimulatedModem, *, link: str | os.PathLike | None = None):
        self.modem = modem
        self.link = Path(link) if link is not None else None
        self._master: int | None = None
        self._slave: int | None = None
        self._port: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake: tuple[int, int] | None = None
        self._write_lock = threading.Lock()
        # Opening, closing and stopping come from the caller, from the
        # thread a modem reset starts, and from control: one at a time, so
        # nobody sees a port whose serving thread is not running yet, and a
        # reset's reopen never brings back a server that was stopped.
        self._lifecycle = threading.RLock()
        self._stopped = threading.Event()  # stop() was called: no reopen
        self._listening = False
        self.errors: list[Exception] = []  # exceptions the modem raised (bugs)

    # --- lifecycle ------------------------------------------------------------

    @property
    def port(self) -> str:
        if self._port is None:
            raise RuntimeError("the simulated modem has no port (closed)")
        return self._port

    @property
    def is_open(self) -> bool:
        return self._master is not None

    def start(self) -> "PtyModemServer":
        with self._lifecycle:
            self._stopped.clear()
            if not self._listening:
                self.modem.add_urc_listener(self.flush_urcs)
                self._listening = True
            if not self.is_open:
                self._open()
        return self

    def stop(self) -> None:
        with self._lifecycle:
            self._stopped.set()
            self.close_port()
            if self._listening:
                self.modem.remove_urc_listener(self.flush_urcs)
                self._listening = False

    def __enter__(self) -> "PtyModemServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _open(self) -> None:
        master, slave = os.openpty()
        try:
            # Raw before anything is written: no echo, no CR/LF translation
            # by the line discipline (the modem does its own echo).
            tty.setraw(slave)
            os.set_blocking(master, False)
            port = os.ttyname(slave)
            wake = os.pipe()
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        # The server keeps the slave open too: the pty survives clients
        # opening and closing it, as a modem's port does.
        self._master, self._slave, self._port, self._wake = master, slave, port, wake
        self._stop.clear()
        # The thread gets its descriptors now, not from attributes a
        # close may already have cleared when it first runs.
        self._thread = threading.Thread(target=self._run, args=(master, wake[0]), name=f"sim-modem {port}", daemon=True)
        self._thread.start()
        if self.link is not None:
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            if tmp.is_symlink():
                tmp.unlink()
            os.symlink(port, tmp)
            os.replace(tmp, self.link)

    def close_port(self) -> None:
        """The modem vanishes (USB re-enumeration): the port and its link go
        away and clients get an error on their next read or write."""
        with self._lifecycle:
            if self._master is None:
                return
            self._stop.set()
            os.write(self._wake[1], b"x")
            if self._thread is not None and self._thread is not threading.current_thread():
                self._thread.join(5)
            self._thread = None
            with self._write_lock:
                for fd in (self._master, self._slave, *self._wake):
                    os.close(fd)
                self._master = self._slave = self._wake = None
            self._port = None
            if self.link is not None and self.link.is_symlink():
                self.link.unlink()

    def vanish_for(self, down: float, on_return=None) -> bool:
        """The port vanishes for `down` seconds, then comes back with the
        URCs queued meanwhile (`on_return` runs just before: the modem's
        boot).  A stop meanwhile ends the wait: the modem stays away, and
        False says so."""
        self.close_port()
        if self._stopped.wait(down):
            return False
        with self._lifecycle:
            if self._stopped.is_set():
                return False  # stopped between the wait and the lock
            if on_return is not None:
                on_return()
            self.reopen()
        self.flush_urcs()
        return True

    def reopen(self) -> str:
        """The modem comes back, on a new pty; the link follows it."""
        self.start()
        return self.port

    # --- I/O --------------------------------------------------------------------

    def _run(self, master: int, wake_r: int) -> None:
        pending = bytearray()
        while not self._stop.is_set():
            ready, _, _ = select.select([master, wake_r], [], [])
            if wake_r in ready:
                break
            try:
                data = os.read(master, 4096)
            except BlockingIOError:
                continue
            except OSError as e:
                if e.errno == errno.EIO:  # transient while no one holds the slave
                    self._stop.wait(0.05)
                    continue
                raise
            pending += data
            while True:
                if self.modem.awaiting_sms_body:
                    # After the "> " prompt: the PDU runs to Ctrl-Z or ESC.
                    ends = [i for i in (pending.find(b"\x1a"), pending.find(b"\x1b")) if i >= 0]
                    if not ends:
                        break
                    end = min(ends)
                    body, cancelled = bytes(pending[:end]), pending[end] == 0x1B
                    pending = bytearray(pending[end + 1:])
                    self._reply(self.modem.sms_body(body, cancelled))
                elif b"\r" in pending:
                    line, _, rest = pending.partition(b"\r")
                    pending = bytearray(rest)
                    self._serve_line(bytes(line))
                else:
                    break

    def _serve_line(self, raw: bytes) -> None:
        text = raw.decode("latin-1").strip("\n\r \t")
        if not text:
            return
        if self.modem.echo:
            self._write(raw.lstrip(b"\n") + b"\r")
        if self.modem.latency:
            if self._stop.wait(self.modem.latency):
                return
        try:
            reply = self.modem.handle(text)
        except Exception as exc:  # a simulator bug: keep serving, keep the evidence
            self.errors.append(exc)
            traceback.print_exc()
            reply = ["ERROR"]
        if self.modem.take_reset():
            # The modem reset mid-command: its USB port goes away, and the
            # boot URCs appear on the port that comes back.
            threading.Thread(target=self.vanish_for, args=(self.modem.reset_down,), daemon=True).start()
            return
        self._reply(reply)

    def _reply(self, reply: list[str]) -> None:
        if reply == [SMS_PROMPT]:
            self._write(b"\r\n" + SMS_PROMPT.encode())  # no line end: the body follows
            return
        if reply:
            self._write(b"".join(b"\r\n" + line.encode("latin-1") + b"\r\n" for line in reply))
        self.flush_urcs()

    def flush_urcs(self) -> None:
        """Write queued unsolicited result codes (called by the modem's hooks)."""
        urcs = self.modem.take_urcs()
        if urcs:
            self._write(b"".join(b"\r\n" + u.encode("latin-1") + b"\r\n" for u in urcs))

    def _write(self, data: bytes) -> None:
        with self._write_lock:
            master = self._master
            if master is None:
                return  # the port is gone: output is lost, as on a real unplug
            view = memoryview(data)
            while view:
                try:
                    n = os.write(master, view)
                    view = view[n:]
                except BlockingIOError:
                    _, writable, _ = select.select([], [master], [], _WRITE_GIVE_UP)
                    if not writable:
                        return
                except OSError:
                    return
