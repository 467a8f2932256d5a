"""The real ModemManager driving the simulator, on a private system bus.

ModemManager (Debian `modemmanager` 1.20) accepts only ports that udev and
/sys/class/tty describe, and it rejects virtual ttys.  So, for each test:

- a private `dbus-daemon` whose socket is a path in the test's directory
  (everything here gets DBUS_SYSTEM_BUS_ADDRESS pointing at it, never the
  machine's own system bus);
- `polkitd` on that bus (ModemManager asks it before every action);
- `ModemManager --no-auto-scan --test-no-udev` in its own mount namespace
  (`unshare -m`), where a copy of its udev rules (plus one that marks
  pts/* as a modem port to probe) covers /usr/lib/udev/rules.d and a
  directory of symlinks, with pts/N -> /sys/devices/virtual/tty/ptmx,
  covers /sys/class/tty;
- the simulator's pty announced with `mmcli --report-kernel-event`.

Every process is started here and stopped here, by its own process id.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MODEMMANAGER = "/usr/sbin/ModemManager"
MMCLI = "/usr/bin/mmcli"
POLKITD = "/usr/lib/polkit-1/polkitd"
DBUS_DAEMON = "/usr/bin/dbus-daemon"
UDEV_RULES = "/usr/lib/udev/rules.d"
TTY_CLASS = "/sys/class/tty"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <!-- A test bus: only root and polkitd connect to it, and nothing is
       started on demand (no service directories). -->
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
"""

# Inside the namespace: cover the udev rules and /sys/class/tty, then become ModemManager.
NAMESPACE_SCRIPT = """set -e
mount --make-rprivate /
mount --bind "$1" {rules}
mount --bind "$2" {tty}
shift 2
exec "$@"
""".format(rules=UDEV_RULES, tty=TTY_CLASS)


