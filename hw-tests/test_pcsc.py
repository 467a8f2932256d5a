"""The PC/SC path (`--reader`): the test SIM in a reader, reached with
mtcd's own PC/SC backend (mtcd.card.pcsc under mtcd.card.uicc), with the
same guards as the AT path: counters full before anything touches the
card (conftest.py refuses to start otherwise), restored and checked at the
end.  `mtcd once` needs a modem for the IMEI (--modem); the modem's own
SIM is left alone, the pairing decision is about the reader's card."""

from __future__ import annotations

import json

import pytest

from mtcd.identity import Iccid, luhn_check_digit
from mtcd.pairing_record import Service, State, Verdict
from mtcd.policy import PinOutcome
from mtcd.secret import Pin
from mtcd.simlock import SimLock

from pcscbench import read_card, read_record_over_pcsc

pytestmark = pytest.mark.pcsc


def _needs_modem(bench) -> None:
    if not bench.modem_port:
        pytest.skip("mtcd reads the IMEI from a modem: add --modem (its own SIM is left alone)")


def _counters(uicc) -> tuple:
    lock, iccid, pin_left, puk_left, enabled = read_card(uicc)
    return iccid, pin_left, puk_left, enabled


def _spent_nothing(uicc, start, why: str = "an attempt was spent") -> None:
    """Both counters as at the start.  A card verified since tells no PIN
    count (VERIFY without data: 9000): the presentation it accepted put the
    counter back at its maximum, which the start guard saw (full counters)."""
    _, pin_left, puk_left, _ = _counters(uicc)
    if pin_left is None and uicc.lock() is SimLock.READY and uicc.pin_enabled():
        assert puk_left == start.puk_left, why
        return
    assert (pin_left, puk_left) == (start.pin_left, start.puk_left), why


def _another_iccid(iccid: str) -> str:
    """The same issuer, another serial number: a card that is not this one."""
    body = iccid[:-1]
    body = body[:-1] + str((int(body[-1]) + 1) % 10)
    return body + str(luhn_check_digit(body))


def test_pcsc_identities(pcsc_bench, reader_uicc):
    """EF.ICCID over SELECT / READ BINARY: a valid ICCID, the card's."""
    iccid = reader_uicc.iccid()
    assert isinstance(iccid, Iccid), "EF.ICCID could not be read over PC/SC"
    assert str(iccid) == pcsc_bench.pcsc_start.iccid
    if pcsc_bench.card is not None and pcsc_bench.card.iccid is not None:
        assert iccid == pcsc_bench.card.iccid


def test_pcsc_pin_state_and_counters_spend_nothing(pcsc_bench, reader_uicc):
    """PIN1's state, enabled bit and both counters, read twice: VERIFY and
    UNBLOCK PIN without data spend nothing, so nothing moves."""
    start = pcsc_bench.pcsc_start
    assert reader_uicc.lock() in (SimLock.SIM_PIN, SimLock.READY)
    first, second = _counters(reader_uicc), _counters(reader_uicc)
    assert first == second == (start.iccid, start.pin_left, start.puk_left, start.pin_enabled)
    assert start.pin_enabled is not None, "the FCP of ADF.USIM has no PIN status template for PIN1"


@pytest.mark.needs_card
def test_pcsc_pairing_decision_for_the_right_sim(pcsc_bench, bench_card, pcsc_gateway, reader_uicc):
    """`mtcd once` with [uicc] backend = "pcsc": the card file's PIN, stored
    with `mtcctl pin set` (stdin), pairs the card; a right PIN costs nothing."""
    _needs_modem(pcsc_bench)
    iccid = pcsc_bench.pcsc_start.iccid
    stored = pcsc_gateway.mtcctl("pin", "set", iccid, stdin=bench_card.pin.reveal() + "\n")
    assert stored.returncode == 0, stored.stderr
    done = pcsc_gateway.mtcd("once", "--json")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if pcsc_bench.pcsc_start.pin_enabled is False:
        assert done.returncode == 1 and report["reason"] == "pin-disabled", report
    else:
        assert done.returncode == 0 and report["state"] == "paired", report
        assert report["iccid"] == iccid
    start = pcsc_bench.pcsc_start
    _spent_nothing(reader_uicc, start)


