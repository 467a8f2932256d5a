"""AT commands as values: text, what reply lines belong to them, how long to
wait, and whether the text carries a secret.

A sensitive command's text is only ever turned into bytes for the port;
everything that logs, raises or prints uses `loggable`, which hides the
arguments.  A command built from a `Secret` carries it in `secrets`, so the
reader can take every form of it out of what the modem sends back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..secret import Pin, Puk, Secret
from .redact import REDACTED


@dataclass(frozen=True, slots=True)
class AtCommand:
    text: str  # full command line without the terminator, e.g. 'AT+CPIN?'
    # Information-response prefixes (e.g. '+CPIN:') that belong to this
    # command; any other prefixed line while it runs is unsolicited.
    prefixes: tuple[str, ...] = ()
    timeout: float = 5.0
    sensitive: bool = False
    # Commands such as +CMGS answer with a '> ' prompt before the final result.
    expects_prompt: bool = False
    name: str = field(default="", compare=False)  # short label for logs/benchmarks
    # The secrets inside `text`: while the command runs and for a while
    # after, the reader redacts them from every line (see mtcd.at.reader).
    secrets: tuple[Secret, ...] = field(default=(), compare=False, repr=False)
    # Some modems (Wavecom) end this command's reply with its information
    # line and no final result: the transport then takes the line as the
    # whole answer once the port has gone quiet (see mtcd.transport).
    final_optional: bool = False

    def __post_init__(self):
        if self.secrets:
            # A command carrying a secret is sensitive, whatever the caller said.
            object.__setattr__(self, "sensitive", True)
        if not self.text.upper().startswith("AT"):
            raise ValueError("an AT command must start with AT")
        if any(c in self.text for c in "\r\n\x1a\x1b"):
            raise ValueError("an AT command must not contain line or control characters")

    def encode(self) -> bytes:
        return self.text.encode("ascii") + b"\r"

    @property
    def loggable(self) -> str:
        """The command as it may appear in logs, errors and traces."""
        if not self.sensitive:
            return self.text
        head, sep, _ = self.text.partition("=")
        return f"{head}={REDACTED}" if sep else REDACTED

    def __repr__(self) -> str:
        return f"AtCommand({self.loggable!r})"

    __str__ = __repr__


# Answers to a concatenated line that may mean "not in this form": a plain
# ERROR (code None), or +CME ERROR 3/4 (operation not allowed / not supported).
NOT_THIS_FORM = (None, 3, 4)


def concatenated(parts: Sequence[AtCommand]) -> AtCommand:
    """Several commands on one command line (V.250 §5.2.1: `ATE0+CMEE=1`,
    `AT+CGDCONT=...;+CGACT=1,1`): one round trip instead of several.  Only
    for commands whose whole answer is the final result: with information
    lines the answers could not be told apart.  Never a command carrying a
    secret: its text would be logged under another command's name."""
    if len(parts) < 2:
        raise ValueError("concatenation needs two commands or more")
    text, after_extended = "AT", False
    for part in parts:
        if part.sensitive or part.secrets:
            raise ValueError("a command carrying a secret is never concatenated")
        if part.prefixes or part.expects_prompt:
            raise ValueError(f"{part.text} answers with information lines: not concatenated")
        body = part.text[2:]
        extended = body[:1] in ("+", "^", "$")
        if not extended and after_extended:
            raise ValueError("basic commands (E0, V1) must come before the extended ones")
        # Basic commands follow each other directly; extended ones end at ';'.
        text += (";" if after_extended else "") + body
        after_extended = extended
    return AtCommand(text, timeout=max(part.timeout for part in parts),
                     name="+".join(part.name or part.text for part in parts))


def _quoted(value: str) -> str:
    if '"' in value or not value.isprintable():
        raise ValueError("AT string arguments must be printable and contain no quotes")
    return f'"{value}"'


# --- 27.007 commands mtcd uses; vendor commands live in mtcd.vendors.* ---