def missing() -> str | None:
    """Why the stack cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (mount namespace, polkitd, ModemManager)"
    for path in (MODEMMANAGER, MMCLI, POLKITD, DBUS_DAEMON, "/usr/bin/unshare"):
        if not os.path.exists(path):
            return f"{path} is not installed (make deps installs modemmanager and polkitd)"
    return None


@dataclass
class MMStack:
    root: Path
    bus_address: str
    processes: dict

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus_address
        env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        return env

    def mmcli(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([MMCLI, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def announce(self, port: str) -> None:
        """Tell ModemManager a tty appeared, as udev would."""
        name = port.removeprefix("/dev/")
        run = self.mmcli(f"--report-kernel-event=action=add,name={name},subsystem=tty,uid=mtcd-sim")
        if run.returncode != 0:
            raise RuntimeError(f"mmcli --report-kernel-event: {run.stderr.strip()}")

    def withdraw(self, port: str) -> None:
        name = port.removeprefix("/dev/")
        self.mmcli(f"--report-kernel-event=action=remove,name={name},subsystem=tty,uid=mtcd-sim")

    def modems(self) -> list[str]:
        run = self.mmcli("-L", "-K")
        return [line.split(":", 1)[1].strip() for line in run.stdout.splitlines()
                if line.startswith("modem-list.value")]

    def state(self, modem: str = "any") -> str:
        run = self.mmcli("-m", modem, "-K")
        for line in run.stdout.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "modem.generic.state":
                return value.strip()
        return ""

    def wait_for_modem(self, timeout: float = 60) -> str:
        """The D-Bus path of the first modem ModemManager exports, once it
        has finished probing it (locked, disabled or failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.modems()
            if found and self.state(found[0]) in ("locked", "disabled", "failed", "enabled"):
                return found[0]
            self.check_alive()
            time.sleep(0.3)
        raise TimeoutError(f"ModemManager exported no modem within {timeout:g} s; log: {self.log_tail()}")

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; log: {self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        path = self.root / "ModemManager.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _tty_overlay(directory: Path, names: list[str]) -> None:
    """Symlinks for every real /sys/class/tty entry, plus pts/N for each pty."""
    directory.mkdir()
    for entry in os.listdir(TTY_CLASS):
        os.symlink(os.readlink(os.path.join(TTY_CLASS, entry)) if os.path.islink(os.path.join(TTY_CLASS, entry))
                   else os.path.join(TTY_CLASS, entry), directory / entry)
    (directory / "pts").mkdir()
    for name in names:
        os.symlink("/sys/devices/virtual/tty/ptmx", directory / name)


def _rules_overlay(directory: Path) -> None:
    directory.mkdir()
    for path in glob.glob(os.path.join(UDEV_RULES, "7*-mm-*.rules")) + glob.glob(os.path.join(UDEV_RULES, "80-mm-*.rules")):
        shutil.copy(path, directory)
    # The simulator's pty is a modem port to probe (in the test namespace only);
    # ModemManager reads only files named 77-mm- to 80-mm-.
    (directory / "79-mm-test-pts.rules").write_text('KERNEL=="pts/*", ENV{ID_MM_DEVICE_PROCESS}="1"\n')


def _wait_for(predicate, timeout: float, what: str, procs: dict) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}")
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not happen within {timeout:g} s")


def _stop(proc: subprocess.Popen, grace: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _bus_has(env: dict, name: str) -> bool:
    run = subprocess.run(
        ["dbus-send", "--system", "--print-reply", "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
         "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
        env=env, capture_output=True, text=True, timeout=10)
    return "boolean true" in run.stdout


@contextlib.contextmanager
def modemmanager_stack(root: Path, ports: list[str]) -> Iterator[MMStack]:
    """Bus, polkitd and ModemManager for the ptys in `ports` (announced)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    # polkitd drops to its own user: the bus socket lives in a directory it
    # can reach (a test's tmp_path is root's alone).
    bus_dir = Path(tempfile.mkdtemp(prefix="mtcd-mm-bus-"))
    procs: dict[str, subprocess.Popen] = {}
    try:
        bus_dir.chmod(0o755)
        socket = bus_dir / "system_bus_socket"
        (root / "bus.conf").write_text(BUS_CONFIG.format(socket=socket))
        _tty_overlay(root / "class-tty", [p.removeprefix("/dev/") for p in ports])
        _rules_overlay(root / "rules.d")
        address = f"unix:path={socket}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBUS_")}
        env["DBUS_SYSTEM_BUS_ADDRESS"] = address
        stack = MMStack(root, address, procs)
        # ModemManager's debug log has every AT command in clear, AT+CPIN
        # with its PIN too: only on request (MTCD_TEST_MM_DEBUG=1), never by default.
        debug = ["--debug"] if os.environ.get("MTCD_TEST_MM_DEBUG") == "1" else []
        procs["dbus-daemon"] = subprocess.Popen(
            [DBUS_DAEMON, f"--config-file={root / 'bus.conf'}", "--nofork", "--nopidfile", "--nosyslog"],
            stdout=open(root / "dbus.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for(socket.exists, 10, "the private bus", procs)
        procs["polkitd"] = subprocess.Popen(
            [POLKITD, "--no-debug"], env=env,
            stdout=open(root / "polkitd.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        _wait_for(lambda: _bus_has(env, "org.freedesktop.PolicyKit1"), 20, "polkitd on the private bus", procs)
        procs["ModemManager"] = subprocess.Popen(
            ["unshare", "-m", "sh", "-c", NAMESPACE_SCRIPT, "mm-namespace", str(root / "rules.d"),
             str(root / "class-tty"), MODEMMANAGER, "--no-auto-scan", "--test-no-udev", *debug],
            env=env, stdout=open(root / "ModemManager.log", "wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        _wait_for(lambda: _bus_has(env, "org.freedesktop.ModemManager1"), 30, "ModemManager on the private bus", procs)
        for port in ports:
            stack.announce(port)
        yield stack
    finally:
        for name in ("ModemManager", "polkitd", "dbus-daemon"):
            if name in procs:
                _stop(procs[name])
        shutil.rmtree(bus_dir, ignore_errors=True)


# -- pytest -------------------------------------------------------------------

def mm_gateway_class(base):
    """conftest.Gateway whose commands talk to the stack's bus only."""

    class MMGateway(base):
        bus_address: str = ""

        @property
        def env(self):
            env = {k: v for k, v in super().env.items() if not k.startswith("DBUS_")}
            env["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus_address
            return env

    return MMGateway


@dataclass
class MMRig:
    """One test's simulator, ModemManager and gateway directory."""

    modem: object  # mtcd.sim.SimulatedModem: its `commands` is the AT log
    port: str
    stack: MMStack
    gateway: object  # conftest.Gateway with the private bus in its env

    def configure(self, datalink: str = 'backend = "none"', policy: str = "", modem: str = "",
                  service: str = "", timeout: float = 30) -> None:
        self.gateway.configure(self.port, datalink=datalink, policy=policy, service=service,
                               modem=f'driver = "modemmanager"\ntimeout = {timeout:g}\nsim_ready_timeout = 30\n{modem}')


# -- one ModemManager for a whole test module ------------------------------------
# Starting the bus, polkitd and ModemManager and having it probe the port
# for the first time takes about 4.5 s (measured); having it probe the same
# port again after an inhibition takes about 1 s.  So a module shares one
# stack and one pty, and each test gets a new simulated modem behind that
# pty (its own card, an empty command log), which ModemManager then probes
# afresh: no test sees another's modem object, card or commands.

SIM_UID = "mtcd-sim"  # the uid `announce` reports: ModemManager's Device for the pty


class SharedModemManager:
    """A simulator pty and a ModemManager stack for one test module."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._exit = contextlib.ExitStack()
        self.server = None
        self.stack: MMStack | None = None

    def __enter__(self) -> "SharedModemManager":
        from mtcd.sim import PtyModemServer, SimulatedModem
        from simfixtures import make_card

        try:
            self.server = self._exit.enter_context(PtyModemServer(SimulatedModem(make_card())))
            self.stack = self._exit.enter_context(modemmanager_stack(self.root / "mm", [self.server.port]))
            self.stack.wait_for_modem()
        except BaseException:
            self._exit.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._exit.close()

    def fresh_modem(self, card, **modem_options):
        """A new simulated modem with `card` behind the shared pty, probed
        anew by ModemManager (a new modem object); returns it."""
        from mtcd.sim import SimulatedModem

        modem = SimulatedModem(card, **modem_options)
        self.stack.check_alive()
        with _inhibited(self.stack, SIM_UID) as held:
            self._swap(modem)
        if not held:  # no modem object to inhibit (a test withdrew the port): announce it again
            self.stack.announce(self.server.port)
        self.stack.wait_for_modem()
        return modem

    def _swap(self, modem) -> None:
        server = self.server
        server.modem.remove_urc_listener(server.flush_urcs)
        server.modem = modem
        modem.add_urc_listener(server.flush_urcs)

    def rig(self, tmp_path: Path, card, gateway_base, **modem_options) -> "MMRig":
        modem = self.fresh_modem(card, **modem_options)
        gw = mm_gateway_class(gateway_base)(Path(tmp_path) / "gw")
        gw.root.mkdir()
        gw.bus_address = self.stack.bus_address
        return MMRig(modem, self.server.port, self.stack, gw)


@contextlib.contextmanager
def own_rig(tmp_path: Path, card, **modem_options) -> Iterator["MMRig"]:
    """A stack of the test's own, for a test that takes it apart (stops
    ModemManager or the bus) or needs a plugin other than the generic one
    (ModemManager keeps a device's plugin across inhibitions)."""
    from conftest import Gateway
    from simfixtures import sim_modem

    with sim_modem(card, **modem_options) as (modem, port):
        with modemmanager_stack(Path(tmp_path) / "mm", [port]) as stack:
            stack.wait_for_modem()
            gw = mm_gateway_class(Gateway)(Path(tmp_path) / "gw")
            gw.root.mkdir()
            gw.bus_address = stack.bus_address
            yield MMRig(modem, port, stack, gw)


@contextlib.contextmanager
def _inhibited(stack: MMStack, uid: str):
    """ModemManager lets go of the device while the block runs (its modem
    object removed), then probes it again; yields whether it held one."""
    from jeepney import DBusAddress, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    manager = DBusAddress("/org/freedesktop/ModemManager1", bus_name="org.freedesktop.ModemManager1",
                          interface="org.freedesktop.ModemManager1")
    # The inhibition lasts as long as this connection: the same one lifts it.
    with open_dbus_connection(bus=stack.bus_address) as conn:
        reply = conn.send_and_get_reply(new_method_call(manager, "InhibitDevice", "sb", (uid, True)), timeout=30)
        held = reply.header.message_type is not MessageType.error
        try:
            yield held
        finally:
            if held:
                conn.send_and_get_reply(new_method_call(manager, "InhibitDevice", "sb", (uid, False)), timeout=30)


@contextlib.contextmanager
def mtcd_run(gateway, notify_path: Path):
    """`mtcd run` with the gateway's configuration and a NotifySocket;
    yields (proc, notify) and stops it with SIGTERM after the block (killed
    if the block failed).  proc.stderr_text holds its log afterwards."""
    import sys

    from conftest import NotifySocket

    notify = NotifySocket(notify_path)
    env = dict(gateway.env, NOTIFY_SOCKET=str(notify.path))
    proc = subprocess.Popen([sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc.stderr_text = ""
    try:
        yield proc, notify
        proc.send_signal(signal.SIGTERM)  # nothing when the block stopped it already
        _, proc.stderr_text = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            _, proc.stderr_text = proc.communicate()
        notify.close()


def status_seen(notify, prefix: str, timeout: float, start: int = 0) -> int:
    """Index of the first STATUS= from `start` beginning with `prefix`."""
    found = notify.wait_until(lambda m: m.get("STATUS", "").startswith(prefix), timeout, start=start,
                              what=f"STATUS {prefix}")
    return notify.messages.index(found)


# The fixtures a module imports (`from mmstack import mm_rig, mm_shared`):
# `mm_rig(card, **modem_options)` gives a test its MMRig on the module's stack.
import pytest  # noqa: E402  (the fixtures only)


@pytest.fixture(scope="module")
def mm_shared(tmp_path_factory):
    with SharedModemManager(tmp_path_factory.mktemp("mm-shared")) as shared:
        yield shared


@pytest.fixture
def mm_rig(mm_shared, tmp_path):
    from conftest import Gateway

    return lambda card, **options: mm_shared.rig(tmp_path, card, Gateway, **options)
