"""The review of what landed today (UICC over APDUs, concatenated command
lines, the card's pairing record): each test is an attack that got through
before its fix.  The card here is the simulator's own (mtcd.sim.card behind
mtcd.sim.vusim's USIM additions), reached through a channel that can break
the way a reader or a modem does."""

from __future__ import annotations

import pytest

from mtcd import apdu
from mtcd.card.channel import CardReset
from mtcd.card.uicc import ApduUicc, CardChangedMidway
from mtcd.errors import ModemProtocolError
from mtcd.secret import Pin
from mtcd.sim.card import sw_bytes
from mtcd.sim.vusim import VirtualUsim
from mtcd.simlock import SimLock
from mtcd.uicc import PresentationRefused
from simfixtures import TEST_PIN, make_card

PIN_INS = (apdu.INS_VERIFY, apdu.INS_CHANGE, apdu.INS_DISABLE, apdu.INS_ENABLE, apdu.INS_UNBLOCK)


class OddCard:
    """A card channel over the simulator's USIM; `fault(tpdu)` may answer in
    the card's place (bytes) or break the exchange (an exception), before
    the card sees the command."""

    def __init__(self, card, fault=None):
        self.usim = VirtualUsim(card)
        self.card = card
        self.fault = fault
        self.session = 1
        self.sent: list[bytes] = []

    def send(self, tpdu: bytes, *, sensitive: bool = False) -> bytes:
        self.sent.append(bytes(tpdu))
        if self.fault is not None:
            answer = self.fault(bytes(tpdu))
            if isinstance(answer, Exception):
                if isinstance(answer, CardReset):
                    self.session += 1
                raise answer
            if answer is not None:
                return answer
        return self.usim.answer(bytes(tpdu))

    def card_changed(self) -> None:
        self.session += 1

    def close(self) -> None:
        pass

    def pin_commands(self) -> list[bytes]:
        return [t for t in self.sent if t[1] in PIN_INS]


def _bare_query(tpdu: bytes) -> bool:
    """VERIFY or UNBLOCK PIN without data, as the lock reading sends it."""
    return tpdu[1] in (apdu.INS_VERIFY, apdu.INS_UNBLOCK) and len(tpdu) == 5


# --- 6Cxx on a PIN command ---------------------------------------------------

def test_6cxx_to_a_bare_pin_query_never_resends_a_pin_header_with_a_length():
    """A card answering 6C08 ("wrong length, 8 available") to VERIFY and
    UNBLOCK PIN without data: sent again with P3 = 08, the header announces
    a PIN block (or a PUK and a new PIN) the card may count as a wrong
    presentation.  Only reading commands are sent again on 6Cxx."""
    card = make_card()
    channel = OddCard(card, lambda t: sw_bytes(0x6C08) if _bare_query(t) else None)
    uicc = ApduUicc(channel, settle_time=0)
    uicc.lock(settle=False)
    uicc.attempts()
    uicc.puk_attempts()
    sent = channel.pin_commands()
    assert sent, "the test must reach the card's PIN commands"
    assert all(len(t) == 5 and t[4] == 0 for t in sent), [t.hex() for t in sent]
    assert (card.pin_attempts, card.puk_attempts) == (3, 10)


def test_6cxx_still_fetches_what_a_reading_command_has():
    """The fix keeps 6Cxx for READ BINARY: EF.ICCID read with a wrong Le."""
    card = make_card()
    channel = OddCard(card)
    uicc = ApduUicc(channel, settle_time=0)
    assert uicc.iccid() == card.iccid


# --- the last look before a PIN goes out ----------------------------------------

def _asking_card_uicc(fault_after):
    """A SIM PIN card read as the gate reads it; `fault_after` then breaks
    the exchanges that follow (the last look before the PIN)."""
    card = make_card()
    armed = []
    channel = OddCard(card, lambda t: fault_after(t) if armed else None)
    uicc = ApduUicc(channel, settle_time=0)
    assert uicc.lock(settle=False) is SimLock.SIM_PIN
    iccid = uicc.iccid()
    assert uicc.attempts().pin1 == 3
    assert uicc.may_present(iccid)
    armed.append(True)
    return card, channel, uicc, iccid


