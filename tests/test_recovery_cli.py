"""Confirmations at a terminal (`pair`, `pin set`, `pin forget`, a try below
the guard), `mtcctl repair`, and `mtcd once --dry-run`; through the real
CLIs against the simulator.  Terminal tests give the command a pty as
standard input, as a technician's shell would."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time

from conftest import network_commands, pin_presentations, puk_commands
from simfixtures import TEST_PIN, make_card, sim_modem, wait_until

OTHER_PIN = "24682468"


def on_tty(gateway, args: list[str], answers: list[tuple[str, str]], timeout: float = 60):
    """Run mtcctl with a pty as stdin; type each answer once its prompt (on
    stderr) has appeared.  Returns (exit code, stdout, stderr)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(gateway.config), *args],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=gateway.env,
        start_new_session=True,  # no controlling terminal: getpass uses stdin
    )
    os.close(slave)
    err = b""
    deadline = time.monotonic() + timeout
    try:
        for prompt, line in answers:
            while prompt.encode() not in err:
                left = deadline - time.monotonic()
                assert left > 0, f"no prompt {prompt!r}; stderr so far: {err!r}"
                ready, _, _ = select.select([proc.stderr], [], [], left)
                chunk = os.read(proc.stderr.fileno(), 4096) if ready else b""
                if ready and not chunk:
                    raise AssertionError(f"mtcctl ended before prompt {prompt!r}: {err!r}")
                err += chunk
            err = err.replace(prompt.encode(), b"", 1)
            os.write(master, line.encode() + b"\n")
        out, rest = proc.communicate(timeout=timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out.decode(), (err + rest).decode()


# -- PINs typed twice ------------------------------------------------------------

def test_pin_set_on_a_terminal_asks_twice_and_refuses_a_mismatch(gateway):
    iccid = make_card().iccid
    gateway.configure("/dev/null")
    code, out, err = on_tty(gateway, ["pin", "set", str(iccid)],
                            [("PIN for SIM", TEST_PIN), ("same PIN again", OTHER_PIN)])
    assert code == 65 and "differ" in err, err
    assert not (gateway.state_dir / "keystore.json").exists()
    code, out, err = on_tty(gateway, ["pin", "set", str(iccid)],
                            [("PIN for SIM", TEST_PIN), ("same PIN again", TEST_PIN)])
    assert code == 0, err
    assert gateway.keystore().get(iccid).pin.reveal() == TEST_PIN
    assert TEST_PIN not in out + err
    # --yes: asked once.
    code, out, err = on_tty(gateway, ["pin", "set", str(iccid), "--yes"], [("PIN for SIM", OTHER_PIN)])
    assert code == 0 and "again" not in err, err
    assert gateway.keystore().get(iccid).pin.reveal() == OTHER_PIN


def test_pair_on_a_terminal_refuses_a_mismatch_before_touching_the_sim(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        code, out, err = on_tty(gateway, ["pair"], [("transport PIN", TEST_PIN), ("same PIN again", OTHER_PIN)])
        assert code == 65 and "differ" in err, err
        assert modem.commands == [] and card.pin_attempts == 3
        assert len(gateway.keystore()) == 0
        code, out, err = on_tty(gateway, ["pair"], [("transport PIN", TEST_PIN), ("same PIN again", TEST_PIN)])
        assert code == 0, err
        assert card.pin != TEST_PIN


def test_piped_stdin_still_reads_one_line_per_secret(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcctl("pair", "--json", stdin=TEST_PIN + "\n", timeout=60)
        assert run.returncode == 0, run.stderr


# -- pin forget on the paired SIM --------------------------------------------------

def test_forgetting_the_paired_sim_warns_and_needs_a_confirmation(gateway):
    card, other = make_card(serial_number=1), make_card(serial_number=2)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        gateway.store_pin(str(other.iccid))
        assert gateway.mtcd("once").returncode == 0
        run = gateway.mtcctl("pin", "forget", str(card.iccid))
        assert run.returncode == 1 and "--yes" in run.stderr and "refuses it" in run.stderr, run.stderr
        assert card.iccid in gateway.keystore()
        code, out, err = on_tty(gateway, ["pin", "forget", str(card.iccid)], [("to go on", "no")])
        assert code == 1 and card.iccid in gateway.keystore(), err
        code, out, err = on_tty(gateway, ["pin", "forget", str(card.iccid)], [("to go on", str(card.iccid)[-4:])])
        assert code == 0 and card.iccid not in gateway.keystore(), err
        # Another SIM's PIN: no question, as before.
        assert gateway.mtcctl("pin", "forget", str(other.iccid)).returncode == 0
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
        assert gateway.mtcctl("pin", "forget", str(card.iccid), "--yes").returncode == 0
        assert card.iccid not in gateway.keystore()


def test_forgetting_the_paired_sim_through_the_service_warns(gateway, notify_socket):
    from test_service import service

    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            run = gateway.mtcctl("pin", "forget", str(card.iccid))
            assert run.returncode == 1 and "--yes" in run.stderr, run.stderr
            assert card.iccid in gateway.keystore()


# -- a try below the guard, confirmed at the terminal ----------------------------------

def test_pin_try_below_the_guard_asks_on_a_terminal(gateway):
    card = make_card(pin_attempts=1)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        code, out, err = on_tty(gateway, ["pin", "try", "--below-guard", "--last-attempt"], [("to go on", "no")])
        assert code == 1 and "not confirmed" in err, err
        assert pin_presentations(modem.commands) == []
        code, out, err = on_tty(gateway, ["pin", "try", "--below-guard", "--last-attempt"],
                                [("to go on", str(card.iccid)[-4:])])
        assert code == 0, err
        assert len(pin_presentations(modem.commands)) == 1 and card.verified


# -- repair -------------------------------------------------------------------------

def test_repair_without_the_service_decides_and_leaves_the_radio_off(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcctl("repair", "--json")
        assert run.returncode == 1, run.stderr
        answer = json.loads(run.stdout)
        assert answer["state"] == "refused" and answer["reason"] == "unknown-sim"
        assert f"mtcctl pin set {card.iccid}" in answer["detail"]
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcctl("repair")
        assert run.returncode == 0 and f"paired: ICCID {card.iccid}" in run.stdout, run.stderr
        assert card.verified and modem.radio == 4
        assert network_commands(modem.commands) == []


def test_repair_through_the_service_answers_the_new_decision(gateway, notify_socket):
    from test_service import service

    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        with service(gateway, notify_socket):
            notify_socket.wait_for("STATUS", "refused: unknown-sim")
            gateway.store_pin(str(card.iccid))
            run = gateway.mtcctl("repair", "--json")
            assert run.returncode == 0, run.stderr
            answer = json.loads(run.stdout)
            assert answer["state"] == "paired" and answer["service"] is True and answer["link"] == "up"
            assert modem.pdp_active
            # Asked again: the paired SIM keeps its link, nothing is presented.
            presented = len(pin_presentations(modem.commands))
            again = gateway.mtcctl("repair")
            assert again.returncode == 0 and "link up" in again.stdout, again.stderr
            assert len(pin_presentations(modem.commands)) == presented and modem.pdp_active


# -- mtcd once --dry-run ------------------------------------------------------------

FORBIDDEN = ("AT+CPIN=", "AT+CFUN=1", "AT+CGACT", "ATD", "AT+CPWD", "AT+CLCK=\"SC\",0", "AT+CLCK=\"SC\",1",
             "AT+CGDCONT=", "AT+CGATT=1", "AT+COPS=", "AT+QNETDEVCTL=", "AT+QCFG=\"USBNET\",")


def _forbidden(commands: list[str]) -> list[str]:
    return [c for c in commands if c.upper().startswith(FORBIDDEN) and not c.endswith("?")]


def test_dry_run_presents_nothing_and_changes_nothing(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        before = gateway.every_state_file()
        text = gateway.mtcd("once", "--dry-run")
        run = gateway.mtcd("once", "--dry-run", "--json")
        assert run.returncode == 0 and text.returncode == 0, run.stderr
        assert text.stdout.strip().startswith(
            f"would present the stored current PIN for {card.iccid}: 3 PIN attempts left, guard 2")
        answer = run.last_json
        assert answer["state"] == "would-present" and answer["pin"] == "current" and answer["dry_run"] is True
        assert answer["iccid"] == str(card.iccid) and answer["pin_retries"] == 3 and answer["sim"] == "SIM PIN"
        assert _forbidden(modem.commands) == [] and pin_presentations(modem.commands) == []
        assert puk_commands(modem.commands) == []
        assert modem.radio != 1 and not modem.pdp_active and modem.dials == 0
        assert gateway.every_state_file() == before  # keystore (and journal) bytes unchanged
        assert card.pin_attempts == 3 and not card.verified


def test_dry_run_on_refusals_and_an_unlocked_sim(gateway):
    card = make_card(pin_attempts=1)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcd("once", "--dry-run", "--json")
        assert run.returncode == 1 and run.last_json["state"] == "would-refuse"
        assert run.last_json["reason"] == "unknown-sim"
        gateway.store_pin(str(card.iccid))
        before = gateway.every_state_file()
        run = gateway.mtcd("once", "--dry-run")
        assert run.returncode == 1 and "would refuse: retry-guard" in run.stdout, run.stdout
        assert "mtcctl pin try --below-guard --last-attempt" in run.stdout
        assert card.verify(TEST_PIN) == 0x9000  # unlocked elsewhere
        run = gateway.mtcd("once", "--dry-run", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "would-pair", run.stdout
        assert _forbidden(modem.commands) == [] and modem.radio != 1
        assert gateway.every_state_file() == before


def test_dry_run_leaves_a_modem_with_no_state_dir_untouched(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcd("once", "--dry-run")
        assert run.returncode == 1, run.stderr
        assert not gateway.state_dir.exists() or gateway.every_state_file() == {}
