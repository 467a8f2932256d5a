"""`mtcd run` against the simulator, for what an operator does around a
running service: storing a PIN (the service pairs without a restart),
asking it things while the modem is gone (answered at once, nothing run
later), clients that give up, idle connections, and what it leaves behind
for node_exporter when it stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import pin_presentations
from simfixtures import TEST_PIN, make_card, server_of, sim_modem, wait_until
from test_service import _metrics, service

WRONG_PIN = "11112222"
TRANSPORT_PIN = "1234"
PAIRS_WITHIN = 5.0


def _status(gateway) -> dict:
    run = gateway.mtcctl("status", "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def _refused_with_a_wrong_pin(gateway, notify_socket, modem, card) -> int:
    """The service has presented the wrong stored PIN once and latched it."""
    notify_socket.wait_for("STATUS", "refused: pin-rejected")
    assert card.pin_attempts == 2 and modem.radio != 1
    return len(pin_presentations(modem.commands))


def _drain(notify_socket, seconds: float) -> None:
    """Read what the service tells "systemd" for a while, as systemd would
    (a notification socket nobody reads fills up and blocks the sender)."""
    try:
        notify_socket.wait_until(lambda m: False, seconds, start=len(notify_socket.messages))
    except AssertionError:
        pass


# --- ITEM 7: a newly stored PIN is taken without a restart ----------------------------

@pytest.mark.parametrize("nudge", ["none", "sighup"])
def test_a_pin_stored_while_refused_is_used_at_once(gateway, notify_socket, nudge):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        with service(gateway, notify_socket) as proc:
            presented = _refused_with_a_wrong_pin(gateway, notify_socket, modem, card)
            time.sleep(2.5)  # several loop ticks: the latched PIN is not tried again
            assert len(pin_presentations(modem.commands)) == presented
            gateway.store_pin(str(card.iccid), TEST_PIN)
            if nudge == "sighup":
                proc.send_signal(signal.SIGHUP)
            took = wait_until(lambda: modem.pdp_active and card.verified, PAIRS_WITHIN, "paired without a restart")
            notify_socket.wait_for("STATUS", f"paired ICCID {card.iccid}, link up")
            assert proc.poll() is None
            # Exactly one more presentation: the new PIN, once.
            assert len(pin_presentations(modem.commands)) == presented + 1
            assert card.pin_attempts == 3
    print(f"paired {took:.1f} s after mtcctl pin set ({nudge})")


def test_a_sighup_storm_during_the_new_pairing_presents_once(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        with service(gateway, notify_socket) as proc:
            presented = _refused_with_a_wrong_pin(gateway, notify_socket, modem, card)
            modem.latency = 0.1  # the new pairing takes a while: the storm lands in it
            gateway.store_pin(str(card.iccid), TEST_PIN)
            for _ in range(30):
                proc.send_signal(signal.SIGHUP)
                _drain(notify_socket, 0.05)
            modem.latency = 0
            wait_until(lambda: modem.pdp_active, 15, "paired")
            _drain(notify_socket, 2)
            assert len(pin_presentations(modem.commands)) == presented + 1
            assert card.pin_attempts == 3 and modem.pdp_active


def test_sighup_storms_and_other_sims_never_free_a_latched_pin(gateway, notify_socket):
    card, other = make_card(serial_number=1), make_card(serial_number=2)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        with service(gateway, notify_socket) as proc:
            presented = _refused_with_a_wrong_pin(gateway, notify_socket, modem, card)
            for _ in range(20):
                proc.send_signal(signal.SIGHUP)
                _drain(notify_socket, 0.05)
            gateway.store_pin(str(other.iccid), TEST_PIN)  # a keystore change, not for this SIM
            _drain(notify_socket, 3)
            assert len(pin_presentations(modem.commands)) == presented
            assert card.pin_attempts == 2 and not modem.pdp_active and modem.radio != 1
            assert _status(gateway)["service"]["reason"] == "pin-rejected"


def test_a_pin_stored_for_an_unknown_sim_pairs_it(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        with service(gateway, notify_socket):
            notify_socket.wait_for("STATUS", "refused: unknown-sim")
            assert pin_presentations(modem.commands) == []
            gateway.store_pin(str(card.iccid), TEST_PIN)
            wait_until(lambda: modem.pdp_active, PAIRS_WITHIN, "paired after mtcctl pin set")


def test_storing_the_pin_of_the_paired_sim_again_keeps_the_link(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), TEST_PIN)
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            before = len(modem.commands)
            gateway.store_pin(str(card.iccid), TEST_PIN)
            time.sleep(2.5)
            assert modem.pdp_active
            assert not any(c.startswith(("AT+CFUN=4", "AT+CGACT=0")) for c in modem.commands[before:])


def test_forgetting_the_paired_sims_pin_closes_the_gate(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), TEST_PIN)
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            assert gateway.mtcctl("pin", "forget", str(card.iccid), "--yes").returncode == 0
            wait_until(lambda: not modem.pdp_active and modem.radio == 4, PAIRS_WITHIN, "gate closed")
            notify_socket.wait_for("STATUS", "refused: unknown-sim")


def test_pair_after_the_service_adopted_the_sim_itself_is_a_success(gateway, notify_socket):
    card = make_card(pin=TRANSPORT_PIN)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        with service(gateway, notify_socket):
            notify_socket.wait_for("STATUS", "refused: unknown-sim")
            run = gateway.mtcctl("pin", "set", str(card.iccid), "--transport", stdin=TRANSPORT_PIN + "\n")
            assert run.returncode == 0, run.stderr
            # The service pairs with the transport PIN and replaces it (rotate_on_adopt).
            wait_until(lambda: modem.pdp_active and card.pin != TRANSPORT_PIN, 10, "adopted by the service")
            unique = card.pin
            changes = len([c for c in modem.commands if c.startswith("AT+CPWD")])
            presented = len(pin_presentations(modem.commands))
            again = gateway.mtcctl("pair", "--json", stdin=TRANSPORT_PIN + "\n")
            assert again.returncode == 0, again.stderr
            result = json.loads(again.stdout)
            assert result["outcome"] == "already-adopted" and result["iccid"] == str(card.iccid)
            assert "already adopted and paired" in result["detail"]
            assert card.pin == unique and card.pin_attempts == 3 and modem.pdp_active
            assert len([c for c in modem.commands if c.startswith("AT+CPWD")]) == changes
            assert len(pin_presentations(modem.commands)) == presented
            assert gateway.keystore().get(card.iccid).pin.reveal() == unique


# --- ITEM 8: the service while the modem is gone --------------------------------------

def _cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_the_service_answers_at_once_while_the_modem_is_gone(gateway, notify_socket, tmp_path):
    card = make_card()
    link = tmp_path / "ttyMODEM"
    with sim_modem(card, link=link) as (modem, port):
        # backoff_max = 2: whole backoff cycles (1 s, then 2 s) fit in a few seconds.
        gateway.configure(str(link), modem="timeout = 2", service="backoff_max = 2")
        gateway.store_pin(str(card.iccid))
        server = server_of(modem)
        with service(gateway, notify_socket) as proc:
            notify_socket.wait_for("READY", "1")
            server.close_port()  # the tty vanishes (USB re-enumeration)
            notify_socket.wait_until(lambda m: m.get("STATUS", "").startswith("modem unavailable"), 10,
                                     what="modem loss reported")
            start = time.monotonic()
            status = _status(gateway)["service"]
            assert time.monotonic() - start < 5
            assert status["modem"] in ("lost", "reconnecting") and status["link"] == "down"
            assert status["state"] == "modem-unavailable" and status["retry_in"] is not None
            start = time.monotonic()
            rotate = gateway.mtcctl("pin", "rotate")
            assert time.monotonic() - start < 5
            assert rotate.returncode == 69
            assert rotate.stderr.startswith("mtcctl: the modem is not connected: ")
            assert "retrying in" in rotate.stderr and len(rotate.stderr.strip().splitlines()) == 1
            # Whole backoff cycles and more with the modem gone: no busy loop.
            cpu_before, wall_before = _cpu_seconds(proc.pid), time.monotonic()
            time.sleep(6)
            used, wall = _cpu_seconds(proc.pid) - cpu_before, time.monotonic() - wall_before
            share = used / wall
            print(f"service CPU while the modem is gone: {used * 1000:.0f} ms in {wall:.1f} s ({share:.2%} of a core)")
            assert share < 0.30
            server.reopen()
            wait_until(lambda: modem.pdp_active, 30, "link back after the modem returned")
            time.sleep(1)
        # The refused rotation was never run, not even once the modem was back.
        assert not any(c.startswith("AT+CPWD") for c in modem.commands)


def _raw_request(path, line: bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    sock.sendall(line)
    return sock


def test_a_request_whose_client_left_is_never_run(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            modem.latency = 0.3  # every AT command slow: the loop is busy for seconds
            first = subprocess.Popen(
                [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(gateway.config), "pin", "rotate", "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gateway.env)
            try:
                before = len(modem.commands)
                wait_until(lambda: len(modem.commands) > before + 1, 10, "the first rotation under way")
                # One client hangs up right after its request; another gives up
                # after a second (as mtcctl does after its timeout).
                _raw_request(gateway.control_socket, b'{"command":"rotate"}\n').close()
                impatient = _raw_request(gateway.control_socket, b'{"command":"compromise"}\n')
                time.sleep(1.0)
                impatient.close()
                out, err = first.communicate(timeout=60)
            finally:
                if first.poll() is None:
                    first.kill()
            assert first.returncode == 0, err
            assert json.loads(out)["outcome"] == "done"
            modem.latency = 0
            time.sleep(3)  # time enough for the loop to run anything still queued
            assert len([c for c in modem.commands if c.startswith("AT+CPWD")]) == 1
            assert gateway.keystore().get(card.iccid).state == "active"  # compromise never ran


def test_many_rotations_at_once_each_run_once(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            argv = [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(gateway.config)]
            procs = [subprocess.Popen(argv + (["pin", "rotate"] if i % 2 else ["status", "--json"]),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gateway.env)
                     for i in range(8)]
            results = [(p.args[-2:], p.wait(timeout=120), p.stderr.read()) for p in procs]
            for p in procs:
                p.stdout.close()
                p.stderr.close()
            done = [r for r in results if r[0] == ["pin", "rotate"] and r[1] == 0]
            waited = [r for r in results if r[0] == ["pin", "rotate"] and r[1] != 0]
            assert all(code == 0 for argv, code, _ in results if argv != ["pin", "rotate"]), results
            # One at a time: the first one changes the PIN; the others find
            # that change unproven (only the modem's OK, the card not asked
            # for its PIN since) and send nothing (lifecycle.change_waits).
            assert len(done) == 1 and len(waited) == 3, results
            assert all(code == 1 and "not proven yet" in err for _, code, err in waited), waited
            # The rotation answered done ran exactly once: one PIN change.
            assert len([c for c in modem.commands if c.startswith("AT+CPWD")]) == len(done)
            assert gateway.keystore().get(card.iccid).pin.reveal() == card.pin
            modem.remove_card()
            modem.insert_card(card)
            wait_until(lambda: modem.pdp_active and card.verified and card.pin_attempts == 3, 15,
                       "paired with the last PIN")


def test_idle_connections_cannot_lock_out_mtcctl(gateway, notify_socket):
    from mtcd.control import MAX_CONNECTIONS

    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            idle = []
            try:
                for _ in range(MAX_CONNECTIONS):
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.connect(str(gateway.control_socket))
                    idle.append(sock)
                time.sleep(0.3)
                start = time.monotonic()
                status = _status(gateway)
                assert time.monotonic() - start < 5
                assert status["service"]["state"] == "paired"
            finally:
                for sock in idle:
                    sock.close()


# --- ITEM 10: status --json and the IMSI; metrics after a stop --------------------------

@pytest.mark.parametrize("show_imsi", [False, True])
def test_status_json_honours_show_imsi(gateway, notify_socket, show_imsi):
    from mtcd.events import masked_imsi

    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, service=f"show_imsi = {str(show_imsi).lower()}")
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            run = gateway.mtcctl("status", "--json")
    assert run.returncode == 0, run.stderr
    status = json.loads(run.stdout)
    if show_imsi:
        assert status["last_decision"]["imsi"] == str(card.imsi)
    else:
        assert str(card.imsi) not in run.stdout
        assert status["last_decision"]["imsi"] == masked_imsi(str(card.imsi))


def test_metrics_say_stopped_after_sigterm(gateway, notify_socket):
    card = make_card()
    prom = gateway.root / "mtcd.prom"
    with sim_modem(card) as (modem, port):
        gateway.configure(port, service=f'metrics_file = "{prom}"')
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket) as proc:
            notify_socket.wait_for("READY", "1")
            running = _metrics(prom)
            assert running["mtcd_up"] == 1 and running["mtcd_paired"] == 1 and running["mtcd_link_up"] == 1
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        stopped = _metrics(prom)
        assert stopped["mtcd_up"] == 0
        assert stopped["mtcd_paired"] == 0 and stopped["mtcd_link_up"] == 0
        assert not [p for p in prom.parent.iterdir() if p.name.startswith(".mtcd.prom")], "no temporary file left"


def test_metrics_say_stopped_after_an_error_exit(gateway, notify_socket):
    """The service dies of an error it does not handle (a bug, injected
    below): the file must not go on saying "paired, link up"."""
    card = make_card()
    prom = gateway.root / "mtcd.prom"
    with sim_modem(card) as (modem, port):
        gateway.configure(port, service=f'metrics_file = "{prom}"')
        gateway.store_pin(str(card.iccid))
        proc = subprocess.Popen(
            [sys.executable, "-c", _DIES_AFTER_PAIRING, str(gateway.config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gateway.env)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 70, err
        stopped = _metrics(prom)
        assert stopped["mtcd_up"] == 0 and stopped["mtcd_paired"] == 0 and stopped["mtcd_link_up"] == 0
        assert modem.radio == 4 and not modem.pdp_active


# The real service, with one fault injected after the first decision: the
# notifier's status call raises once the link is up, as a bug would.
_DIES_AFTER_PAIRING = """
import sys
from pathlib import Path
from mtcd.cli.common import run_main
from mtcd.config import load_config
from mtcd.gatekeeper import Gatekeeper, Notifier

