"""The real NetworkManager next to the real ModemManager (tests/mmstack.py),
on the same private system bus, managing the simulator's modem.

NetworkManager (Debian `network-manager` 1.42) runs `--debug` (in the
foreground, its log in the test directory) with its own configuration
(keyfile plugin only, profiles in the test directory, no DNS or resolver
changes), in private mount and network namespaces (`unshare -m -n`): its
/run is a fresh tmpfs, /var/lib/NetworkManager and /etc/NetworkManager are
test directories, and it sees no interface but its own loopback, so it
cannot touch the machine's network.  /usr/local/sbin (searched for pppd)
holds tests/nm_pppd.py's stand-in for pppd, also bind-mounted over
/usr/sbin/pppd where Debian's ppp is installed: this kernel has no PPP.

Every process is started here and stopped here, by its own process id.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mmstack

NETWORKMANAGER = "/usr/sbin/NetworkManager"
NMCLI = "/usr/bin/nmcli"
PPPD_STAND_IN = Path(__file__).with_name("nm_pppd.py")

CONFIG = """[main]
plugins=keyfile
dhcp=internal
dns=none
rc-manager=unmanaged
systemd-resolved=false
auth-polkit=root-only
[keyfile]
path={profiles}
[logging]
level=INFO
"""

# Inside the namespaces: NetworkManager's directories are the test's.
NAMESPACE_SCRIPT = """set -e
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mount --bind "$1/lib" /var/lib/NetworkManager
mount --bind "$1/etc" /etc/NetworkManager
mount --bind "$1/sbin" /usr/local/sbin
# NetworkManager runs its built-in pppd path (/usr/sbin/pppd) when it exists
# (Debian's ppp, which network-manager recommends): the stand-in covers it.
if [ -e /usr/sbin/pppd ]; then mount --bind "$1/sbin/pppd" /usr/sbin/pppd; fi
shift
exec "$@"
"""


def missing() -> str | None:
    why = mmstack.missing()
    if why is not None:
        return why
    for path in (NETWORKMANAGER, NMCLI, "/usr/sbin/ip"):
        if not os.path.exists(path):
            return f"{path} is not installed (make deps installs network-manager)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (the pppd stand-in needs a tun interface)"
    return None


@dataclass
class NMStack:
    root: Path
    mm: mmstack.MMStack
    process: subprocess.Popen

    @property
    def profiles(self) -> Path:
        return self.root / "etc" / "system-connections"

    def nmcli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([NMCLI, *args], env=self.mm.env, capture_output=True, text=True, timeout=timeout)

    def value(self, *args: str) -> str:
        """One field in nmcli's terse form (`-g`)."""
        run = self.nmcli("-g", *args)
        if run.returncode != 0:
            raise RuntimeError(f"nmcli -g {' '.join(args)}: {run.stderr.strip()}")
        return run.stdout.strip()

    def secret(self, name: str, setting: str, key: str) -> str:
        """A secret of profile `name` as NetworkManager holds it ('' for
        none), asked with Settings.Connection.GetSecrets straight on the bus.

        Not `nmcli -s`: nmcli merges the secrets into libnm's cached copy of
        the profile, and NetworkManager emits Settings.Connection.Updated
        before it answers every GetSecrets; libnm then fetches the settings
        again and replaces that copy, secrets gone, sometimes before nmcli
        prints.  Measured by bench/nm_secret_reads.py (BENCHMARKS.md), the
        profile left alone, no mtcd: 0 to 12 nmcli reads in 1000 printed ''
        while the keyfile held the password and GetSecrets on the bus
        returned it every time."""
        from jeepney import DBusAddress, MessageType, new_method_call
        from jeepney.io.blocking import open_dbus_connection
        from jeepney.low_level import HeaderFields

        service = "org.freedesktop.NetworkManager"
        settings = DBusAddress("/org/freedesktop/NetworkManager/Settings", bus_name=service,
                               interface=service + ".Settings")
        uuid = self.value("connection.uuid", "connection", "show", name)
        with open_dbus_connection(bus=self.mm.bus_address) as conn:
            found = conn.send_and_get_reply(new_method_call(settings, "GetConnectionByUuid", "s", (uuid,)),
                                            timeout=30)
            if found.header.message_type is MessageType.error:
                raise RuntimeError(f"GetConnectionByUuid {name}: {found.body}")
            profile = DBusAddress(found.body[0], bus_name=service, interface=service + ".Settings.Connection")
            reply = conn.send_and_get_reply(new_method_call(profile, "GetSecrets", "s", (setting,)), timeout=30)
        if reply.header.message_type is MessageType.error:
            if reply.header.fields.get(HeaderFields.error_name) == service + ".AgentManager.NoSecrets":
                return ""  # NetworkManager holds no secret for this setting
            raise RuntimeError(f"GetSecrets {name}/{setting}: {reply.body}")
        return reply.body[0].get(setting, {}).get(key, ("s", ""))[1]

    def add_gsm(self, name: str, *settings: str) -> None:
        run = self.nmcli("connection", "add", "type", "gsm", "con-name", name, "ifname", "*",
                         "gsm.apn", "iot.example", *settings)
        if run.returncode != 0:
            raise RuntimeError(f"nmcli connection add {name}: {run.stderr.strip()}")

    def active(self) -> list[str]:
        """The names of the active connections."""
        return [line for line in self.value("NAME", "connection", "show", "--active").splitlines() if line]

    def wwan(self) -> str:
        return self.value("WWAN", "general")  # "enabled" | "disabled"

    def wait_for_device(self, timeout: float = 60) -> str:
        """The name of the gsm device, once NetworkManager manages the modem."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.nmcli("-g", "DEVICE,TYPE", "device").stdout.splitlines():
                name, _, kind = line.rpartition(":")
                if kind == "gsm":
                    return name.replace("\\:", ":")
            if self.process.poll() is not None:
                raise RuntimeError(f"NetworkManager exited with {self.process.returncode}; log: {self.log_tail()}")
            time.sleep(0.2)
        raise TimeoutError(f"NetworkManager managed no modem within {timeout:g} s; log: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.root / "NetworkManager.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def pppd_log(self) -> str:
        try:
            return (self.root / "pppd.log").read_text()
        except OSError:
            return ""


@contextlib.contextmanager
def networkmanager_stack(root: Path, mm: mmstack.MMStack) -> Iterator[NMStack]:
    root = Path(root)
    for name in ("run", "lib", "etc/system-connections", "etc/conf.d", "sbin"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "etc" / "NetworkManager.conf").write_text(CONFIG.format(profiles=root / "etc" / "system-connections"))
    pppd = root / "sbin" / "pppd"
    pppd.write_text(f"#!/bin/sh\nNM_PPPD_LOG={root / 'pppd.log'} exec {sys.executable} {PPPD_STAND_IN} \"$@\"\n")
    pppd.chmod(0o755)
    process = subprocess.Popen(
        ["unshare", "-m", "-n", "sh", "-c", NAMESPACE_SCRIPT, "nm-namespace", str(root),
         NETWORKMANAGER, "--debug", "--config=/etc/NetworkManager/NetworkManager.conf",
         "--config-dir=/etc/NetworkManager/conf.d", "--state-file=/var/lib/NetworkManager/NetworkManager.state"],
        env=mm.env, stdout=open(root / "NetworkManager.log", "wb"), stderr=subprocess.STDOUT,
        start_new_session=True)
    stack = NMStack(root, mm, process)
    try:
        mmstack._wait_for(lambda: mmstack._bus_has(mm.env, "org.freedesktop.NetworkManager"), 30,
                          "NetworkManager on the private bus", {"NetworkManager": process})
        yield stack
    finally:
        mmstack._stop(process)