def test_pcsc_foreign_card_is_refused_with_nothing_presented(pcsc_bench, pcsc_gateway, reader_uicc):
    """A PIN stored for another ICCID only: the reader's card is a foreign
    one to this gateway.  Refused, the link down, no attempt spent."""
    _needs_modem(pcsc_bench)
    start = pcsc_bench.pcsc_start
    stored = pcsc_gateway.mtcctl("pin", "set", _another_iccid(start.iccid), stdin=Pin.generate(8).reveal() + "\n")
    assert stored.returncode == 0, stored.stderr
    done = pcsc_gateway.mtcd("once", "--json")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 1 and report["state"] == "refused" and report["link"] == "down", report
    if start.lock == SimLock.SIM_PIN.value:
        assert report["reason"] == "unknown-sim", report
    _spent_nothing(reader_uicc, start)


@pytest.mark.destructive
@pytest.mark.needs_card
def test_pcsc_rotation_ends_at_the_starting_pin(request, pcsc_bench, bench_card, pcsc_gateway, pcsc_restorer):
    """The PIN changed over PC/SC to a fresh one and back.  With a modem it
    is the gateway's own `mtcctl pin rotate`; without one the test sends
    CHANGE REFERENCE DATA itself, the new PIN sealed first as pending in
    this test's gateway state (where a person finds it if the restore
    fails).  The restore and the session's final check prove the rest."""
    iccid = pcsc_bench.pcsc_start.iccid
    stored = pcsc_gateway.mtcctl("pin", "set", iccid, stdin=pcsc_restorer.pin.reveal() + "\n")
    assert stored.returncode == 0, stored.stderr
    if pcsc_bench.modem_port:
        paired = pcsc_gateway.mtcd("once", "--json")
        assert paired.returncode == 0, paired.stdout + paired.stderr
        rotated = pcsc_gateway.mtcctl("pin", "rotate")
        entry = pcsc_gateway.stored_pin(iccid)
        if entry.pending_pin is not None:
            pcsc_restorer.pin = entry.pending_pin  # answer lost: the card may hold either
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        pcsc_restorer.pin = entry.pin
        assert entry.pin != bench_card.pin
    else:
        new = Pin.generate(8)
        staged = pcsc_gateway.mtcctl("pin", "stage", iccid, stdin=new.reveal() + "\n")
        assert staged.returncode == 0, staged.stderr
        from pcscbench import open_reader

        with open_reader(pcsc_bench.reader) as uicc:
            lock = uicc.lock()
            card_iccid = uicc.iccid()
            if lock is SimLock.SIM_PIN:
                assert uicc.present_pin(pcsc_restorer.pin, card_iccid) is PinOutcome.ACCEPTED, \
                    "the card file's PIN was refused"
                lock = uicc.lock()
            assert lock is SimLock.READY, lock
            pcsc_restorer.pin = new  # from here on the restore tries the new PIN first
            outcome = uicc.change_pin(bench_card.pin, new, card_iccid)
            if outcome is not PinOutcome.ACCEPTED:
                pcsc_restorer.pin = bench_card.pin if outcome is PinOutcome.REJECTED else new
            assert outcome is PinOutcome.ACCEPTED, outcome
    from pcscbench import open_reader

    with open_reader(pcsc_bench.reader) as uicc:
        start = pcsc_bench.pcsc_start
        _spent_nothing(uicc, start, "the rotation spent an attempt")


def test_pcsc_pairing_record(pcsc_bench, reader_uicc):
    """EF-UST (service n°102), EF-IPS and EF-IPD read through PC/SC: what
    the card keeps of its pairings, or why it cannot be read; never
    guessed, and reading spends nothing."""
    start = pcsc_bench.pcsc_start
    record = read_record_over_pcsc(reader_uicc)
    again = read_record_over_pcsc(reader_uicc)
    assert record.as_json() == again.as_json()
    print(f"the card's pairing record: {record.summary()}")
    if record.service is Service.NOT_AVAILABLE:
        assert record.service_why and not record.records
    elif record.service is Service.UNREADABLE:
        assert record.service_why
    if record.status_file.state is not State.PRESENT:
        assert record.status_file.why and not record.records
    for verdict in record.records:
        assert verdict.verdict is not Verdict.EMPTY, verdict  # empty records are counted apart
    _spent_nothing(reader_uicc, start)
