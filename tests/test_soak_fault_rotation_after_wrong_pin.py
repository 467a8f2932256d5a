"""Soak seed 1201, service cycle 1119, replayed deterministically.

A person stored a wrong PIN for the paired SIM (`mtcctl pin set`, the card
unlocked so nothing checked it); a rotation then sent AT+CPWD with that PIN
as the old one, and a power cut killed it with the answer lost (the card
refused it: one attempt).  The next pairing read the counter, latched the
wrong PIN, and then presented the rotation's pending PIN: a PIN the card
cannot hold, since it refused the change that would have set it.  Second
attempt, 3 -> 1, and the gateway below its own guard."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading

from conftest import pin_presentations
from simfixtures import TEST_PIN, make_card, sim_modem, wait_until
from test_soak_faults import service

WRONG = "86428642"


def _rotation_killed_at_its_cpwd(gateway, modem, *others: subprocess.Popen) -> None:
    """A power cut the moment `mtcctl pin rotate`'s AT+CPWD reaches the card
    (which acts on it, its answer lost): that process and `others` (the
    service, which runs the rotation when it is up) die with SIGKILL and
    the modem loses power."""
    modem.fail_after("AT+CPWD", "drop")
    sent = threading.Event()
    handle = modem.handle

    def watch(line: str) -> list[str]:
        reply = handle(line)
        if line.strip().upper().startswith("AT+CPWD"):
            sent.set()
        return reply

    modem.handle = watch
    rotate = subprocess.Popen(
        [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(gateway.config), "pin", "rotate"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gateway.env)
    try:
        assert sent.wait(30), "the rotation never sent AT+CPWD"
    finally:
        for proc in (rotate, *others):
            proc.send_signal(signal.SIGKILL)
        for proc in (rotate, *others):
            proc.communicate(timeout=30)
        modem.handle = handle
    modem.power_loss()


def test_a_rotation_refused_in_a_power_cut_leaves_its_new_pin_unpresented(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once", "--json").last_json["state"] == "paired"
        gateway.store_pin(str(card.iccid), WRONG)  # unchecked: the card is unlocked

        _rotation_killed_at_its_cpwd(gateway, modem)
        assert card.pin == TEST_PIN and card.pin_attempts == 2  # the card refused the old PIN
        entry = gateway.keystore().get(card.iccid)
        assert entry.attempt == "current" and entry.attempt_change and entry.pending_pin is not None

        before = len(pin_presentations(modem.commands))
        run = gateway.mtcd("once", "--json")
        # The counter settles the lost AT+CPWD as refused: the wrong PIN is
        # latched and the change's new PIN is void, so nothing is presented.
        assert run.last_json["state"] == "refused" and run.last_json["reason"] == "pin-rejected", run.stdout
        assert f"mtcctl pin set {card.iccid}" in run.last_json["message"]
        assert pin_presentations(modem.commands)[before:] == []
        assert card.pin_attempts == 2 and modem.radio != 1
        entry = gateway.keystore().get(card.iccid)
        assert entry.rejected and entry.pending_pin is None and entry.attempt is None

        # The way out the refusal names works, without going below the guard.
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once", "--json")
        assert run.last_json["state"] == "paired", run.stdout + run.stderr
        assert len(pin_presentations(modem.commands)[before:]) == 1 and card.pin_attempts == 3


def _start_service(gateway) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gateway.env)


def test_the_service_killed_mid_rotation_settles_it_and_pairs_once_the_right_pin_is_stored(gateway):
    """The soak's own steps: `mtcd run` up, the rotation runs in it and the
    power cut kills it; a new `mtcd run` settles the lost change, then the
    person stores the card's PIN (`mtcctl pin set`) and it pairs by itself."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, modem="timeout = 3\npin_timeout = 4\nsim_ready_timeout = 3",
                          service="check_interval = 0.5\nbackoff_max = 2")
        gateway.store_pin(str(card.iccid))
        first = _start_service(gateway)
        try:
            wait_until(lambda: card.verified and modem.radio == 1, 20, "paired")
            gateway.store_pin(str(card.iccid), WRONG)
            before = len(pin_presentations(modem.commands))
            _rotation_killed_at_its_cpwd(gateway, modem, first)
        finally:
            if first.poll() is None:
                first.kill()
                first.communicate()
        assert card.pin_attempts == 2 and gateway.keystore().get(card.iccid).attempt_change
        with service(gateway):
            wait_until(lambda: gateway.keystore().get(card.iccid).rejected, 20, "the lost change settled")
            entry = gateway.keystore().get(card.iccid)
            assert entry.pending_pin is None and entry.attempt is None
            assert pin_presentations(modem.commands)[before:] == [] and card.pin_attempts == 2
            gateway.store_pin(str(card.iccid))
            wait_until(lambda: card.verified and modem.radio == 1, 20, "paired again")
        assert len(pin_presentations(modem.commands)[before:]) == 1
        assert card.pin_attempts == 3


