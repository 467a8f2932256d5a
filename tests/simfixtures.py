"""Helpers and fixtures for tests that talk to the simulated modem.

Import from tests (pytest puts tests/ on sys.path):

    from simfixtures import make_card, sim_modem, AtPort

or re-export the fixtures from conftest.py with
`from simfixtures import sim_card, sim  # noqa: F401`.
"""

from __future__ import annotations

import contextlib
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from mtcd.identity import luhn_check_digit
from mtcd.sim import PtyModemServer, SimCard, SimulatedModem

# The card's own secrets in tests: they belong to the simulated card.
TEST_PIN = "27182818"
TEST_PUK = "31415926"
TEST_IMSI = "262019876543210"

FINAL = re.compile(r"^(OK|ERROR|\+CME ERROR:.*|\+CMS ERROR:.*|CONNECT.*|NO CARRIER|BUSY|NO ANSWER|NO DIALTONE)$")


def make_iccid(serial_number: int = 1, issuer: str = "89490200") -> str:
    """A valid 19-digit ICCID (89 prefix, Luhn check digit)."""
    body = f"{issuer}{serial_number:010d}"
    return body + str(luhn_check_digit(body))


def make_imei(serial_number: int = 1, tac: str = "35999901") -> str:
    """A valid IMEI: TAC(8) + serial(6) + Luhn digit."""
    body = f"{tac}{serial_number:06d}"
    return body + str(luhn_check_digit(body))


def make_card(
    pin: str = TEST_PIN,
    puk: str = TEST_PUK,
    *,
    serial_number: int = 1,
    imsi: str = TEST_IMSI,
    **state,
) -> SimCard:
    """A fresh card; `state` takes pin_enabled, pin_attempts, puk_attempts."""
    return SimCard(make_iccid(serial_number), imsi, pin, puk, **state)


_NEW_CARD = object()


@contextlib.contextmanager
def sim_modem(
    card: SimCard | None = _NEW_CARD, *, link: str | Path | None = None, **modem_options
) -> Iterator[tuple[SimulatedModem, str]]:
    """Serve a simulated modem on a pty; yields (modem, port path).
    Without `card` it holds a fresh `make_card()`; `card=None` is an empty slot."""
    if card is _NEW_CARD:
        card = make_card()
    modem = SimulatedModem(card, **modem_options)
    with PtyModemServer(modem, link=link) as server:
        yield modem, server.port


class AtPort:
    """A minimal AT client for the simulator's own tests (the real one is
    mtcd.at; these tests must not depend on it).  Also a context manager."""

    def __init__(self, port: str, timeout: float = 2.0):
        self.serial = serial.Serial(port, baudrate=115200, timeout=0.05)
        self.serial.reset_input_buffer()
        self.timeout = timeout
        self._buffer = b""

    def __enter__(self) -> "AtPort":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.serial.close()

    def raw(self, data: bytes, wait: float = 0.2) -> bytes:
        """Write bytes, return everything that arrives within `wait` seconds
        of quiet."""
        self.serial.write(data)
        out = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            chunk = self.serial.read(4096)
            if chunk:
                out += chunk
                deadline = time.monotonic() + wait
        return out

    def _lines(self, deadline: float) -> Iterator[str]:
        while True:
            m = re.search(rb"[\r\n]", self._buffer)
            if m:
                line, self._buffer = self._buffer[: m.start()], self._buffer[m.end():]
                text = line.decode("latin-1").strip()
                if text:
                    yield text
                continue
            if time.monotonic() > deadline:
                raise TimeoutError("no final result from the simulated modem")
            self._buffer += self.serial.read(max(1, self.serial.in_waiting))

    def command(self, text: str, timeout: float | None = None) -> list[str]:
        """Send one command; return its reply lines up to and including the
        final result, without the echo."""
        self.serial.write(text.encode("latin-1") + b"\r")
        deadline = time.monotonic() + (timeout or self.timeout)
        out: list[str] = []
        for line in self._lines(deadline):
            if not out and line == text:
                continue  # the echo
            out.append(line)
            if FINAL.match(line):
                return out
        raise AssertionError("unreachable")

    def info(self, text: str) -> list[str]:
        """The information lines of a command that must end in OK."""
        reply = self.command(text)
        assert reply[-1] == "OK", f"{text}: {reply}"
        return reply[:-1]

    def final(self, text: str) -> str:
        return self.command(text)[-1]

    def unsolicited(self, timeout: float = 2.0) -> str:
        """The next line that arrives unasked."""
        return next(self._lines(time.monotonic() + timeout))


