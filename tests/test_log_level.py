"""`mtcctl log-level`: the real `mtcctl` changes the level of a real running
`mtcd run` (simulated modem on a pty) through its control socket, without a
restart; only peers the socket admits may."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from simfixtures import TEST_PIN, make_card, sim_modem, wait_until
from test_control import NOBODY, as_user, needs_root

from mtcd.control import ControlClient


def _debug_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("mtcd: DEBUG: ")]


@contextlib.contextmanager
def _running(gateway, stderr_path: Path, notify_socket):
    with open(stderr_path, "w") as err:
        env = {**gateway.env, "NOTIFY_SOCKET": str(notify_socket.path)}
        proc = subprocess.Popen([sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "run"],
                                stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            notify_socket.wait_for("READY", "1")
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    assert proc.returncode == 0, stderr_path.read_text()
    assert "Traceback" not in stderr_path.read_text()


def test_debug_then_reset_on_a_running_service(gateway, tmp_path, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, service="check_interval = 0.3")
        gateway.store_pin(str(card.iccid))
        stderr_path = tmp_path / "stderr"
        with _running(gateway, stderr_path, notify_socket) as proc:
            time.sleep(1)  # periodic checks at the configured level: warning
            assert _debug_lines(stderr_path) == []

            run = gateway.mtcctl("log-level", "debug", "--json")
            assert (run.returncode, run.stderr) == (0, ""), run.stderr
            assert json.loads(run.stdout) == {"ok": True, "level": "debug"}
            # The periodic checks are traced now, PIN-redacted as always.
            wait_until(lambda: any("> AT" in line and "+CPIN?" in line for line in _debug_lines(stderr_path)), 10, "AT traces")
            assert "log level raised to debug" in stderr_path.read_text()

            run = gateway.mtcctl("log-level", "reset")
            assert (run.returncode, run.stdout, run.stderr) == (0, "log level: warning\n", "")
            seen = len(_debug_lines(stderr_path))
            commands = len(modem.commands)
            time.sleep(1.5)
            assert len(modem.commands) > commands  # the service kept talking to the modem...
            assert len(_debug_lines(stderr_path)) == seen  # ...without a trace
            assert proc.poll() is None  # never restarted
    text = stderr_path.read_text()
    assert TEST_PIN not in text


def test_info_and_error_by_name(gateway, tmp_path, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, service="check_interval = 0.3")
        gateway.store_pin(str(card.iccid))
        stderr_path = tmp_path / "stderr"
        with _running(gateway, stderr_path, notify_socket):
            run = gateway.mtcctl("--json", "log-level", "info")
            assert json.loads(run.stdout) == {"ok": True, "level": "info"}
            wait_until(lambda: "INFO: log level raised to info" in stderr_path.read_text(), 10, "info line")
            assert _debug_lines(stderr_path) == []
            run = gateway.mtcctl("log-level", "error")
            assert (run.returncode, run.stdout) == (0, "log level: error\n")
            # Going quieter, the change is said while it can still be seen.
            assert "INFO: log level lowered to error" in stderr_path.read_text()


def test_without_a_running_service_it_is_69(gateway):
    gateway.configure("/dev/null")
    run = gateway.mtcctl("log-level", "debug")
    assert run.returncode == 69
    assert run.stdout == ""
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert re.fullmatch(r"mtcctl: the service is not running \(nothing listens on .*control\.sock\)\n", run.stderr)


@pytest.mark.parametrize("level", ["loud", "DEBUG", "", "10"])
def test_an_unknown_level_is_a_usage_error(gateway, level):
    gateway.configure("/dev/null")
    run = gateway.mtcctl("log-level", level)
    assert run.returncode == 64
    assert len(run.stderr.splitlines()) == 1 and "argument LEVEL: invalid choice" in run.stderr, run.stderr


@needs_root
def test_a_peer_the_socket_does_not_admit_cannot_change_it(gateway, tmp_path, notify_socket):
    # A socket in a directory nobody may enter, open to everyone itself, so
    # that only the service's SO_PEERCRED check stands in the way.
    sockdir = Path(tempfile.mkdtemp(prefix="mtcd-log-level-"))
    os.chmod(sockdir, 0o755)
    card = make_card()
    try:
        with sim_modem(card) as (modem, port):
            gateway.configure(port, service=f"check_interval = 0.3\ncontrol_socket = {str(sockdir / 'c.sock')!r}")
            gateway.store_pin(str(card.iccid))
            stderr_path = tmp_path / "stderr"
            with _running(gateway, stderr_path, notify_socket):
                os.chmod(sockdir / "c.sock", 0o666)
                outcome = as_user(NOBODY, NOBODY, [], lambda: ControlClient(sockdir / "c.sock", 10).call(
                    "log-level", level="debug"))
                assert outcome.get("exit_code") == 77, outcome
                time.sleep(1)
                assert _debug_lines(stderr_path) == []
                # Root may.
                assert gateway.mtcctl("log-level", "debug").returncode == 0
                wait_until(lambda: _debug_lines(stderr_path), 10, "AT traces")
    finally:
        for child in sockdir.iterdir():
            child.unlink()
        sockdir.rmdir()


@pytest.mark.parametrize("level", ["loud", 10, None, ["debug"]])
def test_the_wire_format_refuses_a_level_it_does_not_know(level):
    from mtcd.control import BadRequest, PeerCredentials, parse_request

    line = json.dumps({"command": "log-level", "level": level}).encode() + b"\n"
    with pytest.raises(BadRequest, match="^log-level: level must be one of debug, info, warning, error, reset$") as bad:
        parse_request(line, PeerCredentials(1, 0, 0))
    assert bad.value.exit_code == 64
