"""NetworkManager's GSM profiles that would send a PIN behind the gate.

NetworkManager sends the PIN a connection profile holds (`gsm.pin`) at every
activation, to whatever SIM is in the slot, and asks a secret agent for one
when the flags say an agent keeps it.  With `[modem] driver =
"modemmanager"` that would unlock cards mtcd refuses, so mtcd refuses to
start while any GSM profile can supply a PIN.  `pin_sources` is pure (the
keyfile text); `profiles_holding_a_pin` reads NetworkManager's keyfile
directories.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError

# Where NetworkManager's keyfile plugin reads profiles (NetworkManager.conf(5)).
PROFILE_DIRS = (
    Path("/etc/NetworkManager/system-connections"),
    Path("/run/NetworkManager/system-connections"),
    Path("/usr/lib/NetworkManager/system-connections"),
)

# NMSettingSecretFlags
AGENT_OWNED, NOT_SAVED, NOT_REQUIRED = 0x1, 0x2, 0x4


@dataclass(frozen=True)
class PinProfile:
    name: str  # the profile's connection.id
    file: str
    why: str

    @property
    def remedy(self) -> str:
        quoted = self.name.replace("'", "'\\''")
        return f"nmcli connection modify '{quoted}' gsm.pin '' gsm.pin-flags not-required"


def pin_source(text: str) -> tuple[str, str] | None:
    """(connection id, why) when this keyfile is a GSM profile that can make
    NetworkManager send a PIN; None otherwise.  Unreadable text counts as a
    profile we cannot vouch for only if it says type=gsm."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # keys are case-sensitive in keyfiles
    try:
        parser.read_string(text)
    except configparser.Error:
        if "gsm" in text:
            return ("(unparsable keyfile)", "is a GSM profile that cannot be read")
        return None
    kind = parser.get("connection", "type", fallback="")
    if kind != "gsm" and not parser.has_section("gsm"):
        return None
    name = parser.get("connection", "id", fallback="") or "(no connection.id)"
    pin = parser.get("gsm", "pin", fallback="")
    try:
        flags = int(parser.get("gsm", "pin-flags", fallback="0") or "0")
    except ValueError:
        return name, "has a gsm.pin-flags value that is not a number"
    if flags & NOT_REQUIRED:
        return None  # NetworkManager neither keeps nor asks for a PIN
    if pin:
        return name, "stores a PIN (gsm.pin)"
    if flags & (AGENT_OWNED | NOT_SAVED):
        return name, "lets a secret agent supply a PIN (gsm.pin-flags)"
    return None


def profiles_holding_a_pin(dirs=PROFILE_DIRS) -> list[PinProfile]:
    found = []
    for directory in dirs:
        try:
            files = sorted(p for p in Path(directory).iterdir() if p.is_file())
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            raise ConfigError(f"{directory}: cannot read NetworkManager's profiles to check them for a PIN") from None
        for path in files:
            try:
                text = path.read_text(errors="replace")
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read this NetworkManager profile ({exc.strerror})") from None
            source = pin_source(text)
            if source is not None:
                found.append(PinProfile(source[0], str(path), source[1]))
    return found


def refuse_pin_profiles(dirs=PROFILE_DIRS) -> None:
    """ConfigError (exit 78) naming the first profile that would send a PIN,
    and the command that stops it."""
    found = profiles_holding_a_pin(dirs)
    if found:
        first = found[0]
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise ConfigError(f"NetworkManager profile '{first.name}' ({first.file}) {first.why}{more}: NetworkManager "
                          f"would send it to any SIM, behind the pairing gate; remove it with: {first.remedy}")


# -- NetworkManager's profiles as its D-Bus API gives them (GetSettings) --------
# Pure: the edge (mtcd.datalink.networkmanager) reads the settings, these
# functions say what they mean for the gate.

@dataclass(frozen=True)
class Profile:
    path: str  # the Settings.Connection object
    id: str
    uuid: str
    type: str
    autoconnect: bool
    interface_name: str  # "": any device
    device_id: str  # gsm.device-id, "": any modem
    pin_flags: int


def profile_from_settings(path: str, settings: dict) -> Profile:
    """`settings` as GetSettings returns it, variants unwrapped:
    {setting: {key: value}}.  NetworkManager leaves out keys at their
    default, and connection.autoconnect defaults to true."""
    connection, gsm = settings.get("connection", {}), settings.get("gsm", {})
    return Profile(path=path, id=str(connection.get("id", "")), uuid=str(connection.get("uuid", "")),
                   type=str(connection.get("type", "")), autoconnect=bool(connection.get("autoconnect", True)),
                   interface_name=str(connection.get("interface-name", "") or ""),
                   device_id=str(gsm.get("device-id", "") or ""), pin_flags=int(gsm.get("pin-flags", 0) or 0))


