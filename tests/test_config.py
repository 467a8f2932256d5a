"""The configuration file: defaults, a full example, and one exact complaint per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from mtcd.config import (
    DEFAULT_CONFIG_PATH,
    Config,
    DatalinkConfig,
    ModemConfig,
    PolicyConfig,
    load_config,
)
from mtcd.errors import ConfigError

MINIMAL = '[modem]\nport = "/dev/ttyUSB2"\n'

FULL = """\
state_dir = "/srv/mtcd"

[modem]
port = "/dev/serial/by-id/usb-Quectel_EG25-if02-port0"
baudrate = 921600
timeout = 2.5
rtscts = true
vendor = "quectel"

[policy]
min_retries = 3
require_pin_enabled = false
on_imei_change = "refuse"

[datalink]
backend = "command"
apn = "iot.example-operator.net"
pdp_type = "IPV4V6"
cid = 3
up = ["/usr/sbin/ifup", "wwan0"]
down = ["/usr/sbin/ifdown", "wwan0"]
"""


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "mtcd.toml"
    if isinstance(text, str):
        text = text.encode()
    path.write_bytes(text)
    return path


def test_defaults(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config == Config(
        state_dir=Path("/var/lib/mtcd"),
        modem=ModemConfig(port="/dev/ttyUSB2"),
        policy=PolicyConfig(),
        datalink=DatalinkConfig(),
    )
    assert config.modem.baudrate == 115200
    assert config.modem.timeout == 10.0 and isinstance(config.modem.timeout, float)
    assert config.modem.rtscts is False and config.modem.vendor == "auto"
    assert config.policy.min_retries == 2
    assert config.policy.require_pin_enabled is True
    assert config.policy.on_imei_change == "report"
    d = config.datalink
    assert (d.backend, d.apn, d.pdp_type, d.cid, d.up, d.down) == ("at", "internet", "IP", 1, (), ())


def test_full_example(tmp_path):
    config = load_config(write(tmp_path, FULL))
    assert config.state_dir == Path("/srv/mtcd")
    assert config.modem == ModemConfig(
        port="/dev/serial/by-id/usb-Quectel_EG25-if02-port0",
        baudrate=921600, timeout=2.5, rtscts=True, vendor="quectel",
    )
    assert config.policy == PolicyConfig(
        min_retries=3, require_pin_enabled=False, on_imei_change="refuse"
    )
    assert config.datalink == DatalinkConfig(
        backend="command", apn="iot.example-operator.net", pdp_type="IPV4V6", cid=3,
        up=("/usr/sbin/ifup", "wwan0"), down=("/usr/sbin/ifdown", "wwan0"),
    )


def test_config_is_frozen(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    with pytest.raises(AttributeError):
        config.policy.min_retries = 0


def test_integer_timeout_and_empty_apn(tmp_path):
    config = load_config(write(tmp_path, MINIMAL + 'timeout = 3\n[datalink]\napn = ""\n'))
    assert config.modem.timeout == 3.0 and config.datalink.apn == ""


def test_relative_state_dir_is_taken_from_the_file(tmp_path):
    config = load_config(write(tmp_path, 'state_dir = "state"\n' + MINIMAL))
    assert config.state_dir == tmp_path / "state"


def test_default_path():
    assert DEFAULT_CONFIG_PATH == Path("/etc/mtcd/mtcd.toml")


def test_empty_sections_are_fine(tmp_path):
    config = load_config(write(tmp_path, MINIMAL + "[policy]\n[datalink]\n"))
    assert config.policy == PolicyConfig()


BAD = [
    # (text, the exact message after "<path>: ")
    ("", "modem.port is required"),
    ("[modem]\n", "modem.port is required"),
    ("[policy]\nmin_retries = 2\n", "modem.port is required"),
    (MINIMAL + "[policy]\nmin_retry = 2\n", "unknown key 'policy.min_retry'"),
    (MINIMAL + "speed = 9600\n", "unknown key 'modem.speed'"),
    ("statedir = '/x'\n" + MINIMAL, "unknown key 'statedir'"),
    (MINIMAL + "[pin]\ncode = 1234\n", "unknown key 'pin'"),
    (MINIMAL + "[modem.usb]\nvid = 1\n", "unknown key 'modem.usb'"),
    # an unknown key is reported before a bad value elsewhere
    (MINIMAL + "baudrate = 'x'\n[policy]\nfoo = 1\n", "unknown key 'policy.foo'"),
    ("modem = 5\n", "modem must be a table ([modem]) (got 5)"),
    ('modem = "/dev/ttyUSB0"\n', 'modem must be a table ([modem]) (got "/dev/ttyUSB0")'),
    ("[modem]\nport = 5\n", "modem.port must be a non-empty string (got 5)"),
    ("[modem]\nport = ''\n", 'modem.port must be a non-empty string (got "")'),
    (MINIMAL + "baudrate = 0\n", "modem.baudrate must be an integer >= 1 (got 0)"),
    (MINIMAL + "baudrate = true\n", "modem.baudrate must be an integer >= 1 (got true)"),
    (MINIMAL + "baudrate = 9600.0\n", "modem.baudrate must be an integer >= 1 (got 9600.0)"),
    (MINIMAL + "baudrate = '115200'\n", 'modem.baudrate must be an integer >= 1 (got "115200")'),
    (MINIMAL + "timeout = 0\n", "modem.timeout must be a number of seconds > 0 (got 0)"),
    (MINIMAL + "timeout = -1.5\n", "modem.timeout must be a number of seconds > 0 (got -1.5)"),
    (MINIMAL + "timeout = inf\n", "modem.timeout must be a number of seconds > 0 (got inf)"),
    (MINIMAL + "timeout = nan\n", "modem.timeout must be a number of seconds > 0 (got nan)"),
    (MINIMAL + "timeout = true\n", "modem.timeout must be a number of seconds > 0 (got true)"),
    (MINIMAL + "rtscts = 1\n", "modem.rtscts must be true or false (got 1)"),
    (MINIMAL + "rtscts = 'yes'\n", 'modem.rtscts must be true or false (got "yes")'),
    (MINIMAL + "vendor = 'Quectel'\n",
     'modem.vendor must be one of "auto", "generic", "quectel", "simcom", "ublox", '
     '"huawei", "telit", "sierra", "cinterion" (got "Quectel")'),
    (MINIMAL + "vendor = ['quectel']\n",
     'modem.vendor must be one of "auto", "generic", "quectel", "simcom", "ublox", '
     '"huawei", "telit", "sierra", "cinterion" (got an array)'),
    (MINIMAL + "[policy]\nmin_retries = 7\n",
     "policy.min_retries must be an integer from 2 to 3 (got 7)"),
    (MINIMAL + "[policy]\nmin_retries = 1\n",
     "policy.min_retries must be an integer from 2 to 3 (got 1)"),
    (MINIMAL + "[policy]\nmin_retries = 0\n",
     "policy.min_retries must be an integer from 2 to 3 (got 0)"),
    (MINIMAL + "[policy]\nmin_retries = true\n",
     "policy.min_retries must be an integer from 2 to 3 (got true)"),
    (MINIMAL + "[policy]\nmin_retries = 2.0\n",
     "policy.min_retries must be an integer from 2 to 3 (got 2.0)"),
    (MINIMAL + "[policy]\nrequire_pin_enabled = 0\n",
     "policy.require_pin_enabled must be true or false (got 0)"),
    (MINIMAL + "[policy]\non_imei_change = 'ignore'\n",
     'policy.on_imei_change must be one of "report", "refuse" (got "ignore")'),
    (MINIMAL + "[datalink]\nbackend = 'wifi'\n",
     'datalink.backend must be one of "at", "ecm", "qmi", "ppp", "command", "none", "modemmanager", "networkmanager" (got "wifi")'),
    (MINIMAL + "[datalink]\napn = 'my\"apn'\n",
     'datalink.apn must be printable ASCII without quotes (got "my\\"apn")'),
    (MINIMAL + "[datalink]\napn = \"it's\"\n",
     'datalink.apn must be printable ASCII without quotes (got "it\'s")'),
    (MINIMAL + "[datalink]\napn = \"a\\tb\"\n",
     'datalink.apn must be printable ASCII without quotes (got "a\\tb")'),
    (MINIMAL + "[datalink]\napn = \"caf\u00e9\"\n",
     'datalink.apn must be printable ASCII without quotes (got "caf\\xe9")'),
    (MINIMAL + "[datalink]\napn = '" + "a" * 101 + "'\n",
     "datalink.apn must be at most 100 characters (got 101)"),
    (MINIMAL + "[datalink]\napn = 5\n", "datalink.apn must be a string (got 5)"),
    (MINIMAL + "[datalink]\npdp_type = 'ipv6'\n",
     'datalink.pdp_type must be one of "IP", "IPV6", "IPV4V6" (got "ipv6")'),
    (MINIMAL + "[datalink]\ncid = 0\n", "datalink.cid must be an integer from 1 to 255 (got 0)"),
    (MINIMAL + "[datalink]\ncid = false\n",
     "datalink.cid must be an integer from 1 to 255 (got false)"),
    (MINIMAL + "[datalink]\nbackend = 'command'\ndown = ['x']\n",
     'datalink.up is required (a non-empty argv list) when backend = "command"'),
    (MINIMAL + "[datalink]\nbackend = 'command'\nup = ['x']\n",
     'datalink.down is required (a non-empty argv list) when backend = "command"'),
    (MINIMAL + "[datalink]\nbackend = 'command'\nup = []\ndown = ['x']\n",
     'datalink.up is required (a non-empty argv list) when backend = "command"'),
    (MINIMAL + "[datalink]\nup = ['ifup', 'wwan0']\n",
     'datalink.up is only used with backend = "command" (backend is "at")'),
    (MINIMAL + "[datalink]\nbackend = 'command'\nup = 'ifup wwan0'\ndown = ['x']\n",
     'datalink.up must be a list of non-empty strings (got "ifup wwan0")'),
    (MINIMAL + "[datalink]\nbackend = 'command'\nup = ['ifup', '']\ndown = ['x']\n",
     "datalink.up must be a list of non-empty strings (got an array)"),
    (MINIMAL + "[datalink]\nbackend = 'command'\nup = ['ifup', 3]\ndown = ['x']\n",
     "datalink.up must be a list of non-empty strings (got an array)"),
    ("state_dir = 5\n" + MINIMAL, "state_dir must be a non-empty string (got 5)"),
    ("state_dir = ''\n" + MINIMAL, 'state_dir must be a non-empty string (got "")'),
    # TOML syntax: tomllib's message with the line first
    ("[modem]\nport = \n", "line 2: Invalid value (column 8)"),
    ("[modem]\nport = '/dev/x'\nbaudrate 115200\n",
     "line 3: Expected '=' after a key in a key/value pair (column 10)"),
    ("[modem]\nport = '/dev/x'\n[modem]\n", "line 3: Cannot declare ('modem',) twice (column 7)"),
    ("[modem]\nport = '/dev/x'\nport = '/dev/y'\n",
     "line 3: Cannot overwrite a value (column 16)"),
    ("[modem]\nport = '/dev/x'\nbaudrate =", "line 3: Invalid value (at end of file)"),
    (b"[modem]\nport = '/dev/\xff'\n", "line 2: not UTF-8 text"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_config_names_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert str(exc.value) == f"{path}: {message}"
    # One line, no foreign exception chained in.
    assert exc.value.__cause__ is None
    assert exc.value.__context__ is None or exc.value.__suppress_context__


def test_long_string_values_are_shortened(tmp_path):
    path = write(tmp_path, MINIMAL + "vendor = '" + "q" * 200 + "'\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert len(str(exc.value)) < 250 + len(str(path))
    assert '(got "' + "q" * 37 + '...")' in str(exc.value)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"absent.toml: no such file$"):
        load_config(path)


def test_unreadable_file(tmp_path):
    path = tmp_path / "mtcd.toml"
    path.mkdir()  # a directory: never read as a configuration, even by root
    with pytest.raises(ConfigError, match=r"mtcd.toml: not a regular file$"):
        load_config(path)


# --- the PIN lifecycle keys ---

@pytest.mark.parametrize("text, seconds", [('"90d"', 90 * 86400), ('"12h"', 43200), ('"30m"', 1800), ('"2w"', 1209600), ('"off"', None)])
def test_rotate_every_durations(tmp_path, text, seconds):
    p = tmp_path / "mtcd.toml"
    p.write_text(f'[modem]\nport = "/dev/ttyUSB2"\n[policy]\nrotate_every = {text}\n')
    assert load_config(p).policy.rotate_every == seconds


@pytest.mark.parametrize("text", ['"90"', '"0d"', '"1y"', "90", '"-1d"', '""'])
def test_bad_rotate_every(tmp_path, text):
    p = tmp_path / "mtcd.toml"
    p.write_text(f'[modem]\nport = "/dev/ttyUSB2"\n[policy]\nrotate_every = {text}\n')
    with pytest.raises(ConfigError, match="policy.rotate_every must be"):
        load_config(p)


def test_lifecycle_defaults_and_sealer(tmp_path):
    p = tmp_path / "mtcd.toml"
    p.write_text('[modem]\nport = "/dev/ttyUSB2"\n')
    c = load_config(p)
    assert (c.policy.rotate_on_adopt, c.policy.rotate_every, c.policy.pin_length, c.keystore.sealer) == (True, None, 8, "auto")
    p.write_text('[modem]\nport = "/dev/ttyUSB2"\n[keystore]\nsealer = "tpm"\n')
    with pytest.raises(ConfigError, match="keystore.sealer must be one of"):
        load_config(p)
    p.write_text('[modem]\nport = "/dev/ttyUSB2"\n[policy]\npin_length = 9\n')
    with pytest.raises(ConfigError, match="policy.pin_length must be an integer from 4 to 8"):
        load_config(p)


# --- the service keys ---

def test_service_defaults_and_values(tmp_path):
    p = tmp_path / "mtcd.toml"
    p.write_text('[modem]\nport = "/dev/ttyUSB2"\n')
    c = load_config(p)
    assert c.service.check_interval == 2.0 and c.service.admin_group == "" and c.service.metrics_file is None
    assert str(c.service.control_socket) == "/run/mtcd/control.sock" and c.alerts.sms_to == ""
    p.write_text('[modem]\nport = "/dev/ttyUSB2"\n[service]\ncheck_interval = 0.5\nadmin_group = "mtcadm"\n'
                 'metrics_file = "/var/lib/prom/mtcd.prom"\nshow_imsi = true\n[alerts]\nsms_to = "+491701234567"\n')
    c = load_config(p)
    assert (c.service.check_interval, c.service.admin_group, str(c.service.metrics_file), c.service.show_imsi,
            c.alerts.sms_to) == (0.5, "mtcadm", "/var/lib/prom/mtcd.prom", True, "+491701234567")


@pytest.mark.parametrize("section, line, key", [
    ("service", "check_interval = 0", "service.check_interval"),
    ("service", "check_interval = 100", "service.check_interval"),
    ("service", 'control_socket = "relative.sock"', "service.control_socket"),
    ("service", 'admin_group = "Bad Group"', "service.admin_group"),
    ("service", 'metrics_file = "x.prom"', "service.metrics_file"),
    ("alerts", 'sms_to = "call me"', "alerts.sms_to"),
    ("alerts", "sms_to = 4917", "alerts.sms_to"),
])
def test_bad_service_values(tmp_path, section, line, key):
    p = tmp_path / "mtcd.toml"
    p.write_text(f'[modem]\nport = "/dev/ttyUSB2"\n[{section}]\n{line}\n')
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + " must be"):
        load_config(p)


# --- nothing configured may land in the state directory -------------------------

@pytest.mark.parametrize("section, key, value", [
    ("service", "metrics_file", "{state}/keystore.json"),  # would overwrite the sealed PINs
    ("service", "metrics_file", "{state}/../state/mtcd.prom"),
    ("service", "metrics_file", "{state}"),
    ("service", "control_socket", "{state}/control.sock"),
    ("service", "metrics_file", "{link}/mtcd.prom"),  # through a symbolic link
    ("service", "metrics_file", "{planted}"),  # a link planted where the metrics go
])
def test_a_path_inside_the_state_directory_is_refused(tmp_path, section, key, value):
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "link").symlink_to(state)
    (tmp_path / "planted.prom").symlink_to(state / "keystore.json")
    value = value.format(state=state, link=tmp_path / "link", planted=tmp_path / "planted.prom")
    path = write(tmp_path, f'state_dir = "{state}"\n{MINIMAL}[{section}]\n{key} = "{value}"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f'{path}: {section}.{key} must be outside state_dir {state} (got "{value}")'


def test_a_datalink_program_inside_the_state_directory_is_refused(tmp_path):
    text = (f'state_dir = "state"\n{MINIMAL}[datalink]\nbackend = "command"\n'
            f'up = ["{tmp_path}/state/up.sh"]\ndown = ["/usr/sbin/ifdown", "wwan0"]\n')
    with pytest.raises(ConfigError, match="datalink.up must be outside state_dir"):
        load_config(write(tmp_path, text))


def test_paths_beside_the_state_directory_are_fine(tmp_path):
    text = (f'state_dir = "{tmp_path}/state"\n{MINIMAL}[service]\n'
            f'metrics_file = "{tmp_path}/state-metrics/mtcd.prom"\ncontrol_socket = "{tmp_path}/statesock"\n')
    config = load_config(write(tmp_path, text))
    assert config.service.metrics_file == tmp_path / "state-metrics" / "mtcd.prom"


# --- the file itself ----------------------------------------------------------------

def test_a_byte_order_mark_is_dropped(tmp_path):
    assert load_config(write(tmp_path, "\ufeff" + MINIMAL)).modem.port == "/dev/ttyUSB2"


def test_a_byte_order_mark_only_at_the_start(tmp_path):
    with pytest.raises(ConfigError, match="line 3: Invalid statement"):
        load_config(write(tmp_path, MINIMAL + "\ufeff"))


@pytest.mark.parametrize("open_, close", [("[", "]"), ("{a=", "}")])
def test_nesting_too_deep_for_the_parser(tmp_path, open_, close):
    path = write(tmp_path, MINIMAL + "x = " + open_ * 50_000 + close * 50_000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: arrays or tables nested too deeply"


def test_the_port_is_kept_exactly(tmp_path):
    port = "/dev/serial/by-id/usb-Quectel_EG25-G_0123ABcd-if02-port0"
    assert load_config(write(tmp_path, f'[modem]\nport = "{port}"\n')).modem.port == port


@pytest.mark.parametrize("value", ["/dev/tty\\u0000USB2", "/dev/tty\\nUSB2", "/dev/tty\\u001bUSB2"])
def test_a_port_with_control_characters_is_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="modem.port must be a device path without control characters"):
        load_config(write(tmp_path, f'[modem]\nport = "{value}"\n'))


def test_a_config_over_a_mebibyte_is_refused(tmp_path):
    path = write(tmp_path, MINIMAL + "#" * (1 << 20) + "\n")
    with pytest.raises(ConfigError, match="larger than 1024 KiB"):
        load_config(path)
