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

from conftest import BenchGateway, wait_for_modem

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


@pytest.mark.parametrize("card_acts", ["after", "before"], ids=["card-changed", "card-not-changed"])
def test_rotation_interrupted_by_a_modem_reset_recovers(bench, tmp_path, card_restorer, card_acts):
    """The gateway's own `mtcctl pin rotate`, and a modem reset
    (AT+CFUN=1,1) in the middle of its AT+CPWD: the card took the new PIN
    ("after") or never saw the change ("before"), and the gateway heard
    neither.  The next pairing must find the card's PIN, present no PIN the
    card refused twice, and end with full counters (guarantee 5)."""
    from interposer import Interposer

    iccid = bench.start.iccid
    vendor = bench.config.getoption("--vendor")
    direct = BenchGateway(tmp_path, bench.port, vendor)
    assert direct.mtcctl("pin", "set", iccid, stdin=card_restorer.pin.reveal() + "\n").returncode == 0
    paired = direct.mtcd("once", "--json")
    assert paired.returncode == 0, paired.stdout + paired.stderr  # unlocked: a rotation needs it

    link = tmp_path / "ttyINTERPOSED"
    with Interposer(bench.port, bench.config.getoption("--baudrate"), link, reset_mid_change=card_acts) as relay:
        through = BenchGateway(tmp_path, str(link), vendor)  # the same state, the relay's port
        rotated = through.mtcctl("pin", "rotate")
    entry = direct.stored_pin(iccid)
    assert relay.change_seen and relay.reset_sent, "the rotation never sent its AT+CPWD"
    assert entry.pending_pin is not None, "the new PIN was not sealed before the card heard of it"
    # Until the pairing settles it, the restore tries the PIN the card took.
    changed = card_acts == "after" and relay.change_result == "OK"
    card_restorer.pin = entry.pending_pin if changed else entry.pin
    assert rotated.returncode != 0 and "Traceback" not in rotated.stderr, rotated.stdout + rotated.stderr
    assert card_acts == "before" or relay.change_result == "OK", f"the card answered {relay.change_result}"

    wait_for_modem(bench)
    direct = BenchGateway(tmp_path, bench.port, vendor)
    with Interposer(bench.port, bench.config.getoption("--baudrate"), link) as relay:
        settled = BenchGateway(tmp_path, str(link), vendor).mtcd("once", "--json")
    report = json.loads(settled.stdout.strip().splitlines()[-1])
    assert settled.returncode == 0 and report["state"] == "paired", report
    entry = direct.stored_pin(iccid)
    card_restorer.pin = entry.pin
    assert entry.pending_pin is None
    # Changed: the old PIN refused once, then the new one; not changed: the old one at once.
    assert relay.presentations == (2 if changed else 1), relay.presentations
    with bench.open_modem() as modem:
        counters = Uicc(modem).attempts()
    assert counters is None or counters.pin1 in (None, bench.card.pin_tries)

    # Settled: after another reset the card's PIN alone, once; the refused one never again.
    with bench.open_modem() as modem:
        try:
            modem.transport.execute(AtCommand("AT+CFUN=1,1", timeout=30))
        except (ModemUnavailable, CommandFailed):
            pass  # the port goes away with the reset
    wait_for_modem(bench)
    with Interposer(bench.port, bench.config.getoption("--baudrate"), link) as relay:
        again = BenchGateway(tmp_path, str(link), vendor).mtcd("once", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert relay.presentations == 1, relay.presentations
