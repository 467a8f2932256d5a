"""The card's own pairing record: what a USIM that supports USAT Application
Pairing keeps about the devices it was paired with.  Pure: no I/O.

3GPP TS 31.102 (the USIM):
- EF-UST '6F38' (USIM Service Table, §4.2.8), one bit per service; service
  n°102 is "USAT Application Pairing".  Read access: PIN.
- EF-IPS '6FF1' (IMEI(SV) Pairing Status, §4.2.101): cyclic, 4-byte
  records, READ ALWAYS.  Bytes 1-2: "OK" or "KO" (SMS default alphabet,
  bit 8 clear), the card's verdict of one pairing; byte 3: the record of
  EF-IPD holding the device's IMEI(SV) ('01' to 'FE'); byte 4: RFU.  Record
  1 is the newest (cyclic file, absolute mode).
- EF-IPD '6FF2' (IMEI(SV) of Pairing Device, §4.2.102): linear fixed, each
  record one TLV, tag '80' an IMEI or '81' an IMEISV, digits in BCD (low
  nibble first, 'F' filler), unused bytes 'FF'.  Read access: ADM, so most
  cards answer "security status not satisfied" to everyone but the operator.

Whatever cannot be read is reported as such with the card's or the modem's
answer (`Reading`), never filled in.  The order of reads lives in
`read_pairing_record`, which takes the file access as a `CardFiles` (AT+CRSM
in mtcd.pairing_record_at; APDUs over PC/SC or AT+CSIM in mtcd.card.record),
so this module stays free of transports.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from .apdu import describe_status
from .errors import MtcdError
from .identity import Imei, Imeisv, swapped_bcd_digits

EF_UST = 0x6F38
EF_IPS = 0x6FF1
EF_IPD = 0x6FF2
SERVICE_USAT_PAIRING = 102  # TS 31.102 §4.2.8
IPS_RECORD_LENGTH = 4
MAX_RECORDS = 254  # records of a cyclic or linear fixed EF are numbered 1..254

SW_OK = 0x9000
SW_FILE_NOT_FOUND = 0x6A82
SW_RECORD_NOT_FOUND = 0x6A83
SW_SECURITY = 0x6982

# The bytes of EF-UST needed to reach service n°102.
UST_BYTES_FOR_PAIRING = (SERVICE_USAT_PAIRING + 7) // 8

_FILE_NAMES = {EF_UST: "EF-UST", EF_IPS: "EF-IPS", EF_IPD: "EF-IPD"}


class FileAccessError(Exception):
    """The transport could not ask the card (an AT error, no such command).
    `fatal`: the transport itself is gone; ask nothing more."""

    def __init__(self, why: str, fatal: bool = False):
        super().__init__(why)
        self.why = why
        self.fatal = fatal


class CardFiles(Protocol):
    """Read access to the EFs of ADF.USIM.  Each call returns (status word,
    data) as the card answered, or raises FileAccessError."""

    def header(self, fid: int) -> tuple[int, bytes]:
        """The file's FCP (or a 2G GET RESPONSE header)."""

    def read_binary(self, fid: int, offset: int, length: int) -> tuple[int, bytes]:
        ...

    def read_record(self, fid: int, number: int, length: int) -> tuple[int, bytes]:
        """Record `number` in absolute mode (P2 = 04)."""


class State(str, enum.Enum):
    """What became of one thing asked of the card."""

    PRESENT = "present"  # read
    ABSENT = "absent"  # the card says the file does not exist
    UNREADABLE = "unreadable"  # asked, and no answer to use (why says what came back)
    NOT_READ = "not-read"  # not asked (why says why not)


class Service(str, enum.Enum):
    AVAILABLE = "available"
    NOT_AVAILABLE = "not-available"
    UNREADABLE = "unreadable"


class Verdict(str, enum.Enum):
    OK = "ok"  # "OK": the pairing succeeded
    KO = "ko"  # "KO": it did not
    EMPTY = "empty"  # never written ('FF' bytes)
    UNKNOWN = "unknown"  # anything else: shown as raw bytes


# -- decoders ------------------------------------------------------------------


def service_in_table(ust: bytes, number: int) -> bool | None:
    """Whether EF-UST lists service `number` (byte (n-1)//8, bit (n-1)%8);
    None when the table is too short to say."""
    if number < 1:
        raise ValueError("service numbers start at 1")
    index, bit = divmod(number - 1, 8)
    if index >= len(ust):
        return None
    return bool(ust[index] >> bit & 1)


