"""The simulator behaves like a modem with a real card behind it: driven
through a pty with pyserial, as mtcd drives a modem."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from mtcd.identity import Iccid, Imei, Imsi
from mtcd.sim import PtyModemServer, SimCard, SimulatedModem, redacted
from mtcd.sim.card import CardFileError, pin_block
from mtcd.sim.cli import main as cli_main
from simfixtures import (  # noqa: F401  (fixtures)
    TEST_IMSI,
    TEST_PIN,
    TEST_PUK,
    AtPort,
    make_card,
    make_iccid,
    make_imei,
    sim,
    sim_card,
    sim_cli,
    sim_modem,
)

WRONG = "00000000"


def cpinr(at: AtPort) -> dict[str, int]:
    out = {}
    for line in at.info("AT+CPINR"):
        code, left, _ = line.removeprefix("+CPINR: ").split(",")
        out[code] = int(left)
    return out


# --- PIN counting on the card, through the modem -----------------------------

def test_wrong_pin_costs_an_attempt_and_right_pin_restores_them(sim):
    modem, port = sim
    with AtPort(port) as at:
        assert at.info("AT+CPIN?") == ["+CPIN: SIM PIN"]
        assert at.final(f'AT+CPIN="{WRONG}"') == "+CME ERROR: 16"
        assert cpinr(at)["SIM PIN"] == 2
        assert at.info('AT+CPINR="SIM PIN"') == ["+CPINR: SIM PIN,2,3"]
        assert at.final(f'AT+CPIN="{TEST_PIN}"') == "OK"
        assert at.info("AT+CPIN?") == ["+CPIN: READY"]
        assert cpinr(at) == {"SIM PIN": 3, "SIM PUK": 10, "SIM PIN2": 3, "SIM PUK2": 10}
        # Once READY, the modem refuses a PIN instead of passing it on.
        assert at.final(f'AT+CPIN="{TEST_PIN}"') == "+CME ERROR: 3"


def test_three_wrong_pins_block_and_the_puk_unblocks(sim):
    modem, port = sim
    with AtPort(port) as at:
        for left in (2, 1, 0):
            assert at.final(f'AT+CPIN="{WRONG}"') == "+CME ERROR: 16"
            assert cpinr(at)["SIM PIN"] == left
        assert at.info("AT+CPIN?") == ["+CPIN: SIM PUK"]
        # The right PIN no longer helps.
        assert at.final(f'AT+CPIN="{TEST_PIN}"') == "+CME ERROR: 12"
        assert at.final("AT+CIMI") == "+CME ERROR: 12"
        assert at.final(f'AT+CPIN="99999999","{TEST_PIN}"') == "+CME ERROR: 16"
        assert cpinr(at)["SIM PUK"] == 9
        assert at.final(f'AT+CPIN="{TEST_PUK}","4321"') == "OK"
        assert at.info("AT+CPIN?") == ["+CPIN: READY"]
        assert cpinr(at)["SIM PUK"] == 10 and cpinr(at)["SIM PIN"] == 3
    modem.power_loss()
    with AtPort(port) as at:
        assert at.info("AT+CPIN?") == ["+CPIN: SIM PIN"]
        assert at.final('AT+CPIN="4321"') == "OK"


def test_puk_exhausted_kills_the_card():
    card = make_card(pin_attempts=0, puk_attempts=1)
    with sim_modem(card) as (modem, port), AtPort(port) as at:
        assert at.final(f'AT+CPIN="{WRONG}","1234"') == "+CME ERROR: 16"
        assert card.dead
        assert at.final("AT+CPIN?") == "+CME ERROR: 13"
        assert at.final(f'AT+CPIN="{TEST_PUK}","1234"') == "+CME ERROR: 13"


def test_pin_change_enable_disable(sim):
    modem, port = sim
    card = modem.card
    with AtPort(port) as at:
        assert at.info('AT+CLCK="SC",2') == ["+CLCK: 1"]
        assert at.final(f'AT+CPWD="SC","{WRONG}","1111"') == "+CME ERROR: 16"
        assert card.pin_attempts == 2
        assert at.final(f'AT+CPWD="SC","{TEST_PIN}","1111"') == "OK"
        assert card.pin == "1111" and card.pin_attempts == 3
        assert at.final('AT+CLCK="SC",0,"1111"') == "OK"
        assert at.info('AT+CLCK="SC",2') == ["+CLCK: 0"]
        # A disabled PIN cannot be changed (TS 102 221: CHANGE needs it enabled).
        assert at.final('AT+CPWD="SC","1111","2222"') == "+CME ERROR: 3"
        assert at.final('AT+CLCK="SC",1,"1111"') == "OK"
        assert card.pin_enabled


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["right", "wrong", "puk", "badpuk", "cycle"]), max_size=25))
def test_card_counts_like_a_model(steps):
    card = make_card()
    pin_left, puk_left, verified = 3, 10, False
    for step in steps:
        if step == "right":
            sw = card.verify(TEST_PIN)
            if puk_left and pin_left:
                assert sw == 0x9000
                pin_left, verified = 3, True
            else:
                assert sw == 0x6983
        elif step == "wrong":
            sw = card.verify(WRONG)
            if puk_left and pin_left:
                pin_left -= 1
                assert sw == 0x63C0 | pin_left
                verified = verified and pin_left > 0
            else:
                assert sw == 0x6983
        elif step == "puk":
            sw = card.unblock(TEST_PUK, TEST_PIN)
            assert sw == (0x9000 if puk_left else 0x6983)
            if puk_left:
                pin_left, puk_left, verified = 3, 10, True
        elif step == "badpuk":
            sw = card.unblock("11111111", TEST_PIN)
            if puk_left:
                puk_left -= 1
                assert sw == 0x63C0 | puk_left
            else:
                assert sw == 0x6983
        else:
            card.power_cycle()
            verified = False
        assert (card.pin_attempts, card.puk_attempts, card.verified) == (pin_left, puk_left, verified)


# --- files and APDUs ---------------------------------------------------------

def test_crsm_reads_iccid_before_pin_and_imsi_only_after(sim):
    modem, port = sim
    card = modem.card
    with AtPort(port) as at:
        (line,) = at.info("AT+CRSM=176,12258,0,0,10")
        assert line == f'+CRSM: 144,0,"{card.iccid.to_ef().hex().upper()}"'
        assert Iccid.from_ef(bytes.fromhex(line.split('"')[1])) == card.iccid
        assert at.info("AT+CRSM=176,28423,0,0,9") == ["+CRSM: 105,130"]
        assert at.final("AT+CIMI") == "+CME ERROR: 11"
        assert at.info("AT+CCID") == [f"+CCID: {card.iccid}"]
        at.final(f'AT+CPIN="{TEST_PIN}"')
        (line,) = at.info("AT+CRSM=176,28423,0,0,9")
        assert Imsi.from_ef(bytes.fromhex(line.split('"')[1])).value == TEST_IMSI
        assert at.info("AT+CIMI") == [TEST_IMSI]


def test_csim_verify_without_data_reports_attempts(sim):
    modem, port = sim
    with AtPort(port) as at:
        assert at.info('AT+CSIM=10,"0020000100"') == ['+CSIM: 4,"63C3"']
        assert at.info('AT+CSIM=10,"002C000100"') == ['+CSIM: 4,"63CA"']
        apdu = ("0020000108" + pin_block(WRONG).hex()).upper()
        assert at.info(f'AT+CSIM={len(apdu)},"{apdu}"') == ['+CSIM: 4,"63C2"']
        apdu = ("0020000108" + pin_block(TEST_PIN).hex()).upper()
        assert at.info(f'AT+CSIM={len(apdu)},"{apdu}"') == ['+CSIM: 4,"9000"']
        assert at.info('AT+CSIM=10,"0020000100"') == ['+CSIM: 4,"9000"']
        assert at.info("AT+CPIN?") == ["+CPIN: READY"]
        # Length field counts hex characters; a mismatch is refused.
        assert at.final('AT+CSIM=8,"0020000100"') == "+CME ERROR: 50"


@pytest.mark.parametrize(
    "apdu, sw",
    [
        ("0020", "6700"),  # too short
        ("A020000100", "6E00"),  # GSM class, not a UICC
        ("0012000000", "6D00"),  # unknown instruction
        ("00200002080000", "6700"),  # Lc says 8, 2 bytes follow
        ("0020008100", "6A88"),  # PIN2 is not on this card
        ("00B000000A", "6986"),  # MF selected: no EF to read
        ("00B0870009", "6982"),  # EF.IMSI (SFI 07) before the PIN
        ("00A4000C026F07", "9000"),
        ("00A4000C022FE2", "9000"),
        ("00A4000C029999", "6A82"),
        ("00A4000C023F00", "9000"),
    ],
)
def test_apdu_status_words(apdu, sw):
    card = make_card()
    assert card.apdu(bytes.fromhex(apdu))[-2:].hex().upper() == sw


def test_apdu_select_get_response_and_read_binary():
    card = make_card()
    assert card.apdu(bytes.fromhex("00A40004022FE2")).hex().upper() == "610E"
    fcp = card.apdu(bytes.fromhex("00C000000E"))
    assert fcp[-2:] == b"\x90\x00" and fcp[0] == 0x62
    assert card.apdu(bytes.fromhex("00B0000000")).hex().upper() == "6C0A"
    assert card.apdu(bytes.fromhex("00B000000A")) == card.iccid.to_ef() + b"\x90\x00"
    assert card.apdu(bytes.fromhex("00B0820000"))[-2:] == b"\x6c\x0a"  # SFI 02
    assert card.apdu(bytes.fromhex("0024000110" + pin_block(TEST_PIN).hex() + pin_block("5555").hex()))[-2:] == b"\x90\x00"
    assert card.pin == "5555"
    # MF FCP carries the PIN status template: PIN1 enabled.
    announced = card.apdu(bytes.fromhex("00A40004023F00"))
    assert announced[0] == 0x61
    mf = card.apdu(bytes([0x00, 0xC0, 0x00, 0x00, announced[1]]))
    assert bytes.fromhex("C6069001808301" + "01") in mf


def test_card_state_round_trip(tmp_path):
    card = make_card(pin_enabled=False, pin_attempts=1, puk_attempts=7)
    path = tmp_path / "card.json"
    card.save(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    again = SimCard.load(path)
    assert again.to_dict() == card.to_dict()
    assert not again.verified
    assert TEST_PIN not in repr(again)
    for bad, message in [
        ("{", "not JSON"),
        ("[]", "JSON object"),
        (json.dumps({**card.to_dict(), "pin_attempts": 4}), "PIN attempts"),
        (json.dumps({**card.to_dict(), "iccid": "8949"}), "ICCID"),
        (json.dumps({k: v for k, v in card.to_dict().items() if k != "puk"}), "puk"),
    ]:
        path.write_text(bad)
        with pytest.raises(CardFileError, match=message):
            SimCard.load(path)


# --- modem behaviour -----------------------------------------------------------

def test_echo_and_framing(sim):
    modem, port = sim
    with AtPort(port) as at:
        assert at.raw(b"AT\r") == b"AT\r\r\nOK\r\n"
        assert at.raw(b"AT+CPIN?\r") == b"AT+CPIN?\r\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
        assert at.raw(b"ATE0\r") == b"ATE0\r\r\nOK\r\n"
        assert at.raw(b"AT\r") == b"\r\nOK\r\n"
        assert at.raw(b"\r\n") == b""  # empty line: nothing
        assert at.raw(b"ATE1\r") == b"\r\nOK\r\n"
        assert at.raw(b"AT+NONSENSE\r") == b"AT+NONSENSE\r\r\nERROR\r\n"


def test_error_report_modes(sim):
    modem, port = sim
    with AtPort(port) as at:
        assert at.final("AT+CIMI") == "+CME ERROR: 11"
        at.final("AT+CMEE=2")
        assert at.final("AT+CIMI") == "+CME ERROR: SIM PIN required"
        at.final("AT+CMEE=0")
        assert at.final("AT+CIMI") == "ERROR"


def test_identity_commands(sim):
    modem, port = sim
    with AtPort(port) as at:
        (imei,) = at.info("AT+CGSN")
        assert Imei(imei).value == modem.imei
        assert at.info("AT+CGSN=1") == [f"+CGSN: {modem.imei}"]
        assert at.info("AT+CGSN=2") == [f"+CGSN: {modem.imei[:14]}01"]
        assert at.info("AT+CGMI") == ["mtcd simulator"]


def test_secrets_are_redacted_in_the_command_record(sim):
    modem, port = sim
    verify = ("0020000108" + pin_block(TEST_PIN).hex()).upper()
    with AtPort(port) as at:
        at.command(f'AT+CPIN="{TEST_PIN}"')
        at.command(f'AT+CPWD="SC","{TEST_PIN}","13572468"')
        at.command('AT+CLCK="SC",0,"13572468"')
        at.command('AT+CLCK="SC",2')
        at.command(f'AT+CSIM={len(verify)},"{verify}"')
        at.command('AT+CSIM=10,"0020000100"')
        at.command(f'AT+CPIN="{TEST_PUK}","13572468"')
        at.raw(b"13572468\r")
    text = "\n".join(modem.commands)
    for secret in (TEST_PIN, TEST_PUK, "13572468", pin_block(TEST_PIN).hex().upper()):
        assert secret not in text
    assert modem.commands == [
        "AT+CPIN=<redacted>",
        'AT+CPWD="SC",<redacted>,<redacted>',
        'AT+CLCK="SC",0,<redacted>',
        'AT+CLCK="SC",2',
        'AT+CSIM=26,"0020000108"+<redacted>',
        'AT+CSIM=10,"0020000100"',
        "AT+CPIN=<redacted>,<redacted>",  # the shape of a PUK unblock
        "<non-AT line of 8 characters>",
    ]


@pytest.mark.parametrize(
    "line, record",
    [
        ("AT+CPIN?", "AT+CPIN?"),
        ("AT+CPIN=?", "AT+CPIN=?"),
        ('at+cpin="1234"', "at+cpin=<redacted>"),
        ('AT^CPIN="1234"', "AT^CPIN=<redacted>"),
        ('AT+CPIN="12,34', "AT+CPIN=<redacted>"),  # unbalanced quote
        ('AT+CLCK="SC",1,"1234",7', 'AT+CLCK="SC",1,<redacted>,7'),
        ('AT+CSIM=14,"002C000110"', 'AT+CSIM=14,"002C000110"'),
        ('AT+CSIM=12,"0024000110zz"', "AT+CSIM=12,<redacted>"),
        ('AT+CSIM=14,"00A4000C022FE2"', 'AT+CSIM=14,"00A4000C022FE2"'),
        ("AT+CGDCONT=1,\"IP\",\"apn\"", 'AT+CGDCONT=1,"IP","apn"'),
    ],
)
def test_redaction_rules(line, record):
    assert redacted(line) == record


def test_data_link_needs_radio_and_ready_sim(sim):
    modem, port = sim
    with AtPort(port) as at:
        at.final('AT+CGDCONT=1,"IP","iot.example"')
        assert at.info("AT+CGDCONT?")[0].startswith('+CGDCONT: 1,"IP","iot.example"')
        assert at.final("AT+CGACT=1,1") == "+CME ERROR: 11"
        assert at.final("ATD*99#") == "NO CARRIER"
        at.final(f'AT+CPIN="{TEST_PIN}"')
        at.final("AT+CFUN=4")
        assert at.final("AT+CGATT=1") == "+CME ERROR: 30"
        assert at.info("AT+CFUN?") == ["+CFUN: 4"]
        assert at.info("AT+CREG?") == ["+CREG: 0,0"]
        assert not (modem.pdp_active or modem.attached)
        at.final("AT+CFUN=1")
        assert at.info("AT+CEREG?") == ["+CEREG: 0,1"]
        assert at.final("AT+CGACT=1,1") == "OK"
        assert modem.pdp_active and modem.attached and modem.apn == "iot.example"
        assert at.final("ATD*99***1#") == "CONNECT"
        at.final("AT+CGACT=0,1")
        assert not modem.pdp_active
        at.final("AT+CFUN=0")
        assert modem.radio == 0 and not modem.attached


def test_ready_delay_answers_sim_busy():
    now = [100.0]
    modem = SimulatedModem(make_card(), ready_delay=3.0, clock=lambda: now[0])
    assert modem.handle(f'AT+CPIN="{TEST_PIN}"') == ["OK"]
    assert modem.handle("AT+CPIN?") == ["+CME ERROR: 14"]
    assert modem.handle("AT+CIMI") == ["+CME ERROR: 14"]
    now[0] += 3.0
    assert modem.handle("AT+CPIN?") == ["+CPIN: READY", "OK"]


def test_latency_delays_each_reply():
    with sim_modem(latency=0.15) as (modem, port), AtPort(port) as at:
        started = time.monotonic()
        assert at.final("AT") == "OK"
        assert at.final("AT") == "OK"
        assert time.monotonic() - started >= 0.3


def test_power_loss_forgets_verification_and_settings():
    modem = SimulatedModem(make_card(), power_on_cfun=4)
    assert modem.radio == 4
    modem.handle("AT+CFUN=1")
    modem.handle("ATE0")
    modem.handle(f'AT+CPIN="{TEST_PIN}"')
    modem.power_loss()
    assert (modem.radio, modem.echo) == (4, True)
    assert modem.handle("AT+CPIN?") == ["+CPIN: SIM PIN", "OK"]
    # A modem reset through CFUN does the same.
    modem.handle(f'AT+CPIN="{TEST_PIN}"')
    assert modem.handle("AT+CFUN=1,1") == ["OK"]
    assert modem.handle("AT+CPIN?") == ["+CPIN: SIM PIN", "OK"]


def test_fault_drop_applies_the_change_without_a_reply(sim):
    modem, port = sim
    card = modem.card
    modem.fail_after("AT+CPWD", "drop")
    with AtPort(port, timeout=0.4) as at:
        with pytest.raises(TimeoutError):
            at.command(f'AT+CPWD="SC","{TEST_PIN}","24682468"')
        assert card.pin == "24682468"
        modem.fail_after("AT+CPWD", "before")
        with pytest.raises(TimeoutError):
            at.command('AT+CPWD="SC","24682468","11112222"')
        assert card.pin == "24682468"
        # One-shot: the next one is answered.
        assert at.final('AT+CPWD="SC","24682468","11112222"') == "OK"
    assert modem.commands == ['AT+CPWD="SC",<redacted>,<redacted>'] * 3


@pytest.mark.parametrize(
    "vendor, removed, inserted",
    [
        ("generic", ["+CPIN: NOT INSERTED"], ["+CPIN: SIM PIN"]),
        ("quectel", ["+CPIN: NOT READY"], ["+CPIN: SIM PIN", "+QUSIM: 1"]),
        ("huawei", ["^SIMST: 255"], ["^SIMST: 1"]),
    ],
)
def test_hot_swap_sends_urcs(vendor, removed, inserted):
    card = make_card()
    with sim_modem(card, vendor=vendor) as (modem, port), AtPort(port) as at:
        at.final(f'AT+CPIN="{TEST_PIN}"')
        if vendor == "quectel":
            assert at.unsolicited() == "+CPIN: READY"
        modem.remove_card()
        assert [at.unsolicited() for _ in removed] == removed
        assert at.final("AT+CPIN?") == "+CME ERROR: 10"
        assert at.final("AT+CCID") == "+CME ERROR: 10"
        modem.insert_card(card)
        assert [at.unsolicited() for _ in inserted] == inserted
        assert at.info("AT+CPIN?") == ["+CPIN: SIM PIN"]  # a fresh power-up


@pytest.mark.parametrize("vendor", ["generic", "quectel", "huawei"])
def test_hot_swap_not_reported_sends_no_urc(vendor):
    """A swap the modem keeps to itself (detection switched off, the URC
    lost): the next command's reply is all that comes, with the new card."""
    first, second = make_card(serial_number=1), make_card(serial_number=2)
    with sim_modem(first, vendor=vendor) as (modem, port), AtPort(port) as at:
        assert at.info("AT+CPIN?") == ["+CPIN: SIM PIN"]
        modem.remove_card(report=False)
        modem.insert_card(second, report=False)
        assert at.command("AT+CPIN?") == ["+CPIN: SIM PIN", "OK"]  # no URC before or after it
        assert at.raw(b"", wait=0.3) == b""
    assert modem.card is second