def echo_off() -> AtCommand:
    return AtCommand("ATE0", name="echo-off")


def verbose_errors() -> AtCommand:
    return AtCommand("AT+CMEE=1", name="cmee")


def manufacturer() -> AtCommand:
    return AtCommand("AT+CGMI", prefixes=("+CGMI:",), name="cgmi")


def model() -> AtCommand:
    return AtCommand("AT+CGMM", prefixes=("+CGMM:",), name="cgmm")


def imei() -> AtCommand:
    return AtCommand("AT+CGSN", prefixes=("+CGSN:",), name="imei")


def imeisv() -> AtCommand:
    return AtCommand("AT+CGSN=2", prefixes=("+CGSN:",), name="imeisv")


def functionality(level: int) -> AtCommand:
    if level not in (0, 1, 4):
        raise ValueError("functionality level must be 0, 1 or 4")
    # Radio on/off can take seconds while the modem (de)registers.
    return AtCommand(f"AT+CFUN={level}", timeout=30.0, name=f"cfun-{level}")


def functionality_query() -> AtCommand:
    return AtCommand("AT+CFUN?", prefixes=("+CFUN:",), name="cfun?")


def sim_lock_query() -> AtCommand:
    return AtCommand("AT+CPIN?", prefixes=("+CPIN:",), name="cpin?", final_optional=True)


def enter_pin(pin: Pin) -> AtCommand:
    # Verification can take a while on slow cards.
    return AtCommand(
        f'AT+CPIN="{pin.reveal()}"', timeout=20.0, sensitive=True, name="cpin", secrets=(pin,)
    )


def enter_puk(puk: Puk, new_pin: Pin) -> AtCommand:
    return AtCommand(
        f'AT+CPIN="{puk.reveal()}","{new_pin.reveal()}"',
        timeout=20.0,
        sensitive=True,
        name="cpin-puk",
        secrets=(puk, new_pin),
    )


def change_pin(old: Pin, new: Pin) -> AtCommand:
    return AtCommand(
        f'AT+CPWD="SC","{old.reveal()}","{new.reveal()}"',
        timeout=20.0,
        sensitive=True,
        name="cpwd",
        secrets=(old, new),
    )


def pin_retries() -> AtCommand:
    return AtCommand('AT+CPINR="SIM PIN"', prefixes=("+CPINR:",), name="cpinr")


def pin_enabled_query() -> AtCommand:
    return AtCommand('AT+CLCK="SC",2', prefixes=("+CLCK:",), timeout=10.0, name="clck?")


def set_pin_enabled(enabled: bool, pin: Pin) -> AtCommand:
    mode = 1 if enabled else 0
    return AtCommand(
        f'AT+CLCK="SC",{mode},"{pin.reveal()}"',
        timeout=20.0,
        sensitive=True,
        name="clck",
        secrets=(pin,),
    )


def restricted_sim_access(command: int, file_id: int, p1: int = 0, p2: int = 0, p3: int | None = None) -> AtCommand:
    """AT+CRSM (27.007 §8.18); e.g. READ BINARY EF.ICCID = (176, 0x2FE2, 0, 0, 10)."""
    args = f"{command},{file_id},{p1},{p2}"
    if p3 is not None:
        args += f",{p3}"
    return AtCommand(f"AT+CRSM={args}", prefixes=("+CRSM:",), timeout=10.0, name="crsm")


def read_iccid_file() -> AtCommand:
    return restricted_sim_access(176, 0x2FE2, 0, 0, 10)


def read_imsi_file() -> AtCommand:
    return restricted_sim_access(176, 0x6F07, 0, 0, 9)


# Path from the MF to ADF.USIM ('7FFF': the current USIM application), for
# the <pathid> of AT+CRSM: the EFs of TS 31.102 live there, not under the MF.
USIM_PATH = "3F007FFF"


