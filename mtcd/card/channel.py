"""How APDUs reach the card.  A channel sends one T=0 command (header, P3,
data) and returns the card's raw answer; `transmit` wraps that with the T=0
rules every path needs, in one place: 61xx (fetch the answer with GET
RESPONSE), 6Cxx (send again with the Le the card named).

`session` counts card sessions: it moves on whenever the channel learns
that the card was reset, removed or replaced, so a reading taken in one
session is never acted on in another.
"""

from __future__ import annotations

import logging
from typing import Protocol

from .. import apdu
from ..apdu import Apdu, ApduResponse
from ..at import commands, parsers
from ..errors import CommandFailed, ModemProtocolError, MtcdError

log = logging.getLogger("mtcd.card")

# A card that keeps answering 61xx would loop for ever: a real answer to
# any command here is a few hundred bytes at most.
MAX_GET_RESPONSES = 8
# 6Cxx ("wrong Le, xx available") is only acted on for commands that read:
# sent again with P3 = xx, a VERIFY or UNBLOCK PIN header would announce xx
# bytes of PIN or PUK the card may take as a (wrong) presentation.
RESENT_ON_6C = frozenset({apdu.INS_READ_BINARY, 0xB2, apdu.INS_GET_RESPONSE, 0xF2})  # 0xB2 READ RECORD, 0xF2 STATUS


class CardAbsent(MtcdError):
    """No card in the reader (or the slot)."""

    exit_code = 69
    code = "sim-not-inserted"


class CardReset(ModemProtocolError):
    """The card was reset, removed or replaced since this session's last
    command: anything read before belongs to another card session."""


class CardChannel(Protocol):
    session: int

    def send(self, tpdu: bytes, *, sensitive: bool = False) -> bytes:
        """One command as sent over T=0; the card's answer with SW1 SW2."""

    def close(self) -> None:
        ...


def transmit(channel: CardChannel, command: Apdu) -> ApduResponse:
    """Send `command` and return the whole answer, 61xx and 6Cxx handled."""
    response = _send(channel, command)
    if response.sw1 == 0x6C and not command.data and command.ins in RESENT_ON_6C:
        # Wrong Le: the card says how many bytes it has; ask for exactly those.
        response = _send(channel, Apdu(command.cla, command.ins, command.p1, command.p2,
                                       le=response.sw2 or 256))
    data = response.data
    for _ in range(MAX_GET_RESPONSES):
        if response.sw1 not in (0x61, 0x9F):  # 9Fxx: the same, from a GSM-era card
            break
        response = _send(channel, apdu.get_response(response.sw2 or 256))
        if response.sw1 == 0x6C:
            response = _send(channel, apdu.get_response(response.sw2 or 256))
        data += response.data
    else:
        raise ModemProtocolError("the card keeps announcing more response data")
    return ApduResponse(data, response.sw1, response.sw2)


def _send(channel: CardChannel, command: Apdu) -> ApduResponse:
    raw = channel.send(command.tpdu(), sensitive=command.sensitive)
    response = ApduResponse.parse(raw)
    # The header and status only: a PIN command's data never reaches a log.
    log.debug("APDU %02X %02X %02X %02X -> %04X", command.cla, command.ins, command.p1, command.p2, response.sw)
    return response


class CsimChannel:
    """APDUs through the modem's AT+CSIM (TS 27.007 §8.17).  The modem owns
    the card: its SIM-state URCs end the card session (the service calls
    the UICC's sim_changed, which moves `session` on)."""

    def __init__(self, modem):
        self.modem = modem
        self.session = 1

    def send(self, tpdu: bytes, *, sensitive: bool = False) -> bytes:
        command = commands.generic_sim_access(tpdu, sensitive=sensitive)
        response = self.modem.transport.execute(command)
        if not response.result.ok:
            raise CommandFailed(command.loggable, response.result.kind, response.result.code)
        return parsers.parse_csim(response.lines)

    def card_changed(self) -> None:
        self.session += 1

    def close(self) -> None:
        pass  # the modem's port is the session's, closed with it


__all__ = ["CardAbsent", "CardChannel", "CardReset", "CsimChannel", "transmit"]
