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
