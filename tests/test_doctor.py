"""mtcd.doctor: from gathered facts to findings and advice (pure), and the
read-only reply parsers doctor adds."""

from __future__ import annotations

import copy
import re

import pytest

from mtcd.at import parsers
from mtcd.doctor import (
    Finding, dialect_choice, entry_summary, exit_code, findings, mm_ignore, radio_text, render, report, signal_text,
)
from mtcd.errors import ModemProtocolError

ICCID = "8949020000000000014"
KNOWN = {"generic": (), "quectel": ("quectel",), "ublox": ("u-blox", "ublox")}


def healthy(radio: int = 4) -> dict:
    """A paired gateway with nothing wrong (the radio off, as for a SIM
    that is not paired, so that each test sees only its own finding)."""
    return {
        "config": {"path": "/etc/mtcd/mtcd.toml", "port": "/dev/ttyMODEM", "vendor": "auto",
                   "state_dir": "/var/lib/mtcd", "min_retries": 2, "require_pin_enabled": True,
                   "on_imei_change": "report"},
        "port": {"path": "/dev/ttyMODEM", "exists": True, "target": "/dev/ttyUSB2", "holders": [],
                 "mm_ignore": True, "mm_ignore_by": "ID_MM_DEVICE_IGNORE", "mm_ignore_why": None,
                 "modemmanager_running": True},
        "service": {"running": False, "pid": None, "state": None, "status": None, "error": None},
        "modem": {"reachable": True, "via": "direct", "error": None, "manufacturer": "Quectel", "model": "EC25",
                  "firmware": "EC25EFAR06A06M4G", "dialect": "quectel", "dialect_reason": "vendor = auto",
                  "imei": "359999000000018", "imeisv": "3599990000000101", "sim_state": "READY", "iccid": ICCID,
                  "pin_attempts": 3, "pin_attempts_source": "+QPINC", "puk_attempts": 10,
                  "puk_attempts_source": "+QPINC", "pin_enabled": True, "radio": radio, "registration": 1,
                  "eps_registration": 1, "signal_rssi": 20, "unreadable": {}},
        "keystore": {"sealer": "file (0600, not sealed)", "error": None, "stored_pins": 1,
                     "entry": {"state": "active", "transport": False, "pending": None, "pending_rejected": False,
                               "attempt_in_flight": False, "last_imei": "359999000000018"}},
        "last_decision": {"time": "2026-11-30T10:00:00+00:00", "outcome": "paired", "reason": None,
                          "iccid": ICCID},
    }


def with_(facts: dict, **changes) -> dict:
    """A copy with "section__key" changes applied (a bare name: a whole section)."""
    out = copy.deepcopy(facts)
    for dotted, value in changes.items():
        section, _, key = dotted.partition("__")
        if key:
            out[section][key] = value
        else:
            out[section] = value
    return out


def codes(found: list[Finding]) -> list[str]:
    return [f.code for f in found]


def only(facts, code, available=()) -> Finding:
    found = findings(facts, available)
    assert codes(found) == [code], found
    return found[0]


# -- the healthy gateway ------------------------------------------------------------

def test_healthy_gateway_has_no_findings_and_exits_0():
    facts = healthy(radio=1)
    assert findings(facts) == []
    assert exit_code(facts, []) == 0
    assert report(facts, [])["problems"] == [] and report(facts, [])["exit"] == 0


# -- the SIM ----------------------------------------------------------------------------

def test_unknown_sim_names_the_iccid_and_both_ways_in():
    f = only(with_(healthy(), keystore__entry=None, modem__sim_state="SIM PIN"), "unknown-sim")
    assert ICCID in f.problem
    assert f"`mtcctl pin set {ICCID}`" in f.next and "`mtcctl pair`" in f.next


def test_unknown_sim_with_pin_disabled_points_to_pair():
    f = only(with_(healthy(), keystore__entry=None, modem__pin_enabled=False), "unknown-sim")
    assert "`mtcctl pair`" in f.next and "disabled" in f.problem


@pytest.mark.parametrize("puk, flag", [(10, False), (2, False), (1, True), (None, False)])
def test_sim_puk_points_to_unblock(puk, flag):
    f = only(with_(healthy(), modem__sim_state="SIM PUK", modem__puk_attempts=puk, modem__pin_attempts=0), "sim-puk")
    assert f.next.startswith("`mtcctl sim unblock")
    assert ("--allow-last-attempt" in f.next) is flag


def test_sim_without_puk_attempts_is_dead():
    f = only(with_(healthy(), modem__sim_state="SIM PUK", modem__puk_attempts=0), "sim-dead")
    assert "mtcctl sim unblock" not in f.next


@pytest.mark.parametrize("left", [0, 1])
def test_retry_guard_never_points_to_a_missing_command(left):
    facts = with_(healthy(), modem__sim_state="SIM PIN", modem__pin_attempts=left)
    without = only(facts, "retry-guard")
    assert "pin try" not in without.next and "mtcctl sim unblock" in without.next
    with_try = only(facts, "retry-guard", available={"pin try", "pin set"})
    # The command named must be one pin try accepts in that state: the last
    # attempt needs its own flag.
    needed = "`mtcctl pin try --below-guard --last-attempt`" if left == 1 else "`mtcctl pin try --below-guard`"
    assert needed in with_try.next


