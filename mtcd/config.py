"""The configuration file (TOML), read once at start and checked completely.

Every problem is a ConfigError with one line naming the file and the key,
e.g. ``mtcd.toml: policy.min_retries must be an integer from 2 to 3 (got 7)``.
Unknown keys are errors too: a misspelt safety setting must not silently
fall back to its default.  Drop-ins `<config>.d/*.toml` (for the default
file, /etc/mtcd/mtcd.toml.d/) are read after the file in lexical order,
tables merged key by key, a later value winning; each is checked as strictly.

    state_dir = "/var/lib/mtcd"    # relative paths are taken from the file's directory
    [modem]
    port = "/dev/ttyUSB2"          # required
    baudrate = 115200
    timeout = 10                   # seconds, the least any command is given
    rtscts = false
    vendor = "auto"
    sim_ready_timeout = 10         # seconds the SIM may stay busy/not ready
    pin_timeout = 20               # seconds, longest wait for a PIN or PUK command
    driver = "serial"              # or "modemmanager": through ModemManager over D-Bus
    [policy]
    min_retries = 2                # never present the PIN with fewer attempts left
    require_pin_enabled = true
    on_imei_change = "report"      # or "refuse"
    rotate_on_adopt = true         # replace a transport PIN when the SIM is first paired
    rotate_every = "off"           # e.g. "90d": scheduled PIN rotation
    pin_length = 8                 # digits of PINs mtcd generates
    [keystore]
    sealer = "auto"                # "auto" | "systemd-creds" | "tpm2" | "file"
    [service]
    check_interval = 2             # seconds between SIM checks when no URC says it
    backoff_max = 60               # seconds, longest wait before reopening a lost modem
    control_socket = "/run/mtcd/control.sock"
    admin_group = ""               # group allowed on the control socket besides root
    show_imsi = false              # journal/log the IMSI in full (default masked)
    metrics_file = ""              # Prometheus textfile, e.g. /var/lib/prometheus/node-exporter/mtcd.prom
    [alerts]
    sms_to = ""                    # operator number for association-change SMS
    [uicc]
    backend = "at"                 # "at" (AT+CPIN) | "csim" (APDUs over AT+CSIM) | "pcsc" (a PC/SC reader)
    reader = ""                    # pcsc only: part of the reader's name, or its index
    [datalink]
    backend = "at"                 # "at" | "ecm" | "qmi" | "ppp" | "command" | "none" | "modemmanager" | "networkmanager"
    apn = "internet"
    pdp_type = "IP"
    cid = 1
    up = []                        # argv lists, backend "command" only
    down = []
    interface = ""                 # ecm: "usb0" by default; qmi: "wwan0"; ppp: "ppp0"
    networkctl = true              # ecm, qmi: networkctl up/reconfigure/down IFACE when installed
    qmi_device = "/dev/cdc-wdm0"   # qmi only
    qmicli = "/usr/bin/qmicli"     # qmi only
    ppp_port = ""                  # ppp: the modem's data port (not modem.port), required
    pppd = "/usr/sbin/pppd"        # ppp only
    run_dir = "/run/mtcd/ppp"      # ppp only: generated peer file and chat script
    up_timeout = 60                # ppp: seconds until the interface is up; qmi: for each qmicli
    command_timeout = 150          # seconds for the modem's attach/PDP/data-call commands
    connection = ""                # networkmanager: the NetworkManager connection id to activate, required
"""

from __future__ import annotations

import math
import os
import re
import stat
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/mtcd/mtcd.toml")
DEFAULT_STATE_DIR = Path("/var/lib/mtcd")

VENDORS = ("auto", "generic", "quectel", "simcom", "ublox", "huawei", "telit", "sierra", "cinterion")
IMEI_CHANGE_ACTIONS = ("report", "refuse")
SEALERS = ("auto", "systemd-creds", "tpm2", "file")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_MAX_SECONDS = 10**9  # about 31 years: more is a typo
UICC_BACKENDS = ("at", "csim", "pcsc")
DATALINK_BACKENDS = ("at", "ecm", "qmi", "ppp", "command", "none", "modemmanager", "networkmanager")
# How mtcd reaches the modem: its AT port, or ModemManager over D-Bus (mtcd.mm).
MODEM_DRIVERS = ("serial", "modemmanager")
# The backends that need no AT port of their own: the ones the modemmanager driver allows.
MM_DATALINK_BACKENDS = ("modemmanager", "networkmanager", "command", "none")
PDP_TYPES = ("IP", "IPV6", "IPV4V6")
MAX_APN_LENGTH = 100  # TS 23.003 §9.1


