"""The serial transport at its edges, through a real pty and pyserial: the
simulated modem where it can play the part, and a small pty peer of our own
where the test must choose the exact bytes (or silence)."""

from __future__ import annotations

import os
import select
import threading
import time
import tty

import pytest

from mtcd.at import commands
from mtcd.at.commands import AtCommand
from mtcd.errors import ModemUnavailable
from mtcd.secret import Pin
from mtcd.sim import PtyModemServer, SimulatedModem
from mtcd.transport import SerialTransport
from simfixtures import make_card, sim_modem

READER_THREAD = "mtcd-at-reader"
SECRET_PIN = "90817263"


class PtyPeer:
    """The far end of a pty, played by the test: records every command line
    it receives and answers with the raw bytes `answer(line)` returns (None:
    silence).  Answers are written in order, one line at a time, like a modem."""

    def __init__(self, answer=None, *, echo: bool = False):
        self.answer = answer
        self.echo = echo
        self.received: list[str] = []
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> None:
        os.write(self._master, data)

    def _serve(self) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([self._master, self._wake_r], [], [])
            if self._wake_r in ready:
                return
            try:
                pending += os.read(self._master, 4096)
            except (BlockingIOError, OSError):
                time.sleep(0.01)
                continue
            while b"\r" in pending:
                raw, pending = pending.split(b"\r", 1)
                line = raw.decode("latin-1").strip()
                if not line:
                    continue
                self.received.append(line)
                if self.echo:
                    self.write(raw + b"\r")
                reply = self.answer(line) if self.answer else None
                if reply:
                    self.write(reply)

    def close(self) -> None:
        os.write(self._wake_w, b"x")
        self._thread.join(2)
        for fd in (self._master, self._slave, self._wake_r, self._wake_w):
            os.close(fd)

    def __enter__(self) -> "PtyPeer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == READER_THREAD and t.is_alive()]


@pytest.fixture(autouse=True)
def no_reader_thread_left_behind():
    before = set(reader_threads())
    yield
    deadline = time.monotonic() + 3
    while set(reader_threads()) - before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(reader_threads()) - before == set(), "a transport left its reader thread running"


# --- commands and replies ------------------------------------------------------

@pytest.mark.parametrize("echo", [True, False])
def test_command_and_response_through_the_pty(echo):
    with sim_modem(echo=echo) as (modem, port), SerialTransport(port, timeout=2) as t:
        imei = t.execute(commands.imei())
        assert imei.result.ok and imei.lines == (modem.imei,)
        lock = t.execute(commands.sim_lock_query())
        assert lock.lines == ("+CPIN: SIM PIN",)
        bad = t.execute(AtCommand("AT+NOSUCH"))
        assert not bad.result.ok and bad.result.kind == "ERROR"
        locked = t.execute(commands.imsi())  # the card wants its PIN first
        assert locked.result.kind == "CME ERROR" and locked.result.code == 11
        assert t.commands_sent == 4
        assert modem.commands == ["AT+CGSN", "AT+CPIN?", "AT+NOSUCH", "AT+CIMI"]


def test_urc_while_a_command_runs_goes_to_the_callback():
    urcs: list[tuple[float, str]] = []
    with sim_modem(latency=0.4) as (modem, port):
        with SerialTransport(port, timeout=3, on_unsolicited=lambda line: urcs.append((time.monotonic(), line))) as t:
            result: dict = {}
            runner = threading.Thread(target=lambda: result.update(r=t.execute(commands.imei()), at=time.monotonic()))
            runner.start()
            time.sleep(0.15)  # the modem has the command and is still working on it
            modem.remove_card()
            runner.join(5)
    response = result["r"]
    assert response.result.ok and response.lines == (modem.imei,)
    assert [line for _, line in urcs] == ["+CPIN: NOT INSERTED"]
    assert urcs[0][0] < result["at"], "the URC came while the command was pending"


