"""`mtcctl doctor` as a technician runs it: the real CLI against the simulator
on a pty, with and without the service; read-only whatever the SIM's state."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from simfixtures import TEST_PIN, TEST_PUK, make_card, sim_modem
from test_service import service

PERSONALITIES = ("generic", "quectel", "huawei", "simcom")
# What doctor may never send: a PIN or PUK (any command carrying a secret
# is recorded with <redacted>), a PIN change or lock change, a radio change,
# a PDP activation or a dial.
_FORBIDDEN = ("AT+CPIN=", "AT^CPIN=", "AT+CPWD", "AT+CFUN=", "AT+CGACT", "ATD", "AT+CGATT=", "AT+COPS=")


def forbidden(commands: list[str]) -> list[str]:
    return [c for c in commands
            if c.upper().startswith(_FORBIDDEN) or "<redacted>" in c
            or re.match(r'AT\+CLCK="?SC"?,[01]', c, re.I)]


def doctor(gateway, *args: str):
    run = gateway.mtcctl("doctor", *args)
    assert "Traceback" not in run.stderr
    return run


def doctor_json(gateway) -> tuple[int, dict]:
    run = doctor(gateway, "--json")
    return run.returncode, json.loads(run.stdout)


def problem_codes(report: dict) -> list[str]:
    return [p["code"] for p in report["problems"]]


def card_for(state: str):
    return make_card(**{"puk": {"pin_attempts": 0}, "one-left": {"pin_attempts": 1},
                        "pin-disabled": {"pin_enabled": False}}.get(state, {}))


# Each SIM state: what doctor must conclude (exit, problem codes).
# The simulator powers up with the radio on (CFUN=1), as real modems do.
STATES = {
    "paired": (0, []),
    "unknown": (1, ["unknown-sim", "radio-on-unpaired"]),
    "puk": (1, ["sim-puk", "radio-on-unpaired"]),
    "one-left": (1, ["retry-guard", "radio-on-unpaired"]),
    "pin-disabled": (1, ["unknown-sim", "radio-on-unpaired"]),
}
# The counter each personality reads once +CPINR is missing.
VENDOR_COUNTER = {"generic": "+CSIM VERIFY", "quectel": "+QPINC", "huawei": "^CPIN", "simcom": "+CSIM VERIFY"}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("vendor", PERSONALITIES)
def test_each_personality_and_sim_state_read_only(gateway, vendor, state):
    card = card_for(state)
    with sim_modem(card, vendor=vendor, has_cpinr=False) as (modem, port):
        gateway.configure(port)
        if state in ("paired", "one-left"):
            gateway.store_pin(str(card.iccid))
        if state == "paired":
            assert gateway.mtcd("once").returncode == 0
        before = (card.pin_attempts, card.puk_attempts, card.pin_enabled, card.lock, modem.radio, modem.pdp_active)
        seen, files = len(modem.commands), gateway.every_state_file()
        code, report = doctor_json(gateway)
        sent = modem.commands[seen:]
        assert (code, problem_codes(report)) == STATES[state], report
        assert gateway.every_state_file() == files  # keystore and journal untouched
        assert TEST_PIN not in json.dumps(report) and TEST_PUK not in json.dumps(report)
        assert forbidden(sent) == [], sent
        after = (card.pin_attempts, card.puk_attempts, card.pin_enabled, card.lock, modem.radio, modem.pdp_active)
        assert after == before
        m = report["modem"]
        assert m["reachable"] and m["via"] == "direct"
        assert m["dialect"] == vendor and (vendor == "generic" or f'contains "{vendor}"' in m["dialect_reason"])
        assert m["iccid"] == str(card.iccid) and m["imei"] and m["manufacturer"] and m["model"] and m["firmware"]
        if state != "paired":  # unlocked with the PIN verified, a card gives no VERIFY count
            assert m["pin_attempts"] == card.pin_attempts
            assert m["pin_attempts_source"] == VENDOR_COUNTER[vendor]
        assert m["puk_attempts"] == card.puk_attempts
        assert m["pin_enabled"] is card.pin_enabled


def test_paired_sim_human_output(gateway):
    card = make_card()
    with sim_modem(card, vendor="quectel") as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
        run = doctor(gateway)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "None" not in run.stdout
    assert lines[-1].split() == ["problems:", "none"]
    values = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines}
    assert values["SIM state"] == "READY" and values["ICCID"] == str(card.iccid)
    assert values["keystore entry"] == "stored" and values["manufacturer"] == "Quectel"
    assert values["last decision"].startswith("paired at ")
    column = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in lines}
    assert len(column) == 1, lines  # aligned


def test_unknown_sim_advice_is_a_command_that_works(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        run = doctor(gateway)
        assert run.returncode == 1
        advice = [line for line in run.stdout.splitlines() if str(card.iccid) in line and "->" in line]
        assert len(advice) == 1 and f"`mtcctl pin set {card.iccid}`" in advice[0]
        # Run what it says; the SIM pairs and doctor finds nothing more.
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
        code, report = doctor_json(gateway)
    assert (code, report["problems"]) == (0, [])
    assert report["keystore"]["entry"]["state"] == "active"


def test_puk_advice_is_a_command_that_works(gateway):
    card = make_card(pin_attempts=0)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        code, report = doctor_json(gateway)
        assert code == 1 and report["problems"][0]["next"].startswith("`mtcctl sim unblock`")
        unblock = gateway.mtcctl("sim", "unblock", stdin=f"{TEST_PUK}\n13572468\n")
        assert unblock.returncode == 0, unblock.stderr
        code, report = doctor_json(gateway)
    assert "sim-puk" not in problem_codes(report)
    assert report["modem"]["sim_state"] != "SIM PUK"


def test_one_attempt_left_is_never_spent(gateway):
    card = make_card(pin_attempts=1)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = doctor(gateway)
        assert run.returncode == 1
        assert "1 PIN attempt left, below the guard" in run.stdout
        assert card.pin_attempts == 1 and forbidden(modem.commands) == []
        # What doctor advises for the radio works in this state: the refusal
        # switches it off, and still nothing is presented.
        assert "`mtcd once`" in run.stdout
        assert gateway.mtcd("once").returncode == 1
        code, report = doctor_json(gateway)
        assert problem_codes(report) == ["retry-guard"] and modem.radio != 1
        assert card.pin_attempts == 1 and not [c for c in modem.commands if c.upper().startswith("AT+CPIN=")]


def test_a_fact_the_modem_does_not_give_is_unreadable_and_the_rest_is_printed(gateway):
    card = make_card()
    with sim_modem(card, has_cpinr=False, has_csim=False) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = doctor(gateway)
        code, report = doctor_json(gateway)
    assert run.returncode == code == 1
    assert re.search(r"PIN attempts left: +unreadable \(", run.stdout)
    assert report["modem"]["pin_attempts"] is None and "pin_attempts" in report["modem"]["unreadable"]
    assert problem_codes(report) == ["attempts-unreadable", "radio-on-unpaired"]
    assert report["modem"]["iccid"] == str(card.iccid) and report["modem"]["radio"] == 1
    assert "None" not in run.stdout


def test_through_the_running_service(gateway, notify_socket):
    card = make_card()
    with sim_modem(card, vendor="huawei") as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket) as proc:
            notify_socket.wait_for("READY", "1")
            seen = len(modem.commands)
            code, report = doctor_json(gateway)
            sent = modem.commands[seen:]
            human = doctor(gateway)
            status = json.loads(gateway.mtcctl("status", "--json").stdout)
    assert code == 0, report
    assert report["service"]["running"] and report["service"]["pid"] == proc.pid
    assert report["service"]["state"] == "paired"
    assert report["modem"]["via"] == "service" and report["modem"]["dialect"] == "huawei"
    assert report["modem"]["sim_state"] == "READY" and report["modem"]["radio"] == 1
    assert [h["pid"] for h in report["port"]["holders"] if not h.get("pty_master")] == [proc.pid]
    assert "AT+CGMR" in sent and forbidden(sent) == []
    assert status["service"]["state"] == "paired" and status["service"]["link"] == "up"
    assert f"(pid {proc.pid}, the service)" in human.stdout and "through the service" in human.stdout


def test_service_without_its_modem(gateway, notify_socket):
    gateway.configure(str(gateway.root / "ttyGONE"))
    with service(gateway, notify_socket):
        notify_socket.wait_for("READY", "1")
        code, report = doctor_json(gateway)
    assert code == 69
    assert report["service"]["running"] and report["modem"]["via"] == "service"
    assert "not connected" in report["modem"]["error"]


def test_no_modem_is_69_with_the_local_facts(gateway):
    gateway.configure(str(gateway.root / "ttyUSB9"))
    assert doctor(gateway).returncode == 69
    assert not gateway.state_dir.exists()  # read-only: not even the state directory is created
    gateway.store_pin("8949020000000000014")
    run = doctor(gateway)
    code, report = doctor_json(gateway)
    assert run.returncode == code == 69
    assert report["port"]["exists"] is False and report["keystore"]["stored_pins"] == 1
    assert report["service"]["running"] is False and report["modem"]["reachable"] is False
    assert problem_codes(report) == ["port-missing", "modem-unreachable"]
    assert "ttyUSB9 (missing)" in run.stdout and "sealer:" in run.stdout and "None" not in run.stdout
    assert set(report) == {"ok", "error", "message", "exit",
                           "config", "port", "service", "modem", "keystore", "last_decision", "problems"}
    assert report["ok"] is False and report["error"] == "modem-unavailable" and "ttyUSB9" in report["message"]


def test_a_udev_symlink_is_followed(gateway):
    link = gateway.root / "ttyMODEM"
    with sim_modem(make_card(), link=link) as (modem, port):
        gateway.configure(str(link))
        code, report = doctor_json(gateway)
    assert report["port"]["path"] == str(link)
    assert report["port"]["target"] == os.path.realpath(port)


def test_port_held_by_modemmanager_is_named_with_the_udev_rule(gateway, tmp_path):
    # A process whose name is ModemManager (its executable's file name)
    # holding the port open, as ModemManager does when nothing stops it.
    fake = tmp_path / "ModemManager"
    fake.symlink_to(os.path.realpath(sys.executable))
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        holder = subprocess.Popen([str(fake), "-c", f"import sys,time; f=open({port!r},'rb',buffering=0); "
                                   "print('open', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "open"
            run = doctor(gateway)
            code, report = doctor_json(gateway)
        finally:
            holder.kill()
            holder.wait()
    assert code == run.returncode == 1
    assert "port-held-by-modemmanager" in problem_codes(report)
    assert report["port"]["modemmanager_running"] is True
    assert any(h["pid"] == holder.pid and h["name"] == "ModemManager" for h in report["port"]["holders"])
    assert "ID_MM_DEVICE_IGNORE" in run.stdout and f"ModemManager (pid {holder.pid}" in run.stdout


def test_help_and_completion_name_doctor(gateway):
    from pathlib import Path

    gateway.configure("/dev/null")
    assert "doctor" in gateway.mtcctl("--help").stdout
    root = Path(__file__).resolve().parent.parent
    assert "doctor" in (root / "debian" / "completion" / "mtcd").read_text()
    assert "doctor" in (root / "debian" / "man" / "mtcctl.8").read_text()
