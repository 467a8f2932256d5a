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
MANAGER = "org.freedesktop.ModemManager1"  # the manager's own interface, on ROOT

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
# ModemManager is on its way between two states (its own doing or ours).
TRANSIENT = frozenset({STATE_INITIALIZING, STATE_DISABLING, STATE_ENABLING})

# MMModemStateFailedReason
FAILED_SIM_MISSING, FAILED_SIM_ERROR = 2, 3

# MMModem3gppFacility: bit 0 is the SIM's PIN1 check ("SC").
FACILITY_SIM = 1 << 0

# MMModemPowerState
POWER_LOW, POWER_ON = 2, 3

_ERROR = "org.freedesktop.ModemManager1.Error."
ERROR_IN_PROGRESS = _ERROR + "Core.InProgress"
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


# -- ModemManager's signals, read as what they mean for the modem mtcd holds --

OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
PROPERTIES = "org.freedesktop.DBus.Properties"
# The Modem properties whose change can mean another card, a card that asks
# for something else, or a modem that failed: the periodic check reads them
# again at once.
WATCHED_PROPERTIES = frozenset({"Sim", "SimSlots", "UnlockRequired", "State", "StateFailedReason"})

# What a signal means (see modem_signal).
MODEM_REMOVED = "modem-removed"  # the object is gone: hot swap (re-probed) or the port went away
MODEM_ADDED = "modem-added"
SIM_CHANGED = "sim-changed"
SERVICE_GONE = "service-gone"


def modem_signal(interface: str, member: str, path: str, body: tuple, modem_path: str | None) -> str | None:
    """What one signal says about the modem object `modem_path`, or None
    when it says nothing that matters to the gate.  Pure: the arguments are
    the signal's header fields and body as jeepney gives them."""
    if interface == "org.freedesktop.DBus" and member == "NameOwnerChanged":
        name, _old, new = body
        return SERVICE_GONE if name == SERVICE and not new else None
    if interface == OBJECT_MANAGER and member == "InterfacesRemoved":
        gone, interfaces = body
        return MODEM_REMOVED if gone == modem_path and MODEM in interfaces else None
    if interface == OBJECT_MANAGER and member == "InterfacesAdded":
        _added, interfaces = body
        return MODEM_ADDED if MODEM in interfaces else None
    if interface == PROPERTIES and member == "PropertiesChanged":
        changed_interface, changed, invalidated = body
        if changed_interface == MODEM and path == modem_path:
            return SIM_CHANGED if WATCHED_PROPERTIES & (set(changed) | set(invalidated)) else None
        if changed_interface == SIM:
            return SIM_CHANGED  # a SIM object re-read in place (its ICCID, IMSI)
    return None


def modem_for_port(modems: dict[str, dict], port: str) -> str | None:
    """The object path of the modem whose ports include `port` (as given in
    `[modem] port`), from ObjectManager's Modem properties; None if none."""
    want = port_name(port)
    for path, props in sorted(modems.items()):
        names = {name for name, _ in props.get("Ports", [])}
        if props.get("PrimaryPort") == want or want in names or props.get("Device") == port:
            return path
    return None


# TS 102 221 §9.5.2 (with 3GPP cards): PIN1's retry counter starts at 3 and
# a VERIFY the card accepts sets it back there.
PIN1_MAXIMUM = 3


def pin1_after_verification(reported: PinAttempts | None, seen_before: int | None) -> PinAttempts | None:
    """The PIN1 counter of a card unlocked in this session.  ModemManager
    leaves PIN1 out of UnlockRetries once the card is verified (the card
    answers a VERIFY without data with 9000, which carries no count), so a
    PIN change on it would go out with no counter to settle a lost answer
    by.  After a SendPin the card accepted, the counter is back at its
    maximum; when the count read just before that SendPin was already the
    maximum, the maximum is known: PIN1 is that.  Otherwise unknown."""
    if reported is not None and reported.pin1 is not None:
        return reported
    if seen_before != PIN1_MAXIMUM:
        return reported
    return PinAttempts(pin1=PIN1_MAXIMUM, puk1=reported.puk1 if reported is not None else None,
                       source="ModemManager UnlockRetries before this session's accepted SendPin")


# Which plugins report a SIM hot swap by themselves: what decides whether a
# card swapped in while the link is up is noticed within seconds (the
# service's warning at start, `mtcctl doctor`'s modemmanager-no-hot-swap).
# It no longer decides whether mtcd re-probes: it does before every decision,
# PIN or PUK command and link on every plugin (MmGateway.card_command), since
# one that reports swaps still misses those the modem does not tell it of.
#
# Plugins measured (ModemManager 1.20 with the simulator) to notice no SIM
# hot swap: the generic one ignores +CPIN URCs and keeps the old card's
# properties, even when the new card has no PIN and the modem is registered.
NO_HOT_SWAP_PLUGINS = frozenset({"generic"})
# Plugins measured to notice one (the quectel plugin hears +QUSIM and
# exports the modem again).  Any other plugin is unmeasured: counted as not
# reporting swaps, like the generic one.
HOT_SWAP_PLUGINS = frozenset({"quectel"})


def swap_blind(plugin: str | None) -> bool:
    """Whether ModemManager's plugin `plugin` (Modem.Plugin) is not known
    to report a SIM swap by itself: any but one measured to notice one.
    Then a swap while the link is up is seen only at mtcd's next re-probe
    (the next decision, command or link)."""
    return (plugin or "").lower() not in HOT_SWAP_PLUGINS
