import pytest
from hypothesis import given, strategies as st

from mtcd.identity import Iccid, Imei, Imeisv, Imsi, luhn_check_digit, luhn_valid, swapped_bcd_digits


def with_luhn(payload: str) -> str:
    return payload + str(luhn_check_digit(payload))


def test_luhn_known_values():
    # Published example IMEI (TS 23.003 Annex B style computation).
    assert luhn_check_digit("49015420323751") == 8
    assert luhn_valid("490154203237518")
    assert not luhn_valid("490154203237519")
    assert luhn_check_digit("7992739871") == 3


@pytest.mark.parametrize("text, problem", [
    ("49015420323751", "15 digits"),
    ("490154203237519", "check digit"),
    ("49015420323751x", "digits only"),
    ("", "digits only"),
])
def test_bad_imei(text, problem):
    with pytest.raises(ValueError, match=problem):
        Imei(text)


def test_imei_and_imeisv():
    imei = Imei(" 490154203237518 ")
    assert imei.value == "490154203237518" and imei.tac == "49015420"
    sv = Imeisv("4901542032375101")
    assert sv.svn == "01" and sv.belongs_to(imei)
    with pytest.raises(ValueError, match="16 digits"):
        Imeisv("490154203237518")


def test_iccid_ef_round_trip_and_nibble_order():
    iccid = Iccid(with_luhn("894901000000000001"))
    ef = iccid.to_ef()
    assert ef[:2] == bytes.fromhex("9894")  # nibble-swapped: 89 49 -> 98 94
    assert ef[-1] >> 4 == 0xF  # 19 digits: F padding
    assert Iccid.from_ef(ef) == iccid


@pytest.mark.parametrize("text, problem", [
    ("8949010000000000017", "check digit"),
    ("1249010000000000017", "start with 89"),
    ("89490100", "18 to 20"),
])
def test_bad_iccid(text, problem):
    if problem == "check digit":
        text = text[:-1] + str((luhn_check_digit(text[:-1]) + 1) % 10)
    with pytest.raises(ValueError, match=problem):
        Iccid(text)


def test_iccid_from_bad_ef():
    with pytest.raises(ValueError, match="10 bytes"):
        Iccid.from_ef(b"\x98\x94")
    with pytest.raises(ValueError, match="digits only"):  # hex in the issuer part
        Iccid.from_ef(bytes.fromhex("98a4000000000000f0ff"))


# Operators that use the BCD nibbles A-F in the account part (forms from
# ModemManager's ICCID parser tests): no Luhn digit, still the identity.
@pytest.mark.parametrize("text", ["898602F9091830030220", "898602C0123456789012", "898602c012345678901"])
def test_iccid_with_hex_account_digits(text):
    iccid = Iccid(text)
    assert iccid.value == text.upper()
    assert Iccid.from_ef(iccid.to_ef()) == iccid  # an F inside is a digit, not padding


@pytest.mark.parametrize("text", ["89860AF9091830030220", "898602G9091830030220", "898602 F909183003022"])
def test_iccid_hex_only_in_the_account_part(text):
    with pytest.raises(ValueError, match="digits only"):
        Iccid(text)


@given(st.text("0123456789", min_size=17, max_size=19).map(lambda s: "89" + s[:17]))
def test_iccid_round_trip_property(payload):
    iccid = Iccid(with_luhn(payload))
    assert Iccid.from_ef(iccid.to_ef()) == iccid


@given(st.text("0123456789", min_size=6, max_size=15))
def test_imsi_round_trip_property(digits):
    imsi = Imsi(digits)
    ef = imsi.to_ef()
    assert len(ef) == 9
    assert Imsi.from_ef(ef) == imsi


def test_imsi_ef_layout_and_mask():
    # TS 31.102 §4.2.2: length 08, parity 9 (odd) in the low nibble with the first digit above.
    imsi = Imsi("262011234567890")
    assert imsi.to_ef().hex() == "082926102143658709"
    assert imsi.masked() == "26201" + "*" * 10
    with pytest.raises(ValueError, match="length"):
        Imsi.from_ef(b"\x00")


def test_bcd_stops_at_padding():
    assert swapped_bcd_digits(bytes.fromhex("2143f5")) == "12345"
