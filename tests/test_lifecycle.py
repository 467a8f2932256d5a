"""The PIN lifecycle end to end: rotation with fault injection at every
step, adoption, over-the-air staging, compromise response and a person's
unblocking — through the real commands against the simulator.

After every interruption the next `mtcd once` must pair, the card must never
fall below min_retries attempts, and the keystore must hold the PIN the card
holds (guarantee 5)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import network_commands, pin_presentations, puk_commands
from simfixtures import TEST_PIN, TEST_PUK, make_card, sim_modem

from mtcd.config import load_config
from mtcd.errors import StateError
from mtcd.keystore import Keystore
from mtcd.service import Gateway

TRANSPORT_PIN = "1234"


def paired_after_power_loss(gateway, modem, card):
    """The next boot pairs, without ever going below the guard, and the
    keystore's current PIN is the card's."""
    modem.power_loss()
    run = gateway.mtcd("once", "--json")
    assert run.returncode == 0, run.stderr + run.stdout
    assert run.last_json["state"] == "paired"
    assert card.pin_attempts == 3
    entry = gateway.keystore().get(card.iccid)
    assert entry.pin.reveal() == card.pin
    assert entry.pending_pin is None
    return run


def kill_when_sent(gateway, modem, argv, prefix, stdin=""):
    """Run an mtcctl command and cut the power (SIGKILL) the moment the modem
    has received the command starting with `prefix`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(gateway.config), *argv],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=gateway.env, text=True,
    )
    proc.stdin.write(stdin)
    proc.stdin.close()
    deadline = time.monotonic() + 30
    while not any(c.startswith(prefix) for c in modem.commands) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(c.startswith(prefix) for c in modem.commands), "the command never reached the modem"


def test_rotation_changes_the_pin_and_reports_nothing_secret(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcctl("pin", "rotate", "--json")
        assert run.returncode == 0, run.stderr
        result = json.loads(run.stdout)
        assert result == {"ok": True, "iccid": str(card.iccid), "outcome": "done",
                          "detail": f"the PIN of {card.iccid} was changed"}
        assert card.pin != TEST_PIN and len(card.pin) == 8
        assert card.pin not in run.stdout + run.stderr
        assert modem.radio == 4 and network_commands(modem.commands) == []
        events = [e["event"] for e in gateway.history()]
        assert events[-2:] == ["pin-rotation-started", "pin-rotated"]
        for data in gateway.every_state_file().values():
            assert card.pin.encode() not in data
        paired_after_power_loss(gateway, modem, card)


@pytest.mark.parametrize("fault, card_has", [
    ("before", "old"),  # power cut before the card applied the change
    ("drop", "new"),    # the card applied it, the OK never came back
])
def test_power_cut_during_rotation(gateway, fault, card_has):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CPWD", fault)
        kill_when_sent(gateway, modem, ["pin", "rotate"], "AT+CPWD")
        entry = gateway.keystore().get(card.iccid)
        assert entry.pending_pin is not None, "the new PIN was sealed before the card heard of it"
        expected = TEST_PIN if card_has == "old" else entry.pending_pin.reveal()
        assert card.pin == expected
        before = len(pin_presentations(modem.commands))
        paired_after_power_loss(gateway, modem, card)
        # old card: current accepted at once; new card: current rejected, then pending.
        assert len(pin_presentations(modem.commands)) - before == (1 if card_has == "old" else 2)


class PowerCut(BaseException):
    """The gateway loses power at this exact point of the code."""


def _rotate_in_process(gateway, monkeypatch, inject):
    """Pair in this process, then inject the fault and rotate."""
    monkeypatch.setenv("SYSTEMD_CREDENTIAL_SECRET", gateway.env["SYSTEMD_CREDENTIAL_SECRET"])
    with Gateway(load_config(gateway.config)) as g:
        g.start()
        assert g.pair().paired
        inject()
        g.lifecycle().rotate("requested")


def test_power_cut_after_ok_before_promote(gateway, monkeypatch):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))

        def cut(self, iccid, imei=None, pin=None):
            raise PowerCut()

        with pytest.raises(PowerCut):
            _rotate_in_process(gateway, monkeypatch, lambda: monkeypatch.setattr(Keystore, "promote_unproven", cut))
        monkeypatch.undo()
        assert card.pin != TEST_PIN  # the card has the new one, the store has it as pending
        paired_after_power_loss(gateway, modem, card)


