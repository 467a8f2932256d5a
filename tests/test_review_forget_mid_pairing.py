"""R7 (review of issue 7): `mtcctl pin forget` (or any removal of the entry)
while a pairing is between its keystore look-up and the presentation makes
`gate._present` call `.candidate` on None: an AttributeError traceback
instead of a refusal (`mtcd once` exits 70; under `mtcd run` see below)."""

from __future__ import annotations

import subprocess
import sys
import time

from conftest import pin_presentations
from simfixtures import make_card, sim_modem, slow_after


def test_R7_forget_between_look_up_and_presentation(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        slow_after(modem, "AT+CRSM=176,12258", 1.0)  # every command after the ICCID read takes 1 s
        once = subprocess.Popen([sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "once", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gateway.env)
        deadline = time.monotonic() + 60
        while not any(c.startswith("AT+CRSM=176,12258") for c in modem.commands):
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert gateway.mtcctl("pin", "forget", str(card.iccid)).returncode == 0  # during the counter read
        modem.latency = 0  # forgotten inside the window: the rest may be quick
        out, err = once.communicate(timeout=60)
        print("once:", once.returncode, err.strip()[-400:])
        assert "Traceback" not in err and once.returncode in (0, 1), err
        assert pin_presentations(modem.commands) == []


def test_R7_service_forget_between_look_up_and_presentation(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        slow_after(modem, "AT+CRSM=176,12258", 1.0)
        env = dict(gateway.env, NOTIFY_SOCKET=str(notify_socket.path))
        proc = subprocess.Popen([sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "run"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 60
            while not any(c.startswith("AT+CRSM=176,12258") for c in modem.commands):
                assert time.monotonic() < deadline
                time.sleep(0.005)
            assert gateway.mtcctl("pin", "forget", str(card.iccid), "--yes").returncode == 0
            modem.latency = 0  # forgotten inside the window: the rest may be quick
            try:  # the pairing ends in a refusal; a crashed service says nothing more
                notify_socket.wait_for("STATUS", "refused: unknown-sim", timeout=20)
            except AssertionError:
                pass
            time.sleep(1)  # and the service stays up after it
            alive = proc.poll() is None
        finally:
            if proc.poll() is None:
                proc.terminate()
            out, err = proc.communicate(timeout=30)
        print("service alive:", alive, "rc:", proc.returncode, err.strip()[-300:])
        assert alive and "AttributeError" not in err, err[-600:]
