"""PIN changes, adoption and unblock through the real ModemManager
(Sim.ChangePin, Sim.EnablePin, Sim.SendPuk), with guarantee 5: a rotation
interrupted while ChangePin is in flight (mtcctl killed with SIGKILL, or the
modem's answer lost) never locks the gateway out; the next pairing finds the
PIN the card holds without presenting a rejected one twice.

Every PIN-bearing command that reaches the simulator is counted: each one
must be caused by one of mtcd's own calls (ModemManager sends none by itself).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import mmstack
from conftest import pin_presentations, puk_commands
from simfixtures import TEST_PIN, TEST_PUK, make_card
from mmstack import mm_rig, mm_shared  # noqa: F401  (the module's shared ModemManager)
from test_modemmanager import on_air

pytestmark = pytest.mark.skipif(mmstack.missing() is not None, reason=mmstack.missing() or "")


def pin_bearing(commands: list[str]) -> list[str]:
    """Every command that carries a PIN or PUK: AT+CPIN=, AT+CPWD=, and
    AT+CLCK= that locks or unlocks (mode 0/1: the PIN goes with it; mode 2
    is ModemManager's own query), and a CSIM VERIFY/CHANGE/DISABLE/ENABLE/
    UNBLOCK APDU with data (ModemManager's four queries carry none)."""
    out = []
    for c in commands:
        upper = c.upper()
        if upper.startswith(("AT+CPIN=", "AT+CPWD=")):
            out.append(c)
        elif upper.startswith("AT+CLCK=") and not upper.endswith(",2") and "=?" not in upper:
            out.append(c)
        elif upper.startswith("AT+CSIM=") and "<REDACTED>" in upper:
            out.append(c)
    return out


def cpwd(commands: list[str]) -> list[str]:
    return [c for c in commands if c.upper().startswith("AT+CPWD=")]


def power_cycle(r) -> None:
    """The modem loses power (the card forgets its verification) and comes
    back as a new device: ModemManager probes it again and finds it locked."""
    r.stack.withdraw(r.port)
    deadline = time.monotonic() + 30
    while r.stack.modems() and time.monotonic() < deadline:
        time.sleep(0.2)
    r.modem.power_loss()
    r.stack.announce(r.port)
    r.stack.wait_for_modem()


def entry(r, card):
    return r.gateway.keystore().get(card.iccid)


def test_modemmanager_pin_rotate_through_change_pin(mm_rig):
    card = make_card()
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    run = r.gateway.mtcctl("pin", "rotate", "--json", timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.last_json["outcome"] == "done"
    stored = entry(r, card)
    assert stored.pending_pin is None and stored.pin.reveal() != TEST_PIN
    assert card.pin == stored.pin.reveal()  # the card holds what the keystore holds
    # One SendPin to pair, one ChangePin: nothing else carried a PIN.
    assert len(pin_presentations(r.modem.commands)) == 1 and len(cpwd(r.modem.commands)) == 1
    assert len(pin_bearing(r.modem.commands)) == 2
    assert stored.pin.reveal() not in run.stdout + run.stderr
    # The next boot pairs with the new PIN, presented once.
    power_cycle(r)
    again = r.gateway.mtcd("once", "--json", timeout=180)
    assert again.returncode == 0 and again.last_json["state"] == "paired", again.stdout + again.stderr
    assert len(pin_presentations(r.modem.commands)) == 2 and card.pin_attempts == 3


def _interrupted_rotation_settles(r, card) -> None:
    """After a rotation whose answer never came: the card holds the new
    PIN (the simulator applied it), the keystore both.  The next pairing
    finds the one the card holds; nothing rejected is presented twice."""
    stored = entry(r, card)
    assert stored.pending_pin is not None and stored.pending_pin.reveal() == card.pin
    assert stored.pin.reveal() == TEST_PIN  # the old one is kept until settled
    power_cycle(r)
    before = len(pin_presentations(r.modem.commands))
    first = r.gateway.mtcd("once", "--json", timeout=180)
    assert first.returncode == 0 and first.last_json["state"] == "paired", first.stdout + first.stderr
    presented = len(pin_presentations(r.modem.commands)) - before
    assert 1 <= presented <= 2  # at most the old PIN (rejected, latched) and the new one
    assert card.pin_attempts == 3  # the accepted PIN reset the counter
    settled = entry(r, card)
    assert settled.pending_pin is None and settled.pin.reveal() == card.pin
    rejected = [e for e in r.gateway.history() if e.get("event") == "pin-attempt-rejected"]
    assert len(rejected) == presented - 1
    # And every boot after that: the settled PIN, once.
    power_cycle(r)
    before = len(pin_presentations(r.modem.commands))
    second = r.gateway.mtcd("once", "--json", timeout=180)
    assert second.returncode == 0 and second.last_json["state"] == "paired", second.stdout + second.stderr
    assert len(pin_presentations(r.modem.commands)) - before == 1
    assert puk_commands(r.modem.commands) == []


def test_modemmanager_rotation_with_the_answer_lost_never_locks_out(mm_rig):
    """The modem applies AT+CPWD but its answer is lost: ModemManager's
    ChangePin ends in a timeout, mtcd keeps both PINs."""
    card = make_card()
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    r.modem.fail_after("AT+CPWD", "drop")
    run = r.gateway.mtcctl("pin", "rotate", "--json", timeout=240)
    assert run.returncode == 75, run.stdout + run.stderr  # EX_TEMPFAIL: settled by the next pairing
    assert run.last_json["error"] == "change-lost" and run.last_json["outcome"] == "interrupted"
    assert len(cpwd(r.modem.commands)) == 1 and card.pin != TEST_PIN
    _interrupted_rotation_settles(r, card)
    # ModemManager sent nothing PIN-bearing of its own: SendPin x3, ChangePin x1.
    assert len(pin_bearing(r.modem.commands)) == len(pin_presentations(r.modem.commands)) + 1


def test_modemmanager_rotation_killed_while_change_pin_is_in_flight(mm_rig):
    """mtcctl is killed (SIGKILL) while ModemManager waits for the modem's
    answer to AT+CPWD: nothing of mtcctl's runs after the card took the new
    PIN, and the next pairing still finds it."""
    card = make_card()
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    r.modem.fail_after("AT+CPWD", "drop")  # ModemManager waits for an answer that never comes
    proc = subprocess.Popen([sys.executable, "-m", "mtcd.cli.ctl", "--config", str(r.gateway.config),
                             "pin", "rotate"], env=r.gateway.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not cpwd(r.modem.commands):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert card.pin != TEST_PIN  # the card changed its PIN; mtcctl never heard of it
    _interrupted_rotation_settles(r, card)


def test_modemmanager_pair_adopts_a_card_and_rotates_its_transport_pin(mm_rig):
    card = make_card()  # its PIN is the operator's transport PIN
    r = mm_rig(card)
    r.configure()
    run = r.gateway.mtcctl("pair", "--json", stdin=TEST_PIN + "\n", timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    stored = entry(r, card)
    assert not stored.transport and stored.pending_pin is None
    assert stored.pin.reveal() != TEST_PIN and card.pin == stored.pin.reveal()
    assert len(pin_presentations(r.modem.commands)) == 1 and len(cpwd(r.modem.commands)) == 1
    assert len(pin_bearing(r.modem.commands)) == 2
    assert TEST_PIN not in run.stdout + run.stderr
    power_cycle(r)
    again = r.gateway.mtcd("once", "--json", timeout=180)
    assert again.returncode == 0 and again.last_json["state"] == "paired", again.stdout + again.stderr


def test_modemmanager_pair_enables_a_disabled_pin_through_enable_pin(mm_rig):
    """A card whose PIN check is off: Sim.EnablePin (AT+CLCK="SC",1,...)
    switches it on, then ChangePin replaces the transport PIN."""
    card = make_card(pin_enabled=False)
    r = mm_rig(card)
    r.configure()
    run = r.gateway.mtcctl("pair", "--json", stdin=TEST_PIN + "\n", timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert card.pin_enabled and card.pin == entry(r, card).pin.reveal() != TEST_PIN
    locks = [c for c in pin_bearing(r.modem.commands) if c.upper().startswith("AT+CLCK=")]
    assert len(locks) == 1 and pin_presentations(r.modem.commands) == []
    assert len(pin_bearing(r.modem.commands)) == 2  # CLCK and CPWD, nothing else
    assert on_air(r.modem.commands) == []


def test_modemmanager_unblock_only_from_a_person_and_the_next_boot_pairs(mm_rig):
    card = make_card(pin_attempts=0)
    r = mm_rig(card)
    r.configure()
    refused = r.gateway.mtcd("once", "--json", timeout=120)
    assert refused.returncode == 1 and refused.last_json["reason"] == "sim-blocked"
    assert pin_bearing(r.modem.commands) == []
    run = r.gateway.mtcctl("sim", "unblock", "--json", stdin=f"{TEST_PUK}\n13572468\n", timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    assert len(puk_commands(r.modem.commands)) == 1 and len(pin_bearing(r.modem.commands)) == 1
    assert card.pin == "13572468" and card.pin_attempts == 3
    assert TEST_PUK not in run.stdout + run.stderr
    power_cycle(r)
    paired = r.gateway.mtcd("once", "--json", timeout=180)
    assert paired.returncode == 0 and paired.last_json["state"] == "paired", paired.stdout + paired.stderr
    assert len(puk_commands(r.modem.commands)) == 1 and len(pin_presentations(r.modem.commands)) == 2


def test_modemmanager_pin_rotate_through_the_running_service(mm_rig, tmp_path):
    """`mtcctl pin rotate` while `mtcd run` holds the session: the change
    runs in the service (ChangePin after its own SendPin), the link stays
    up, and the card and the keystore agree afterwards."""
    card = make_card()
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    with mmstack.mtcd_run(r.gateway, tmp_path / "notify.sock") as (proc, notify):
        notify.wait_for("READY", "1", timeout=120)
        run = r.gateway.mtcctl("pin", "rotate", "--json", timeout=180)
        status = r.gateway.mtcctl("status", "--json", timeout=60)
    err = proc.stderr_text
    assert run.returncode == 0 and run.last_json["outcome"] == "done", run.stdout + run.stderr
    assert status.last_json["service"]["state"] == "paired" and status.last_json["service"]["link"] == "up"
    assert "Traceback" not in err, err
    stored = entry(r, card)
    assert stored.pending_pin is None and card.pin == stored.pin.reveal() != TEST_PIN
    assert len(pin_presentations(r.modem.commands)) == 1 and len(cpwd(r.modem.commands)) == 1
    assert len(pin_bearing(r.modem.commands)) == 2
