"""Reply parsers: tables of real-looking replies, and malformed ones that
must raise ModemProtocolError (never ValueError or IndexError)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtcd.at import parsers as p
from mtcd.errors import ModemProtocolError
from mtcd.identity import Iccid, Imei, Imeisv, Imsi
from mtcd.simlock import PinAttempts, SimLock

IMEI = "490154203237518"
IMEISV = "4901542032375101"
ICCID = "89441000301234567891"  # 20 digits, Luhn valid
ICCID19 = "8931440400000000008"  # 19 digits, Luhn valid
IMSI = "262011234567890"


def test_fixtures_are_valid_identities():
    Imei(IMEI), Iccid(ICCID), Iccid(ICCID19), Imsi(IMSI)


# --- split_fields / info_fields keep their behaviour ------------------------

def test_split_fields_honours_quotes():
    assert p.split_fields(' "SIM PIN", 3 ,"a,b"') == ["SIM PIN", "3", "a,b"]
    assert p.split_fields("") == [""]


def test_info_fields_matches_prefix_case_insensitively():
    assert p.info_fields(["+cpinr: SIM PIN,3,3", "+CPINRE: x", "junk"], "+CPINR:") == [["SIM PIN", "3", "3"]]


# --- parse_cpin -------------------------------------------------------------

@pytest.mark.parametrize(
    "lines, lock",
    [
        (["+CPIN: READY"], SimLock.READY),
        (["+CPIN:READY"], SimLock.READY),
        (["+cpin: ready"], SimLock.READY),
        (['+CPIN: "SIM PIN"'], SimLock.SIM_PIN),
        (["+CPIN: SIM PIN"], SimLock.SIM_PIN),
        (["+CPIN:  SIM   PIN "], SimLock.SIM_PIN),
        (["+CPIN: SIM PIN2"], SimLock.SIM_PIN2),
        (['+CPIN: "SIM PIN2"'], SimLock.SIM_PIN2),
        (["+CPIN: SIM PUK"], SimLock.SIM_PUK),
        (["+CPIN: SIM PUK2"], SimLock.SIM_PUK2),
        (["+CPIN: PH-SIM PIN"], SimLock.PH_SIM_PIN),
        (["+CPIN: PH-NET PIN"], SimLock.PH_NET_PIN),
        (["+CPIN: NOT READY"], SimLock.NOT_READY),
        (["+CPIN: NOT INSERTED"], SimLock.NOT_INSERTED),
        (["+CPIN: SIM PIN 2"], SimLock.OTHER),
        (["+CPIN: SIMPIN"], SimLock.OTHER),
        (["+CPIN: PH-WEIRD PIN"], SimLock.OTHER),
        (["+CPIN: READY", "+CPIN: READY"], SimLock.READY),
        (["junk", "+CPIN: SIM PUK"], SimLock.SIM_PUK),
    ],
)
def test_parse_cpin(lines, lock):
    assert p.parse_cpin(lines) is lock


@pytest.mark.parametrize(
    "lines, problem",
    [
        ([], "no \\+CPIN line"),
        (["READY"], "no \\+CPIN line"),
        (["+CPIN:"], "empty code"),
        (['+CPIN: ""'], "empty code"),
        (['+CPIN: "SIM PIN'], "unbalanced quotes"),
        (["+CPIN: SIM PIN", "+CPIN: READY"], "conflicting"),
    ],
)
def test_parse_cpin_malformed(lines, problem):
    with pytest.raises(ModemProtocolError, match=problem) as info:
        p.parse_cpin(lines)
    assert str(info.value).startswith("AT+CPIN?: ")


# --- parse_cpinr ------------------------------------------------------------

@pytest.mark.parametrize(
    "lines, attempts",
    [
        (["+CPINR: SIM PIN,3,3", "+CPINR: SIM PUK,10,10"], PinAttempts(3, 10, "+CPINR")),
        (['+CPINR: "SIM PIN",2,3', '+CPINR: "SIM PUK",10,10'], PinAttempts(2, 10, "+CPINR")),
        (["+CPINR: SIM PIN,1"], PinAttempts(1, None, "+CPINR")),
        (["+cpinr:  sim pin , 0 , 3"], PinAttempts(0, None, "+CPINR")),
        (
            ["+CPINR: SIM PIN2,3,3", "+CPINR: PH-NET PIN,10,10", "+CPINR: SIM PIN,3,3",
             "+CPINR: SIM PUK2,10,10", "+CPINR: SIM PUK,9,10"],
            PinAttempts(3, 9, "+CPINR"),
        ),
        (["+CPINR: SIM PIN,3,3", "+CPINR: SIM PUK,,10"], PinAttempts(3, None, "+CPINR")),
        (["+CPINR: SIM PIN,3,3", "+CPINR: SIM PIN,3,3"], PinAttempts(3, None, "+CPINR")),
    ],
)
def test_parse_cpinr(lines, attempts):
    assert p.parse_cpinr(lines) == attempts


@pytest.mark.parametrize(
    "lines, problem",
    [
        ([], "no SIM PIN line"),
        (["+CPINR: SIM PIN2,3,3", "+CPINR: SIM PUK,10,10"], "no SIM PIN line"),
        (["+CPINR: SIM PIN"], "no retry count for SIM PIN"),
        (["+CPINR: SIM PIN,,3"], "no retry count for SIM PIN"),
        (["+CPINR: SIM PUK"], "no retry count for SIM PUK"),
        (["+CPINR: SIM PIN,x,3"], "'x' is not a number"),
        (["+CPINR: SIM PIN,-1,3"], "not a number"),
        (["+CPINR: SIM PIN,1_0,3"], "not a number"),
        (["+CPINR: SIM PIN,３,3"], "not a number"),
        (["+CPINR: SIM PIN,16,3"], "from 0 to 15"),
        (["+CPINR: SIM PIN,3,3", "+CPINR: SIM PIN,2,3"], "conflicting"),
        (['+CPINR: "SIM PIN,3,3'], "unbalanced quotes"),
    ],
)
def test_parse_cpinr_malformed(lines, problem):
    with pytest.raises(ModemProtocolError, match=problem) as info:
        p.parse_cpinr(lines)
    assert str(info.value).startswith("AT+CPINR: ")


# --- parse_clck -------------------------------------------------------------

@pytest.mark.parametrize(
    "lines, enabled",
    [
        (["+CLCK: 1"], True),
        (["+CLCK: 0"], False),
        (["+CLCK: 1,7"], True),
        (["+clck:0,7"], False),
        (["+CLCK: 1,1", "+CLCK: 1,4"], True),
    ],
)
def test_parse_clck(lines, enabled):
    assert p.parse_clck(lines) is enabled


@pytest.mark.parametrize(
    "lines, problem",
    [([], "no \\+CLCK line"), (["+CLCK: 2"], "not a number from 0 to 1"),
     (["+CLCK:"], "not a number"), (["+CLCK: 1,1", "+CLCK: 0,4"], "conflicting")],
)
def test_parse_clck_malformed(lines, problem):
    with pytest.raises(ModemProtocolError, match=problem):
        p.parse_clck(lines)


# --- parse_crsm -------------------------------------------------------------

EF_ICCID_HEX = "98440100031032547698"


@pytest.mark.parametrize(
    "lines, result",
    [
        ([f'+CRSM: 144,0,"{EF_ICCID_HEX}"'], (0x90, 0, bytes.fromhex(EF_ICCID_HEX))),
        ([f"+CRSM: 144,0,{EF_ICCID_HEX}"], (0x90, 0, bytes.fromhex(EF_ICCID_HEX))),
        ([f'+crsm:144, 0, "{EF_ICCID_HEX.lower()}"'], (0x90, 0, bytes.fromhex(EF_ICCID_HEX))),
        (["+CRSM: 106,130"], (0x6A, 0x82, b"")),
        (['+CRSM: 105,130,""'], (0x69, 0x82, b"")),
    ],
)
def test_parse_crsm(lines, result):
    assert p.parse_crsm(lines) == result


@pytest.mark.parametrize(
    "lines, problem",
    [
        ([], "no \\+CRSM line"),
        (["+CRSM: 144,0", "+CRSM: 144,0"], "2 \\+CRSM lines"),
        (["+CRSM: 144"], "expected 2 or 3 fields"),
        (['+CRSM: 144,0,"00",1'], "expected 2 or 3 fields"),
        (["+CRSM: 256,0"], "sw1"),
        (["+CRSM: 144,x"], "sw2"),
        (['+CRSM: 144,0,"989"'], "hex digits"),
        (['+CRSM: 144,0,"98 94"'], "hex digits"),
        (['+CRSM: 144,0,"zz"'], "hex digits"),
    ],
)
def test_parse_crsm_malformed(lines, problem):
    with pytest.raises(ModemProtocolError, match=problem) as info:
        p.parse_crsm(lines)
    assert str(info.value).startswith("AT+CRSM: ")


# --- parse_csim -------------------------------------------------------------

@pytest.mark.parametrize(
    "lines, data",
    [
        (['+CSIM: 4,"63C3"'], bytes.fromhex("63C3")),
        (["+CSIM: 4,63c3"], bytes.fromhex("63C3")),
        (['+csim:8 , "01029000"'], bytes.fromhex("01029000")),
    ],
)
def test_parse_csim(lines, data):
    assert p.parse_csim(lines) == data


@pytest.mark.parametrize(
    "lines, problem",
    [
        ([], "no \\+CSIM line"),
        (['+CSIM: 4,"63C3",1'], "expected 2 fields"),
        (['+CSIM: 6,"63C3"'], "length field says 6 but the response has 4"),
        (['+CSIM: 2,"90"'], "no status word"),
        (['+CSIM: 0,""'], "no status word"),
        (['+CSIM: 4,"63CZ"'], "hex digits"),
        (['+CSIM: four,"63C3"'], "length"),
    ],
)
def test_parse_csim_malformed(lines, problem):
    with pytest.raises(ModemProtocolError, match=problem) as info:
        p.parse_csim(lines)
    assert str(info.value).startswith("AT+CSIM: ")


# --- identities ---------------------------------------------------------------

@pytest.mark.parametrize(
    "lines",
    [[IMEI], [f" {IMEI} "], [f"+CGSN: {IMEI}"], [f'+CGSN: "{IMEI}"'], [f"+cgsn:{IMEI}"], ["", IMEI]],
)
def test_parse_imei(lines):
    assert p.parse_imei(lines) == Imei(IMEI)


@pytest.mark.parametrize(
    "lines, problem",
    [
        ([], "empty reply"),
        (["", "  "], "empty reply"),
        ([IMEI, IMEI], "2 lines"),
        (["490154203237519"], "check digit"),
        (["49015420323751"], "15 digits"),
        (["IMEI: 490154203237518"], "digits only"),
        (['+CGSN: "4901542032375"18"'], "digits only"),
    ],
)
def test_parse_imei_malformed(lines, problem):
    with pytest.raises(ModemProtocolError, match=problem) as info:
        p.parse_imei(lines)
    assert str(info.value).startswith("AT+CGSN: ")


@pytest.mark.parametrize("lines", [[IMEISV], [f"+CGSN: {IMEISV}"], [f'+CGSN: "{IMEISV}"']])
def test_parse_imeisv(lines):
    assert p.parse_imeisv(lines) == Imeisv(IMEISV)


@pytest.mark.parametrize("lines", [[IMEI], ["+CGSN: 12"], []])
def test_parse_imeisv_malformed(lines):
    with pytest.raises(ModemProtocolError, match="^AT\\+CGSN=2: "):
        p.parse_imeisv(lines)


@pytest.mark.parametrize("lines", [[IMSI], [f"+CIMI: {IMSI}"], [f'+CIMI: "{IMSI}"'], [f"  {IMSI}"]])
def test_parse_imsi(lines):
    assert p.parse_imsi(lines) == Imsi(IMSI)


@pytest.mark.parametrize("lines", [["26201x"], ["12345"], ["+CIMI: 2620112345678901"], []])
def test_parse_imsi_malformed_never_shows_the_value(lines):
    with pytest.raises(ModemProtocolError, match="^AT\\+CIMI: ") as info:
        p.parse_imsi(lines)
    assert "26201" not in str(info.value)


@pytest.mark.parametrize(
    "lines, iccid",
    [
        ([f"+CCID: {ICCID}"], ICCID),
        ([f'+CCID: "{ICCID}"'], ICCID),
        ([f"+QCCID: {ICCID}"], ICCID),
        ([f"+QCCID: {ICCID19}F"], ICCID19),
        ([f"+qccid:{ICCID19}f"], ICCID19),
        ([f"^ICCID: {ICCID}"], ICCID),
        ([f"+ICCID: {ICCID}"], ICCID),
        ([ICCID], ICCID),
        ([f'"{ICCID19}F"'], ICCID19),
        # Hex digits in the account part (China Mobile cards).
        (['+CCID: "898602F9091830030220"'], "898602F9091830030220"),
    ],
)
def test_parse_iccid(lines, iccid):
    assert p.parse_iccid(lines) == Iccid(iccid)


@pytest.mark.parametrize(
    "lines, problem",
    [
        ([], "empty reply"),
        (["+CCID: 89441000301234567890"], "check digit"),
        (["+CCID: 79441000301234567891"], "start with 89"),
        (["+CCID: 8944100030123456789G"], "digits only"),
        (["+CCID: FFFF"], "digits only"),
        ([ICCID, ICCID], "2 lines"),
    ],
)
def test_parse_iccid_malformed_never_shows_the_value(lines, problem):
    with pytest.raises(ModemProtocolError, match=problem) as info:
        p.parse_iccid(lines)
    assert "4410003" not in str(info.value)
    assert str(info.value).startswith("ICCID query: ")


@pytest.mark.parametrize(
    "lines, level",
    [(["+CFUN: 1"], 1), (["+CFUN:0"], 0), (["+cfun: 4,0"], 4), (["+CFUN: 7"], 7)],
)
def test_parse_cfun(lines, level):
    assert p.parse_cfun(lines) == level


@pytest.mark.parametrize("lines", [[], ["1"], ["+CFUN: on"], ["+CFUN:"], ["+CFUN: 1", "+CFUN: 1"]])
def test_parse_cfun_malformed(lines):
    with pytest.raises(ModemProtocolError, match="^AT\\+CFUN\\?: "):
        p.parse_cfun(lines)


@pytest.mark.parametrize(
    "lines, name",
    [
        (["Quectel"], "Quectel"),
        (["+CGMI: Quectel"], "Quectel"),
        (['+CGMI: "SIMCOM INCORPORATED"'], "SIMCOM INCORPORATED"),
        (["Sierra Wireless, Incorporated"], "Sierra Wireless, Incorporated"),
        (["u-blox", "", "SARA"], "u-blox SARA"),
        (["+cgmi:Telit"], "Telit"),
    ],
)
def test_parse_cgmi(lines, name):
    assert p.parse_cgmi(lines) == name


@pytest.mark.parametrize("lines", [[], [""], ["+CGMI:"], ['+CGMI: ""']])
def test_parse_cgmi_malformed(lines):
    with pytest.raises(ModemProtocolError, match="^AT\\+CGMI: empty reply"):
        p.parse_cgmi(lines)


def test_long_bad_field_is_cut_short_in_the_message():
    with pytest.raises(ModemProtocolError) as info:
        p.parse_cfun(["+CFUN: " + "x" * 500])
    assert len(str(info.value)) < 120


# --- anything a modem might send ----------------------------------------------

PARSERS = {
    p.parse_cpin: SimLock, p.parse_cpinr: PinAttempts, p.parse_clck: bool, p.parse_crsm: tuple,
    p.parse_csim: bytes, p.parse_imei: Imei, p.parse_imeisv: Imeisv, p.parse_cfun: int,
    p.parse_imsi: Imsi, p.parse_iccid: Iccid, p.parse_cgmi: str,
}
PREFIXES = ["+CPIN: ", "+CPINR: ", "+CLCK: ", "+CRSM: ", "+CSIM: ", "+CGSN: ",
            "+CFUN: ", "+CIMI: ", "+CCID: ", "+CGMI: ", ""]
field_text = st.text(alphabet=st.sampled_from(list('0123456789ABCDEFabcdef",  -_xSIMPUK\u0663\u00b2')), max_size=30)
reply_line = st.builds(lambda pre, body: pre + body, st.sampled_from(PREFIXES), field_text | st.text(max_size=30))


@settings(max_examples=500, deadline=None)
@given(lines=st.lists(reply_line, max_size=4), parser=st.sampled_from(list(PARSERS)))
def test_random_replies_raise_only_modem_protocol_error(lines, parser):
    try:
        value = parser(lines)
    except ModemProtocolError as e:
        assert str(e)
    else:
        assert isinstance(value, PARSERS[parser])