@pytest.mark.parametrize("break_with", [
    lambda: CardReset("vpcd: the card was reset"),  # what the PC/SC channel raises
    lambda: ModemProtocolError("AT+CSIM: response has no status word"),  # a garbled +CSIM
])
def test_a_reset_during_the_last_look_is_a_refusal_that_takes_the_marker_back(break_with):
    """pcsc: SCARD_W_RESET_CARD on the last VERIFY without data (before the
    PIN); csim: an unreadable answer.  Nothing was sent, and the gate takes
    its attempt marker back only on PresentationRefused: anything else left
    a marker for a presentation that never happened."""
    card, channel, uicc, iccid = _asking_card_uicc(lambda t: break_with() if _bare_query(t) else None)
    with pytest.raises(PresentationRefused) as raised:
        uicc.present_pin(Pin(TEST_PIN), iccid)
    assert isinstance(raised.value, CardChangedMidway)
    assert [t for t in channel.pin_commands() if len(t) > 5] == []  # no PIN went out
    assert card.pin_attempts == 3 and not card.verified


# --- a lost answer to VERIFY, and another card in the slot -----------------------

WRONG_PIN = "97531"


def test_a_lost_verify_answer_is_not_settled_as_accepted_by_another_card(gateway):
    """The card takes VERIFY (a wrong PIN: its counter falls), then the answer
    is lost to a removal (pcsc: SCARD_E_NOT_TRANSACTED), and by the gate's
    next reading a PIN-less card is in the reader, READY.  Before the fix the
    gate read that READY as "the answer was lost but the card unlocked: it
    took this PIN": the wrong PIN was recorded as accepted (its rejection
    forgotten, to be presented again) and the other card Paired under the
    first card's ICCID."""
    from mtcd.config import load_config
    from mtcd.gate import pair
    from mtcd.identity import Imei
    from mtcd.service import policy_settings

    first = make_card()
    other = make_card(serial_number=2, pin_enabled=False)
    channel = OddCard(first)

    def lost_after_the_card_took_it(tpdu: bytes):
        if tpdu[1] == apdu.INS_VERIFY and len(tpdu) > 5:
            channel.usim.answer(tpdu)  # the first card counts it...
            channel.usim = VirtualUsim(other)  # ...and is gone; another is inserted
            return CardReset("vpcd: Transaction failed.")
        return None

    channel.fault = lost_after_the_card_took_it
    gateway.configure("/dev/null")
    keystore = gateway.keystore()
    keystore.set_pin(first.iccid, Pin(WRONG_PIN))
    config = load_config(gateway.config)
    uicc = ApduUicc(channel, settle_time=0)

    outcome = pair(uicc, keystore, policy_settings(config), Imei("490154203237518"), None)

    assert first.pin_attempts == 2  # the PIN did reach the first card, which refused it
    assert not outcome.paired, outcome
    entry = keystore.get(first.iccid)
    assert entry.rejected or entry.unsettled or entry.attempt_started, entry  # kept to be settled, never accepted


# --- a concatenated line that fails while the SIM changes -----------------------

class _PartlyRunningModemPort:
    """A modem that runs AT+CGDCONT of the line `AT+CGDCONT=...;+CGACT=1,1`,
    sends a SIM-state URC (read before the line's final result, as a reader
    thread hands it on) and ends the line with a plain ERROR."""

    def __init__(self):
        self.sent: list[str] = []
        self.port = "/dev/ttyTEST"
        self.on_urc = None

    def execute(self, command, timeout=None):
        from mtcd.at.reader import FinalResult, Response

        self.sent.append(command.loggable)
        if ";" in command.text:
            self.on_urc("+CPIN: NOT INSERTED")
            return Response(command, (), FinalResult("ERROR"))
        return Response(command, (), FinalResult("OK"))


def test_no_pdp_activation_alone_after_a_sim_change_during_the_line():
    """The fallback of a refused concatenated line sends its commands one by
    one.  A SIM-state URC that crossed the line means the card in the slot
    may not be the paired one: AT+CGACT=1,1 is then not sent again (the
    link fails, the gate's check pairs the new card first), guarantee 3."""
    from mtcd.datalink.base import AtDatalink, DatalinkFailed
    from mtcd.modem import Modem
    from mtcd.policy import Paired
    from mtcd.vendors import dialect_named

    port = _PartlyRunningModemPort()
    modem = Modem(port, dialect_named("generic"))
    modem.radio_on = False

    def urc(line):  # what Gateway._unsolicited does with a SIM-state URC
        if modem.dialect.sim_event(line) is not None:
            modem.sim_events = getattr(modem, "sim_events", 0) + 1

    port.on_urc = urc
    link = AtDatalink(modem, "iot.example")
    with pytest.raises(DatalinkFailed):
        link._bring_up()
    assert not any(c.startswith("AT+CGACT=1,1") for c in port.sent), port.sent
    assert sum("CGACT=1,1" in c for c in port.sent) == 1  # the line's own, which the modem refused


