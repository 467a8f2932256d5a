"""`mtcd run` as systemd runs it: sd_notify over a socket the test owns, and
the gate closing within seconds when the SIM is pulled or swapped or the
modem goes away, and opening again when they come back."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import network_commands, pin_presentations
from simfixtures import make_card, server_of, sim_modem, wait_until

GATE_CLOSES_WITHIN = 5.0


@contextlib.contextmanager
def service(gateway, notify_socket=None, **env):
    full_env = dict(gateway.env, **env)
    if notify_socket is not None:
        full_env["NOTIFY_SOCKET"] = str(notify_socket.path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        proc.stderr_text = err
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_notify_ready_status_watchdog_reload_stop(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket, WATCHDOG_USEC="400000") as proc:
            ready = notify_socket.wait_for("READY", "1")
            assert ready["STATUS"] == f"paired ICCID {card.iccid}, link up"
            assert modem.radio == 1 and modem.pdp_active
            # The watchdog is petted from the main loop, at half the interval.
            first = notify_socket.wait_for("WATCHDOG", "1")
            index = notify_socket.messages.index(first) + 1
            notify_socket.wait_for("WATCHDOG", "1", timeout=2, start=index)
            # SIGHUP: reload; nothing relevant changed, so the link stays.
            commands_before = len(modem.commands)
            proc.send_signal(signal.SIGHUP)
            reloading = notify_socket.wait_for("RELOADING", "1")
            index = notify_socket.messages.index(reloading) + 1
            again = notify_socket.wait_for("READY", "1", start=index)
            assert again["STATUS"].startswith("paired")
            assert modem.pdp_active
            assert not any(c.startswith("AT+CFUN=4") for c in modem.commands[commands_before:])
            proc.send_signal(signal.SIGTERM)
            notify_socket.wait_for("STOPPING", "1")
            proc.wait(timeout=20)
        assert modem.radio == 4 and not modem.pdp_active


def test_reload_with_a_changed_apn_reconnects(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket) as proc:
            notify_socket.wait_for("READY", "1")
            gateway.configure(port, datalink='backend = "at"\napn = "other.example"')
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: modem.apn == "other.example" and modem.pdp_active, 10, "link up with the new APN")


def test_bad_configuration_on_reload_keeps_the_running_one(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket) as proc:
            notify_socket.wait_for("READY", "1")
            gateway.config.write_text(gateway.config.read_text() + "\n[policy]\nmin_retry = 2\n")
            proc.send_signal(signal.SIGHUP)
            reloading = notify_socket.wait_for("RELOADING", "1")
            again = notify_socket.wait_for("READY", "1", start=notify_socket.messages.index(reloading) + 1)
            assert "reload failed" in again["STATUS"]
            assert modem.pdp_active


def test_notify_socket_pointing_nowhere_is_harmless(gateway, tmp_path):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, NOTIFY_SOCKET=str(tmp_path / "nobody-listens.sock"), WATCHDOG_USEC="500000") as proc:
            wait_until(lambda: modem.pdp_active, 20, "link up")
            time.sleep(1.2)  # several watchdog pings into the void
            assert proc.poll() is None


def test_sim_pull_closes_the_gate_and_reinsertion_opens_it(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            modem.remove_card()
            took = wait_until(lambda: modem.radio == 4 and not modem.pdp_active, GATE_CLOSES_WITHIN, "gate closed after SIM pull")
            notify_socket.wait_for("STATUS", "refused: no-sim")
            modem.insert_card(card)
            wait_until(lambda: modem.pdp_active and modem.radio == 1, 15, "link back after re-insertion")
        decisions = [e for e in gateway.history() if e["event"] == "decision"]
        assert [d["outcome"] for d in decisions] == ["paired", "refused", "paired"]
        assert decisions[1]["reason"] == "no-sim"
        assert took < GATE_CLOSES_WITHIN


@pytest.mark.parametrize("stored", [True, False])
def test_sim_swap(gateway, notify_socket, stored):
    first, second = make_card(serial_number=1), make_card(serial_number=2)
    with sim_modem(first) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(first.iccid))
        if stored:
            gateway.store_pin(str(second.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            presented = len(pin_presentations(modem.commands))
            modem.remove_card()
            modem.insert_card(second)
            if stored:
                notify_socket.wait_for("STATUS", f"paired ICCID {second.iccid}, link up")
                assert modem.pdp_active
            else:
                notify_socket.wait_for("STATUS", "refused: unknown-sim")
                wait_until(lambda: modem.radio == 4, GATE_CLOSES_WITHIN, "radio off")
                assert len(pin_presentations(modem.commands)) == presented  # nothing sent to the foreign SIM
                assert second.pin_attempts == 3
        events = gateway.history()
        change = [e for e in events if e["event"] == "association-changed"][-1]
        assert (change["old_iccid"], change["new_iccid"]) == (str(first.iccid), str(second.iccid))


def test_swap_to_a_pin_less_sim_between_checks_is_caught(gateway, notify_socket):
    """A swap that no URC announces and that leaves the slot READY (PIN
    disabled): the periodic ICCID check must still close the gate."""
    ours, foreign = make_card(serial_number=1), make_card(serial_number=2, pin_enabled=False)
    with sim_modem(ours) as (modem, port):
        gateway.configure(port, policy="require_pin_enabled = true")
        gateway.store_pin(str(ours.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            with modem._lock:  # swap behind the modem's back: no URC at all
                modem.card = foreign
            wait_until(lambda: modem.radio == 4, GATE_CLOSES_WITHIN, "gate closed after a silent swap")
            notify_socket.wait_for("STATUS", "refused: unknown-sim")


def test_modem_loss_and_return(gateway, notify_socket, tmp_path):
    card = make_card()
    link = tmp_path / "ttyMODEM"
    with sim_modem(card, link=link) as (modem, port):
        gateway.configure(str(link), modem='timeout = 2')
        gateway.store_pin(str(card.iccid))
        server = server_of(modem)
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            server.close_port()  # USB re-enumeration: the tty vanishes
            notify_socket.wait_until(lambda m: m.get("STATUS", "").startswith("modem unavailable"),
                                     GATE_CLOSES_WITHIN, what="modem loss reported")
            modem.power_loss()  # it comes back as a freshly booted modem: radio on, SIM locked
            before = len(modem.commands)
            server.reopen()
            wait_until(lambda: modem.pdp_active, 30, "link back after the modem returned")
            # The new session switched the radio off before looking at the SIM.
            after = modem.commands[before:]
            assert after.index("AT+CFUN=4") < after.index("AT+CPIN?") < after.index("AT+CFUN=1")


def test_idle_service_sends_only_cheap_checks(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            start = len(modem.commands)
            time.sleep(4.5)
            idle = modem.commands[start:]
        assert idle, "the SIM is checked periodically"
        assert set(c.split("=")[0] for c in idle) <= {"AT+CFUN?", "AT+CPIN?", "AT+CRSM"}
        assert len(idle) <= 12  # three commands per 2-s check
        assert network_commands(idle) == []


# --- mtcctl through the service's control socket --------------------------------------

def test_mtcctl_goes_through_the_running_service(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            status = json.loads(gateway.mtcctl("status", "--json").stdout)
            assert status["service"]["state"] == "paired" and status["service"]["link"] == "up"
            assert status["service"]["iccid"] == str(card.iccid)
            old_pin = card.pin
            run = gateway.mtcctl("pin", "rotate", "--json")
            assert run.returncode == 0, run.stderr
            assert json.loads(run.stdout)["outcome"] == "done"
            assert card.pin != old_pin and card.pin not in run.stdout + run.stderr
            assert modem.pdp_active, "a rotation on an unlocked SIM keeps the link"
            # The service's keystore and mtcctl's agree: the next pairing works.
            modem.remove_card()
            modem.insert_card(card)
            wait_until(lambda: modem.pdp_active and card.pin_attempts == 3 and card.verified, 15, "paired with the new PIN")


def test_unblock_through_the_service(gateway, notify_socket):
    from simfixtures import TEST_PUK

    card = make_card(pin_attempts=0)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("STATUS", "refused: sim-blocked")
            run = gateway.mtcctl("sim", "unblock", "--json", stdin=f"{TEST_PUK}\n13572468\n")
            assert run.returncode == 0, run.stderr
            assert TEST_PUK not in run.stdout + run.stderr
            wait_until(lambda: modem.pdp_active, 15, "paired after the unblock")
            assert card.pin == "13572468"


def test_control_socket_refuses_a_user_outside_the_admin_group(gateway, notify_socket):
    """A technician's shell running as an ordinary user (here: nobody) asks the
    service to rotate the PIN: refused with 77, and nothing reaches the modem."""
    import os
    import shutil
    import tempfile

    card = make_card()
    shared = Path(tempfile.mkdtemp(prefix="mtcd-shared-", dir="/tmp"))
    try:
        os.chmod(shared, 0o755)
        with sim_modem(card) as (modem, port):
            gateway.configure(port, service=f'control_socket = "{shared / "control.sock"}"')
            gateway.store_pin(str(card.iccid))
            config = shared / "mtcd.toml"
            shutil.copy(gateway.config, config)
            os.chmod(config, 0o644)
            with service(gateway, notify_socket):
                notify_socket.wait_for("READY", "1")
                os.chmod(shared / "control.sock", 0o666)  # even with the file open to all
                status, stderr = _run_as_nobody(["--config", str(config), "pin", "rotate"])
                assert status == 77, stderr
                assert "permission denied" in stderr
                assert not any(c.startswith("AT+CPWD") for c in modem.commands)
                root = gateway.mtcctl("status", "--json")  # root is allowed
                assert json.loads(root.stdout)["service"]["state"] == "paired"
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _run_as_nobody(argv: list[str]) -> tuple[int, str]:
    """Run mtcctl's main() in a forked child that dropped to uid/gid 65534
    (the interpreter itself lives where nobody may not exec it)."""
    import os

    from mtcd.cli import ctl

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            os.close(read_end)
            sys.stderr = os.fdopen(write_end, "w")
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            code = ctl.main(argv)
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        stderr = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stderr


def test_association_change_sms_to_the_operator(gateway, notify_socket):
    from gsmmodem.pdu import decodeSmsPdu

    first, second, foreign = make_card(serial_number=1), make_card(serial_number=2), make_card(serial_number=3)
    with sim_modem(first) as (modem, port):
        gateway.configure(port)
        gateway.config.write_text(gateway.config.read_text() + '[alerts]\nsms_to = "+491701234567"\n')
        gateway.store_pin(str(first.iccid))
        gateway.store_pin(str(second.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            assert modem.sms_sent == []  # the first SIM this gateway sees: nothing changed
            modem.remove_card()
            modem.insert_card(second)
            notify_socket.wait_for("STATUS", f"paired ICCID {second.iccid}, link up")
            wait_until(lambda: len(modem.sms_sent) == 1, 10, "the SMS")
            sms = decodeSmsPdu("00" + modem.sms_sent[0].hex())
            assert sms["number"] == "+491701234567"
            assert str(first.iccid) in sms["text"] and str(second.iccid) in sms["text"]
            # A foreign SIM is refused with the radio off: only the journal knows.
            modem.remove_card()
            modem.insert_card(foreign)
            notify_socket.wait_for("STATUS", "refused: unknown-sim")
            assert len(modem.sms_sent) == 1
        changes = [e for e in gateway.history() if e["event"] == "association-changed"]
        # An empty slot in between is no association: 1 -> 2, then 2 -> 3.
        assert [(c["old_iccid"], c["new_iccid"]) for c in changes] == [
            (str(first.iccid), str(second.iccid)), (str(second.iccid), str(foreign.iccid))]


def test_events_and_metrics_follow_the_gate(gateway, notify_socket):
    card = make_card()
    prom = gateway.root / "mtcd.prom"
    with sim_modem(card) as (modem, port):
        gateway.configure(port, service=f'metrics_file = "{prom}"')
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket) as proc:
            notify_socket.wait_for("READY", "1")
            metrics = _metrics(prom)
            assert metrics["mtcd_paired"] == 1 and metrics["mtcd_link_up"] == 1 and metrics["mtcd_modem_up"] == 1
            assert metrics['mtcd_decisions_total{outcome="paired",reason=""}'] == 1
            modem.remove_card()
            notify_socket.wait_for("STATUS", "refused: no-sim")
            metrics = _metrics(prom)
            assert metrics["mtcd_paired"] == 0 and metrics["mtcd_link_up"] == 0 and metrics["mtcd_sim_present"] == 0
            assert metrics['mtcd_decisions_total{outcome="refused",reason="no-sim"}'] == 1
        # No journald here: the same events, one line each, on stderr.
        lines = [line for line in proc.stderr_text.splitlines() if line.startswith("mtcd: ")]
        assert any("paired SIM" in line and f"iccid={card.iccid}" in line for line in lines)
        assert any("removed" in line for line in lines)
        assert any("reason=no-sim" in line for line in lines)
        assert not any(str(card.imsi) in line for line in lines), "the IMSI is masked by default"


def _metrics(path) -> dict[str, float]:
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values