# 1: sealing the pending PIN, 2: the attempt marker for AT+CPWD, 3: promoting it
@pytest.mark.parametrize("failing_write", [1, 2, 3])
def test_power_cut_during_the_keystore_write(gateway, monkeypatch, failing_write):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        real_replace = os.replace
        writes = []

        def replace(src, dst):
            if str(dst).endswith("keystore.json"):
                writes.append(dst)
                if len(writes) == failing_write:
                    os.unlink(src)  # what a power cut leaves: the old file, no new one
                    raise OSError(5, "Input/output error")
            return real_replace(src, dst)

        with pytest.raises(StateError):
            _rotate_in_process(gateway, monkeypatch, lambda: monkeypatch.setattr(os, "replace", replace))
        monkeypatch.undo()
        cpwd = [c for c in modem.commands if c.startswith("AT+CPWD")]
        if failing_write < 3:
            # never sent without the new PIN sealed and the attempt marked
            assert cpwd == [] and card.pin == TEST_PIN
        else:
            assert len(cpwd) == 1 and card.pin != TEST_PIN
        paired_after_power_loss(gateway, modem, card)


def test_rotation_needs_a_guard_that_leaves_room_for_the_other_pin(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, policy="min_retries = 3")
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcctl("pin", "rotate")
        assert run.returncode == 1
        assert "min_retries = 2" in run.stderr
        assert card.pin == TEST_PIN


# --- adoption --------------------------------------------------------------------

@pytest.mark.parametrize("pin_enabled", [True, False])
def test_adopting_a_sim_replaces_its_transport_pin(gateway, pin_enabled):
    card = make_card(pin=TRANSPORT_PIN, pin_enabled=pin_enabled)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcctl("pair", "--json", stdin=TRANSPORT_PIN + "\n")
        assert run.returncode == 0, run.stderr
        assert json.loads(run.stdout)["outcome"] == "done"
        assert card.pin_enabled and card.pin != TRANSPORT_PIN and len(card.pin) == 8
        entry = gateway.keystore().get(card.iccid)
        assert entry.pin.reveal() == card.pin and not entry.transport
        assert "sim-adopted" in [e["event"] for e in gateway.history()]
        assert card.pin not in run.stdout + run.stderr
        paired_after_power_loss(gateway, modem, card)


def test_adopting_with_a_wrong_transport_pin_costs_one_attempt_once(gateway):
    card = make_card(pin=TRANSPORT_PIN)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcctl("pair", stdin="9999\n")
        assert run.returncode == 1 and "pin-rejected" in run.stderr
        assert card.pin_attempts == 2
        # A failed adoption leaves no entry behind: nothing to present.
        assert gateway.keystore().get(card.iccid) is None
        again = gateway.mtcd("once", "--json")
        assert again.last_json["reason"] == "unknown-sim"
        assert card.pin_attempts == 2


@pytest.mark.parametrize("rotate_on_adopt", [True, False])
def test_daemon_rotates_a_transport_pin_on_first_pairing(gateway, rotate_on_adopt):
    card = make_card(pin=TRANSPORT_PIN)
    with sim_modem(card) as (modem, port):
        gateway.configure(port, policy=f"rotate_on_adopt = {str(rotate_on_adopt).lower()}")
        run = gateway.mtcctl("pin", "set", str(card.iccid), "--transport", stdin=TRANSPORT_PIN + "\n")
        assert run.returncode == 0
        once = gateway.mtcd("once", "--json")
        assert once.returncode == 0 and once.last_json["link"] == "up"
        assert (card.pin != TRANSPORT_PIN) == rotate_on_adopt
        assert gateway.keystore().get(card.iccid).pin.reveal() == card.pin


def test_scheduled_rotation(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, policy='rotate_every = "1s"')
        gateway.store_pin(str(card.iccid))
        time.sleep(1.1)
        assert gateway.mtcd("once").returncode == 0
        assert card.pin != TEST_PIN
        rotations = [e for e in gateway.history() if e["event"] == "pin-rotated"]
        assert [e["reason"] for e in rotations] == ["scheduled"]
        paired_after_power_loss(gateway, modem, card)


# --- over-the-air change staged by device management ------------------------------

def test_staged_pin_before_and_after_the_over_the_air_change(gateway):
    card = make_card()
    new_pin = "66554433"
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcctl("pin", "stage", str(card.iccid), "--json", stdin=new_pin + "\n")
        assert run.returncode == 0 and json.loads(run.stdout)["outcome"] == "staged"
        # Device first, SIM second: until the SIM changes, the old PIN still pairs
        # and the staged one is kept.
        assert gateway.mtcd("once").returncode == 0
        assert gateway.keystore().get(card.iccid).pending_pin.reveal() == new_pin
        # The operator's OTA command reaches the card.
        card.pin = new_pin
        paired_after_power_loss(gateway, modem, card)
        listed = json.loads(gateway.mtcctl("pin", "list", "--json").stdout)["pins"]
        assert listed[0]["pending"] is None


