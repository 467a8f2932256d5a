"""The UICC seen through the modem: lock state, identity, attempts left,
and presenting the PIN.

The last line of defence lives here, whatever the policy above decided and
whatever transport sits below: a PIN is only sent when the most recent
`AT+CPIN?` in this session said exactly `SIM PIN`, nothing has been heard
from the SIM since, and the PIN was looked up for the ICCID read from this
same card.
"""

from __future__ import annotations

import contextlib
import logging
import time

from . import apdu
from .at import commands, parsers
from .errors import CommandFailed, ModemProtocolError, ModemUnavailable, MtcdError
from .identity import Iccid, Imsi
from .modem import Modem
from .policy import PinOutcome
from .secret import Pin, Puk
from .simlock import PinAttempts, SimLock

log = logging.getLogger("mtcd.uicc")

# +CME ERROR codes (TS 27.007 §9.2) that describe the SIM rather than the command.
CME_SIM_NOT_INSERTED = 10
CME_SIM_PIN_REQUIRED = 11
CME_SIM_PUK_REQUIRED = 12
CME_SIM_FAILURE = 13
CME_SIM_BUSY = 14
CME_SIM_WRONG = 15
CME_INCORRECT_PASSWORD = 16

_CME_TO_LOCK = {
    CME_SIM_NOT_INSERTED: SimLock.NOT_INSERTED,
    CME_SIM_PIN_REQUIRED: SimLock.SIM_PIN,
    CME_SIM_PUK_REQUIRED: SimLock.SIM_PUK,
    CME_SIM_FAILURE: SimLock.FAILURE,
    CME_SIM_BUSY: SimLock.BUSY,
    CME_SIM_WRONG: SimLock.FAILURE,
}
_TRANSIENT = {SimLock.BUSY, SimLock.NOT_READY}


class PresentationRefused(MtcdError):
    """The UICC layer would not send a secret: the card's state changed since
    it was read (a URC crossed), or a caller skipped a step."""


