"""Unlucky paths that must still keep the gate closed (guarantee 3) and
never spend or lose a PIN (guarantees 1 and 5): radio commands that fail,
a modem that reboots behind an open port, a modem that vanishes while a
link runs outside it, timeouts half-way up, URCs crossing a presentation."""

from __future__ import annotations

import json
import os
import threading
import time

from conftest import network_commands, pin_presentations
from simfixtures import make_card, server_of, sim_modem, wait_until

from mtcd.config import load_config
from mtcd.events import EventLog
from mtcd.gatekeeper import Gatekeeper, Notifier
from mtcd.service import Gateway




class RunningGatekeeper:
    """The service's loop in a thread of this process, so a test can watch
    its state and reach into the simulated modem while it runs."""

    def __init__(self, gateway):
        os.environ["SYSTEMD_CREDENTIAL_SECRET"] = gateway.env["SYSTEMD_CREDENTIAL_SECRET"]
        config = load_config(gateway.config)
        self.gk = Gatekeeper(gateway.config, config, notifier=Notifier({}), events=EventLog(journal=False))
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.result = None

    def _run(self):
        self.result = self.gk.run()

    def __enter__(self):
        # signal handlers can only be installed from the main thread: the
        # loop tolerates their absence here.
        self.thread.start()
        return self.gk

    def __exit__(self, *exc):
        self.gk.request_stop()
        self.gk._wake()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _flaky_cfun(modem, failures: int):
    """CFUN=4/CFUN=0 answer +CME ERROR: 14 `failures` times in all."""
    original = modem._cfun
    left = {"n": failures}

    def cfun(form, args):
        if form == "set" and args.strip() in ("4", "0") and left["n"] > 0:
            left["n"] -= 1
            return ["+CME ERROR: 14"]
        return original(form, args)

    modem._cfun = cfun


def test_swap_to_a_foreign_sim_while_radio_off_fails_never_leaves_the_radio_on(gateway):
    ours, foreign = make_card(serial_number=1), make_card(serial_number=2, pin_enabled=False)
    with sim_modem(ours) as (modem, port):
        gateway.configure(port, service="check_interval = 0.5")
        gateway.store_pin(str(ours.iccid))
        with RunningGatekeeper(gateway) as gk:
            wait_until(lambda: modem.pdp_active, 15, "paired")
            _flaky_cfun(modem, failures=2)
            with modem._lock:
                modem.card = foreign  # no URC: found by the periodic check
            wait_until(lambda: gk.outcome is not None and not gk.outcome.paired, 15, "foreign SIM refused")
            # Off by the time the refusal is known, not only at a later check.
            assert modem.radio == 4
            time.sleep(1.5)
            assert modem.radio == 4


def test_modem_reboot_behind_an_open_port_is_caught(gateway):
    foreign = make_card(serial_number=2, pin_enabled=False)  # refused, but READY: it would attach
    with sim_modem(foreign) as (modem, port):
        gateway.configure(port, service="check_interval = 0.5")
        with RunningGatekeeper(gateway) as gk:
            wait_until(lambda: gk.outcome is not None and modem.radio == 4, 15, "refused")
            modem.power_loss()  # comes back at its power-on CFUN=1
            assert modem.radio == 1
            wait_until(lambda: modem.radio == 4, 5, "radio off again after the reboot")
            wait_until(lambda: gk.outcome is not None, 10, "a new decision")
            assert gk.outcome.reason.value == "unknown-sim"
        assert network_commands(modem.commands) == []


def test_link_outside_the_modem_comes_down_when_the_modem_vanishes(gateway, tmp_path):
    card = make_card()
    flag = tmp_path / "datalink.flag"
    link = tmp_path / "ttyMODEM"
    with sim_modem(card, link=link) as (modem, port):
        gateway.configure(
            str(link), service="check_interval = 0.5",
            datalink=f'backend = "command"\nup = ["touch", "{flag}"]\ndown = ["rm", "-f", "{flag}"]',
        )
        gateway.store_pin(str(card.iccid))
        server = server_of(modem)
        with RunningGatekeeper(gateway):
            wait_until(flag.exists, 15, "link up (flag written)")
            server.close_port()
            wait_until(lambda: not flag.exists(), 5, "link taken down with the modem gone")


def test_timeout_half_way_up_leaves_the_radio_off(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        # The context definition shares its line with the activation, so it
        # has the data link's command timeout: 2 s here.
        gateway.configure(port, modem="timeout = 1",
                          datalink='backend = "at"\napn = "iot.example"\ncommand_timeout = 2')
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CGDCONT", "before")  # no answer at all
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 69, run.stderr
        assert "AT+CGDCONT" in run.stderr and len(run.stderr.strip().splitlines()) == 1
        assert modem.radio == 4 and not modem.pdp_active


def test_urc_crossing_the_attempts_query_leaves_no_false_marker(gateway):
    """A SIM-state URC arrives while the counter is read, on a modem that
    reports no counter: the gate reads the card again instead of presenting
    on a stale reading, and no "attempt started" marker is left behind."""
    card = make_card()
    with sim_modem(card, has_cpinr=False) as (modem, port):
        gateway.configure(port, datalink='backend = "none"')
        gateway.store_pin(str(card.iccid))
        crossed = {"n": 1}
        handlers = modem._handlers

        def csim(form, args):
            if crossed["n"]:
                crossed["n"] -= 1
                modem._urcs.append("+CPIN: SIM PIN")
            return ["ERROR"]  # no counter on this modem

        modem._handlers = lambda: {**handlers(), "+CSIM": csim}
        os.environ["SYSTEMD_CREDENTIAL_SECRET"] = gateway.env["SYSTEMD_CREDENTIAL_SECRET"]
        with Gateway(load_config(gateway.config)) as gw:
            report = gw.pair_once()
        assert report.state == "paired"
        assert len(pin_presentations(modem.commands)) == 1
        entry = gateway.keystore().get(card.iccid)
        assert entry.attempt is None


def test_reload_applies_a_new_control_socket(gateway, tmp_path):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with RunningGatekeeper(gateway) as gk:
            wait_until(lambda: modem.pdp_active, 15, "paired")
            assert gateway.control_socket.exists()
            moved = tmp_path / "moved.sock"
            gateway.configure(port, service=f'control_socket = "{moved}"')
            gk.request_reload()
            gk._wake()
            wait_until(moved.exists, 5, "the control socket at its new place")
            assert not gateway.control_socket.exists()
            status = json.loads(gateway.mtcctl("status", "--json").stdout)
            assert status["service"]["state"] == "paired"
            assert modem.pdp_active  # nothing the link depends on changed




def test_a_returning_modem_is_taken_at_once_not_after_the_backoff(gateway, tmp_path):
    card = make_card(serial_number=2, pin_enabled=False)  # would attach by itself at CFUN=1
    link = tmp_path / "ttyMODEM"
    with sim_modem(card, link=link) as (modem, port):
        gateway.configure(str(link), modem="timeout = 1", service="backoff_max = 60")
        server = server_of(modem)
        with RunningGatekeeper(gateway) as gk:
            wait_until(lambda: gk.outcome is not None, 15, "first decision")
            server.close_port()
            time.sleep(8)  # the backoff has grown to several seconds by now
            modem.power_loss()
            server.reopen()
            start = time.monotonic()
            wait_until(lambda: modem.radio == 4, 5, "radio off soon after the port came back")
            assert time.monotonic() - start < 2.5
