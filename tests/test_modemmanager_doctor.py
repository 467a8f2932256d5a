"""`mtcctl doctor` with `[modem] driver = "modemmanager"`: ModemManager
reachable on the system bus, the modem on the configured port there, mtcd's
udev rule NOT wanted (flagged when in effect), and the SIM facts read from
ModemManager's properties instead of the AT port (nothing sent to the modem).
The real stack where it can run (root); the pure parts everywhere."""

from __future__ import annotations

import os

import pytest

import mmstack
from conftest import Gateway
from mtcd.doctor import findings
from mtcd.doctor_mm import udev_rule_in_effect
from simfixtures import make_card
from mmstack import mm_rig, mm_shared  # noqa: F401  (the module's shared ModemManager)

needs_stack = pytest.mark.skipif(mmstack.missing() is not None, reason=mmstack.missing() or "")


@needs_stack
def test_modemmanager_doctor_reads_the_sim_through_dbus(mm_rig):
    card = make_card()
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    sent = len(r.modem.commands)
    run = r.gateway.mtcctl("doctor", "--json", timeout=60)
    assert run.returncode == 1, run.stdout + run.stderr
    facts = run.last_json
    mm = facts["modemmanager"]
    assert mm["reachable"] and mm["modem"].startswith("/org/freedesktop/ModemManager1/Modem/")
    assert mm["primary_port"] == r.port.removeprefix("/dev/") and mm["state"] == "locked"
    assert mm["plugin"] == "generic" and mm["version"]
    assert mm["udev_rule"] == udev_rule_in_effect()  # this machine's, whatever it is
    modem = facts["modem"]
    assert modem["via"] == "modemmanager" and modem["imei"] == r.modem.imei
    assert (modem["sim_state"], modem["iccid"]) == ("SIM PIN", card.iccid.value)
    assert (modem["pin_attempts"], modem["puk_attempts"], modem["pin_enabled"]) == (3, 10, True)
    # ModemManager holds the port by design: no "held by ModemManager" problem, no AT from doctor.
    # The one problem: the generic plugin notices no SIM swap (measured, see test_modemmanager_hotswap).
    assert [p["code"] for p in facts["problems"]] == ["modemmanager-no-hot-swap"]
    assert r.modem.commands[sent:] == []
    text = r.gateway.mtcctl("doctor", timeout=60)
    assert text.returncode == 1, text.stdout + text.stderr
    assert "through ModemManager (D-Bus)" in text.stdout and "plugin generic" in text.stdout
    assert "None" not in text.stdout


@needs_stack
def test_modemmanager_doctor_through_the_running_service(mm_rig, tmp_path):
    card = make_card()
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    with mmstack.mtcd_run(r.gateway, tmp_path / "notify.sock") as (proc, notify):
        notify.wait_for("READY", "1", timeout=120)
        run = r.gateway.mtcctl("doctor", "--json", timeout=60)
    err = proc.stderr_text
    assert "Traceback" not in err, err
    facts = run.last_json
    assert facts["service"]["running"] and facts["modem"]["via"] == "service"
    assert (facts["modem"]["sim_state"], facts["modem"]["iccid"]) == ("READY", card.iccid.value)
    assert facts["modemmanager"]["reachable"] and facts["modemmanager"]["modem"]
    assert run.returncode in (0, 1), run.stdout + run.stderr
    assert "modemmanager-unreachable" not in {p["code"] for p in facts["problems"]}


@needs_stack
def test_modemmanager_doctor_no_modem_on_the_configured_port(mm_rig):
    card = make_card()
    r = mm_rig(card)
    r.gateway.configure("/dev/ttyUSB97", datalink='backend = "none"',
                        modem='driver = "modemmanager"\ntimeout = 5')
    run = r.gateway.mtcctl("doctor", "--json", timeout=60)
    assert run.returncode == 69, run.stdout + run.stderr
    codes = [p["code"] for p in run.last_json["problems"]]
    assert "modemmanager-no-modem" in codes and "modem-unreachable" in codes
    assert run.last_json["modemmanager"]["reachable"] and run.last_json["modemmanager"]["modem"] is None


