"""Pairing through the real ModemManager (`[modem] driver = "modemmanager"`).

ModemManager (Debian `modemmanager`) drives the project's simulator on a pty,
on a private system bus, in its own mount namespace (tests/mmstack.py).
`mtcd once` talks to it over D-Bus; the simulator's command log shows what
reached the modem, whoever sent it.  Skipped only where the stack cannot run
(not root, ModemManager not installed), with that reason.
"""

from __future__ import annotations

import signal

import pytest

import mmstack
from conftest import network_commands, pin_presentations, puk_commands
from mmstack import mm_rig, mm_shared  # noqa: F401  (the module's shared ModemManager)
from simfixtures import TEST_PIN, make_card

pytestmark = pytest.mark.skipif(mmstack.missing() is not None, reason=mmstack.missing() or "")

# What would put a SIM on the network or use it (guarantee 3): MM's own
# AT+COPS=3,n only sets the operator name format, so it is not counted.
ON_AIR = ("AT+CGACT=1", "AT+CGATT=1", "ATD", "AT+CFUN=1")


def on_air(commands: list[str]) -> list[str]:
    return [c for c in commands if c.upper().startswith(ON_AIR)]


def test_modemmanager_right_sim_pairs_with_one_send_pin(mm_rig):
    card = make_card()
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    before = len(r.modem.commands)
    run = r.gateway.mtcd("once", "--json", timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    report = run.last_json
    assert report["state"] == "paired" and report["iccid"] == card.iccid.value and report["link"] == "up"
    assert report["imei"] == r.modem.imei
    # Exactly one PIN reached the modem, and only after mtcd asked for it.
    assert len(pin_presentations(r.modem.commands)) == 1
    assert not pin_presentations(r.modem.commands[:before])
    assert r.stack.state() in ("enabled", "registered", "searching")
    assert TEST_PIN not in run.stdout + run.stderr
    assert TEST_PIN not in (r.stack.root / "ModemManager.log").read_text(errors="replace")
    assert not r.gateway.keystore().get(card.iccid).attempt_started  # the marker is settled


def test_modemmanager_foreign_sim_refused_without_send_pin(mm_rig):
    card = make_card(serial_number=7)
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(make_card(serial_number=8).iccid.value)  # another card's PIN
    run = r.gateway.mtcd("once", "--json", timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.last_json["reason"] == "unknown-sim" and run.last_json["link"] == "down"
    assert pin_presentations(r.modem.commands) == [] and puk_commands(r.modem.commands) == []
    assert on_air(r.modem.commands) == []
    assert r.stack.state() == "locked"


def test_modemmanager_wrong_pin_presented_once_then_never_again(mm_rig):
    card = make_card()
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value, "11112222")
    first = r.gateway.mtcd("once", "--json", timeout=120)
    assert first.returncode == 1, first.stdout + first.stderr
    assert first.last_json["reason"] == "pin-rejected"
    assert len(pin_presentations(r.modem.commands)) == 1
    assert card.pin_attempts == 2
    # The next run (a restart) reads the latch: nothing is sent again.
    second = r.gateway.mtcd("once", "--json", timeout=120)
    assert second.returncode == 1 and second.last_json["reason"] == "pin-rejected"
    assert len(pin_presentations(r.modem.commands)) == 1 and card.pin_attempts == 2
    assert puk_commands(r.modem.commands) == [] and on_air(r.modem.commands) == []
    assert "11112222" not in first.stdout + first.stderr + second.stdout + second.stderr


def test_modemmanager_retry_guard_keeps_the_pin(mm_rig):
    card = make_card(pin_attempts=1)
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    run = r.gateway.mtcd("once", "--json", timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.last_json["reason"] == "retry-guard" and run.last_json["pin_retries"] == 1
    assert pin_presentations(r.modem.commands) == [] and on_air(r.modem.commands) == []
    assert card.pin_attempts == 1


def test_modemmanager_unlocked_card_without_low_power_fails_closed(mm_rig):
    """A card whose PIN is disabled leaves the modem unlocked; ModemManager's
    generic plugin (the one that drives the simulator) has no low-power
    command, so once the card is refused mtcd cannot confirm the radio off
    and stops with exit 69: no PIN, nothing on the air, the modem disabled."""
    card = make_card(pin_enabled=False)
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    run = r.gateway.mtcd("once", "--json", timeout=120)
    assert run.returncode == 69, run.stdout + run.stderr
    assert "the radio could not be switched off" in run.last_json["message"]
    assert "Unsupported" in run.last_json["message"]
    decisions = [e for e in r.gateway.history() if e.get("event") == "decision"]
    assert decisions[-1]["outcome"] == "refused" and decisions[-1]["reason"] == "pin-disabled"
    assert pin_presentations(r.modem.commands) == [] and on_air(r.modem.commands) == []
    assert r.stack.state() == "disabled"


def test_modemmanager_blocked_sim_never_gets_a_puk(mm_rig):
    card = make_card(pin_attempts=0)
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    run = r.gateway.mtcd("once", "--json", timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.last_json["reason"] == "sim-blocked"
    assert pin_presentations(r.modem.commands) == [] and puk_commands(r.modem.commands) == []
    assert on_air(r.modem.commands) == []


def test_modemmanager_datalink_connects_only_after_pairing(mm_rig):
    card = make_card()
    r = mm_rig(card)
    r.configure(datalink='backend = "modemmanager"\napn = "iot.example"')
    r.gateway.store_pin(card.iccid.value)
    run = r.gateway.mtcd("once", "--json", timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.last_json["state"] == "paired" and run.last_json["link"] == "up"
    assert r.stack.state() == "connected"
    commands = r.modem.commands
    pin_at = commands.index(pin_presentations(commands)[0])
    dial_at = next(i for i, c in enumerate(commands) if c.upper().startswith("ATD"))
    assert pin_at < dial_at  # nothing on the air before the gate opened
    assert not on_air(commands[:pin_at])
    assert r.modem.contexts[1] == ("IP", "iot.example")


def test_modemmanager_datalink_refused_sim_never_connects(mm_rig):
    card = make_card(serial_number=9)
    r = mm_rig(card)
    r.configure(datalink='backend = "modemmanager"\napn = "iot.example"')
    run = r.gateway.mtcd("once", "--json", timeout=120)
    assert run.returncode == 1 and run.last_json["reason"] == "unknown-sim", run.stdout + run.stderr
    assert on_air(r.modem.commands) == [] and pin_presentations(r.modem.commands) == []
    # ModemManager's probe asks AT+CGDCONT=? (what it may define); nothing is defined.
    assert not any(c.upper().startswith("AT+CGDCONT=") and c != "AT+CGDCONT=?" for c in r.modem.commands)
    assert r.modem.contexts == {}
    assert r.stack.state() == "locked"


def test_modemmanager_refuses_while_networkmanager_holds_a_pin(mm_rig, tmp_path, monkeypatch):
    """The driver, in this process against the real ModemManager: a GSM
    profile with gsm.pin stops it before anything is decided (exit 78)."""
    from mtcd.config import load_config
    from mtcd.errors import ConfigError
    from mtcd.service import Gateway as ServiceGateway

    card = make_card()
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    profiles = tmp_path / "system-connections"
    profiles.mkdir()
    (profiles / "lte.nmconnection").write_text(
        "[connection]\nid=lte\ntype=gsm\n\n[gsm]\napn=iot.example\npin=" + TEST_PIN + "\n")
    for key, value in r.gateway.env.items():
        if key.startswith(("DBUS_", "SYSTEMD_CREDENTIAL")):
            monkeypatch.setenv(key, value)
    gw = ServiceGateway(load_config(r.gateway.config))
    gw.nm_profile_dirs = (profiles,)
    with gw, pytest.raises(ConfigError) as refused:
        gw.pair_once()
    assert "NetworkManager profile 'lte'" in str(refused.value) and TEST_PIN not in str(refused.value)
    assert pin_presentations(r.modem.commands) == [] and on_air(r.modem.commands) == []
    assert r.stack.state() == "locked"


def test_modemmanager_service_pairs_and_stops_with_the_link_down(mm_rig, tmp_path):
    """`mtcd run` over ModemManager: READY=1 once paired and connected;
    SIGTERM disconnects and disables the modem (and says that ModemManager's
    generic plugin cannot put it in low power)."""
    card = make_card()
    r = mm_rig(card)
    r.configure(datalink='backend = "modemmanager"\napn = "iot.example"')
    r.gateway.store_pin(card.iccid.value)
    with mmstack.mtcd_run(r.gateway, tmp_path / "notify.sock") as (proc, notify):
        ready = notify.wait_for("READY", "1", timeout=120)
        assert ready["STATUS"] == f"paired ICCID {card.iccid}, link up"
        assert r.stack.state() == "connected"
        proc.send_signal(signal.SIGTERM)
        notify.wait_for("STOPPING", "1", timeout=60)
        proc.wait(90)
    err = proc.stderr_text
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert r.stack.state() == "disabled", err
    assert len(pin_presentations(r.modem.commands)) == 1
    # The generic plugin has no low power: said, not hidden (see README).
    assert "the radio could not be switched off" in err and "Unsupported" in err


def test_modemmanager_puk_only_when_a_person_unblocks(mm_rig):
    """A blocked card: `mtcd once` sends nothing; `mtcctl sim unblock` (the
    PUK typed by a person) goes out as one Sim.SendPuk, and the next
    `mtcd once` pairs with the new PIN it stored."""
    from simfixtures import TEST_PUK

    card = make_card(pin_attempts=0)
    r = mm_rig(card)
    r.configure()
    refused = r.gateway.mtcd("once", "--json", timeout=120)
    assert refused.returncode == 1 and refused.last_json["reason"] == "sim-blocked"
    assert puk_commands(r.modem.commands) == [] and pin_presentations(r.modem.commands) == []
    unblock = r.gateway.mtcctl("sim", "unblock", stdin=f"{TEST_PUK}\n13572468\n", timeout=120)
    assert unblock.returncode == 0, unblock.stdout + unblock.stderr
    assert len(puk_commands(r.modem.commands)) == 1 and card.pin_attempts == 3
    assert TEST_PUK not in unblock.stdout + unblock.stderr
    paired = r.gateway.mtcd("once", "--json", timeout=180)
    assert paired.returncode == 0 and paired.last_json["state"] == "paired", paired.stdout + paired.stderr
    assert len(puk_commands(r.modem.commands)) == 1


def test_modemmanager_service_loses_the_modem_and_pairs_again(mm_rig, tmp_path):
    """ModemManager drops the modem (the port went away): `mtcd run` reports
    it within seconds; when the modem is back it pairs again by itself."""
    card = make_card()
    r = mm_rig(card)
    r.configure(modem="")
    r.gateway.store_pin(card.iccid.value)
    with mmstack.mtcd_run(r.gateway, tmp_path / "notify.sock") as (proc, notify):
        ready = notify.wait_for("READY", "1", timeout=120)
        assert ready["STATUS"].startswith("paired")
        r.stack.withdraw(r.port)
        lost = mmstack.status_seen(notify, "modem unavailable", 20)
        r.stack.announce(r.port)
        mmstack.status_seen(notify, "paired", 90, start=lost + 1)
    err = proc.stderr_text
    assert proc.returncode == 0 and "Traceback" not in err, err
    # The card stayed unlocked: the PIN went out once, at the first pairing.
    assert len(pin_presentations(r.modem.commands)) == 1