def test_at_the_guard_is_no_problem():
    assert findings(with_(healthy(), modem__sim_state="SIM PIN", modem__pin_attempts=2)) == []


def test_locked_sim_without_a_counter():
    f = only(with_(healthy(), modem__sim_state="SIM PIN", modem__pin_attempts=None), "attempts-unreadable")
    assert "presents nothing" in f.problem
    assert "pin try" not in f.next
    # pin try presents without a counter when a person confirms it below the guard.
    f = only(with_(healthy(), modem__sim_state="SIM PIN", modem__pin_attempts=None), "attempts-unreadable",
             available={"pin try"})
    assert "`mtcctl pin try --below-guard`" in f.next


def test_rejected_pin_points_to_pin_set():
    entry = dict(healthy()["keystore"]["entry"], state="rejected")
    f = only(with_(healthy(), keystore__entry=entry, modem__sim_state="SIM PIN", modem__pin_attempts=1),
             "pin-rejected")
    assert f.next.startswith(f"`mtcctl pin set {ICCID}`")


def test_compromised_pin_on_an_unlocked_sim_points_to_rotate():
    entry = dict(healthy()["keystore"]["entry"], state="compromised")
    assert "`mtcctl pin rotate`" in only(with_(healthy(), keystore__entry=entry), "pin-compromised").next


def test_pin_disabled_with_a_stored_pin():
    f = only(with_(healthy(), modem__pin_enabled=False), "pin-disabled")
    assert f"`mtcctl pin forget {ICCID}`" in f.next
    # The policy allows it: nothing to fix.
    allowed = with_(healthy(), modem__pin_enabled=False, config__require_pin_enabled=False)
    assert findings(allowed) == []


def test_imei_change_only_matters_when_the_policy_refuses_it():
    entry = dict(healthy()["keystore"]["entry"], last_imei="359999000000026")
    assert findings(with_(healthy(), keystore__entry=entry)) == []
    f = only(with_(healthy(), keystore__entry=entry, config__on_imei_change="refuse"), "imei-changed")
    assert f"`mtcctl pin set {ICCID}`" in f.next


@pytest.mark.parametrize("state, code", [("NOT INSERTED", "no-sim"), ("BUSY", "sim-busy"),
                                         ("PH-NET PIN", "sim-state"), (None, "sim-state-unreadable")])
def test_other_sim_states(state, code):
    only(with_(healthy(), modem__sim_state=state), code)


def test_unreadable_iccid():
    only(with_(healthy(), modem__iccid=None), "iccid-unreadable")


# -- the port, the service, the keystore -------------------------------------------------

def test_port_held_by_modemmanager_points_to_the_udev_rule():
    facts = with_(healthy(), port__holders=[{"pid": 612, "name": "ModemManager", "unit": "ModemManager.service"}])
    f = only(facts, "port-held-by-modemmanager")
    assert "ID_MM_DEVICE_IGNORE" in f.next and "udevadm" in f.next


def test_other_holders_are_named():
    f = only(with_(healthy(), port__holders=[{"pid": 4711, "name": "minicom", "unit": None}]), "port-held")
    assert "minicom (pid 4711)" in f.problem and "kill 4711" in f.next


def test_the_service_and_a_pty_master_are_not_rivals():
    facts = with_(healthy(), service__running=True, service__pid=812,
                  port__holders=[{"pid": 812, "name": "mtcd", "unit": "mtcd.service"},
                                 {"pid": 900, "name": "python", "unit": None, "pty_master": True}])
    assert findings(facts) == []
    text = "\n".join(render(facts, []))
    assert "mtcd (pid 812, mtcd.service, the service); python (pid 900, the pseudo-terminal's master" in text


def test_modemmanager_not_told_to_ignore_the_port():
    facts = with_(healthy(), port__mm_ignore=False)
    assert "udevadm trigger" in only(facts, "modemmanager-not-told").next
    # Unknown (no udevadm) or ModemManager absent: nothing claimed.
    assert findings(with_(healthy(), port__mm_ignore=None)) == []
    assert findings(with_(healthy(), port__mm_ignore=False, port__modemmanager_running=False)) == []


def test_unreachable_modem_exits_69_and_still_reports_the_rest():
    facts = with_(healthy(), modem={"reachable": False, "via": "direct", "error": "/dev/ttyMODEM: no such file",
                                    "unreadable": {}}, port__exists=False)
    found = findings(facts)
    assert codes(found) == ["port-missing", "modem-unreachable"]
    assert exit_code(facts, found) == 69
    text = "\n".join(render(facts, found))
    assert "unreachable: /dev/ttyMODEM: no such file" in text and "sealer:" in text and "service:" in text
    assert "None" not in text