def test_staging_needs_a_stored_pin(gateway):
    card = make_card()
    gateway.configure("/dev/null")
    run = gateway.mtcctl("pin", "stage", str(card.iccid), stdin="66554433\n")
    assert run.returncode == 1 and "store its current PIN first" in run.stderr


# --- compromise --------------------------------------------------------------------

def test_compromise_rotates_the_inserted_sim_now_and_the_others_on_pairing(gateway):
    inserted, other = make_card(serial_number=1), make_card(serial_number=2)
    with sim_modem(inserted) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(inserted.iccid))
        gateway.store_pin(str(other.iccid))
        run = gateway.mtcctl("compromise", "--json")
        assert run.returncode == 0, run.stderr
        assert inserted.pin != TEST_PIN
        states = {e["iccid"]: e["state"] for e in json.loads(gateway.mtcctl("pin", "list", "--json").stdout)["pins"]}
        assert states == {str(inserted.iccid): "active", str(other.iccid): "compromised"}
        modem.remove_card()
        modem.insert_card(other)
        assert gateway.mtcd("once").returncode == 0
        assert other.pin != TEST_PIN
        states = {e["iccid"]: e["state"] for e in json.loads(gateway.mtcctl("pin", "list", "--json").stdout)["pins"]}
        assert set(states.values()) == {"active"}


def test_compromise_without_the_modem_still_marks_every_pin(gateway):
    card = make_card()
    gateway.configure(str(gateway.root / "ttyUSB9"))
    gateway.store_pin(str(card.iccid))
    run = gateway.mtcctl("compromise")
    assert run.returncode == 69
    assert "marked compromised" in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert json.loads(gateway.mtcctl("pin", "list", "--json").stdout)["pins"][0]["state"] == "compromised"


# --- unblocking, only by a person ---------------------------------------------------

def test_unblock_with_the_puk(gateway):
    card = make_card(pin_attempts=0)
    new_pin = "24681357"
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once", "--json").last_json["reason"] == "sim-blocked"
        assert puk_commands(modem.commands) == []  # the service never sends a PUK
        run = gateway.mtcctl("sim", "unblock", stdin=f"{TEST_PUK}\n{new_pin}\n")
        assert run.returncode == 0, run.stderr
        assert len(puk_commands(modem.commands)) == 1
        assert card.pin == new_pin and card.pin_attempts == 3
        for secret in (TEST_PUK, new_pin):
            assert secret not in run.stdout + run.stderr
        paired_after_power_loss(gateway, modem, card)


def test_wrong_puk_and_the_last_puk_attempt(gateway):
    card = make_card(pin_attempts=0, puk_attempts=2)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        wrong = gateway.mtcctl("sim", "unblock", stdin="00000000\n24681357\n")
        assert wrong.returncode == 1 and "1 PUK attempts left" in wrong.stderr
        assert gateway.keystore().get(card.iccid).pin.reveal() == TEST_PIN  # nothing half-stored
        last = gateway.mtcctl("sim", "unblock", stdin=f"{TEST_PUK}\n24681357\n")
        assert last.returncode == 1 and "--allow-last-attempt" in last.stderr
        assert card.puk_attempts == 1
        ok = gateway.mtcctl("sim", "unblock", "--allow-last-attempt", stdin=f"{TEST_PUK}\n24681357\n")
        assert ok.returncode == 0 and card.pin == "24681357"