def test_vendor_attempt_commands():
    card = make_card(pin_attempts=2, puk_attempts=9)
    with sim_modem(card, vendor="quectel", has_cpinr=False) as (modem, port), AtPort(port) as at:
        assert at.final("AT+CPINR") == "ERROR"
        assert at.info('AT+QPINC="SC"') == ['+QPINC: "SC",2,9']
        assert at.info("AT+QCCID") == [f"+QCCID: {card.iccid}"]
    modem = SimulatedModem(card, vendor="huawei", has_csim=False, has_crsm=False)
    assert modem.handle("AT^CPIN?") == ["^CPIN: SIM PIN,2,9,2,10,3", "OK"]
    assert modem.handle('AT+CSIM=10,"0020000100"') == ["ERROR"]
    assert modem.handle("AT+CRSM=176,12258,0,0,10") == ["ERROR"]
    assert modem.handle("AT+QPINC?") == ["ERROR"]


def test_port_vanishes_and_comes_back_under_its_link(tmp_path):
    link = tmp_path / "modem"
    with PtyModemServer(SimulatedModem(make_card()), link=link) as server:
        assert os.readlink(link) == server.port
        at = AtPort(str(link))
        assert at.final("AT") == "OK"
        server.close_port()
        assert not link.exists() and not server.is_open
        with pytest.raises(serial.SerialException):
            at.serial.write(b"AT\r")
            at.serial.read(10)
        at.serial.close()
        new_port = server.reopen()
        assert os.readlink(link) == new_port
        with AtPort(str(link)) as again:
            assert again.final("AT") == "OK"
    assert not link.exists()


