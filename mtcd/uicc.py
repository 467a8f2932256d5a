"""The UICC seen through the modem: lock state, identity, attempts left,
and presenting the PIN.

The last line of defence lives here, whatever the policy above decided and
whatever transport sits below: a PIN is only sent when the most recent
`AT+CPIN?` in this session said exactly `SIM PIN`, nothing has been heard
from the SIM since, and the PIN was looked up for the ICCID read from this
same card.
"""

from __future__ import annotations

import logging
import time

from .at import commands, parsers
from .errors import CommandFailed, ModemProtocolError, ModemUnavailable
from .identity import Iccid, Imsi
from .modem import Modem
from .policy import PinOutcome
from .secret import Pin
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


class PresentationRefused(Exception):
    """The UICC layer would not send the PIN: a bug above it, never a card state."""


class Uicc:
    def __init__(self, modem: Modem, *, settle_time: float = 10.0, poll_interval: float = 0.5):
        self.modem = modem
        self.settle_time = settle_time  # how long "SIM busy" may last (boot, after unlock)
        self.poll_interval = poll_interval
        self._lock: SimLock | None = None
        self._iccid: Iccid | None = None

    def sim_changed(self) -> None:
        """Forget what we knew: a SIM-state URC arrived, or the port was reopened."""
        self._lock = None
        self._iccid = None

    def lock(self) -> SimLock:
        """`AT+CPIN?`, waiting a bounded time while the SIM is busy or not ready."""
        # Whatever this reading ends in, an earlier one is no longer current.
        self._lock = None
        deadline = time.monotonic() + self.settle_time
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
            time.sleep(self.poll_interval)

    def _read_lock(self) -> SimLock:
        try:
            return parsers.parse_cpin(self.modem.run(commands.sim_lock_query()).lines)
        except CommandFailed as exc:
            return _CME_TO_LOCK.get(exc.cme, SimLock.FAILURE)

    def iccid(self) -> Iccid | None:
        self._iccid = None  # an earlier reading is no longer current, whatever happens
        self._iccid = self.modem.first_answer(self.modem.dialect.iccid_queries())
        return self._iccid

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

    def present_pin(self, pin: Pin, for_iccid: Iccid) -> PinOutcome:
        """Send PIN1 once.  Never retried here: a lost answer is UNKNOWN."""
        if self._lock is not SimLock.SIM_PIN:
            raise PresentationRefused("the SIM is not asking for exactly SIM PIN")
        if self._iccid is None or self._iccid != for_iccid:
            raise PresentationRefused("the PIN was not looked up for the ICCID of this card")
        # Whatever happens next, the lock state we saw is no longer current.
        self._lock = None
        try:
            response = self.modem.transport.execute(commands.enter_pin(pin))
        except ModemUnavailable:
            return PinOutcome.UNKNOWN
        if response.result.ok:
            return PinOutcome.ACCEPTED
        if response.result.code in (CME_INCORRECT_PASSWORD, CME_SIM_PUK_REQUIRED):
            # 12: that was the last attempt and the card now wants its PUK.
            return PinOutcome.REJECTED
        log.warning("PIN presentation ended with %s; outcome unknown", response.result.kind)
        return PinOutcome.UNKNOWN