class Uicc:
    def __init__(self, modem: Modem, *, settle_time: float = 10.0, poll_interval: float = 0.5, waits=None):
        self.modem = modem
        self.settle_time = settle_time  # how long "SIM busy" may last (boot, after unlock)
        self.poll_interval = poll_interval
        self.waits = waits  # mtcd.progress.Waits: says what a long settle waits for
        self._settling: contextlib.ExitStack | None = None
        self._lock: SimLock | None = None
        self.iccid_query = None  # the dialect's ICCID query that answered last (vendors.base.Query)
        self._iccid: Iccid | None = None

    def sim_changed(self) -> None:
        """Forget what we knew: a SIM-state URC arrived, or the port was reopened."""
        self._lock = None
        self._iccid = None

    def lock(self, settle: bool = True) -> SimLock:
        """`AT+CPIN?`, waiting a bounded time while the SIM is busy or not
        ready (`settle=False`: one reading, for cheap periodic checks)."""
        with contextlib.ExitStack() as self._settling:
            return self._settled_lock(settle)

    def _still_settling(self) -> None:
        """A pause while the SIM is busy; the first one starts the feedback."""
        if self.waits is not None and self._settling is not None:
            self._settling.enter_context(self.waits.waiting(
                "waiting for the SIM to finish initialising", self.settle_time))
            self._settling = None
        time.sleep(self.poll_interval)

    def _settled_lock(self, settle: bool) -> SimLock:
        # Whatever this reading ends in, an earlier one is no longer current.
        self._lock = None
        deadline = time.monotonic() + (self.settle_time if settle else 0.0)
        while True:
            try:
                state = self._read_lock()
            except ModemProtocolError:
                # A SIM-state URC that crossed our query carries its prefix
                # and lands in the reply (two codes): ask again, don't guess.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(self.poll_interval)
                continue
            if state not in _TRANSIENT or time.monotonic() >= deadline:
                self._lock = state
                return state
            self._still_settling()

    def _read_lock(self) -> SimLock:
        try:
            return parsers.parse_cpin(self.modem.run(commands.sim_lock_query()).lines)
        except CommandFailed as exc:
            return self.lock_of_error(exc.cme)

    def iccid(self) -> Iccid | None:
        self._iccid = None  # an earlier reading is no longer current, whatever happens
        answered: list = []
        self._iccid = self.modem.first_answer(self.modem.dialect.iccid_queries(), answered)
        if answered:
            self.iccid_query = answered[0]  # the periodic check asks the same way
        return self._iccid

    def forget_readings(self) -> None:
        """Another path read the lock or the ICCID (the periodic check's one
        line): no reading held here is the most recent one any more, so
        nothing is presented before the lock is read here again."""
        self._lock = None
        self._iccid = None

    @staticmethod
    def lock_of_error(cme: int | None) -> SimLock:
        """The SIM state a failed AT+CPIN? stands for (+CME ERROR: 10 no SIM...)."""
        return _CME_TO_LOCK.get(cme, SimLock.FAILURE)

    def attempts(self) -> PinAttempts | None:
        return self.modem.first_answer(self.modem.dialect.attempts_queries())

    def pin_enabled(self) -> bool | None:
        try:
            return parsers.parse_clck(self.modem.run(commands.pin_enabled_query()).lines)
        except (CommandFailed, ModemProtocolError):
            return None

    def imsi(self) -> Imsi | None:
        """The IMSI, readable only once the SIM is unlocked."""
        try:
            return parsers.parse_imsi(self.modem.run(commands.imsi()).lines)
        except (CommandFailed, ModemProtocolError):
            return None

    def puk_attempts(self) -> int | None:
        """PUK1 attempts left: from the counters the dialect reads, else the
        UNBLOCK PIN APDU with no data (63Cx).  Neither spends an attempt."""
        attempts = self.attempts()
        if attempts is not None and attempts.puk1 is not None:
            return attempts.puk1
        try:
            raw = parsers.parse_csim(self.modem.run(commands.generic_sim_access(apdu.unblock_query().tpdu())).lines)
            return apdu.remaining_attempts(apdu.ApduResponse.parse(raw))
        except (CommandFailed, ModemProtocolError):
            return None

    def present_pin(self, pin: Pin, for_iccid: Iccid) -> PinOutcome:
        """Send PIN1 once.  Never retried here: a lost answer is UNKNOWN."""
        self._require(SimLock.SIM_PIN, for_iccid, "the SIM is not asking for exactly SIM PIN")
        return self._send_secret(commands.enter_pin(pin))

    def change_pin(self, old: Pin, new: Pin, for_iccid: Iccid) -> PinOutcome:
        """AT+CPWD on an unlocked card (TS 27.007 §7.5).  A wrong old PIN
        costs an attempt, so only the PIN the card just accepted is given."""
        self._require(SimLock.READY, for_iccid, "a PIN is only changed on an unlocked SIM")
        return self._send_secret(commands.change_pin(old, new))

    def enable_pin(self, pin: Pin, for_iccid: Iccid) -> PinOutcome:
        """AT+CLCK="SC",1 on an unlocked card whose PIN is disabled."""
        self._require(SimLock.READY, for_iccid, "the PIN is only enabled on an unlocked SIM")
        return self._send_secret(commands.set_pin_enabled(True, pin))

    def unblock(self, puk: Puk, new_pin: Pin, for_iccid: Iccid) -> PinOutcome:
        """AT+CPIN="<puk>","<new>": only ever called for a person who typed
        the PUK (guarantee 2), and only when the card asks for exactly it."""
        self._require(SimLock.SIM_PUK, for_iccid, "the SIM is not asking for its PUK")
        return self._send_secret(commands.enter_puk(puk, new_pin))

    def may_present(self, iccid: Iccid) -> bool:
        """Whether present_pin() would send now: asked before anything is
        recorded, so a refusal here leaves no false "attempt started"."""
        return self._lock is SimLock.SIM_PIN and self._iccid is not None and self._iccid == iccid

    def _require(self, lock: SimLock, iccid: Iccid, why: str) -> None:
        if self._lock is not lock:
            raise PresentationRefused(why)
        if self._iccid is None or self._iccid != iccid:
            raise PresentationRefused("the secret was not looked up for the ICCID of this card")

    def _send_secret(self, command) -> PinOutcome:
        # Whatever happens next, the lock state we saw is no longer current.
        self._lock = None
        try:
            response = self.modem.transport.execute(command)
        except ModemUnavailable:
            return PinOutcome.UNKNOWN
        if response.result.ok:
            return PinOutcome.ACCEPTED
        if response.result.code in (CME_INCORRECT_PASSWORD, CME_SIM_PUK_REQUIRED):
            # 12: that was the last attempt and the card now wants its PUK.
            return PinOutcome.REJECTED
        log.warning("%s ended with %s; outcome unknown", command.loggable, response.result.kind)
        return PinOutcome.UNKNOWN
