"""Backend "networkmanager": NetworkManager brings the link up, only after
a Paired decision, with `[modem] driver = "modemmanager"`.

NetworkManager would otherwise act on the modem by itself, and both ways
go around the gate (measured, NetworkManager 1.42 with ModemManager 1.20):
with its WWAN switch on it enables every modem it manages (a card without
a PIN attaches at once), and it activates a GSM profile whose autoconnect
is on.  So at every session start (`prepare`) mtcd switches WWAN off and
the profile's autoconnect off, remembering the values it found in
`<state_dir>/networkmanager.json` (`mtcctl datalink release` puts them
back), and refuses (exit 78) while a GSM profile can send a PIN or another
GSM profile for this modem has autoconnect on.  After pairing: WWAN on,
ActivateConnection on the modem's device, waited for within
datalink.command_timeout; whenever the gate closes: the connection
deactivated and WWAN off again, before the modem is disabled.

The pure part (what a profile's settings mean) is mtcd.mm.nm.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..errors import ConfigError, MtcdError
from ..fsutil import atomic_write, ensure_private_dir
from ..mm import nm
from ..mm.nm import PROFILE_DIRS, refuse_pin_profiles
from .base import Datalink, DatalinkFailed

log = logging.getLogger("mtcd.datalink")

SERVICE = "org.freedesktop.NetworkManager"
ROOT = "/org/freedesktop/NetworkManager"
SETTINGS_PATH = ROOT + "/Settings"
SETTINGS = SERVICE + ".Settings"
CONNECTION = SERVICE + ".Settings.Connection"
ACTIVE = SERVICE + ".Connection.Active"
DEVICE = SERVICE + ".Device"
PROPERTIES = "org.freedesktop.DBus.Properties"

TAKEOVER_FILE = "networkmanager.json"
DEVICE_TYPE_MODEM = 8  # NMDeviceType
DEVICE_DISCONNECTED = 30  # NMDeviceState: available, nothing active
UPDATE2_TO_DISK = 0x1  # NMSettingsUpdate2Flags
NO_SECRETS = SERVICE + ".AgentManager.NoSecrets"  # GetSecrets of a profile that stores none
CALL_TIMEOUT = 30.0
POLL = 0.2  # between readings of a state NetworkManager is changing
MM_DISCONNECTING, MM_CONNECTING = 9, 10  # MMModemState, besides mtcd.mm.states'


class NetworkManagerGone(DatalinkFailed):
    """NetworkManager does not answer on the system bus (exit 69)."""


class BusError(DatalinkFailed):
    """A D-Bus error reply from NetworkManager: `name` is the error's name.
    Unexpected where it is not caught: the link then counts as failed (69)."""

    def __init__(self, name: str, message: str = "", call: str = "a D-Bus call"):
        said = " ".join(message.split())[:200]  # one line, bounded
        super().__init__(f"NetworkManager {call} answered {name}" + (f": {said}" if said else ""))
        self.name = name
        self.call = call


def call_name(interface: str, method: str, body=()) -> str:
    """How a call is named in an error: the interface's last part and the
    method, with the property asked for."""
    def short(name: str) -> str:
        return "NetworkManager" if name == SERVICE else name.rsplit(".", 1)[-1]

    if interface == PROPERTIES and body and isinstance(body[0], str):
        asked = short(body[0]) + (f".{body[1]}" if len(body) > 1 and isinstance(body[1], str) else "")
        return f"Properties.{method}({asked})"
    return f"{short(interface)}.{method}"


class NetworkManagerBus:
    """Blocking calls to NetworkManager through python3-jeepney, each bounded."""

    def __init__(self, bus: str = "SYSTEM"):
        self._bus = bus
        self._conn = None

    def open(self) -> None:
        if self._conn is not None:
            return
        try:
            from jeepney.io.blocking import open_dbus_connection
        except ImportError:
            raise NetworkManagerGone('datalink.backend = "networkmanager" needs python3-jeepney (not installed)') from None
        try:
            self._conn = open_dbus_connection(bus=self._bus)
        except (OSError, ValueError) as exc:
            raise NetworkManagerGone(f"cannot reach the system bus: {exc}") from None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def call(self, path: str, interface: str, method: str, signature: str | None = None, body=(),
             timeout: float = CALL_TIMEOUT):
        from jeepney import DBusAddress, MessageType, new_method_call
        from jeepney.low_level import HeaderFields

        self.open()
        message = new_method_call(DBusAddress(path, bus_name=SERVICE, interface=interface), method, signature,
                                  tuple(body))
        called = call_name(interface, method, body)
        try:
            reply = self._conn.send_and_get_reply(message, timeout=timeout)
        except TimeoutError:
            raise NetworkManagerGone(f"NetworkManager did not answer {called} within {timeout:g} s") from None
        except (OSError, EOFError, ValueError) as exc:  # ValueError: a message jeepney cannot read
            self.close()
            raise NetworkManagerGone(f"the system bus connection failed during {called}: "
                                     f"{exc or type(exc).__name__}") from None
        if reply.header.message_type is MessageType.error:
            name = reply.header.fields.get(HeaderFields.error_name, "org.freedesktop.DBus.Error.Failed")
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            if name in ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"):
                raise NetworkManagerGone(f"NetworkManager is not running on the system bus ({called})")
            raise BusError(name, text, called)
        return tuple(reply.body)

    def get(self, path: str, interface: str, name: str):
        return self.call(path, PROPERTIES, "Get", "ss", (interface, name))[0][1]

    def set(self, path: str, interface: str, name: str, signature: str, value) -> None:
        self.call(path, PROPERTIES, "Set", "ssv", (interface, name, (signature, value)))


def _unwrap(settings: dict) -> dict:
    return {group: {key: value for key, (_, value) in keys.items()} for group, keys in settings.items()}


class NetworkManagerClient:
    """What the backend and `mtcctl datalink release` ask of NetworkManager."""

    def __init__(self, bus: NetworkManagerBus | None = None):
        self.bus = bus or NetworkManagerBus()

    def profiles(self) -> list[tuple[nm.Profile, dict]]:
        """Every connection profile with its raw settings (no secrets)."""
        found = []
        for path in self.bus.call(SETTINGS_PATH, SETTINGS, "ListConnections")[0]:
            try:
                settings = self.bus.call(path, CONNECTION, "GetSettings")[0]
            except BusError:
                continue  # removed while we looked
            found.append((nm.profile_from_settings(path, _unwrap(settings)), settings))
        return found

    def profile(self, name: str) -> tuple[nm.Profile, dict]:
        """The profile whose connection.id (or uuid) is `name`; ConfigError
        when there is none, or more than one."""
        matches = [(p, s) for p, s in self.profiles() if name in (p.id, p.uuid)]
        if not matches:
            raise ConfigError(f"datalink.connection: NetworkManager has no connection '{name}' "
                              f"(`nmcli connection show` lists them)")
        if len(matches) > 1:
            raise ConfigError(f"datalink.connection: NetworkManager has {len(matches)} connections named '{name}'; "
                              f"name it by its UUID instead")
        profile = matches[0][0]
        if profile.type != "gsm":
            raise ConfigError(f"datalink.connection: NetworkManager connection '{name}' is of type "
                              f"'{profile.type}', not a mobile broadband (gsm) profile")
        return matches[0]

    def stores_a_pin(self, profile: nm.Profile) -> bool | None:
        """GetSecrets for the gsm setting: only system-owned secrets (flags 0)
        are asked for, so no secret agent is ever woken.  The value is
        looked at for presence and dropped at once, never kept or shown.
        None: NetworkManager would not say (the caller refuses)."""
        if profile.type != "gsm" or profile.pin_flags != 0:
            return False
        try:
            secrets = self.bus.call(profile.path, CONNECTION, "GetSecrets", "s", ("gsm",))[0]
        except BusError as exc:
            if exc.name == NO_SECRETS:
                return False  # NetworkManager keeps no secret for it: no PIN
            log.warning("GetSecrets of NetworkManager profile '%s': %s", profile.id, exc.name)
            return None
        return bool(secrets.get("gsm", {}).get("pin", ("s", ""))[1])

    def set_autoconnect(self, profile: nm.Profile, settings: dict, value: bool) -> None:
        """Update2 with connection.autoconnect changed and every other setting
        as NetworkManager's file has it; saved to disk so that a reboot keeps
        it.

        The update carries no secrets: NetworkManager then merges the ones it
        holds in memory (since 1.32 the profile itself, before that a cache
        of it).  Where memory and file differ (the file written behind its
        back, a cache cleared), a to-disk update would write the file without
        the secrets only the file had: the operator's APN password silently
        gone.  So NetworkManager reads the file first.  Carrying the secrets
        ourselves (GetSecrets) is no better: it answers from the same memory,
        and asks the registered secret agents whenever that does not suffice,
        while this way mtcd never sees a secret at all."""
        settings = self._read_from_disk(profile) or settings
        changed = {group: dict(keys) for group, keys in settings.items()}
        changed["connection"]["autoconnect"] = ("b", value)
        self.bus.call(profile.path, CONNECTION, "Update2", "a{sa{sv}}ua{sv}", (changed, UPDATE2_TO_DISK, {}))

    def _read_from_disk(self, profile: nm.Profile) -> dict | None:
        """Have NetworkManager read the profile's file again (LoadConnections)
        and return its settings as now held; None for a profile that lives
        in memory only or has changes not yet saved (memory is then what the
        operator last asked for, and reading the file would undo it)."""
        filename = self.bus.get(profile.path, CONNECTION, "Filename")
        if not filename or self.bus.get(profile.path, CONNECTION, "Unsaved"):
            return None
        _, failures = self.bus.call(SETTINGS_PATH, SETTINGS, "LoadConnections", "as", ([filename],))
        if failures:
            raise DatalinkFailed(f"NetworkManager could not read '{profile.id}' from {filename} "
                                 f"(`nmcli connection load {filename}` says why); nothing changed by mtcd")
        return self.bus.call(profile.path, CONNECTION, "GetSettings")[0]

    def wwan_enabled(self) -> bool:
        return bool(self.bus.get(ROOT, SERVICE, "WwanEnabled"))

    def set_wwan(self, enabled: bool) -> None:
        self.bus.set(ROOT, SERVICE, "WwanEnabled", "b", enabled)

    def modem_device(self, modem_path: str) -> str | None:
        """NetworkManager's device for the ModemManager modem object
        `modem_path` (a modem device's Udi is that path)."""
        for device in self.bus.call(ROOT, SERVICE, "GetDevices")[0]:
            try:
                if (self.bus.get(device, DEVICE, "DeviceType") == DEVICE_TYPE_MODEM
                        and self.bus.get(device, DEVICE, "Udi") == modem_path):
                    return device
            except BusError:
                continue
        return None

    def active_for(self, profile_path: str) -> list[str]:
        """The active connections of this profile."""
        active = []
        for path in self.bus.get(ROOT, SERVICE, "ActiveConnections"):
            try:
                if self.bus.get(path, ACTIVE, "Connection") == profile_path:
                    active.append(path)
            except BusError:
                continue  # went away while we looked
        return active

    def active_state(self, active_path: str) -> int | None:
        """ActiveConnection.State; None when the object is gone."""
        try:
            return self.bus.get(active_path, ACTIVE, "State")
        except BusError:
            return None


class NmDatalink(Datalink):
    """`[datalink] backend = "networkmanager"` (see the module's text)."""

    name = "networkmanager"

    def __init__(self, modem, connection: str, state_dir: Path, timeout: float = 150.0,
                 client: NetworkManagerClient | None = None, profile_dirs=PROFILE_DIRS):
        super().__init__(modem)
        self.connection, self.state_dir, self.timeout = connection, Path(state_dir), timeout
        self.client = client or NetworkManagerClient()
        self.profile_dirs = profile_dirs

    # -- before anything is decided ---------------------------------------
    def hold(self) -> None:
        """Before mtcd disables the modem: WWAN off (remembered first) and
        NetworkManager's connection on it down, waited for within
        modem.timeout, so that the disable does not race NetworkManager
        enabling or connecting the modem (measured: ModemManager then answers
        WrongState, and the link NetworkManager made stays up)."""
        try:
            self._remember(None)
            self._deactivate(strict=True)
            self._settle()
        except MtcdError as exc:
            log.warning("NetworkManager not yet kept off the modem: %s", exc)

    def _remember(self, profile: nm.Profile | None) -> None:
        """Record the profile's autoconnect and the WWAN switch as found (the
        first values only), then switch WWAN off."""
        try:
            record = self._read_record()
        except MtcdError:
            # Damaged: nothing to remember into (the person restores by
            # hand), but WWAN goes off all the same: left on, NetworkManager
            # enables the modem behind the gate.
            self._set_wwan(False)
            raise
        wwan = self.client.wwan_enabled()
        remembered = nm.remember(record, profile, wwan)
        if remembered != record or not (self.state_dir / TAKEOVER_FILE).exists():
            self._write_record(remembered)  # before anything is changed
        if wwan:
            log.warning("NetworkManager's WWAN switch was on: switching it off, so that NetworkManager enables "
                        "no modem before pairing (`mtcctl datalink release` switches it back)")
            self._set_wwan(False)

    def _settle(self) -> None:
        """Wait, bounded, until NetworkManager has let go of the modem: its
        device unavailable (what WWAN off leads to) and the modem in no
        transition ModemManager would refuse a disable in."""
        from ..mm import states

        path = self.modem.session.path
        device = self.client.modem_device(path) if path else None
        deadline = time.monotonic() + self.modem.session.timeout
        while time.monotonic() < deadline:
            busy = self.modem.state() in (states.STATE_DISABLING, states.STATE_ENABLING, MM_DISCONNECTING,
                                          MM_CONNECTING)
            if not busy and (device is None or self.client.bus.get(device, DEVICE, "State") < DEVICE_DISCONNECTED):
                return
            time.sleep(POLL)
        log.info("NetworkManager still holds the modem after %g s; disabling it anyway", self.modem.session.timeout)

    def prepare(self) -> None:
        """WWAN off and the profile's autoconnect off (remembered first), then
        the refusals: a profile that can send a PIN, a rival GSM profile."""
        own, settings = self.client.profile(self.connection)
        self._remember(own)
        if own.autoconnect:
            log.warning("NetworkManager connection '%s' had autoconnect on: switching it off, mtcd activates it "
                        "after pairing (`mtcctl datalink release` switches it back)", own.id)
            try:
                self.client.set_autoconnect(own, settings, False)
            except BusError as exc:
                raise DatalinkFailed(f"NetworkManager refused to switch off autoconnect of '{own.id}' "
                                     f"({exc.name})") from None
        # Whatever NetworkManager started before (an autoconnect while WWAN
        # was on, an earlier mtcd's link) comes down before the decision,
        # and a modem it enabled meanwhile is disabled again.
        self._deactivate(strict=True)
        self._keep_disabled()
        self._refuse(own)

    def _keep_disabled(self) -> None:
        from ..mm import states
        from ..mm.bus import BusError as MmBusError

        if self.modem.state() >= states.STATE_ENABLING:
            log.warning("NetworkManager had enabled the modem: disabling it again until pairing")
            try:
                self.modem.session.call(states.MODEM, "Enable", "b", (False,))
            except MmBusError as exc:  # the gate cannot be confirmed closed
                raise DatalinkFailed(f"the modem NetworkManager enabled could not be disabled ({exc.name})") from None

    def _refuse(self, own: nm.Profile) -> None:
        refuse_pin_profiles(self.profile_dirs)
        profiles = [p for p, _ in self.client.profiles()]
        for profile in profiles:
            why = nm.pin_source_of(profile, self.client.stores_a_pin(profile))
            if why is not None:
                raise nm.refusal_for_pin(profile, why)
        interface, device_id = self._modem_names()
        rivals = nm.autoconnect_rivals(profiles, own.uuid, interface, device_id)
        if rivals:
            raise nm.refusal_for_rival(rivals[0], own.id)

    def _modem_names(self) -> tuple[str, str]:
        """The modem's device name in NetworkManager (its primary port, such
        as ttyUSB2) and its ModemManager DeviceIdentifier."""
        try:
            return (self.modem.session.modem("PrimaryPort") or "", self.modem.session.modem("DeviceIdentifier") or "")
        except MtcdError:
            return "", ""

    # -- after a Paired decision (Datalink.up checked the proof) ------------
    def _bring_up(self) -> None:
        own, _ = self.client.profile(self.connection)
        self._refuse(own)  # profiles may have changed since the session started
        device = self._device()
        self._set_wwan(True)
        self._wait_for_device(device)
        try:
            active = self.client.bus.call(ROOT, SERVICE, "ActivateConnection", "ooo", (own.path, device, "/"))[0]
        except BusError as exc:
            raise DatalinkFailed(f"NetworkManager refused to activate '{own.id}' ({exc.name})") from None
        deadline = time.monotonic() + self.timeout
        while True:
            state = self.client.active_state(active)
            verdict = nm.activation_verdict(state)
            if verdict == "up":
                log.info("NetworkManager activated '%s'", own.id)
                return
            if verdict == "failed":
                raise DatalinkFailed(f"NetworkManager could not activate '{own.id}'{self._device_reason(device)}")
            if time.monotonic() >= deadline:
                raise DatalinkFailed(f"NetworkManager did not activate '{own.id}' within {self.timeout:g} s "
                                     f"(datalink.command_timeout)")
            time.sleep(POLL)

    def _device(self) -> str:
        path = self.modem.session.path
        device = self.client.modem_device(path) if path else None
        if device is None:
            raise DatalinkFailed(f"NetworkManager manages no device for the modem {path} "
                                 "(`nmcli device` lists a gsm device once it does)")
        return device

    def _wait_for_device(self, device: str) -> None:
        """With WWAN just switched on, the modem's device becomes available
        when NetworkManager has re-read the modem: wait for that, bounded."""
        deadline = time.monotonic() + self.timeout
        while self.client.bus.get(device, DEVICE, "State") < DEVICE_DISCONNECTED:
            if time.monotonic() >= deadline:
                raise DatalinkFailed(f"NetworkManager's modem device did not become available within "
                                     f"{self.timeout:g} s (datalink.command_timeout)")
            time.sleep(POLL)

    def _device_reason(self, device: str) -> str:
        try:
            reason = self.client.bus.get(device, DEVICE, "StateReason")[1]
        except (BusError, MtcdError):
            return ""
        return f" (device state reason {reason}, see NMDeviceStateReason)" if reason else ""

    # -- whenever the gate closes --------------------------------------------
    def _take_down(self) -> None:
        self._deactivate()

    def release_without_modem(self) -> None:
        self._deactivate()

    def _deactivate(self, strict: bool = False) -> None:
        """Every active connection of the profile down, and whatever else is
        active on the modem's device (Device.Disconnect, which also keeps
        NetworkManager from activating anything there by itself), WWAN off.
        Errors are logged when the gate closes (the modem is disabled after
        this anyway); `strict` (before a decision) raises them."""
        try:
            own, _ = self.client.profile(self.connection)
            for active in self.client.active_for(own.path):
                try:
                    self.client.bus.call(ROOT, SERVICE, "DeactivateConnection", "o", (active,))
                    log.info("NetworkManager deactivated '%s'", own.id)
                except BusError as exc:
                    log.info("DeactivateConnection: %s", exc.name)  # already going down
            path = self.modem.session.path
            device = self.client.modem_device(path) if path else None
            if device is not None and self.client.bus.get(device, DEVICE, "ActiveConnection") != "/":
                try:
                    self.client.bus.call(device, DEVICE, "Disconnect")
                except BusError as exc:
                    log.info("Device.Disconnect: %s", exc.name)
            self._set_wwan(False)
        except MtcdError as exc:
            if strict:
                raise
            log.warning("taking NetworkManager's connection down: %s", exc)

    def _set_wwan(self, enabled: bool) -> None:
        try:
            self.client.set_wwan(enabled)
        except BusError as exc:
            raise DatalinkFailed(f"NetworkManager refused to switch WWAN {'on' if enabled else 'off'} "
                                 f"({exc.name})") from None

    # -- the record of what mtcd changed ----------------------------------------
    def _read_record(self) -> dict:
        return read_record(self.state_dir)

    def _write_record(self, record: dict) -> None:
        write_record(self.state_dir, record)


def read_record(state_dir: Path) -> dict:
    path = Path(state_dir) / TAKEOVER_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return nm.empty_takeover()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read what mtcd changed in NetworkManager ({exc.strerror})") from None
    try:
        return nm.read_takeover(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: damaged ({exc}); restore the values by hand with nmcli and remove it") from None


def write_record(state_dir: Path, record: dict) -> None:
    ensure_private_dir(Path(state_dir))  # a first start may come before any PIN is stored
    atomic_write(Path(state_dir) / TAKEOVER_FILE, (json.dumps(record, sort_keys=True) + "\n").encode())


def release(state_dir: Path, client: NetworkManagerClient | None = None) -> list[str]:
    """Put back what mtcd changed in NetworkManager (the recorded autoconnect
    values and the WWAN switch) and forget the record.  Returns what was
    done, one line each.  A recorded profile that is gone is skipped."""
    record = read_record(state_dir)
    path = Path(state_dir) / TAKEOVER_FILE
    if not path.exists():
        return []
    client = client or NetworkManagerClient()
    done = []
    known = {p.uuid: (p, s) for p, s in client.profiles()}
    for uuid, saved in record["profiles"].items():
        if uuid not in known:
            done.append(f"connection '{saved['id']}' is gone from NetworkManager: nothing to restore")
            continue
        profile, settings = known[uuid]
        if profile.autoconnect != saved["autoconnect"]:
            try:
                client.set_autoconnect(profile, settings, saved["autoconnect"])
            except BusError as exc:
                raise DatalinkFailed(f"NetworkManager refused to restore autoconnect of '{profile.id}' "
                                     f"({exc.name})") from None
        done.append(f"connection '{profile.id}': autoconnect {'on' if saved['autoconnect'] else 'off'}")
    if record["wwan_enabled"] is not None:
        try:
            client.set_wwan(record["wwan_enabled"])
        except BusError as exc:
            raise DatalinkFailed(f"NetworkManager refused to switch WWAN back ({exc.name})") from None
        done.append(f"WWAN {'on' if record['wwan_enabled'] else 'off'}")
    try:
        path.unlink()
    except OSError as exc:
        raise ConfigError(f"{path}: restored, but the record could not be removed ({exc.strerror})") from None
    return done
