"""Shared fixtures: the simulator on a real pty, and mtcd's own commands run
as a device agent would run them (separate processes, PIN on stdin)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from simfixtures import TEST_PIN, make_card, make_iccid, make_imei, sim, sim_card, sim_modem  # noqa: F401

# Commands that would put a refused SIM on the network (guarantee 3).
NETWORK_COMMANDS = ("AT+CFUN=1", "AT+CGDCONT=", "AT+CGACT=1", "AT+CGATT=1", "ATD", "AT+COPS=")


def network_commands(commands: list[str]) -> list[str]:
    return [c for c in commands if c.upper().startswith(NETWORK_COMMANDS)]


def pin_presentations(commands: list[str]) -> list[str]:
    return [c for c in commands if c.upper().startswith("AT+CPIN=")]


def puk_commands(commands: list[str]) -> list[str]:
    """Anything that would spend a PUK attempt (guarantee 2): AT+CPIN with two
    arguments, or an UNBLOCK PIN APDU (INS 2C) with data through CSIM."""
    return [
        c for c in commands
        if (c.upper().startswith("AT+CPIN=") and "," in c)
        or (c.upper().startswith("AT+CSIM=") and '"002C' in c.upper() and "<redacted>" in c)
    ]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_json(self) -> dict:
        import json

        return json.loads(self.stdout.strip().splitlines()[-1])

    @property
    def json_lines(self) -> list:
        """stdout as JSON lines (`mtcctl history --json`): one object a line."""
        import json

        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


@dataclass
class Gateway:
    """One gateway's configuration and state directory, driven through the CLIs."""

    root: Path

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def config(self) -> Path:
        return self.root / "mtcd.toml"

    @property
    def control_socket(self) -> Path:
        return self.root / "control.sock"

    def configure(self, port: str, *, policy: str = "", datalink: str = 'backend = "at"\napn = "iot.example"',
                  modem: str = "", service: str = "") -> Path:
        self.config.write_text(
            f'state_dir = "{self.state_dir}"\n'
            f'[modem]\nport = "{port}"\n{"" if "timeout" in modem else "timeout = 5"}\n{modem}\n'
            # A lost answer to a PIN command is given up after 5 s, not 20.
            f'{"" if "pin_timeout" in modem else "pin_timeout = 5"}\n'
            f"[policy]\n{policy}\n"
            f"[datalink]\n{datalink}\n"
            # Each test's own control socket: never the machine's /run/mtcd.
            f'[service]\n{"" if "control_socket" in service else f"control_socket = {str(self.control_socket)!r}"}\n'
            f"{service}\n"
        )
        return self.config

    @property
    def env(self) -> dict[str, str]:
        """The environment of this gateway's commands.  systemd-creds takes its
        host secret from here, so tests never touch the machine's own
        /var/lib/systemd/credential.secret; each test is another "host"."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MTCD")}
        env["SYSTEMD_CREDENTIAL_SECRET"] = str(self.root / "host-credential.secret")
        return env

    def mtcd(self, *args: str, timeout: float = 60) -> Run:
        return _run([sys.executable, "-m", "mtcd.cli.daemon", "--config", str(self.config), *args], None, timeout, self.env)

    def mtcctl(self, *args: str, stdin: str | None = None, timeout: float = 30) -> Run:
        return _run([sys.executable, "-m", "mtcd.cli.ctl", "--config", str(self.config), *args], stdin, timeout, self.env)

    def store_pin(self, iccid: str, pin: str = TEST_PIN) -> None:
        run = self.mtcctl("pin", "set", iccid, stdin=pin + "\n")
        assert run.returncode == 0, run.stderr

    def keystore(self):
        """The gateway's keystore, opened in this process as the commands open it."""
        from mtcd.config import load_config
        from mtcd.sealers import open_keystore

        saved = os.environ.get("SYSTEMD_CREDENTIAL_SECRET")
        os.environ["SYSTEMD_CREDENTIAL_SECRET"] = self.env["SYSTEMD_CREDENTIAL_SECRET"]
        try:
            config = load_config(self.config)
            return open_keystore(config.state_dir, config.keystore.sealer)[0]
        finally:
            if saved is None:
                del os.environ["SYSTEMD_CREDENTIAL_SECRET"]
            else:
                os.environ["SYSTEMD_CREDENTIAL_SECRET"] = saved

    def history(self) -> list[dict]:
        return self.mtcctl("history", "--json").json_lines

    def every_state_file(self) -> dict[str, bytes]:
        return {str(p): p.read_bytes() for p in self.state_dir.rglob("*") if p.is_file()}


class NotifySocket:
    """A systemd-style notification socket owned by the test: what `mtcd run`
    tells systemd arrives here as datagrams of KEY=VALUE lines."""

    def __init__(self, path: Path):
        import socket

        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def close(self) -> None:
        self.sock.close()

    def wait_for(self, key: str, value: str | None = None, timeout: float = 20.0, start: int = 0) -> dict[str, str]:
        """The first message (from index `start`) carrying `key` (= `value`)."""
        return self.wait_until(lambda m: key in m and (value is None or m[key] == value), timeout, start,
                               f"{key}={value}")

    def wait_until(self, matches, timeout: float = 20.0, start: int = 0, what: str = "message") -> dict[str, str]:
        import time

        deadline = time.monotonic() + timeout
        index = start
        while True:
            while index < len(self.messages):
                msg = self.messages[index]
                index += 1
                if matches(msg):
                    return msg
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} from the service; got {self.messages}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line))


def _run(argv: list[str], stdin: str | None, timeout: float, env: dict[str, str]) -> Run:
    done = subprocess.run(argv, input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=timeout, env=env)
    return Run(done.returncode, done.stdout, done.stderr)


@pytest.fixture(autouse=True)
def _json_outputs_match_their_schemas(monkeypatch):
    """Every `--json` output a test produces is checked against docs/json/
    (tests/jsoncheck.py); a mismatch fails the test that produced it."""
    import jsoncheck

    problems = jsoncheck.watch(monkeypatch)
    yield
    if problems:
        pytest.fail("JSON output that does not match docs/json/:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def gateway(tmp_path) -> Gateway:
    return Gateway(tmp_path)


@pytest.fixture
def notify_socket(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()