@dataclass(frozen=True)
class FileHeader:
    structure: str  # "transparent", "linear-fixed", "cyclic", "other"
    size: int | None = None  # transparent: bytes
    record_length: int | None = None
    records: int | None = None


def parse_file_header(data: bytes) -> FileHeader | None:
    """The structure of an EF from its FCP template ('62', TS 102 221
    §11.1.1.3: file descriptor '82', file size '80') or from a 2G GET
    RESPONSE (TS 51.011 §9.2.1), as modems return either to AT+CRSM=192.
    None when it is neither."""
    if len(data) >= 2 and data[0] == 0x62:
        return _parse_fcp(data)
    if len(data) >= 15 and data[6] == 0x04:  # 2G: type of file 04 = EF
        size = int.from_bytes(data[2:4], "big")
        structure = {0x00: "transparent", 0x01: "linear-fixed", 0x03: "cyclic"}.get(data[13], "other")
        if structure == "transparent":
            return FileHeader(structure, size=size)
        length = data[14]
        return FileHeader(structure, size=size, record_length=length or None,
                          records=size // length if length else None)
    return None


def _parse_fcp(data: bytes) -> FileHeader | None:
    body = data[2 : 2 + data[1]]
    tags: dict[int, bytes] = {}
    i = 0
    while i + 2 <= len(body):
        tag, length = body[i], body[i + 1]
        tags.setdefault(tag, body[i + 2 : i + 2 + length])
        i += 2 + length
    descriptor = tags.get(0x82)
    if not descriptor:
        return None
    kind = descriptor[0] & 0x07  # shareable bit 7 ignored; b8 set = DF
    if descriptor[0] & 0x38 == 0x38:
        return FileHeader("other")
    size = int.from_bytes(tags[0x80], "big") if tags.get(0x80) else None
    if kind == 0x01:
        return FileHeader("transparent", size=size)
    structure = {0x02: "linear-fixed", 0x06: "cyclic"}.get(kind, "other")
    record_length = int.from_bytes(descriptor[2:4], "big") if len(descriptor) >= 4 else None
    records = descriptor[4] if len(descriptor) >= 5 else None
    if records is None and size and record_length:
        records = size // record_length
    return FileHeader(structure, size=size, record_length=record_length, records=records)


@dataclass(frozen=True)
class PairingStatusRecord:
    """One record of EF-IPS."""

    number: int  # 1 = the newest
    verdict: Verdict
    ipd_record: int | None  # the EF-IPD record it links to, when it names one
    raw: str  # the record in hex

    def as_json(self) -> dict:
        return {"record": self.number, "status": self.verdict.value, "ipd_record": self.ipd_record, "raw": self.raw}


def decode_ips_record(number: int, data: bytes) -> PairingStatusRecord:
    raw = data.hex().upper()
    if len(data) < 3:
        return PairingStatusRecord(number, Verdict.UNKNOWN, None, raw)
    if all(b == 0xFF for b in data):
        return PairingStatusRecord(number, Verdict.EMPTY, None, raw)
    verdict = {b"OK": Verdict.OK, b"KO": Verdict.KO}.get(bytes(data[:2]), Verdict.UNKNOWN)
    link = data[2] if 0x01 <= data[2] <= 0xFE else None
    return PairingStatusRecord(number, verdict, link, raw)


@dataclass(frozen=True)
class PairingDevice:
    """One record of EF-IPD: the IMEI or IMEISV a pairing was made with."""

    number: int
    kind: str  # "imei", "imeisv", "empty", "undecodable"
    value: str | None
    raw: str

    def as_json(self) -> dict:
        return {"record": self.number, "kind": self.kind, "value": self.value, "raw": self.raw}


def decode_ipd_record(number: int, data: bytes) -> PairingDevice:
    """The TLV of one EF-IPD record.  The digits are BCD, low nibble first;
    a value that is not a valid IMEI (15 digits, Luhn) or IMEISV (16
    digits) is "undecodable" and shown raw, never adjusted."""
    raw = data.hex().upper()
    if not data or all(b == 0xFF for b in data):
        return PairingDevice(number, "empty", None, raw)
    if len(data) < 2 or data[0] not in (0x80, 0x81) or data[1] > len(data) - 2:
        return PairingDevice(number, "undecodable", None, raw)
    kind = "imei" if data[0] == 0x80 else "imeisv"
    value = data[2 : 2 + data[1]]
    try:
        digits = swapped_bcd_digits(value)
        identity = Imei(digits) if kind == "imei" else Imeisv(digits)
    except ValueError:
        return PairingDevice(number, "undecodable", None, raw)
    return PairingDevice(number, kind, identity.value, raw)


# -- the whole record ----------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    state: State
    why: str | None = None  # for anything but PRESENT: what the card or the modem said

    def as_json(self) -> dict:
        return {"state": self.state.value, "why": self.why}


@dataclass(frozen=True)
class CardPairingRecord:
    service: Service
    service_why: str | None
    status_file: Reading  # EF-IPS
    device_file: Reading  # EF-IPD
    records: tuple[PairingStatusRecord, ...] = ()  # written records of EF-IPS, newest first
    empty_records: int = 0
    devices: tuple[PairingDevice, ...] = ()  # the EF-IPD records the verdicts link to
    file_records: int | None = None  # EF-IPS's number of records, when its header says
    limited: bool = False  # more records may follow the ones read (a read limit)

    @property
    def latest(self) -> PairingStatusRecord | None:
        return self.records[0] if self.records else None

    def device(self, number: int | None) -> PairingDevice | None:
        return next((d for d in self.devices if d.number == number), None)

    def as_json(self) -> dict:
        return {
            "service": self.service.value,
            "service_why": self.service_why,
            "ips": {**self.status_file.as_json(), "file_records": self.file_records,
                    "empty_records": self.empty_records, "limited": self.limited},
            "ipd": self.device_file.as_json(),
            "records": [r.as_json() for r in self.records],
            "devices": [d.as_json() for d in self.devices],
            "summary": self.summary(),
        }

    def summary(self) -> str:
        """One line for a person (doctor, the journal's message)."""
        if self.service is Service.NOT_AVAILABLE:
            return "not kept: the card does not offer USAT Application Pairing" + _paren(self.service_why)
        if self.status_file.state is State.ABSENT:
            return "no EF-IPS on the card" + _paren(self.status_file.why)
        if self.status_file.state is not State.PRESENT and not self.records:
            return f"EF-IPS {self.status_file.state.value}" + _paren(self.status_file.why)
        latest = self.latest
        if latest is None:
            return "EF-IPS holds no pairing yet"
        text = f"latest {_verdict_text(latest)}"
        device = self.device(latest.ipd_record)
        if device is not None and device.value:
            text += f" with {device.kind.upper()} {device.value}"
        elif latest.ipd_record is not None and self.device_file.state is not State.PRESENT:
            text += f" (device: EF-IPD {self.device_file.state.value}" + _paren(self.device_file.why, ": ") + ")"
        if not self.limited:
            count = len(self.records)
            ok = sum(r.verdict is Verdict.OK for r in self.records)
            ko = sum(r.verdict is Verdict.KO for r in self.records)
            text += f"; {count} pairing{'s' if count != 1 else ''} recorded ({ok} OK, {ko} KO)"
        if self.status_file.state is not State.PRESENT:
            text += f"; EF-IPS then {self.status_file.state.value}" + _paren(self.status_file.why)
        return text


def _paren(why: str | None, sep: str = " (") -> str:
    if not why:
        return ""
    return f"{sep}{why}" + (")" if sep == " (" else "")


def _verdict_text(record: PairingStatusRecord) -> str:
    if record.verdict is Verdict.UNKNOWN:
        return f"unknown status {record.raw}"
    return record.verdict.name


def status_reason(sw: int) -> str:
    return describe_status(sw)


def _file_state(sw: int) -> State:
    if sw == SW_OK:
        return State.PRESENT
    if sw == SW_FILE_NOT_FOUND:
        return State.ABSENT
    return State.UNREADABLE


class _Stop(Exception):
    """The transport is gone: stop asking, keep what was read."""


def read_pairing_record(files: CardFiles, limit: int = MAX_RECORDS) -> CardPairingRecord:
    """Ask the card, in order: EF-UST (is the service there?), EF-IPS (its
    newest `limit` records), EF-IPD (the records those link to).  Reads
    only: nothing here writes to the card."""
    if not 1 <= limit <= MAX_RECORDS:
        raise ValueError(f"limit must be 1 to {MAX_RECORDS}")
    gone: list[str] = []

    def ask(call, *args):
        if gone:
            raise _Stop()
        try:
            return call(*args)
        except FileAccessError as exc:
            if exc.fatal:
                gone.append(exc.why)
            raise

    service, service_why = _read_service(ask, files)
    if service is Service.NOT_AVAILABLE:
        skipped = Reading(State.NOT_READ, "the card does not offer the service")
        return CardPairingRecord(service, service_why, skipped, skipped)
    # EF-IPS is READ ALWAYS: asked even when the table could not be read.
    ips, records, empty, count = _read_ips(ask, files, limit)
    limited = ips.state is State.PRESENT and len(records) + empty == limit and (count is None or count > limit)
    links = sorted({r.ipd_record for r in records if r.ipd_record is not None})
    if not links:
        ipd = Reading(State.NOT_READ, "no EF-IPS record links to it")
        devices: tuple[PairingDevice, ...] = ()
    elif gone:
        ipd, devices = Reading(State.NOT_READ, gone[0]), ()
    else:
        ipd, devices = _read_ipd(ask, files, links)
    return CardPairingRecord(service, service_why, ips, ipd, tuple(records), empty, devices, count, limited)


def _read_service(ask, files: CardFiles) -> tuple[Service, str | None]:
    try:
        sw, header_data = ask(files.header, EF_UST)
        if sw == SW_OK:
            header = parse_file_header(header_data)
            if header is not None and header.size is not None and header.size < UST_BYTES_FOR_PAIRING:
                return Service.NOT_AVAILABLE, (f"EF-UST is {header.size} bytes: it lists no service "
                                               f"beyond {header.size * 8}")
        elif sw == SW_FILE_NOT_FOUND:
            return Service.UNREADABLE, f"EF-UST: {status_reason(sw)}"
        sw, data = ask(files.read_binary, EF_UST, 0, UST_BYTES_FOR_PAIRING)
    except FileAccessError as exc:
        return Service.UNREADABLE, f"EF-UST: {exc.why}"
    except _Stop:
        return Service.UNREADABLE, "not asked: the transport is gone"
    if sw != SW_OK:
        why = status_reason(sw)
        if sw == SW_SECURITY:
            why += " (EF-UST is readable once the PIN is verified)"
        return Service.UNREADABLE, f"EF-UST: {why}"
    listed = service_in_table(data, SERVICE_USAT_PAIRING)
    if listed is None:
        return Service.UNREADABLE, f"EF-UST: {len(data)} bytes read, too few for service {SERVICE_USAT_PAIRING}"
    if not listed:
        return Service.NOT_AVAILABLE, f"EF-UST: service {SERVICE_USAT_PAIRING} not set"
    return Service.AVAILABLE, None


def _read_ips(ask, files: CardFiles, limit: int):
    records: list[PairingStatusRecord] = []
    empty = 0
    try:
        sw, header_data = ask(files.header, EF_IPS)
    except FileAccessError as exc:
        return Reading(State.UNREADABLE, exc.why), records, empty, None
    except _Stop:
        return Reading(State.NOT_READ, "the transport is gone"), records, empty, None
    state = _file_state(sw)
    if state is not State.PRESENT:
        return Reading(state, status_reason(sw)), records, empty, None
    header = parse_file_header(header_data)
    count = None
    if header is not None:
        if header.structure != "cyclic" or header.record_length != IPS_RECORD_LENGTH:
            shape = f"{header.structure}, records of {header.record_length} bytes"
            return Reading(State.UNREADABLE, f"EF-IPS is {shape}, not cyclic with 4-byte records"), records, empty, None
        count = header.records
    last = min(limit, count) if count else limit
    for number in range(1, last + 1):
        try:
            sw, data = ask(files.read_record, EF_IPS, number, IPS_RECORD_LENGTH)
        except FileAccessError as exc:
            return Reading(State.UNREADABLE, f"record {number}: {exc.why}"), records, empty, count
        except _Stop:
            break
        if sw == SW_RECORD_NOT_FOUND and count is None:
            break  # the end of a file whose header did not say its length
        if sw != SW_OK:
            return Reading(State.UNREADABLE, f"record {number}: {status_reason(sw)}"), records, empty, count
        record = decode_ips_record(number, data)
        if record.verdict is Verdict.EMPTY:
            empty += 1
        else:
            records.append(record)
    return Reading(State.PRESENT), records, empty, count


def _read_ipd(ask, files: CardFiles, links: list[int]):
    devices: list[PairingDevice] = []
    try:
        sw, header_data = ask(files.header, EF_IPD)
        state = _file_state(sw)
        if state is not State.PRESENT:
            return Reading(state, status_reason(sw)), ()
        header = parse_file_header(header_data)
        length = header.record_length if header is not None and header.record_length else 0
        for number in links:
            sw, data = ask(files.read_record, EF_IPD, number, length)
            if sw != SW_OK:
                why = status_reason(sw)
                if sw == SW_SECURITY:
                    why += " (EF-IPD is readable with the operator's ADM key only)"
                return Reading(State.UNREADABLE, f"record {number}: {why}"), tuple(devices)
            devices.append(decode_ipd_record(number, data))
    except FileAccessError as exc:
        return Reading(State.UNREADABLE, exc.why), tuple(devices)
    except _Stop:
        return Reading(State.NOT_READ, "the transport is gone"), tuple(devices)
    return Reading(State.PRESENT), tuple(devices)


# -- which files a reading goes through -------------------------------------------

# The [uicc] backends that reach the card in APDUs through a channel of their own.
APDU_BACKENDS = frozenset({"pcsc", "csim"})


def card_files(backend: str, *, modem=None, uicc=None) -> CardFiles:
    """The CardFiles a reading of the card's record goes through, the way
    [uicc] backend reaches the card: in APDUs through `uicc`'s channel
    (pcsc, csim), else AT+CRSM through `modem`.  The one place that choice
    is made (the service after a decision, `mtcctl sim pairing-status`
    without it); the edges are imported only for the backend in use."""
    if backend in APDU_BACKENDS:
        from .card.record import ApduFiles

        return ApduFiles(uicc)
    from .pairing_record_at import CrsmFiles

    return CrsmFiles(modem)


# -- the journal's card-record line ------------------------------------------------


def not_read(why: str) -> dict:
    """The journal's `card_*` fields of a record that was not read, and why."""
    return {"card_record": f"not read: {why}", "card_service": None, "card_ips": None,
            "card_latest": None, "card_device": None}


def journal_fields(files: CardFiles, limit: int = 1) -> dict:
    """The card's own record as the journal's card-record line carries it
    (flat `card_*` fields): the newest verdict and its device, or why they
    could not be read.  Never raises: a failed read is journaled as such,
    and pairing goes on whatever the card answered."""
    try:
        record = read_pairing_record(files, limit)
    except Exception as exc:  # noqa: BLE001 - a read-only extra must never stop a pairing
        why = str(exc) if isinstance(exc, (MtcdError, FileAccessError)) else f"internal error ({type(exc).__name__})"
        return {"card_record": f"unreadable: {why}", "card_service": None, "card_ips": None,
                "card_latest": None, "card_device": None}
    latest = record.latest
    device = record.device(latest.ipd_record) if latest is not None else None
    return {
        "card_record": record.summary(),
        "card_service": record.service.value,
        "card_ips": record.status_file.state.value,
        "card_latest": latest.verdict.value if latest is not None else None,
        "card_device": device.value if device is not None else None,
    }


# -- for the simulator and tests: the files as a card stores them ----------------------


def encode_ips_record(verdict: Verdict, ipd_record: int | None) -> bytes:
    status = {Verdict.OK: b"OK", Verdict.KO: b"KO"}[verdict]
    return status + bytes([ipd_record if ipd_record is not None else 0xFF, 0xFF])


def encode_ipd_record(identity: Imei | Imeisv, length: int = 10) -> bytes:
    """One EF-IPD record: tag '80' (IMEI) or '81' (IMEISV), BCD digits."""
    digits = identity.value + ("F" if len(identity.value) % 2 else "")
    value = bytes(int(digits[i + 1], 16) << 4 | int(digits[i], 16) for i in range(0, len(digits), 2))
    tag = 0x80 if isinstance(identity, Imei) else 0x81
    record = bytes([tag, len(value)]) + value
    if len(record) > length:
        raise ValueError("EF-IPD record too short for the identity")
    return record.ljust(length, b"\xff")


def encode_ust(services: set[int] | frozenset[int], length: int = 16) -> bytes:
    table = bytearray(length)
    for n in services:
        index, bit = divmod(n - 1, 8)
        if index < length:
            table[index] |= 1 << bit
    return bytes(table)

