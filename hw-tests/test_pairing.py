"""Pairing decisions with the real `mtcd once` against the bench modem:
the right SIM (its PIN from the card file, stored with `mtcctl pin set`,
given on stdin) is paired, a second SIM is refused without anything
presented to it.  The data link is `none`: nothing is attached."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ask_person, read_counters


def test_mtcd_once_on_the_bench(request, modem_port, tmp_path):
    state_dir = request.config.getoption("--state-dir")
    if not state_dir:
        pytest.skip("pairing with your own state needs --state-dir holding the inserted SIM's PIN (mtcctl pin set)")
    config = tmp_path / "mtcd.toml"
    config.write_text(
        f'state_dir = "{state_dir}"\n[modem]\nport = "{modem_port}"\n'
        f'vendor = "{request.config.getoption("--vendor")}"\n[datalink]\nbackend = "none"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "mtcd.cli.daemon", "--config", str(config), "once", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["state"] in ("paired", "refused")
    assert (report["state"] == "paired") == (done.returncode == 0)
    if report["state"] == "refused":
        assert report["link"] == "down"


@pytest.mark.needs_card
def test_the_right_sim_is_paired(bench, bench_card, bench_gateway):
    """Presents the card file's PIN once: a right PIN costs nothing (the
    counter goes back to full); a wrong card file shows at the final check."""
    iccid = bench.start.iccid
    stored = bench_gateway.mtcctl("pin", "set", iccid, stdin=bench_card.pin.reveal() + "\n")
    assert stored.returncode == 0, stored.stderr
    done = bench_gateway.mtcd("once", "--json")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if bench.start.lock == "READY" and bench.start.pin_enabled is False:
        assert report["reason"] == "pin-disabled", report
        return
    assert done.returncode == 0 and report["state"] == "paired", report
    assert report["iccid"] == iccid


@pytest.mark.needs_card
def test_a_foreign_sim_is_refused(request, bench, bench_card, bench_gateway):
    if not request.config.getoption("--foreign-sim"):
        pytest.skip("needs a second SIM at hand: --foreign-sim (the suite asks you to swap)")
    stored = bench_gateway.mtcctl("pin", "set", bench.start.iccid, stdin=bench_card.pin.reveal() + "\n")
    assert stored.returncode == 0, stored.stderr
    ask_person(request, "Power the modem down if its slot needs it, put the SECOND (foreign) SIM in, power up")
    from conftest import wait_for_modem

    wait_for_modem(bench)
    with bench.open_modem() as modem:
        lock, iccid, pin_left, puk_left, _ = read_counters(modem)
    assert iccid and iccid != bench.start.iccid, "the test SIM is still in the slot"
    try:
        done = bench_gateway.mtcd("once", "--json")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        with bench.open_modem() as modem:
            after = read_counters(modem)
        assert done.returncode == 1 and report["state"] == "refused", report
        if lock == "SIM PIN":
            assert report["reason"] == "unknown-sim", report
        assert after[2:4] == (pin_left, puk_left), "the foreign SIM lost attempts: something was presented to it"
    finally:
        ask_person(request, "Put the TEST SIM back (power down first if needed) and power up")
        wait_for_modem(bench)