def usim_file_access(command: int, file_id: int, p1: int = 0, p2: int = 0, p3: int = 0) -> AtCommand:
    """AT+CRSM on an EF of ADF.USIM, selected by path (27.007 §8.18
    <pathid>): 176 READ BINARY, 178 READ RECORD, 192 GET RESPONSE.  Reads
    only: a write command is refused here."""
    if command not in (176, 178, 192):
        raise ValueError("only READ BINARY, READ RECORD and GET RESPONSE are sent to ADF.USIM")
    return AtCommand(f'AT+CRSM={command},{file_id},{p1},{p2},{p3},,"{USIM_PATH}"', prefixes=("+CRSM:",),
                     timeout=10.0, name="crsm")


# PIN commands of TS 102 221 §11.1.9-13: VERIFY, CHANGE, DISABLE, ENABLE,
# UNBLOCK PIN.  With data they carry PIN or PUK blocks.
_PIN_INSTRUCTIONS = frozenset({0x20, 0x24, 0x26, 0x28, 0x2C})
_PIN_BLOCK = 8


def generic_sim_access(apdu: bytes, *, sensitive: bool = False) -> AtCommand:
    """AT+CSIM (27.007 §8.17): a raw APDU (as sent over T=0: header, P3,
    data), length given in hex characters.  A PIN command with data is
    sensitive and carries its PIN blocks as secrets, whatever the caller said."""
    hexapdu = apdu.hex().upper()
    secrets = _pin_blocks(apdu)
    return AtCommand(
        f'AT+CSIM={len(hexapdu)},"{hexapdu}"',
        prefixes=("+CSIM:",),
        timeout=10.0,
        sensitive=sensitive or secrets is not None,
        name="csim",
        secrets=secrets or (),
    )


def _pin_blocks(tpdu: bytes) -> tuple[Secret, ...] | None:
    """The secrets in the data of a PIN command, or None if it is not one.
    Blocks are 8 bytes, the digits in ASCII padded with FF (TS 102 221
    §9.5.1); digits in BCD padded with F are taken too."""
    if len(tpdu) <= 5 or tpdu[1] not in _PIN_INSTRUCTIONS:
        return None
    found = []
    data = tpdu[5:]
    for start in range(0, len(data), _PIN_BLOCK):
        block = data[start : start + _PIN_BLOCK].rstrip(b"\xff")
        for digits in (block.decode("latin-1"), block.hex().rstrip("f")):
            if digits.isascii() and digits.isdigit():
                found.append(Secret(digits))
                break
    return tuple(found)


def imsi() -> AtCommand:
    return AtCommand("AT+CIMI", prefixes=("+CIMI:",), name="cimi")


def define_pdp_context(cid: int, pdp_type: str, apn: str) -> AtCommand:
    return AtCommand(
        f"AT+CGDCONT={cid},{_quoted(pdp_type)},{_quoted(apn)}", name="cgdcont"
    )


def activate_pdp_context(cid: int, active: bool = True) -> AtCommand:
    # Activation may include the attach: allow the network time.
    return AtCommand(f"AT+CGACT={int(active)},{cid}", timeout=150.0, name="cgact")


# --- read-only queries `mtcctl doctor` adds ---

def revision() -> AtCommand:
    return AtCommand("AT+CGMR", prefixes=("+CGMR:",), name="cgmr")


def registration_query(prefix: str = "+CREG") -> AtCommand:
    """AT+CREG? (circuit-switched) or AT+CEREG? (EPS): read, never set."""
    if prefix not in ("+CREG", "+CGREG", "+CEREG"):
        raise ValueError("registration prefix must be +CREG, +CGREG or +CEREG")
    return AtCommand(f"AT{prefix}?", prefixes=(f"{prefix}:",), name=prefix[1:].lower() + "?")


def signal_quality() -> AtCommand:
    return AtCommand("AT+CSQ", prefixes=("+CSQ:",), name="csq")
