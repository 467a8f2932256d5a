"""The UICC spoken to in APDUs: the same questions and the same last line
of defence as mtcd.uicc.Uicc over AT, answered by the card itself.

- The lock state: VERIFY PIN1 without data (63Cx: the PIN is needed and x
  attempts are left; 9000: verified or not needed) with PIN1's enabled bit
  from ADF.USIM's PIN status template.  SIM PIN is only ever reported when
  both say so.
- A PIN goes out only while the lock and the ICCID were read in this same
  card session (a reset, a removal or a SIM-state URC ends it), and right
  after a fresh VERIFY without data still says 63Cx with the count the
  policy was shown.  Otherwise nothing is sent.
- UNBLOCK PIN (RESET RETRY COUNTER) is only sent by `unblock`, which the
  lifecycle calls for a person who typed the PUK.
"""

from __future__ import annotations

import logging
import time

from .. import apdu
from ..apdu import PIN1, ApduResponse
from ..errors import EXIT_TEMPFAIL, CommandFailed, ModemProtocolError, ModemUnavailable
from ..identity import Iccid, Imsi
from ..policy import PinOutcome
from ..secret import Pin, Puk
from ..simlock import PinAttempts, SimLock
from ..uicc import _CME_TO_LOCK, PresentationRefused
from . import files
from .channel import CardAbsent, CardChannel, CardReset, transmit

log = logging.getLogger("mtcd.card")

SOURCE = "VERIFY/UNBLOCK APDU"
_TRANSIENT = {SimLock.BUSY, SimLock.NOT_READY}
# EF.DIR lists a handful of applications; more records than this are not read.
MAX_DIR_RECORDS = 16


class CardChangedMidway(PresentationRefused):
    """The card was reset, removed or answered otherwise between the reading
    and the presentation: nothing was presented.  Run again."""

    exit_code = EXIT_TEMPFAIL
    code = "sim-changed"


def _left(resp: ApduResponse) -> int | None:
    """Attempts left from a VERIFY/UNBLOCK answer; None for 9000."""
    return apdu.remaining_attempts(resp)


