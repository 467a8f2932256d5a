"""The card's pairing record read through the modem with AT+CRSM (27.007
§8.18): GET RESPONSE, READ BINARY and READ RECORD on EFs of ADF.USIM,
selected by path.  The thin edge of mtcd.pairing_record; nothing here
writes to the card, presents a PIN, or changes the modem's state.
"""

from __future__ import annotations

from .at import commands, parsers
from .errors import CommandFailed, ModemProtocolError, ModemUnavailable
from .modem import Modem
from .pairing_record import CardPairingRecord, FileAccessError, MAX_RECORDS, read_pairing_record
from .pairing_record import journal_fields as record_journal_fields

GET_RESPONSE, READ_BINARY, READ_RECORD = 192, 176, 178
_ABSOLUTE = 0x04  # READ RECORD P2: absolute mode, record number in P1


class CrsmFiles:
    """mtcd.pairing_record.CardFiles over AT+CRSM."""

    def __init__(self, modem: Modem):
        self.modem = modem
        # Whether any answer told of a card (its status words, or a +CME
        # ERROR about the SIM): a plain ERROR from the modem tells of none.
        self.card_answered = False

    def _crsm(self, command: int, fid: int, p1: int = 0, p2: int = 0, p3: int = 0) -> tuple[int, bytes]:
        try:
            sw1, sw2, data = parsers.parse_crsm(
                self.modem.run(commands.usim_file_access(command, fid, p1, p2, p3)).lines)
        except CommandFailed as exc:
            self.card_answered = self.card_answered or exc.cme is not None or "CME" in exc.result
            raise FileAccessError(f"AT+CRSM: {exc.result}") from None
        except ModemProtocolError as exc:
            raise FileAccessError(str(exc)) from None
        except ModemUnavailable as exc:
            raise FileAccessError(str(exc), fatal=True) from None
        self.card_answered = True
        return sw1 << 8 | sw2, data

    def header(self, fid: int) -> tuple[int, bytes]:
        return self._crsm(GET_RESPONSE, fid)

    def read_binary(self, fid: int, offset: int, length: int) -> tuple[int, bytes]:
        return self._crsm(READ_BINARY, fid, offset >> 8, offset & 0xFF, length)

    def read_record(self, fid: int, number: int, length: int) -> tuple[int, bytes]:
        return self._crsm(READ_RECORD, fid, number, _ABSOLUTE, length)


def read_over_at(modem: Modem, limit: int = MAX_RECORDS) -> CardPairingRecord:
    return read_pairing_record(CrsmFiles(modem), limit)


def journal_fields(modem: Modem, limit: int = 1, files: CrsmFiles | None = None) -> dict:
    """The card's own record as the journal's card-record line carries it,
    read over AT+CRSM (mtcd.pairing_record.journal_fields).  `files`: the
    CrsmFiles to read through, for a caller that wants to know afterwards
    whether a card answered."""
    return record_journal_fields(files if files is not None else CrsmFiles(modem), limit)
