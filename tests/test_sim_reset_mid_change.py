"""A modem reset (AT+CFUN=1,1 from elsewhere, a watchdog) while the
gateway's AT+CPWD is in flight: the card acted on the change or not, the
answer is lost and the port vanishes a moment.  The next pairing must find
the PIN the card holds, present no rejected PIN twice, never go below the
retry guard, and leave the keystore holding the card's PIN (guarantee 5).

The simulator's `reset` / `reset-before` faults do this; the same scenario
runs on a real modem in hw-tests/test_destructive.py."""

from __future__ import annotations

import time

import pytest

from conftest import pin_presentations
from simfixtures import TEST_PIN, make_card, server_of, sim_modem, wait_until

from mtcd.sim import SimulatedModem


def test_a_reset_fault_loses_the_answer_and_reboots_the_modem():
    for fault, card_changes in (("reset", True), ("reset-before", False)):
        card = make_card()
        modem = SimulatedModem(card, vendor="quectel")
        assert modem.handle(f'AT+CPIN="{TEST_PIN}"') == ["OK"]
        modem.take_urcs()
        modem.fail_after("AT+CPWD", fault)
        assert modem.handle(f'AT+CPWD="SC","{TEST_PIN}","24682468"') == []
        assert (card.pin == "24682468") is card_changes
        assert modem.take_reset() and not modem.take_reset()
        # Rebooted: the card asks for its PIN again, the boot URCs are queued.
        assert modem.handle("AT+CPIN?") == ["+CPIN: SIM PIN", "OK"]
        assert modem.take_urcs() == ["RDY", "+CPIN: SIM PIN"]


def test_the_port_vanishes_with_the_reset_and_comes_back(sim):
    import serial

    modem, port = sim
    modem.reset_down = 0.3
    modem.fail_after("AT+CPWD", "reset")
    with serial.Serial(port, 115200, timeout=0.5) as link:
        link.write(f'AT+CPWD="SC","{TEST_PIN}","24682468"\r'.encode())
        with pytest.raises((serial.SerialException, OSError)):
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                link.read(64)
    server = server_of(modem)
    wait_until(lambda: server.is_open, 5, "the port back")
    assert modem.card.pin == "24682468"


@pytest.mark.parametrize("fault, card_changes", [("reset", True), ("reset-before", False)])
@pytest.mark.parametrize("personality", [{}, {"vendor": "quectel", "has_cpinr": False}])
def test_rotation_cut_by_a_modem_reset_pairs_with_the_cards_pin(gateway, tmp_path, fault, card_changes, personality):
    card = make_card()
    # The port comes back as a new pty: the gateway follows the link, as it
    # would a udev name, never a /dev/pts number another process may get.
    link = tmp_path / "ttyMODEM"
    with sim_modem(card, link=link, **personality) as (modem, port):
        modem.reset_down = 0.5
        gateway.configure(str(link))
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CPWD", fault)
        rotated = gateway.mtcctl("pin", "rotate", timeout=60)
        assert rotated.returncode != 0, rotated.stdout  # the answer never came
        assert "Traceback" not in rotated.stderr and len(rotated.stderr.strip().splitlines()) == 1, rotated.stderr
        assert [c for c in modem.commands if c.startswith("AT+CPWD")] == ['AT+CPWD="SC",<redacted>,<redacted>']
        entry = gateway.keystore().get(card.iccid)
        assert entry.pending_pin is not None, "the new PIN was not sealed before the card heard of it"
        assert (card.pin == entry.pending_pin.reveal()) is card_changes
        assert card.pin == (entry.pending_pin.reveal() if card_changes else TEST_PIN)
        wait_until(lambda: server_of(modem).is_open, 10, "the modem's port back")

        before = len(pin_presentations(modem.commands))
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stdout + run.stderr
        presented = len(pin_presentations(modem.commands)) - before
        # Card changed: the old PIN is refused once, then the pending one is
        # accepted; card not changed: the current one at once.
        assert presented == (2 if card_changes else 1)
        assert card.pin_attempts == 3
        entry = gateway.keystore().get(card.iccid)
        assert entry.pin.reveal() == card.pin and entry.pending_pin is None
        assert TEST_PIN not in run.stdout + run.stderr and card.pin not in run.stdout + run.stderr

        # Settled: after the next power loss the card's PIN alone, once; the
        # one it refused is never presented again.
        modem.power_loss()
        before = len(pin_presentations(modem.commands))
        again = gateway.mtcd("once", "--json")
        assert again.returncode == 0 and again.last_json["state"] == "paired", again.stdout + again.stderr
        assert len(pin_presentations(modem.commands)) - before == 1
        assert card.pin_attempts == 3

