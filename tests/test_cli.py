"""The CLI contract: exit codes, one-line errors, never a traceback, and no
secret in any output, log, argv, environment or state file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from conftest import network_commands
from simfixtures import TEST_PIN, make_card, sim_modem

LEAK_PIN = "90817263"  # a PIN whose digits appear nowhere else


def one_line_error(run, prog):
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"{prog}: ")
    assert "Traceback" not in run.stderr
    return lines[0]


def test_missing_config_is_78(gateway):
    run = gateway.mtcd("once")
    assert run.returncode == 78
    assert "no such file" in one_line_error(run, "mtcd")


def test_unknown_config_key_is_78_and_named(gateway):
    gateway.config.write_text('[modem]\nport = "/dev/null"\n[policy]\nmin_retry = 2\n')
    run = gateway.mtcd("once")
    assert run.returncode == 78
    assert "policy.min_retry" in one_line_error(run, "mtcd")


@pytest.mark.parametrize("args", [(), ("bogus",), ("once", "--nope")])
def test_usage_errors_are_64(gateway, args):
    gateway.configure("/dev/null")
    run = gateway.mtcd(*args)
    assert run.returncode == 64
    one_line_error(run, "mtcd")


def test_missing_port_is_69(gateway):
    gateway.configure(str(gateway.root / "ttyUSB9"))
    run = gateway.mtcd("once", "--json")
    assert run.returncode == 69
    assert "ttyUSB9" in one_line_error(run, "mtcd")


def test_silent_port_is_69(gateway):
    master, slave = os.openpty()
    try:
        gateway.configure(os.ttyname(slave), modem="")
        gateway.config.write_text(gateway.config.read_text().replace("timeout = 5", "timeout = 1"))
        run = gateway.mtcd("once")
        assert run.returncode == 69
        assert "no answer" in one_line_error(run, "mtcd")
    finally:
        os.close(master)
        os.close(slave)


def test_garbage_answering_port_is_69(gateway):
    """A port that answers every line with noise (wrong device, wrong baud rate)."""
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def noise():
        while not stop.is_set():
            try:
                os.read(master, 1024)
                os.write(master, b"\r\n\x8f\x13garbage\xff\r\nERROR\r\n")
            except OSError:
                return

    t = threading.Thread(target=noise, daemon=True)
    t.start()
    try:
        gateway.configure(os.ttyname(slave))
        run = gateway.mtcd("once")
        assert run.returncode == 69
        one_line_error(run, "mtcd")
    finally:
        stop.set()
        os.close(slave)
        os.close(master)


def test_port_held_by_another_process_is_69(gateway):
    import serial

    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        holder = serial.Serial(port, exclusive=True)
        try:
            run = gateway.mtcd("once")
        finally:
            holder.close()
        assert run.returncode == 69
        one_line_error(run, "mtcd")


def test_mtcctl_pin_set_rules(gateway):
    card = make_card()
    gateway.configure("/dev/null")
    iccid = str(card.iccid)
    bad = gateway.mtcctl("pin", "set", iccid, stdin="12a45\n")
    assert bad.returncode == 65 and "12a45" not in bad.stderr
    assert "digits" in one_line_error(bad, "mtcctl")
    assert gateway.mtcctl("pin", "set", iccid, stdin="\n").returncode == 65
    assert gateway.mtcctl("pin", "set", iccid, stdin="123\n").returncode == 65
    assert gateway.mtcctl("pin", "set", "8949", stdin=TEST_PIN + "\n").returncode == 65
    # The PIN can't be given on the command line at all.
    argv = gateway.mtcctl("pin", "set", iccid, TEST_PIN)
    assert argv.returncode == 64 and TEST_PIN not in argv.stderr
    assert not (gateway.state_dir / "keystore.json").exists(), "nothing written on bad input"
    ok = gateway.mtcctl("pin", "set", iccid, stdin=TEST_PIN + "\n")
    assert ok.returncode == 0 and TEST_PIN not in ok.stdout
    listed = json.loads(gateway.mtcctl("pin", "list", "--json").stdout)["pins"]
    assert [e["iccid"] for e in listed] == [iccid]
    assert TEST_PIN not in json.dumps(listed)


def test_damaged_keystore_is_65_and_keeps_the_radio_off(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        store = gateway.state_dir / "keystore.json"
        store.write_bytes(store.read_bytes()[:-20])
        for run in (gateway.mtcd("once", "--json"), gateway.mtcctl("pin", "list")):
            assert run.returncode == 65
            assert "damaged" in one_line_error(run, run.stderr.split(":")[0])
        assert modem.radio == 4
        assert network_commands(modem.commands) == []


def test_status_and_history(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        gateway.mtcd("once")
    status = json.loads(gateway.mtcctl("status", "--json").stdout)
    assert status["stored_pins"] == 1 and status["last_decision"]["outcome"] == "paired"
    text = gateway.mtcctl("status").stdout
    assert "paired" in text and str(card.iccid) in text
    history = gateway.mtcctl("history").stdout
    assert "pin-set" in history and "decision" in history


def test_human_output_of_once(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcd("once")
        assert run.returncode == 1
        assert run.stdout.startswith("refused: unknown-sim")


# --- guarantee 4: no PIN anywhere --------------------------------------------

def test_no_pin_in_output_logs_or_state_files(gateway):
    """Every path that touches a PIN, at the most verbose log level."""
    good, wrong = make_card(serial_number=1, pin=LEAK_PIN), make_card(serial_number=2)
    with sim_modem(good, echo=True) as (modem, port):
        gateway.configure(port)
        runs = [gateway.mtcctl("pin", "set", str(good.iccid), stdin=LEAK_PIN + "\n", )]
        runs.append(gateway.mtcctl("-vv", "pin", "set", str(wrong.iccid), stdin=LEAK_PIN + "\n"))
        runs.append(gateway.mtcd("-vv", "once", "--json"))  # accepted
        modem.remove_card()
        modem.insert_card(wrong)
        runs.append(gateway.mtcd("-vv", "once", "--json"))  # rejected
        runs.append(gateway.mtcd("-vv", "once", "--json"))  # latched
        for args in (("status", "--json"), ("history", "--json"), ("pin", "list", "--json"), ("-vv", "status")):
            runs.append(gateway.mtcctl(*args))
        assert [r.returncode for r in runs[2:5]] == [0, 1, 1]
        assert "AT+CPIN" in runs[2].stderr, "the AT trace was on"
        for run in runs:
            assert LEAK_PIN not in run.stdout and LEAK_PIN not in run.stderr
        for path, data in gateway.every_state_file().items():
            assert LEAK_PIN.encode() not in data, path
            assert LEAK_PIN.encode().hex().encode() not in data.lower(), path
        # The simulator's own log of what crossed the wire is redacted too.
        assert not any(LEAK_PIN in c for c in modem.commands)


def test_no_pin_in_argv_or_environment_of_the_service(gateway, notify_socket):
    card = make_card(pin=LEAK_PIN)
    with sim_modem(card) as (modem, port):
        gateway.configure(port, datalink='backend = "none"')
        gateway.store_pin(str(card.iccid), LEAK_PIN)
        proc = subprocess.Popen(
            [sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "run"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**gateway.env, "NOTIFY_SOCKET": str(notify_socket.path)},
        )
        try:
            ready = notify_socket.wait_for("READY", "1")
            assert ready["STATUS"].startswith("paired"), ready
            assert modem.radio == 1
            for name in ("cmdline", "environ"):
                with open(f"/proc/{proc.pid}/{name}", "rb") as f:
                    assert LEAK_PIN.encode() not in f.read()
        finally:
            proc.terminate()
            out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert LEAK_PIN not in out + err
        # Stopping the service closes the gate.
        assert modem.radio == 4


@pytest.mark.parametrize("module, prog", [("mtcd.cli.daemon", "mtcd"), ("mtcd.cli.ctl", "mtcctl")])
def test_version_option(module, prog):
    import mtcd

    run = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout.strip() == f"{prog} {mtcd.__version__}", run.stdout + run.stderr
