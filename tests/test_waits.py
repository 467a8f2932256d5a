"""Feedback during waits: a progress line on a terminal, one log line
elsewhere, STATUS= in the service; and every wait bounded by a configured
timeout.  The terminal is a real pty (python's pty module) as stderr of a
real `mtcd once`; the slow SIM is the simulator's SIM-busy fault (CME 14
for a while after unlock)."""

from __future__ import annotations

import io
import logging
import os
import pty
import re
import subprocess
import sys
import time

import pytest

from simfixtures import make_card, sim_modem
from test_service import service

from mtcd.config import ConfigError, load_config
from mtcd.progress import Waits

SIM_WAIT = "waiting for the SIM to finish initialising"


def _mtcd_on_a_pty(gateway, *args: str, module: str = "mtcd.cli.daemon") -> tuple[int, str, str]:
    """`mtcd` (or `mtcctl`) with stderr on a pty (stdout a pipe): exit code,
    stdout, everything the terminal received."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", module, "--config", str(gateway.config), *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=gateway.env)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the last writer closed the pty
            break
        if not chunk:
            break
        seen += chunk
    out = proc.stdout.read().decode()
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, out, seen.decode()


def test_a_busy_sim_shows_a_progress_line_on_a_terminal(gateway):
    card = make_card()
    with sim_modem(card, ready_delay=3.2) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        code, out, tty = _mtcd_on_a_pty(gateway, "once")
    assert code == 0, tty
    assert out.startswith("paired")
    # Redrawn in place, counting, and erased at the end.
    ticks = re.findall(rf"\r\x1b\[K{SIM_WAIT}… (\d+) s", tty)
    assert ticks[:3] == ["1", "2", "3"], repr(tty)
    assert tty.endswith("\r\x1b[K"), repr(tty)
    assert "\n" not in tty  # nothing else was said on the terminal


def test_without_a_terminal_one_log_line_and_no_progress_line(gateway):
    card = make_card()
    with sim_modem(card, ready_delay=3.5) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("-v", "once")
    assert run.returncode == 0, run.stderr
    assert "\r" not in run.stderr and "\x1b" not in run.stderr
    assert run.stderr.count(SIM_WAIT) == 1
    assert f"mtcd: INFO: {SIM_WAIT} (up to 10 s)\n" in run.stderr


def test_the_sim_ready_wait_is_configurable(gateway):
    card = make_card()
    with sim_modem(card, ready_delay=30) as (modem, port):
        gateway.configure(port, modem="sim_ready_timeout = 2.5")
        gateway.store_pin(str(card.iccid))
        started = time.monotonic()
        run = gateway.mtcd("-v", "once", "--json")
        took = time.monotonic() - started
        assert modem.radio == 4  # the wait ended in a refusal, the gate closed
    assert f"{SIM_WAIT} (up to 2.5 s)" in run.stderr
    assert took < 15, run.stderr  # not the 30 s the SIM would have taken
    assert (run.returncode, run.last_json["reason"]) == (1, "sim-error")


def test_the_data_link_command_timeout_is_configurable(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        modem.fail_after("AT+CGACT=1", "before")  # the modem never answers the activation
        gateway.configure(port, modem="timeout = 1",
                          datalink='backend = "at"\napn = "iot.example"\ncommand_timeout = 2')
        gateway.store_pin(str(card.iccid))
        started = time.monotonic()
        run = gateway.mtcd("once")
        took = time.monotonic() - started
    assert run.returncode == 69
    # The activation shares its line with the context definition (one round trip).
    assert 'no answer to AT+CGDCONT=1,"IP","iot.example";+CGACT=1,1 within 2 s' in run.stderr
    assert took < 20  # not the built-in 150 s


def test_the_service_says_what_it_waits_for(gateway, notify_socket):
    card = make_card()
    with sim_modem(card, ready_delay=3.5) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            waiting = notify_socket.wait_for("STATUS", f"{SIM_WAIT} (up to 10 s)")
            start = notify_socket.messages.index(waiting) + 1
            ready = notify_socket.wait_for("READY", "1", start=start)
            assert ready["STATUS"] == f"paired ICCID {card.iccid}, link up"


def test_mtcctl_waiting_for_a_busy_service_shows_a_progress_line(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            modem.latency = 0.4  # a slow modem: the rotation takes seconds
            code, out, tty = _mtcd_on_a_pty(gateway, "pin", "rotate", module="mtcd.cli.ctl")
            modem.latency = 0
    assert code == 0, tty
    assert re.search(r"\r\x1b\[Kwaiting for the service to answer rotate… [1-9] s", tty), repr(tty)
    assert tty.endswith("\r\x1b[K"), repr(tty)


# --- the feedback itself -----------------------------------------------------------

class FakeTerminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return True


def test_short_waits_say_nothing():
    term, said = FakeTerminal(), []
    waits = Waits(term, on_start=said.append, on_end=lambda: said.append("end"))
    with waits.waiting("waiting for the modem to answer AT", 5):
        time.sleep(0.3)
    time.sleep(0.3)
    assert term.getvalue() == "" and said == []


def test_a_wait_is_on_the_terminal_before_it_is_announced():
    term, said = FakeTerminal(), []
    waits = Waits(term, on_start=said.append, on_end=lambda: said.append("end"), show_after=0.2,
                  announce_after=1.0)
    with waits.waiting("waiting for the modem to answer AT+CFUN=1", 30):
        time.sleep(0.6)
    assert "waiting for the modem to answer AT+CFUN=1… 0 s" in term.getvalue()
    assert said == []  # a slow modem's every command is not a status message


def test_the_innermost_long_wait_is_shown_and_systemd_told_once():
    term, said = FakeTerminal(), []
    waits = Waits(term, on_start=said.append, on_end=lambda: said.append("end"), show_after=0.3,
                  announce_after=0.3)
    with waits.waiting("waiting for the data link"):
        time.sleep(0.5)
        with waits.waiting("waiting for the modem to answer AT+CGACT=1,1", 150):
            time.sleep(0.6)
        time.sleep(0.4)
    lines = [t for t in term.getvalue().split("\r\x1b[K") if t]
    assert lines[0] == "waiting for the data link… 0 s"
    assert "waiting for the modem to answer AT+CGACT=1,1… 0 s" in lines
    assert lines[-1].startswith("waiting for the data link…")  # the outer one again after the inner ended
    assert term.getvalue().endswith("\r\x1b[K")
    assert said == ["waiting for the data link", "waiting for the modem to answer AT+CGACT=1,1 (up to 150 s)", "end"]


def test_a_log_record_starts_on_a_clean_line(caplog):
    term = FakeTerminal()
    handler = logging.StreamHandler(term)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        waits = Waits(term, show_after=0.1)
        with waits.waiting("waiting for the SIM"):
            time.sleep(0.4)
            logging.getLogger("mtcd").warning("something happened")
            time.sleep(0.1)
    finally:
        root.removeHandler(handler)
    assert "\r\x1b[Ksomething happened\n" in term.getvalue()


def test_without_a_terminal_a_long_wait_is_logged_once(caplog):
    caplog.set_level(logging.INFO, logger="mtcd")
    waits = Waits(io.StringIO(), show_after=0.1, announce_after=0.3)
    with waits.waiting("waiting for the SIM", 10):
        time.sleep(0.6)
    assert [r.getMessage() for r in caplog.records] == ["waiting for the SIM (up to 10 s)"]


# --- the timeouts are configuration ------------------------------------------------

def test_timeouts_in_the_configuration(tmp_path):
    path = tmp_path / "mtcd.toml"
    path.write_text('[modem]\nport = "/dev/ttyUSB2"\nsim_ready_timeout = 20\n'
                    '[datalink]\ncommand_timeout = 300\n')
    config = load_config(path)
    assert (config.modem.sim_ready_timeout, config.datalink.command_timeout) == (20.0, 300.0)
    path.write_text('[modem]\nport = "/dev/ttyUSB2"\nsim_ready_timeout = 0\n')
    with pytest.raises(ConfigError, match=r"modem.sim_ready_timeout must be a number of seconds > 0 \(got 0\)$"):
        load_config(path)


def test_every_timeout_is_documented():
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    readme = (repo / "README.md").read_text()
    example = (repo / "config" / "mtcd.toml").read_text()
    for key in ("modem.timeout", "modem.sim_ready_timeout", "datalink.command_timeout", "datalink.up_timeout"):
        assert f"| `{key}` |" in readme, key
        assert re.search(rf"^#? ?{key.split('.')[1]} = ", example, re.M), key
    example_config = load_config(repo / "config" / "mtcd.toml")
    assert example_config.modem.sim_ready_timeout == 10.0
