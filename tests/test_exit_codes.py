"""Bad input, hostile files and broken pipes, through the real `mtcd` and
`mtcctl` processes: always one line on stderr naming the problem, a
documented exit code, never a traceback and never 70 (a bug)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import network_commands
from simfixtures import TEST_PIN, make_card, make_iccid, sim_modem

ICCID = make_iccid(1)


def one_line(stderr: str, prog: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"{prog}: ") and "Traceback" not in stderr
    return lines[0]


def ctl(gateway, *args: str, **popen) -> subprocess.CompletedProcess:
    """mtcctl with whatever file descriptors the test gives it."""
    popen.setdefault("stdin", subprocess.DEVNULL)
    popen.setdefault("stdout", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "mtcd.cli.ctl", "--config", str(gateway.config), *args],
                          stderr=subprocess.PIPE, text=True, timeout=30, env=gateway.env, **popen)


# --- standard input -----------------------------------------------------------

def test_empty_stdin_is_65_no_pin_given(gateway):
    gateway.configure("/dev/null")
    run = ctl(gateway, "pin", "set", ICCID)
    assert run.returncode == 65
    assert one_line(run.stderr, "mtcctl") == "mtcctl: no PIN given on standard input"


def test_closed_stdin_is_65_no_pin_given(gateway):
    gateway.configure("/dev/null")
    run = ctl(gateway, "pin", "set", ICCID, stdin=None, preexec_fn=lambda: os.close(0))
    assert run.returncode == 65, run.stderr
    assert one_line(run.stderr, "mtcctl") == "mtcctl: no PIN given on standard input"
    assert not (gateway.state_dir / "keystore.json").exists()


def test_endless_stdin_is_bounded(gateway):
    gateway.configure("/dev/null")
    with open("/dev/zero", "rb") as zero:
        run = ctl(gateway, "pin", "set", ICCID, stdin=zero)
    assert run.returncode == 65
    assert "invalid PIN" in one_line(run.stderr, "mtcctl")


# --- the configuration file ---------------------------------------------------

@pytest.mark.parametrize("key, line", [
    ("state_dir", 'state_dir = "/tmp/mtcd\\u0000state"'),
    ("modem.port", '[modem]\nport = "/dev/ttyUSB\\u00002"'),
    ("datalink.up", '[datalink]\nbackend = "command"\nup = ["/bin/true", "a\\u0000b"]\ndown = ["/bin/true"]'),
])
def test_nul_in_a_configured_path_is_78(gateway, key, line):
    text = line + "\n"
    if key != "state_dir":
        text = f'state_dir = "{gateway.state_dir}"\n' + text
    if "[modem]" not in text:
        text += '[modem]\nport = "/dev/null"\n'
    gateway.config.write_text(text)
    for run in (gateway.mtcctl("pin", "list"), gateway.mtcd("once")):
        assert run.returncode == 78, run.stderr
        assert key in one_line(run.stderr, run.stderr.split(":")[0])


def test_nul_in_the_config_option_is_78_not_a_crash(gateway, capsys):
    """exec() cannot pass a NUL in argv; a caller of main() can."""
    from mtcd.cli import ctl as ctl_module

    assert ctl_module.main(["--config", "/etc/mtcd\0x.toml", "pin", "list"]) == 78
    assert "not a valid path" in one_line(capsys.readouterr().err, "mtcctl")


# Named ids: pytest puts the test's id into PYTEST_CURRENT_TEST, which the
# commands inherit, and the value itself as an id (200-400 KB) is more than
# one environment string may hold (E2BIG, pytest 7 as in Debian bookworm).
@pytest.mark.parametrize("nesting", ["[" * 100_000 + "]" * 100_000, "{a=" * 100_000 + "}" * 100_000],
                         ids=["arrays", "inline-tables"])
def test_deeply_nested_toml_is_78(gateway, nesting):
    gateway.config.write_text(f"x = {nesting}\n")
    run = gateway.mtcd("once")
    assert run.returncode == 78
    assert "nested too deeply" in one_line(run.stderr, "mtcd")


def test_a_byte_order_mark_is_accepted(gateway):
    gateway.configure("/dev/null")
    gateway.config.write_bytes(b"\xef\xbb\xbf" + gateway.config.read_bytes())
    run = gateway.mtcctl("pin", "list", "--json")
    assert (run.returncode, run.stdout, run.stderr) == (0, '{"ok": true, "pins": []}\n', "")


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/urandom", "fifo", "directory"])
def test_a_config_that_is_not_a_file_is_78_at_once(gateway, special):
    if special == "fifo":
        path = gateway.root / "fifo"
        os.mkfifo(path)  # nobody writes: opening it blocking would hang
    elif special == "directory":
        path = gateway.root
    else:
        path = Path(special)
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "mtcd.cli.ctl", "--config", str(path), "pin", "list"],
                         capture_output=True, text=True, timeout=20, env=gateway.env)
    assert run.returncode == 78
    assert "not a regular file" in one_line(run.stderr, "mtcctl")
    assert time.monotonic() - started < 15


def test_a_huge_config_is_78_without_reading_it_all(gateway):
    gateway.configure("/dev/null")
    with open(gateway.config, "a") as f:
        f.write(("# padding\n" * 1000) * 120)  # 1.2 MB of comments
    run = gateway.mtcctl("pin", "list")
    assert run.returncode == 78
    assert "larger than 1024 KiB" in one_line(run.stderr, "mtcctl")


# --- standard output ------------------------------------------------------------

def _stored(gateway, count: int = 3):
    gateway.configure("/dev/null")
    for n in range(1, count + 1):
        gateway.store_pin(make_iccid(n))


@pytest.mark.parametrize("args", [("pin", "list", "--json"), ("history",), ("--help",)])
def test_a_reader_that_went_away_ends_the_command_quietly(gateway, args):
    """`mtcctl pin list --json | true`: exit 141, as for a command killed by
    SIGPIPE, and nothing on stderr."""
    _stored(gateway)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte
    try:
        run = ctl(gateway, *args, stdout=write_end)
    finally:
        os.close(write_end)
    assert (run.returncode, run.stderr) == (141, "")


def test_history_into_head_is_quiet(gateway):
    _stored(gateway, 4)
    journal = gateway.state_dir / "journal.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join(lines * 600) + "\n")  # far longer than a pipe's buffer
    done = subprocess.run(
        f"{sys.executable} -m mtcd.cli.ctl --config {gateway.config} history --limit 0 | head -1; echo \"rc=${{PIPESTATUS[0]}}\"",
        shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60, env=gateway.env)
    out = done.stdout.splitlines()
    assert len(out) == 2 and out[0] and out[-1] == "rc=141"
    assert done.stderr == ""


def test_a_full_disk_on_stdout_is_74(gateway):
    _stored(gateway)
    for args in (("pin", "list"), ("pin", "list", "--json"), ("history", "--json")):
        with open("/dev/full", "w") as full:
            run = ctl(gateway, *args, stdout=full)
        assert run.returncode == 74, run.stderr
        assert one_line(run.stderr, "mtcctl") == "mtcctl: cannot write standard output: No space left on device"


# --- the state directory ---------------------------------------------------------

def test_a_state_dir_under_a_regular_file_is_74(gateway):
    gateway.configure("/dev/null")
    gateway.config.write_text(gateway.config.read_text().replace(str(gateway.state_dir), "/etc/passwd/x"))
    for run in (gateway.mtcctl("pin", "list"), gateway.mtcctl("pin", "set", ICCID, stdin=TEST_PIN + "\n"),
                gateway.mtcd("once")):
        assert run.returncode == 74, run.stderr
        assert "/etc/passwd is not a directory" in one_line(run.stderr, run.stderr.split(":")[0])


def _as_nobody(argv: list[str], stdin: str = "") -> tuple[int, str]:
    """mtcctl as uid/gid 65534: the interpreter itself when nobody may run it
    (setpriv), else main() in a forked child that dropped its privileges."""
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            sys.executable, "-c", "import mtcd.cli.ctl"],
                           capture_output=True, timeout=30) if shutil.which("setpriv") else None
    if probe is not None and probe.returncode == 0:
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               sys.executable, "-m", "mtcd.cli.ctl", *argv],
                              input=stdin, capture_output=True, text=True, timeout=30)
        return done.returncode, done.stderr
    from mtcd.cli import ctl as ctl_module

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            os.close(read_end)
            sys.stderr = os.fdopen(write_end, "w")
            sys.stdin = open(os.devnull)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = ctl_module.main(argv)
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        stderr = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make root's store and drop to nobody")
def test_another_user_reading_roots_store_is_77(gateway):
    shared = Path(tempfile.mkdtemp(prefix="mtcd-perm-", dir="/tmp"))
    try:
        os.chmod(shared, 0o755)
        gateway.root = shared
        gateway.configure("/dev/null")
        gateway.store_pin(ICCID)
        os.chmod(gateway.config, 0o644)
        os.chmod(gateway.state_dir, 0o755)  # even with the directory open, the files are root's
        for argv in (["pin", "list"], ["pin", "forget", ICCID]):
            code, stderr = _as_nobody(["--config", str(gateway.config), *argv])
            assert code == 77, stderr
            line = one_line(stderr, "mtcctl")
            assert "permission denied" in line and "run as root or in service.admin_group" in line
        os.chmod(gateway.state_dir, 0o700)
        code, stderr = _as_nobody(["--config", str(gateway.config), "history"])
        assert code == 77, stderr
        assert "run as root or in service.admin_group" in one_line(stderr, "mtcctl")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# --- the modem port -----------------------------------------------------------------

def test_a_port_path_is_kept_as_written(gateway):
    port = "/dev/serial/by-id/usb-Quectel_EG25-G_0123ABcd-if02-port0"
    gateway.configure(port)
    run = gateway.mtcd("once")
    assert run.returncode == 69
    assert one_line(run.stderr, "mtcd").startswith(f"mtcd: {port}: cannot open the modem port: no such file")


def test_a_held_port_names_its_holder(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        holder = subprocess.Popen(
            [sys.executable, "-c", f"import serial, time; s = serial.Serial({port!r}, exclusive=True); "
                                   "print('held', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline() == "held\n"
            runs = (gateway.mtcd("once"), gateway.mtcctl("pin", "rotate"))
        finally:
            holder.kill()
            holder.wait()
        for run in runs:
            assert run.returncode == 69
            line = one_line(run.stderr, run.stderr.split(":")[0])
            assert line.endswith(f"{port}: cannot open the modem port: the port is held by pid {holder.pid}"), line
        assert network_commands(modem.commands) == []


def _unit_cgroup() -> Path | None:
    """A cgroup directory where a test may make a pretend systemd unit."""
    for root in (Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if (root / "cgroup.procs").exists() and os.access(root, os.W_OK):
            return root
    return None


@pytest.mark.skipif(os.geteuid() != 0 or _unit_cgroup() is None, reason="needs a writable cgroup hierarchy")
def test_a_port_held_by_a_service_names_the_unit(gateway):
    root = _unit_cgroup()
    unit = root / f"mtcd-test-{os.getpid()}.service"
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        holder = subprocess.Popen(
            [sys.executable, "-c", f"import serial, time; s = serial.Serial({port!r}, exclusive=True); "
                                   "print('held', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline() == "held\n"
            unit.mkdir()
            (unit / "cgroup.procs").write_text(str(holder.pid))
            run = gateway.mtcd("once")
        finally:
            holder.kill()
            holder.wait()
            for _ in range(50):
                try:
                    unit.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
    assert run.returncode == 69
    assert one_line(run.stderr, "mtcd").endswith(f"the port is held by {unit.name} (pid {holder.pid})")


# --- the data link --------------------------------------------------------------------

def test_a_failing_datalink_command_says_why_in_one_bounded_line(gateway, tmp_path):
    script = tmp_path / "link-up"
    script.write_text("#!/bin/sh\necho 'starting pppd' >&2\necho 'pppd: LCP: timeout sending Config-Requests' >&2\n"
                      "echo >&2\nexit 5\n")
    script.chmod(0o755)
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, datalink=f'backend = "command"\nup = ["{script}"]\ndown = ["/bin/true"]')
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once")
        assert run.returncode == 69
        line = one_line(run.stderr, "mtcd")
        assert line.endswith("exited with 5: pppd: LCP: timeout sending Config-Requests"), line
        assert TEST_PIN not in run.stdout + run.stderr
        assert modem.radio == 4


# --- argv -------------------------------------------------------------------------------

MTCCTL_COMMANDS = [
    ("pin", "set"), ("pin", "list"), ("pin", "stage"), ("pin", "rotate"), ("pin", "forget"),
    ("pair",), ("compromise",), ("sim", "unblock"), ("status",), ("history",),
]


@pytest.mark.parametrize("command", MTCCTL_COMMANDS + [("pin",), ("sim",), ()])
def test_every_mtcctl_command_has_help_and_refuses_unknown_options(gateway, command):
    gateway.configure("/dev/null")
    helped = gateway.mtcctl(*command, "--help")
    assert helped.returncode == 0 and helped.stderr == "" and "usage: mtcctl" in helped.stdout
    operand = (ICCID,) if command in (("pin", "set"), ("pin", "stage"), ("pin", "forget")) else ()
    wrong = gateway.mtcctl(*command, *operand, "--frobnicate")
    assert wrong.returncode == 64
    line = one_line(wrong.stderr, "mtcctl")
    assert "PINs and PUKs" not in line
    # A group without its action says so first; otherwise the option is named.
    assert ("--frobnicate" in line) if command not in (("pin",), ("sim",), ()) else ("required" in line)


@pytest.mark.parametrize("command", [("pin", "set"), ("pin", "stage"), ("pin", "forget"), ("pin",), ("sim",), ()])
def test_a_missing_argument_is_64(gateway, command):
    gateway.configure("/dev/null")
    run = gateway.mtcctl(*command)
    assert run.returncode == 64
    assert "required" in one_line(run.stderr, "mtcctl")


@pytest.mark.parametrize("command", [("once",), ("run",), ()])
def test_every_mtcd_command_has_help_and_refuses_unknown_options(gateway, command):
    gateway.configure("/dev/null")
    helped = gateway.mtcd(*command, "--help")
    assert helped.returncode == 0 and helped.stderr == "" and "usage: mtcd" in helped.stdout
    wrong = gateway.mtcd(*command, "--frobnicate")
    assert wrong.returncode == 64
    line = one_line(wrong.stderr, "mtcd")
    assert ("--frobnicate" in line if command else "required" in line) and "PINs and PUKs" not in line
    missing = gateway.mtcd("--config")
    assert missing.returncode == 64 and "expected one argument" in one_line(missing.stderr, "mtcd")


def test_a_pin_on_the_command_line_is_redacted_and_explained(gateway):
    gateway.configure("/dev/null")
    run = gateway.mtcctl("pin", "set", ICCID, "--transport", LEAK := "90817263")
    assert run.returncode == 64
    line = one_line(run.stderr, "mtcctl")
    assert LEAK not in line and "PINs and PUKs are read from standard input" in line
    stray = gateway.mtcctl("pin", "list", "extra")
    assert stray.returncode == 64
    assert "unrecognized arguments: extra" in one_line(stray.stderr, "mtcctl")
    assert json.loads(gateway.mtcctl("pin", "list", "--json").stdout) == {"ok": True, "pins": []}


def test_a_metrics_file_over_the_keystore_is_78_and_the_store_is_untouched(gateway):
    gateway.configure("/dev/null", service=f'metrics_file = "{gateway.state_dir}/keystore.json"')
    gateway.config.write_text(gateway.config.read_text().replace("metrics_file", "#metrics_file"))
    gateway.store_pin(ICCID)
    before = gateway.every_state_file()
    gateway.config.write_text(gateway.config.read_text().replace("#metrics_file", "metrics_file"))
    for run in (gateway.mtcd("once"), gateway.mtcctl("pin", "list")):
        assert run.returncode == 78
        assert "service.metrics_file must be outside state_dir" in one_line(run.stderr, run.stderr.split(":")[0])
    assert gateway.every_state_file() == before