@dataclass(frozen=True)
class ModemConfig:
    port: str
    baudrate: int = 115200
    timeout: float = 10.0
    rtscts: bool = False
    vendor: str = "auto"
    sim_ready_timeout: float = 10.0  # how long the SIM may stay busy (CME 14) or not ready
    pin_timeout: float = 20.0
    driver: str = "serial"  # "modemmanager": port names the modem's primary port in ModemManager


@dataclass(frozen=True)
class PolicyConfig:
    min_retries: int = 2
    require_pin_enabled: bool = True
    on_imei_change: str = "report"
    rotate_on_adopt: bool = True
    rotate_every: float | None = None  # seconds; None: no scheduled rotation
    pin_length: int = 8


@dataclass(frozen=True)
class KeystoreConfig:
    sealer: str = "auto"


@dataclass(frozen=True)
class ServiceConfig:
    check_interval: float = 2.0
    backoff_max: float = 60.0
    control_socket: Path = Path("/run/mtcd/control.sock")
    admin_group: str = ""
    show_imsi: bool = False
    metrics_file: Path | None = None


@dataclass(frozen=True)
class AlertsConfig:
    sms_to: str = ""  # international number, e.g. "+491701234567"; "" for none


@dataclass(frozen=True)
class DatalinkConfig:
    backend: str = "at"
    apn: str = "internet"
    pdp_type: str = "IP"
    cid: int = 1
    up: tuple[str, ...] = ()
    down: tuple[str, ...] = ()
    interface: str = ""  # "": the backend's usual one
    networkctl: bool = True
    ppp_port: str = ""
    pppd: str = "/usr/sbin/pppd"
    run_dir: Path = Path("/run/mtcd/ppp")
    qmi_device: str = "/dev/cdc-wdm0"
    qmicli: str = "/usr/bin/qmicli"
    up_timeout: float = 60.0
    command_timeout: float = 150.0  # the modem's slow link commands (attach, PDP, data call)
    connection: str = ""  # networkmanager: the NetworkManager connection id (connection.id)


@dataclass(frozen=True)
class UiccConfig:
    backend: str = "at"  # "at" | "csim" | "pcsc" (mtcd.card)
    reader: str = ""  # pcsc only: a reader name substring or index; "": the only reader


@dataclass(frozen=True)
class Config:
    state_dir: Path
    modem: ModemConfig
    policy: PolicyConfig
    datalink: DatalinkConfig
    keystore: KeystoreConfig = KeystoreConfig()
    service: ServiceConfig = ServiceConfig()
    alerts: AlertsConfig = AlertsConfig()
    uicc: UiccConfig = UiccConfig()


# --- value checks: each returns the value to use or a complaint ---

class _Bad(Exception):
    """The complaint about one value, completed with file and key by the caller."""


