"""What an operator sees in the journal: every line of the real `mtcd`
carries its syslog priority when stderr is journald's stream, so that
`journalctl -p warning` shows refusals and `-p err` the failures; SIGUSR1
and SIGUSR2 change the level of a running service; and READY=1 reaches
systemd without python3-systemd."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import NotifySocket
from simfixtures import TEST_PIN, make_card, sim_modem, wait_until

from mtcd import logsetup
from mtcd.sdnotify import notify_address, sd_notify

PREFIXED = re.compile(r"<([0-7])>(.*)")


def _journal_env(gateway, stderr_file, **extra) -> dict[str, str]:
    """JOURNAL_STREAM as systemd sets it: device:inode of our stderr."""
    st = os.fstat(stderr_file.fileno())
    return {**gateway.env, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", **extra}


def _entries(text: str) -> list[tuple[int, str]]:
    """(priority, message) per line, as journald would store them; a line
    without a prefix fails the test (it would land at the default, info)."""
    entries = []
    for line in text.splitlines():
        match = PREFIXED.fullmatch(line)
        assert match, f"a line without its priority: {line!r}"
        entries.append((int(match[1]), match[2]))
    return entries


def _mtcd(gateway, *args):
    return [sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), *args]


@contextlib.contextmanager
def _service(gateway, stderr_path: Path, env: dict[str, str] | None = None, journal: bool = True):
    with open(stderr_path, "w+") as err:
        full_env = _journal_env(gateway, err) if journal else dict(gateway.env)
        full_env.update(env or {})
        proc = subprocess.Popen(_mtcd(gateway, "run"), stdout=subprocess.DEVNULL, stderr=err, env=full_env)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def test_once_refusal_is_a_warning_in_the_journal(gateway, tmp_path):
    foreign = make_card(serial_number=7, pin_enabled=False)  # no PIN stored for it
    with sim_modem(foreign) as (modem, port):
        gateway.configure(port)
        stderr_path = tmp_path / "stderr"
        with open(stderr_path, "w+") as err:
            done = subprocess.run(_mtcd(gateway, "once"), stdout=subprocess.PIPE, stderr=err,
                                  env=_journal_env(gateway, err), timeout=60, text=True)
        assert done.returncode == 1, stderr_path.read_text()
        assert modem.radio == 4
    entries = _entries(stderr_path.read_text())
    refusals = [(prio, msg) for prio, msg in entries if msg.startswith("refused: unknown-sim")]
    assert refusals and all(prio == 4 for prio, _ in refusals), entries


def test_once_without_the_journal_keeps_the_one_line_format(gateway, tmp_path):
    foreign = make_card(serial_number=7, pin_enabled=False)
    with sim_modem(foreign) as (modem, port):
        gateway.configure(port)
        # JOURNAL_STREAM inherited but stderr is elsewhere (a pipe): no prefixes.
        run = subprocess.run(_mtcd(gateway, "once"), capture_output=True, text=True, timeout=60,
                             env={**gateway.env, "JOURNAL_STREAM": "1:1"})
    assert run.returncode == 1
    assert re.search(r"^mtcd: WARNING: refused: unknown-sim", run.stderr, re.M), run.stderr
    assert not re.search(r"^<\d>", run.stderr, re.M)


def test_once_failure_line_is_an_error_in_the_journal(gateway, tmp_path):
    foreign = make_card(serial_number=7, pin_enabled=False)
    with sim_modem(foreign) as (modem, port):
        gateway.configure(port)
        modem.fail_after("AT+CFUN=", mode="error", times=100)
        stderr_path = tmp_path / "stderr"
        with open(stderr_path, "w+") as err:
            done = subprocess.run(_mtcd(gateway, "once"), stdout=subprocess.PIPE, stderr=err,
                                  env=_journal_env(gateway, err), timeout=60, text=True)
    assert done.returncode not in (0, 1), stderr_path.read_text()
    entries = _entries(stderr_path.read_text())
    # The command's last word: why it failed, at error.
    assert entries[-1][0] == 3, entries


def test_run_radio_off_failure_is_an_error_and_refusal_a_warning(gateway, tmp_path, notify_socket):
    ours = make_card()
    foreign = make_card(serial_number=7, pin_enabled=False)
    with sim_modem(ours) as (modem, port):
        gateway.configure(port, service="check_interval = 0.5")
        gateway.store_pin(str(ours.iccid))
        stderr_path = tmp_path / "stderr"
        with _service(gateway, stderr_path, {"NOTIFY_SOCKET": str(notify_socket.path)}) as proc:
            notify_socket.wait_for("READY", "1")
            # A SIM the gateway does not know: refused (a warning).
            modem.remove_card()
            modem.insert_card(foreign)
            wait_until(lambda: "refused: unknown-sim" in stderr_path.read_text(), 15, "refusal logged")
            # Then the radio will not go off when the service stops.
            modem.insert_card(ours)
            wait_until(lambda: modem.pdp_active, 15, "paired again")
            modem.fail_after("AT+CFUN=", mode="error", times=100)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    entries = _entries(stderr_path.read_text())
    radio = [prio for prio, msg in entries if msg.startswith("the radio could not be switched off")]
    assert radio == [3], entries
    # The service tells a refusal as an event (mtcd.events), on stderr here.
    refusals = [prio for prio, msg in entries if msg.startswith("mtcd: refused: unknown-sim")]
    assert refusals and set(refusals) == {4}, entries
    # Pairing is news, not a problem.
    paired = [prio for prio, msg in entries if msg.startswith("mtcd: paired SIM")]
    assert paired and set(paired) == {6}, entries


def _at_traces(text: str) -> list[str]:
    return [line for line in text.splitlines() if re.search(r"DEBUG: [<>] ", line)]


def test_sigusr1_shows_at_traces_and_sigusr2_stops_them(gateway, tmp_path, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, service="check_interval = 0.5")
        gateway.store_pin(str(card.iccid))
        stderr_path = tmp_path / "stderr"
        with _service(gateway, stderr_path, {"NOTIFY_SOCKET": str(notify_socket.path)}, journal=False) as proc:
            notify_socket.wait_for("READY", "1")
            time.sleep(1.2)  # a periodic check or two, at the configured level
            assert _at_traces(stderr_path.read_text()) == []
            proc.send_signal(signal.SIGUSR1)  # warning -> info
            wait_until(lambda: "log level raised to info" in stderr_path.read_text(), 10, "info")
            assert _at_traces(stderr_path.read_text()) == []
            proc.send_signal(signal.SIGUSR1)  # info -> debug: the AT traces
            wait_until(lambda: _at_traces(stderr_path.read_text()), 10, "AT traces")
            # A modem reboot re-locks the SIM: the PIN is presented while tracing.
            modem.power_loss()
            wait_until(lambda: any("AT+CPIN=" in t for t in _at_traces(stderr_path.read_text())), 15,
                       "the PIN presentation traced")
            wait_until(lambda: modem.pdp_active, 15, "paired again")
            proc.send_signal(signal.SIGUSR2)
            wait_until(lambda: "log level back to warning" in stderr_path.read_text(), 10, "back")
            seen = len(_at_traces(stderr_path.read_text()))
            time.sleep(1.5)  # periodic checks keep talking to the modem
            assert len(modem.commands) > 0
            assert len(_at_traces(stderr_path.read_text())) == seen
        assert proc.returncode == 0
    text = stderr_path.read_text()
    assert TEST_PIN not in text
    assert "> AT+CPIN=<redacted>" in text, _at_traces(text)
    assert "Traceback" not in text


def test_ready_without_systemd_python(gateway, tmp_path, notify_socket):
    # A python3-systemd that cannot be imported, found first on the path.
    broken = tmp_path / "broken"
    (broken / "systemd").mkdir(parents=True)
    (broken / "systemd" / "__init__.py").write_text('raise ImportError("python3-systemd is not installed")\n')
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        env = {"NOTIFY_SOCKET": str(notify_socket.path), "PYTHONPATH": f"{broken}:{Path.cwd()}",
               "WATCHDOG_USEC": "1000000"}
        stderr_path = tmp_path / "stderr"
        with _service(gateway, stderr_path, env, journal=False) as proc:
            ready = notify_socket.wait_for("READY", "1")
            assert ready["STATUS"] == f"paired ICCID {card.iccid}, link up"
            notify_socket.wait_for("WATCHDOG", "1")
            probe = subprocess.run([sys.executable, "-c", "import systemd"], env={**os.environ, **env},
                                   capture_output=True, text=True)
            assert probe.returncode != 0  # the trick did hide systemd-python
        assert proc.returncode == 0
        notify_socket.wait_for("STOPPING", "1")
    assert "cannot notify systemd" not in stderr_path.read_text()


def test_sd_notify_reaches_an_abstract_socket():
    name = f"mtcd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        assert sd_notify("READY=1\nSTATUS=up", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"READY=1\nSTATUS=up"


def test_sd_notify_without_a_socket_and_with_a_bad_one(tmp_path):
    assert sd_notify("READY=1", {}) is False
    with pytest.raises(OSError):
        notify_address("vsock:2:1234")
    with pytest.raises(OSError):
        sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "nobody")})


def test_sd_notify_to_a_socket_nobody_drains_fails_instead_of_hanging(tmp_path):
    import threading

    path = str(tmp_path / "full.sock")
    outcome = []

    def flood():
        try:
            for _ in range(100_000):
                sd_notify("STATUS=" + "x" * 512, {"NOTIFY_SOCKET": path})
            outcome.append("never full")
        except OSError as exc:
            outcome.append(exc)

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)  # and never read
        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        sender.join(timeout=30)
        assert not sender.is_alive(), "sd_notify blocked on a full notify socket"
    assert outcome and isinstance(outcome[0], OSError), outcome


def test_path_socket_through_notify(tmp_path):
    sock = NotifySocket(tmp_path / "n.sock")
    try:
        assert sd_notify("WATCHDOG=1", {"NOTIFY_SOCKET": str(sock.path)})
        assert sock.wait_for("WATCHDOG", "1", timeout=5)
    finally:
        sock.close()


@pytest.mark.parametrize(("levelno", "priority"), [(50, 2), (40, 3), (30, 4), (20, 6), (10, 7)])
def test_levels_map_to_syslog_priorities(levelno, priority):
    assert logsetup.syslog_priority(levelno) == priority


def test_every_line_of_a_multiline_message_keeps_its_priority():
    assert logsetup.with_priority(3, "first\nsecond") == "<3>first\n<3>second"


def test_journal_stream_must_match_stderr(tmp_path):
    with open(tmp_path / "f", "w") as f, open(tmp_path / "g", "w") as g:
        st = os.fstat(f.fileno())
        value = f"{st.st_dev}:{st.st_ino}"
        assert logsetup.stderr_is_journal({"JOURNAL_STREAM": value}, fd=f.fileno())
        assert not logsetup.stderr_is_journal({"JOURNAL_STREAM": value}, fd=g.fileno())
        assert not logsetup.stderr_is_journal({}, fd=f.fileno())
        assert not logsetup.stderr_is_journal({"JOURNAL_STREAM": "junk"}, fd=f.fileno())