def pin_source_of(profile: Profile, stores_a_pin: bool | None) -> str | None:
    """Why this GSM profile can make NetworkManager send a PIN, or None.
    `stores_a_pin`: GetSecrets("gsm") came back with a gsm.pin (None: it
    failed, and a profile nobody can vouch for counts as one)."""
    if profile.type != "gsm" or profile.pin_flags & NOT_REQUIRED:
        return None
    if stores_a_pin:
        return "stores a PIN (gsm.pin)"
    if stores_a_pin is None and not profile.pin_flags & (AGENT_OWNED | NOT_SAVED):
        return "could not be checked for a stored PIN (NetworkManager refused GetSecrets)"
    if profile.pin_flags & (AGENT_OWNED | NOT_SAVED):
        return "lets a secret agent supply a PIN (gsm.pin-flags)"
    return None


def refusal_for_pin(profile: Profile, why: str) -> ConfigError:
    remedy = PinProfile(profile.id, profile.path, why).remedy
    return ConfigError(f"NetworkManager profile '{profile.id}' ({profile.path}) {why}: NetworkManager would send it "
                       f"to any SIM, behind the pairing gate; remove it with: {remedy}")


def autoconnect_rivals(profiles: list[Profile], own_uuid: str, modem_interface: str,
                       modem_device_id: str) -> list[Profile]:
    """GSM profiles other than mtcd's that NetworkManager may activate on
    this modem by itself: autoconnect on, and neither the interface name
    nor the device id ties them to another modem."""
    return [p for p in profiles
            if p.type == "gsm" and p.uuid != own_uuid and p.autoconnect
            and p.interface_name in ("", modem_interface) and p.device_id in ("", modem_device_id)]


def quoted(name: str) -> str:
    return "'" + name.replace("'", "'\\''") + "'"


def refusal_for_rival(rival: Profile, own: str) -> ConfigError:
    return ConfigError(f"NetworkManager profile '{rival.id}' is a GSM profile with autoconnect on: NetworkManager "
                       f"would bring it up on this modem behind the pairing gate; switch it off with: "
                       f"nmcli connection modify {quoted(rival.id)} connection.autoconnect no "
                       f"(mtcd activates '{own}' itself after pairing)")


# NMActiveConnectionState
ACTIVE_UNKNOWN, ACTIVATING, ACTIVATED, DEACTIVATING, DEACTIVATED = range(5)


def activation_verdict(state: int | None) -> str:
    """One reading of an ActiveConnection while mtcd waits for it: "up",
    "wait" or "failed" (None: the object is gone, NetworkManager dropped it)."""
    if state == ACTIVATED:
        return "up"
    if state in (ACTIVE_UNKNOWN, ACTIVATING):
        return "wait"
    return "failed"  # deactivating, deactivated, gone


# The record of what mtcd changed in NetworkManager, in its state directory:
# {"version": 1, "profiles": {uuid: {"id": ..., "autoconnect": bool}},
#  "wwan_enabled": bool | null}.  The first value seen is kept: a second
# takeover never overwrites what the person had set.
TAKEOVER_VERSION = 1


def empty_takeover() -> dict:
    return {"version": TAKEOVER_VERSION, "profiles": {}, "wwan_enabled": None}


def read_takeover(data: bytes) -> dict:
    """The record in `data`; ValueError naming what is wrong."""
    import json

    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(record, dict) or record.get("version") != TAKEOVER_VERSION:
        raise ValueError("not a version 1 record")
    profiles = record.get("profiles")
    if not isinstance(profiles, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("autoconnect"), bool) and isinstance(v.get("id"), str)
            for v in profiles.values()):
        raise ValueError("its profiles are not {uuid: {id, autoconnect}}")
    if not (record.get("wwan_enabled") is None or isinstance(record.get("wwan_enabled"), bool)):
        raise ValueError("wwan_enabled is not true, false or null")
    return {"version": TAKEOVER_VERSION, "profiles": profiles, "wwan_enabled": record.get("wwan_enabled")}


def remember(record: dict, profile: Profile | None = None, wwan_enabled: bool | None = None) -> dict:
    """`record` with the first value seen of a profile's autoconnect and of
    NetworkManager's WWAN switch added (never replaced)."""
    profiles = dict(record["profiles"])
    if profile is not None and profile.uuid not in profiles:
        profiles[profile.uuid] = {"id": profile.id, "autoconnect": profile.autoconnect}
    wwan = record["wwan_enabled"] if record["wwan_enabled"] is not None else wwan_enabled
    return {"version": TAKEOVER_VERSION, "profiles": profiles, "wwan_enabled": wwan}
