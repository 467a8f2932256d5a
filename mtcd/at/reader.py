"""The AT reply reader: bytes from the modem in, events out, no I/O.

The caller owns the port.  It asks `start(command)` for the bytes to write,
feeds whatever the port returns to `receive_data()`, and drains
`next_event()` until it returns `NEED_DATA`.

Rules (V.250 §5, TS 27.007 §9), applied to each line in order:

1. A line ends at CR, LF or CRLF (S3/S4); empty lines are skipped.  Bytes
   are decoded leniently and line noise (control characters, undecodable
   bytes) is trimmed from both ends and NULs and other C0 controls inside a
   line are removed; nothing the modem sends raises.  A line longer than
   `MAX_LINE` is thrown away and counted in `discarded_lines`, and so is an
   information line beyond `MAX_LINES` in one reply: memory stays bounded.
2. The echo of the pending command is dropped.  For a sensitive command any
   line carrying its text, and any line without an information prefix, is
   dropped: such a command has no bare reply, and a garbled echo would carry
   the secret.  The echoes of the last few commands are dropped whenever
   they come: after `abandon()`, or behind a stray OK, they arrive late.
2a. Every form of a command's secrets (`AtCommand.secrets`, found by
   `mtcd.at.redact`) is replaced by "<redacted>" in every line, whatever
   the line turns out to be (URC, reply line, final result), from start()
   until `SECRET_WINDOW` later commands have ended.  A line that was nothing
   but the secret is dropped.  The window counts commands, not seconds: a
   quiet line proves nothing, but a modem answers in order (V.250 §5.2),
   so once a later command has ended, the secret command's echoes are past;
   the second is slack for a doubled echo.
3. A final result code (OK, ERROR, +CME ERROR, ... see `parse_final`)
   ends the pending command's `Response`.  With no command pending it is
   stray (e.g. the late OK of an abandoned command): dropped and counted in
   `stray_results`.
4. RING and the other bare notifications in `BARE_URCS` are `Unsolicited`.
5. While a command is pending, a line starting with one of its prefixes
   belongs to it; any other `+X:` `^X:` `#X:` `*X:` `$X:` `%X:` line is
   `Unsolicited` (URCs interrupt replies); a line without such a prefix
   (bare IMEI, ICCID) belongs to the command.
6. With no command pending, every line is `Unsolicited`.
7. Bytes received before `start()` cannot answer the command: lines that
   began before it are read as if nothing were pending.
8. A command with `expects_prompt` gets a `Prompt` event when a line starts
   with "> " (the modem waits for the SMS body without ending the line).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

from .commands import AtCommand
from .redact import SecretPattern, only_redacted

MAX_LINE = 4096
MAX_LINES = 1000  # information lines kept for one reply
SECRET_WINDOW = 2  # later commands that must end before a secret is forgotten

# Notifications without a prefix that modems send at any time (V.250 RING;
# boot and SIM-ready banners of Quectel and SIMCom modules).
BARE_URCS = frozenset(
    {"RING", "RDY", "CALL READY", "SMS READY", "SMS DONE", "PB DONE",
     "NORMAL POWER DOWN", "POWERED DOWN"}
)

# An information or unsolicited line: a prefix character, a name, a colon.
_PREFIXED = re.compile(r"[+^#*$%][A-Za-z0-9][A-Za-z0-9_-]*\s*:")

# Trimmed from both ends of a line: blanks, C0 controls, DEL, and the
# replacement character that stands for undecodable bytes.
_NOISE = "".join(chr(c) for c in range(0x21)) + "\x7f\ufffd"
# Removed inside a line: NUL padding and other controls (tab stays).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f]")

# Final result codes without parameters (V.250 §5.7.1, TS 27.007 §9.1),
# and variants modules use: "NO DIAL TONE" spelt apart, "ABORTED" for a
# command cut short by a character.
_PLAIN_FINALS = {
    "OK": "OK",
    "ERROR": "ERROR",
    "NO CARRIER": "NO CARRIER",
    "BUSY": "BUSY",
    "NO ANSWER": "NO ANSWER",
    "NO DIALTONE": "NO DIALTONE",
    "NO DIAL TONE": "NO DIALTONE",
    "ABORTED": "ABORTED",
}

# Vendor words for ERROR: the command is unknown or malformed (Huawei and
# ZTE firmware, some Quectel).  They end the command as ERROR, text kept.
_ERROR_WORDS = frozenset({"COMMAND NOT SUPPORT", "NOT SUPPORT", "TOO MANY PARAMETERS"})

# +CME ERROR verbose texts (TS 27.007 §9.2), for modems that answer in
# words even after AT+CMEE=1.  Keys are normalised by `_cme_key`: lower
# case, hyphens as blanks, no dots, commas or quotes, single blanks.  Beside
# the spec's wording, a few rewordings that cannot mean anything else
# (British spelling, "PUK1", "wrong password"), so a vendor's variant of
# 16 or 12 still reaches the PIN logic as 16 or 12.
CME_TEXTS: dict[str, int] = {
    "phone failure": 0,
    "no connection to phone": 1,
    "phone-adaptor link reserved": 2,
    "phone adapter link reserved": 2,
    "operation not allowed": 3,
    "operation not supported": 4,
    "operation not support": 4,
    "ph-sim pin required": 5,
    "ph-fsim pin required": 6,
    "ph-fsim puk required": 7,
    "sim not inserted": 10,
    "sim pin required": 11,
    "sim pin1 required": 11,
    "sim puk required": 12,
    "sim puk1 required": 12,
    "sim failure": 13,
    "sim busy": 14,
    "sim wrong": 15,
    "incorrect password": 16,
    "wrong password": 16,
    "sim pin2 required": 17,
    "sim puk2 required": 18,
    "memory full": 20,
    "invalid index": 21,
    "not found": 22,
    "memory failure": 23,
    "text string too long": 24,
    "invalid characters in text string": 25,
    "dial string too long": 26,
    "invalid characters in dial string": 27,
    "no network service": 30,
    "network timeout": 31,
    "network not allowed - emergency calls only": 32,
    "network personalization pin required": 40,
    "network personalisation pin required": 40,
    "network personalization puk required": 41,
    "network personalisation puk required": 41,
    "network subset personalization pin required": 42,
    "network subset personalization puk required": 43,
    "service provider personalization pin required": 44,
    "service provider personalization puk required": 45,
    "corporate personalization pin required": 46,
    "corporate personalization puk required": 47,
    "hidden key required": 48,
    "eap method not supported": 49,
    "incorrect parameters": 50,
    "unknown": 100,
    "illegal ms": 103,
    "illegal me": 106,
    "gprs services not allowed": 107,
    "plmn not allowed": 111,
    "location area not allowed": 112,
    "roaming not allowed in this location area": 113,
    "unspecified gprs error": 148,
    "pdp authentication failure": 149,
    "invalid mobile class": 150,
}


def _cme_key(text: str) -> str:
    text = text.lower().replace("-", " ").replace("_", " ")
    text = "".join(ch for ch in text if ch not in ".,;\"'")
    return " ".join(text.split())


_ERROR_REPORT = re.compile(r"\+(CME|CMS)\s+ERROR\s*:", re.IGNORECASE)

_CME_CODES = {_cme_key(text): code for text, code in CME_TEXTS.items()}


@dataclass(frozen=True)
class FinalResult:
    """How a command ended.  `kind` is one of "OK", "ERROR", "CME ERROR",
    "CMS ERROR", "NO CARRIER", "CONNECT", "BUSY", "NO ANSWER", "NO DIALTONE",
    "ABORTED".  A vendor's word for ERROR ("COMMAND NOT SUPPORT") is kind
    "ERROR" with the word as `text`."""

    kind: str
    code: int | None = None  # +CME/+CMS number; verbose texts mapped when known
    text: str | None = None  # verbose error text, or CONNECT's argument

    @property
    def ok(self) -> bool:
        return self.kind in ("OK", "CONNECT")


@dataclass(frozen=True)
class Response:
    command: AtCommand
    lines: tuple[str, ...]  # information lines of the command, in order
    result: FinalResult


@dataclass(frozen=True)
class Unsolicited:
    line: str


@dataclass(frozen=True)
class Prompt:
    command: AtCommand


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
"""Returned by `next_event()` when the buffer holds no complete event."""

Event = Response | Unsolicited | Prompt | _NeedData


class LocalProtocolError(RuntimeError):
    """The caller broke the reader's rules (a bug in mtcd, not the modem)."""