def _show(value: Any, limit: int = 40) -> str:
    """A value as it looked in the file, for '(got ...)'."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= limit else value[:limit - 3] + "..."
        return '"' + text.encode("unicode_escape").decode("ascii").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return str(value)


def _integer(low: int, high: int | None = None) -> Callable[[Any], int]:
    what = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"

    def check(value):
        # TOML true is not 1: bool is an int subclass in Python, so refuse it first.
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"must be {what} (got {_show(value)})")
        if value < low or (high is not None and value > high):
            raise _Bad(f"must be {what} (got {_show(value)})")
        return value
    return check


def _seconds(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"must be a number of seconds > 0 (got {_show(value)})")
    if isinstance(value, int) and value > _MAX_SECONDS:  # float() of a huge integer overflows
        raise _Bad(f"must be at most {_MAX_SECONDS} seconds")
    if not (math.isfinite(value) and value > 0):
        raise _Bad(f"must be a number of seconds > 0 (got {_show(value)})")
    if value > _MAX_SECONDS:  # lock and select waits refuse a timeout this large
        raise _Bad(f"must be at most {_MAX_SECONDS} seconds (got {_show(value)})")
    return float(value)


def _boolean(value):
    if not isinstance(value, bool):
        raise _Bad(f"must be true or false (got {_show(value)})")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    listed = ", ".join(f'"{c}"' for c in choices)

    def check(value):
        if value not in choices or not isinstance(value, str):
            raise _Bad(f"must be one of {listed} (got {_show(value)})")
        return value
    return check


def _text(value):
    if not isinstance(value, str) or not value.strip():
        raise _Bad(f"must be a non-empty string (got {_show(value)})")
    return value


def _apn(value):
    # The APN goes inside a quoted AT string (+CGDCONT): printable ASCII, no quotes.
    if not isinstance(value, str):
        raise _Bad(f"must be a string (got {_show(value)})")
    if len(value) > MAX_APN_LENGTH:
        raise _Bad(f"must be at most {MAX_APN_LENGTH} characters (got {len(value)})")
    if not (value.isascii() and value.isprintable()) or '"' in value or "'" in value:
        raise _Bad(f"must be printable ASCII without quotes (got {_show(value)})")
    return value


def _duration(value):
    # "90d", "12h", "30m", "3600s", "2w"; "off" for none.
    if value == "off":
        return None
    # At most 9 digits: a longer count is a typo, and would overflow a float.
    m = re.fullmatch(r"([0-9]{1,9})([smhdw])", value) if isinstance(value, str) else None
    if m is None or int(m[1]) == 0:
        raise _Bad(f'must be "off" or a duration such as "90d", "12h", "30m" (got {_show(value)})')
    return float(int(m[1]) * _DURATION_UNITS[m[2]])


def _path(value):
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise _Bad(f"must be a path (got {_show(value)})")
    if not value.startswith("/"):
        raise _Bad(f"must be an absolute path (got {_show(value)})")
    return Path(value)


def _optional_path(value):
    return None if value == "" else _path(value)


def _port(value):
    # Kept exactly as written: /dev/serial/by-id names are case-sensitive.
    value = _text(value)
    if not value.isprintable():
        raise _Bad(f"must be a device path without control characters (got {_show(value)})")
    return value


def _state_dir(value):
    value = _text(value)
    if not value.isprintable():
        raise _Bad(f"must be a path without control characters (got {_show(value)})")
    return Path(value)


def _group(value):
    if not isinstance(value, str) or (value and not re.fullmatch(r"[a-z_][a-z0-9_-]*\$?", value)):
        raise _Bad(f"must be a group name or \"\" (got {_show(value)})")
    return value


def _phone_number(value):
    if not isinstance(value, str) or (value and not re.fullmatch(r"\+?[0-9]{3,20}", value)):
        raise _Bad(f"must be a phone number such as \"+491701234567\" or \"\" (got {_show(value)})")
    return value


def _check_interval(value):
    seconds = _seconds(value)
    if not 0.2 <= seconds <= 60:
        raise _Bad(f"must be from 0.2 to 60 seconds (got {_show(value)})")
    return seconds


def _argv(value):
    if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
        raise _Bad(f"must be a list of non-empty strings (got {_show(value)})")
    if any("\0" in a for a in value):  # no program can receive one
        raise _Bad("must not contain NUL characters")
    return tuple(value)


_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")  # Linux IFNAMSIZ - 1
# Written into pppd's options file: one word, no quotes or blanks.
_PPP_WORD = re.compile(r"/[A-Za-z0-9/._:+@-]+")


def _interface(value):
    if value == "":
        return value
    if not isinstance(value, str) or not _IFNAME.fullmatch(value) or value in (".", ".."):
        raise _Bad(f"must be a network interface name of at most 15 letters, digits, '_', '.' or '-' "
                   f"(got {_show(value)})")
    return value


def _reader(value):
    if not isinstance(value, str) or not value.strip() or len(value) > 200 or not value.isprintable():
        raise _Bad(f"must be a reader name (or part of one) or its index (got {_show(value)})")
    return value


def _connection_id(value):
    # NetworkManager's connection.id: any text, but one line a person can read.
    if not isinstance(value, str) or not value.strip() or len(value) > 255 or not value.isprintable():
        raise _Bad(f"must be a NetworkManager connection id, as `nmcli connection show` lists it (got {_show(value)})")
    return value


def _ppp_path(value):
    if value == "":
        return value
    if not isinstance(value, str) or not _PPP_WORD.fullmatch(value):
        raise _Bad(f"must be an absolute path without blanks or quotes (got {_show(value)})")
    return value


_TOP = {"state_dir": _state_dir, "modem": None, "policy": None, "datalink": None, "keystore": None,
        "service": None, "alerts": None, "uicc": None}
_SECTIONS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "modem": {
        "port": _port,
        "baudrate": _integer(1),
        "timeout": _seconds,
        "rtscts": _boolean,
        "vendor": _one_of(VENDORS),
        "sim_ready_timeout": _seconds,
        "pin_timeout": _seconds,
        "driver": _one_of(MODEM_DRIVERS),
    },
    "policy": {
        "min_retries": _integer(2, 3),
        "require_pin_enabled": _boolean,
        "on_imei_change": _one_of(IMEI_CHANGE_ACTIONS),
        "rotate_on_adopt": _boolean,
        "rotate_every": _duration,
        "pin_length": _integer(4, 8),
    },
    "keystore": {
        "sealer": _one_of(SEALERS),
    },
    "service": {
        "check_interval": _check_interval,
        "backoff_max": _seconds,
        "control_socket": _path,
        "admin_group": _group,
        "show_imsi": _boolean,
        "metrics_file": _optional_path,
    },
    "alerts": {
        "sms_to": _phone_number,
    },
    "uicc": {
        "backend": _one_of(UICC_BACKENDS),
        "reader": _reader,
    },
    "datalink": {
        "backend": _one_of(DATALINK_BACKENDS),
        "apn": _apn,
        "pdp_type": _one_of(PDP_TYPES),
        "cid": _integer(1, 255),
        "up": _argv,
        "down": _argv,
        "interface": _interface,
        "networkctl": _boolean,
        "ppp_port": _ppp_path,
        "pppd": _ppp_path,
        "run_dir": lambda value: Path(_ppp_path(value)) if value != "" else _ppp_path(value),
        "up_timeout": _seconds,
        "command_timeout": _seconds,
        "qmi_device": _ppp_path,
        "qmicli": _ppp_path,
        "connection": _connection_id,
    },
}


# A configuration is a few hundred bytes; a bigger "file" is a mistake
# (`--config /dev/zero`) and must not be read into memory.
MAX_CONFIG_BYTES = 1 << 20
_BOM = "\ufeff"


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> Config:
    """The file at `path`, then its drop-ins `<path>.d/*.toml` in lexical
    order, each over what came before: tables merged key by key, the later
    file's value winning.  Every file is read and checked on its own, so a
    complaint names the file that holds the key."""
    path = Path(path)
    doc = _parse(path)
    _check_keys(path, doc)
    origins = {key: path for key in _keys_of(doc)}
    for drop_in in drop_ins(path):
        extra = _parse(drop_in)
        _check_keys(drop_in, extra)
        for name, value in extra.items():
            if isinstance(value, dict) and isinstance(doc.get(name), dict):
                doc[name] = {**doc[name], **value}
            else:
                doc[name] = value
        origins.update({key: drop_in for key in _keys_of(extra)})
    return _build(path, doc, origins)


def drop_ins(path: Path) -> list[Path]:
    """`<path>.d/*.toml`, sorted by name; none when the directory is absent.
    Names starting with a dot (editors' temporary files) are skipped."""
    where = Path(f"{path}.d")
    try:
        names = [e.name for e in os.scandir(where)]
    except FileNotFoundError:
        return []
    except NotADirectoryError:
        raise ConfigError(f"{where}: not a directory") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte in the path
        raise ConfigError(f"{_show(str(where))}: not a valid path") from None
    return [where / name for name in sorted(names) if name.endswith(".toml") and not name.startswith(".")]


def _parse(path: Path) -> dict:
    raw = _read_config(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text") from None
    # Editors on some systems start UTF-8 files with a byte order mark; TOML
    # does not allow one, but it carries no meaning, so it is dropped.
    text = text.removeprefix(_BOM)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {_where(text, str(exc))}") from None
    except RecursionError:  # tomllib recurses once per nested array or table
        raise ConfigError(f"{path}: arrays or tables nested too deeply") from None
    except ValueError:  # tomllib's int() of a number longer than Python converts
        raise ConfigError(f"{path}: an integer of more than {sys.get_int_max_str_digits()} digits") from None


def _keys_of(doc: dict) -> list[str]:
    """The dotted keys a document sets ("modem.port", "state_dir")."""
    keys = []
    for name, value in doc.items():
        keys.append(name)
        if name in _SECTIONS and isinstance(value, dict):
            keys.extend(f"{name}.{key}" for key in value)
    return keys


def _read_config(path: Path) -> bytes:
    """The file's bytes: a regular file of at most MAX_CONFIG_BYTES.  Opened
    without blocking, so a FIFO with no writer is refused, not waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte in the path
        raise ConfigError(f"{_show(str(path))}: not a valid path") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{path}: not a regular file")
        chunks, size = [], 0
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a configuration file")
            chunks.append(chunk)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def _where(text: str, message: str) -> str:
    """tomllib's '<msg> (at line L, column C)' as 'line L: <msg> (column C)'."""
    m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, re.S)
    if m:
        return f"line {m[2]}: {m[1]} (column {m[3]})"
    m = re.fullmatch(r"(.*) \(at end of document\)", message, re.S)
    if m:
        return f"line {max(1, len(text.splitlines()))}: {m[1]} (at end of file)"
    return message


def _check_keys(path: Path, doc: dict) -> None:
    """Unknown keys first: a typo is the likeliest cause of any other complaint."""
    for key in doc:
        if key not in _TOP:
            _unknown(path, key)
    for name in _SECTIONS:
        if name in doc and not isinstance(doc[name], dict):
            raise ConfigError(f"{path}: {name} must be a table ([{name}]) (got {_show(doc[name])})")
        for key in doc.get(name, {}):
            if key not in _SECTIONS[name]:
                _unknown(path, f"{name}.{key}")


def _build(path: Path, doc: dict, origins: dict[str, Path] | None = None) -> Config:
    origins = origins or {}

    def fail(key: str, complaint: str, cause: str | None = None):
        # The file that set the key (or the key that makes it needed);
        # for a missing key, the main file.
        where = origins.get(key) or origins.get(cause or "") or path
        raise ConfigError(f"{where}: {key} {complaint}") from None

    def take(section: str) -> dict:
        out = {}
        checks = _SECTIONS[section]
        for name, value in doc.get(section, {}).items():
            try:
                out[name] = checks[name](value)
            except _Bad as bad:
                fail(f"{section}.{name}", str(bad))
        return out

    modem = take("modem")
    if "port" not in modem:
        fail("modem.port", "is required")
    policy = take("policy")
    datalink = take("datalink")
    keystore = take("keystore")
    service = take("service")
    alerts = take("alerts")
    uicc = take("uicc")
    if "reader" in uicc and uicc.get("backend", UiccConfig.backend) != "pcsc":
        fail("uicc.reader", f'is only used with backend = "pcsc" (backend is "{uicc.get("backend", UiccConfig.backend)}")')

    backend = datalink.get("backend", DatalinkConfig.backend)
    for key in ("up", "down"):
        given = datalink.get(key, ())
        if backend == "command" and not given:
            fail(f"datalink.{key}", 'is required (a non-empty argv list) when backend = "command"',
                 "datalink.backend")
        if backend != "command" and given:
            fail(f"datalink.{key}",
                 f'is only used with backend = "command" (backend is "{backend}")')
    _datalink_backend_keys(datalink, backend, modem["port"], fail)
    _driver_and_backend(modem.get("driver", ModemConfig.driver), backend, fail)

    state_dir = DEFAULT_STATE_DIR
    if "state_dir" in doc:
        try:
            state_dir = _state_dir(doc["state_dir"])
        except _Bad as bad:
            fail("state_dir", str(bad))
        # Relative to the configuration file, not to whatever the cwd is (systemd: /).
        if not state_dir.is_absolute():
            state_dir = (origins.get("state_dir", path).parent / state_dir).absolute()

    _outside_state_dir(
        state_dir, fail,
        ("service.metrics_file", service.get("metrics_file")),
        ("service.control_socket", service.get("control_socket", ServiceConfig.control_socket)),
        ("datalink.up", _program(datalink.get("up", ()))),
        ("datalink.down", _program(datalink.get("down", ()))),
        ("datalink.pppd", _program([datalink.get("pppd", DatalinkConfig.pppd)])),
        ("datalink.qmicli", _program([datalink.get("qmicli", DatalinkConfig.qmicli)])),
        ("datalink.run_dir", datalink.get("run_dir")),
    )

    return Config(
        state_dir=state_dir,
        modem=ModemConfig(**modem),
        policy=PolicyConfig(**policy),
        datalink=DatalinkConfig(**datalink),
        keystore=KeystoreConfig(**keystore),
        service=ServiceConfig(**service),
        alerts=AlertsConfig(**alerts),
        uicc=UiccConfig(**uicc),
    )


def _driver_and_backend(driver: str, backend: str, fail) -> None:
    """ModemManager owns the AT port under the modemmanager driver, so only
    backends that need no port of their own go with it, and its own backend
    needs it."""
    if driver == "modemmanager" and backend not in MM_DATALINK_BACKENDS:
        fail("datalink.backend", f'must be one of {", ".join(MM_DATALINK_BACKENDS)} with modem.driver = '
                                 f'"modemmanager" (got "{backend}")')
    if backend == "networkmanager" and driver != "modemmanager":
        # NetworkManager reaches a modem only through ModemManager, which the
        # serial driver keeps off the AT port.
        fail("datalink.backend", 'is "networkmanager", which needs modem.driver = "modemmanager": NetworkManager '
                                 f'drives the modem through ModemManager (driver is "{driver}")')
    if backend == "modemmanager" and driver != "modemmanager":
        fail("datalink.backend", 'is "modemmanager", which needs modem.driver = "modemmanager" '
                                 f'(driver is "{driver}")')


# Keys that only one backend reads: given for another, they are a mistake.
_SIM_CODE_OPTIONS = ("--uim-verify-pin", "--uim-unblock-pin", "--uim-change-pin", "--dms-uim-verify-pin",
                     "--dms-uim-unblock-pin", "--dms-uim-change-pin")
_BACKEND_KEYS = {"interface": ("ecm", "qmi", "ppp"), "networkctl": ("ecm", "qmi"), "ppp_port": ("ppp",),
                 "pppd": ("ppp",), "run_dir": ("ppp",), "up_timeout": ("qmi", "ppp"),
                 "qmi_device": ("qmi",), "qmicli": ("qmi",), "connection": ("networkmanager",)}


def _datalink_backend_keys(datalink: dict, backend: str, modem_port: str, fail) -> None:
    for key, backends in _BACKEND_KEYS.items():
        if key in datalink and backend not in backends:
            fail(f"datalink.{key}", f'is only used with backend = {" or ".join(f"{b!r}" for b in backends)} '
                                    f'(backend is "{backend}")'.replace("'", '"'))
    # A PIN or PUK on a command line is readable by every local user
    # (guarantee 4), and the SIM is mtcd's to unlock: refused outright.
    for key in ("up", "down"):
        for arg in datalink.get(key, ()):
            if arg.lower().startswith(_SIM_CODE_OPTIONS):
                fail(f"datalink.{key}", f"must not unlock the SIM itself; mtcd does (got {_show(arg.split('=')[0])})")
    if backend == "qmi":
        if "," in datalink.get("apn", DatalinkConfig.apn):  # qmicli's list separator
            fail("datalink.apn", f'must not contain "," with backend = "qmi" (got {_show(datalink["apn"])})')
        for key in ("qmi_device", "qmicli"):
            if datalink.get(key) == "":
                fail(f"datalink.{key}", "must not be empty")
    if backend == "networkmanager" and not datalink.get("connection"):
        fail("datalink.connection", 'is required when backend = "networkmanager" (the connection id '
                                    '`nmcli connection show` lists, e.g. "lte")')
    if backend != "ppp":
        return
    if not datalink.get("ppp_port"):
        fail("datalink.ppp_port", 'is required when backend = "ppp" (the modem\'s data port, e.g. "/dev/ttyUSB3")')
    if datalink["ppp_port"] == modem_port:
        fail("datalink.ppp_port", f"must not be modem.port {modem_port}: mtcd holds that port (got {_show(modem_port)})")
    if datalink.get("pppd") == "" or datalink.get("run_dir") == "":
        fail("datalink.pppd" if datalink.get("pppd") == "" else "datalink.run_dir", "must not be empty")


def _program(argv) -> Path | None:
    return Path(argv[0]) if argv and argv[0].startswith("/") else None


def _outside_state_dir(state_dir: Path, fail, *paths: tuple[str, Path | None]) -> None:
    """The state directory is the keystore's alone: a metrics file or socket
    there would be written over the sealed PINs (metrics_file =
    state_dir/keystore.json), a program there would run from root's secrets.
    Compared as written and with symbolic links resolved."""
    homes = {Path(os.path.normpath(state_dir)), _resolved(state_dir)}
    for key, path in paths:
        if path is None:
            continue
        for place in {Path(os.path.normpath(path)), _resolved(path)}:
            if any(place == home or place.is_relative_to(home) for home in homes):
                fail(key, f"must be outside state_dir {state_dir} (got {_show(str(path), 4096)})")


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare as written
        return Path(os.path.normpath(path))


def _unknown(path: Path, key: str):
    raise ConfigError(f"{path}: unknown key {key!r}")