def test_the_gateway_counts_sim_state_urcs_for_the_modem(tmp_path):
    """The counter the fallback looks at is the one the service's URC
    handler moves (also without a UICC yet)."""
    from mtcd.config import load_config
    from mtcd.service import Gateway

    config = tmp_path / "mtcd.toml"
    config.write_text(f'state_dir = "{tmp_path}/state"\n[modem]\nport = "/dev/null"\n')
    gw = Gateway(load_config(config))
    before = gw.modem.sim_events
    gw._unsolicited("+CPIN: NOT INSERTED")
    gw._unsolicited("+CSQ: 10,99")
    assert gw.modem.sim_events == before + 1


# --- attacks that held (kept as guards) --------------------------------------------

def test_a_card_saying_9000_to_the_attempts_query_never_gets_a_pin_below_the_guard():
    """VERIFY without data answers 9000 once, between the lock reading (63C1:
    one attempt left) and the attempts reading, which then reports no
    count (a verified PIN's count is not told; once it read 3, a guess).
    The last look before the PIN sees 63C1, not the unknown count the
    policy was shown (which rule 5 lets through once): nothing is presented."""
    card = make_card(pin_attempts=1)
    bare = []

    def once_9000(tpdu):
        if tpdu[1] == apdu.INS_VERIFY and len(tpdu) == 5:
            bare.append(tpdu)
            if len(bare) == 2:  # the attempts query
                return sw_bytes(0x9000)
        return None

    channel = OddCard(card, once_9000)
    uicc = ApduUicc(channel, settle_time=0)
    assert uicc.lock(settle=False) is SimLock.SIM_PIN
    iccid = uicc.iccid()
    assert uicc.attempts().pin1 is None  # the card's 9000 gives no count
    with pytest.raises(CardChangedMidway):
        uicc.present_pin(Pin(TEST_PIN), iccid)
    assert [t for t in channel.pin_commands() if len(t) > 5] == []
    assert card.pin_attempts == 1


@pytest.mark.parametrize("sw", [0x63C0, 0x6983, 0x6984, 0x6A82, 0x6F00, 0x6C08])
def test_odd_answers_to_the_lock_query_never_read_as_sim_pin_ready_to_present(sw):
    """63C0, blocked, invalidated, not found, no diagnosis, wrong length: none
    of them lets a PIN out."""
    card = make_card()
    channel = OddCard(card, lambda t: sw_bytes(sw) if _bare_query(t) and t[1] == apdu.INS_VERIFY else None)
    uicc = ApduUicc(channel, settle_time=0)
    lock = uicc.lock(settle=False)
    iccid = uicc.iccid()
    assert lock is not SimLock.SIM_PIN and not uicc.may_present(iccid)
    with pytest.raises(PresentationRefused):
        uicc.present_pin(Pin(TEST_PIN), iccid)
    assert [t for t in channel.pin_commands() if len(t) > 5] == []


def test_an_iccid_that_reads_otherwise_at_the_last_look_gets_no_pin():
    """A modem that missed a swap (no URC, the card session never moved): the
    card now answers another ICCID, the same SIM PIN and the same count."""
    card = make_card()
    channel = OddCard(card)
    uicc = ApduUicc(channel, settle_time=0)
    assert uicc.lock(settle=False) is SimLock.SIM_PIN
    iccid = uicc.iccid()
    assert uicc.attempts().pin1 == 3
    other = make_card(serial_number=7)
    channel.usim = VirtualUsim(other)
    with pytest.raises(CardChangedMidway):
        uicc.present_pin(Pin(TEST_PIN), iccid)
    assert [t for t in channel.pin_commands() if len(t) > 5] == []
    assert (card.pin_attempts, other.pin_attempts) == (3, 3)
