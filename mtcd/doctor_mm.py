"""`mtcctl doctor` with `[modem] driver = "modemmanager"`: the facts read
from ModemManager over D-Bus instead of the AT port (ModemManager owns it).

Read-only: properties only, nothing presented, enabled or connected.  The
facts have the same keys as mtcd.doctor_probe's (`modem`), plus the
`modemmanager` part (mtcd.doctor's docstring); the findings are pure, in
mtcd.doctor.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .doctor import UDEV_RULE
from .errors import ModemUnavailable
from .mm import states
from .simlock import SimLock

# Where udev reads rules, strongest first: a file in an earlier directory
# hides one of the same name in a later one (udev(7)); a link to /dev/null masks it.
UDEV_RULE_DIRS = ("/etc/udev/rules.d", "/run/udev/rules.d", "/usr/local/lib/udev/rules.d",
                  "/usr/lib/udev/rules.d", "/lib/udev/rules.d")
MANAGER = "org.freedesktop.ModemManager1"
_PRESENT = (SimLock.READY, SimLock.SIM_PIN, SimLock.SIM_PUK)


def udev_rule_in_effect(dirs: Sequence[str] = UDEV_RULE_DIRS, name: str = Path(UDEV_RULE).name) -> str | None:
    """The path of mtcd's udev rule as udev would read it, or None when it
    is not installed or is masked (a link to /dev/null, or an empty file)."""
    for directory in dirs:
        path = Path(directory) / name
        if not os.path.lexists(path):
            continue
        try:
            if path.resolve() == Path("/dev/null") or path.stat().st_size == 0:
                return None  # masked: this name is read from here and says nothing
        except OSError:
            return None
        return str(path)
    return None


def modemmanager_facts(port: str, bus=None, *, rule_dirs: Sequence[str] = UDEV_RULE_DIRS) -> tuple[dict, str | None]:
    """(the `modemmanager` facts, the modem's object path or None)."""
    from .mm.bus import BusError, ModemManagerBus

    facts = {"reachable": False, "error": None, "version": None, "modem": None, "plugin": None,
             "primary_port": None, "ports": [], "state": None, "udev_rule": udev_rule_in_effect(rule_dirs)}
    bus = bus or ModemManagerBus()
    try:
        bus.open()
        facts["version"] = bus.get(states.ROOT, MANAGER, "Version")
        facts["reachable"] = True
        path = states.modem_for_port(bus.modems(), port)
        if path is None:
            return facts, None
        props = bus.get_all(path, states.MODEM)
    except (ModemUnavailable, BusError) as exc:
        facts["error"] = str(exc)
        return facts, None
    finally:
        bus.close()
    facts.update(modem=path, plugin=props.get("Plugin") or None, primary_port=props.get("PrimaryPort") or None,
                 ports=sorted(name for name, _ in props.get("Ports", [])),
                 state=state_name(props.get("State", states.STATE_UNKNOWN)))
    return facts, path


def state_name(state: int) -> str:
    names = {-1: "failed", 0: "unknown", 1: "initializing", 2: "locked", 3: "disabled", 4: "disabling",
             5: "enabling", 6: "enabled", 7: "searching", 8: "registered", 9: "disconnecting",
             10: "connecting", 11: "connected"}
    return names.get(state, f"state {state}")


def modem_facts(bus, path: str) -> dict:
    """The `modem` facts of one ModemManager modem object (bus open)."""
    from .doctor_probe import _Probe
    from .mm.bus import BusError

    p = _Probe()
    p.facts["via"] = "modemmanager"
    try:
        props = bus.get_all(path, states.MODEM)
    except (ModemUnavailable, BusError) as exc:
        return {"reachable": False, "via": "modemmanager", "error": str(exc), "unreadable": {}}
    for key, prop in (("manufacturer", "Manufacturer"), ("model", "Model"), ("firmware", "Revision"),
                      ("imei", "EquipmentIdentifier")):
        p.ask(key, lambda prop=prop: props.get(prop) or None, f"ModemManager reports no {prop}")
    p.facts["dialect"], p.facts["dialect_reason"] = None, None
    p.facts["unreadable"]["dialect"] = "not used: ModemManager drives the modem"
    p.facts["imeisv"] = None
    p.facts["unreadable"]["imeisv"] = "ModemManager does not report the SVN"
    lock = states.sim_lock(props.get("State", states.STATE_UNKNOWN), props.get("StateFailedReason", 0),
                           props.get("UnlockRequired", states.LOCK_UNKNOWN))
    p.facts["sim_state"] = lock.value
    for key in ("iccid", "pin_attempts", "puk_attempts", "pin_attempts_source", "puk_attempts_source",
                "pin_enabled", "card_pairing_record"):
        p.facts[key] = None
    p.facts["unreadable"]["card_pairing_record"] = "not read: the modem is reached through ModemManager"
    if lock in _PRESENT:
        sim = props.get("Sim")
        p.ask("iccid", lambda: _sim_identifier(bus, sim), "ModemManager reports no SIM identifier")
        counters = states.pin_attempts(dict(props.get("UnlockRetries", {})))
        if counters is not None:
            p.facts["pin_attempts"], p.facts["puk_attempts"] = counters.pin1, counters.puk1
            p.facts["pin_attempts_source"] = counters.source if counters.pin1 is not None else None
            p.facts["puk_attempts_source"] = counters.source if counters.puk1 is not None else None
        if p.facts["pin_attempts"] is None:
            p.facts["unreadable"]["pin_attempts"] = ("ModemManager reports no PIN count for an unlocked card"
                                                     if lock is SimLock.READY else "ModemManager reports none")
        if p.facts["puk_attempts"] is None:
            p.facts["unreadable"]["puk_attempts"] = "ModemManager reports none"
        p.ask("pin_enabled", lambda: states.pin_enabled(bus.get(path, states.MODEM_3GPP, "EnabledFacilityLocks")),
              "ModemManager reports no facility locks")
    state = props.get("State", states.STATE_UNKNOWN)
    if state >= states.STATE_ENABLING:
        p.facts["radio"] = 1
    elif props.get("PowerState") == states.POWER_LOW:
        p.facts["radio"] = 4
    else:
        p.facts["radio"] = None
        p.facts["unreadable"]["radio"] = (f"the modem is {state_name(state)} in ModemManager, not in low power "
                                          "(nothing goes to the network for it)")
    p.ask("registration", lambda: _registration(bus, path), "ModemManager reports no 3GPP registration")
    p.facts["eps_registration"] = None
    p.facts["unreadable"]["eps_registration"] = "ModemManager reports one registration state"
    quality = props.get("SignalQuality")
    p.facts["signal_rssi"] = None
    p.facts["unreadable"]["signal_rssi"] = (f"ModemManager reports {quality[0]}%, not a CSQ value"
                                            if quality else "ModemManager reports none")
    return p.facts


def _sim_identifier(bus, sim_path) -> str | None:
    if sim_path in (None, "", "/"):
        return None
    return bus.get(sim_path, states.SIM, "SimIdentifier") or None


def _registration(bus, path: str) -> int | None:
    # MMModem3gppRegistrationState 0..5 are +CREG's <stat> values.
    state = bus.get(path, states.MODEM_3GPP, "RegistrationState")
    return state if 0 <= state <= 5 else None


def probe(port: str, *, rule_dirs: Sequence[str] = UDEV_RULE_DIRS) -> tuple[dict, dict]:
    """(`modemmanager` facts, `modem` facts) read here, over D-Bus."""
    from .doctor_probe import unreachable_modem
    from .mm.bus import ModemManagerBus

    mm, path = modemmanager_facts(port, rule_dirs=rule_dirs)
    if not mm["reachable"]:
        return mm, unreachable_modem(f"ModemManager is not reachable: {mm['error']}", "modemmanager")
    if path is None:
        return mm, unreachable_modem(f"ModemManager has no modem on {port}", "modemmanager")
    bus = ModemManagerBus()
    try:
        bus.open()
        return mm, modem_facts(bus, path)
    except ModemUnavailable as exc:
        return mm, unreachable_modem(str(exc), "modemmanager")
    finally:
        bus.close()
