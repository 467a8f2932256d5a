"""The card's pairing record read in APDUs, over a PC/SC reader or the
modem's AT+CSIM: the thin edge of mtcd.pairing_record (which orders the
reads and decodes them) for the APDU backends, as mtcd.pairing_record_at
is for AT+CRSM.

Each read selects ADF.USIM by its AID (from EF.DIR, as mtcd.card.uicc
does), then the EF by its file identifier, then reads it.  Only SELECT,
GET RESPONSE, READ BINARY and READ RECORD go to the card: nothing here
presents a PIN, asks a counter or changes the card's state.  A reading
that a reset or a swap crosses stops there, so a record never mixes two
cards' answers.
"""

from __future__ import annotations

from .. import apdu
from ..errors import CommandFailed, ModemProtocolError, ModemUnavailable
from ..pairing_record import MAX_RECORDS, CardPairingRecord, FileAccessError, read_pairing_record
from . import files
from .channel import CardAbsent, transmit

# The commands a reading may send (INS): SELECT, GET RESPONSE, READ BINARY, READ RECORD.
READ_ONLY_INS = frozenset({apdu.INS_SELECT, apdu.INS_GET_RESPONSE, apdu.INS_READ_BINARY, files.INS_READ_RECORD})


class ApduFiles:
    """mtcd.pairing_record.CardFiles over an mtcd.card.uicc.ApduUicc's channel."""

    def __init__(self, uicc):
        self.uicc = uicc
        self.session = uicc.channel.session
        # Whether the card answered anything (a status word): an AT+CSIM
        # the modem refused tells of no card.
        self.card_answered = False

    def _ask(self, fid: int, command: apdu.Apdu | None = None) -> tuple[int, bytes]:
        channel = self.uicc.channel
        try:
            if channel.session != self.session:
                raise FileAccessError("the card was reset or replaced during the reading", fatal=True)
            self.uicc.select_usim()
            answer = transmit(channel, apdu.select_file(fid))
            if command is not None and answer.ok:
                answer = transmit(channel, command)
        except CardAbsent as exc:
            raise FileAccessError(str(exc), fatal=True) from None
        except ModemUnavailable as exc:  # the reader or the modem's port went away
            raise FileAccessError(str(exc), fatal=True) from None
        except CommandFailed as exc:
            raise FileAccessError(f"AT+CSIM: {exc.result}") from None
        except ModemProtocolError as exc:
            # A reset crossed the command (CardReset) or an answer made no sense.
            fatal = channel.session != self.session
            raise FileAccessError("the card was reset or replaced during the reading" if fatal else str(exc),
                                  fatal=fatal) from None
        if channel.session != self.session:
            raise FileAccessError("the card was reset or replaced during the reading", fatal=True)
        self.card_answered = True
        return answer.sw, answer.data

    def header(self, fid: int) -> tuple[int, bytes]:
        return self._ask(fid)

    def read_binary(self, fid: int, offset: int, length: int) -> tuple[int, bytes]:
        return self._ask(fid, apdu.read_binary(offset, length))

    def read_record(self, fid: int, number: int, length: int) -> tuple[int, bytes]:
        # Length unknown (no usable header): Le 00, and the card's 6Cxx names it.
        return self._ask(fid, files.read_record(number, length or 256))


def read_over_apdu(uicc, limit: int = MAX_RECORDS) -> CardPairingRecord:
    """The card's pairing record through `uicc`'s channel (PC/SC or AT+CSIM)."""
    return read_pairing_record(ApduFiles(uicc), limit)
