"""A modem that repeats a PIN or PUK: in a +CPIN: or ^CPIN: line, alone on
a line, in a late or doubled echo, cut in two, padded, in hex.  None of it
may reach an event, a log, an exception, a parse error or a URC callback,
while the secret command runs nor after it.  The reader is fed each form
whole, one byte at a time and with trailing data; the transport and the
real `mtcd once -vv` get them through a pty."""

from __future__ import annotations

import re
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtcd import apdu
from mtcd.at import commands, parsers
from mtcd.at.commands import AtCommand
from mtcd.at.reader import NEED_DATA, SECRET_WINDOW, AtReader, FinalResult, Response, Unsolicited
from mtcd.at.redact import REDACTED, SecretPattern
from mtcd.errors import CommandFailed, ModemProtocolError
from mtcd.modem import Modem
from mtcd.secret import Pin, Puk, Secret
from mtcd.sim import PtyModemServer, SimulatedModem
from mtcd.transport import SerialTransport
from simfixtures import make_card
from test_transport import PtyPeer

PIN_TEXT = "57721566"
PIN = Pin(PIN_TEXT)
PUK_TEXT = "16180339"
SHORT_PIN = Pin("4669")  # 4 digits: padded to a block in APDUs
ENTER = commands.enter_pin(PIN)
QUERY = commands.sim_lock_query()
IMEI = commands.imei()
OK = FinalResult("OK")


def pin_traces(text: str, *secrets: str) -> list[str]:
    """Every form of the secrets found in `text`: the digits whole or as
    4-digit head or tail (not inside a longer number), and their hex."""
    found = []
    for secret in secrets or (PIN_TEXT,):
        pieces = {secret, secret[:4], secret[-4:]}
        for piece in pieces:
            if re.search(rf"(?<![0-9]){piece}(?![0-9])", text) or (len(piece) > 4 and piece in text):
                found.append(piece)
            if piece.encode().hex() in text.lower():
                found.append(piece.encode().hex())
    return found


def shown(events) -> str:
    return repr(events) + " ".join(str(e) for e in events)


# (id, bytes from the modem repeating the PIN, the event it becomes when
# nothing is pending: the redacted line, or None when it is dropped)
FORMS = [
    ("cpin-line", b"+CPIN: 57721566", "+CPIN: <redacted>"),
    ("cpin-line-quoted", b'+CPIN: "57721566"', '+CPIN: "<redacted>"'),
    ("caret-cpin", b'^CPIN: "57721566"', '^CPIN: "<redacted>"'),
    ("caret-cpin-unquoted", b"^CPIN: SIM PIN,57721566", "^CPIN: SIM PIN,<redacted>"),
    ("whole-echo", b'AT+CPIN="57721566"', None),
    ("doubled-echo", b'AT+CPIN="57721566"\r\r\nAT+CPIN="57721566"', None),
    ("echo-without-quotes", b"AT+CPIN=57721566", None),
    ("echo-head-lost", b'PIN="57721566"', None),
    ("bare", b"57721566", None),
    ("bare-quoted", b'"57721566"', None),
    ("bare-spaced", b"5772 1566", None),
    ("split-in-two-lines", b'"5772\r\n1566"', None),
    ("split-echo", b'AT+CPIN="5772\r\n1566"', None),
    ("nul-inside", b"5772\x001566", None),
    ("zero-padded", b"+CPIN: 0057721566", "+CPIN: 00<redacted>"),
    ("bcd-f-padded", b"#CPIN: 57721566FFFFFFFF", "#CPIN: <redacted>"),
    ("hex-block", b'+CSIM: 16,"3537373231353636"', '+CSIM: 16,"<redacted>"'),
    ("hex-block-lower-padded", b"%PIN: 3537373231353636ffff", "%PIN: <redacted>"),
    ("hex-spaced", b"*PIN: 35 37 37 32 31 35 36 36", "*PIN: <redacted>"),
    ("in-an-apdu-echo", b'+CSIM: 26,"00200001083537373231353636"', '+CSIM: 26,"0020000108<redacted>"'),
]

# After each vector: a URC that is not about the PIN must still come through.
TRAILER = b"\r\n+CREG: 5\r\n"


def feed(reader: AtReader, chunks) -> list:
    events = []
    for chunk in chunks:
        reader.receive_data(chunk)
        while (event := reader.next_event()) is not NEED_DATA:
            events.append(event)
    return events


def chunked(data: bytes, how: str) -> list[bytes]:
    if how == "bytewise":
        return [data[i : i + 1] for i in range(len(data))]
    return [data]


