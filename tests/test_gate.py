"""The pairing gate end to end: `mtcd once` and `mtcctl` as separate
processes, against the simulated modem on a real pty through pyserial.

Each refusal reason, with the radio left off and no network command sent;
a rejected PIN never presented twice; lost attempts settled safely."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import network_commands, pin_presentations, puk_commands
from simfixtures import TEST_PIN, make_card, make_imei, sim_modem

WRONG_PIN = "11112222"


def assert_gate_closed(modem, run, reason):
    assert run.returncode == 1, run.stderr
    report = run.last_json
    assert report["state"] == "refused" and report["reason"] == reason
    assert report["link"] == "down"
    assert modem.radio == 4, "radio must be off after a refusal"
    assert network_commands(modem.commands) == []
    assert puk_commands(modem.commands) == []
    assert not modem.pdp_active and not modem.attached


def test_paired_sim_brings_the_link_up(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0, run.stderr
        report = run.last_json
        assert set(report) == {"ok", "state", "reason", "imei", "imeisv", "iccid", "pin_retries", "link"}
        assert report["state"] == "paired" and report["reason"] is None and report["link"] == "up"
        assert report["iccid"] == str(card.iccid) and report["imei"] == modem.imei
        assert report["imeisv"] == modem.imeisv
        assert modem.radio == 1 and modem.pdp_active and modem.apn == "iot.example"
        assert len(pin_presentations(modem.commands)) == 1
        assert puk_commands(modem.commands) == []
        assert card.pin_attempts == 3 and card.verified
        # The radio goes off before the SIM is even looked at.
        assert modem.commands.index("AT+CFUN=4") < modem.commands.index("AT+CPIN?")


def test_unknown_sim_is_refused_without_presenting_anything(gateway):
    stored, foreign = make_card(serial_number=1), make_card(serial_number=2)
    with sim_modem(foreign) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(stored.iccid))
        run = gateway.mtcd("once", "--json")
        assert_gate_closed(modem, run, "unknown-sim")
        assert pin_presentations(modem.commands) == []
        assert foreign.pin_attempts == 3


def test_no_sim(gateway):
    with sim_modem(None) as (modem, port):
        gateway.configure(port)
        assert_gate_closed(modem, gateway.mtcd("once", "--json"), "no-sim")


def test_pin_disabled_sim_is_refused(gateway):
    card = make_card(pin_enabled=False)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert_gate_closed(modem, gateway.mtcd("once", "--json"), "pin-disabled")


def test_pin_disabled_sim_allowed_by_policy_still_needs_a_known_iccid(gateway):
    card = make_card(pin_enabled=False)
    with sim_modem(card) as (modem, port):
        gateway.configure(port, policy="require_pin_enabled = false")
        assert_gate_closed(modem, gateway.mtcd("once", "--json"), "unknown-sim")
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once", "--json").returncode == 0
        assert modem.radio == 1


@pytest.mark.parametrize("left", [1])
def test_retry_guard_keeps_the_last_attempts(gateway, left):
    card = make_card(pin_attempts=left)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once", "--json")
        assert_gate_closed(modem, run, "retry-guard")
        assert run.last_json["pin_retries"] == left
        assert pin_presentations(modem.commands) == []
        assert card.pin_attempts == left


def test_retry_guard_of_three_refuses_two(gateway):
    card = make_card(pin_attempts=2)
    with sim_modem(card) as (modem, port):
        gateway.configure(port, policy="min_retries = 3")
        gateway.store_pin(str(card.iccid))
        assert_gate_closed(modem, gateway.mtcd("once", "--json"), "retry-guard")
        assert card.pin_attempts == 2


def test_rejected_pin_is_never_presented_again(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        first = gateway.mtcd("once", "--json")
        assert_gate_closed(modem, first, "pin-rejected")
        assert card.pin_attempts == 2
        assert first.last_json["pin_retries"] == 2  # what is left after the rejection
        assert len(pin_presentations(modem.commands)) == 1
        modem.power_loss()  # even after a reboot of the modem and the gateway
        for _ in range(3):
            again = gateway.mtcd("once", "--json")
            assert again.last_json["reason"] == "pin-rejected"
        assert len(pin_presentations(modem.commands)) == 1
        assert card.pin_attempts == 2
        listed = gateway.mtcctl("pin", "list", "--json").stdout
        assert json.loads(listed)["pins"][0]["state"] == "rejected"
        # A person replaces the PIN: the latch is lifted for the new one.
        gateway.store_pin(str(card.iccid), TEST_PIN)
        assert gateway.mtcd("once", "--json").returncode == 0
        assert card.pin_attempts == 3


def test_blocked_sim_is_left_for_a_person(gateway):
    card = make_card(pin_attempts=0)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert_gate_closed(modem, gateway.mtcd("once", "--json"), "sim-blocked")
        assert pin_presentations(modem.commands) == []  # no PIN and never a PUK
        assert card.puk_attempts == 10


def test_dead_card_is_a_sim_error(gateway):
    card = make_card(pin_attempts=0, puk_attempts=0)  # +CME ERROR: 13 SIM failure
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert_gate_closed(modem, gateway.mtcd("once", "--json"), "sim-error")
        assert pin_presentations(modem.commands) == []


def test_imei_change_is_reported_or_refused(gateway):
    card = make_card()
    with sim_modem(card, imei=make_imei(1)) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
    # The modem is replaced; the SIM moves to the new one.
    with sim_modem(card, imei=make_imei(2)) as (modem, port):
        gateway.configure(port)
        assert gateway.mtcd("once").returncode == 0
        history = gateway.history()
        changes = [e for e in history if e["event"] == "association-changed"]
        assert changes and changes[-1]["change"] == "imei"
        assert changes[-1]["old_imei"] == make_imei(1) and changes[-1]["new_imei"] == make_imei(2)
    with sim_modem(card, imei=make_imei(3)) as (modem, port):
        gateway.configure(port, policy='on_imei_change = "refuse"')
        run = gateway.mtcd("once", "--json")
        assert_gate_closed(modem, run, "imei-changed")
        assert pin_presentations(modem.commands) == []
        # A person re-provisions the PIN on the new modem: accepted again.
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0


def test_new_sim_is_an_association_change(gateway):
    one, two = make_card(serial_number=1), make_card(serial_number=2)
    with sim_modem(one) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(one.iccid))
        gateway.store_pin(str(two.iccid))
        assert gateway.mtcd("once").returncode == 0
        modem.remove_card()
        modem.insert_card(two)
        assert gateway.mtcd("once").returncode == 0
        assert gateway.mtcd("once").returncode == 0  # same SIM again: no new change
    events = gateway.history()
    changes = [e for e in events if e["event"] == "association-changed"]
    assert len(changes) == 1
    change = changes[-1]
    assert change["change"] == "sim"
    assert (change["old_iccid"], change["new_iccid"]) == (str(one.iccid), str(two.iccid))
    decisions = [e for e in events if e["event"] == "decision"]
    assert all(d["imei"] and d["iccid"] and "time" in d for d in decisions)
    # Masked: service.show_imsi is false by default.
    assert decisions[-1]["imsi"] == str(two.imsi)[:5] + "*" * (len(str(two.imsi)) - 5)


def test_already_unlocked_sim_is_paired_without_a_second_presentation(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
        assert gateway.mtcd("once").returncode == 0
        assert len(pin_presentations(modem.commands)) == 1


@pytest.mark.parametrize("options", [
    {"has_cpinr": False},
    {"has_cpinr": False, "has_csim": False},
    {"vendor": "quectel", "has_cpinr": False},
    {"vendor": "huawei", "has_cpinr": False},
    {"echo": True, "latency": 0.01},
])
def test_pairs_on_other_personalities(gateway, options):
    card = make_card()
    with sim_modem(card, **options) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0, run.stderr
        assert modem.radio == 1


def test_without_any_counter_a_wrong_pin_costs_one_attempt_ever(gateway):
    card = make_card()
    with sim_modem(card, has_cpinr=False, has_csim=False) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        for _ in range(3):
            gateway.mtcd("once")
        assert card.pin_attempts == 2
        assert len(pin_presentations(modem.commands)) == 1


def test_sim_ready_delay_after_unlock_is_waited_for(gateway):
    card = make_card()
    with sim_modem(card, ready_delay=1.5) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0, run.stderr
        assert len(pin_presentations(modem.commands)) == 1


# --- power cut while the PIN is out ------------------------------------------

def _kill_while_presenting(gateway, modem) -> None:
    """Start `mtcd once`, cut it off as soon as the modem has the PIN."""
    modem.fail_after("AT+CPIN=", "drop")  # the card acts, no answer comes back
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "once"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=gateway.env,
    )
    deadline = time.monotonic() + 30
    while not pin_presentations(modem.commands) and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    modem.power_loss()


@pytest.mark.parametrize("pin, card_counter, expect", [
    (TEST_PIN, True, "paired"),        # it was accepted: counter back to 3, try again
    (WRONG_PIN, True, "pin-rejected"), # the counter fell: it was rejected, latch it
    (TEST_PIN, False, "retry-guard"),  # no counter: cannot know, never guess
])
def test_power_cut_during_presentation(gateway, pin, card_counter, expect):
    card = make_card()
    options = {} if card_counter else {"has_cpinr": False, "has_csim": False}
    with sim_modem(card, **options) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), pin)
        _kill_while_presenting(gateway, modem)
        left_after_cut = card.pin_attempts
        run = gateway.mtcd("once", "--json")
        report = run.last_json
        if expect == "paired":
            assert report["state"] == "paired"
            assert len(pin_presentations(modem.commands)) == 2
        else:
            assert_gate_closed(modem, run, expect)
            assert len(pin_presentations(modem.commands)) == 1
            assert card.pin_attempts == left_after_cut
            # And it stays that way.
            assert gateway.mtcd("once", "--json").last_json["reason"] == expect
            assert len(pin_presentations(modem.commands)) == 1


def test_the_puk_detector_would_see_a_puk():
    """The check behind guarantee 2 is not vacuous: a PUK sent by hand shows."""
    from simfixtures import TEST_PUK, AtPort

    with sim_modem(make_card(pin_attempts=0)) as (modem, port):
        with AtPort(port) as at:
            at.command(f'AT+CPIN="{TEST_PUK}","{TEST_PIN}"')
        assert len(puk_commands(modem.commands)) == 1
        assert network_commands(["AT+CGACT=1,1", "ATD*99#"]) == ["AT+CGACT=1,1", "ATD*99#"]
