"""Modem dialects: vendor reply parsers, the registry and detection, the
order of each dialect's query lists, and SIM-state URCs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtcd.errors import ModemProtocolError
from mtcd.identity import Iccid
from mtcd.simlock import PinAttempts, SimEvent
from mtcd.vendors import DIALECTS, Dialect, UnknownDialect, detect_dialect, dialect_named
from mtcd.vendors.cinterion import parse_spic
from mtcd.vendors.huawei import parse_huawei_cpin
from mtcd.vendors.quectel import parse_qpinc
from mtcd.vendors.sierra import parse_cpinc
from mtcd.vendors.telit import parse_pct
from mtcd.vendors.ublox import parse_upincnt

ICCID19 = "8949000000000000018"
ICCID20 = "89441100680123456780"


def counts(a: PinAttempts) -> tuple[int | None, int | None]:
    return a.pin1, a.puk1


# --- vendor retry-counter parsers ---------------------------------------------

GOOD_COUNTERS = [
    # Quectel +QPINC: "SC",<pin1>,<puk1>
    (parse_qpinc, ['+QPINC: "SC",3,10'], (3, 10)),
    (parse_qpinc, ['+QPINC:"SC",0,10'], (0, 10)),
    (parse_qpinc, ['+QPINC: SC, 2 , 9'], (2, 9)),
    (parse_qpinc, ['+qpinc: "sc",1,10'], (1, 10)),
    (parse_qpinc, ['+QPINC: "P2",3,10', '+QPINC: "SC",2,8'], (2, 8)),  # AT+QPINC? lists both
    (parse_qpinc, ['+QPINC: "SC",3,'], (3, None)),
    (parse_qpinc, ['+QPINC: "SC",3,10,'], (3, 10)),
    # Huawei ^CPIN: <code>,[<times>],<puk>,<pin>,<puk2>,<pin2>
    (parse_huawei_cpin, ["^CPIN: READY,,10,3,10,3"], (3, 10)),
    (parse_huawei_cpin, ["^CPIN: SIM PIN,2,10,2,10,3"], (2, 10)),
    (parse_huawei_cpin, ['^CPIN: "SIM PIN",3,10,3,10,3'], (3, 10)),
    (parse_huawei_cpin, ["^CPIN: SIM PUK,9,9,0,10,3"], (0, 9)),
    (parse_huawei_cpin, ["^CPIN:READY, ,10,3,10,3"], (3, 10)),
    (parse_huawei_cpin, ["^CPIN: READY,,,3,,"], (3, None)),
    # Sierra +CPINC: <pin1>,<pin2>,<puk1>,<puk2>
    (parse_cpinc, ["+CPINC: 3,3,10,10"], (3, 10)),
    (parse_cpinc, ["+CPINC:2, 3, 9, 10"], (2, 9)),
    (parse_cpinc, ["+CPINC: 1,3,,10"], (1, None)),
    # u-blox +UPINCNT: <pin1>,<pin2>,<puk1>,<puk2>
    (parse_upincnt, ["+UPINCNT: 3,3,10,10"], (3, 10)),
    (parse_upincnt, ["+UPINCNT:0,3,10,10"], (0, 10)),
    (parse_upincnt, ["+UPINCNT: 2 , 3 , 7 , 10 "], (2, 7)),
    # Telit #PCT: <n>
    (parse_pct, ["#PCT: 3"], (3, None)),
    (parse_pct, ["#PCT:1"], (1, None)),
    # Cinterion ^SPIC: <n>
    (parse_spic, ["^SPIC: 3"], (3, None)),
    (parse_spic, ["^spic:2"], (2, None)),
]


@pytest.mark.parametrize("parse, lines, expected", GOOD_COUNTERS)
def test_vendor_counter_replies(parse, lines, expected):
    assert counts(parse(lines)) == expected


BAD_COUNTERS = [
    (parse_qpinc, []),
    (parse_qpinc, ['+QPINC: "P2",3,10']),  # no PIN1 line
    (parse_qpinc, ['+QPINC: "SC",3']),
    (parse_qpinc, ['+QPINC: "SC",,10']),  # PIN1 count missing
    (parse_qpinc, ['+QPINC: "SC",x,10']),
    (parse_qpinc, ['+QPINC: "SC",-1,10']),
    (parse_qpinc, ['+QPINC: "SC",3.0,10']),
    (parse_qpinc, ['+QPINC: "SC",\u0663,10']),  # Arabic-Indic three
    (parse_qpinc, ['+QPINC: "SC",16,10']),  # beyond the 4-bit card counter
    (parse_qpinc, ['+QPINC: "SC,3,10']),  # unbalanced quote
    (parse_qpinc, ['+CPINR: SIM PIN,3,3']),
    (parse_huawei_cpin, []),
    (parse_huawei_cpin, ["^CPIN: READY,,10,3"]),
    (parse_huawei_cpin, ["^CPIN: READY,,10,,10,3"]),
    (parse_huawei_cpin, ["^CPIN: READY,,10,x,10,3"]),
    (parse_huawei_cpin, ["+CPIN: READY"]),
    (parse_huawei_cpin, ["^CPIN: READY,,10,123,10,3"]),
    (parse_cpinc, []),
    (parse_cpinc, ["+CPINC: 3,3,10"]),
    (parse_cpinc, ["+CPINC: ,3,10,10"]),
    (parse_cpinc, ["+CPINC: 3,3,99,10"]),
    (parse_cpinc, ["+CPINC: 3;3;10;10"]),
    (parse_upincnt, []),
    (parse_upincnt, ["+UPINCNT: 3"]),
    (parse_upincnt, ["+UPINCNT: a,b,c,d"]),
    (parse_upincnt, ["+CPINC: 3,3,10,10"]),
    (parse_pct, []),
    (parse_pct, ["#PCT: "]),
    (parse_pct, ["#PCT: 3,10"]),
    (parse_pct, ["#PCT: three"]),
    (parse_spic, []),
    (parse_spic, ["^SPIC: "]),
    (parse_spic, ["^SPIC: 3,1"]),
]


@pytest.mark.parametrize("parse, lines", BAD_COUNTERS)
def test_malformed_counter_replies_are_protocol_errors(parse, lines):
    with pytest.raises(ModemProtocolError):
        parse(lines)


def test_counter_sources_name_the_command():
    assert parse_qpinc(['+QPINC: "SC",3,10']).source == "+QPINC"
    assert parse_huawei_cpin(["^CPIN: READY,,10,3,10,3"]).source == "^CPIN"
    assert parse_cpinc(["+CPINC: 3,3,10,10"]).source == "+CPINC"
    assert parse_upincnt(["+UPINCNT: 3,3,10,10"]).source == "+UPINCNT"
    assert parse_spic(["^SPIC: 3"]).source == "^SPIC"


def test_pct_source_carries_its_caveat():
    # #PCT counts whatever +CPIN asks for: the journal must say so.
    source = parse_pct(["#PCT: 3"]).source
    assert source.startswith("#PCT") and "SIM PIN" in source


COUNTER_PARSERS = [parse_qpinc, parse_huawei_cpin, parse_cpinc, parse_upincnt, parse_pct, parse_spic]
COUNTER_PREFIXES = ['+QPINC: "SC",', "^CPIN: ", "+CPINC: ", "+UPINCNT: ", "#PCT: ", "^SPIC: "]


@given(
    parse=st.sampled_from(COUNTER_PARSERS),
    prefix=st.sampled_from(COUNTER_PREFIXES + [""]),
    tail=st.text(max_size=40),
)
def test_counter_parsers_fail_only_as_protocol_errors(parse, prefix, tail):
    try:
        result = parse([prefix + tail])
    except ModemProtocolError:
        return
    assert isinstance(result, PinAttempts)
    assert result.pin1 is not None and 0 <= result.pin1 <= 15


# --- registry and detection ------------------------------------------------------

NAMES = ["generic", "quectel", "simcom", "ublox", "huawei", "telit", "sierra", "cinterion"]


def test_registry_names_and_classes():
    assert list(DIALECTS) == NAMES
    assert len(DIALECTS) == len(NAMES)
    for name, cls in DIALECTS.items():
        assert issubclass(cls, Dialect)
        assert cls.name == name
        assert all(m == m.lower() for m in cls.manufacturers)  # matched against lower-cased CGMI


@pytest.mark.parametrize("name", NAMES)
def test_dialect_named(name):
    dialect = dialect_named(name)
    assert type(dialect) is DIALECTS[name]


@pytest.mark.parametrize("spelling, name", [("U-Blox", "ublox"), (" Quectel ", "quectel"), ("GENERIC", "generic")])
def test_dialect_named_forgives_case_and_hyphen(spelling, name):
    assert dialect_named(spelling).name == name


def test_unknown_dialect_names_the_known_ones():
    with pytest.raises(UnknownDialect) as info:
        dialect_named("nokia")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert "'nokia'" in message and "quectel" in message and "generic" in message
    assert "\n" not in message and not message.startswith('"')


def test_vendor_modules_are_imported_only_when_asked_for():
    code = (
        "import sys, mtcd.vendors as v\n"
        "assert 'mtcd.vendors.quectel' not in sys.modules\n"
        "v.dialect_named('telit')\n"
        "assert 'mtcd.vendors.telit' in sys.modules\n"
        "assert 'mtcd.vendors.quectel' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "cgmi, name",
    [
        ("Quectel", "quectel"),
        ("QUECTEL Incorporated", "quectel"),
        ("Quectel_Ltd", "quectel"),
        ("huawei", "huawei"),
        ("Huawei Technologies Co., Ltd.", "huawei"),
        ("SIMCOM_Ltd", "simcom"),
        ("SIMCOM INCORPORATED", "simcom"),
        ("u-blox", "ublox"),
        ("Telit", "telit"),
        ("Sierra Wireless, Incorporated", "sierra"),
        ("Cinterion", "cinterion"),
        ("Gemalto M2M GmbH", "cinterion"),
        ("Fibocom", "generic"),
        ("", "generic"),
        ("\u00e4\u00df\x00", "generic"),
    ],
)
def test_detect_dialect(cgmi, name):
    dialect = detect_dialect(cgmi)
    assert dialect.name == name
    assert type(dialect) is DIALECTS[name]


# --- query lists: which command, in which order ------------------------------------

CSIM_VERIFY = 'AT+CSIM=10,"0020000100"'
CRSM_ICCID = "AT+CRSM=176,12258,0,0,10"
CPINR = 'AT+CPINR="SIM PIN"'

ATTEMPTS_ORDER = {
    "generic": [CPINR, CSIM_VERIFY],
    "quectel": [CPINR, 'AT+QPINC="SC"', CSIM_VERIFY],
    "huawei": [CPINR, "AT^CPIN?", CSIM_VERIFY],
    "sierra": [CPINR, "AT+CPINC?", CSIM_VERIFY],
    "ublox": [CPINR, "AT+UPINCNT", CSIM_VERIFY],
    "telit": [CPINR, "AT#PCT", CSIM_VERIFY],
    # +SPIC is not trusted: its field order is disputed.
    "simcom": [CPINR, CSIM_VERIFY],
    "cinterion": [CPINR, 'AT^SPIC="SC"', CSIM_VERIFY],
}

ICCID_ORDER = {
    "generic": [CRSM_ICCID, "AT+CCID"],
    "quectel": [CRSM_ICCID, "AT+QCCID", "AT+CCID"],
    "huawei": [CRSM_ICCID, "AT^ICCID?", "AT+CCID"],
    "sierra": [CRSM_ICCID, "AT!ICCID?", "AT+CCID"],
    "ublox": [CRSM_ICCID, "AT+CCID"],
    "telit": [CRSM_ICCID, "AT#CCID", "AT+CCID"],
    "simcom": [CRSM_ICCID, "AT+CCID", "AT+CICCID"],
    "cinterion": [CRSM_ICCID, "AT+CCID"],
}


# --- ICCID queries ----------------------------------------------------------------


def query_for(name: str, text: str, kind: str = "iccid"):
    dialect = dialect_named(name)
    queries = dialect.iccid_queries() if kind == "iccid" else dialect.attempts_queries()
    (query,) = [q for q in queries if q.command.text == text]
    return query


GOOD_ICCIDS = [
    # Generic READ BINARY of EF.ICCID: nibble-swapped BCD, F-padded.
    ("generic", CRSM_ICCID, ['+CRSM: 144,0,"98441100861032547608"'], ICCID20),
    ("generic", CRSM_ICCID, ["+CRSM: 144,0,989400000000000010F8"], ICCID19),
    ("generic", CRSM_ICCID, ['+CRSM:144, 0, "989400000000000010f8"'], ICCID19),
    ("generic", "AT+CCID", [f"+CCID: {ICCID20}"], ICCID20),
    ("simcom", "AT+CCID", [ICCID20], ICCID20),  # SIM800: bare digits
    ("simcom", "AT+CICCID", [f"+ICCID: {ICCID19}F"], ICCID19),
    ("quectel", "AT+QCCID", [f"+QCCID: {ICCID20}"], ICCID20),
    ("quectel", "AT+QCCID", [f"+QCCID: {ICCID19}F"], ICCID19),
    ("quectel", "AT+QCCID", [ICCID20], ICCID20),  # prefix left out by some firmware
    ("huawei", "AT^ICCID?", [f"^ICCID: {ICCID20}"], ICCID20),
    ("huawei", "AT^ICCID?", [f'^ICCID: "{ICCID19}"'], ICCID19),
    ("telit", "AT#CCID", [f"#CCID: {ICCID20}"], ICCID20),
    ("telit", "AT#CCID", [f"#ccid:{ICCID19}F"], ICCID19),
    ("sierra", "AT!ICCID?", [f"!ICCID: {ICCID20}"], ICCID20),
    ("sierra", "AT!ICCID?", [f"ICCID: {ICCID19}F"], ICCID19),
    ("sierra", "AT!ICCID?", [f'ICCID: "{ICCID20}"'], ICCID20),
]


@pytest.mark.parametrize("name, text, lines, expected", GOOD_ICCIDS)
def test_iccid_replies(name, text, lines, expected):
    assert query_for(name, text).parse(lines) == Iccid(expected)


BAD_ICCIDS = [
    ("generic", CRSM_ICCID, []),
    ("generic", CRSM_ICCID, ["+CRSM: 106,130"]),  # 6A82 file not found
    ("generic", CRSM_ICCID, ["+CRSM: 105,130"]),  # 6982 security status not satisfied
    ("generic", CRSM_ICCID, ['+CRSM: 144,0,"9844"']),  # short read
    ("generic", CRSM_ICCID, ['+CRSM: 144,0,"FFFFFFFFFFFFFFFFFFFF"']),  # blank file
    ("generic", CRSM_ICCID, ['+CRSM: 144,0,"AB441100861032547608"']),  # not BCD
    ("generic", CRSM_ICCID, ['+CRSM: 144,0,"98441100861032547609"']),  # Luhn digit wrong
    ("generic", "AT+CCID", ["+CCID: "]),
    ("quectel", "AT+QCCID", []),
    ("quectel", "AT+QCCID", ["+QCCID: 12345"]),
    ("quectel", "AT+QCCID", ["+QCCID: 89441100680123456781"]),  # Luhn digit wrong
    ("quectel", "AT+QCCID", ["+QCCID: 98441100861032547608"]),  # EF content, still swapped
    ("huawei", "AT^ICCID?", ["^ICCID: ERROR"]),
    ("telit", "AT#CCID", ["#CCID: 8944-1100"]),
    ("telit", "AT#CCID", [f"#CCID: {ICCID20}", f"#CCID: {ICCID19}"]),
    ("sierra", "AT!ICCID?", ["!ICCID:"]),
]


@pytest.mark.parametrize("name, text, lines", BAD_ICCIDS)
def test_malformed_iccid_replies_are_protocol_errors(name, text, lines):
    with pytest.raises(ModemProtocolError):
        query_for(name, text).parse(lines)


ICCID_QUERIES = [(name, text) for name, table in ICCID_ORDER.items() for text in table]


@given(
    which=st.sampled_from(ICCID_QUERIES),
    prefix=st.sampled_from(["+CRSM: 144,0,", "+CCID: ", "+QCCID: ", "#CCID: ", "!ICCID: ", ""]),
    lines=st.lists(st.text(max_size=30), max_size=3),
)
def test_iccid_parsers_fail_only_as_protocol_errors(which, prefix, lines):
    try:
        result = query_for(*which).parse([prefix + line for line in lines])
    except ModemProtocolError:
        return
    assert isinstance(result, Iccid)


# --- generic attempts queries --------------------------------------------------------

CSIM_REPLIES = [
    (['+CSIM: 4,"63C3"'], 3),
    (['+CSIM:4,"63C1"'], 1),
    (["+CSIM: 4,63C0"], 0),
    (['+CSIM: 4,"6983"'], 0),  # blocked
]


@pytest.mark.parametrize("lines, left", CSIM_REPLIES)
def test_csim_verify_reply(lines, left):
    result = query_for("generic", CSIM_VERIFY, "attempts").parse(lines)
    assert counts(result) == (left, None)
    assert result.source.startswith("+CSIM")


@pytest.mark.parametrize(
    "lines",
    [
        [],
        ['+CSIM: 4,"9000"'],  # already verified: the card gives no count
        ['+CSIM: 4,"6A88"'],
        ['+CSIM: 4,"6D00"'],
        ['+CSIM: 2,"63"'],
        ['+CSIM: 4,"63C"'],
        ['+CSIM: 6,"63C3"'],
    ],
)
def test_csim_replies_without_a_count_are_protocol_errors(lines):
    with pytest.raises(ModemProtocolError):
        query_for("generic", CSIM_VERIFY, "attempts").parse(lines)


def test_cpinr_reply():
    result = query_for("generic", CPINR, "attempts").parse(["+CPINR: SIM PIN,2,3", "+CPINR: SIM PUK,10,10"])
    assert counts(result) == (2, 10)


@given(name=st.sampled_from(NAMES), lines=st.lists(st.text(max_size=30), max_size=3))
def test_attempts_parsers_fail_only_as_protocol_errors(name, lines):
    for query in dialect_named(name).attempts_queries():
        for candidate in (lines, [query.command.prefixes[0] + " " + line for line in lines]):
            try:
                result = query.parse(candidate)
            except ModemProtocolError:
                continue
            assert isinstance(result, PinAttempts) and result.pin1 is not None


@pytest.mark.parametrize("name", NAMES)
def test_attempts_query_order(name):
    queries = dialect_named(name).attempts_queries()
    assert [q.command.text for q in queries] == ATTEMPTS_ORDER[name]
    # Asking for the counter never carries a secret.
    assert not any(q.command.sensitive for q in queries)


@pytest.mark.parametrize("name", NAMES)
def test_iccid_query_order(name):
    queries = dialect_named(name).iccid_queries()
    assert [q.command.text for q in queries] == ICCID_ORDER[name]


def test_vendor_queries_parse_with_the_vendor_parser():
    by_text = {q.command.text: q for q in dialect_named("quectel").attempts_queries()}
    assert by_text['AT+QPINC="SC"'].parse is parse_qpinc
    assert by_text['AT+QPINC="SC"'].command.prefixes == ("+QPINC:",)


def test_telit_wraps_csim_in_open_and_close():
    csim = dialect_named("telit").attempts_queries()[-1]
    assert [c.text for c in csim.before] == ["AT+CSIM=1"]
    assert [c.text for c in csim.after] == ["AT+CSIM=0"]
    for name in NAMES:
        if name != "telit":
            other = dialect_named(name).attempts_queries()[-1]
            assert other.before == () and other.after == ()


@pytest.mark.parametrize(
    "name, commands",
    [
        ("generic", []),
        ("quectel", ["AT+QSIMSTAT=1"]),
        ("huawei", []),  # ^SIMST comes by itself
        ("simcom", ["AT+UIMHOTSWAPON=1"]),
        ("ublox", ["AT+USIMSTAT=1"]),
        ("telit", ["AT#QSS=1"]),
        ("sierra", []),
        ("cinterion", ["AT^SCKS=1"]),
    ],
)
def test_urc_setup(name, commands):
    assert [c.text for c in dialect_named(name).urc_setup()] == commands


# --- SIM-state URCs --------------------------------------------------------------

GENERIC_URCS = [
    ("+CPIN: NOT INSERTED", SimEvent.REMOVED),
    ("+CPIN: NOT READY", SimEvent.REMOVED),
    ("+CPIN: READY", SimEvent.READY),
    ('+CPIN: "READY"', SimEvent.READY),
    ("+cpin:ready", SimEvent.READY),
    ("  +CPIN:  SIM PIN  ", SimEvent.LOCKED),
    ("+CPIN: SIM  PIN", SimEvent.LOCKED),
    ("+CPIN: SIM PUK", SimEvent.LOCKED),
    ("+CPIN: PH-SIM PIN", SimEvent.LOCKED),
    ("+CPIN: SIM PIN2", None),  # about an operation, not the card
    ("+CPIN: SIM PUK2", None),
    ("+CPIN: BUSY", None),
    ("+CPIN: ", None),
    ("+CPIN: WHATEVER", None),
    ("+CPINR: SIM PIN,3,3", None),
    ("RING", None),
    ("", None),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("line, event", GENERIC_URCS)
def test_every_dialect_understands_cpin_urcs(name, line, event):
    assert dialect_named(name).sim_event(line) is event


VENDOR_URCS = {
    "quectel": [
        ("+QSIMSTAT: 1,0", SimEvent.REMOVED),
        ("+QSIMSTAT: 1,1", SimEvent.INSERTED),
        ("+QSIMSTAT:0, 1", SimEvent.INSERTED),
        ("+QSIMSTAT: 1,2", None),  # unknown
        ("+QSIMSTAT: 1", None),
        ("+QUSIM: 1", SimEvent.INSERTED),
        ("+QUSIM: 0", SimEvent.INSERTED),
        ("+QUSIM: 7", None),
    ],
    "huawei": [
        ("^SIMST: 255", SimEvent.REMOVED),
        ("^SIMST: 1", SimEvent.READY),
        ("^SIMST:1,0", SimEvent.READY),
        ("^SIMST: 0", SimEvent.INSERTED),  # invalid or PIN-locked: re-read +CPIN?
        ("^SIMST: 4", None),  # network refused CS+PS: not a card change
        ("^SIMST: 240", None),
        ("^SIMST: x", None),
    ],
    "simcom": [
        ("+SIMCARD: NOT AVAILABLE", SimEvent.REMOVED),
        ("+SIMCARD:  not  available", SimEvent.REMOVED),
        ("+SIMCARD: AVAILABLE", None),
    ],
    "telit": [
        ("#QSS: 0", SimEvent.REMOVED),
        ("#QSS: 1", SimEvent.INSERTED),
        ("#QSS: 2", SimEvent.READY),
        ("#QSS: 3", SimEvent.READY),
        ("#QSS: 4", None),
        ("#QSS: 1,1", None),  # the AT#QSS? reply form, not a URC
    ],
    "ublox": [
        ("+UUSIMSTAT: 0", SimEvent.REMOVED),
        ("+UUSIMSTAT: 1", SimEvent.LOCKED),
        ("+UUSIMSTAT:3", SimEvent.LOCKED),
        ("+UUSIMSTAT: 4", None),
        ("+UUSIMSTAT: 6", SimEvent.READY),
        ("+UUSIMSTAT: 8", None),  # phonebook ready: nothing new about the lock
    ],
    "cinterion": [
        ("^SCKS: 0", SimEvent.REMOVED),
        ("^SCKS: 1", SimEvent.INSERTED),
        ("^SCKS: 2", None),
    ],
    "sierra": [],
}


@pytest.mark.parametrize(
    "name, line, event",
    [(name, line, event) for name, table in VENDOR_URCS.items() for line, event in table],
)
def test_vendor_urcs(name, line, event):
    assert dialect_named(name).sim_event(line) is event


@pytest.mark.parametrize(
    "name, line",
    [(other, line) for name, table in VENDOR_URCS.items() for line, _ in table for other in NAMES if other != name],
)
def test_vendor_urcs_mean_nothing_to_other_dialects(name, line):
    assert dialect_named(name).sim_event(line) is None


URC_PREFIXES = ["+CPIN: ", "+QSIMSTAT: ", "+QUSIM: ", "^SIMST: ", "+SIMCARD: ", "#QSS: ", "+UUSIMSTAT: ", "^SCKS: "]


@given(
    name=st.sampled_from(NAMES),
    prefix=st.sampled_from(URC_PREFIXES + [""]),
    tail=st.text(max_size=30),
)
def test_sim_event_never_raises(name, prefix, tail):
    event = dialect_named(name).sim_event(prefix + tail)
    assert event is None or isinstance(event, SimEvent)