class Broken(Notifier):
    def status(self, text):
        if text.startswith("paired"):
            raise RuntimeError("a bug")

def body(argv):
    path = Path(argv[0])
    return Gatekeeper(path, load_config(path), notifier=Broken()).run()

sys.exit(run_main("mtcd", body, sys.argv[1:]))
"""


# --- the re-evaluation rule itself (pure) -----------------------------------------------

def _outcome(decision, presented=None, **obs):
    from mtcd.gate import PairingOutcome
    from mtcd.identity import Iccid, Imei
    from mtcd.policy import Observations

    from simfixtures import make_iccid, make_imei

    imei = Imei(make_imei())
    base = dict(imei=imei, iccid=Iccid(make_iccid()), pin_enabled=True, attempts=2)
    base.update(obs)
    return PairingOutcome(decision=decision, observations=Observations(presented=presented, **base), imei=imei,
                          imeisv=None, iccid=base["iccid"], imsi=None, pin_retries=2)


def test_decision_may_change_only_when_the_policy_would_act_otherwise():
    from mtcd.gatekeeper import decision_may_change
    from mtcd.policy import Paired, PinOutcome, PolicySettings, Reason, Refused, StoredPin
    from mtcd.simlock import SimLock

    settings = PolicySettings()
    rejected = _outcome(Refused(Reason.PIN_REJECTED, "x"), PinOutcome.REJECTED, lock=SimLock.SIM_PIN,
                        stored=StoredPin(rejected=True))
    # Latched, nothing new: stays refused (never presented again).
    assert not decision_may_change(rejected, StoredPin(rejected=True), settings)
    # A person stored a PIN (the latch is lifted): a new run may present it.
    assert decision_may_change(rejected, StoredPin(), settings)
    # Or staged one the card may hold: the pending PIN may be tried.
    assert decision_may_change(rejected, StoredPin(rejected=True, has_pending=True), settings)
    # Below the guard, a new PIN changes nothing: nothing is presented.
    guarded = _outcome(Refused(Reason.RETRY_GUARD, "x"), lock=SimLock.SIM_PIN, stored=StoredPin(), attempts=1)
    assert not decision_may_change(guarded, StoredPin(), settings)
    # Unknown SIM, then a PIN for it: look again.
    unknown = _outcome(Refused(Reason.UNKNOWN_SIM, "x"), lock=SimLock.SIM_PIN, stored=None)
    assert decision_may_change(unknown, StoredPin(), settings)
    assert not decision_may_change(unknown, None, settings)
    # Paired: a stored PIN replaced keeps the link; a forgotten one closes the gate.
    paired = _outcome(Paired(), PinOutcome.ACCEPTED, lock=SimLock.READY, stored=StoredPin())
    assert not decision_may_change(paired, StoredPin(), settings)
    assert decision_may_change(paired, None, settings)


def test_a_request_is_run_once_or_not_at_all(gateway):
    """The hand-over between a control thread and the loop, with the loop
    held still: a request past its deadline or whose client left is never
    run afterwards; one still wanted is run exactly once."""
    import threading

    from mtcd.config import load_config
    from mtcd.events import EventLog
    from mtcd.gatekeeper import ClientGone, Gatekeeper, Notifier

    gateway.configure(str(gateway.root / "no-modem"))
    gk = Gatekeeper(gateway.config, load_config(gateway.config), notifier=Notifier({}), events=EventLog(journal=False))
    ran = []
    with pytest.raises(ClientGone, match="dropped, not run"):
        gk.submit(lambda g: ran.append("late"), timeout=0.3)
    gone = threading.Event()
    errors = []

    def impatient():
        try:
            gk.submit(lambda g: ran.append("left"), client_left=gone.is_set)
        except ClientGone as exc:
            errors.append(exc)

    thread = threading.Thread(target=impatient)
    thread.start()
    wait_until(lambda: gk._requests.qsize() == 2, 5, "queued")
    gone.set()
    thread.join(5)
    assert errors and errors[0].exit_code == 69
    answers = []
    wanted = threading.Thread(target=lambda: answers.append(gk.submit(lambda g: ran.append("wanted") or {"ok": 1})))
    wanted.start()
    wait_until(lambda: gk._requests.qsize() == 3, 5, "queued")
    gk._serve_requests()
    gk._serve_requests()
    wanted.join(5)
    assert ran == ["wanted"] and answers == [{"ok": 1}]
