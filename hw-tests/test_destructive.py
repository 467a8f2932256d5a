"""Tests that spend PIN attempts or change the PIN (--destructive only).
Each ends with the card's starting PIN put back (card_restorer), and the
session's final check proves it."""

from __future__ import annotations

import json

import pytest

from mtcd.at import commands
from mtcd.at.commands import AtCommand
from mtcd.errors import CommandFailed, ModemUnavailable
from mtcd.policy import PinOutcome
from mtcd.secret import Pin
from mtcd.simlock import SimLock
from mtcd.uicc import Uicc

from conftest import wait_for_modem

pytestmark = [pytest.mark.destructive, pytest.mark.needs_card]


def _unlocked(modem, pin):
    """An unlocked Uicc: the PIN presented once if the card asks for it."""
    uicc = Uicc(modem, settle_time=10)
    lock = uicc.lock()
    iccid = uicc.iccid()
    if lock is SimLock.SIM_PIN:
        assert uicc.present_pin(pin, iccid) is PinOutcome.ACCEPTED, "the card file's PIN was refused"
        lock = uicc.lock()
    assert lock is SimLock.READY, lock
    return uicc, iccid


def test_pin_disabled_is_refused(bench, bench_gateway, card_restorer):
    iccid = bench.start.iccid
    assert bench_gateway.mtcctl("pin", "set", iccid, stdin=card_restorer.pin.reveal() + "\n").returncode == 0
    with bench.open_modem() as modem:
        uicc, card_iccid = _unlocked(modem, card_restorer.pin)
        if uicc.pin_enabled():
            response = modem.transport.execute(commands.set_pin_enabled(False, card_restorer.pin))
            assert response.result.ok, response.result
    done = bench_gateway.mtcd("once", "--json")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 1 and report["reason"] == "pin-disabled", report
    assert report["link"] == "down"


def test_rotation_interrupted_by_a_modem_reset_recovers(bench, bench_gateway, card_restorer):
    """The gateway stages a new PIN; the card is changed to it and the modem
    reset (AT+CFUN=1,1) before the gateway heard the answer.  The next
    pairing must find the card's PIN (the old one is refused once, the
    pending one accepted) and the counters end full."""
    iccid = bench.start.iccid
    assert bench_gateway.mtcctl("pin", "set", iccid, stdin=card_restorer.pin.reveal() + "\n").returncode == 0
    new = Pin.generate(8)
    staged = bench_gateway.mtcctl("pin", "stage", iccid, stdin=new.reveal() + "\n")
    assert staged.returncode == 0, staged.stderr
    with bench.open_modem() as modem:
        uicc, card_iccid = _unlocked(modem, card_restorer.pin)
        assert uicc.change_pin(card_restorer.pin, new, card_iccid) is PinOutcome.ACCEPTED
        card_restorer.pin = new
        try:
            modem.transport.execute(AtCommand("AT+CFUN=1,1", timeout=30))
        except (ModemUnavailable, CommandFailed):
            pass  # the port goes away with the reset
    wait_for_modem(bench)
    done = bench_gateway.mtcd("once", "--json")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and report["state"] == "paired", report
    with bench.open_modem() as modem:
        counters = Uicc(modem).attempts()
    assert counters is None or counters.pin1 in (None, bench.card.pin_tries)