def test_server_leaves_no_fds_or_threads_behind():
    def fds():
        return len(os.listdir("/proc/self/fd"))

    before_fds, before_threads = fds(), threading.active_count()
    for _ in range(3):
        with sim_modem() as (modem, port):
            with AtPort(port) as at:
                assert at.final("AT") == "OK"
    assert (fds(), threading.active_count()) == (before_fds, before_threads)


# --- the console script ---------------------------------------------------------

def _make_state(tmp_path, *extra: str, pin: str = TEST_PIN) -> str:
    state = tmp_path / "card.json"
    result = subprocess.run(
        [*sim_cli(), "card", "--state", str(state), "--iccid", make_iccid(7), "--imsi", TEST_IMSI, *extra],
        input=f"{pin}\n{TEST_PUK}\n", capture_output=True, text=True, timeout=10,
    )
    assert result.returncode == 0, result.stderr
    assert pin not in result.stdout + result.stderr
    return str(state)


def _serve(state: str, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [*sim_cli(), "serve", "--state", state, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    port = proc.stdout.readline().strip()
    assert port.startswith("/dev/"), proc.stderr.read() if proc.poll() is not None else port
    return proc, port


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return err


def test_cli_serves_and_keeps_card_state_across_restarts(tmp_path):
    state = _make_state(tmp_path)
    imei = make_imei(42)
    proc, port = _serve(state, "--imei", imei, "--vendor", "quectel")
    try:
        with AtPort(port) as at:
            assert at.info("AT+CGSN") == [imei]
            assert at.final(f'AT+CPIN="{WRONG}"') == "+CME ERROR: 16"
            assert at.info('AT+QPINC="SC"') == ['+QPINC: "SC",2,10']
            proc.send_signal(signal.SIGUSR1)
            assert at.unsolicited() == "+CPIN: NOT READY"
            proc.send_signal(signal.SIGUSR2)
            assert at.unsolicited() == "+CPIN: SIM PIN"
    finally:
        err = _stop(proc)
    assert TEST_PIN not in err
    assert json.loads(open(state).read())["pin_attempts"] == 2

    proc, port = _serve(state)
    try:
        with AtPort(port) as at:
            assert at.info('AT+CPINR="SIM PIN"') == ["+CPINR: SIM PIN,2,3"]
            assert at.final(f'AT+CPIN="{TEST_PIN}"') == "OK"
    finally:
        _stop(proc)
    assert SimCard.load(state).pin_attempts == 3

    status = subprocess.run([*sim_cli(), "status", "--state", state], capture_output=True, text=True, timeout=10)
    assert "pin-attempts 3/3" in status.stdout
    assert TEST_PIN not in status.stdout and TEST_PUK not in status.stdout


def test_cli_rejects_bad_input_in_one_line(tmp_path, capsys):
    state = tmp_path / "card.json"
    assert cli_main(["serve", "--state", str(state)]) == 65
    state.write_text("{not json")
    assert cli_main(["serve", "--state", str(state)]) == 65
    assert cli_main(["serve", "--state", str(state), "--vendor", "nokia"]) == 64
    assert cli_main(["serve", "--state", str(state), "--imei", "123456789012345"]) == 64
    assert cli_main(["card", "--state", str(tmp_path / "x"), "--iccid", "8949", "--imsi", TEST_IMSI]) == 64
    assert cli_main([]) == 64
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 6 and all(line.startswith("mtcd-sim: ") for line in err)
    assert "Traceback" not in "".join(err)
    # A bad PIN on stdin is named, not echoed.
    result = subprocess.run(
        [*sim_cli(), "card", "--state", str(tmp_path / "y"), "--iccid", make_iccid(), "--imsi", TEST_IMSI],
        input="12ab\n", capture_output=True, text=True, timeout=10,
    )
    assert result.returncode == 64
    assert result.stderr.strip() == "mtcd-sim: PIN must be digits only"
