"""The simulated UICC: PIN1/PUK1 with real attempt counting, EF.ICCID and
EF.IMSI, and an APDU interpreter for what a modem passes through AT+CSIM.

Rules (ETSI TS 102 221 §9.5 and §11.1.9-§11.1.13):
- a wrong PIN costs one attempt; a right one restores all three;
- no PIN attempts left: the PIN is blocked and only UNBLOCK (PUK) helps;
- a wrong PUK costs one of ten attempts; none left: the card is dead;
- a successful UNBLOCK sets the new PIN, restores both counters and
  enables the PIN;
- verification lasts until the card is powered down.

The counters, PIN, PUK and enabled flag are the card's persistent memory and
go to a JSON state file; "verified" and the selected file do not.
This module does no I/O except `save`/`load` of that state file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..identity import Iccid, Imsi
from ..secret import Secret
from ..simlock import SimLock

PIN_TRIES = 3
PUK_TRIES = 10
STATE_FORMAT = 1

# Status words (TS 102 221 §10.2).
SW_OK = 0x9000
SW_END_OF_FILE = 0x6282
SW_WRONG_LENGTH = 0x6700
SW_INCOMPATIBLE_FILE = 0x6981
SW_SECURITY_NOT_SATISFIED = 0x6982
SW_BLOCKED = 0x6983
SW_INVALIDATED = 0x6984
SW_CONDITIONS_NOT_SATISFIED = 0x6985
SW_NO_EF_SELECTED = 0x6986
SW_WRONG_DATA = 0x6A80
SW_FILE_NOT_FOUND = 0x6A82
SW_WRONG_P1P2 = 0x6A86
SW_REFERENCE_NOT_FOUND = 0x6A88
SW_WRONG_OFFSET = 0x6B00
SW_INS_UNKNOWN = 0x6D00
SW_CLA_UNKNOWN = 0x6E00

INS_VERIFY = 0x20
INS_CHANGE = 0x24
INS_DISABLE = 0x26
INS_ENABLE = 0x28
INS_UNBLOCK = 0x2C
INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_GET_RESPONSE = 0xC0
# Instructions whose command data is a PIN or PUK.
SECRET_INS = frozenset({INS_VERIFY, INS_CHANGE, INS_DISABLE, INS_ENABLE, INS_UNBLOCK})

KEY_PIN1 = 0x01  # P2 of the PIN commands for PIN1 (TS 102 221 §9.5.1)

MF = 0x3F00
ADF_USIM = 0x7FFF
DF_GSM = 0x7F20
EF_ICCID = 0x2FE2
EF_IMSI = 0x6F07
# USIM files of the pairing record (TS 31.102 §4.2.8, §4.2.101, §4.2.102).
EF_UST = 0x6F38
EF_IPS = 0x6FF1
EF_IPD = 0x6FF2
INS_READ_RECORD = 0xB2
SW_RECORD_NOT_FOUND = 0x6A83
# Services of EF-UST on a plain card: no USAT Application Pairing (n°102).
DEFAULT_UST_SERVICES = frozenset({1, 2, 10, 12, 27, 33})
USAT_PAIRING = 102
_DEDICATED = (MF, ADF_USIM, DF_GSM)
_SFI = {0x02: EF_ICCID, 0x07: EF_IMSI}


def sw_wrong(left: int) -> int:
    return 0x63C0 | left


def sw_bytes(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


class CardFileError(ValueError):
    """The card state file is missing, unreadable or not a card."""


def _text(value: str | Secret) -> str:
    return value.reveal() if isinstance(value, Secret) else value


def _valid_pin(text: str) -> bool:
    return text.isascii() and text.isdigit() and 4 <= len(text) <= 8


def _valid_puk(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) == 8


def pin_block(text: str) -> bytes:
    """A PIN or PUK as the 8-byte block the card compares: ASCII, FF-padded."""
    return text.encode("ascii").ljust(8, b"\xff")


def _pin_from_block(block: bytes) -> str | None:
    stripped = block.rstrip(b"\xff")
    try:
        text = stripped.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if text.isdigit() else None


def _pin_max(data: dict) -> int:
    value = data.get("pin_max", PIN_TRIES)
    if type(value) is not int:
        raise CardFileError("card state field pin_max has the wrong type")
    return value


class SimCard:
    """One UICC with PIN1 and PUK1.  PIN-handling methods return the status
    word the card would send, as an int."""

    def __init__(
        self,
        iccid: Iccid | str,
        imsi: Imsi | str,
        pin: str | Secret,
        puk: str | Secret,
        *,
        pin_enabled: bool = True,
        pin_attempts: int | None = None,
        puk_attempts: int = PUK_TRIES,
        pin_max: int = PIN_TRIES,
    ):
        self.iccid = iccid if isinstance(iccid, Iccid) else Iccid(iccid)
        self.imsi = imsi if isinstance(imsi, Imsi) else Imsi(imsi)
        pin, puk = _text(pin), _text(puk)
        if not _valid_pin(pin):
            raise ValueError("card PIN must be 4 to 8 digits")
        if not _valid_puk(puk):
            raise ValueError("card PUK must be 8 digits")
        # The counter's initial value: 3 on most cards, 5 or 10 on others.
        if not 1 <= pin_max <= 15:
            raise ValueError("the PIN counter's maximum must be 1 to 15")
        pin_attempts = pin_max if pin_attempts is None else pin_attempts
        if not 0 <= pin_attempts <= pin_max:
            raise ValueError(f"PIN attempts must be 0 to {pin_max}")
        if not 0 <= puk_attempts <= PUK_TRIES:
            raise ValueError(f"PUK attempts must be 0 to {PUK_TRIES}")
        self.pin = pin
        self.puk = puk
        self.pin_enabled = bool(pin_enabled)
        self.pin_attempts = pin_attempts
        self.pin_max = pin_max
        self.puk_attempts = puk_attempts
        self.verified = False
        self.selected = MF
        self._response = b""  # pending data for GET RESPONSE (T=0)
        # The pairing record (none by default: a card without the service).
        # Tests set them with `pairing_record()`; not kept in the state file.
        self.ust_services: frozenset[int] = DEFAULT_UST_SERVICES
        self.ips_records: list[bytes] | None = None  # None: no EF-IPS; newest first
        self.ips_size = 10  # records in EF-IPS
        self.ipd_records: list[bytes] | None = None  # None: no EF-IPD
        self.ipd_record_length = 10
        # Files whose reads the card refuses (6982), like EF-IPD's ADM
        # condition; EF-UST is refused too while the PIN is not verified.
        self.unreadable: set[int] = {EF_IPD}
        # Called after every change of persistent state (to save the file).
        self.on_change: Callable[[SimCard], None] | None = None

    def __repr__(self) -> str:
        return (
            f"SimCard(iccid={self.iccid.value}, lock={self.lock.value}, "
            f"pin_attempts={self.pin_attempts}, puk_attempts={self.puk_attempts})"
        )

    # --- state -------------------------------------------------------------

    @property
    def blocked(self) -> bool:
        return self.pin_attempts == 0

    @property
    def dead(self) -> bool:
        return self.puk_attempts == 0

    @property
    def lock(self) -> SimLock:
        """What AT+CPIN? would report for this card."""
        if self.dead:
            return SimLock.FAILURE
        if self.blocked:
            return SimLock.SIM_PUK
        if not self.pin_enabled or self.verified:
            return SimLock.READY
        return SimLock.SIM_PIN

    def power_cycle(self) -> None:
        """Power down and up: verification and selection are lost."""
        self.verified = False
        self.selected = MF
        self._response = b""

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)

    # --- PIN operations (TS 102 221 §11.1.9-§11.1.13) ---------------------

    def _check_pin(self, given: str) -> int:
        """Compare `given` with PIN1 and count the attempt."""
        if self.dead or self.blocked:
            return SW_BLOCKED
        if given == self.pin:
            changed = self.pin_attempts != self.pin_max
            self.pin_attempts = self.pin_max
            self.verified = True
            if changed:
                self._changed()
            return SW_OK
        self.pin_attempts -= 1
        if self.blocked:
            self.verified = False
        self._changed()
        return sw_wrong(self.pin_attempts)

    def verify(self, pin: str | Secret | None = None) -> int:
        """VERIFY PIN1; without a PIN, ask how many attempts are left."""
        if pin is None:
            if self.dead or self.blocked:
                return SW_BLOCKED
            return SW_OK if self.verified else sw_wrong(self.pin_attempts)
        text = _text(pin)
        if not _valid_pin(text):
            return SW_WRONG_DATA
        return self._check_pin(text)

    def change(self, old: str | Secret, new: str | Secret) -> int:
        old, new = _text(old), _text(new)
        if not (_valid_pin(old) and _valid_pin(new)):
            return SW_WRONG_DATA
        if self.dead or self.blocked:
            return SW_BLOCKED
        if not self.pin_enabled:
            return SW_CONDITIONS_NOT_SATISFIED
        sw = self._check_pin(old)
        if sw == SW_OK:
            self.pin = new
            self._changed()
        return sw

    def disable(self, pin: str | Secret) -> int:
        return self._set_enabled(False, pin)

    def enable(self, pin: str | Secret) -> int:
        return self._set_enabled(True, pin)

    def _set_enabled(self, enabled: bool, pin: str | Secret) -> int:
        text = _text(pin)
        if not _valid_pin(text):
            return SW_WRONG_DATA
        if self.dead or self.blocked:
            return SW_BLOCKED
        if self.pin_enabled == enabled:
            return SW_CONDITIONS_NOT_SATISFIED
        sw = self._check_pin(text)
        if sw == SW_OK:
            self.pin_enabled = enabled
            self._changed()
        return sw

    def unblock(self, puk: str | Secret | None = None, new: str | Secret | None = None) -> int:
        """UNBLOCK PIN1 with the PUK; without data, ask PUK attempts left."""
        if puk is None:
            return SW_BLOCKED if self.dead else sw_wrong(self.puk_attempts)
        if new is None:
            return SW_WRONG_LENGTH
        puk, new = _text(puk), _text(new)
        if not (puk.isascii() and puk.isdigit() and _valid_pin(new)):
            return SW_WRONG_DATA
        if self.dead:
            return SW_BLOCKED
        if puk != self.puk:
            self.puk_attempts -= 1
            self._changed()
            return sw_wrong(self.puk_attempts)
        self.pin = new
        self.pin_attempts = self.pin_max
        self.puk_attempts = PUK_TRIES
        self.pin_enabled = True
        self.verified = True
        self._changed()
        return SW_OK

    def set_pin_over_the_air(self, new: str | Secret) -> None:
        """The operator's remote file management writes a new PIN1 (an OTA
        CHANGE PIN): no old PIN is asked for and no counter moves.  The
        modem learns of it at the next REFRESH or power-up."""
        new = _text(new)
        if not _valid_pin(new):
            raise ValueError("card PIN must be 4 to 8 digits")
        self.pin = new
        self._changed()

    # --- files -------------------------------------------------------------

    def pairing_record(self, *, service: bool = True, ips: list[bytes] | None = None,
                       ipd: list[bytes] | None = None, unreadable: set[int] | None = None) -> None:
        """Give the card USAT Application Pairing: service n°102 in EF-UST
        (`service`), EF-IPS with `ips` (newest first; None: no file), EF-IPD
        with `ipd` (None: no file), and the files whose reads it refuses
        (default: EF-IPD, READ ADM)."""
        services = set(self.ust_services)
        (services.add if service else services.discard)(USAT_PAIRING)
        self.ust_services = frozenset(services)
        self.ips_records = None if ips is None else [bytes(r) for r in ips]
        self.ipd_records = None if ipd is None else [bytes(r) for r in ipd]
        self.unreadable = {EF_IPD} if unreadable is None else set(unreadable)

    def _file(self, fid: int) -> bytes | None:
        if fid == EF_ICCID:
            return self.iccid.to_ef()
        if fid == EF_IMSI:
            return self.imsi.to_ef()
        if fid == EF_UST:
            table = bytearray(16)
            for n in self.ust_services:
                table[(n - 1) // 8] |= 1 << ((n - 1) % 8)
            return bytes(table)
        return None

    def _records(self, fid: int) -> tuple[list[bytes], int, bool] | None:
        """(records, record length, cyclic) of a record EF, None if absent."""
        if fid == EF_IPS and self.ips_records is not None:
            padded = self.ips_records[: self.ips_size]
            padded += [b"\xff" * 4] * (self.ips_size - len(padded))
            return padded, 4, True
        if fid == EF_IPD and self.ipd_records is not None:
            size = max(len(self.ipd_records), 1)
            padded = [r.ljust(self.ipd_record_length, b"\xff") for r in self.ipd_records]
            padded += [b"\xff" * self.ipd_record_length] * (size - len(padded))
            return padded, self.ipd_record_length, False
        return None

    def _read_refused(self, fid: int) -> bool:
        if fid in self.unreadable:
            return True
        # EF-IMSI and EF-UST are READ PIN (TS 31.102 §4.2.2, §4.2.8).
        return fid in (EF_IMSI, EF_UST) and self.lock is not SimLock.READY

    def read_record(self, fid: int, number: int, mode: int, length: int) -> tuple[bytes, int]:
        """READ RECORD in absolute mode (P2 = 04): (data, status word).
        `length` 0 means the whole record."""
        found = self._records(fid)
        if found is None:
            return b"", SW_INCOMPATIBLE_FILE if (fid in _DEDICATED or self._file(fid) is not None) else SW_FILE_NOT_FOUND
        if mode != 0x04:
            return b"", SW_WRONG_P1P2
        records, record_length, _ = found
        if self._read_refused(fid):
            return b"", SW_SECURITY_NOT_SATISFIED
        if not 1 <= number <= len(records):
            return b"", SW_RECORD_NOT_FOUND
        if length not in (0, record_length):
            return b"", SW_WRONG_LENGTH
        return records[number - 1], SW_OK

    def fcp(self, fid: int) -> bytes | None:
        """File control parameters (TS 102 221 §11.1.1.3), enough to tell a
        DF from an EF, its size, and for DFs the PIN status template (C6)."""
        if fid in _DEDICATED:
            ps_do = 0x80 if self.pin_enabled else 0x00  # bit 8: key ref 01 enabled
            body = bytes([0x82, 0x02, 0x78, 0x21, 0x83, 0x02]) + fid.to_bytes(2, "big")
            body += bytes([0xC6, 0x06, 0x90, 0x01, ps_do, 0x83, 0x01, KEY_PIN1])
            return bytes([0x62, len(body)]) + body
        found = self._records(fid)
        if found is not None:
            records, record_length, cyclic = found
            descriptor = bytes([0x46 if cyclic else 0x42, 0x21]) + record_length.to_bytes(2, "big") + bytes([len(records)])
            body = bytes([0x82, len(descriptor)]) + descriptor + bytes([0x83, 0x02]) + fid.to_bytes(2, "big")
            body += bytes([0x80, 0x02]) + (record_length * len(records)).to_bytes(2, "big")
            return bytes([0x62, len(body)]) + body
        content = self._file(fid)
        if content is None:
            return None
        body = bytes([0x82, 0x02, 0x41, 0x21, 0x83, 0x02]) + fid.to_bytes(2, "big")
        body += bytes([0x80, 0x02]) + len(content).to_bytes(2, "big")
        return bytes([0x62, len(body)]) + body

    def read_binary(self, fid: int, offset: int, length: int) -> tuple[bytes, int]:
        """READ BINARY of one EF: (data, status word).  `length` 0 means
        "whatever is there" for AT+CRSM callers; the APDU path handles Le=00."""
        content = self._file(fid)
        if content is None:
            if self._records(fid) is not None:
                return b"", SW_INCOMPATIBLE_FILE
            return b"", SW_FILE_NOT_FOUND if fid not in _DEDICATED else SW_INCOMPATIBLE_FILE
        # EF.IMSI is protected by PIN1 (TS 31.102 §4.2.2 access condition).
        if self._read_refused(fid):
            return b"", SW_SECURITY_NOT_SATISFIED
        if offset >= len(content):
            return b"", SW_WRONG_OFFSET
        rest = content[offset:]
        if length == 0 or length == len(rest):
            return rest, SW_OK
        if length < len(rest):
            return rest[:length], SW_OK
        return rest, SW_END_OF_FILE

    # --- APDU interpreter ---------------------------------------------------

    def apdu(self, raw: bytes) -> bytes:
        """Answer one command APDU with response data + SW1 SW2."""
        if len(raw) < 4:
            return sw_bytes(SW_WRONG_LENGTH)
        cla, ins, p1, p2 = raw[:4]
        if cla != 0x00:
            return sw_bytes(SW_CLA_UNKNOWN)
        if len(raw) == 4:
            data, le = b"", None
        elif len(raw) == 5:
            data, le = b"", raw[4]
        else:
            lc = raw[4]
            data = raw[5 : 5 + lc]
            if lc == 0 or len(raw) not in (5 + lc, 6 + lc):
                return sw_bytes(SW_WRONG_LENGTH)
            le = raw[5 + lc] if len(raw) == 6 + lc else None
        handler = {
            INS_VERIFY: self._apdu_verify,
            INS_CHANGE: self._apdu_change,
            INS_DISABLE: self._apdu_disable,
            INS_ENABLE: self._apdu_enable,
            INS_UNBLOCK: self._apdu_unblock,
            INS_SELECT: self._apdu_select,
            INS_READ_BINARY: self._apdu_read_binary,
            INS_READ_RECORD: self._apdu_read_record,
            INS_GET_RESPONSE: self._apdu_get_response,
        }.get(ins)
        if handler is None:
            return sw_bytes(SW_INS_UNKNOWN)
        if ins in SECRET_INS:
            if p1 != 0x00:
                return sw_bytes(SW_WRONG_P1P2)
            if p2 != KEY_PIN1:
                return sw_bytes(SW_REFERENCE_NOT_FOUND)
        return handler(p1, p2, data, le)

    def _pin_data(self, data: bytes, blocks: int) -> list[str] | int:
        if len(data) != 8 * blocks:
            return SW_WRONG_LENGTH
        out = []
        for i in range(blocks):
            text = _pin_from_block(data[8 * i : 8 * i + 8])
            if text is None:
                return SW_WRONG_DATA
            out.append(text)
        return out

    def _apdu_verify(self, p1, p2, data, le) -> bytes:
        if not data:
            return sw_bytes(self.verify(None))
        pins = self._pin_data(data, 1)
        return sw_bytes(pins if isinstance(pins, int) else self.verify(pins[0]))

    def _apdu_change(self, p1, p2, data, le) -> bytes:
        pins = self._pin_data(data, 2)
        return sw_bytes(pins if isinstance(pins, int) else self.change(*pins))

    def _apdu_disable(self, p1, p2, data, le) -> bytes:
        pins = self._pin_data(data, 1)
        return sw_bytes(pins if isinstance(pins, int) else self.disable(pins[0]))

    def _apdu_enable(self, p1, p2, data, le) -> bytes:
        pins = self._pin_data(data, 1)
        return sw_bytes(pins if isinstance(pins, int) else self.enable(pins[0]))

    def _apdu_unblock(self, p1, p2, data, le) -> bytes:
        if not data:
            return sw_bytes(self.unblock(None))
        keys = self._pin_data(data, 2)
        return sw_bytes(keys if isinstance(keys, int) else self.unblock(*keys))

    def _apdu_select(self, p1, p2, data, le) -> bytes:
        if p1 == 0x04:  # by AID: the only application is the USIM
            if not data:
                return sw_bytes(SW_WRONG_LENGTH)
            fid = ADF_USIM
        elif p1 in (0x00, 0x08, 0x09):  # by FID, or path: the last FID counts
            if len(data) < 2 or len(data) % 2:
                return sw_bytes(SW_WRONG_LENGTH)
            fid = int.from_bytes(data[-2:], "big")
        else:
            return sw_bytes(SW_WRONG_P1P2)
        fcp = self.fcp(fid)
        if fcp is None:
            return sw_bytes(SW_FILE_NOT_FOUND)
        self.selected = fid
        if p2 & 0x0C == 0x0C:  # no data requested
            self._response = b""
            return sw_bytes(SW_OK)
        # T=0: announce the FCP; the terminal fetches it with GET RESPONSE.
        self._response = fcp
        return sw_bytes(0x6100 | len(fcp))

    def _apdu_get_response(self, p1, p2, data, le) -> bytes:
        if not self._response:
            return sw_bytes(SW_CONDITIONS_NOT_SATISFIED)
        if le is None or le == 0 or le > len(self._response):
            return sw_bytes(0x6C00 | len(self._response))
        out, self._response = self._response[:le], self._response[le:]
        return out + sw_bytes(SW_OK)

    def _apdu_read_record(self, p1, p2, data, le) -> bytes:
        if data:
            return sw_bytes(SW_WRONG_LENGTH)
        if self.selected in _DEDICATED:
            return sw_bytes(SW_NO_EF_SELECTED)
        out, sw = self.read_record(self.selected, p1, p2, le or 0)
        return out + sw_bytes(sw)

    def _apdu_read_binary(self, p1, p2, data, le) -> bytes:
        if data:
            return sw_bytes(SW_WRONG_LENGTH)
        if p1 & 0x80:  # short file identifier in P1, offset in P2
            fid = _SFI.get(p1 & 0x1F)
            if fid is None:
                return sw_bytes(SW_FILE_NOT_FOUND)
            offset = p2
        else:
            fid = self.selected
            offset = (p1 << 8) | p2
        if fid in _DEDICATED:
            return sw_bytes(SW_NO_EF_SELECTED)
        content = self._file(fid)
        if le is None or le == 0:
            # T=0 "wrong Le": tell the exact length to ask for.
            if content is not None and offset < len(content):
                if self._read_refused(fid):
                    return sw_bytes(SW_SECURITY_NOT_SATISFIED)
                return sw_bytes(0x6C00 | (len(content) - offset))
        out, sw = self.read_binary(fid, offset, le or 0)
        if p1 & 0x80 and sw in (SW_OK, SW_END_OF_FILE):
            self.selected = fid
        return out + sw_bytes(sw)

    # --- persistence ----------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": STATE_FORMAT,
            "iccid": self.iccid.value,
            "imsi": self.imsi.value,
            "pin": self.pin,
            "puk": self.puk,
            "pin_enabled": self.pin_enabled,
            "pin_attempts": self.pin_attempts,
            "puk_attempts": self.puk_attempts,
            # Only for a card whose counter starts elsewhere than 3.
            **({"pin_max": self.pin_max} if self.pin_max != PIN_TRIES else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SimCard":
        if not isinstance(data, dict):
            raise CardFileError("card state must be a JSON object")
        if data.get("format") != STATE_FORMAT:
            raise CardFileError(f"card state format must be {STATE_FORMAT}")
        try:
            for key, kind in (
                ("iccid", str), ("imsi", str), ("pin", str), ("puk", str),
                ("pin_enabled", bool), ("pin_attempts", int), ("puk_attempts", int),
            ):
                value = data[key]
                if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                    raise CardFileError(f"card state field {key} has the wrong type")
            return cls(
                data["iccid"],
                data["imsi"],
                data["pin"],
                data["puk"],
                pin_enabled=data["pin_enabled"],
                pin_attempts=data["pin_attempts"],
                puk_attempts=data["puk_attempts"],
                pin_max=_pin_max(data),
            )
        except KeyError as e:
            raise CardFileError(f"card state lacks field {e.args[0]}") from None
        except CardFileError:
            raise
        except ValueError as e:  # messages never contain the values themselves
            raise CardFileError(f"card state is invalid: {e}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write the state file atomically (temp file, fsync, rename), mode 0600."""
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=1) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SimCard":
        try:
            text = Path(path).read_text(encoding="ascii")
        except FileNotFoundError:
            raise CardFileError(f"card state file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else "not ASCII"
            raise CardFileError(f"cannot read card state file {path}: {reason}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise CardFileError(f"card state file {path} is not JSON (line {e.lineno})") from None
        return cls.from_dict(data)