class ApduUicc:
    def __init__(self, channel: CardChannel, *, settle_time: float = 10.0, poll_interval: float = 0.5, waits=None):
        self.channel = channel
        self.settle_time = settle_time
        self.poll_interval = poll_interval
        self.waits = waits
        self._lock: SimLock | None = None
        self._iccid: Iccid | None = None
        self._lock_session = self._iccid_session = None
        self._pin_left: tuple[int, int | None] | None = None  # (session, count) last shown to the policy
        self._aid: tuple[int, bytes] | None = None  # (session, USIM AID)

    def close(self) -> None:
        self.channel.close()

    def sim_changed(self) -> None:
        """A SIM-state URC, or the port reopened: the card session is over."""
        self._lock = None
        self._iccid = None
        self._pin_left = None
        changed = getattr(self.channel, "card_changed", None)
        if changed is not None:
            changed()

    # -- plumbing -------------------------------------------------------------
    def _tx(self, command) -> ApduResponse:
        return transmit(self.channel, command)

    def select_usim(self) -> bytes:
        """SELECT ADF.USIM by the AID EF.DIR names (read once a session); its FCP."""
        session = self.channel.session
        if self._aid is None or self._aid[0] != session:
            aid = self._usim_aid()
            self._aid = (self.channel.session, aid)
        resp = self._tx(files.select_aid(self._aid[1]))
        if not resp.ok:
            raise ModemProtocolError(f"SELECT ADF.USIM: {resp}")
        return resp.data

    def _usim_aid(self) -> bytes:
        """The USIM's AID from EF.DIR; without an EF.DIR (some test cards),
        the 7-byte prefix every USIM AID starts with, as a partial AID."""
        self._tx(apdu.select_file(apdu.MF))
        resp = self._tx(apdu.select_file(files.EF_DIR))
        if resp.ok:
            length = files.record_length(resp.data)
            size = files.file_size(resp.data)
            if length and size:
                records = []
                for number in range(1, min(size // length, MAX_DIR_RECORDS) + 1):
                    record = self._tx(files.read_record(number, length))
                    if not record.ok:
                        break
                    records.append(record.data)
                aid = files.usim_aid(records)
                if aid is not None:
                    return aid
        log.info("EF.DIR names no USIM; selecting it by the partial AID %s", files.USIM_AID_PREFIX.hex().upper())
        return files.USIM_AID_PREFIX

    def _read_ef(self, fid: int) -> bytes | None:
        resp = self._tx(apdu.select_file(fid))
        if not resp.ok:
            return None
        size = files.file_size(resp.data) or 0
        out = b""
        while len(out) < size:
            chunk = self._tx(apdu.read_binary(len(out), min(256, size - len(out))))
            if not chunk.ok or not chunk.data:
                return None
            out += chunk.data
        return out

    # -- readings ---------------------------------------------------------------
    def lock(self, settle: bool = True) -> SimLock:
        self._lock = None
        deadline = time.monotonic() + (self.settle_time if settle else 0.0)
        retried = False
        while True:
            try:
                session = self.channel.session
                state = self._read_lock()
            except ModemProtocolError as exc:
                # A reset crossed the reading (CardReset), or an odd answer: ask
                # again; after a reset at least once, in the new session.
                if time.monotonic() >= deadline and not (isinstance(exc, CardReset) and retried is False):
                    raise
                retried = isinstance(exc, CardReset) or retried
                time.sleep(self.poll_interval)
                continue
            if state not in _TRANSIENT or time.monotonic() >= deadline:
                if session == self.channel.session:
                    self._lock, self._lock_session = state, session
                return state
            time.sleep(self.poll_interval)

    def _read_lock(self) -> SimLock:
        try:
            fcp = self.select_usim()
            resp = self._tx(apdu.verify_pin(None))
        except CardAbsent:
            return SimLock.NOT_INSERTED
        except CommandFailed as exc:
            return _CME_TO_LOCK.get(exc.cme, SimLock.FAILURE)
        if resp.ok:
            return SimLock.READY
        try:
            left = _left(resp)
        except ModemProtocolError:
            return SimLock.FAILURE
        if left == 0:
            puk = self.puk_attempts()
            return SimLock.SIM_PUK if puk else SimLock.FAILURE
        enabled = files.key_enabled(fcp, PIN1)
        if enabled is True:
            return SimLock.SIM_PIN
        if enabled is False:
            return SimLock.READY  # a card whose PIN is disabled asks for nothing
        log.warning("the card asks for PIN1 but its FCP has no PIN status for it; not presenting")
        return SimLock.OTHER

    def iccid(self) -> Iccid | None:
        self._iccid = None
        for _ in range(2):  # once more if a reset crossed the reading
            session = self.channel.session
            try:
                self._tx(apdu.select_file(apdu.MF))
                raw = self._read_ef(apdu.EF_ICCID)
            except CardReset:
                continue
            except (CardAbsent, CommandFailed, ModemProtocolError) as exc:
                log.info("EF.ICCID not read: %s", exc)
                return None
            if raw is None:
                return None
            try:
                iccid = Iccid.from_ef(raw)
            except ValueError as exc:
                log.info("EF.ICCID unusable: %s", exc)
                return None
            if session == self.channel.session:
                self._iccid, self._iccid_session = iccid, session
            return iccid
        return None

    def attempts(self) -> PinAttempts | None:
        """The counters as the card gives them.  A verified PIN1 (or one not
        needed) answers VERIFY without data with 9000 and no count (TS 102
        221 §11.1.9): its counter is back at the card's maximum, which may
        be 3, 5, 10...; pin1 is then None, never a number the card did not
        give (the policy treats an unknown count as rule 5 says)."""
        try:
            session = self.channel.session
            self.select_usim()
            pin1 = _left(self._tx(apdu.verify_pin(None)))
            puk1 = _left(self._tx(apdu.unblock_query()))
        except (CardAbsent, CommandFailed, ModemProtocolError) as exc:
            log.info("attempt counters not read: %s", exc)
            return None
        if session == self.channel.session:
            # None too: a policy shown no count never gets a PIN out to a
            # card that gives one at the last look (_still_asking).
            self._pin_left = (session, pin1)
        return PinAttempts(pin1=pin1, puk1=puk1, source=SOURCE)

    def puk_attempts(self) -> int | None:
        try:
            return _left(self._tx(apdu.unblock_query()))
        except (CardAbsent, CommandFailed, ModemProtocolError):
            return None

    def pin_enabled(self) -> bool | None:
        try:
            return files.key_enabled(self.select_usim(), PIN1)
        except (CardAbsent, CommandFailed, ModemProtocolError):
            return None

    def imsi(self) -> Imsi | None:
        try:
            self.select_usim()
            raw = self._read_ef(apdu.EF_IMSI)
            return Imsi.from_ef(raw) if raw is not None else None
        except (CardAbsent, CommandFailed, ModemProtocolError, ValueError):
            return None

    # -- secrets ------------------------------------------------------------------
    def may_present(self, iccid: Iccid) -> bool:
        session = self.channel.session
        return (self._lock is SimLock.SIM_PIN and self._iccid is not None and self._iccid == iccid
                and self._lock_session == session and self._iccid_session == session)

    def _require(self, lock: SimLock, iccid: Iccid, why: str) -> None:
        if self._lock is not lock:
            raise PresentationRefused(why)
        if self._iccid is None or self._iccid != iccid:
            raise PresentationRefused("the secret was not looked up for the ICCID of this card")
        session = self.channel.session
        if self._lock_session != session or self._iccid_session != session:
            raise CardChangedMidway("the card was reset or replaced since it was read; nothing was sent to it")

    def present_pin(self, pin: Pin, for_iccid: Iccid) -> PinOutcome:
        """VERIFY PIN1 once, right after VERIFY without data said it is needed."""
        self._require(SimLock.SIM_PIN, for_iccid, "the SIM is not asking for exactly SIM PIN")
        self._still_asking()
        return self._send_secret(apdu.verify_pin(pin))

    def _still_asking(self) -> None:
        """The last look before a PIN goes out: the same card session, the
        same ICCID (a modem gives no word of a swap it missed), VERIFY
        without data still 63Cx, with the count the policy decided on."""
        session = self.channel.session
        try:
            self._tx(apdu.select_file(apdu.MF))
            raw = self._read_ef(apdu.EF_ICCID)
            self.select_usim()
            resp = self._tx(apdu.verify_pin(None))
        except (CardAbsent, CommandFailed, ModemUnavailable) as exc:
            self._lock = None
            raise CardChangedMidway(f"the card did not answer before the PIN was sent ({exc}); nothing was sent") from None
        if session != self.channel.session:
            self._lock = None
            raise CardChangedMidway("the card was reset or replaced since it was read; nothing was sent to it")
        try:
            same = raw is not None and Iccid.from_ef(raw) == self._iccid
        except ValueError:
            same = False
        if not same:
            self._lock = None
            raise CardChangedMidway("another card is in the slot than the one read; nothing was sent to it")
        try:
            left = _left(resp)
        except ModemProtocolError:
            left = None
        if resp.ok or not left:
            self._lock = None
            raise CardChangedMidway(f"the card no longer asks for its PIN ({resp}); nothing was sent to it")
        if self._pin_left is not None and self._pin_left[0] == session and left != self._pin_left[1]:
            self._lock = None
            raise CardChangedMidway(f"the card's PIN counter moved since it was read "
                                    f"({_shown(self._pin_left[1])} -> {left}); "
                                    "nothing was sent to it")

    def change_pin(self, old: Pin, new: Pin, for_iccid: Iccid) -> PinOutcome:
        """CHANGE REFERENCE DATA on an unlocked card."""
        self._require(SimLock.READY, for_iccid, "a PIN is only changed on an unlocked SIM")
        return self._send_secret(apdu.change_pin(old, new))

    def enable_pin(self, pin: Pin, for_iccid: Iccid) -> PinOutcome:
        """ENABLE VERIFICATION on an unlocked card whose PIN is disabled."""
        self._require(SimLock.READY, for_iccid, "the PIN is only enabled on an unlocked SIM")
        return self._send_secret(apdu.enable_pin(pin))

    def unblock(self, puk: Puk, new_pin: Pin, for_iccid: Iccid) -> PinOutcome:
        """RESET RETRY COUNTER (UNBLOCK PIN): only for a person who typed the
        PUK (guarantee 2), and only when the card asks for exactly it."""
        self._require(SimLock.SIM_PUK, for_iccid, "the SIM is not asking for its PUK")
        return self._send_secret(apdu.unblock_pin(puk, new_pin))

    def _send_secret(self, command) -> PinOutcome:
        self._lock = None
        self._pin_left = None
        try:
            resp = self._tx(command)
        except (CardAbsent, CommandFailed, ModemUnavailable) as exc:
            # Whether the card saw it cannot be told: the marker and the counter settle it.
            log.warning("the card's answer to %s was lost (%s); outcome unknown", _name(command), type(exc).__name__)
            return PinOutcome.UNKNOWN
        if resp.ok:
            return PinOutcome.ACCEPTED
        if resp.sw1 == 0x63 and resp.sw2 & 0xF0 == 0xC0 or resp.sw == 0x6983:
            return PinOutcome.REJECTED
        log.warning("%s ended with %s; outcome unknown", _name(command), resp)
        return PinOutcome.UNKNOWN


def _shown(count: int | None) -> str:
    return "not told" if count is None else str(count)


def _name(command) -> str:
    return {apdu.INS_VERIFY: "VERIFY PIN", apdu.INS_CHANGE: "CHANGE PIN", apdu.INS_ENABLE: "ENABLE PIN",
            apdu.INS_DISABLE: "DISABLE PIN", apdu.INS_UNBLOCK: "UNBLOCK PIN"}.get(command.ins, f"INS {command.ins:02X}")