def parse_final(line: str) -> FinalResult | None:
    """The final result code `line` stands for, or None if it is not one."""
    upper = " ".join(line.upper().split())
    if upper in _PLAIN_FINALS:
        return FinalResult(_PLAIN_FINALS[upper])
    if upper in _ERROR_WORDS:
        return FinalResult("ERROR", text=upper)
    if upper == "CONNECT" or upper.startswith("CONNECT "):
        return FinalResult("CONNECT", text=line[8:].strip() or None)
    error = _ERROR_REPORT.match(line)
    if error:
        return _error_result(f"{error.group(1).upper()} ERROR", line[error.end() :])
    return None


def _error_result(kind: str, detail: str) -> FinalResult:
    detail = detail.strip().strip('"').strip()
    if detail.isascii() and detail.isdigit() and len(detail) <= 6:
        return FinalResult(kind, code=int(detail))
    if not detail:
        return FinalResult(kind)
    code = None
    if kind == "CME ERROR":
        code = _CME_CODES.get(_cme_key(detail))
    return FinalResult(kind, code=code, text=detail)


class AtReader:
    """Turns the byte stream of one AT port into `Response`, `Unsolicited`
    and `Prompt` events.  One command at a time (V.250 §5.2)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pending: AtCommand | None = None
        self._lines: list[str] = []
        # The last few commands started: their echo may still arrive.
        self._recent: deque[AtCommand] = deque(maxlen=4)
        # Bytes at the front of the buffer that arrived before start().
        self._before = 0
        self._discarding = False
        # Commands whose secrets are still redacted: [command, later
        # commands still to end (None while it runs)].  Bounded like _recent.
        self._secret_windows: deque[list] = deque(maxlen=4)
        self._secret_pattern = SecretPattern(())
        self.stray_results = 0  # final results with no command pending
        self.discarded_lines = 0  # over-long lines (or lines past MAX_LINES) thrown away
        self.redacted_lines = 0  # lines that carried a secret

    @property
    def pending(self) -> AtCommand | None:
        return self._pending

    def start(self, command: AtCommand) -> bytes:
        """Mark `command` pending and return the bytes to write to the port."""
        if self._pending is not None:
            raise LocalProtocolError(
                f"{command.loggable} started while {self._pending.loggable} is pending"
            )
        self._pending = command
        self._recent.append(command)
        self._lines = []
        self._before = len(self._buf)
        if command.secrets:
            self._secret_windows.append([command, None])
            self._update_secret_pattern()
        return command.encode()

    def abandon(self) -> None:
        """The caller gave up on the pending command (timeout).  Its echo and
        a late final result are dropped if they still arrive."""
        if self._pending is not None:
            self._ended(self._pending, completed=False)
        self._pending = None
        self._lines = []

    def end_without_final(self) -> Response | None:
        """The pending command's reply so far as its whole answer, for a
        command whose modem may send no final result (`final_optional`):
        only once one of its own information lines has arrived.  The result
        is OK with the text "no final result", so logs say what happened."""
        command = self._pending
        if command is None or not command.final_optional or self._before or self._buf.strip(b"\r\n"):
            return None
        if not any(line.upper().startswith(p.upper()) for line in self._lines for p in command.prefixes):
            return None
        lines = tuple(self._lines)
        self._pending = None
        self._lines = []
        self._ended(command, completed=True)
        return Response(command, lines, FinalResult("OK", text="no final result"))

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def next_event(self) -> Event:
        while True:
            self._skip_terminators()
            if self._prompt_ahead():
                self._consume(2)
                return Prompt(self._pending)
            end = _line_end(self._buf)
            if end < 0:
                if len(self._buf) > MAX_LINE:
                    # Keep memory bounded: drop what we have and the rest
                    # of this line when its end arrives.
                    if not self._discarding:
                        self.discarded_lines += 1
                    self._discarding = True
                    self._consume(len(self._buf))
                return NEED_DATA
            before = self._before > 0
            raw = bytes(self._buf[:end])
            self._consume(end + 1)
            if self._discarding:
                self._discarding = False
                continue
            if len(raw) > MAX_LINE:
                self.discarded_lines += 1
                continue
            line = _CONTROLS.sub("", raw.decode("utf-8", errors="replace")).strip(_NOISE)
            if line:
                event = self._read_line(line, before)
                if event is not None:
                    return event

    # --- one line -------------------------------------------------------

    def _read_line(self, line: str, before_start: bool) -> Event | None:
        command = None if before_start else self._pending
        if self._is_echo(line):
            return None
        line, had_secret = self._secret_pattern.redact(line)
        if had_secret:
            self.redacted_lines += 1
            if only_redacted(line):
                return None  # the secret alone: an echo, nothing else
        final = parse_final(line)
        if final is not None:
            if command is None:
                self.stray_results += 1
                return None
            lines = tuple(self._lines)
            self._pending = None
            self._lines = []
            self._ended(command, completed=True)
            return Response(command, lines, final)
        if command is None or line.upper() in BARE_URCS:
            return Unsolicited(line)
        upper = line.upper()
        if any(upper.startswith(p.upper()) for p in command.prefixes):
            self._keep(line)
            return None
        if _PREFIXED.match(line):
            return Unsolicited(line)
        if not command.sensitive:
            self._keep(line)
        return None

    def _keep(self, line: str) -> None:
        if len(self._lines) < MAX_LINES:
            self._lines.append(line)
        else:
            self.discarded_lines += 1

    # --- secrets --------------------------------------------------------

    def _ended(self, command: AtCommand, *, completed: bool) -> None:
        """Count down the secret windows: `command` ended (or was given up)."""
        changed = False
        for window in list(self._secret_windows):
            if window[0] is command and window[1] is None:
                window[1] = SECRET_WINDOW
            elif window[1] is not None and completed:
                window[1] -= 1
                if window[1] <= 0:
                    self._secret_windows.remove(window)
                    changed = True
        if changed:
            self._update_secret_pattern()

    def _update_secret_pattern(self) -> None:
        self._secret_pattern = SecretPattern(
            secret for command, _ in self._secret_windows for secret in command.secrets
        )

    def _is_echo(self, line: str) -> bool:
        upper = line.upper()
        return any(_echoes(command, upper) for command in self._recent)

    # --- buffer ---------------------------------------------------------

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._before = max(0, self._before - n)

    def _skip_terminators(self) -> None:
        n = 0
        while n < len(self._buf) and self._buf[n] in b"\r\n":
            n += 1
        if n:
            # An over-long line being discarded (buffer emptied) ends here.
            self._discarding = False
            self._consume(n)

    def _prompt_ahead(self) -> bool:
        return (
            self._pending is not None
            and self._pending.expects_prompt
            and self._before == 0
            and not self._discarding
            and self._buf.startswith(b"> ")
        )


def _echoes(command: AtCommand, line_upper: str) -> bool:
    """Whether a line is (maybe garbled) echo of `command`.  A sensitive
    command's echo is matched loosely, by its head or its arguments, since
    lost or noisy bytes must not let the secret through."""
    text = command.text.upper()
    if not command.sensitive:
        return line_upper == text
    head, sep, args = text.partition("=")
    return text in line_upper or bool(
        sep and (args in line_upper or line_upper.startswith(head + "="))
    )


def _line_end(buf: bytearray) -> int:
    cr = buf.find(b"\r")
    lf = buf.find(b"\n")
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)
