"""What the UICC's files and file control parameters say, with no I/O:
the FCP template a SELECT returns (ETSI TS 102 221 §11.1.1.3), the PIN
status template inside it (§9.5.2), and the application list in EF.DIR
(§13.1) that names the USIM's AID (TS 31.102 §4.1)."""

from __future__ import annotations

from ..apdu import CLA, INS_SELECT, Apdu
from ..errors import ModemProtocolError

EF_DIR = 0x2F00
INS_READ_RECORD = 0xB2
# RID of 3GPP and the USIM's application code (TS 31.102 §4.1): every USIM
# AID starts with these 7 bytes; the rest is the operator's.
USIM_AID_PREFIX = bytes.fromhex("A0000000871002")

TAG_FCP = 0x62
TAG_FILE_SIZE = 0x80
TAG_DESCRIPTOR = 0x82
TAG_PIN_STATUS = 0xC6
TAG_PS_DO = 0x90
TAG_KEY_REFERENCE = 0x83
TAG_APPLICATION = 0x61
TAG_AID = 0x4F


def tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """BER-TLV objects of one level, single-byte tags (all UICC file tags
    are), lengths up to 2 bytes.  FF padding after the last object ends the
    list (records of EF.DIR are padded so)."""
    out, i = [], 0
    while i < len(data):
        tag = data[i]
        if tag in (0x00, 0xFF):
            break
        if i + 1 >= len(data):
            raise ModemProtocolError(f"TLV {tag:02X} has no length")
        length, i = data[i + 1], i + 2
        if length == 0x81:
            if i >= len(data):
                raise ModemProtocolError(f"TLV {tag:02X} has a truncated length")
            length, i = data[i], i + 1
        elif length > 0x80:
            raise ModemProtocolError(f"TLV {tag:02X} has an unsupported length {length:02X}")
        if i + length > len(data):
            raise ModemProtocolError(f"TLV {tag:02X} is longer than its data")
        out.append((tag, bytes(data[i:i + length])))
        i += length
    return out


def _first(objects: list[tuple[int, bytes]], tag: int) -> bytes | None:
    return next((value for t, value in objects if t == tag), None)


def fcp_objects(fcp: bytes) -> list[tuple[int, bytes]]:
    """The data objects inside an FCP template (tag 62)."""
    outer = tlvs(fcp)
    if not outer or outer[0][0] != TAG_FCP:
        raise ModemProtocolError("the SELECT response is not an FCP template (tag 62)")
    return tlvs(outer[0][1])


def file_size(fcp: bytes) -> int | None:
    """An EF's size in bytes (tag 80), None when the FCP has none."""
    value = _first(fcp_objects(fcp), TAG_FILE_SIZE)
    return int.from_bytes(value, "big") if value else None


def record_length(fcp: bytes) -> int | None:
    """The record length of a linear fixed or cyclic EF: the file
    descriptor's bytes 3-4 (tag 82, 5 bytes long)."""
    value = _first(fcp_objects(fcp), TAG_DESCRIPTOR)
    if value is None or len(value) < 4:
        return None
    return int.from_bytes(value[2:4], "big")


def key_enabled(fcp: bytes, reference: int) -> bool | None:
    """Whether the key `reference` is enabled, from the PIN status
    template of a DF's or ADF's FCP: the PS_DO (tag 90) is a bit map whose
    bits, from b8 of its first byte on, stand for the key references (tag
    83) in the order they are listed.  None: the FCP does not say."""
    template = _first(fcp_objects(fcp), TAG_PIN_STATUS)
    if template is None:
        return None
    objects = tlvs(template)
    ps_do = _first(objects, TAG_PS_DO)
    if ps_do is None:
        return None
    references = [value[0] for tag, value in objects if tag == TAG_KEY_REFERENCE and len(value) == 1]
    if reference not in references:
        return None
    bit = references.index(reference)
    if bit // 8 >= len(ps_do):
        return None
    return bool(ps_do[bit // 8] & (0x80 >> (bit % 8)))


def usim_aid(records: list[bytes]) -> bytes | None:
    """The first USIM's AID among EF.DIR's records (application template
    61 with its AID in 4F)."""
    for record in records:
        try:
            objects = tlvs(record)
        except ModemProtocolError:
            continue
        for tag, value in objects:
            if tag != TAG_APPLICATION:
                continue
            try:
                aid = _first(tlvs(value), TAG_AID)
            except ModemProtocolError:
                continue
            if aid is not None and aid.startswith(USIM_AID_PREFIX):
                return aid
    return None


def select_aid(aid: bytes) -> Apdu:
    """SELECT by DF name (P1 = 04), first or only occurrence, FCP returned
    (P2 = 04).  A shorter, partial AID is allowed (TS 102 221 §8.5.2)."""
    if not 1 <= len(aid) <= 16:
        raise ValueError(f"an AID is 1 to 16 bytes, got {len(aid)}")
    return Apdu(CLA, INS_SELECT, 0x04, 0x04, aid, 0)


def read_record(number: int, length: int) -> Apdu:
    """READ RECORD of the selected EF, absolute mode (P2 = 04)."""
    if not 1 <= number <= 254:
        raise ValueError(f"record number must be 1 to 254, got {number}")
    if not 1 <= length <= 256:
        raise ValueError(f"record length must be 1 to 256, got {length}")
    return Apdu(CLA, INS_READ_RECORD, number, 0x04, le=length)