def framed(form: bytes) -> bytes:
    return b"\r\n" + form + b"\r\n"


@pytest.mark.parametrize("how", ["whole", "bytewise", "trailing"])
@pytest.mark.parametrize("form, idle_event", [f[1:] for f in FORMS], ids=[f[0] for f in FORMS])
class TestPinRepeatedByTheModem:
    def run(self, reader, data, how):
        if how == "trailing":
            data += TRAILER
        events = feed(reader, chunked(data, how))
        if how == "trailing":
            assert events[-1] == Unsolicited("+CREG: 5")
            events = events[:-1]
        assert pin_traces(shown(events)) == []
        return events

    def test_while_the_pin_command_runs(self, form, idle_event, how):
        reader = AtReader()
        reader.start(ENTER)
        events = self.run(reader, framed(form) + b"\r\nOK\r\n", how)
        # It was read, and the command still ended with its own result.
        assert events[-1] == Response(ENTER, (), OK)
        urcs = [e for e in events if isinstance(e, Unsolicited)]
        assert urcs == ([] if idle_event is None else [Unsolicited(idle_event)] * len(urcs))
        assert reader.pending is None

    def test_after_the_final_result(self, form, idle_event, how):
        reader = AtReader()
        reader.start(ENTER)
        events = self.run(reader, b"\r\nOK\r\n" + framed(form), how)
        expected = [Response(ENTER, (), OK)]
        if idle_event is not None:
            expected += [Unsolicited(idle_event)] * (len(events) - 1)
        assert events == expected and len(events) >= 1

    def test_while_the_next_command_runs(self, form, idle_event, how):
        reader = AtReader()
        reader.start(ENTER)
        assert feed(reader, [b"\r\nOK\r\n"]) == [Response(ENTER, (), OK)]
        reader.start(IMEI)
        events = self.run(reader, framed(form) + b"\r\n490154203237518\r\n\r\nOK\r\n", how)
        response = events[-1]
        assert isinstance(response, Response) and response.result == OK
        # The IMEI is untouched: a PIN is only found where digits end.
        assert "490154203237518" in response.lines
        if idle_event is None:
            assert response.lines == ("490154203237518",)


def test_the_secret_is_forgotten_only_after_later_commands_have_ended():
    reader = AtReader()
    reader.start(ENTER)
    feed(reader, [b"\r\nOK\r\n"])
    for n in range(SECRET_WINDOW):
        assert feed(reader, [b"\r\n+CPIN: 57721566\r\n"]) == [Unsolicited("+CPIN: <redacted>")]
        reader.start(QUERY)
        feed(reader, [b"\r\n+CPIN: READY\r\n\r\nOK\r\n"])
    # The window is closed: the same digits are an ordinary number again.
    assert feed(reader, [b"\r\n+CPIN: 57721566\r\n"]) == [Unsolicited("+CPIN: 57721566")]
    assert reader.redacted_lines == SECRET_WINDOW


def test_an_abandoned_pin_command_keeps_its_secret_redacted():
    reader = AtReader()
    reader.start(ENTER)
    reader.abandon()
    events = feed(reader, [b'\r\n+CPIN: 57721566\r\nAT+CPIN="57721566"\r\r\n57721566\r\nOK\r\n'])
    assert events == [Unsolicited("+CPIN: <redacted>")]
    reader.start(commands.AtCommand("AT", name="resync"))
    assert feed(reader, [b"\r\n57721566\r\nOK\r\n"]) == [Response(reader_last(reader), (), OK)]


def reader_last(reader: AtReader) -> AtCommand:
    return reader._recent[-1]


def test_a_verbose_error_carrying_the_pin_ends_the_command_redacted():
    reader = AtReader()
    reader.start(ENTER)
    events = feed(reader, [b"\r\n+CME ERROR: 57721566\r\n"])
    assert events == [Response(ENTER, (), FinalResult("CME ERROR", None, REDACTED))]


