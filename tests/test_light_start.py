"""`--help`, usage errors and configuration errors load only what they need.

On a 512 MB gateway a technician's typo should not pay for the whole stack
(keystore, sealers, cryptography, the modem).  This checks which modules
were imported, not how long it took: timing lives in bench/start_cost.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("mtcd.service", "mtcd.gatekeeper", "mtcd.keystore", "mtcd.sealers", "mtcd.uicc", "mtcd.datalink",
         "cryptography", "serial")

PROBE = """
import json, sys
from mtcd.cli.{module} import main
try:
    main({argv!r})
except SystemExit:
    pass
sys.__stdout__.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def imported(module: str, argv: list[str]) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(module=module, argv=argv)],
                          capture_output=True, text=True, timeout=60)
    line = next(l for l in done.stdout.splitlines() if l.startswith("MODULES "))
    return set(json.loads(line[len("MODULES "):]))


@pytest.mark.parametrize("argv", [["--help"], ["once", "--help"], ["once", "--bogus"],
                                  ["--config", "/nonexistent/mtcd.toml", "once"], ["--version"]])
def test_mtcd_help_usage_and_config_errors_stay_light(argv):
    loaded = imported("daemon", argv)
    assert "mtcd.cli.common" in loaded  # the probe did run the CLI
    heavy = sorted(m for m in loaded if m.startswith(HEAVY))
    assert heavy == []


@pytest.mark.parametrize("argv", [["--help"], ["pin", "--help"], ["pin", "--bogus"], ["pin", "set"],
                                  ["--config", "/nonexistent/mtcd.toml", "pin", "list"], ["--version"]])
def test_mtcctl_help_usage_and_config_errors_stay_light(argv):
    loaded = imported("ctl", argv)
    assert "mtcd.cli.common" in loaded
    heavy = sorted(m for m in loaded if m.startswith((*HEAVY, "mtcd.control", "mtcd.journal", "mtcd.lifecycle",
                                                      "_hashlib")))
    assert heavy == []


# --- offline mtcctl commands: the store and the journal, nothing else ---

SERVICE_STACK = ("mtcd.service", "mtcd.gatekeeper", "mtcd.gate", "mtcd.uicc", "mtcd.datalink", "mtcd.lifecycle",
                 "mtcd.control", "mtcd.modem", "mtcd.transport", "mtcd.at", "mtcd.card", "mtcd.cli.recovery",
                 "mtcd.keyring_backend", "serial", "systemd", "keyring")

OFFLINE_PROBE = """
import json, sys
from mtcd.cli.ctl import main
try:
    code = main({argv!r})
except SystemExit as exc:
    code = exc.code
sys.__stdout__.write("\\nMODULES " + json.dumps([code, sorted(sys.modules)]) + "\\n")
"""

ICCID = "8949020000000000014"


@pytest.fixture(scope="module")
def offline_state(tmp_path_factory):
    """A state directory with one stored PIN and one journaled decision."""
    from mtcd.journal import PairingJournal

    root = tmp_path_factory.mktemp("offline")
    config = root / "mtcd.toml"
    config.write_text(f'state_dir = "{root / "state"}"\n[modem]\nport = "/dev/null"\n[keystore]\nsealer = "file"\n'
                      f'[service]\ncontrol_socket = "{root / "control.sock"}"\n')
    subprocess.run([sys.executable, "-m", "mtcd.cli.ctl", "--config", str(config), "pin", "set", ICCID],
                   input="1234\n", text=True, check=True, capture_output=True, timeout=60)
    PairingJournal(root / "state").append("decision", outcome="paired", reason=None, iccid=ICCID,
                                          imei="359999010000015")
    return root, config


def offline(config, argv: list[str]) -> tuple[int, str, set[str]]:
    done = subprocess.run([sys.executable, "-c", OFFLINE_PROBE.format(argv=["--config", str(config), *argv])],
                          capture_output=True, text=True, timeout=60)
    output, _, line = done.stdout.rpartition("\nMODULES ")
    code, modules = json.loads(line)
    return code, output, set(modules)


@pytest.mark.parametrize("argv", [["pin", "list"], ["pin", "list", "--json"], ["status"], ["status", "--json"],
                                  ["history"], ["history", "--limit", "1", "--json"]])
