"""ModemManager's numbers and error names, read as the project's facts.

Pure: no D-Bus here.  The values are ModemManager's public API
(ModemManager-enums.h, ModemManager-errors.h), stable since 1.0.
"""

from __future__ import annotations

from ..policy import PinOutcome
from ..simlock import PinAttempts, SimLock

SERVICE = "org.freedesktop.ModemManager1"
ROOT = "/org/freedesktop/ModemManager1"
MODEM = "org.freedesktop.ModemManager1.Modem"
MODEM_3GPP = "org.freedesktop.ModemManager1.Modem.Modem3gpp"
SIMPLE = "org.freedesktop.ModemManager1.Modem.Simple"
SIM = "org.freedesktop.ModemManager1.Sim"

# MMModemLock
LOCK_UNKNOWN, LOCK_NONE, LOCK_SIM_PIN, LOCK_SIM_PIN2, LOCK_SIM_PUK, LOCK_SIM_PUK2 = range(6)
_LOCKS = {
    LOCK_NONE: SimLock.READY,
    LOCK_SIM_PIN: SimLock.SIM_PIN,
    LOCK_SIM_PIN2: SimLock.SIM_PIN2,
    LOCK_SIM_PUK: SimLock.SIM_PUK,
    LOCK_SIM_PUK2: SimLock.SIM_PUK2,
    6: SimLock.PH_SP_PIN,
    7: SimLock.PH_SP_PUK,
    8: SimLock.PH_NET_PIN,
    9: SimLock.PH_NET_PUK,
    10: SimLock.PH_SIM_PIN,
    11: SimLock.PH_CORP_PIN,
    12: SimLock.PH_CORP_PUK,
    13: SimLock.PH_FSIM_PIN,
    14: SimLock.PH_FSIM_PUK,
    15: SimLock.PH_NETSUB_PIN,
    16: SimLock.PH_NETSUB_PUK,
}

# MMModemState
STATE_FAILED, STATE_UNKNOWN, STATE_INITIALIZING, STATE_LOCKED, STATE_DISABLED = -1, 0, 1, 2, 3
STATE_DISABLING, STATE_ENABLING, STATE_ENABLED = 4, 5, 6
STATE_CONNECTED = 11

# MMModemStateFailedReason
FAILED_SIM_MISSING, FAILED_SIM_ERROR = 2, 3

# MMModem3gppFacility: bit 0 is the SIM's PIN1 check ("SC").
FACILITY_SIM = 1 << 0

# MMModemPowerState
POWER_LOW, POWER_ON = 2, 3

_ERROR = "org.freedesktop.ModemManager1.Error."
# The card refused the PIN: one attempt spent (SimPuk: it was the last one).
_REJECTED = {_ERROR + "MobileEquipment.IncorrectPassword", _ERROR + "MobileEquipment.SimPuk"}


def sim_lock(state: int, failed_reason: int, unlock_required: int) -> SimLock:
    """What the SIM asks for, from Modem.State, StateFailedReason and
    UnlockRequired.  While ModemManager still probes (or has not read the
    lock yet) the answer is NOT_READY: a caller waits a bounded time."""
    if state == STATE_FAILED:
        if failed_reason == FAILED_SIM_MISSING:
            return SimLock.NOT_INSERTED
        return SimLock.FAILURE
    if state in (STATE_UNKNOWN, STATE_INITIALIZING) or unlock_required == LOCK_UNKNOWN:
        return SimLock.NOT_READY
    if state == STATE_LOCKED and unlock_required == LOCK_NONE:
        return SimLock.NOT_READY  # just unlocked: ModemManager is still re-reading the modem
    return _LOCKS.get(unlock_required, SimLock.OTHER)


def pin_attempts(unlock_retries: dict[int, int]) -> PinAttempts | None:
    """Modem.UnlockRetries (lock -> attempts left) as PIN1/PUK1 counters."""
    pin1, puk1 = unlock_retries.get(LOCK_SIM_PIN), unlock_retries.get(LOCK_SIM_PUK)
    if pin1 is None and puk1 is None:
        return None
    try:
        return PinAttempts(pin1=pin1, puk1=puk1, source="ModemManager UnlockRetries")
    except ValueError:
        return None  # a counter no card has: not a reading to act on


def pin_enabled(enabled_facility_locks: int) -> bool:
    return bool(enabled_facility_locks & FACILITY_SIM)


def pin_outcome(error_name: str | None) -> PinOutcome:
    """What Sim.SendPin's answer says of the card: None is success."""
    if error_name is None:
        return PinOutcome.ACCEPTED
    if error_name in _REJECTED:
        return PinOutcome.REJECTED
    return PinOutcome.UNKNOWN


def port_name(port: str) -> str:
    """ModemManager names ports without /dev/ (ttyUSB2, pts/3)."""
    return port.removeprefix("/dev/")