@pytest.mark.parametrize(
    "build, secrets",
    [
        (lambda: commands.enter_pin(PIN), [PIN_TEXT]),
        (lambda: commands.enter_puk(Puk(PUK_TEXT), PIN), [PUK_TEXT, PIN_TEXT]),
        (lambda: commands.change_pin(SHORT_PIN, PIN), ["4669", PIN_TEXT]),
        (lambda: commands.set_pin_enabled(True, PIN), [PIN_TEXT]),
        (lambda: commands.set_pin_enabled(False, PIN), [PIN_TEXT]),
        (lambda: commands.generic_sim_access(apdu.verify_pin(SHORT_PIN).tpdu()), ["4669"]),
        (lambda: commands.generic_sim_access(apdu.change_pin(SHORT_PIN, PIN).tpdu()), ["4669", PIN_TEXT]),
        (lambda: commands.generic_sim_access(apdu.unblock_pin(Puk(PUK_TEXT), PIN).tpdu()), [PUK_TEXT, PIN_TEXT]),
        (lambda: commands.generic_sim_access(apdu.disable_pin(PIN).tpdu()), [PIN_TEXT]),
        (lambda: commands.generic_sim_access(apdu.enable_pin(PIN).tpdu()), [PIN_TEXT]),
        # BCD blocks with F padding, as some tools build them.
        (lambda: commands.generic_sim_access(bytes.fromhex("0020000108") + bytes.fromhex("4669FFFFFFFFFFFF")), ["4669"]),
    ],
    ids=["cpin", "cpin-puk", "cpwd", "clck-on", "clck-off", "csim-verify", "csim-change",
         "csim-unblock", "csim-disable", "csim-enable", "csim-bcd"],
)
def test_every_command_built_from_a_secret_marks_it(build, secrets):
    command = build()
    assert command.sensitive
    assert [s.reveal() for s in command.secrets] == secrets
    # The secrets never show: repr of the command, of its secrets.
    assert pin_traces(repr(command) + str(command) + command.loggable, *secrets) == []
    # Every secret in the command's own text is found by the reader's pattern,
    # so an echo of the text in any garbled form is caught.
    redacted, hit = SecretPattern(command.secrets).redact(command.text)
    assert hit and pin_traces(redacted, *secrets) == []


def test_queries_without_data_carry_no_secret():
    for command in (
        commands.generic_sim_access(apdu.verify_pin(None).tpdu()),
        commands.generic_sim_access(apdu.unblock_query().tpdu()),
        commands.generic_sim_access(bytes.fromhex("00B000000A")),
        commands.sim_lock_query(),
    ):
        assert command.secrets == () and not command.sensitive


def test_a_short_pin_is_not_found_inside_longer_numbers():
    pattern = SecretPattern([Secret("4669")])
    for line in ("490154669203237", "+CPINR: SIM PIN,3,3", '+CSIM: 4,"9000"', "89466900001234567890"):
        assert pattern.redact(line) == (line, False)
    for line in ("+CPIN: 4669", '"4669"', "4669FFFF", "34363639FFFFFFFF", "4 6 6 9"):
        assert pattern.redact(line)[1], line


def test_a_csim_pin_command_redacts_its_hex_block_in_replies():
    verify = commands.generic_sim_access(apdu.verify_pin(SHORT_PIN).tpdu())
    reader = AtReader()
    reader.start(verify)
    events = feed(reader, [
        b'\r\n+CSIM: 26,"002000010834363639FFFFFFFF"\r\n'  # its echo, as a reply line: dropped
        b'+CSIM: 16,"34363639FFFFFFFF"\r\n+CSIM: 4,"9000"\r\n\r\nOK\r\n'
    ])
    assert events == [Response(verify, ('+CSIM: 16,"<redacted>"', '+CSIM: 4,"9000"'), OK)]


# --- through a real pty: logs, exceptions, parse errors, callbacks ------------------

def answer_with_repeats(line: str) -> bytes | None:
    """A modem with every bad habit at once: repeats the PIN during and
    after its reply, and in the reply to the next commands."""
    if line.startswith("AT+CPIN="):
        return (
            b'AT+CPIN="57721566"\r\r\n'  # an echo although ATE0 was sent
            b"\r\n+CPIN: 57721566\r\n\r\n^CPIN: \"57721566\"\r\n\r\n57721566\r\n"
            b"\r\n+CME ERROR: 57721566\r\n"
            b'AT+CPIN="5772\r\n1566"\r\n\r\n+CSIM: 16,"3537373231353636FFFFFFFF"\r\n'
        )
    if line == "AT+CGSN":
        return b"\r\n+CGSN: 57721566\r\n\r\nOK\r\n\r\n57721566\r\n"
    if line == "AT+CPIN?":
        return b"\r\n\x005772\x001566\r\n+CPIN: READY\r\n\r\nOK\r\n"
    return b"\r\nOK\r\n"