def test_keystore_unreadable_is_a_problem_and_no_sim_is_called_unknown():
    facts = with_(healthy(), keystore__error="permission denied", keystore__entry=None)
    found = findings(facts)
    assert codes(found) == ["keystore-unreadable"] and "as root" in found[0].next
    damaged = with_(facts, keystore__error="keystore.json: authentication failed")
    assert "pin set" in findings(damaged)[0].next
    # A SIM's own state is still reported.
    assert codes(findings(with_(facts, modem__sim_state="SIM PUK"))) == ["keystore-unreadable", "sim-puk"]


# -- the human form ------------------------------------------------------------------

def test_render_is_aligned_and_never_says_none():
    facts = with_(healthy(), keystore__entry=None, modem__sim_state="SIM PIN", modem__pin_enabled=None,
                  modem__unreadable={"pin_enabled": "+CME ERROR: 11"}, modem__eps_registration=None,
                  modem__firmware=None, last_decision=None)
    found = findings(facts)
    lines = render(facts, found)
    text = "\n".join(lines)
    assert "None" not in text
    assert "PIN enabled:" in text and "unreadable (+CME ERROR: 11)" in text
    assert re.search(r"firmware: +not asked", text)
    labels = [line for line in lines if not line.startswith("  ")]
    columns = {line.index(":") + 1 + len(line[line.index(":") + 1:]) - len(line[line.index(":") + 1:].lstrip())
               for line in labels}
    assert len(columns) == 1, lines  # every value starts in the same column
    assert any(line.startswith("  no PIN is stored") and " -> " in line for line in lines)


def test_value_texts():
    assert radio_text(4) == "off, SIM powered (CFUN=4)"
    assert signal_text(99).startswith("not known") and signal_text(20) == "-73 dBm (CSQ 20)"
    assert entry_summary(None) == "no entry"
    assert "pending change (staged)" in entry_summary({"state": "active", "pending": "staged"})
    assert "transport PIN" in entry_summary({"state": "active", "transport": True})


# -- small readings ------------------------------------------------------------------

def test_dialect_choice_says_why():
    assert dialect_choice("huawei", "Quectel", KNOWN) == ("huawei", 'configured: [modem] vendor = "huawei"')
    name, why = dialect_choice("auto", "u-blox AG", KNOWN)
    assert name == "ublox" and '"u-blox"' in why
    assert dialect_choice("auto", "Acme", KNOWN)[0] == "generic"
    assert dialect_choice("auto", None, KNOWN)[0] == "generic"


def test_mm_ignore_from_udev_properties():
    assert mm_ignore("DEVNAME=/dev/ttyUSB2\nID_MM_DEVICE_IGNORE=1\n") == (True, "ID_MM_DEVICE_IGNORE")
    assert mm_ignore("ID_MM_PORT_IGNORE=1\n") == (True, "ID_MM_PORT_IGNORE")
    assert mm_ignore("ID_MM_DEVICE_IGNORE=0\nDEVNAME=/dev/ttyUSB2\n") == (False, None)


def test_reply_parsers():
    assert parsers.parse_registration(["+CREG: 0,5"], "+CREG") == 5
    assert parsers.parse_registration(['+CEREG: 2,1,"1A2B","01C2D3E4",7'], "+CEREG") == 1
    assert parsers.parse_csq(["+CSQ: 31,99"]) == 31
    assert parsers.parse_identity_text(["Revision: EC25EFAR06A06M4G"], "AT+CGMR", ("+CGMR:", "Revision:")) \
        == "EC25EFAR06A06M4G"
    assert parsers.parse_identity_text(['+CGMM: "SIM7600"'], "AT+CGMM", ("+CGMM:",)) == "SIM7600"
    for bad in (lambda: parsers.parse_csq(["+CSQ: x,1"]), lambda: parsers.parse_registration(["+CREG: 0"], "+CREG"),
                lambda: parsers.parse_identity_text([], "AT+CGMR", ())):
        with pytest.raises(ModemProtocolError):
            bad()


@pytest.mark.parametrize("running, command", [(False, "`mtcd once`"), (True, "`systemctl restart mtcd`")])
def test_radio_on_with_an_unpaired_sim(running, command):
    facts = with_(healthy(radio=1), keystore__entry=None, service__running=running)
    found = findings(facts)
    assert codes(found) == ["unknown-sim", "radio-on-unpaired"]
    assert found[1].next.startswith(command)
    # Paired, or the radio off: nothing to say about it.
    assert findings(healthy(radio=1)) == []
    assert codes(findings(with_(healthy(radio=4), keystore__entry=None))) == ["unknown-sim"]


def test_a_service_that_refuses_this_user():
    facts = with_(healthy(), service__running=True, service__error="permission denied", service__error_exit=77,
                  modem={"reachable": False, "via": "service", "error": "permission denied", "unreadable": {}})
    found = findings(facts)
    assert codes(found) == ["modem-unreachable"] and "as root" in found[0].next
    assert exit_code(facts, found) == 69