def test_modemmanager_doctor_without_modemmanager_on_the_bus(tmp_path):
    """No ModemManager (here: a bus address where nothing listens): exit 69,
    said in one line each, no traceback."""
    gw = mmstack.mm_gateway_class(Gateway)(tmp_path / "gw")
    gw.root.mkdir()
    gw.bus_address = f"unix:path={tmp_path / 'no-bus'}"
    gw.configure("/dev/ttyUSB2", datalink='backend = "none"', modem='driver = "modemmanager"')
    run = gw.mtcctl("doctor", "--json", timeout=60)
    assert run.returncode == 69, run.stdout + run.stderr
    assert "Traceback" not in run.stderr
    codes = [p["code"] for p in run.last_json["problems"]]
    assert codes[0] == "modemmanager-unreachable" and "modem-unreachable" in codes
    assert "port-held-by-modemmanager" not in codes and "modemmanager-not-told" not in codes
    text = gw.mtcctl("doctor", timeout=60)
    assert text.returncode == 69 and "ModemManager" in text.stdout and "Traceback" not in text.stderr


def _facts(mm: dict, port: dict | None = None) -> dict:
    return {
        "config": {"path": "/etc/mtcd/mtcd.toml", "port": "/dev/ttyUSB2", "min_retries": 2},
        "port": port or {"path": "/dev/ttyUSB2", "exists": True, "holders": [
            {"pid": 400, "name": "ModemManager", "unit": "ModemManager.service", "pty_master": False}],
            "mm_ignore": False, "modemmanager_running": True},
        "service": {"running": False},
        "modem": {"reachable": True, "sim_state": "SIM PIN", "iccid": "8949020000000000014", "pin_attempts": 3,
                  "radio": None},
        "keystore": {"entry": {"state": "active"}},
        "modemmanager": mm,
    }


MM_OK = {"reachable": True, "error": None, "modem": "/org/freedesktop/ModemManager1/Modem/0", "udev_rule": None}


def test_modemmanager_doctor_findings_want_modemmanager_on_the_port():
    # ModemManager holding the port is how this driver works: no finding.
    assert findings(_facts(MM_OK)) == []
    # Its generic plugin notices no SIM swap: said, with the way out.
    blind = findings(_facts(dict(MM_OK, plugin="generic")))
    assert [f.code for f in blind] == ["modemmanager-no-hot-swap"] and "serial driver" in blind[0].next
    assert "which does not notice a SIM swap" in blind[0].problem
    # A plugin nobody measured is re-probed like the generic one: said too.
    unmeasured = findings(_facts(dict(MM_OK, plugin="telit")))
    assert [f.code for f in unmeasured] == ["modemmanager-no-hot-swap"]
    assert "telit plugin, which is not known to notice a SIM swap" in unmeasured[0].problem
    assert findings(_facts(dict(MM_OK, plugin="quectel"))) == []
    # mtcd's rule in effect: flagged, with how to mask it.
    flagged = findings(_facts(dict(MM_OK, udev_rule="/etc/udev/rules.d/90-mtcd-modem.rules")))
    assert [f.code for f in flagged] == ["udev-rule-keeps-modemmanager-off"]
    assert "ln -s /dev/null /etc/udev/rules.d/90-mtcd-modem.rules" in flagged[0].next
    # The property set on the port by a rule of another name: flagged too.
    port = dict(_facts(MM_OK)["port"], mm_ignore=True, mm_ignore_by="ID_MM_DEVICE_IGNORE")
    assert [f.code for f in findings(_facts(MM_OK, port))] == ["udev-rule-keeps-modemmanager-off"]
    # The serial driver (no modemmanager part) still wants ModemManager off the port.
    serial = _facts(MM_OK)
    serial["modemmanager"] = None
    assert "port-held-by-modemmanager" in [f.code for f in findings(serial)]


def test_modemmanager_udev_rule_in_effect(tmp_path):
    etc, lib = tmp_path / "etc", tmp_path / "lib"
    etc.mkdir()
    lib.mkdir()
    dirs = (str(etc), str(lib))
    assert udev_rule_in_effect(dirs) is None
    (lib / "90-mtcd-modem.rules").write_text('ENV{ID_MM_DEVICE_IGNORE}="1"\n')
    assert udev_rule_in_effect(dirs) == str(lib / "90-mtcd-modem.rules")
    os.symlink("/dev/null", etc / "90-mtcd-modem.rules")  # masked, as the README says
    assert udev_rule_in_effect(dirs) is None
    (etc / "90-mtcd-modem.rules").unlink()
    (etc / "90-mtcd-modem.rules").write_text('ENV{ID_MM_DEVICE_IGNORE}="1"\n')  # a copy in /etc wins
    assert udev_rule_in_effect(dirs) == str(etc / "90-mtcd-modem.rules")
