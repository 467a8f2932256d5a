"""APDUs for PIN handling and file access on the UICC, with no I/O.

Commands follow ETSI TS 102 221 §10 (coding) and §11.1 (commands), with the
USIM files of 3GPP TS 31.102.  Every command here uses class byte 00 (a
plain interindustry command on the basic logical channel, §10.1.1) and
short lengths (Lc and Le in one byte).

An APDU that carries a PIN or PUK is marked `sensitive`: its repr hides
the data, and transports must not log its bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ModemProtocolError
from .secret import Pin, Puk, Secret

CLA = 0x00

# Instructions (TS 102 221 §10.1.2).
INS_VERIFY = 0x20
INS_CHANGE = 0x24
INS_DISABLE = 0x26
INS_ENABLE = 0x28
INS_UNBLOCK = 0x2C
INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_GET_RESPONSE = 0xC0

# Key reference of PIN1 (application PIN of the first application, §9.5.1).
PIN1 = 0x01

# Files (TS 102 221 §13, TS 31.102 §4.2).
MF = 0x3F00
EF_ICCID = 0x2FE2
EF_IMSI = 0x6F07

_PIN_BLOCK = 8  # PIN field length: digits padded with FF (§9.5.1)


def _byte(name: str, value: int) -> None:
    if not (isinstance(value, int) and 0 <= value <= 0xFF):
        raise ValueError(f"APDU {name} must be a byte, got {value!r}")


@dataclass(frozen=True)
class Apdu:
    """A command APDU.  `le` is the number of response bytes expected: None
    for none, 1 to 256 (256 is coded 00); 0 is taken as 256, "as many as
    there are"."""

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    sensitive: bool = False

    def __post_init__(self):
        for name in ("cla", "ins", "p1", "p2"):
            _byte(name, getattr(self, name))
        if len(self.data) > 255:
            raise ValueError("APDU data must be at most 255 bytes (short Lc)")
        if self.le is not None and not 0 <= self.le <= 256:
            raise ValueError("APDU Le must be 0 to 256")
        object.__setattr__(self, "data", bytes(self.data))

    def encode(self) -> bytes:
        """The short C-APDU (ISO/IEC 7816-4 §5.1): cases 1 to 4."""
        out = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            out += bytes([len(self.data)]) + self.data
        if self.le is not None:
            out += bytes([self.le % 256])
        return out

    def tpdu(self) -> bytes:
        """The command as sent over T=0 (TS 102 221 §7.3.1.1), which is what
        AT+CSIM passes to the card: case 1 gets P3 = 00, and case 4 drops
        Le (the card answers 61xx and the data is fetched with GET RESPONSE)."""
        header = bytes([self.cla, self.ins, self.p1, self.p2])
        if self.data:
            return header + bytes([len(self.data)]) + self.data
        return header + bytes([(self.le or 0) % 256])

    def __repr__(self) -> str:
        data = "<redacted>" if self.sensitive else self.data.hex().upper()
        return (
            f"Apdu(cla={self.cla:02X}, ins={self.ins:02X}, p1={self.p1:02X}, "
            f"p2={self.p2:02X}, data={data}, le={self.le})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class ApduResponse:
    """A response APDU: data, then the status word SW1 SW2 (§10.2)."""

    data: bytes
    sw1: int
    sw2: int

    @classmethod
    def parse(cls, raw: bytes) -> "ApduResponse":
        if len(raw) < 2:
            raise ModemProtocolError(
                f"APDU response of {len(raw)} bytes has no status word"
            )
        return cls(bytes(raw[:-2]), raw[-2], raw[-1])

    @property
    def sw(self) -> int:
        return self.sw1 << 8 | self.sw2

    @property
    def ok(self) -> bool:
        return self.sw == 0x9000

    def __str__(self) -> str:
        return describe_status(self.sw)


# --- PIN commands (TS 102 221 §11.1.9 - §11.1.13) --------------------------

def pad_pin(secret: Secret) -> bytes:
    """The 8-byte PIN block: ASCII digits, padded with FF (§9.5.1)."""
    if not isinstance(secret, Secret):
        raise TypeError("pad_pin takes a Pin or Puk, not plain text")
    digits = secret.reveal().encode("ascii")
    if len(digits) > _PIN_BLOCK:
        raise ValueError(f"{secret.kind} longer than {_PIN_BLOCK} digits")
    return digits.ljust(_PIN_BLOCK, b"\xff")


def verify_pin(pin: Pin | None, reference: int = PIN1) -> Apdu:
    """VERIFY PIN; with no PIN it only asks for the attempts left (63Cx)
    without spending one (§11.1.9)."""
    if pin is None:
        return Apdu(CLA, INS_VERIFY, 0x00, reference)
    return Apdu(CLA, INS_VERIFY, 0x00, reference, pad_pin(pin), sensitive=True)


def change_pin(old: Pin, new: Pin, reference: int = PIN1) -> Apdu:
    """CHANGE PIN: old and new PIN blocks (§11.1.10); PIN must be enabled."""
    return Apdu(CLA, INS_CHANGE, 0x00, reference, pad_pin(old) + pad_pin(new), sensitive=True)


def disable_pin(pin: Pin, reference: int = PIN1) -> Apdu:
    """DISABLE PIN with P1 = 00: no replacement key (§11.1.11)."""
    return Apdu(CLA, INS_DISABLE, 0x00, reference, pad_pin(pin), sensitive=True)


def enable_pin(pin: Pin, reference: int = PIN1) -> Apdu:
    """ENABLE PIN (§11.1.12)."""
    return Apdu(CLA, INS_ENABLE, 0x00, reference, pad_pin(pin), sensitive=True)


def unblock_pin(puk: Puk, new: Pin, reference: int = PIN1) -> Apdu:
    """UNBLOCK PIN: PUK block, then the new PIN block (§11.1.13).  P2 names
    the PIN being unblocked."""
    return Apdu(CLA, INS_UNBLOCK, 0x00, reference, pad_pin(puk) + pad_pin(new), sensitive=True)


def unblock_query(reference: int = PIN1) -> Apdu:
    """UNBLOCK PIN with no data: asks for the PUK attempts left (63Cx)."""
    return Apdu(CLA, INS_UNBLOCK, 0x00, reference)


# --- file access (TS 102 221 §11.1.1, §11.1.3) -----------------------------

def select_file(fid: int, *, return_fcp: bool = True) -> Apdu:
    """SELECT by file identifier (P1 = 00).  P2 = 04 returns the FCP
    template (Le 00: all of it), 0C returns nothing."""
    if not 0 <= fid <= 0xFFFF:
        raise ValueError(f"file identifier must be 2 bytes, got {fid:#x}")
    p2, le = (0x04, 0) if return_fcp else (0x0C, None)
    return Apdu(CLA, INS_SELECT, 0x00, p2, fid.to_bytes(2, "big"), le)


def read_binary(offset: int, length: int) -> Apdu:
    """READ BINARY of the selected EF: a 15-bit offset in P1-P2 (b8 of P1
    clear: no short file identifier), up to 256 bytes."""
    if not 0 <= offset <= 0x7FFF:
        raise ValueError(f"READ BINARY offset must be 0 to 32767, got {offset}")
    if not 1 <= length <= 256:
        raise ValueError(f"READ BINARY length must be 1 to 256, got {length}")
    return Apdu(CLA, INS_READ_BINARY, offset >> 8, offset & 0xFF, le=length)


def get_response(length: int) -> Apdu:
    """GET RESPONSE after 61xx on T=0 (§11.1.16, §7.3.1.1.4)."""
    if not 1 <= length <= 256:
        raise ValueError(f"GET RESPONSE length must be 1 to 256, got {length}")
    return Apdu(CLA, INS_GET_RESPONSE, 0x00, 0x00, le=length)


# --- status words (TS 102 221 §10.2.1) -------------------------------------

def remaining_attempts(resp: ApduResponse) -> int | None:
    """Attempts left after VERIFY / UNBLOCK (with or without data).

    63Cx: x left (a wrong PIN, or the bare query); 6983: blocked, 0 left;
    9000: verified now or already, the card does not say (None).  Any other
    status word is not an answer to the question.
    """
    if resp.sw1 == 0x63 and resp.sw2 & 0xF0 == 0xC0:
        return resp.sw2 & 0x0F
    if resp.sw == 0x6983:
        return 0
    if resp.sw == 0x9000:
        return None
    raise ModemProtocolError(f"no attempts count in status {describe_status(resp.sw)}")


_STATUS = {
    0x9000: "normal ending",
    0x6200: "warning, memory unchanged",
    0x6281: "part of the returned data may be corrupted",
    0x6282: "end of file reached before reading Le bytes",
    0x6283: "selected file invalidated",
    0x6285: "selected file in termination state",
    0x6400: "execution error, memory unchanged",
    0x6500: "execution error, memory changed",
    0x6581: "memory problem",
    0x6700: "wrong length",
    0x6881: "logical channel not supported",
    0x6882: "secure messaging not supported",
    0x6981: "command incompatible with file structure",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "referenced data invalidated",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed, no EF selected",
    0x6A80: "incorrect parameters in the data field",
    0x6A81: "function not supported",
    0x6A82: "file not found",
    0x6A83: "record not found",
    0x6A84: "not enough memory space",
    0x6A86: "incorrect parameters P1-P2",
    0x6A87: "Lc inconsistent with P1-P2",
    0x6A88: "referenced data not found",
    0x6B00: "wrong parameters P1-P2",
    0x6D00: "instruction not supported",
    0x6E00: "class not supported",
    0x6F00: "technical problem, no precise diagnosis",
    0x9300: "toolkit busy",
}

# Status words whose SW2 is a count (keyed by SW1).
_STATUS_WITH_COUNT = {
    0x61: "{} response bytes available (GET RESPONSE)",
    0x6C: "wrong Le, {} bytes available",
    0x91: "normal ending, proactive command of {} bytes pending",
    0x9F: "{} response bytes available (GSM)",
}


def describe_status(sw: int) -> str:
    """The status word in hex with its meaning, e.g. '6983 authentication
    method blocked'."""
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw in _STATUS:
        text = _STATUS[sw]
    elif sw1 in _STATUS_WITH_COUNT:
        text = _STATUS_WITH_COUNT[sw1].format(sw2 or 256)
    elif sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        text = f"verification failed, {sw2 & 0x0F} attempts left"
    else:
        text = "unknown status"
    return f"{sw:04X} {text}"
