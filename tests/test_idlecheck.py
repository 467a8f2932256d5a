"""The periodic check on one command line (mtcd.idlecheck): 30 lines a
minute instead of 90 on a modem without SIM-state URCs, and a silent swap
still caught within the check interval, on modems that take the line and
on those that refuse it."""

from __future__ import annotations

import pytest

from conftest import pin_presentations
from simfixtures import make_card, sim_modem, wait_until
from test_service import GATE_CLOSES_WITHIN, service

from mtcd.at.reader import FinalResult
from mtcd.errors import MtcdError
from mtcd.identity import Iccid
from mtcd.idlecheck import IdleReading, Unclear, idle_line, read_idle_answer
from mtcd.simlock import SimLock
from mtcd.uicc import Uicc
from mtcd.vendors.base import ccid_query, crsm_iccid_query

OK = FinalResult("OK")
ICCID = str(make_card().iccid)  # 19 digits: EF.ICCID pads it with F
CRSM = crsm_iccid_query()


def read(lines, result=OK, query=CRSM):
    return read_idle_answer(lines, result, query.command.prefixes, query.parse, Uicc.lock_of_error)


def crsm_line(iccid: str) -> str:
    padded = iccid + "F" * (20 - len(iccid))
    swapped = "".join(padded[i + 1] + padded[i] for i in range(0, 20, 2))
    return f'+CRSM: 144,0,"{swapped}"'


def test_the_line_asks_radio_lock_and_iccid_in_that_order():
    assert idle_line(CRSM.command).text == "AT+CFUN?;+CPIN?;+CRSM=176,12258,0,0,10"
    assert idle_line(ccid_query().command).text == "AT+CFUN?;+CPIN?;+CCID"
    assert set(idle_line(CRSM.command).prefixes) == {"+CFUN:", "+CPIN:", "+CRSM:"}


def test_a_query_that_cannot_share_a_line_is_left_alone():
    from mtcd.at.commands import AtCommand

    assert idle_line(AtCommand("AT+CCID")) is None  # no prefix: its reply could not be told apart
    assert idle_line(AtCommand('AT+QCCID="x"', prefixes=("+QCCID:",))) is None
    assert idle_line(AtCommand("AT#CCID", prefixes=("#CCID:",))) is None


def test_paired_slot_reads_whole():
    reading = read(["+CFUN: 1", "+CPIN: READY", crsm_line(ICCID)])
    assert reading == IdleReading(1, SimLock.READY, Iccid(ICCID))


def test_no_sim_ends_the_line_at_cpin():
    # +CME ERROR: 10 from AT+CPIN? ends the line; the ICCID is not asked.
    reading = read(["+CFUN: 1"], FinalResult("CME ERROR", 10))
    assert reading == IdleReading(1, SimLock.NOT_INSERTED, None)


def test_a_card_state_without_its_iccid_is_unclear():
    assert read(["+CFUN: 1", "+CPIN: SIM PIN"], FinalResult("CME ERROR", 13)) == Unclear()
    assert read(["+CFUN: 1", "+CPIN: READY"]) == Unclear()  # OK, but the ICCID line is missing
    assert read(["+CFUN: 1"], FinalResult("CME ERROR", 11)) == Unclear()  # a SIM PIN error needs its ICCID


def test_a_urc_crossing_the_line_is_unclear_not_a_guess():
    assert read(["+CFUN: 1", "+CPIN: READY", "+CPIN: SIM PIN", crsm_line(ICCID)]) == Unclear()


def test_a_refused_form_says_so():
    assert read([], FinalResult("ERROR")) == Unclear(form_refused=True)
    assert read([], FinalResult("CME ERROR", 4)) == Unclear(form_refused=True)
    assert read([], FinalResult("CME ERROR", 100)) == Unclear(form_refused=False)


def test_a_radio_off_reading_needs_no_card():
    reading = read(["+CFUN: 4", "+CPIN: NOT READY"])
    assert reading == IdleReading(4, SimLock.NOT_READY, None)


# --- in the service -------------------------------------------------------------------

@pytest.mark.parametrize("concatenation", [True, False])
def test_a_silent_swap_is_caught_with_or_without_the_one_line_check(gateway, notify_socket, concatenation):
    ours, foreign = make_card(serial_number=1), make_card(serial_number=2, pin_enabled=False)
    with sim_modem(ours, concatenation=concatenation) as (modem, port):
        # Checks every 0.5 s, not 2: the same check, three of them sooner.
        gateway.configure(port, policy="require_pin_enabled = true", service="check_interval = 0.5")
        gateway.store_pin(str(ours.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            # After READY the card's pairing record is read (AT+CRSM), then the checks start.
            start = len(modem.lines)
            wait_until(lambda: any(line.startswith("AT+CFUN?") for line in modem.lines[start:]), 10, "a first check")
            mark = start + next(i for i, line in enumerate(modem.lines[start:]) if line.startswith("AT+CFUN?"))
            wait_until(lambda: len(modem.lines) >= mark + 3, 10, "a few periodic checks")
            checks = modem.lines[mark:]
            if concatenation:
                assert set(checks) == {"AT+CFUN?;+CPIN?;+CRSM=176,12258,0,0,10"}, checks
            else:
                assert not any(";" in line for line in checks[1:]), checks  # refused once, then single commands
            presented = len(pin_presentations(modem.commands))
            with modem._lock:  # swap behind the modem's back: no URC at all
                modem.card = foreign
            wait_until(lambda: modem.radio == 4 and not modem.pdp_active, GATE_CLOSES_WITHIN,
                       "gate closed after a silent swap")
            notify_socket.wait_for("STATUS", "refused: unknown-sim")
            assert len(pin_presentations(modem.commands)) == presented


def test_the_line_leaves_the_uicc_no_reading_to_present_on(gateway):
    """After the periodic line's AT+CPIN?, the UICC layer's own last reading
    is not the latest: a PIN is presented only after it reads the lock again."""
    from mtcd.config import load_config
    from mtcd.secret import Pin
    from mtcd.service import Gateway
    from simfixtures import TEST_PIN

    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        with Gateway(load_config(gateway.config)) as gw:
            gw.start()
            assert gw.uicc.lock() is SimLock.SIM_PIN
            iccid = gw.uicc.iccid()
            radio, signature = gw.idle_reading()
            assert (radio, signature) == (4, (SimLock.SIM_PIN, iccid))
            with pytest.raises(MtcdError):
                gw.uicc.present_pin(Pin(TEST_PIN), iccid)
            assert not pin_presentations(modem.commands) and card.pin_attempts == 3
