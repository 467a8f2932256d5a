"""The serial port: the thin edge between a modem's AT port and the pure
`AtReader`.

One reader thread owns the port's input; commands are written by the caller
and their `Response` handed back through a queue; unsolicited lines go to a
callback.  Flow control is whatever the configuration says (no RTS/CTS or
DSR/DTR forced: many embedded modems leave those lines floating).  The port
is opened exclusively, so a second holder of the modem fails at once.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import termios
import threading
import time
from collections.abc import Callable

import serial

from .at.commands import AtCommand
from .at.reader import NEED_DATA, AtReader, Prompt, Response, Unsolicited
from .errors import ModemUnavailable
from .portholder import describe_holder

# Quiet after an information line before a reply without its final result
# (Wavecom's AT+CPIN?) is taken as complete; a V.250 modem sends its OK
# with the line, far sooner.
NO_FINAL_QUIET = 0.5
# How often a command's awaited answer says it is still awaited
# (_still_waiting: the watchdog, and in the service the progress line).
STILL_WAITING_EVERY = 1.0

log = logging.getLogger("mtcd.at")


class SerialTransport:
    def __init__(
        self,
        port: str,
        baudrate: int = 115200,
        *,
        rtscts: bool = False,
        timeout: float = 10.0,
        pin_timeout: float | None = None,
        on_unsolicited: Callable[[str], None] | None = None,
        on_failure: Callable[[], None] | None = None,
        heartbeat: Callable[[], None] | None = None,
    ):
        self.port = port
        self.baudrate = baudrate
        self.rtscts = rtscts
        self.timeout = timeout
        # The longest wait for a command carrying a PIN or PUK (None: the
        # command's own).  Shortens the wait for an answer that was lost.
        self.pin_timeout = pin_timeout
        self.on_unsolicited = on_unsolicited
        # Called from the reader thread when the port fails (modem gone).
        self.on_failure = on_failure
        # Called about once a second while a command is awaited, so a
        # service can tell its watchdog that a long but bounded command
        # (PDP activation may take minutes) is progress, not a hang.
        self.heartbeat = heartbeat
        self.commands_sent = 0  # for benchmarks and tests
        self._serial: serial.Serial | None = None
        self._reader = AtReader()
        self._reader_lock = threading.Lock()
        self._command_lock = threading.Lock()
        self._results: queue.Queue[Response | Prompt | BaseException] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._failure: BaseException | None = None
        # After a timeout the abandoned command's late reply may still come
        # (or never): until we are back in step, a late OK could end the
        # next command.
        self._needs_resync = False
        self._last_rx = 0.0

    # -- lifecycle ---------------------------------------------------------
    def open(self) -> "SerialTransport":
        try:
            self._serial = serial.Serial(
                self.port,
                self.baudrate,
                rtscts=self.rtscts,
                dsrdtr=False,
                # The reader blocks until data comes: close() wakes it with
                # cancel_read, so a read timeout would only wake an idle
                # service five times a second for nothing.
                timeout=None,
                exclusive=True,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            holder = describe_holder(self.port) if getattr(exc, "errno", None) == errno.EAGAIN else ""
            raise ModemUnavailable(f"{self.port}: cannot open the modem port: {holder or _why(exc)}") from None
        # Whatever waited in the port (URCs from before we came, a reply to an
        # earlier holder) must not be taken for an answer to our commands.
        try:
            self._serial.reset_input_buffer()
        except (serial.SerialException, OSError):
            pass
        self._closing.clear()
        self._thread = threading.Thread(target=self._read_loop, name="mtcd-at-reader", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._thread is not None:
            if self._serial is not None:
                try:  # wake the reader's wait now, not after its read timeout
                    self._serial.cancel_read()
                except (AttributeError, serial.SerialException, OSError):
                    pass
            self._thread.join(timeout=2)
            self._thread = None
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass
            self._serial = None

    def __enter__(self) -> "SerialTransport":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._serial is not None and self._failure is None

    # -- commands ----------------------------------------------------------
    def execute(self, command: AtCommand, timeout: float | None = None) -> Response:
        """Send one command and wait for its final result.  Raises
        ModemUnavailable when the port fails or nothing answers in time; an
        ERROR result is returned, not raised (the caller decides)."""
        if self._serial is None:
            raise ModemUnavailable(f"{self.port}: modem port is not open")
        wait = self._wait_for(command) if timeout is None else timeout
        with self._command_lock:
            self._raise_failure()
            if self._needs_resync:
                self._resync()
            outcome = self._exchange(command, wait)
            log.debug("< %s %s", " | ".join(outcome.lines), _result_text(outcome))
            return outcome

    def _wait_for(self, command: AtCommand) -> float:
        own = command.timeout
        if command.secrets and self.pin_timeout is not None:
            own = min(own, self.pin_timeout)
        return max(own, self.timeout)

    def _exchange(self, command: AtCommand, wait: float) -> Response:
        _drain(self._results)
        with self._reader_lock:
            data = self._reader.start(command)
        log.debug("> %s", command.loggable)
        try:
            self._serial.write(data)
            _drain_output(self._serial)
        except (serial.SerialException, OSError) as exc:
            self._abandon()
            raise ModemUnavailable(f"{self.port}: write failed: {_why(exc)}") from None
        self.commands_sent += 1
        outcome = self._await(wait, command)
        if outcome is None:
            self._abandon()
            raise ModemUnavailable(
                f"{self.port}: no answer to {command.loggable} within {wait:g} s"
            ) from None
        if isinstance(outcome, BaseException):
            self._abandon()
            raise ModemUnavailable(f"{self.port}: {_why(outcome)}") from None
        if isinstance(outcome, Prompt):
            # No caller of ours sends prompt commands through execute().
            self._abandon()
            raise ModemUnavailable(f"{self.port}: unexpected prompt for {command.loggable}")
        return outcome

    def send_with_prompt(self, command: AtCommand, payload: bytes, timeout: float | None = None) -> Response:
        """A command that answers "> " and then takes a payload (SMS: the
        PDU and Ctrl-Z, TS 27.005 §3.5.1).  A final result before the prompt
        is returned without sending the payload.  The payload is logged by
        length only."""
        if self._serial is None:
            raise ModemUnavailable(f"{self.port}: modem port is not open")
        wait = self._wait_for(command) if timeout is None else timeout
        with self._command_lock:
            self._raise_failure()
            if self._needs_resync:
                self._resync()
            _drain(self._results)
            with self._reader_lock:
                data = self._reader.start(command)
            log.debug("> %s", command.loggable)
            self._write(data)
            self.commands_sent += 1
            outcome = self._await(wait)
            if isinstance(outcome, Prompt):
                log.debug("> (%d bytes after the prompt)", len(payload))
                self._write(payload)
                outcome = self._await(wait)
                if outcome is None:
                    self._write(b"\x1b")  # cancel, or the modem waits for ever
            if outcome is None or isinstance(outcome, (BaseException, Prompt)):
                self._abandon()
                why = "no answer" if outcome is None else _why(outcome) if isinstance(outcome, BaseException) else "a second prompt"
                raise ModemUnavailable(f"{self.port}: {why} to {command.loggable}")
            log.debug("< %s %s", " | ".join(outcome.lines), _result_text(outcome))
            return outcome

    def _write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
            _drain_output(self._serial)
        except (serial.SerialException, OSError) as exc:
            self._abandon()
            raise ModemUnavailable(f"{self.port}: write failed: {_why(exc)}") from None

    def _await(self, wait: float, command: AtCommand | None = None):
        deadline = time.monotonic() + wait
        # A reply that may lack its final result is looked at more often.
        step = NO_FINAL_QUIET / 2 if command is not None and command.final_optional else STILL_WAITING_EVERY
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                return self._results.get(timeout=min(left, step))
            except queue.Empty:
                self._still_waiting()
                if step < STILL_WAITING_EVERY and time.monotonic() - self._last_rx >= NO_FINAL_QUIET:
                    with self._reader_lock:
                        ended = self._reader.end_without_final()
                    if ended is not None:
                        # Had the modem only been slow, its OK comes later:
                        # the resync probe before the next command takes it.
                        self._needs_resync = True
                        return ended

    def _still_waiting(self) -> None:
        """At least every STILL_WAITING_EVERY seconds while an answer is awaited."""
        if self.heartbeat is not None:
            self.heartbeat()

    def _abandon(self) -> None:
        with self._reader_lock:
            self._reader.abandon()
        self._needs_resync = True

    def _resync(self) -> None:
        """Get back in step after a timeout.  The abandoned command's reply
        may come at any time, or never; no quiet spell proves it will not.
        But a modem answers commands in order (V.250 §5.2), so a plain AT
        sent now is answered after it: the first final result we see ends
        the probe, and a second one, if the first was the late reply,
        follows at once and is dropped as stray in the quiet spell after."""
        self._exchange(AtCommand("AT", name="resync"), self.timeout)
        self._wait_for_quiet()

    def _wait_for_quiet(self, quiet: float = 0.3, limit: float = 10.0) -> None:
        """Let the rest of a late reply arrive and be dropped."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if time.monotonic() - self._last_rx >= quiet:
                self._needs_resync = False
                return
            time.sleep(0.02)
        raise ModemUnavailable(f"{self.port}: the modem keeps talking after a timeout")

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise ModemUnavailable(f"{self.port}: {_why(self._failure)}")

    # -- the one reader ----------------------------------------------------
    def _read_loop(self) -> None:
        ser = self._serial
        while not self._closing.is_set():
            try:
                data = ser.read(ser.in_waiting or 1)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if self._closing.is_set():
                    return
                self._failure = exc
                self._results.put(exc)
                if self.on_failure is not None:
                    self.on_failure()
                return
            if not data:
                continue
            self._last_rx = time.monotonic()
            with self._reader_lock:
                self._reader.receive_data(data)
                events = []
                while (event := self._reader.next_event()) is not NEED_DATA:
                    events.append(event)
            for event in events:
                if isinstance(event, Unsolicited):
                    log.debug("< (unsolicited) %s", event.line)
                    if self.on_unsolicited is not None:
                        try:
                            self.on_unsolicited(event.line)
                        except Exception:  # a bad callback must not kill the reader
                            log.exception("unsolicited-line handler failed")
                else:
                    self._results.put(event)


def _drain_output(ser: serial.Serial) -> None:
    """Wait until what was written left (tcdrain).  A signal (SIGHUP,
    SIGTERM, SIGUSR1/2 to the service) can end the wait with EINTR, which
    termios raises as termios.error, not OSError: wait again."""
    while True:
        try:
            ser.flush()
            return
        except termios.error as exc:
            if exc.args and exc.args[0] == errno.EINTR:
                continue
            raise OSError(*exc.args) from None


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def _result_text(resp: Response) -> str:
    r = resp.result
    if r.code is not None:
        return f"{r.kind}: {r.code}"
    return r.kind


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        # The errno's own text: pyserial's wraps it with the port, which must
        # never be lower-cased (/dev/serial/by-id/usb-Quectel_...).
        return os.strerror(exc.errno).lower()
    text = str(exc) or type(exc).__name__
    # pyserial embeds "[Errno N] text: 'path'"; keep it to one line.
    return text.splitlines()[0]
