"""Association-change SMS: the text, the PDU (decoded back with
python-gsmmodem-new's own decoder), and the TS 27.005 PDU-mode exchange.

The simulator has no +CMGS yet and SerialTransport has no prompt support
yet, so the exchange runs through `ModemBytes` below: the real AtReader fed
the bytes a PDU-mode modem sends (prompt "> " with no line end, +CMGS, +CMS
ERROR), implementing `send_with_prompt` as alerts.PromptTransport describes
it, without the serial port.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from gsmmodem import pdu as gsm_pdu
from hypothesis import given, strategies as st

from mtcd.alerts import (
    CMGS_TIMEOUT, CTRL_Z, MAX_TEXT, AssociationChange, alert_text, encode_sms,
    parse_cmgs, send_alert, send_sms,
)
from mtcd.at.commands import AtCommand
from mtcd.at.reader import NEED_DATA, AtReader, Prompt, Response
from mtcd.errors import CommandFailed, ModemProtocolError
from mtcd.identity import Iccid, Imei, Imsi, luhn_check_digit
from mtcd.secret import Pin

OPERATOR = "+491701234567"
OLD_ICCID = "8949020000000000014"
NEW_ICCID = "89490200000000000" + "2" + str(luhn_check_digit("894902000000000002"))
IMEI = "359999000000018"
IMSI = "262019876543210"
WHEN = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def sim_change(**over) -> AssociationChange:
    fields = dict(old_iccid=OLD_ICCID, new_iccid=NEW_ICCID, old_imei=IMEI, new_imei=IMEI,
                  time=WHEN, imsi=IMSI)
    fields.update(over)
    return AssociationChange(**fields)


# --- the text ------------------------------------------------------------------

def test_sim_change_text():
    assert alert_text(sim_change()) == (
        f"mtcd: association changed: ICCID {OLD_ICCID}->{NEW_ICCID}, IMEI {IMEI}, "
        "2024-05-01T12:00:00Z"
    )


def test_modem_change_text():
    new_imei = "35999900000002" + str(luhn_check_digit("35999900000002"))
    change = sim_change(new_iccid=OLD_ICCID, new_imei=Imei(new_imei), old_iccid=Iccid(OLD_ICCID))
    assert change.imei_changed and not change.sim_changed
    assert alert_text(change) == (
        f"mtcd: association changed: ICCID {OLD_ICCID}, IMEI {IMEI}->{new_imei}, "
        "2024-05-01T12:00:00Z"
    )


def test_imsi_only_when_configured():
    assert IMSI not in alert_text(sim_change())
    assert "IMSI" not in alert_text(sim_change())
    assert alert_text(sim_change(imsi=Imsi(IMSI)), show_imsi=True).endswith(
        f"IMEI {IMEI}, IMSI {IMSI}, 2024-05-01T12:00:00Z"
    )
    assert "IMSI" not in alert_text(sim_change(imsi=None), show_imsi=True)


def test_time_is_utc():
    local = WHEN.astimezone(timezone(timedelta(hours=2)))
    assert alert_text(sim_change(time=local)).endswith("2024-05-01T12:00:00Z")


def test_unknown_identity_is_none():
    assert f"ICCID none->{NEW_ICCID}" in alert_text(sim_change(old_iccid=None))


@pytest.mark.parametrize("field", ["old_iccid", "new_iccid", "old_imei", "new_imei", "imsi"])
def test_a_pin_is_refused(field):
    with pytest.raises(TypeError, match="secret") as caught:
        sim_change(**{field: Pin("48151623")})
    assert "48151623" not in str(caught.value)


@pytest.mark.parametrize("bad", ["8949ä", "12 34", "-1", ""])
def test_identities_are_digits(bad):
    with pytest.raises(ValueError, match="must be digits"):
        sim_change(new_iccid=bad)


def test_time_must_be_a_datetime():
    with pytest.raises(TypeError, match="datetime"):
        sim_change(time="2024-05-01")


digits = lambda low, high: st.text("0123456789", min_size=low, max_size=high)  # noqa: E731


@given(
    old_iccid=st.none() | digits(18, 20), new_iccid=st.none() | digits(18, 20),
    old_imei=st.none() | digits(15, 15), new_imei=st.none() | digits(15, 15),
    imsi=st.none() | digits(6, 15), show_imsi=st.booleans(),
    when=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(9999, 1, 1),
                      timezones=st.just(timezone.utc)),
)
def test_every_alert_fits_one_gsm7_sms(old_iccid, new_iccid, old_imei, new_imei, imsi,
                                       show_imsi, when):
    change = AssociationChange(old_iccid, new_iccid, old_imei, new_imei, when, imsi)
    text = alert_text(change, show_imsi=show_imsi)
    assert len(gsm_pdu.encodeGsm7(text)) <= MAX_TEXT  # GSM-7 septets, not characters
    (sms,) = encode_sms(OPERATOR, text)
    assert _dcs(sms.pdu) == 0x00  # GSM-7, not UCS-2
    assert gsm_pdu.decodeSmsPdu(sms.hex)["text"] == text


def test_longest_alert():
    change = AssociationChange("8" * 20, "9" * 20, "1" * 15, "2" * 15, WHEN, "3" * 15)
    assert len(alert_text(change, show_imsi=True)) == 158


def test_overlong_identities_are_refused_not_split():
    change = AssociationChange("8" * 50, "9" * 50, IMEI, IMEI, WHEN)
    with pytest.raises(ValueError, match="more than one SMS"):
        alert_text(change)


# --- the PDU -------------------------------------------------------------------

def _dcs(pdu: bytes) -> int:
    """TP-DCS of an SMS-SUBMIT with SMSC field 00 and no validity period."""
    assert pdu[0] == 0x00  # SMSC: the SIM's default
    digits = pdu[3]  # after SMSC length, first octet, TP-MR: TP-DA length in digits
    return pdu[4 + 1 + (digits + 1) // 2 + 1]  # TOA, the digits, TP-PID


def test_pdu_decodes_back_to_number_and_text():
    text = alert_text(sim_change())
    (sms,) = encode_sms(OPERATOR, text)
    assert sms.pdu[0] == 0x00
    assert sms.tpdu_length == len(sms.pdu) - 1
    first = sms.pdu[1]
    assert first & 0x03 == 0x01  # TP-MTI: SMS-SUBMIT
    assert first & 0x20 == 0  # no status report asked for
    assert first & 0x40 == 0  # no user data header: one whole SMS
    assert _dcs(sms.pdu) == 0x00
    decoded = gsm_pdu.decodeSmsPdu(sms.hex)
    assert decoded["type"] == "SMS-SUBMIT"
    assert decoded["number"] == OPERATOR
    assert decoded["text"] == text
    assert decoded["tpdu_length"] == sms.tpdu_length
    assert "udh" not in decoded


def test_international_and_national_numbers():
    (intl,) = encode_sms("+491701234567", "x")
    assert intl.pdu[4] == 0x91  # TON international, ISDN plan
    (national,) = encode_sms("01701234567", "x")
    assert gsm_pdu.decodeSmsPdu(national.hex)["number"] == "01701234567"


def test_long_text_is_concatenated():
    text = "association " * 30
    parts = encode_sms(OPERATOR, text)
    assert len(parts) == 3
    decoded = [gsm_pdu.decodeSmsPdu(p.hex) for p in parts]
    assert "".join(d["text"] for d in decoded) == text
    assert {d["udh"][0].parts for d in decoded} == {3}
    assert all(p.tpdu_length == len(p.pdu) - 1 for p in parts)


@pytest.mark.parametrize("number", ["", "12", "+", "+49 170 1234567", "0170-1234", "+" + "1" * 21,
                                    None, "abc"])
def test_bad_numbers(number):
    with pytest.raises(ValueError, match="SMS number"):
        encode_sms(number, "x")


def test_bad_text_and_reference():
    with pytest.raises(ValueError, match="text"):
        encode_sms(OPERATOR, "")
    with pytest.raises(ValueError, match="reference"):
        encode_sms(OPERATOR, "x", reference=256)


def test_cmgs_command():
    (sms,) = encode_sms(OPERATOR, "hello")
    command = sms.command()
    assert command.text == f"AT+CMGS={sms.tpdu_length}"
    assert command.expects_prompt and command.prefixes == ("+CMGS:",)
    assert command.timeout == CMGS_TIMEOUT
    assert sms.payload() == sms.hex.encode("ascii") + b"\x1a"
    assert sms.payload().count(CTRL_Z) == 1


@pytest.mark.parametrize("lines, mr", [
    (("+CMGS: 7",), 7),
    (("+CMGS:255",), 255),
    (('+CMGS: 12,"07913366003001F0"',), 12),
    (("something", "+cmgs: 3"), 3),
])
def test_parse_cmgs(lines, mr):
    assert parse_cmgs(lines) == mr


@pytest.mark.parametrize("lines", [(), ("+CMGS: x",), ("+CMSS: 3",)])
def test_parse_cmgs_without_reference(lines):
    with pytest.raises(ModemProtocolError, match="no \\+CMGS reference"):
        parse_cmgs(lines)


# --- the exchange ----------------------------------------------------------------

class ModemBytes:
    """A PromptTransport: mtcd's AtReader reading what a TS 27.005 PDU-mode
    modem sends back, byte for byte.  `cmgs_error`: +CMS ERROR code instead
    of the prompt; `network_error`: +CMS ERROR code after the PDU."""

    def __init__(self, *, cmgf_ok=True, cmgs_error=None, network_error=None, reference=True):
        self.reader = AtReader()
        self.written: list[bytes] = []
        self.delivered: list[dict] = []
        self.pdu_mode = False
        self.cmgf_ok = cmgf_ok
        self.cmgs_error = cmgs_error
        self.network_error = network_error
        self.reference = reference
        self._expected_length: int | None = None
        self._next_mr = 7

    def execute(self, command: AtCommand, timeout=None) -> Response:
        assert not command.expects_prompt
        self.written.append(self.reader.start(command))
        event = self._reply(self._answer(command.text))
        assert isinstance(event, Response)
        return event

    def send_with_prompt(self, command: AtCommand, payload: bytes, timeout=None) -> Response:
        assert command.expects_prompt
        self.written.append(self.reader.start(command))
        event = self._reply(self._answer(command.text))
        if isinstance(event, Response):
            return event  # refused before the prompt: the payload is not written
        assert isinstance(event, Prompt) and event.command is command
        self.written.append(payload)
        event = self._reply(self._body(payload))
        assert isinstance(event, Response)
        return event

    def _reply(self, data: bytes):
        self.reader.receive_data(data)
        event = self.reader.next_event()
        assert event is not NEED_DATA
        assert self.reader.next_event() is NEED_DATA
        return event

    # the modem's side
    def _answer(self, text: str) -> bytes:
        if text == "AT+CMGF=0":
            self.pdu_mode = self.cmgf_ok
            return b"\r\nOK\r\n" if self.cmgf_ok else b"\r\nERROR\r\n"
        if text.startswith("AT+CMGS="):
            if not self.pdu_mode:
                return b"\r\n+CMS ERROR: 304\r\n"  # invalid PDU mode parameter
            if self.cmgs_error is not None:
                return b"\r\n+CMS ERROR: %d\r\n" % self.cmgs_error
            self._expected_length = int(text[8:])
            return b"\r\n> "  # no line end: the modem waits for the PDU
        return b"\r\nERROR\r\n"

    def _body(self, payload: bytes) -> bytes:
        assert payload.endswith(b"\x1a") and payload.count(b"\x1a") == 1
        raw = bytes.fromhex(payload[:-1].decode("ascii"))
        assert len(raw) - 1 - raw[0] == self._expected_length  # 27.005: TPDU octets only
        if self.network_error is not None:
            return b"\r\n+CMS ERROR: %d\r\n" % self.network_error
        self.delivered.append(gsm_pdu.decodeSmsPdu(payload[:-1].decode("ascii")))
        mr, self._next_mr = self._next_mr, self._next_mr + 1
        if not self.reference:
            return b"\r\nOK\r\n"
        return b"\r\n+CMGS: %d\r\n\r\nOK\r\n" % mr


def test_alert_goes_out_in_pdu_mode():
    modem = ModemBytes()
    assert send_alert(modem, OPERATOR, sim_change()) == [7]
    (sms,) = encode_sms(OPERATOR, alert_text(sim_change()))
    assert modem.written == [
        b"AT+CMGF=0\r",
        f"AT+CMGS={sms.tpdu_length}\r".encode(),
        sms.hex.encode() + b"\x1a",
    ]
    (delivered,) = modem.delivered
    assert delivered["number"] == OPERATOR
    assert delivered["text"] == alert_text(sim_change())
    assert IMSI not in delivered["text"]


def test_imsi_goes_out_only_with_show_imsi():
    modem = ModemBytes()
    send_alert(modem, OPERATOR, sim_change(), show_imsi=True)
    assert f"IMSI {IMSI}" in modem.delivered[0]["text"]


def test_every_part_of_a_long_sms_is_sent():
    modem = ModemBytes()
    assert send_sms(modem, OPERATOR, "x" * 200) == [7, 8]
    assert "".join(d["text"] for d in modem.delivered) == "x" * 200


def test_pdu_mode_refused():
    modem = ModemBytes(cmgf_ok=False)
    with pytest.raises(CommandFailed, match="AT\\+CMGF=0: ERROR"):
        send_alert(modem, OPERATOR, sim_change())
    assert modem.written == [b"AT+CMGF=0\r"]  # no CMGS after that


def test_refused_before_the_prompt():
    modem = ModemBytes(cmgs_error=331)  # no network service (radio off)
    with pytest.raises(CommandFailed, match=r"AT\+CMGS=\d+: CMS ERROR: 331") as caught:
        send_alert(modem, OPERATOR, sim_change())
    assert caught.value.cme is None  # a +CMS code is not a +CME code
    assert len(modem.written) == 2  # the PDU was never written
    assert modem.delivered == []


def test_refused_by_the_network():
    modem = ModemBytes(network_error=500)
    with pytest.raises(CommandFailed, match="CMS ERROR: 500"):
        send_alert(modem, OPERATOR, sim_change())
    assert len(modem.written) == 3


def test_ok_without_a_reference():
    with pytest.raises(ModemProtocolError, match="no \\+CMGS reference"):
        send_alert(ModemBytes(reference=False), OPERATOR, sim_change())


# --- through mtcd's transport to the simulated modem --------------------------------

def test_sms_reaches_the_modem_through_the_transport():
    from gsmmodem.pdu import decodeSmsPdu
    from simfixtures import make_card, sim_modem

    from mtcd.alerts import send_sms
    from mtcd.transport import SerialTransport

    card = make_card(pin_enabled=False)  # ready at once: the radio may go on
    with sim_modem(card, echo=False) as (modem, port):
        modem.radio = 1
        with SerialTransport(port, timeout=5) as transport:
            refs = send_sms(transport, "+491701234567", "mtcd: association changed")
        assert refs == [1]
        assert len(modem.sms_sent) == 1
        decoded = decodeSmsPdu("00" + modem.sms_sent[0].hex())
        assert decoded["number"] == "+491701234567" and decoded["text"] == "mtcd: association changed"


def test_sms_refused_by_a_modem_without_service_sends_no_body():
    from simfixtures import make_card, sim_modem

    from mtcd.alerts import send_sms
    from mtcd.at import commands
    from mtcd.errors import MtcdError
    from mtcd.transport import SerialTransport

    with sim_modem(make_card(), echo=False) as (modem, port):  # SIM locked, radio on: no service
        with SerialTransport(port, timeout=5) as transport:
            with pytest.raises(MtcdError):
                send_sms(transport, "+491701234567", "never sent")
            # The session is still in step: the next command answers normally.
            assert transport.execute(commands.sim_lock_query()).result.ok
        assert modem.sms_sent == []


def test_a_missing_sms_library_is_a_warning_not_a_crash(tmp_path, monkeypatch, caplog):
    """A .deb installed without its Recommends has no gsmmodem: the service
    warns and goes on (the journal event is written anyway)."""
    import sys

    from mtcd.config import load_config
    from mtcd.gatekeeper import SmsAlerts

    config = tmp_path / "mtcd.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n[modem]\nport = "/dev/null"\n'
                      '[alerts]\nsms_to = "+491701234567"\n')
    monkeypatch.setitem(sys.modules, "gsmmodem", None)  # import fails as when absent
    monkeypatch.delitem(sys.modules, "mtcd.alerts", raising=False)
    change = {"old_iccid": None, "new_iccid": "89490200000000000014", "old_imei": None, "new_imei": None}
    with caplog.at_level("WARNING"):
        SmsAlerts(load_config(config)).association_changed(None, change, None)
    assert "install python3-gsmmodem-new" in caplog.text
