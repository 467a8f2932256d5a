"""The AT reader: every vector fed whole, one byte at a time, and with
trailing data behind it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtcd.at import commands
from mtcd.at.commands import AtCommand
from mtcd.at.reader import (
    MAX_LINE,
    MAX_LINES,
    NEED_DATA,
    AtReader,
    FinalResult,
    LocalProtocolError,
    Prompt,
    Response,
    Unsolicited,
    parse_final,
)
from mtcd.secret import Pin

PIN = Pin("90817263")
CPIN = commands.sim_lock_query()
CPINR = commands.pin_retries()
IMEI = commands.imei()
CCID = AtCommand("AT+CCID", prefixes=("+CCID:",))
AT = AtCommand("AT")
DIAL = AtCommand("ATD*99#", timeout=30)
CMGS = AtCommand("AT+CMGS=23", prefixes=("+CMGS:",), expects_prompt=True)
ENTER_PIN = commands.enter_pin(PIN)
VERIFY_CSIM = commands.generic_sim_access(bytes.fromhex("0020000108") + b"90817263", sensitive=True)
OK = FinalResult("OK")


def resp(command, *lines, result=OK):
    return Response(command, tuple(lines), result)


# (id, command or None, bytes from the modem, expected events, attributes after)
VECTORS = [
    ("cpin-echo-off", CPIN, b"\r\n+CPIN: READY\r\n\r\nOK\r\n",
     [resp(CPIN, "+CPIN: READY")], {}),
    ("cpin-echo-on", CPIN, b"AT+CPIN?\r\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n",
     [resp(CPIN, "+CPIN: SIM PIN")], {}),
    ("lone-cr", CPIN, b"\r+CPIN: READY\r\rOK\r",
     [resp(CPIN, "+CPIN: READY")], {}),
    ("lone-lf", CPIN, b"\n+CPIN: READY\n\nOK\n",
     [resp(CPIN, "+CPIN: READY")], {}),
    ("lower-case", CPIN, b"at+cpin?\r\r\n+cpin: ready\r\n\r\nok\r\n",
     [resp(CPIN, "+cpin: ready")], {}),
    ("quoted-code", CPIN, b'\r\n+CPIN: "SIM PIN"\r\n\r\nOK\r\n',
     [resp(CPIN, '+CPIN: "SIM PIN"')], {}),
    ("urc-mid-reply", CPIN,
     b"AT+CPIN?\r\r\n+QUSIM: 1\r\n+CPIN: READY\r\n^SIMST: 1\r\n#QSS: 2\r\n*EMRDY: 1\r\n\r\nOK\r\n",
     [Unsolicited("+QUSIM: 1"), Unsolicited("^SIMST: 1"), Unsolicited("#QSS: 2"),
      Unsolicited("*EMRDY: 1"), resp(CPIN, "+CPIN: READY")], {}),
    ("ring-mid-bare-reply", IMEI, b"AT+CGSN\r\r\nRING\r\n\r\n490154203237518\r\nRDY\r\n\r\nOK\r\n",
     [Unsolicited("RING"), Unsolicited("RDY"), resp(IMEI, "490154203237518")], {}),
    ("several-info-lines", CPINR,
     b'\r\n+CPINR: "SIM PIN",3,3\r\n+CPINR: "SIM PUK",10,10\r\n\r\nOK\r\n',
     [resp(CPINR, '+CPINR: "SIM PIN",3,3', '+CPINR: "SIM PUK",10,10')], {}),
    ("bare-iccid", CCID, b"AT+CCID\r\r\n89441000301234567890\r\n\r\nOK\r\n",
     [resp(CCID, "89441000301234567890")], {}),
    ("trailing-blanks", CPIN, b"\r\n+CPIN: READY  \r\n\r\nOK \r\n",
     [resp(CPIN, "+CPIN: READY")], {}),
    ("error", CPIN, b"\r\nERROR\r\n",
     [resp(CPIN, result=FinalResult("ERROR"))], {}),
    ("cme-numeric", CPIN, b"\r\n+CME ERROR: 10\r\n",
     [resp(CPIN, result=FinalResult("CME ERROR", 10))], {}),
    ("cme-no-space", CPIN, b"\r\n+CME ERROR:13\r\n",
     [resp(CPIN, result=FinalResult("CME ERROR", 13))], {}),
    ("cme-quoted-code", CPIN, b'\r\n+CME ERROR: "14"\r\n',
     [resp(CPIN, result=FinalResult("CME ERROR", 14))], {}),
    ("cme-verbose", ENTER_PIN, b"\r\n+CME ERROR: incorrect password\r\n",
     [resp(ENTER_PIN, result=FinalResult("CME ERROR", 16, "incorrect password"))], {}),
    ("cme-verbose-case", ENTER_PIN, b"\r\n+CME ERROR: Incorrect  Password.\r\n",
     [resp(ENTER_PIN, result=FinalResult("CME ERROR", 16, "Incorrect  Password."))], {}),
    ("cme-verbose-quoted", CPIN, b'\r\n+CME ERROR: "SIM busy"\r\n',
     [resp(CPIN, result=FinalResult("CME ERROR", 14, "SIM busy"))], {}),
    ("cme-verbose-unknown", CPIN, b"\r\n+CME ERROR: vendor trouble\r\n",
     [resp(CPIN, result=FinalResult("CME ERROR", None, "vendor trouble"))], {}),
    ("cme-empty", CPIN, b"\r\n+CME ERROR:\r\n",
     [resp(CPIN, result=FinalResult("CME ERROR"))], {}),
    ("cms-error", CMGS, b"\r\n+CMS ERROR: 500\r\n",
     [resp(CMGS, result=FinalResult("CMS ERROR", 500))], {}),
    ("cms-verbose-not-mapped", CMGS, b"\r\n+CMS ERROR: unknown error\r\n",
     [resp(CMGS, result=FinalResult("CMS ERROR", None, "unknown error"))], {}),
    ("connect", DIAL, b"ATD*99#\r\r\nCONNECT 150000000\r\n",
     [resp(DIAL, result=FinalResult("CONNECT", text="150000000"))], {}),
    ("connect-bare", DIAL, b"\r\nCONNECT\r\n",
     [resp(DIAL, result=FinalResult("CONNECT"))], {}),
    ("no-carrier", DIAL, b"\r\nNO CARRIER\r\n",
     [resp(DIAL, result=FinalResult("NO CARRIER"))], {}),
    ("no-dialtone", DIAL, b"\r\nNO DIALTONE\r\n",
     [resp(DIAL, result=FinalResult("NO DIALTONE"))], {}),
    ("garbage-bytes", AT, b"\x00\xff\xfe\r\n\x1b\r\n\xffOK\x00\r\n",
     [resp(AT)], {}),
    ("garbage-inside-line", AT, b"\r\nA\xffB\r\nOK\r\n",
     [resp(AT, "A\ufffdB")], {}),
    ("over-long-line", AT, b"x" * (MAX_LINE + 10) + b"\r\nOK\r\n",
     [resp(AT)], {"discarded_lines": 1}),
    ("long-but-allowed-line", AT, b"y" * MAX_LINE + b"\r\nOK\r\n",
     [resp(AT, "y" * MAX_LINE)], {"discarded_lines": 0}),
    ("prompt", CMGS, b"AT+CMGS=23\r\r\n> ",
     [Prompt(CMGS)], {"pending": CMGS}),
    ("prompt-then-result", CMGS, b"\r\n> \r\n+CMGS: 12\r\n\r\nOK\r\n",
     [Prompt(CMGS), resp(CMGS, "+CMGS: 12")], {}),
    ("pin-echo", ENTER_PIN, b'AT+CPIN="90817263"\r\r\nOK\r\n',
     [resp(ENTER_PIN)], {}),
    ("pin-echo-noisy", ENTER_PIN, b'\xff\x00AT+CPIN="90817263"\r\r\n+CPIN: READY\r\n\r\nOK\r\n',
     [Unsolicited("+CPIN: READY"), resp(ENTER_PIN)], {}),
    ("pin-echo-head-lost", ENTER_PIN, b'+CPIN="90817263"\r\nOK\r\n',
     [resp(ENTER_PIN)], {}),
    ("pin-echo-tail-lost", ENTER_PIN, b'AT+CPIN="9081\r\nOK\r\n',
     [resp(ENTER_PIN)], {}),
    ("pin-echo-mangled", ENTER_PIN, b'AT+CPlN="90817263"\r\nOK\r\n',
     [resp(ENTER_PIN)], {}),
    ("csim-verify-echo", VERIFY_CSIM,
     b'AT+CSIM=26,"00200001083930383137323633"\r\r\n+CSIM: 4,"63C2"\r\n\r\nOK\r\n',
     [resp(VERIFY_CSIM, '+CSIM: 4,"63C2"')], {}),
    # Vendor words that end a command like ERROR (Huawei, ZTE, some Quectel).
    ("command-not-support", AT, b"\r\nCOMMAND NOT SUPPORT\r\n",
     [resp(AT, result=FinalResult("ERROR", text="COMMAND NOT SUPPORT"))], {}),
    ("not-support", CPINR, b"\r\nNOT SUPPORT\r\n",
     [resp(CPINR, result=FinalResult("ERROR", text="NOT SUPPORT"))], {}),
    ("not-support-lower-case-echo", CPINR, b'AT+CPINR="SIM PIN"\r\r\nNot  Support\r\n',
     [resp(CPINR, result=FinalResult("ERROR", text="NOT SUPPORT"))], {}),
    ("too-many-parameters", AT, b"\r\nTOO MANY PARAMETERS\r\n",
     [resp(AT, result=FinalResult("ERROR", text="TOO MANY PARAMETERS"))], {}),
    ("aborted", CPIN, b"\r\nABORTED\r\n",
     [resp(CPIN, result=FinalResult("ABORTED"))], {}),
    ("busy", DIAL, b"\r\nBUSY\r\n", [resp(DIAL, result=FinalResult("BUSY"))], {}),
    ("no-answer", DIAL, b"\r\nNO ANSWER\r\n", [resp(DIAL, result=FinalResult("NO ANSWER"))], {}),
    ("no-dial-tone-spelt-apart", DIAL, b"\r\nNO DIAL TONE\r\n",
     [resp(DIAL, result=FinalResult("NO DIALTONE"))], {}),
    # Verbose +CME ERROR when the modem ignored AT+CMEE=1: the codes the
    # PIN logic decides on (16 rejected, 12 PUK wanted) must come through.
    ("cme-verbose-puk-required", ENTER_PIN, b"\r\n+CME ERROR: SIM PUK required\r\n",
     [resp(ENTER_PIN, result=FinalResult("CME ERROR", 12, "SIM PUK required"))], {}),
    ("cme-verbose-upper-case", ENTER_PIN, b"\r\n+CME ERROR: INCORRECT PASSWORD\r\n",
     [resp(ENTER_PIN, result=FinalResult("CME ERROR", 16, "INCORRECT PASSWORD"))], {}),
    ("cme-verbose-wrong-password", ENTER_PIN, b"\r\n+CME ERROR: Wrong password\r\n",
     [resp(ENTER_PIN, result=FinalResult("CME ERROR", 16, "Wrong password"))], {}),
    ("cme-verbose-puk1", ENTER_PIN, b'\r\n+CME ERROR: "SIM PUK1 required"\r\n',
     [resp(ENTER_PIN, result=FinalResult("CME ERROR", 12, "SIM PUK1 required"))], {}),
    ("cme-verbose-unbalanced-quote", ENTER_PIN, b'\r\n+CME ERROR: "SIM PUK required\r\n',
     [resp(ENTER_PIN, result=FinalResult("CME ERROR", 12, "SIM PUK required"))], {}),
    ("cme-blank-before-colon", ENTER_PIN, b"\r\n+CME ERROR : 16\r\n",
     [resp(ENTER_PIN, result=FinalResult("CME ERROR", 16))], {}),
    ("cme-verbose-hyphen-dropped", CPIN, b"\r\n+CME ERROR: PH SIM PIN required\r\n",
     [resp(CPIN, result=FinalResult("CME ERROR", 5, "PH SIM PIN required"))], {}),
    ("cme-verbose-emergency-only", CPIN,
     b"\r\n+CME ERROR: network not allowed, emergency calls only\r\n",
     [resp(CPIN, result=FinalResult("CME ERROR", 32, "network not allowed, emergency calls only"))], {}),
    ("cms-error-blank-before-colon", CMGS, b"\r\n+CMS ERROR : 304\r\n",
     [resp(CMGS, result=FinalResult("CMS ERROR", 304))], {}),
    # Line ends and noise.
    ("cr-cr-lf-everywhere", CPIN, b"\r\r\n+CPIN: READY\r\r\n\r\r\nOK\r\r\n",
     [resp(CPIN, "+CPIN: READY")], {}),
    ("doubled-echo", CPIN, b"AT+CPIN?\r\r\nAT+CPIN?\r\r\n+CPIN: READY\r\n\r\nOK\r\n",
     [resp(CPIN, "+CPIN: READY")], {}),
    ("nul-inside-lines", CPIN, b"\x00\r\n+CPIN: RE\x00ADY\r\n\x00\x00\r\nO\x00K\r\n",
     [resp(CPIN, "+CPIN: READY")], {}),
    ("bytes-after-the-final-result", AT, b"\r\nOK\r\n\x00\xff\x1b",
     [resp(AT)], {}),
    ("idle-urc", None, b"\r\n+CPIN: READY\r\n\r\n+QUSIM: 1\r\nSMS Ready\r\n",
     [Unsolicited("+CPIN: READY"), Unsolicited("+QUSIM: 1"), Unsolicited("SMS Ready")], {}),
    ("idle-stray-result", None, b"\r\nOK\r\n\r\n+CME ERROR: 14\r\n",
     [], {"stray_results": 2}),
]

TRAILER = b"\r\n+CREG: 5\r\n+CREG: 1"


def feed(reader: AtReader, chunks) -> list:
    events = []
    for chunk in chunks:
        reader.receive_data(chunk)
        while (event := reader.next_event()) is not NEED_DATA:
            events.append(event)
    return events


def started(command) -> AtReader:
    reader = AtReader()
    if command is not None:
        assert reader.start(command) == command.encode()
    return reader


def check_after(reader, attrs):
    expected = {"pending": None, "stray_results": 0, "discarded_lines": 0, **attrs}
    for name, value in expected.items():
        assert getattr(reader, name) == value, name


def no_secret(events):
    text = repr(events) + "".join(str(e) for e in events)
    assert PIN.reveal() not in text
    assert "9081" not in text
    assert "3930383137323633" not in text


@pytest.mark.parametrize(
    "command, data, expected, attrs", [v[1:] for v in VECTORS], ids=[v[0] for v in VECTORS]
)
class TestVectors:
    def test_whole(self, command, data, expected, attrs):
        reader = started(command)
        events = feed(reader, [data])
        assert events == expected
        check_after(reader, attrs)
        no_secret(events)

    def test_byte_at_a_time(self, command, data, expected, attrs):
        reader = started(command)
        events = feed(reader, [data[i : i + 1] for i in range(len(data))])
        assert events == expected
        check_after(reader, attrs)
        no_secret(events)

    def test_trailing_data(self, command, data, expected, attrs):
        reader = started(command)
        events = feed(reader, [data + TRAILER])
        assert events == [*expected, Unsolicited("+CREG: 5")]
        check_after(reader, attrs)
        # The unterminated URC stayed in the buffer for the next event.
        assert feed(reader, [b"\r"]) == [Unsolicited("+CREG: 1")]


def test_start_while_pending_is_a_local_error_without_the_secret():
    reader = started(ENTER_PIN)
    with pytest.raises(LocalProtocolError) as info:
        reader.start(commands.enter_pin(PIN))
    assert isinstance(info.value, RuntimeError)
    assert "AT+CPIN=<redacted>" in str(info.value)
    assert PIN.reveal() not in str(info.value)


def test_late_echo_and_ok_after_abandon_are_dropped():
    reader = started(ENTER_PIN)
    assert feed(reader, [b"AT+CP"]) == []
    reader.abandon()
    assert reader.pending is None
    events = feed(reader, [b'IN="90817263"\r\r\nOK\r\n+CREG: 1\r\n'])
    assert events == [Unsolicited("+CREG: 1")]
    assert reader.stray_results == 1
    reader.start(CPIN)
    assert feed(reader, [b"\r\n+CPIN: READY\r\n\r\nOK\r\n"]) == [resp(CPIN, "+CPIN: READY")]


def test_late_pin_echo_behind_a_stray_ok_is_dropped():
    # The late OK of an abandoned command ends the PIN command early; the
    # PIN command's echo then arrives with nothing pending.
    reader = started(AT)
    reader.abandon()
    reader.start(ENTER_PIN)
    events = feed(reader, [b'\r\nOK\r\nAT+CPIN="90817263"\r\r\nOK\r\n'])
    assert events == [resp(ENTER_PIN)]
    assert reader.stray_results == 1
    no_secret(events)


def test_bytes_received_before_start_do_not_answer_the_command():
    reader = AtReader()
    reader.receive_data(b"\r\n+CPIN: NOT READY\r\n\r\nOK\r\n+CPIN: SIM")
    reader.start(CPIN)
    # The half line that began before start() cannot be the reply either.
    reader.receive_data(b" PIN\r\n\r\n+CPIN: READY\r\n\r\nOK\r\n")
    events = feed(reader, [b""])
    assert events == [
        Unsolicited("+CPIN: NOT READY"),
        Unsolicited("+CPIN: SIM PIN"),
        resp(CPIN, "+CPIN: READY"),
    ]
    assert reader.stray_results == 1


def test_prompt_needs_the_blank_and_only_for_prompt_commands():
    reader = started(CMGS)
    assert feed(reader, [b"\r\n>"]) == []
    assert feed(reader, [b" "]) == [Prompt(CMGS)]
    other = started(AT)
    assert feed(other, [b"\r\n> x\r\nOK\r\n"]) == [resp(AT, "> x")]


def test_over_long_line_keeps_memory_bounded():
    reader = started(AT)
    for _ in range(10):
        reader.receive_data(b"z" * 1000)
        assert reader.next_event() is NEED_DATA
        assert len(reader._buf) <= MAX_LINE
    assert feed(reader, [b"> tail\r\n+CREG: 1\r\nOK\r\n"]) == [Unsolicited("+CREG: 1"), resp(AT)]
    assert reader.discarded_lines == 1


def test_a_reply_that_never_ends_keeps_memory_bounded():
    # A modem that sends information lines for ever (and no final result):
    # the reply keeps its first MAX_LINES lines, the rest are counted.
    reader = started(IMEI)
    for _ in range(MAX_LINES + 50):
        assert feed(reader, [b"490154203237518\r\n"]) == []
    events = feed(reader, [b"OK\r\n"])
    assert len(events[0].lines) == MAX_LINES
    assert reader.discarded_lines == 50
    assert len(reader._buf) == 0


def test_over_long_line_ending_at_the_front_of_new_data():
    reader = started(AT)
    feed(reader, [b"z" * (MAX_LINE + 1)])
    assert feed(reader, [b"\r\nOK\r\n"]) == [resp(AT)]
    assert reader.discarded_lines == 1


@pytest.mark.parametrize(
    "line, result",
    [
        ("OK", FinalResult("OK")),
        ("busy", FinalResult("BUSY")),
        ("NO ANSWER", FinalResult("NO ANSWER")),
        ("CONNECTED", None),
        ("+CME ERROR: SIM PIN required", FinalResult("CME ERROR", 11, "SIM PIN required")),
        ("+CME ERROR: SIM PUK required", FinalResult("CME ERROR", 12, "SIM PUK required")),
        ("+CME ERROR: SIM not inserted", FinalResult("CME ERROR", 10, "SIM not inserted")),
        ("+CME ERROR: operation not allowed", FinalResult("CME ERROR", 3, "operation not allowed")),
        ("+CME ERROR: operation not supported", FinalResult("CME ERROR", 4, "operation not supported")),
        ("+CME ERROR: PH-SIM PIN required", FinalResult("CME ERROR", 5, "PH-SIM PIN required")),
        ("+CME ERROR: SIM failure", FinalResult("CME ERROR", 13, "SIM failure")),
        ("+CME ERROR: SIM wrong", FinalResult("CME ERROR", 15, "SIM wrong")),
        ("+CME ERROR: SIM PIN2 required", FinalResult("CME ERROR", 17, "SIM PIN2 required")),
        ("+CME ERROR: SIM PUK2 required", FinalResult("CME ERROR", 18, "SIM PUK2 required")),
        ("+CME ERROR: unknown", FinalResult("CME ERROR", 100, "unknown")),
        ("+CME ERROR: Incorrect parameters", FinalResult("CME ERROR", 50, "Incorrect parameters")),
        ("+CME ERROR: phone adapter link reserved", FinalResult("CME ERROR", 2, "phone adapter link reserved")),
        ("+CME ERROR: network personalisation PIN required",
         FinalResult("CME ERROR", 40, "network personalisation PIN required")),
        ("+CME ERROR: PDP authentication failure", FinalResult("CME ERROR", 149, "PDP authentication failure")),
        ("+CME ERROR: operation not support", FinalResult("CME ERROR", 4, "operation not support")),
        ("COMMAND NOT SUPPORT", FinalResult("ERROR", text="COMMAND NOT SUPPORT")),
        ("NOT SUPPORTED", None),
        ("ABORTED", FinalResult("ABORTED")),
        ("+CMEE: 1", None),
        ("+CME ERROR: ３", FinalResult("CME ERROR", None, "３")),
        ("+CME ERROR: " + "9" * 5000, FinalResult("CME ERROR", None, "9" * 5000)),
        ("+CPIN: READY", None),
    ],
)
def test_parse_final(line, result):
    assert parse_final(line) == result


@pytest.mark.parametrize(
    "kind, ok",
    [("OK", True), ("CONNECT", True), ("ERROR", False), ("CME ERROR", False),
     ("CMS ERROR", False), ("NO CARRIER", False), ("BUSY", False)],
)
def test_final_result_ok(kind, ok):
    assert FinalResult(kind).ok is ok


def test_need_data_is_a_named_singleton():
    assert repr(NEED_DATA) == "NEED_DATA"
    assert AtReader().next_event() is NEED_DATA


def test_sensitive_command_repr_hides_the_pin():
    event = resp(ENTER_PIN, result=FinalResult("CME ERROR", 16))
    assert PIN.reveal() not in repr(event)


@settings(max_examples=300, deadline=None)
@given(
    before=st.binary(max_size=60),
    after=st.binary(max_size=60),
    tail=st.binary(max_size=60),
    split=st.integers(min_value=1, max_value=40),
)
def test_random_noise_never_raises_nor_shows_the_pin(before, after, tail, split):
    data = before + b'AT+CPIN="90817263"\r' + after + b"\r\nOK\r\n" + tail
    reader = started(ENTER_PIN)
    events = feed(reader, [data[i : i + split] for i in range(0, len(data), split)])
    assert all(isinstance(e, (Response, Unsolicited, Prompt)) for e in events)
    no_secret(events)
