"""docs/hardware.md and systemd/90-mtcd-modem.rules say the same: every
modem in the guide's table has its AT and PPP port rules with the same USB
ids and interface numbers, and ModemManager is kept off it; the rule file
names no modem the guide does not describe; the commented UART lines for
the Raspberry Pi HAT are valid udev rules once uncommented."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from test_units import RULES, need, rule_lines, run

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "hardware.md"
README = ROOT / "README.md"


def guide_table() -> list[dict[str, str]]:
    """The rows of the guide's port table, by column name, backticks dropped."""
    lines = GUIDE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| modem | USB id |"))
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().replace("`", "") for c in line.strip("|").split("|")]
        rows.append(dict(zip(header, cells)))
    return rows


def _as_dicts(rules):
    return [{(k, op): v for k, op, v in r} for r in rules]


def port_rules(symlink: str) -> dict[tuple[str, str], list[str]]:
    """(vendor, product) -> the interface numbers of the rules making `symlink`."""
    found: dict[tuple[str, str], list[str]] = {}
    for r in _as_dicts(rule_lines(RULES)):
        if r.get(("SYMLINK", "+=")) == symlink and ("ENV{ID_VENDOR_ID}", "==") in r:
            ids = (r[("ENV{ID_VENDOR_ID}", "==")], r[("ENV{ID_MODEL_ID}", "==")])
            found.setdefault(ids, []).append(r[("ENV{ID_USB_INTERFACE_NUM}", "==")])
            assert r[("SUBSYSTEM", "==")] == "tty" and r[("TAG", "+=")] == "systemd", r
    return found


def _ids(row) -> tuple[str, str]:
    vendor, product = row["USB id"].split(":")
    return vendor, product


def test_the_guide_has_a_row_per_modem():
    rows = guide_table()
    assert [r["modem"] for r in rows][:1] == ["Quectel EC25 / EG25-G"]
    assert {"2c7c:0125", "1e0e:9001", "1e0e:9011", "05c6:908b"} <= {r["USB id"] for r in rows}
    for r in rows:
        assert re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{4}", r["USB id"]), r
        assert re.fullmatch(r"[0-9a-f]{2}", r["AT port"]) and re.fullmatch(r"[0-9a-f]{2}", r["PPP port"]), r


def test_each_modem_in_the_guide_has_its_rules():
    at_ports, ppp_ports = port_rules("ttyMODEM"), port_rules("ttyMODEMDATA")
    ignored = {(r[("ATTRS{idVendor}", "==")], r[("ATTRS{idProduct}", "==")])
               for r in _as_dicts(rule_lines(RULES)) if r.get(("ENV{ID_MM_DEVICE_IGNORE}", "=")) == "1"}
    for row in guide_table():
        ids = _ids(row)
        assert at_ports.get(ids) == [row["AT port"]], (row, at_ports)
        assert ppp_ports.get(ids) == [row["PPP port"]], (row, ppp_ports)
        assert ids in ignored, f"ModemManager is not kept off {row['modem']}"


def test_the_rule_names_no_modem_the_guide_does_not_describe():
    described = {_ids(r) for r in guide_table()}
    assert set(port_rules("ttyMODEM")) | set(port_rules("ttyMODEMDATA")) <= described


def _uart_lines() -> list[str]:
    return [line[1:] for line in RULES.read_text().splitlines() if line.startswith("#SUBSYSTEM==")]


def test_the_uart_lines_are_rules_once_uncommented(tmp_path):
    lines = _uart_lines()
    assert len(lines) == 2
    copy = tmp_path / "uart.rules"
    copy.write_text("\n".join(lines) + "\n")
    rules = _as_dicts(rule_lines(copy))
    assert {r[("KERNEL", "==")] for r in rules} == {"ttyS0", "ttyAMA0"}
    assert all(r[("SYMLINK", "+=")] == "ttyMODEM" and r[("TAG", "+=")] == "systemd" for r in rules)
    text = GUIDE.read_text()
    assert 'KERNEL=="ttyS0"' in text and 'KERNEL=="ttyAMA0"' in text
    assert "enable_uart=1" in text and "/dev/serial0" in text


def test_udevadm_takes_the_rule_with_the_uart_lines_uncommented(tmp_path):
    """What an operator with the HAT installs: the file with one UART line on."""
    udevadm = need("udevadm")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("udevadm test in a private mount namespace needs root and unshare")
    tty = Path("/sys/class/tty/ptmx")
    if not tty.exists():
        pytest.skip("no /sys/class/tty/ptmx to run a test event on")
    enabled = tmp_path / RULES.name
    enabled.write_text(RULES.read_text().replace("\n#SUBSYSTEM==", "\nSUBSYSTEM=="))
    script = (
        "mount -t tmpfs mtcd-test /run && mount -t tmpfs mtcd-test /dev && "
        "mount -t tmpfs mtcd-test /etc/udev/rules.d && mkdir -p /run/udev/rules.d && "
        f'cp "$1" /run/udev/rules.d/ && exec {udevadm} test --action=add {tty}'
    )
    done = run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(enabled)])
    output = done.stdout + done.stderr
    assert f"Reading rules file: /run/udev/rules.d/{RULES.name}" in output, output[-2000:]
    assert [line for line in output.splitlines() if f"rules.d/{RULES.name}:" in line] == []


def test_the_guide_says_what_it_was_checked_against_and_the_readme_links_it():
    text = GUIDE.read_text()
    assert "None of it was tried on the real" in text
    assert "/etc/udev/rules.d/" in text and "/dev/ttyMODEM" in text
    for command in ('AT+QCFG="usbnet"', "AT+CUSBPIDSWITCH", "AT+UUSBCONF", "AT+QNETDEVCTL", "AT+DIALMODE"):
        assert command in text
    assert "(docs/hardware.md)" in README.read_text()