def test_urc_between_information_lines_is_taken_out_of_the_reply():
    def answer(line):
        if line == 'AT+CPINR="SIM PIN"':
            return (b"\r\n+CPINR: SIM PIN,3,3\r\n"
                    b"\r\n+CPIN: NOT INSERTED\r\n"
                    b"\r\nRING\r\n"
                    b"\r\n+CPINR: SIM PUK,10,10\r\n"
                    b"\r\nOK\r\n")
        return b"\r\nERROR\r\n"

    urcs: list[str] = []
    with PtyPeer(answer, echo=True) as peer, SerialTransport(peer.port, timeout=2, on_unsolicited=urcs.append) as t:
        response = t.execute(commands.pin_retries())
    assert response.result.ok
    assert response.lines == ("+CPINR: SIM PIN,3,3", "+CPINR: SIM PUK,10,10")
    assert urcs == ["+CPIN: NOT INSERTED", "RING"]


@pytest.mark.parametrize("word", [b"COMMAND NOT SUPPORT", b"NOT SUPPORT", b"TOO MANY PARAMETERS"])
def test_a_vendor_word_for_error_ends_the_command_at_once(word):
    # Huawei/ZTE firmware answers an unknown command with these instead of
    # ERROR: the command must end now, not at its timeout.
    with PtyPeer(lambda line: b"\r\n" + word + b"\r\n", echo=True) as peer:
        with SerialTransport(peer.port, timeout=5) as t:
            started = time.monotonic()
            response = t.execute(commands.pin_retries())
            took = time.monotonic() - started
            assert t.execute(commands.imei()).result.kind == "ERROR"  # still in step
    assert took < 1.0
    assert response.result.kind == "ERROR" and not response.result.ok
    assert response.result.text == word.decode()


def test_a_failing_urc_callback_does_not_kill_the_reader():
    def explode(line):
        raise RuntimeError("handler bug")

    with sim_modem() as (modem, port), SerialTransport(port, timeout=2, on_unsolicited=explode) as t:
        modem.remove_card()
        time.sleep(0.1)
        assert t.execute(commands.imei()).lines == (modem.imei,)


# --- silence, timeouts, resync ---------------------------------------------------

def test_silent_port_is_unavailable_within_the_timeout_and_keeps_the_pin_secret(caplog):
    caplog.set_level("DEBUG", logger="mtcd")
    with PtyPeer() as peer, SerialTransport(peer.port, timeout=0.2) as t:
        started = time.monotonic()
        with pytest.raises(ModemUnavailable) as caught:
            t.execute(commands.enter_pin(Pin(SECRET_PIN)), timeout=0.5)
        took = time.monotonic() - started
        deadline = time.monotonic() + 1
        while not peer.received and time.monotonic() < deadline:
            time.sleep(0.01)
    assert 0.45 <= took < 1.5
    message = str(caught.value)
    assert "AT+CPIN=<redacted>" in message and "0.5 s" in message
    assert "\n" not in message
    assert caught.value.__cause__ is None
    for text in (message, repr(caught.value), caplog.text):
        assert SECRET_PIN not in text
    # Not vacuous: the PIN did go to the port, only nowhere else.
    assert peer.received == [f'AT+CPIN="{SECRET_PIN}"']


def test_a_late_reply_does_not_end_the_next_command():
    # One command takes the modem 1.5 s; it is given up after 0.3 s.  Its
    # late IMEI and OK must not be taken for the reply to the next command,
    # however long the line was quiet before they came.
    with sim_modem(latency=1.5) as (modem, port), SerialTransport(port, timeout=3) as t:
        with pytest.raises(ModemUnavailable, match="no answer to AT\\+CGSN"):
            t.execute(commands.imei(), timeout=0.3)
        modem.latency = 0  # the slow command is still running; the rest are quick
        response = t.execute(commands.manufacturer())
        assert response.result.ok
        assert response.lines == ("mtcd simulator",)
        assert t.execute(commands.sim_lock_query()).lines == ("+CPIN: SIM PIN",)
        assert t.execute(commands.imei()).lines == (modem.imei,)
    assert modem.commands[:1] == ["AT+CGSN"] and "AT+CGMI" in modem.commands