def test_unblock_refuses_a_sim_that_is_not_blocked(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcctl("sim", "unblock", stdin=f"{TEST_PUK}\n24681357\n")
        assert run.returncode == 1 and "not blocked" in run.stderr
        assert puk_commands(modem.commands) == []


def test_forget(gateway):
    card = make_card()
    gateway.configure("/dev/null")
    gateway.store_pin(str(card.iccid))
    assert "forgot" in gateway.mtcctl("pin", "forget", str(card.iccid)).stdout
    assert json.loads(gateway.mtcctl("pin", "list", "--json").stdout)["pins"] == []
    assert "pin-forgotten" in [e["event"] for e in gateway.history()]


# --- interruptions of adoption and staging ------------------------------------------

@pytest.mark.parametrize("fault", ["before", "drop"])
def test_power_cut_during_adoption(gateway, fault):
    card = make_card(pin=TRANSPORT_PIN)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        modem.fail_after("AT+CPWD", fault)
        kill_when_sent(gateway, modem, ["pair"], "AT+CPWD", stdin=TRANSPORT_PIN + "\n")
        assert (card.pin == TRANSPORT_PIN) == (fault == "before")
        paired_after_power_loss(gateway, modem, card)


def test_power_cut_while_staging_keeps_the_old_pin_working(gateway, monkeypatch):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        monkeypatch.setenv("SYSTEMD_CREDENTIAL_SECRET", gateway.env["SYSTEMD_CREDENTIAL_SECRET"])
        from mtcd.keystore import STAGED
        from mtcd.secret import Pin

        ks = gateway.keystore()
        real_replace = os.replace

        def cut(src, dst):
            os.unlink(src)
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(os, "replace", cut)
        with pytest.raises(StateError):
            ks.stage_pending(card.iccid, Pin("66554433"), STAGED)
        monkeypatch.setattr(os, "replace", real_replace)
        assert gateway.keystore().get(card.iccid).pending_pin is None  # nothing half-written
        assert [p.name for p in gateway.state_dir.iterdir() if ".tmp" in p.name] == []
        paired_after_power_loss(gateway, modem, card)


# --- a change is never made over an unsettled one (guarantee 5) -----------------------

def test_a_second_rotation_waits_for_the_first_to_settle(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CPWD", "drop")  # the card takes new1, the answer is lost
        kill_when_sent(gateway, modem, ["pin", "rotate"], "AT+CPWD")
        new1 = card.pin
        assert new1 != TEST_PIN
        # The SIM stays unlocked (no power cut): a second change must not be
        # made against a PIN the card no longer has.
        again = gateway.mtcctl("pin", "rotate")
        assert again.returncode == 1 and "not settled" in again.stderr
        assert card.pin == new1 and card.pin_attempts == 3
        assert len([c for c in modem.commands if c.startswith("AT+CPWD")]) == 1
        paired_after_power_loss(gateway, modem, card)


def test_due_rotation_waits_while_a_pin_is_pending(gateway):
    card = make_card(pin=TRANSPORT_PIN)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        assert gateway.mtcctl("pin", "set", str(card.iccid), "--transport", stdin=TRANSPORT_PIN + "\n").returncode == 0
        modem.fail_after("AT+CPWD", "drop")
        proc_run = gateway.mtcd("once", timeout=60)  # pairs, rotation's answer lost
        assert proc_run.returncode == 0
        new1 = card.pin
        assert new1 != TRANSPORT_PIN
        # Still unlocked, still a transport entry: the next run must not rotate again.
        assert gateway.mtcd("once").returncode == 0
        assert card.pin == new1
        assert len([c for c in modem.commands if c.startswith("AT+CPWD")]) == 1
        paired_after_power_loss(gateway, modem, card)


def test_adopting_an_adopted_sim_again_is_refused(gateway):
    card = make_card(pin=TRANSPORT_PIN)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        assert gateway.mtcctl("pair", stdin=TRANSPORT_PIN + "\n").returncode == 0
        unique = card.pin
        again = gateway.mtcctl("pair", stdin=TRANSPORT_PIN + "\n")
        assert again.returncode == 1 and "already paired" in again.stderr
        assert card.pin == unique and card.pin_attempts == 3
        assert gateway.keystore().get(card.iccid).pin.reveal() == unique


def test_staging_waits_for_an_unsettled_rotation(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CPWD", "drop")
        kill_when_sent(gateway, modem, ["pin", "rotate"], "AT+CPWD")
        run = gateway.mtcctl("pin", "stage", str(card.iccid), stdin="66554433\n")
        assert run.returncode == 1 and "not settled" in run.stderr
        assert gateway.keystore().get(card.iccid).pending_pin.reveal() == card.pin


def test_unblock_with_an_unknown_puk_count_needs_the_person_to_insist(gateway):
    card = make_card(pin_attempts=0)
    with sim_modem(card, has_cpinr=False, has_csim=False) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcctl("sim", "unblock", stdin=f"{TEST_PUK}\n24681357\n")
        assert run.returncode == 1 and "cannot be read" in run.stderr
        assert puk_commands(modem.commands) == []
        ok = gateway.mtcctl("sim", "unblock", "--allow-last-attempt", stdin=f"{TEST_PUK}\n24681357\n")
        assert ok.returncode == 0 and card.pin == "24681357"
