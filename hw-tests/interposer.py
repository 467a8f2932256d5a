"""A relay between a gateway process and the modem, for the tests that must
act at an exact point of the gateway's dialogue: it offers a
pseudo-terminal behind `link` and copies bytes both ways, counting the
PINs presented (`AT+CPIN=` lines; never their values).

With `reset_mid_change` set it resets the modem (AT+CFUN=1,1) in the middle
of the gateway's PIN change: when the gateway's `AT+CPWD` line arrives, the
relay either passes it on and waits until the card has acted ("after":
the modem's final result), or holds it back ("before": the card never
sees it), then sends the reset instead of letting any answer through, and
closes the gateway's side, as a modem's USB port vanishes in a reset.  The
gateway never hears how its change ended: the next pairing settles it.
"""

from __future__ import annotations

import os
import re
import select
import threading
import time
import tty
from pathlib import Path

FINAL = re.compile(rb"\r\n(OK|ERROR|\+CME ERROR:[^\r\n]*)\r\n")
RESET = b"AT+CFUN=1,1\r"


class Interposer:
    def __init__(self, port: str, baudrate: int, link: Path, reset_mid_change: str | None = None,
                 answer_wait: float = 30.0):
        if reset_mid_change not in (None, "before", "after"):
            raise ValueError("reset_mid_change is 'before', 'after' or None")
        self.port, self.baudrate, self.link = port, baudrate, Path(link)
        self.mode = reset_mid_change
        self.answer_wait = answer_wait
        self.presentations = 0  # AT+CPIN= lines from the gateway
        self.change_seen = False  # the gateway's AT+CPWD arrived
        self.change_result: str | None = None  # the modem's final result to it ("after"), never forwarded
        self.reset_sent = False
        self._serial = None
        self._master: int | None = None
        self._host = b""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Interposer":
        import serial

        self._serial = serial.Serial(self.port, self.baudrate, timeout=0)
        master, slave = os.openpty()
        tty.setraw(slave)
        name = os.ttyname(slave)
        os.close(slave)  # the gateway opens it by name
        self._master = master
        if self.link.is_symlink() or self.link.exists():
            self.link.unlink()
        self.link.symlink_to(name)
        self._thread = threading.Thread(target=self._relay, name="interposer", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_host()
        try:
            self._serial.close()
        except Exception:  # noqa: BLE001 - gone with a reset already
            pass

    def _close_host(self) -> None:
        if self._master is not None:
            os.close(self._master)
            self._master = None
        if self.link.is_symlink():
            self.link.unlink()

    def _relay(self) -> None:
        try:
            while not self._stop.is_set() and self._master is not None:
                ready, _, _ = select.select([self._master, self._serial.fileno()], [], [], 0.1)
                if self._master in ready:
                    try:
                        data = os.read(self._master, 4096)
                    except OSError:
                        data = b""  # no client has the slave open (yet, or any more)
                        time.sleep(0.05)
                    self._from_host(data)
                if self._master is not None and self._serial.fileno() in ready:
                    data = self._serial.read(4096)
                    if data:
                        os.write(self._master, data)
        except Exception:  # noqa: BLE001 - the modem went away: so does the gateway's side
            self._close_host()

    def _from_host(self, data: bytes) -> None:
        self._host += data
        while b"\r" in self._host and self._master is not None:
            line, self._host = self._host.split(b"\r", 1)
            text = line.strip(b"\n").upper()
            if text.startswith(b"AT+CPIN="):
                self.presentations += 1
            if self.mode is not None and text.startswith(b"AT+CPWD"):
                self.change_seen = True
                self._reset_in_the_middle(line + b"\r")
                return
            self._serial.write(line + b"\r")

    def _reset_in_the_middle(self, change: bytes) -> None:
        if self.mode == "after":
            self._serial.write(change)
            seen, deadline = b"", time.monotonic() + self.answer_wait
            while time.monotonic() < deadline:
                seen += self._serial.read(4096)
                match = FINAL.search(seen)
                if match:
                    self.change_result = match.group(1).decode("latin-1")
                    break
                time.sleep(0.02)
        self._serial.write(RESET)
        self.reset_sent = True
        self._host = b""
        self._close_host()  # the gateway's port vanishes with the modem's