def test_no_pin_in_logs_exceptions_or_callbacks_through_a_pty(caplog):
    caplog.set_level("DEBUG")  # what -vv logs
    urcs: list[str] = []
    failures: list[str] = []
    with PtyPeer(answer_with_repeats) as peer:
        with SerialTransport(peer.port, timeout=2, on_unsolicited=urcs.append) as t:
            modem = Modem(t)
            with pytest.raises(CommandFailed) as failed:
                modem.run(commands.enter_pin(PIN))
            failures += [str(failed.value), repr(failed.value)]
            with pytest.raises(ModemProtocolError) as bad:
                parsers.parse_imei(modem.run(commands.imei()).lines)
            failures += [str(bad.value), repr(bad.value)]
            lock = modem.run(commands.sim_lock_query())
            time.sleep(0.2)  # let the late lines arrive and be read
    # Not vacuous: the PIN went to the port, the modem sent it back, and the
    # traces were on.
    assert peer.received[0] == f'AT+CPIN="{PIN_TEXT}"'
    assert "AT+CPIN=<redacted>" in caplog.text and "(unsolicited)" in caplog.text
    assert lock.lines == ("+CPIN: READY",)
    assert "CME ERROR" in failures[0]
    everything = "\n".join([caplog.text, *failures, *urcs, repr(lock)])
    assert pin_traces(everything) == []
    assert urcs == ["+CPIN: <redacted>", '+CSIM: 16,"<redacted>"']


# --- through the real `mtcd once -vv` -----------------------------------------------

class RepeatingModem(SimulatedModem):
    """The simulator with a firmware bug: it repeats a PIN it was given,
    inside its reply and once more after it."""

    def handle(self, line: str) -> list[str]:
        reply = super().handle(line)
        if line.upper().startswith("AT+CPIN=") and reply:
            pin = line.split('"')[1]
            late = [f'AT+CPIN="{pin}"', pin, f"+CPIN: {pin}", pin.encode().hex().upper() + "FFFFFFFF"]
            with self._lock:
                self._urcs += late  # written after the reply: late echoes
            reply = [f"+CPIN: {pin}", f'^CPIN: "{pin}"', pin, *reply]
        return reply


def test_mtcd_once_vv_never_shows_a_pin_the_modem_repeats(gateway):
    card = make_card(pin=PIN_TEXT)
    modem = RepeatingModem(card, echo=False)
    with PtyModemServer(modem) as server:
        gateway.configure(server.port, datalink='backend = "none"')
        gateway.store_pin(str(card.iccid), PIN_TEXT)
        run = gateway.mtcd("-vv", "once", "--json")
    assert run.returncode == 0, run.stderr
    assert run.last_json["state"] == "paired"
    # The trace was on, the PIN was presented, and the modem did repeat it.
    assert "AT+CPIN=<redacted>" in run.stderr
    assert "+CPIN: <redacted>" in run.stderr
    assert any(c.startswith("AT+CPIN=") for c in modem.commands)
    assert pin_traces(run.stdout + run.stderr) == []


# --- any noise around any form, cut anywhere ------------------------------------------

NOT_HEX_OR_DIGIT = st.binary(max_size=30).map(
    lambda b: bytes(c for c in b if not chr(c).isalnum())
)


@settings(max_examples=400, deadline=None)
@given(
    forms=st.lists(st.sampled_from([f[1] for f in FORMS]), min_size=1, max_size=4),
    noise=st.lists(NOT_HEX_OR_DIGIT, min_size=5, max_size=5),
    phase=st.sampled_from(["pending", "late", "next"]),
    split=st.integers(min_value=1, max_value=23),
)
def test_no_form_of_the_pin_survives_noise_and_any_chunking(forms, noise, phase, split):
    body = noise[0] + noise[1].join(framed(f) for f in forms) + noise[2]
    if phase == "pending":
        data = body + b"\r\nOK\r\n"
    elif phase == "late":
        data = b"\r\nOK\r\n" + body
    else:
        data = b"\r\nOK\r\n"
    reader = AtReader()
    reader.start(ENTER)
    chunks = [data[i : i + split] for i in range(0, len(data), split)]
    events = feed(reader, chunks)
    if phase == "next":
        reader.start(QUERY)
        data = body + b"\r\n+CPIN: READY\r\n\r\nOK\r\n"
        events += feed(reader, [data[i : i + split] for i in range(0, len(data), split)])
    assert pin_traces(shown(events)) == []
    # Whatever the noise, each command still ended.
    assert reader.pending is None
    assert sum(isinstance(e, Response) for e in events) == (2 if phase == "next" else 1)
