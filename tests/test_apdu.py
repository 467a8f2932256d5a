"""APDU codec: vectors built by hand from ETSI TS 102 221 §10-§11."""

from __future__ import annotations

import pytest

from mtcd import apdu
from mtcd.apdu import Apdu, ApduResponse
from mtcd.errors import ModemProtocolError
from mtcd.secret import Pin, Puk

PIN = Pin("1234")
PIN8 = Pin("90817263")
NEW = Pin("5678")
PUK = Puk("12345678")

PIN_BLOCK = "31323334FFFFFFFF"
PIN8_BLOCK = "3930383137323633"
NEW_BLOCK = "35363738FFFFFFFF"
PUK_BLOCK = "3132333435363738"


def hexof(a: Apdu) -> str:
    return a.encode().hex().upper()


def test_pad_pin():
    assert apdu.pad_pin(PIN).hex().upper() == PIN_BLOCK
    assert apdu.pad_pin(PIN8).hex().upper() == PIN8_BLOCK
    assert apdu.pad_pin(PUK).hex().upper() == PUK_BLOCK


def test_pad_pin_refuses_plain_text():
    with pytest.raises(TypeError, match="not plain text"):
        apdu.pad_pin("1234")


def test_pad_pin_refuses_over_long_secret():
    from mtcd.secret import Secret

    with pytest.raises(ValueError, match="longer than 8 digits"):
        apdu.pad_pin(Secret("123456789"))


@pytest.mark.parametrize(
    "command, expected, sensitive",
    [
        (apdu.verify_pin(PIN), "0020000108" + PIN_BLOCK, True),
        (apdu.verify_pin(PIN8), "0020000108" + PIN8_BLOCK, True),
        (apdu.verify_pin(None), "00200001", False),
        (apdu.verify_pin(None, reference=0x81), "00200081", False),  # PIN2
        (apdu.change_pin(PIN, NEW), "0024000110" + PIN_BLOCK + NEW_BLOCK, True),
        (apdu.disable_pin(PIN), "0026000108" + PIN_BLOCK, True),
        (apdu.enable_pin(PIN), "0028000108" + PIN_BLOCK, True),
        (apdu.unblock_pin(PUK, NEW), "002C000110" + PUK_BLOCK + NEW_BLOCK, True),
        (apdu.unblock_query(), "002C0001", False),
        (apdu.select_file(apdu.EF_ICCID), "00A40004022FE200", False),
        (apdu.select_file(apdu.MF, return_fcp=False), "00A4000C023F00", False),
        (apdu.read_binary(0, 10), "00B000000A", False),
        (apdu.read_binary(0x1234, 256), "00B0123400", False),
        (apdu.get_response(0x1C), "00C000001C", False),
    ],
)
def test_command_encoding(command, expected, sensitive):
    assert hexof(command) == expected
    assert command.sensitive is sensitive
    assert command.cla == 0x00


@pytest.mark.parametrize(
    "command, tpdu",
    [
        (apdu.verify_pin(None), "0020000100"),  # case 1: P3 = 00
        (apdu.verify_pin(PIN), "0020000108" + PIN_BLOCK),  # case 3
        (apdu.read_binary(0, 10), "00B000000A"),  # case 2
        (apdu.select_file(apdu.EF_ICCID), "00A40004022FE2"),  # case 4: no Le on T=0
    ],
)
def test_t0_form(command, tpdu):
    assert command.tpdu().hex().upper() == tpdu


def test_repr_hides_sensitive_data():
    for command in (apdu.verify_pin(PIN8), apdu.unblock_pin(PUK, PIN8), apdu.change_pin(PIN8, PIN8)):
        for text in (repr(command), str(command), f"{command}"):
            assert "<redacted>" in text
            assert PIN8_BLOCK not in text.upper()
            assert PUK_BLOCK not in text.upper()


def test_repr_shows_plain_data():
    assert repr(apdu.select_file(apdu.EF_ICCID)) == (
        "Apdu(cla=00, ins=A4, p1=00, p2=04, data=2FE2, le=0)"
    )


