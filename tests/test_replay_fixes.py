"""The faults the replay set (tests/dialogues) found, each pinned down at the
layer that had it: a reply without its final result, a modem that answers
only AT+CPIN while the SIM is locked."""

from __future__ import annotations

import pytest

from mtcd.at import commands
from mtcd.at.reader import NEED_DATA, AtReader, Response
from mtcd.errors import ModemUnavailable
from mtcd.modem import LockedOutModem, Modem
from mtcd.sim.replay import Script, parse_dialogue
from mtcd.sim.replay_pty import ReplayPtyServer
from mtcd.transport import SerialTransport

HEAD = "#: vendor: test\n#: source: tests/test_replay_fixes.py\n"


def _fed(command, data: bytes) -> AtReader:
    reader = AtReader()
    reader.start(command)
    reader.receive_data(data)
    assert reader.next_event() is NEED_DATA
    return reader


def test_a_cpin_line_without_final_result_is_the_whole_answer():
    reader = _fed(commands.sim_lock_query(), b"\r\n+CPIN: SIM PIN\r\n")
    response = reader.end_without_final()
    assert isinstance(response, Response)
    assert response.lines == ("+CPIN: SIM PIN",)
    assert response.result.ok and response.result.text == "no final result"
    assert reader.pending is None
    # Had the modem only been slow, its OK now arrives with nothing pending.
    reader.receive_data(b"\r\nOK\r\n")
    assert reader.next_event() is NEED_DATA and reader.stray_results == 1


@pytest.mark.parametrize("command, data", [
    (commands.sim_lock_query(), b"AT+CPIN?\r"),  # only the echo: no answer yet
    (commands.sim_lock_query(), b"\r\n+CPIN: SIM PIN\r\n\r\nO"),  # the OK is on its way
    (commands.sim_lock_query(), b"\r\n+QUSIM: 1\r\n"),  # a URC is no answer
    (commands.imei(), b"\r\n359999000000018\r\n"),  # only AT+CPIN? may lack its OK
])
def test_no_answer_is_made_up_from_less(command, data):
    reader = AtReader()
    reader.start(command)
    reader.receive_data(data)
    while reader.next_event() is not NEED_DATA:
        pass
    assert reader.end_without_final() is None
    assert reader.pending is command


def _modem_on(text: str):
    script = Script(parse_dialogue(HEAD + text))
    server = ReplayPtyServer(script, report=lambda line: None)
    return script, server


@pytest.mark.parametrize("refusal", ["+CME ERROR: 11", "+CME ERROR: SIM PIN required"])
def test_a_modem_answering_only_cpin_while_locked_is_refused_in_words(refusal):
    script, server = _modem_on(f"> ATE0\n< {refusal}\n> AT+CPIN?\n< +CPIN: SIM PIN\n< OK\n")
    with server, SerialTransport(server.port, timeout=2) as transport:
        with pytest.raises(LockedOutModem, match="answers nothing but AT\\+CPIN while the SIM is locked"):
            Modem(transport).initialise()
    assert script.finished and script.mismatches == []


def test_a_modem_refusing_ate0_with_an_unlocked_sim_is_still_not_an_at_port():
    script, server = _modem_on("> ATE0\n< +CME ERROR: 11\n> AT+CPIN?\n< +CPIN: READY\n< OK\n")
    with server, SerialTransport(server.port, timeout=2) as transport:
        with pytest.raises(ModemUnavailable, match="does not accept AT commands") as info:
            Modem(transport).initialise()
    assert not isinstance(info.value, LockedOutModem)
    assert script.finished


def test_any_other_error_to_ate0_sends_nothing_more():
    script, server = _modem_on("> ATE0\n< ERROR\n")
    with server, SerialTransport(server.port, timeout=2) as transport:
        with pytest.raises(ModemUnavailable, match="does not accept AT commands"):
            Modem(transport).initialise()
    # The set-up line first (refused, as by a modem without concatenation), then ATE0 alone.
    assert script.commands == ["ATE0+CMEE=1", "ATE0"] and script.mismatches == []


@pytest.mark.parametrize("code, lock", [
    ("PH_SIM PIN", "PH-SIM PIN"),  # Quectel M10's spelling of the phone lock
    ('"SIM PIN"', "SIM PIN"),  # quoted (Motorola)
    ("SIM_PIN", "OTHER"),  # not exactly SIM PIN: never answered with a PIN
])
def test_vendor_spellings_of_cpin_codes(code, lock):
    from mtcd.at.parsers import parse_cpin

    assert parse_cpin([f"+CPIN: {code}"]).value == lock


def test_a_hex_iccid_tail_confirms_in_either_case(monkeypatch):
    """The confirmation by the ICCID's last four characters, for a card
    whose ICCID ends in hex digits (typed as a person reads it)."""
    import io

    from mtcd.cli import recovery

    monkeypatch.setattr(recovery, "on_terminal", lambda: True)
    monkeypatch.setattr("sys.stdin", io.StringIO("020a\n"))
    recovery.confirm("forget it?", "898602F909183003020A", False, "not forgotten")  # no NotConfirmed
    monkeypatch.setattr("sys.stdin", io.StringIO("0201\n"))
    with pytest.raises(recovery.NotConfirmed):
        recovery.confirm("forget it?", "898602F909183003020A", False, "not forgotten")


@pytest.mark.parametrize("lines, iccid", [
    (['^ICCID: "981062000000001032F6"'], "8901260000000001236"),  # Qualcomm-based: swapped, F-padded
    (["^ICCID: 8901260000000001236"], "8901260000000001236"),  # HiSilicon-based: as printed
    (['^ICCID: "9868209F908103302002"'], "898602F9091830030220"),  # swapped, hex account part
])
def test_huawei_iccid_in_either_digit_order(lines, iccid):
    from mtcd.identity import Iccid
    from mtcd.vendors.huawei import parse_huawei_iccid

    assert parse_huawei_iccid(lines) == Iccid(iccid)