def test_a_person_try_while_the_service_backs_off_says_so_and_works_once_it_is_back(gateway):
    """Why the soak's person step did not pair the card: its own `mtcctl
    repair`, sent before the restarted service listened, opened the modem
    itself, so the service lost the port and was backing off when `mtcctl
    pin try --below-guard --last-attempt` came: exit 69, nothing presented,
    and the harness never tried again.  The command said what was wrong
    and works once the service has the modem back (tests/soak.py now waits
    for the service and tries again on 69, as a person would)."""
    card = make_card(pin_attempts=1)
    with sim_modem(card) as (modem, port):
        gateway.configure(port, modem="timeout = 3\npin_timeout = 4\nsim_ready_timeout = 3",
                          service="check_interval = 0.5\nbackoff_max = 2")
        gateway.store_pin(str(card.iccid))
        holder = os.open(port, os.O_RDWR | os.O_NOCTTY)
        try:
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another process has the port
            with service(gateway):
                wait_until(lambda: gateway.control_socket.exists(), 20, "the service listening")
                person = ("pin", "try", "--below-guard", "--yes", "--last-attempt")
                early = gateway.mtcctl(*person, timeout=60)
                assert early.returncode == 69, early.stdout + early.stderr
                assert "the modem is not connected" in early.stderr and len(early.stderr.strip().splitlines()) == 1
                assert pin_presentations(modem.commands) == [] and card.pin_attempts == 1
                os.close(holder)
                holder = None
                wait_until(lambda: gateway.mtcctl("status").returncode == 0 and any(
                    c.startswith("AT+CPINR") for c in modem.commands), 20, "the service back on the modem")
                later = gateway.mtcctl(*person, timeout=60)
                assert later.returncode == 0, later.stdout + later.stderr
                wait_until(lambda: card.verified and modem.radio == 1, 20, "paired")
        finally:
            if holder is not None:
                os.close(holder)
        assert len(pin_presentations(modem.commands)) == 1 and card.pin_attempts == 3


# -- the keystore's side: the change marker, sealed like the rest ------------

def test_the_change_marker_survives_a_restart_and_only_a_refused_change_voids_its_pending_pin(tmp_path):
    from mtcd.identity import Iccid
    from mtcd.keystore import CURRENT, PENDING, ROTATION, STAGED, Keystore
    from mtcd.secret import Pin

    state = tmp_path / "state"
    iccid = Iccid("8949020000000000014")
    new = Pin("24682468")
    ks = Keystore.open(state)
    ks.set_pin(iccid, Pin(WRONG))
    ks.stage_pending(iccid, new, ROTATION)
    ks.begin_attempt(iccid, attempts_before=3, which=CURRENT, change=True)
    entry = Keystore.open(state).get(iccid)  # as the next boot reads it
    assert entry.attempt == CURRENT and entry.attempt_change and entry.pending_pin == new

    # A presentation that follows replaces the marker: no longer a change.
    ks.begin_attempt(iccid, attempts_before=3, which=CURRENT)
    assert not Keystore.open(state).get(iccid).attempt_change
    ks.begin_attempt(iccid, attempts_before=3, which=CURRENT, change=True)

    # Settled as refused by the counter: the old PIN latched, the new one gone.
    ks.record_rejected(iccid, CURRENT)
    entry = Keystore.open(state).get(iccid)
    assert entry.rejected and entry.pending_pin is None and not entry.attempt_change and entry.attempt is None

    # A refused AT+CPIN= of the current PIN (no change) keeps the rotation's
    # pending PIN: the card may hold it (the change went through before).
    ks.set_pin(iccid, Pin(WRONG))
    ks.stage_pending(iccid, new, ROTATION)
    ks.begin_attempt(iccid, attempts_before=3, which=CURRENT)
    ks.record_rejected(iccid, CURRENT)
    entry = Keystore.open(state).get(iccid)
    assert entry.rejected and entry.pending_pin == new and not entry.pending_rejected

    # An operator's staged PIN is never dropped by it either.
    ks.set_pin(iccid, Pin(WRONG))
    ks.stage_pending(iccid, new, STAGED)
    ks.begin_attempt(iccid, attempts_before=3, which=CURRENT, change=True)
    ks.record_rejected(iccid, CURRENT)
    assert Keystore.open(state).get(iccid).pending_pin == new
    ks.begin_attempt(iccid, attempts_before=2, which=PENDING)