@pytest.mark.parametrize(
    "kwargs, problem",
    [
        ({"cla": 256}, "cla must be a byte"),
        ({"ins": -1}, "ins must be a byte"),
        ({"p1": "0"}, "p1 must be a byte"),
        ({"data": bytes(256)}, "at most 255"),
        ({"le": 257}, "Le must be 0 to 256"),
        ({"le": -1}, "Le must be 0 to 256"),
    ],
)
def test_apdu_rejects_bad_fields(kwargs, problem):
    fields = {"cla": 0, "ins": 0xB0, "p1": 0, "p2": 0, **kwargs}
    with pytest.raises(ValueError, match=problem):
        Apdu(**fields)


def test_apdu_data_is_bytes_and_max_short_lengths_encode():
    a = Apdu(0, 0xD6, 0, 0, bytearray(255), le=256)
    assert type(a.data) is bytes
    assert a.encode()[4] == 0xFF and a.encode()[-1] == 0x00
    assert len(a.encode()) == 4 + 1 + 255 + 1


@pytest.mark.parametrize(
    "call, problem",
    [
        (lambda: apdu.select_file(0x10000), "2 bytes"),
        (lambda: apdu.select_file(-1), "2 bytes"),
        (lambda: apdu.read_binary(0x8000, 1), "offset"),
        (lambda: apdu.read_binary(0, 0), "length"),
        (lambda: apdu.read_binary(0, 257), "length"),
        (lambda: apdu.get_response(0), "length"),
    ],
)
def test_builders_reject_out_of_range(call, problem):
    with pytest.raises(ValueError, match=problem):
        call()


# --- responses ---------------------------------------------------------------

def test_parse_response():
    r = ApduResponse.parse(bytes.fromhex("98440100031032547698" "9000"))
    assert r.data == bytes.fromhex("98440100031032547698")
    assert (r.sw1, r.sw2, r.sw) == (0x90, 0x00, 0x9000)
    assert r.ok
    assert str(r) == "9000 normal ending"


def test_parse_status_only():
    r = ApduResponse.parse(bytes.fromhex("63C2"))
    assert r.data == b"" and r.sw == 0x63C2 and not r.ok


@pytest.mark.parametrize("raw", [b"", b"\x90"])
def test_parse_too_short(raw):
    with pytest.raises(ModemProtocolError, match=f"{len(raw)} bytes has no status word"):
        ApduResponse.parse(raw)


@pytest.mark.parametrize(
    "sw, left",
    [(0x63C3, 3), (0x63C0, 0), (0x63CA, 10), (0x6983, 0), (0x9000, None)],
)
def test_remaining_attempts(sw, left):
    assert apdu.remaining_attempts(ApduResponse(b"", sw >> 8, sw & 0xFF)) == left


@pytest.mark.parametrize("sw", [0x6A88, 0x6982, 0x6984, 0x6300, 0x63F1, 0x6D00])
def test_remaining_attempts_other_status(sw):
    with pytest.raises(ModemProtocolError, match=f"^no attempts count in status {sw:04X} "):
        apdu.remaining_attempts(ApduResponse(b"", sw >> 8, sw & 0xFF))


@pytest.mark.parametrize(
    "sw, text",
    [
        (0x9000, "9000 normal ending"),
        (0x6983, "6983 authentication method blocked"),
        (0x6982, "6982 security status not satisfied"),
        (0x6A82, "6A82 file not found"),
        (0x6A88, "6A88 referenced data not found"),
        (0x6D00, "6D00 instruction not supported"),
        (0x63C2, "63C2 verification failed, 2 attempts left"),
        (0x611C, "611C 28 response bytes available (GET RESPONSE)"),
        (0x6100, "6100 256 response bytes available (GET RESPONSE)"),
        (0x6C0A, "6C0A wrong Le, 10 bytes available"),
        (0x9F22, "9F22 34 response bytes available (GSM)"),
        (0x6301, "6301 unknown status"),
        (0x1234, "1234 unknown status"),
    ],
)
def test_describe_status(sw, text):
    assert apdu.describe_status(sw) == text
