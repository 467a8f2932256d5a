"""The UICC layer against the simulated modem through a real pty: the last
line of defence before a PIN goes out, lock-state reading, the outcome of a
presentation, and the fallbacks for counters and identity."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest

from conftest import pin_presentations
from mtcd.errors import ModemProtocolError
from mtcd.identity import Iccid
from mtcd.modem import Modem
from mtcd.policy import PinOutcome
from mtcd.secret import Pin
from mtcd.sim import PtyModemServer, SimulatedModem
from mtcd.simlock import SimLock
from mtcd.transport import SerialTransport
from mtcd.uicc import PresentationRefused, Uicc
from mtcd.vendors import dialect_named
from simfixtures import TEST_IMSI, TEST_PIN, make_card, make_iccid
from test_transport import PtyPeer

WRONG_PIN = "11112222"


@contextlib.contextmanager
def sim_uicc(card, *, dialect: str = "generic", settle_time: float = 2.0, initialise: bool = True, **options):
    """(simulated modem, server, Uicc) over a real pty."""
    sim = SimulatedModem(card, **options)
    with PtyModemServer(sim) as server, SerialTransport(server.port, timeout=2) as transport:
        modem = Modem(transport, dialect_named(dialect))
        if initialise:
            modem.initialise()
        yield sim, server, Uicc(modem, settle_time=settle_time, poll_interval=0.05)


def ready_to_present(uicc: Uicc) -> Iccid:
    """What the gate does before a presentation: lock state, then ICCID."""
    assert uicc.lock() is SimLock.SIM_PIN
    iccid = uicc.iccid()
    assert iccid is not None
    return iccid


# --- the last line of defence ---------------------------------------------------

def test_presents_when_everything_matches():
    """The positive control for the refusals below."""
    card = make_card()
    with sim_uicc(card) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        assert uicc.present_pin(Pin(TEST_PIN), iccid) is PinOutcome.ACCEPTED
        assert pin_presentations(sim.commands) == ["AT+CPIN=<redacted>"]
        assert card.verified


def test_refused_when_the_lock_state_was_never_read():
    card = make_card()
    with sim_uicc(card) as (sim, _, uicc):
        iccid = uicc.iccid()
        assert iccid == card.iccid
        with pytest.raises(PresentationRefused, match="exactly SIM PIN"):
            uicc.present_pin(Pin(TEST_PIN), iccid)
        assert pin_presentations(sim.commands) == []
        assert card.pin_attempts == 3 and not card.verified


@pytest.mark.parametrize("state, card", [
    (SimLock.READY, lambda: make_card(pin_enabled=False)),
    (SimLock.SIM_PUK, lambda: make_card(pin_attempts=0)),
])
def test_refused_unless_the_card_asks_for_exactly_sim_pin(state, card):
    card = card()
    with sim_uicc(card) as (sim, _, uicc):
        assert uicc.lock() is state
        iccid = uicc.iccid()
        assert iccid == card.iccid  # only the lock state is wrong
        with pytest.raises(PresentationRefused, match="exactly SIM PIN"):
            uicc.present_pin(Pin(TEST_PIN), iccid)
        assert pin_presentations(sim.commands) == []
        assert [c for c in sim.commands if c.startswith("AT+CSIM=") and "redacted" in c] == []


def _peer_modem(cpin_code: str):
    """A modem of our own whose card answers AT+CPIN? with `cpin_code`
    (codes the simulated card cannot be put into)."""
    iccid = make_iccid(7)

    def answer(line: str) -> bytes:
        if line == "AT+CPIN?":
            return f"\r\n+CPIN: {cpin_code}\r\n\r\nOK\r\n".encode()
        if line == "AT+CCID":
            return f"\r\n+CCID: {iccid}\r\n\r\nOK\r\n".encode()
        if line.startswith("AT+CRSM"):
            return b"\r\n+CME ERROR: 4\r\n"
        return b"\r\nOK\r\n"

    return PtyPeer(answer), Iccid(iccid)


@pytest.mark.parametrize("code, lock", [
    ("PH-SIM PIN", SimLock.PH_SIM_PIN),
    ("SIM PIN2", SimLock.SIM_PIN2),
    ("PH-NET PIN", SimLock.PH_NET_PIN),
    ("SIM PIN LOCKED", SimLock.OTHER),
])
def test_refused_for_other_codes_that_ask_for_a_pin(code, lock):
    peer, iccid = _peer_modem(code)
    with peer, SerialTransport(peer.port, timeout=2) as transport:
        uicc = Uicc(Modem(transport), settle_time=0)
        assert uicc.lock() is lock
        assert uicc.iccid() == iccid
        with pytest.raises(PresentationRefused):
            uicc.present_pin(Pin(TEST_PIN), iccid)
        time.sleep(0.05)
    assert [line for line in peer.received if line.startswith("AT+CPIN=")] == []
    assert "AT+CPIN?" in peer.received


def test_the_peer_modem_does_receive_a_pin_for_sim_pin():
    """Control for the test above: same peer, `SIM PIN`, the PIN goes out."""
    peer, iccid = _peer_modem("SIM PIN")
    with peer, SerialTransport(peer.port, timeout=2) as transport:
        uicc = Uicc(Modem(transport), settle_time=0)
        assert uicc.lock() is SimLock.SIM_PIN and uicc.iccid() == iccid
        assert uicc.present_pin(Pin(TEST_PIN), iccid) is PinOutcome.ACCEPTED
    assert [line for line in peer.received if line.startswith("AT+CPIN=")] == [f'AT+CPIN="{TEST_PIN}"']


def test_refused_when_the_iccid_was_not_read():
    card = make_card()
    with sim_uicc(card) as (sim, _, uicc):
        assert uicc.lock() is SimLock.SIM_PIN
        with pytest.raises(PresentationRefused, match="ICCID"):
            uicc.present_pin(Pin(TEST_PIN), card.iccid)
        assert pin_presentations(sim.commands) == []


def test_refused_for_a_pin_looked_up_for_another_iccid():
    card = make_card(serial_number=1)
    with sim_uicc(card) as (sim, _, uicc):
        ready_to_present(uicc)
        with pytest.raises(PresentationRefused, match="ICCID"):
            uicc.present_pin(Pin(TEST_PIN), Iccid(make_iccid(2)))
        assert pin_presentations(sim.commands) == []
        assert card.pin_attempts == 3


def test_refused_after_the_sim_changed():
    card = make_card()
    with sim_uicc(card) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        uicc.sim_changed()
        with pytest.raises(PresentationRefused):
            uicc.present_pin(Pin(TEST_PIN), iccid)
        assert pin_presentations(sim.commands) == []
        # Reading both again makes it possible again.
        assert ready_to_present(uicc) == iccid
        assert uicc.present_pin(Pin(TEST_PIN), iccid) is PinOutcome.ACCEPTED


def test_a_lock_reading_is_good_for_one_presentation_only():
    card = make_card()
    with sim_uicc(card) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        assert uicc.present_pin(Pin(WRONG_PIN), iccid) is PinOutcome.REJECTED
        with pytest.raises(PresentationRefused):
            uicc.present_pin(Pin(WRONG_PIN), iccid)
        assert len(pin_presentations(sim.commands)) == 1
        assert card.pin_attempts == 2


def test_a_swapped_card_is_not_the_card_whose_lock_was_read():
    one, two = make_card(serial_number=1), make_card(serial_number=2)
    with sim_uicc(one) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        sim.remove_card()
        sim.insert_card(two)
        # The service hears the URC and tells the UICC layer.
        uicc.sim_changed()
        assert uicc.lock() is SimLock.SIM_PIN
        assert uicc.iccid() == two.iccid != iccid
        with pytest.raises(PresentationRefused):
            uicc.present_pin(Pin(TEST_PIN), iccid)
        assert pin_presentations(sim.commands) == []


# --- reading the lock state --------------------------------------------------------

def test_lock_waits_through_sim_busy_after_unlock():
    card = make_card()
    with sim_uicc(card, ready_delay=0.6, settle_time=3) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        assert uicc.present_pin(Pin(TEST_PIN), iccid) is PinOutcome.ACCEPTED
        started = time.monotonic()
        assert uicc.lock() is SimLock.READY
        assert 0.4 < time.monotonic() - started < 2
        polls = sim.commands[sim.commands.index("AT+CPIN=<redacted>") + 1:]
        assert polls.count("AT+CPIN?") >= 3


def test_lock_gives_up_waiting_for_a_busy_sim_in_bounded_time():
    card = make_card()
    with sim_uicc(card, ready_delay=30, settle_time=0.3) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        assert uicc.present_pin(Pin(TEST_PIN), iccid) is PinOutcome.ACCEPTED
        started = time.monotonic()
        assert uicc.lock() is SimLock.BUSY
        assert time.monotonic() - started < 1.5
        # BUSY is not SIM PIN: nothing more goes out.
        with pytest.raises(PresentationRefused):
            uicc.present_pin(Pin(TEST_PIN), iccid)
        assert len(pin_presentations(sim.commands)) == 1


@pytest.mark.parametrize("cmee", [1, 2])
def test_no_card_is_not_inserted(cmee):
    # CMEE=1 numeric (+CME ERROR: 10), CMEE=2 verbose (SIM not inserted).
    with sim_uicc(None, cmee=cmee, initialise=False) as (sim, _, uicc):
        assert uicc.lock() is SimLock.NOT_INSERTED
        assert uicc.iccid() is None
        assert uicc.attempts() is None
        assert uicc.pin_enabled() is None


def test_plain_error_is_a_failure_not_a_missing_card():
    with sim_uicc(None, cmee=0, initialise=False) as (sim, _, uicc):
        assert uicc.lock() is SimLock.FAILURE


def _cpin_peer(*replies: str):
    """A modem of our own answering successive AT+CPIN? with `replies`
    (the last one repeated), and AT+CCID with a fixed ICCID."""
    iccid = make_iccid(9)
    asked = []

    def answer(line: str) -> bytes:
        if line == "AT+CPIN?":
            asked.append(line)
            return replies[min(len(asked), len(replies)) - 1].encode()
        if line == "AT+CCID":
            return f"\r\n+CCID: {iccid}\r\n\r\nOK\r\n".encode()
        if line.startswith("AT+CRSM"):
            return b"\r\n+CME ERROR: 4\r\n"
        return b"\r\nOK\r\n"

    return PtyPeer(answer), Iccid(iccid)


MERGED = "\r\n+CPIN: NOT INSERTED\r\n\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
SIM_PIN = "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"
GARBLED = "\r\n+CPIN: \r\n\r\nOK\r\n"


def test_a_urc_merged_into_the_lock_reply_is_asked_again():
    # A SIM-state URC that crossed our AT+CPIN? carries its prefix and so
    # lands in the reply: two codes.  Guessing is wrong; asking again is right.
    peer, iccid = _cpin_peer(MERGED, SIM_PIN)
    with peer, SerialTransport(peer.port, timeout=2) as transport:
        uicc = Uicc(Modem(transport), settle_time=2, poll_interval=0.05)
        assert uicc.lock() is SimLock.SIM_PIN
    assert peer.received.count("AT+CPIN?") == 2


def test_a_lock_reply_that_stays_unreadable_is_bounded():
    peer, iccid = _cpin_peer(MERGED)
    with peer, SerialTransport(peer.port, timeout=2) as transport:
        uicc = Uicc(Modem(transport), settle_time=0.3, poll_interval=0.05)
        started = time.monotonic()
        with pytest.raises(ModemProtocolError, match="conflicting"):
            uicc.lock()
        assert time.monotonic() - started < 1.5


def test_a_failed_lock_reading_leaves_no_earlier_sim_pin_behind():
    # SIM PIN once, then a reply that cannot be read: the SIM PIN seen
    # before is no longer "the most recent AT+CPIN?", so no PIN goes out.
    peer, iccid = _cpin_peer(SIM_PIN, GARBLED)
    with peer, SerialTransport(peer.port, timeout=2) as transport:
        uicc = Uicc(Modem(transport), settle_time=0)
        assert uicc.lock() is SimLock.SIM_PIN and uicc.iccid() == iccid
        with pytest.raises(ModemProtocolError):
            uicc.lock()
        with pytest.raises(PresentationRefused):
            uicc.present_pin(Pin(TEST_PIN), iccid)
        time.sleep(0.05)
    assert [line for line in peer.received if line.startswith("AT+CPIN=")] == []


def test_card_pulled_after_the_lock_was_read():
    card = make_card()
    with sim_uicc(card) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        sim.remove_card()
        assert uicc.lock() is SimLock.NOT_INSERTED
        with pytest.raises(PresentationRefused):
            uicc.present_pin(Pin(TEST_PIN), iccid)
        assert pin_presentations(sim.commands) == []


# --- what a presentation did -------------------------------------------------------

def test_right_pin_is_accepted():
    card = make_card(pin_attempts=2)
    with sim_uicc(card) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        assert uicc.present_pin(Pin(TEST_PIN), iccid) is PinOutcome.ACCEPTED
        assert card.verified and card.pin_attempts == 3
        assert uicc.lock() is SimLock.READY


def test_wrong_pin_is_rejected_and_costs_one_attempt():
    card = make_card()
    with sim_uicc(card) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        assert uicc.present_pin(Pin(WRONG_PIN), iccid) is PinOutcome.REJECTED
        assert card.pin_attempts == 2 and not card.verified
        assert uicc.lock() is SimLock.SIM_PIN


def test_wrong_pin_on_the_last_attempt_is_rejected():
    card = make_card(pin_attempts=1)
    with sim_uicc(card) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        assert uicc.present_pin(Pin(WRONG_PIN), iccid) is PinOutcome.REJECTED
        assert card.pin_attempts == 0
        assert uicc.lock() is SimLock.SIM_PUK


def test_no_answer_is_unknown():
    """The card acts but the answer is lost: the modem goes away (power cut,
    USB reset) after the PIN went out.  (A silent port that stays would end
    the same way, after the command's 20 s.)"""
    card = make_card()
    with sim_uicc(card) as (sim, server, uicc):
        iccid = ready_to_present(uicc)
        sim.fail_after("AT+CPIN=", "drop")

        def unplug_once_the_pin_is_out():
            deadline = time.monotonic() + 5
            while not pin_presentations(sim.commands) and time.monotonic() < deadline:
                time.sleep(0.01)
            server.close_port()

        unplug = threading.Thread(target=unplug_once_the_pin_is_out)
        unplug.start()
        started = time.monotonic()
        assert uicc.present_pin(Pin(TEST_PIN), iccid) is PinOutcome.UNKNOWN
        assert time.monotonic() - started < 3
        unplug.join()
    assert card.verified  # it did act: UNKNOWN, never REJECTED


def test_an_answer_that_says_nothing_about_the_pin_is_unknown():
    card = make_card()
    with sim_uicc(card) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        card.verify(TEST_PIN)  # someone else unlocked it meanwhile: +CME ERROR: 3
        assert uicc.present_pin(Pin(TEST_PIN), iccid) is PinOutcome.UNKNOWN
        assert card.pin_attempts == 3


# --- counters, identity ----------------------------------------------------------------

@pytest.mark.parametrize("dialect, options, source", [
    ("generic", {}, "+CPINR"),
    ("generic", {"has_cpinr": False}, "+CSIM VERIFY"),
    ("quectel", {"vendor": "quectel", "has_cpinr": False}, "+QPINC"),
    ("quectel", {"vendor": "quectel", "has_cpinr": False, "has_csim": False}, "+QPINC"),
    ("huawei", {"vendor": "huawei", "has_cpinr": False}, "^CPIN"),
    ("huawei", {"vendor": "huawei", "has_cpinr": False, "has_csim": False}, "^CPIN"),
])
def test_attempts_fall_back_in_order(dialect, options, source):
    card = make_card(pin_attempts=2)
    with sim_uicc(card, dialect=dialect, **options) as (sim, _, uicc):
        attempts = uicc.attempts()
        assert attempts is not None
        assert attempts.pin1 == 2 and attempts.source == source
        if source in ("+QPINC", "^CPIN"):
            assert attempts.puk1 == 10
        asked = [c for c in sim.commands if c.startswith(("AT+CPINR", "AT+QPINC", "AT^CPIN", "AT+CSIM"))]
        assert asked[0].startswith("AT+CPINR")  # the standard command first
        assert not any(c.startswith("AT+CSIM") for c in asked) or source == "+CSIM VERIFY"
        assert card.pin_attempts == 2  # asking costs nothing


def test_attempts_are_none_when_nothing_reports_them():
    card = make_card(pin_attempts=2)
    with sim_uicc(card, has_cpinr=False, has_csim=False) as (sim, _, uicc):
        assert uicc.attempts() is None
        assert card.pin_attempts == 2


def test_csim_gives_no_count_for_a_verified_card():
    card = make_card()
    with sim_uicc(card, has_cpinr=False) as (sim, _, uicc):
        iccid = ready_to_present(uicc)
        assert uicc.attempts().pin1 == 3
        assert uicc.present_pin(Pin(TEST_PIN), iccid) is PinOutcome.ACCEPTED
        assert uicc.attempts() is None  # 9000: verified, no counter to read


@pytest.mark.parametrize("dialect, options, command", [
    ("generic", {}, "AT+CRSM=176,12258,0,0,10"),
    ("generic", {"has_crsm": False}, "AT+CCID"),
    ("quectel", {"vendor": "quectel", "has_crsm": False}, "AT+QCCID"),
    ("huawei", {"vendor": "huawei", "has_crsm": False}, "AT^ICCID?"),
])
def test_iccid_sources(dialect, options, command):
    card = make_card(serial_number=42)
    with sim_uicc(card, dialect=dialect, **options) as (sim, _, uicc):
        assert uicc.iccid() == card.iccid
        assert sim.commands[-1] == command


@pytest.mark.parametrize("enabled", [True, False])
def test_pin_enabled(enabled):
    card = make_card(pin_enabled=enabled)
    with sim_uicc(card) as (sim, _, uicc):
        assert uicc.pin_enabled() is enabled


def test_imsi_only_after_unlock():
    card = make_card()
    with sim_uicc(card) as (sim, _, uicc):
        assert uicc.imsi() is None
        iccid = ready_to_present(uicc)
        assert uicc.present_pin(Pin(TEST_PIN), iccid) is PinOutcome.ACCEPTED
        assert uicc.lock() is SimLock.READY
        imsi = uicc.imsi()
        assert imsi is not None and str(imsi) == TEST_IMSI