def sim_cli() -> list[str]:
    """argv prefix that runs the `mtcd-sim` console script of this venv."""
    script = Path(sys.executable).with_name("mtcd-sim")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mtcd.sim.cli"]


@pytest.fixture
def sim_card() -> SimCard:
    return make_card()


@pytest.fixture
def sim(sim_card) -> Iterator[tuple[SimulatedModem, str]]:
    """(modem, port) of a generic simulated modem holding `sim_card`."""
    with sim_modem(sim_card) as pair:
        yield pair


def wait_until(condition, timeout: float, what: str) -> float:
    """Poll `condition` until true; the seconds it took, or AssertionError."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def server_of(modem: SimulatedModem) -> PtyModemServer:
    """The PtyModemServer serving `modem` (sim_modem keeps it private), for
    tests that make the port vanish and come back."""
    import gc

    for obj in gc.get_objects():
        if isinstance(obj, PtyModemServer) and obj.modem is modem:
            return obj
    raise AssertionError("no server for this modem")


def slow_after(modem: SimulatedModem, prefix: str, latency: float, count: int = 1) -> None:
    """Every command after the `count`-th one starting with `prefix` waits
    `latency` s in the simulator.  Set in the simulator's own thread before
    that command's reply goes out, so the very next command is already slow:
    a race window opens exactly there, and the commands before it run at
    full speed.  `modem.latency = 0` closes it again."""
    handle, prefix, seen = modem.handle, prefix.upper(), 0

    def handle_then_slow(line: str) -> list[str]:
        nonlocal seen
        reply = handle(line)
        if line.strip().upper().startswith(prefix):
            seen += 1
            if seen == count:
                modem.latency = latency
        return reply

    modem.handle = handle_then_slow


def stage_two_candidates(state, iccid, current, staged) -> None:
    """A store whose entry for `iccid` has two candidates: `current` and a
    PIN a person staged (the order the gate presents them in)."""
    from mtcd.keystore import STAGED, Keystore

    Keystore.open(state).set_pin(iccid, current)
    Keystore.open(state).stage_pending(iccid, staged, STAGED)


class BlindSwap:
    """Mixed in before a stub card (StubCard or a subclass): as the AT layer
    sees it, a PIN is checked against the ICCID read last, and the card
    `home` is swapped for `other` (which asks for its PIN too) right after
    it refuses one, with no word from the modem.  `to` lists (the card in
    the slot, the PIN it got)."""

    def blind_swap(self, home, other) -> None:
        self.home = self.slot = home
        self.other = other
        self.read = None
        self.to: list = []

    def iccid(self):
        self.read = self.slot
        return self.slot

    def may_present(self, iccid):
        from mtcd.simlock import SimLock

        return self.state is SimLock.SIM_PIN and self.read == iccid

    def present_pin(self, pin, for_iccid):
        from mtcd.policy import PinOutcome
        from mtcd.uicc import PresentationRefused

        if for_iccid != self.read:
            raise PresentationRefused("the secret was not looked up for the ICCID of this card")
        self.to.append((self.slot, pin))
        if self.slot != self.home:
            self.left -= 1  # the other card's counter pays for it
            return PinOutcome.REJECTED
        outcome = super().present_pin(pin, for_iccid)
        if outcome is PinOutcome.REJECTED:
            self.slot = self.other
        return outcome


class StubCard:
    """An in-process card for the pairing policy's tests: the lock, the
    ICCID and a PIN counter that a presentation moves as a card's would
    (the right PIN: READY and 3 left; a wrong one: one less)."""

    def __init__(self, pin, iccid, *, left: int = 3, state=None):
        from mtcd.simlock import SimLock

        self.pin = pin
        self._iccid = iccid
        self.left = left
        self.state = SimLock.SIM_PIN if state is None else state
        self.presented: list = []

    def lock(self, settle: bool = True):
        return self.state

    def iccid(self):
        return self._iccid

    def attempts(self):
        from mtcd.simlock import PinAttempts

        return PinAttempts(pin1=self.left, puk1=10)

    def may_present(self, iccid):
        from mtcd.simlock import SimLock

        return self.state is SimLock.SIM_PIN and iccid == self._iccid

    def present_pin(self, pin, for_iccid):
        from mtcd.policy import PinOutcome
        from mtcd.simlock import SimLock

        self.presented.append(pin)
        if pin == self.pin:
            self.state, self.left = SimLock.READY, 3
            return PinOutcome.ACCEPTED
        self.left -= 1
        return PinOutcome.REJECTED

    def imsi(self):
        return None

