"""APDUs through a PC/SC reader (pcscd, with pyscard's low-level binding:
optional extra `mtcd[pcsc]`, Debian python3-pyscard).  pyscard is imported
here only, when `[uicc] backend = "pcsc"` asks for it.

The connection is shared (a maintenance tool may look at the card too) and
left as it is on close (SCARD_LEAVE_CARD): disconnecting must not reset a
card whose PIN this gateway just verified.  PC/SC tells every handle when
the card was reset or removed since its last command (SCARD_W_RESET_CARD,
SCARD_W_REMOVED_CARD): that ends the card session here, and the next
command connects anew in a new session.  No APDU is ever logged.
"""

from __future__ import annotations

import logging

from ..errors import ConfigError, ModemUnavailable
from .channel import CardAbsent, CardReset

log = logging.getLogger("mtcd.card")


class ReaderUnavailable(ModemUnavailable):
    """pcscd is not running, or the configured reader is not there."""

    code = "reader-unavailable"


def _scard():
    try:
        from smartcard import scard
    except ImportError:
        raise ConfigError('uicc.backend = "pcsc" needs pyscard: install python3-pyscard '
                          "(or the mtcd[pcsc] extra)") from None
    return scard


def choose_reader(readers: list[str], wanted: str, holding: frozenset[str] = frozenset()) -> str:
    """The reader `wanted` names: an index into the list, else the one
    reader whose name contains it.  "" takes the only reader there is, or
    of several the only one `holding` a card (multi-slot drivers list
    empty slots as readers too)."""
    if not readers:
        raise ReaderUnavailable("no PC/SC reader is connected (pcscd lists none)")
    if wanted == "":
        with_card = [r for r in readers if r in holding]
        if len(readers) == 1 or len(with_card) == 1:
            return readers[0] if len(readers) == 1 else with_card[0]
        if not with_card:
            raise CardAbsent(f"no card in any of the {len(readers)} PC/SC readers")
        raise ReaderUnavailable(f"{len(readers)} PC/SC readers are connected and {len(with_card) or 'none'} "
                                f"hold a card; name one in uicc.reader ({', '.join(repr(r) for r in readers)})")
    if wanted.isdigit():
        index = int(wanted)
        if index >= len(readers):
            raise ReaderUnavailable(f"uicc.reader = {wanted}: only {len(readers)} PC/SC reader(s) are connected")
        return readers[index]
    matches = [r for r in readers if wanted.lower() in r.lower()]
    if len(matches) != 1:
        which = "no" if not matches else f"{len(matches)}"
        raise ReaderUnavailable(f"uicc.reader = {wanted!r} matches {which} PC/SC reader(s) "
                                f"({', '.join(repr(r) for r in readers)})")
    return matches[0]


class PcscChannel:
    def __init__(self, reader: str = ""):
        self.wanted = reader
        self.scard = _scard()
        self.session = 1  # moves on when a connection ends other than by close()
        self.reader: str | None = None
        self._context = None
        self._card = None
        self._protocol = None

    # -- connection -------------------------------------------------------------
    def _establish(self) -> None:
        s = self.scard
        if self._context is None:
            result, context = s.SCardEstablishContext(s.SCARD_SCOPE_USER)
            if result != s.SCARD_S_SUCCESS:
                raise ReaderUnavailable(f"PC/SC is not available: {s.SCardGetErrorMessage(result)} (is pcscd running?)")
            self._context = context
        result, readers = s.SCardListReaders(self._context, [])
        if result == s.SCARD_E_NO_READERS_AVAILABLE:
            readers = []
        elif result != s.SCARD_S_SUCCESS:
            self._release()
            raise ReaderUnavailable(f"PC/SC lists no readers: {s.SCardGetErrorMessage(result)}")
        readers = list(readers)
        self.reader = choose_reader(readers, self.wanted, self._holding(readers) if not self.wanted else frozenset())

    def _holding(self, readers: list[str]) -> frozenset[str]:
        s = self.scard
        result, states = s.SCardGetStatusChange(self._context, 0, [(r, s.SCARD_STATE_UNAWARE) for r in readers])
        if result != s.SCARD_S_SUCCESS:
            return frozenset()
        return frozenset(name for name, state, _atr in states if state & s.SCARD_STATE_PRESENT)

    def _connect(self) -> None:
        s = self.scard
        self._establish()
        result, card, protocol = s.SCardConnect(self._context, self.reader, s.SCARD_SHARE_SHARED,
                                                s.SCARD_PROTOCOL_T0 | s.SCARD_PROTOCOL_T1)
        if result in (s.SCARD_E_NO_SMARTCARD, s.SCARD_W_REMOVED_CARD, s.SCARD_W_UNPOWERED_CARD,
                      s.SCARD_W_UNRESPONSIVE_CARD):
            raise CardAbsent(f"no card in {self.reader}")
        if result != s.SCARD_S_SUCCESS:
            self._release()  # pcscd restarted or the reader went: start from a new context
            raise ReaderUnavailable(f"{self.reader}: {s.SCardGetErrorMessage(result)}")
        self._card, self._protocol = card, protocol
        log.debug("card session %d on %s", self.session, self.reader)

    def _drop(self, disposition=None) -> None:
        s = self.scard
        if self._card is not None:
            s.SCardDisconnect(self._card, s.SCARD_LEAVE_CARD if disposition is None else disposition)
            self._card = None

    def _release(self) -> None:
        if self._context is not None:
            self.scard.SCardReleaseContext(self._context)
            self._context = None

    def card_changed(self) -> None:
        """Told from outside that the card changed: the next command starts a new session."""
        if self._card is not None:
            self._drop()
        self.session += 1

    def close(self) -> None:
        try:
            self._drop()
        finally:
            self._release()

    # -- commands ----------------------------------------------------------------
    def send(self, tpdu: bytes, *, sensitive: bool = False) -> bytes:
        s = self.scard
        if self._card is None:
            self._connect()
        result, response = s.SCardTransmit(self._card, self._protocol, list(tpdu))
        if result == s.SCARD_S_SUCCESS:
            return bytes(response)
        # Reset, removed, or the exchange broke off (vpcd's card went away
        # mid-command: SCARD_E_NOT_TRANSACTED): the card session is over.
        gone = result in (s.SCARD_W_RESET_CARD, s.SCARD_W_REMOVED_CARD, s.SCARD_E_NO_SMARTCARD,
                          s.SCARD_W_UNPOWERED_CARD, s.SCARD_W_UNRESPONSIVE_CARD, s.SCARD_E_NOT_TRANSACTED,
                          s.SCARD_E_COMM_DATA_LOST)
        message = s.SCardGetErrorMessage(result)
        # Whatever happened, this handle's card session is over.
        self._drop()
        self.session += 1
        if gone:
            raise CardReset(f"{self.reader}: {message}")
        if result in (s.SCARD_E_NO_SERVICE, s.SCARD_E_SERVICE_STOPPED, s.SCARD_E_READER_UNAVAILABLE,
                      s.SCARD_E_UNKNOWN_READER):
            self._release()
            raise ReaderUnavailable(f"{self.reader}: {message}")
        raise ReaderUnavailable(f"{self.reader}: the command failed: {message}")
