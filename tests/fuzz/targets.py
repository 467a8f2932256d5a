"""Fuzz targets: one function per entry point that takes bytes from the
modem, the card, a configuration file or the control socket.

Each target turns an arbitrary byte string into a call (or a series of
calls) and checks the properties that must hold for every input:

* no exception except the error types the entry point is documented to
  raise (mtcd.errors and the few named here); anything else propagates,
  so the fuzzing engine reports it as a crash with the input;
* bounded buffers (the AT reader);
* no secret in what comes out (the AT reader, the control socket's errors).

Time per input is bounded by the engine (tests/fuzz/run.py, and the short
run in tests/test_fuzz.py).  The targets do no I/O but the configuration
loader's own reads of a scratch directory.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

from mtcd import alerts
from mtcd import apdu as apdu_mod
from mtcd.apdu import ApduResponse, describe_status, remaining_attempts
from mtcd.at import commands, parsers
from mtcd.at.commands import AtCommand
from mtcd.at.reader import MAX_LINE, MAX_LINES, NEED_DATA, AtReader, Prompt, Response, Unsolicited, parse_final
from mtcd.config import load_config
from mtcd.control import BadRequest, ControlError, PeerCredentials, ServiceError, decode_response, parse_request
from mtcd.errors import ConfigError, ModemProtocolError
from mtcd.identity import Iccid, Imsi
from mtcd.secret import Pin
from mtcd.simlock import SimEvent, SimLock
from mtcd.vendors import DIALECTS, UnknownDialect, detect_dialect, dialect_named
from mtcd.vendors import base as vendor_base
from mtcd.vendors import cinterion, huawei, quectel, sierra, simcom, telit, ublox


class Fault(AssertionError):
    """A property does not hold for this input."""


# --- the AT reader ------------------------------------------------------------

# The PIN the reader's sensitive commands carry: 8 digits, so every form
# mtcd.at.redact promises to catch (whole, spaced, quoted) is in scope.
PIN = "71539284"
_PIN_SEEN = re.compile("(?<![0-9])" + "[ \t]*".join(PIN) + "(?![0-9])")


def _reader_commands() -> list[AtCommand]:
    pin = Pin(PIN)
    return [
        commands.sim_lock_query(),
        commands.enter_pin(pin),
        commands.imei(),
        commands.read_iccid_file(),
        commands.pin_retries(),
        commands.generic_sim_access(apdu_mod.verify_pin(pin).tpdu()),
        AtCommand("AT+CMGS=12", prefixes=("+CMGS:",), expects_prompt=True, name="cmgs"),
        commands.manufacturer(),
    ]


READER_COMMANDS = _reader_commands()


def _chunks(stream: bytes, seed: int) -> list[bytes]:
    """The stream cut at points chosen by `seed` (1 to 64 bytes a piece;
    seed 0: one piece)."""
    if seed == 0:
        return [stream] if stream else []
    out, i, state = [], 0, seed
    while i < len(stream):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        n = 1 + (state >> 16) % 64
        out.append(stream[i : i + n])
        i += n
    return out


def _texts(event) -> list[str]:
    """What an event shows of the modem's bytes (not the command's own text)."""
    if isinstance(event, Unsolicited):
        return [event.line]
    if isinstance(event, Response):
        return [*event.lines, event.result.text or ""]
    return []


def _drain(reader: AtReader, sensitive: bool) -> list:
    events = []
    while True:
        event = reader.next_event()
        if event is NEED_DATA:
            break
        if not isinstance(event, (Response, Unsolicited, Prompt)):
            raise Fault(f"unknown event {event!r}")
        for text in _texts(event):
            if len(text) > MAX_LINE:
                raise Fault(f"a line of {len(text)} characters came out (MAX_LINE {MAX_LINE})")
            if sensitive and _PIN_SEEN.search(text):
                raise Fault("the PIN came out of the reader")
        if isinstance(event, Response) and len(event.lines) > MAX_LINES:
            raise Fault(f"a reply of {len(event.lines)} lines came out (MAX_LINES {MAX_LINES})")
        events.append(event)
    # Bounded: what the reader keeps between calls.
    if len(reader._buf) > MAX_LINE:
        raise Fault(f"{len(reader._buf)} bytes buffered after draining (MAX_LINE {MAX_LINE})")
    if len(reader._lines) > MAX_LINES:
        raise Fault(f"{len(reader._lines)} reply lines kept (MAX_LINES {MAX_LINES})")
    return events


def reader(data: bytes) -> None:
    """Header: command byte, mode byte, split seed byte; then the modem's
    bytes.  Modes (low 2 bits): 0 the command starts before any byte and
    the events must not depend on where the stream is cut; 1 the command
    starts after the first piece; 2 it is abandoned halfway and the next
    one started; 3 nothing is pending.  Never raises for any input."""
    if len(data) < 3:
        return
    command = READER_COMMANDS[data[0] % len(READER_COMMANDS)]
    mode, seed, stream = data[1] & 3, data[2], data[3:]
    sensitive = bool(command.secrets)
    pieces = _chunks(stream, seed)

    r = AtReader()
    if mode == 0:
        r.start(command)
        events = []
        for piece in pieces:
            r.receive_data(piece)
            events += _drain(r, sensitive)
        # The same stream in one piece gives the same events.
        whole = AtReader()
        whole.start(command)
        whole.receive_data(stream)
        expected = _drain(whole, sensitive)
        if events != expected:
            raise Fault(f"events depend on where the stream is cut: {events!r} != {expected!r}")
        return
    half = len(pieces) // 2
    for i, piece in enumerate(pieces):
        if mode == 1 and i == 1:
            r.start(command)
        if mode == 2 and i == 0:
            r.start(command)
        if mode == 2 and i == half:
            r.abandon()
            r.start(READER_COMMANDS[(data[0] + 1) % len(READER_COMMANDS)])
        r.receive_data(piece)
        # Bytes drained before the command was sent cannot hold its PIN.
        started = mode == 2 or (mode == 1 and i >= 1)
        for event in _drain(r, sensitive and started):
            if isinstance(event, Response) and r.pending is None and mode == 2 and i < half:
                r.start(command)  # the next command of a session, after each answer


# --- response parsers ------------------------------------------------------------

def _sim_event(dialect):
    def check(lines):
        for line in lines:
            event = dialect.sim_event(line)
            if event is not None and not isinstance(event, SimEvent):
                raise Fault(f"{dialect.name}.sim_event gave {event!r}")
    check.__name__ = f"{dialect.name}.sim_event"
    check.never_raises = True
    return check


def _finals(lines):
    for line in lines:
        parse_final(line)


_finals.never_raises = True


def _dialects(lines):
    for line in lines:
        detect_dialect(line)
        try:
            dialect_named(line)
        except UnknownDialect:
            pass


_dialects.never_raises = True

# (parser, prefix put in front of the lines the header marks).  Each raises
# ModemProtocolError and nothing else (mtcd.at.parsers, mtcd.vendors.base).
PARSERS = [
    (parsers.parse_cpin, "+CPIN: "),
    (parsers.parse_cpinr, "+CPINR: "),
    (parsers.parse_clck, "+CLCK: "),
    (parsers.parse_crsm, "+CRSM: "),
    (parsers.parse_csim, "+CSIM: "),
    (parsers.parse_imei, "+CGSN: "),
    (parsers.parse_imeisv, "+CGSN: "),
    (parsers.parse_imsi, "+CIMI: "),
    (parsers.parse_iccid, "+CCID: "),
    (parsers.parse_cfun, "+CFUN: "),
    (parsers.parse_cgmi, "+CGMI: "),
    (lambda lines: parsers.parse_identity_text(lines, "AT+CGMR", ("+CGMR:", "Revision:")), "Revision: "),
    (lambda lines: parsers.parse_registration(lines, "+CEREG"), "+CEREG: "),
    (parsers.parse_csq, "+CSQ: "),
    (vendor_base.parse_crsm_iccid, "+CRSM: 144,0,"),
    (vendor_base.parse_csim_attempts, "+CSIM: 4,"),
    (quectel.parse_usbnet, '+QCFG: "usbnet",'),
    (quectel.parse_qnetdevctl_auto, "+QNETDEVCTL: "),
    (quectel.parse_qpinc, '+QPINC: "SC",'),
    (simcom.parse_dialmode_auto, "+DIALMODE: "),
    (huawei.parse_huawei_cpin, "^CPIN: "),
    (telit.parse_pct, "#PCT: "),
    (telit.parse_telit_ccid, "#CCID: "),
    (ublox.parse_ubmconf, "+UBMCONF: "),
    (ublox.parse_upincnt, "+UPINCNT: "),
    (sierra.parse_cpinc, "+CPINC: "),
    (sierra.parse_sierra_iccid, "!ICCID: "),
    (cinterion.parse_spic, "^SPIC: "),
    (_finals, ""),
    (_dialects, ""),
] + [
    (_sim_event(DIALECTS[name]()), prefix)
    for name, prefix in (
        ("generic", "+CPIN: "), ("quectel", "+QSIMSTAT: "), ("simcom", "+SIMCARD: "),
        ("ublox", "+UUSIMSTAT: "), ("huawei", "^SIMST: "), ("telit", "#QSS: "),
        ("sierra", "+CPIN: "), ("cinterion", "^SCKS: "),
    )
] + [
    (alerts.parse_cmgs, "+CMGS: "),
]


def parser(data: bytes) -> None:
    """Header: parser byte, prefix mask byte (bit i: put the parser's
    prefix in front of line i); then the reply's lines, UTF-8, one per
    LF.  ModemProtocolError is the only exception a parser may raise;
    URC interpreters and final-result parsing raise none."""
    if len(data) < 2:
        return
    parse, prefix = PARSERS[data[0] % len(PARSERS)]
    mask = data[1]
    lines = data[2:].decode("utf-8", errors="replace").split("\n")
    lines = [prefix + line if i < 8 and mask >> i & 1 else line for i, line in enumerate(lines)]
    if getattr(parse, "never_raises", False):
        parse(lines)
        return
    try:
        result = parse(lines)
    except ModemProtocolError:
        return
    if parse is parsers.parse_cpin and result is SimLock.SIM_PIN:
        # Guarantee 1: a PIN is presented only when the SIM asks for exactly SIM PIN.
        for line in lines:
            if line[:6].upper() == "+CPIN:":
                code = " ".join(line[6:].replace('"', "").upper().split())
                if not re.match("SIM PIN(?![0-9A-Z])", code):
                    raise Fault(f"{line!r} read as SIM PIN")


# --- the APDU codec ------------------------------------------------------------

def apdu(data: bytes) -> None:
    """A response APDU from the card, and the EF contents decoded from
    card data.  ApduResponse.parse and remaining_attempts raise
    ModemProtocolError only; the identity decoders ValueError only
    (mtcd.identity); describe_status and building an AT+CSIM command from
    any APDU raise nothing."""
    try:
        resp = ApduResponse.parse(data)
    except ModemProtocolError:
        resp = None
    if resp is not None:
        if not (0 <= resp.sw <= 0xFFFF):
            raise Fault(f"status word {resp.sw:#x}")
        str(resp)
        try:
            left = remaining_attempts(resp)
        except ModemProtocolError:
            left = None
        if left is not None and not 0 <= left <= 15:
            raise Fault(f"{left} attempts left")
    if len(data) >= 2:
        describe_status(int.from_bytes(data[:2], "big"))
    for decode in (Iccid.from_ef, Imsi.from_ef):
        try:
            decode(data)
        except ValueError:
            pass
    # A PIN command's AT+CSIM must hide its data whatever the bytes are.
    if 5 <= len(data) <= 260:
        command = commands.generic_sim_access(data)
        if len(data) > 5 and data[1] in (0x20, 0x24, 0x26, 0x28, 0x2C) and not command.sensitive:
            raise Fault("a PIN command's AT+CSIM is not sensitive")
        if command.sensitive and data[5:].hex().upper() in command.loggable:
            raise Fault("a sensitive AT+CSIM shows its data")


# --- the configuration loader -------------------------------------------------------

_scratch: Path | None = None
DROP_IN_SEPARATOR = b"\x00"


def _scratch_dir() -> Path:
    global _scratch
    if _scratch is None:
        # In memory where there is a tmpfs: thousands of small writes.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        _scratch = Path(tempfile.mkdtemp(prefix="mtcd-fuzz-config-", dir=shm))
        (_scratch / "mtcd.toml.d").mkdir()
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


def config(data: bytes) -> None:
    """The main file, then drop-ins, separated by NUL bytes (which TOML
    text cannot hold).  load_config raises ConfigError and nothing else."""
    where = _scratch_dir()
    drop_dir = where / "mtcd.toml.d"
    for old in os.listdir(drop_dir):
        os.unlink(drop_dir / old)
    main, *extra = data.split(DROP_IN_SEPARATOR)[:5]
    (where / "mtcd.toml").write_bytes(main)
    for i, text in enumerate(extra):
        (drop_dir / f"{i:02d}.toml").write_bytes(text)
    try:
        load_config(where / "mtcd.toml")
    except ConfigError as exc:
        if "\n" in str(exc):
            raise Fault(f"a configuration error of more than one line: {str(exc)!r}")


# --- the control socket's wire format ----------------------------------------------

_PEER = PeerCredentials(pid=1, uid=0, gid=0)
_DIGITS = re.compile(rb"[0-9]{4,}")


def control(data: bytes) -> None:
    """A request line as the service reads it (parse_request: BadRequest
    only, and its message never repeats a run of 4 or more digits of the
    request, which could be a PIN), and an answer line as mtcctl reads it
    (decode_response: ServiceError or ControlError only)."""
    line = data.split(b"\n", 1)[0]
    try:
        parse_request(line, _PEER)
    except BadRequest as exc:
        message = str(exc)
        for run in _DIGITS.findall(line):
            if run.decode() in message:
                raise Fault("a request's digits appear in its error message")
        if not isinstance(exc.exit_code, int):
            raise Fault(f"exit code {exc.exit_code!r}")
    try:
        decode_response(data)
    except (ServiceError, ControlError):
        pass


TARGETS = {
    "reader": reader,
    "parser": parser,
    "apdu": apdu,
    "config": config,
    "control": control,
}