def test_a_reply_that_never_comes_does_not_stall_the_next_command():
    with sim_modem() as (modem, port), SerialTransport(port, timeout=1) as t:
        modem.fail_after("AT+CGSN", "drop")
        with pytest.raises(ModemUnavailable):
            t.execute(commands.imei(), timeout=0.3)
        started = time.monotonic()
        assert t.execute(commands.imei()).lines == (modem.imei,)
        assert time.monotonic() - started < 1.5


# --- the port itself ---------------------------------------------------------------

def test_port_vanishing_mid_command_is_unavailable_at_once():
    modem = SimulatedModem(make_card(), latency=1.0)
    with PtyModemServer(modem) as server, SerialTransport(server.port, timeout=10) as t:
        assert t.alive
        unplug = threading.Timer(0.2, server.close_port)
        unplug.start()
        started = time.monotonic()
        with pytest.raises(ModemUnavailable) as caught:
            t.execute(commands.imei())
        assert time.monotonic() - started < 2
        unplug.join()
        assert "\n" not in str(caught.value)
        assert not t.alive
        # And every later command fails the same way, without waiting.
        started = time.monotonic()
        with pytest.raises(ModemUnavailable):
            t.execute(commands.sim_lock_query())
        assert time.monotonic() - started < 0.5


def test_port_vanishing_while_idle_fails_the_next_command_at_once():
    modem = SimulatedModem(make_card())
    with PtyModemServer(modem) as server, SerialTransport(server.port, timeout=10) as t:
        assert t.execute(commands.imei()).result.ok
        server.close_port()
        started = time.monotonic()
        with pytest.raises(ModemUnavailable):
            t.execute(commands.imei())
        assert time.monotonic() - started < 2


def test_the_port_is_held_exclusively():
    with sim_modem() as (modem, port), SerialTransport(port, timeout=2) as first:
        second = SerialTransport(port, timeout=2)
        with pytest.raises(ModemUnavailable, match="cannot open") as caught:
            second.open()
        assert port in str(caught.value) and "\n" not in str(caught.value)
        assert first.execute(commands.imei()).result.ok
    # Released on close: the next holder gets it.
    with sim_modem() as (modem, port):
        with SerialTransport(port, timeout=2) as t:
            pass
        with SerialTransport(port, timeout=2) as t:
            assert t.execute(commands.imei()).result.ok


def test_missing_port_is_unavailable():
    with pytest.raises(ModemUnavailable, match="/dev/nonexistent-modem"):
        SerialTransport("/dev/nonexistent-modem").open()
    with pytest.raises(ModemUnavailable, match="not open"):
        SerialTransport("/dev/nonexistent-modem").execute(commands.imei())


def test_stale_bytes_in_the_port_are_discarded_on_open():
    urcs: list[str] = []
    with sim_modem() as (modem, port):
        # Nobody holds the port: these wait in it for the next opener.
        modem.remove_card()
        modem.insert_card(make_card(serial_number=2))
        time.sleep(0.1)
        with SerialTransport(port, timeout=2, on_unsolicited=urcs.append) as t:
            response = t.execute(commands.imei())
            time.sleep(0.1)
    assert response.lines == (modem.imei,)
    assert urcs == []


def test_stale_final_result_does_not_answer_the_first_command():
    with PtyPeer(lambda line: b"\r\n+CPIN: READY\r\n\r\nOK\r\n" if line == "AT+CPIN?" else None) as peer:
        # A reply meant for an earlier holder of the port, never read.
        peer.write(b"\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n\r\n+CME ERROR: 10\r\n")
        time.sleep(0.05)
        urcs: list[str] = []
        with SerialTransport(peer.port, timeout=2, on_unsolicited=urcs.append) as t:
            response = t.execute(commands.sim_lock_query())
    assert response.result.ok and response.lines == ("+CPIN: READY",)
    assert urcs == []


def test_close_leaves_no_reader_thread():
    with sim_modem() as (modem, port):
        before = len(reader_threads())
        t = SerialTransport(port, timeout=2).open()
        assert len(reader_threads()) == before + 1
        t.execute(commands.imei())
        t.close()
        assert len(reader_threads()) == before
        assert not t.alive
        t.close()  # twice is harmless
        with pytest.raises(ModemUnavailable, match="not open"):
            t.execute(commands.imei())
