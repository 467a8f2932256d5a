"""Rehearsals against a running `mtcd run`: the simulator is its own
process (`mtcd-sim serve --control`), driven only through its control
commands, as a person rehearsing the field would drive it."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from simfixtures import TEST_IMSI, TEST_PIN, TEST_PUK, make_iccid, sim_cli, wait_until
from test_service import GATE_CLOSES_WITHIN, service

NEW_PIN = "60221409"


class Rehearsal:
    def __init__(self, tmp_path, vendor: str):
        self.cards = {}
        for name, serial in (("a", 1), ("b", 2)):
            path = tmp_path / f"{name}.json"
            made = subprocess.run(
                [*sim_cli(), "card", "--state", str(path), "--iccid", make_iccid(serial), "--imsi", TEST_IMSI],
                input=f"{TEST_PIN}\n{TEST_PUK}\n", capture_output=True, text=True, timeout=10,
            )
            assert made.returncode == 0, made.stderr
            self.cards[name] = (path, make_iccid(serial))
        self.sock = tmp_path / "sim.sock"
        self.link = tmp_path / "ttyMODEM"
        self.proc = subprocess.Popen(
            [*sim_cli(), "serve", "--state", str(self.cards["a"][0]), "--vendor", vendor,
             "--link", str(self.link), "--control", str(self.sock)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout.readline().startswith("/dev/")

    def ctl(self, *args, stdin: str = "") -> dict:
        run = subprocess.run([*sim_cli(), *args, "--control", str(self.sock), "--json"], input=stdin,
                             capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        assert self.proc.returncode == 0, err


@pytest.fixture
def rehearsal(tmp_path, request):
    r = Rehearsal(tmp_path, getattr(request, "param", "generic"))
    yield r
    r.stop()


@pytest.mark.parametrize("rehearsal", ["generic", "simcom"], indirect=True)
def test_swap_closes_the_gate_and_the_service_decides_again(gateway, notify_socket, rehearsal):
    (_, first), (b_file, second) = rehearsal.cards["a"], rehearsal.cards["b"]
    gateway.configure(str(rehearsal.link))
    gateway.store_pin(first)
    with service(gateway, notify_socket):
        notify_socket.wait_for("STATUS", f"paired ICCID {first}, link up")
        assert rehearsal.ctl("status")["pdp"] == "active"
        rehearsal.ctl("swap-sim", "--card", str(b_file))
        notify_socket.wait_for("STATUS", "refused: unknown-sim", timeout=GATE_CLOSES_WITHIN + 5)
        status = rehearsal.ctl("status")
        assert (status["iccid"], status["radio"], status["pdp"]) == (second, "off", "inactive")
        assert status["pin_attempts"] == 3  # nothing was presented to the foreign card
        # Its PIN stored: the service decides again by itself and pairs it.
        gateway.store_pin(second)
        notify_socket.wait_for("STATUS", f"paired ICCID {second}, link up")
        assert rehearsal.ctl("status")["pdp"] == "active"
    change = [e for e in gateway.history() if e["event"] == "association-changed"][-1]
    assert (change["old_iccid"], change["new_iccid"]) == (first, second)


def test_ota_pin_change_with_a_staged_pin_pairs_again(gateway, notify_socket, rehearsal):
    _, iccid = rehearsal.cards["a"]
    gateway.configure(str(rehearsal.link))
    gateway.store_pin(iccid)
    with service(gateway, notify_socket) as proc:
        notify_socket.wait_for("STATUS", f"paired ICCID {iccid}, link up")
        start = len(notify_socket.messages)
        # Device first: the new PIN staged on the gateway ...
        staged = gateway.mtcctl("pin", "stage", iccid, stdin=NEW_PIN + "\n")
        assert staged.returncode == 0, staged.stderr
        # ... SIM second: the operator's OTA change, then the card's REFRESH.
        status = rehearsal.ctl("ota-pin", stdin=NEW_PIN + "\n")
        assert status["pin_state"] == "SIM PIN"
        wait_until(lambda: any(e["event"] == "pin-promoted" for e in gateway.history()), 30,
                   "the staged PIN promoted")
        notify_socket.wait_for("STATUS", f"paired ICCID {iccid}, link up", start=start)
        status = rehearsal.ctl("status")
        assert (status["pin_state"], status["pdp"]) == ("READY", "active")
        # The old PIN cost one attempt, the staged one restored the counter.
        assert status["pin_attempts"] == 3
    entry = next(e for e in json.loads(gateway.mtcctl("pin", "list", "--json").stdout)["pins"] if e["iccid"] == iccid)
    assert entry["pending"] is None  # settled: the staged PIN is the current one
    assert NEW_PIN not in proc.stderr_text and TEST_PIN not in proc.stderr_text


def test_modem_reset_through_the_control_socket(gateway, notify_socket, rehearsal):
    _, iccid = rehearsal.cards["a"]
    gateway.configure(str(rehearsal.link), modem="timeout = 2")
    gateway.store_pin(iccid)
    with service(gateway, notify_socket):
        notify_socket.wait_for("STATUS", f"paired ICCID {iccid}, link up")
        # READY=1 repeats that STATUS: read it too, so that the "paired" awaited
        # after the reset is the new session's, not this one's echo.
        notify_socket.wait_for("READY", "1")
        start = len(notify_socket.messages)
        rehearsal.ctl("reset", "--down", "1.5")
        notify_socket.wait_until(lambda m: m.get("STATUS", "").startswith("modem unavailable"),
                                 GATE_CLOSES_WITHIN + 5, start, "modem loss reported")
        # Only a "paired" said after the loss counts: the service may repeat
        # the old one between the reset and noticing it (a wait that ends).
        lost = len(notify_socket.messages)
        notify_socket.wait_for("STATUS", f"paired ICCID {iccid}, link up", timeout=40, start=lost)
        assert rehearsal.ctl("status")["pdp"] == "active", notify_socket.messages[start:]
