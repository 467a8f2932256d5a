"""The systemd integration files, checked with systemd's own tools.

- `systemd-analyze verify` on every unit and every example drop-in;
- `systemd-analyze security --offline=yes`: mtcd.service at most 1.5;
- the journal catalog indexed by `journalctl --update-catalog` in a scratch
  root, every MESSAGE_ID listed;
- the udev rule parsed by `udevadm test` in a private mount namespace
  (systemd 252 has no `udevadm verify`);
- `make install DESTDIR=...`: files and modes;
- the sandbox itself, emulated (no PID 1 systemd here): `mtcd once` pairs a
  simulated SIM inside a user namespace mapping root only, with a read-only
  root, no network, no capabilities, no_new_privs and memory-deny-write-
  execute, under strace; every system call, socket family and device it
  used must be one the unit allows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
SERVICE = UNITS / "mtcd.service"
DATALINK = UNITS / "mtcd-datalink.service"
DROPINS = sorted((UNITS / "mtcd.service.d").glob("*.conf.example"))
RULES = UNITS / "90-mtcd-modem.rules"
CATALOG = UNITS / "mtcd.catalog"
VENV_BIN = Path(sys.executable).parent
MAX_EXPOSURE = 1.5

MESSAGE_IDS = {
    "paired": "1e1d3c77c59a4159bc0320b54e28266c",
    "refused": "1c1b8bdce6ed421da101b696fe888a81",
    "association changed": "e9f85833818d420f84af777d8984e0df",
    "SIM removed": "84ca2d8ea7ab4e9d9f41fe098dd5b067",
    "PIN rotated": "7475ffcf40634f4bbf0ac8c53ad6859b",
    "retry guard tripped": "09490d20745d44f8aa41f1717be81df8",
    "modem lost": "f59341c35e8a48a89c0c5b2b831d8f2e",
    "PIN rejected": "065e2eb1d11349eca2ad2896441aefcb",
}
CATALOG_FIELDS = {"MTCD_ICCID", "MTCD_IMEI", "MTCD_STATE", "MTCD_REASON"}


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package: systemd)")
    return path


def run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kw)


def directives(path: Path, key: str) -> list[str]:
    """Every value of `key=` in a unit file, in order."""
    return [line.split("=", 1)[1].strip() for line in path.read_text().splitlines()
            if line.startswith(key + "=")]


# --- systemd-analyze verify ---

def stage_units(directory: Path, *units: Path) -> list[Path]:
    """Copies of the units whose programs exist here: `verify` refuses a unit
    whose ExecStart= binary is missing, and mtcd (/usr/bin/mtcd once
    installed) and pppd (example only) are not installed on this machine.
    Only these two are replaced; any other missing program still fails."""
    stand_ins = {"/usr/bin/mtcd": VENV_BIN / "mtcd", "/usr/sbin/pppd": Path("/bin/true")}
    staged = []
    for unit in units:
        text = unit.read_text()
        for real, stand_in in stand_ins.items():
            if not Path(real).exists():
                text = re.sub(rf"(Exec\w+=[-+@:!]*){re.escape(real)}\b", rf"\g<1>{stand_in}", text)
        (directory / unit.name).write_text(text)
        staged.append(directory / unit.name)
    return staged


def verify(paths: list[Path]) -> subprocess.CompletedProcess:
    return run([need("systemd-analyze"), "verify", "--man=no", *map(str, paths)])


def assert_clean(done: subprocess.CompletedProcess) -> None:
    # verify exits 0 on unknown or misspelt keys and only warns: both fail here.
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


def test_units_verify(tmp_path):
    assert_clean(verify(stage_units(tmp_path, SERVICE, DATALINK)))


@pytest.mark.parametrize("dropin", DROPINS, ids=lambda p: p.name)
def test_example_dropins_verify(tmp_path, dropin):
    staged = stage_units(tmp_path, SERVICE, DATALINK)
    (tmp_path / "mtcd.service.d").mkdir()
    shutil.copy(dropin, tmp_path / "mtcd.service.d" / dropin.name.removesuffix(".example"))
    assert_clean(verify(staged))


def test_verify_really_checks(tmp_path):
    """The checks above would catch a typo and a missing program."""
    staged = stage_units(tmp_path, SERVICE)[0]
    staged.write_text(staged.read_text().replace("ProtectHome=yes", "ProtectHom=yes"))
    assert "Unknown key" in verify([staged]).stderr
    staged.write_text(SERVICE.read_text().replace("/usr/bin/mtcd", "/nonexistent/mtcd"))
    done = verify([staged])
    assert done.returncode != 0 and "/nonexistent/mtcd" in done.stderr


# --- systemd-analyze security ---

def exposure(unit: Path) -> float:
    done = run([need("systemd-analyze"), "security", "--offline=yes", str(unit)])
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
    assert m, f"no exposure level in systemd-analyze output:\n{done.stdout}\n{done.stderr}"
    return float(m[1])


def test_service_exposure_at_most_1_5():
    level = exposure(SERVICE)
    assert level <= MAX_EXPOSURE
    # The header comment quotes the number: keep it true.
    assert f"rates it {level}" in SERVICE.read_text()


def test_admin_group_dropin_keeps_the_exposure(tmp_path):
    shutil.copy(SERVICE, tmp_path)
    (tmp_path / "mtcd.service.d").mkdir()
    shutil.copy(UNITS / "mtcd.service.d/admin-group.conf.example",
                tmp_path / "mtcd.service.d/admin-group.conf")
    assert exposure(tmp_path / "mtcd.service") <= MAX_EXPOSURE


def test_command_backend_dropin_costs_what_it_says(tmp_path):
    shutil.copy(SERVICE, tmp_path)
    (tmp_path / "mtcd.service.d").mkdir()
    example = UNITS / "mtcd.service.d/command-backend.conf.example"
    shutil.copy(example, tmp_path / "mtcd.service.d/command-backend.conf")
    level = exposure(tmp_path / "mtcd.service")
    assert level > MAX_EXPOSURE  # it is a real relaxation...
    assert f"the result {level}" in example.read_text()  # ...and says by how much


def test_service_contract():
    """What the rest of mtcd relies on, read back from the unit."""
    want = {
        "Type": ["notify"], "ExecStart": ["/usr/bin/mtcd run"], "NotifyAccess": ["main"],
        "WatchdogSec": ["30"], "Restart": ["on-failure"], "RestartSec": ["5"],
        "RestartPreventExitStatus": ["78"], "StateDirectory": ["mtcd"],
        "StateDirectoryMode": ["0700"], "RuntimeDirectory": ["mtcd"],
        "RuntimeDirectoryMode": ["0750"], "ConfigurationDirectory": ["mtcd"],
        "UMask": ["0077"], "LimitCORE": ["0"], "ExecReload": ["/bin/kill -HUP $MAINPID"],
        "DevicePolicy": ["closed"], "DeviceAllow": ["/dev/ttyMODEM rw", "/dev/tpmrm0 rw"],
        "CapabilityBoundingSet": [""], "DynamicUser": [], "User": [],
    }
    assert {key: directives(SERVICE, key) for key in want} == want
    # The state and runtime directories match the configuration defaults.
    from mtcd.config import DEFAULT_STATE_DIR, ServiceConfig
    assert DEFAULT_STATE_DIR == Path("/var/lib/mtcd")
    assert ServiceConfig().control_socket.parent == Path("/run/mtcd")


def test_datalink_example_is_bound_to_mtcd_and_gated_by_the_flag(tmp_path):
    assert directives(DATALINK, "BindsTo") == ["mtcd.service"]
    # No After=mtcd.service: mtcd may run `up` before READY=1 (see the unit).
    assert not any("mtcd.service" in v for v in directives(DATALINK, "After"))
    flag = directives(DATALINK, "ConditionPathExists")
    assert flag == ["/run/mtcd/datalink"]
    assert "\n[Install]" not in DATALINK.read_text()
    # The documented up/down commands are what the configuration accepts.
    text = "\n".join(line.removeprefix("#").strip() for line in DATALINK.read_text().splitlines())
    snippet = text[text.index("[datalink]"):text.index("down = [")]
    snippet += text[text.index("down = ["):].splitlines()[0]
    from mtcd.config import load_config
    (tmp_path / "mtcd.toml").write_text('[modem]\nport = "/dev/ttyMODEM"\n' + snippet)
    config = load_config(tmp_path / "mtcd.toml")
    assert config.datalink.backend == "command"
    assert any(flag[0] in arg for arg in config.datalink.up)
    assert config.datalink.up[-1].endswith("systemctl start mtcd-datalink.service")


# --- journal catalog ---

def test_catalog_indexes_every_message_id(tmp_path):
    journalctl = need("journalctl")
    target = tmp_path / "usr/lib/systemd/catalog"
    target.mkdir(parents=True)
    shutil.copy(CATALOG, target)
    done = run([journalctl, f"--root={tmp_path}", "--update-catalog"])
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert (tmp_path / "var/lib/systemd/catalog/database").stat().st_size > 0
    listed = run([journalctl, f"--root={tmp_path}", "--list-catalog"])
    assert listed.returncode == 0, listed.stderr
    ids = {line.split()[0]: line for line in listed.stdout.splitlines()}
    for what, message_id in MESSAGE_IDS.items():
        assert message_id in ids, f"{what} ({message_id}) not in the catalog"
        assert ids[message_id].split(" ", 1)[1].startswith("mtcd: "), ids[message_id]
    assert set(ids) == set(MESSAGE_IDS.values())


def test_catalog_matches_the_events_mtcd_sends(tmp_path):
    events = pytest.importorskip("mtcd.events")
    assert {e.message_id for e in events.Event} == set(MESSAGE_IDS.values())


def test_catalog_explains_every_refusal_reason(tmp_path):
    from mtcd.policy import Reason
    target = tmp_path / "usr/lib/systemd/catalog"
    target.mkdir(parents=True)
    shutil.copy(CATALOG, target)
    run([need("journalctl"), f"--root={tmp_path}", "--update-catalog"])
    entry = run(["journalctl", f"--root={tmp_path}", "--dump-catalog", MESSAGE_IDS["refused"]]).stdout
    for reason in Reason:
        assert re.search(rf"^\s+{re.escape(reason.value)}\s", entry, re.M), f"{reason.value} not explained"
    for command in ("mtcctl pin set", "mtcctl sim unblock", "mtcctl pair"):
        assert command in entry


def test_catalog_uses_only_fields_mtcd_sends():
    used = set(re.findall(r"@([A-Z0-9_]+)@", CATALOG.read_text()))
    assert used and used <= CATALOG_FIELDS
    for header in ("Subject:", "Defined-By: mtcd", "Support:"):
        assert CATALOG.read_text().count(header) == len(MESSAGE_IDS)


# --- udev rule ---

UDEV_ASSIGN = {"SYMLINK", "TAG", "ENV", "GOTO", "LABEL"}


def rule_lines(path: Path) -> list[list[tuple[str, str, str]]]:
    """Each rule as (key, operator, value) triples."""
    rules = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pairs = re.findall(r'\s*([A-Z_]+(?:\{[^}]*\})?)\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*(?:,|$)', line)
        rebuilt = ", ".join(f'{k}{op}"{v}"' for k, op, v in pairs)
        assert re.sub(r"\s*,\s*", ", ", line.strip()) == rebuilt, f"not KEY op \"VALUE\" pairs: {line}"
        rules.append(pairs)
    return rules


def test_udev_rule_names_the_ports_and_keeps_modemmanager_away():
    rules = rule_lines(RULES)
    def matching(symlink):
        return [dict(((k, op), v) for k, op, v in r) for r in rules
                if ("SYMLINK", "+=", symlink) in r]
    # One rule per modem (docs/hardware.md); the EC25's stands for them all.
    (at_port,) = [r for r in matching("ttyMODEM") if r[("ENV{ID_MODEL_ID}", "==")] == "0125"]
    assert at_port[("ENV{ID_VENDOR_ID}", "==")] == "2c7c"
    assert at_port[("ENV{ID_MODEL_ID}", "==")] == "0125"
    assert at_port[("ENV{ID_USB_INTERFACE_NUM}", "==")] == "02"
    assert at_port[("TAG", "+=")] == "systemd"
    (data_port,) = [r for r in matching("ttyMODEMDATA") if r[("ENV{ID_MODEL_ID}", "==")] == "0125"]
    assert data_port[("ENV{ID_USB_INTERFACE_NUM}", "==")] == "03"
    assert any(("ENV{ID_MM_DEVICE_IGNORE}", "=", "1") in r and ("ATTRS{idVendor}", "==", "2c7c") in r
               for r in rules)
    # The names the units use are the names the rule makes.
    assert "/dev/ttyMODEM rw" in directives(SERVICE, "DeviceAllow")
    assert "/dev/ttyMODEMDATA rw" in directives(DATALINK, "DeviceAllow")


def test_udevadm_parses_the_rule_without_complaint(tmp_path):
    udevadm = need("udevadm")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("udevadm test in a private mount namespace needs root and unshare")
    tty = Path("/sys/class/tty/ptmx")
    if not tty.exists():
        pytest.skip("no /sys/class/tty/ptmx to run a test event on")
    # A known-bad companion proves udevadm reports errors in this setting.
    bad = tmp_path / "91-known-bad.rules"
    bad.write_text('SUBSYSTEM="tty", SYMLINK+="x"\n')
    # tmpfs over /run, /dev and /etc/udev/rules.d: the simulated event writes
    # its database and links there, and the machine's own rules stay out.
    script = (
        "mount -t tmpfs mtcd-test /run && mount -t tmpfs mtcd-test /dev && "
        "mount -t tmpfs mtcd-test /etc/udev/rules.d && mkdir -p /run/udev/rules.d && "
        f'cp "$1" "$2" /run/udev/rules.d/ && exec {udevadm} test --action=add {tty}'
    )
    done = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                str(RULES), str(bad)])
    output = done.stdout + done.stderr
    assert f"Reading rules file: /run/udev/rules.d/{RULES.name}" in output, output[-2000:]
    assert f"/run/udev/rules.d/{bad.name}:1" in output, "udevadm did not report the known-bad rule"
    complaints = [line for line in output.splitlines() if f"rules.d/{RULES.name}:" in line]
    assert complaints == []


# --- make install ---

# pip builds in the source tree (build/, *.egg-info): one `make install` at a time.
@pytest.mark.xdist_group("make-install")
def test_make_install(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dest = tmp_path / "dest"
    start = time.monotonic()
    done = run(["make", "-s", "-C", str(ROOT), "install", f"DESTDIR={dest}", f"PYTHON={sys.executable}"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - start < 30
    expect = {
        "usr/lib/systemd/system/mtcd.service": (0o644, SERVICE),
        "usr/lib/systemd/system/mtcd-datalink.service": (0o644, DATALINK),
        "usr/lib/udev/rules.d/90-mtcd-modem.rules": (0o644, RULES),
        "usr/lib/systemd/catalog/mtcd.catalog": (0o644, CATALOG),
        "etc/mtcd/mtcd.toml": (0o644, ROOT / "config/mtcd.toml"),
        "usr/share/doc/mtcd/README.md": (0o644, ROOT / "README.md"),
    }
    for example in DROPINS:
        expect[f"usr/share/doc/mtcd/examples/mtcd.service.d/{example.name}"] = (0o644, example)
    for rel, (mode, source) in expect.items():
        st = (dest / rel).stat()
        assert stat.S_IMODE(st.st_mode) == mode, rel
        assert (dest / rel).read_bytes() == source.read_bytes(), rel
    for script in ("mtcd", "mtcctl"):
        assert stat.S_IMODE((dest / "usr/bin" / script).stat().st_mode) == 0o755
    # Debian's layout, with Debian's python3 whatever PYTHON is (see Makefile).
    assert (dest / "usr/lib/python3/dist-packages/mtcd/policy.py").is_file()
    # The development environment's own mtcd is still installed.
    check = run([sys.executable, "-c", "import importlib.metadata as m; print(m.version('mtcd'))"])
    assert check.returncode == 0 and check.stdout.strip(), "make install uninstalled mtcd from the venv"
    # A second install keeps a configuration someone has edited.
    edited = dest / "etc/mtcd/mtcd.toml"
    edited.write_text('[modem]\nport = "/dev/ttyUSB3"\n')
    again = run(["make", "-s", "-C", str(ROOT), "install", f"DESTDIR={dest}", f"PYTHON={sys.executable}"])
    assert again.returncode == 0, again.stderr
    assert edited.read_text() == '[modem]\nport = "/dev/ttyUSB3"\n'


def test_admin_group_dropin_allows_chown_of_the_socket():
    """mtcd.control chowns the socket to admin_group: refused by the plain
    unit (~@privileged holds @chown), allowed with the drop-in."""
    need("systemd-analyze")
    chown = {"chown", "fchown", "fchownat", "lchown"}
    assert not chown & allowed_syscalls()
    assert chown <= allowed_syscalls(UNITS / "mtcd.service.d/admin-group.conf.example")


# --- the sandbox, emulated ---

SANDBOX_TOOLS = ("unshare", "setpriv", "strace", "systemd-creds", "systemd-analyze")
PR_SET_MDWE, MDWE_REFUSE_EXEC_GAIN = 65, 1
ICCID = "8949020000000000014"
CARD_PIN = "48151623"


def syscall_set(group: str, seen: dict) -> set[str]:
    if group not in seen:
        out = run(["systemd-analyze", "syscall-filter", group]).stdout
        names: set[str] = set()
        for line in out.splitlines()[1:]:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            names |= syscall_set(s, seen) if s.startswith("@") else {s}
        seen[group] = names
    return seen[group]


def allowed_syscalls(*dropins: Path) -> set[str]:
    """The unit's SystemCallFilter= lines (then the drop-ins'), resolved by
    systemd-analyze."""
    allowed: set[str] | None = None
    seen: dict = {}
    lines = [v for path in (SERVICE, *dropins) for v in directives(path, "SystemCallFilter")]
    for value in lines:
        deny = value.startswith("~")
        names = set().union(*(syscall_set(n, seen) if n.startswith("@") else {n}
                              for n in value.lstrip("~").split()))
        if deny:
            allowed -= names
        else:
            allowed = names if allowed is None else allowed | names
    assert allowed, "mtcd.service has no SystemCallFilter allow list"
    return allowed


@pytest.fixture
def sandboxed(tmp_path):
    """Runs argv as mtcd.service would, as far as this machine can without
    PID 1: returns (CompletedProcess, strace lines)."""
    for tool in SANDBOX_TOOLS:
        need(tool)
    if os.geteuid() != 0:
        pytest.skip("emulating the sandbox needs root (tty, systemd-creds host key)")
    probe = run(["unshare", "--user", "--map-root-user", "--mount", "--net", "true"])
    if probe.returncode != 0:
        pytest.skip("no user/network namespaces here: " + probe.stderr.strip()[:120])

    def go(argv, env, timeout=60, groups=()):
        trace = tmp_path / "trace"
        mdwe = (f"import ctypes, os, sys; assert ctypes.CDLL(None).prctl({PR_SET_MDWE}, "
                f"{MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0; os.execv(sys.argv[1], sys.argv[1:])")
        # PrivateUsers (root only mapped), PrivateNetwork, ProtectSystem=strict
        # (root read-only, the test directory standing in for the state
        # directory), a private /var/lib/systemd, then no capabilities and
        # no_new_privs, then MemoryDenyWriteExecute, then the program.
        script = (
            'mount -t tmpfs -o mode=0700 mtcd-test /var/lib/systemd && '
            f'mount --bind {tmp_path} {tmp_path} && mount -o remount,bind,ro / && '
            'exec setpriv --no-new-privs --bounding-set=-all --inh-caps=-all -- '
            f'strace -f -qq -o {trace} "$@"'
        )
        # SupplementaryGroups= are set before the user namespace is made.
        with_groups = ["setpriv", "--groups=" + ",".join(map(str, groups)), "--"] if groups else []
        done = subprocess.run(
            [*with_groups, "unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
             "--net", "--ipc", "--uts", "--fork", "sh", "-c", script, "sh",
             sys.executable, "-c", mdwe, *argv],
            capture_output=True, text=True, timeout=timeout, env=env,
        )
        return done, trace.read_text().splitlines()

    return go


def provision(tmp_path: Path) -> tuple[dict, Path, subprocess.Popen]:
    env = {**os.environ, "SYSTEMD_CREDENTIAL_SECRET": str(tmp_path / "host/credential.secret")}
    (tmp_path / "host").mkdir(mode=0o700)
    config = tmp_path / "mtcd.toml"
    config.write_text(
        f'state_dir = "{tmp_path / "state"}"\n[modem]\nport = "{tmp_path / "ttyMODEM"}"\n'
        '[keystore]\nsealer = "systemd-creds"\n[datalink]\nbackend = "at"\n'
        # RuntimeDirectory=mtcd: writable inside the sandbox, like the test directory.
        f'[service]\ncontrol_socket = "{tmp_path / "run/mtcd/control.sock"}"\n'
    )
    (tmp_path / "run/mtcd").mkdir(parents=True, mode=0o750)
    card = tmp_path / "card.json"
    subprocess.run([VENV_BIN / "mtcd-sim", "card", "--state", card, "--iccid", ICCID,
                    "--imsi", "262019876543210"], input=CARD_PIN + "\n", text=True, check=True,
                   capture_output=True)
    private = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs -o mode=0700 mtcd-test /var/lib/systemd && exec "$@"', "sh"]
    subprocess.run([*private, VENV_BIN / "mtcctl", "--config", config, "pin", "set", ICCID],
                   input=CARD_PIN + "\n", text=True, check=True, capture_output=True, env=env)
    sim = subprocess.Popen([VENV_BIN / "mtcd-sim", "serve", "--state", card,
                            "--link", tmp_path / "ttyMODEM"], stdout=subprocess.PIPE, text=True)
    pty = Path(sim.stdout.readline().strip())
    # As a modem's tty: root:dialout 0660 (dialout unmapped inside).
    os.chown(pty, 0, 20)
    os.chmod(pty, 0o660)
    return env, config, sim


def check_trace(lines: list[str]) -> None:
    allowed = allowed_syscalls()
    used = {m[1] for line in lines if (m := re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)\(", line))}
    assert used, "strace recorded nothing"
    assert used <= allowed, f"system calls SystemCallFilter= refuses: {sorted(used - allowed)}"

    families = set(re.findall(r"socket\((AF_[A-Z0-9]+)", "\n".join(lines)))
    assert families <= set(" ".join(directives(SERVICE, "RestrictAddressFamilies")).split()), families

    for line in lines:  # MemoryDenyWriteExecute=, as systemd's seccomp filter has it
        if re.search(r"\bmmap\(.*PROT_WRITE\|PROT_EXEC|\bmmap\(.*PROT_EXEC\|.*PROT_WRITE", line):
            pytest.fail(f"writable+executable mapping: {line}")
        if re.search(r"\b(pkey_)?mprotect\(.*PROT_EXEC", line):
            pytest.fail(f"memory made executable: {line}")

    # DevicePolicy=closed: the standard pseudo devices, /dev/pts/N (the
    # simulated modem standing in for /dev/ttyMODEM) and the TPM.
    opened = set(re.findall(r'open(?:at)?\((?:AT_FDCWD, )?"(/dev/[^"]+)".*= \d+', "\n".join(lines)))
    closed_policy = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tpmrm0"}
    assert {d for d in opened if not d.startswith("/dev/pts/")} <= closed_policy, opened


def test_trace_check_refuses_what_the_unit_refuses():
    need("systemd-analyze")
    with pytest.raises(AssertionError, match="sched_setscheduler"):
        check_trace(["7 sched_setscheduler(0, SCHED_FIFO, [1]) = 0"])
    with pytest.raises(AssertionError, match="AF_INET"):
        check_trace(["7 socket(AF_INET, SOCK_DGRAM, IPPROTO_IP) = 3"])
    with pytest.raises(pytest.fail.Exception, match="writable"):
        check_trace(["7 mmap(NULL, 4096, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE, -1, 0) = 0x7f00"])
    with pytest.raises(AssertionError, match="ttyUSB0"):
        check_trace(['7 openat(AT_FDCWD, "/dev/ttyUSB0", O_RDWR) = 3'])


def test_tss_group_is_what_opens_a_tss_owned_tpm(tmp_path, sandboxed):
    """Why tpm.conf.example exists: inside the sandbox root has no
    CAP_DAC_OVERRIDE, so a tss:tss 0660 /dev/tpmrm0 opens only through a
    supplementary group (kept across the user namespace, though unmapped)."""
    fake_tpm = tmp_path / "tpmrm0"
    fake_tpm.write_bytes(b"")
    os.chown(fake_tpm, 998, 998)
    os.chmod(fake_tpm, 0o660)
    opener = ["-c", f"open({str(fake_tpm)!r}, 'r+b')"]
    done, _ = sandboxed([sys.executable, *opener], os.environ)
    assert done.returncode != 0 and "Permission denied" in done.stderr
    done, _ = sandboxed([sys.executable, *opener], os.environ, groups=[998])
    assert done.returncode == 0, done.stderr
    assert directives(UNITS / "mtcd.service.d/tpm.conf.example", "SupplementaryGroups") == ["tss"]


def test_pairing_inside_the_sandbox(tmp_path, sandboxed):
    env, config, sim = provision(tmp_path)
    try:
        done, trace = sandboxed([str(VENV_BIN / "mtcd"), "--config", str(config), "once", "--json"], env)
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert (report["state"], report["link"]) == ("paired", "up")
    assert any(re.search(r'execve\("[^"]*/systemd-creds"', line) and "ENOENT" not in line
               for line in trace), \
        "the keystore was not unsealed through systemd-creds"
    check_trace(trace)


def test_service_runs_inside_the_sandbox(tmp_path, sandboxed):
    """`mtcd run` as Type=notify with WatchdogSec=: READY=1 and WATCHDOG=1
    reach a notify socket named by path across the network namespace, and
    SIGTERM closes the gate; every call it made is allowed."""
    env, config, sim = provision(tmp_path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(1)
    env = {**env, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
    messages: list[str] = []
    result: dict = {}

    def serve():
        result["done"], result["trace"] = sandboxed(
            [str(VENV_BIN / "mtcd"), "--config", str(config), "run"], env, timeout=90)

    import threading
    runner = threading.Thread(target=serve)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                any("READY=1" in m for m in messages) and any("WATCHDOG=1" in m for m in messages)):
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                pass
    finally:
        # SIGTERM to mtcd itself (the innermost process running `mtcd ... run`).
        for pid in _pids_running(str(config), "run"):
            os.kill(pid, signal.SIGTERM)
        runner.join(timeout=60)
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=10)
        notify.close()
    assert any("READY=1" in m for m in messages), \
        f"mtcd run never sent READY=1 (mtcd.service is Type=notify); got {messages}"
    assert any("WATCHDOG=1" in m for m in messages), \
        f"no WATCHDOG=1 within 30 s with WATCHDOG_USEC=2 s (mtcd.service has WatchdogSec=); got {messages}"
    assert result["done"].returncode == 0, result["done"].stderr
    check_trace(result["trace"])


def _pids_running(*words: str) -> list[int]:
    """Processes whose argv holds all `words` and runs mtcd (not strace/sh)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            exe = os.readlink(proc / "exe")
        except OSError:
            continue
        if all(w in argv for w in words) and "python" in Path(exe).name:
            found.append(int(proc.name))
    return found