def test_offline_commands_load_neither_the_service_nor_the_modem(offline_state, argv):
    code, output, loaded = offline(offline_state[1], argv)
    assert code == 0 and ICCID in output  # it did its work: the store or the journal was read
    assert sorted(m for m in loaded if m.startswith(SERVICE_STACK)) == []


@pytest.mark.parametrize("argv", [["status"], ["history"]])
def test_status_and_history_never_load_cryptography(offline_state, argv):
    """Neither unseals an entry: counting them and checking the file's MAC
    needs hmac, not AES-GCM (about 7 MB of OpenSSL bindings)."""
    code, output, loaded = offline(offline_state[1], argv)
    assert code == 0 and ICCID in output
    assert sorted(m for m in loaded if m.startswith("cryptography")) == []


def test_status_does_not_load_libcrypto(offline_state):
    """The store's MAC and the summary's checksum are short: the builtin
    SHA-256 checks them (mtcd.mac), without OpenSSL's 3.7 MiB."""
    code, output, loaded = offline(offline_state[1], ["status"])
    assert code == 0 and ICCID in output and "paired" in output  # the MAC and the summary were checked
    assert sorted(m for m in loaded if m in ("_hashlib", "hashlib", "hmac", "secrets", "_ssl")) == []


def test_history_does_not_even_load_libcrypto(offline_state):
    code, output, loaded = offline(offline_state[1], ["history"])
    assert code == 0 and "decision" in output
    assert sorted(m for m in loaded if m in ("_hashlib", "hashlib", "hmac", "secrets", "_ssl")) == []


def test_status_still_asks_a_service_whose_socket_is_there(offline_state, tmp_path):
    """The cheap check only skips the control stack when there is no socket
    at all; anything at the path is asked (here: nothing listens)."""
    root, config = offline_state
    socket_path = root / "control.sock"
    socket_path.touch()
    try:
        code, output, loaded = offline(config, ["status"])
    finally:
        socket_path.unlink()
    assert code == 0 and "not running" in output
    assert "mtcd.control" in loaded


# --- argparse's terminal width, without shutil -------------------------------------

COMPRESSION = ("shutil", "zlib", "bz2", "_bz2", "lzma", "_lzma")


@pytest.mark.parametrize("argv", [["status"], ["history"]])
def test_status_and_history_load_no_compression_library(offline_state, argv):
    """argparse asks shutil for the terminal's width for every option it
    adds; shutil loads zlib, bz2 and lzma (0.4 MiB).  mtcd's parser takes
    the width the way shutil does (mtcd.cli.common.terminal_columns)."""
    code, output, loaded = offline(offline_state[1], argv)
    assert code == 0 and ICCID in output
    assert sorted(m for m in loaded if m in COMPRESSION) == []


@pytest.mark.parametrize("module,argv", [("ctl", ["--help"]), ("ctl", ["pin", "--bogus"]), ("daemon", ["--help"])])
def test_help_and_usage_errors_load_no_compression_library(module, argv):
    loaded = imported(module, argv)
    assert "mtcd.cli.common" in loaded
    assert sorted(m for m in loaded if m in COMPRESSION) == []


@pytest.mark.parametrize("columns", [None, "100", "0", "-3", "wide", "37"])
@pytest.mark.parametrize("lines", [None, "40", "x"])
def test_terminal_columns_is_what_shutil_says(monkeypatch, columns, lines):
    import shutil

    from mtcd.cli.common import terminal_columns

    for name, value in (("COLUMNS", columns), ("LINES", lines)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert terminal_columns() == shutil.get_terminal_size().columns


def test_terminal_columns_on_a_terminal():
    """On a terminal 57 columns wide, --help is wrapped as argparse would."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    probe = ("import shutil, sys; from mtcd.cli.common import terminal_columns; "
             "sys.stderr.write(f'{terminal_columns()} {shutil.get_terminal_size().columns}')")
    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 57, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        done = subprocess.run([sys.executable, "-c", probe], stdout=slave, stderr=subprocess.PIPE, text=True,
                              env=env, timeout=60)
    finally:
        os.close(slave)
        os.close(master)
    assert done.stderr == "57 57"
