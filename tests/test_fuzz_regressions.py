"""Faults the fuzzers found (tests/fuzz/), each with its minimised input:
every one raised something other than mtcd's own error types."""

from __future__ import annotations

import pytest

from mtcd.alerts import parse_cmgs
from mtcd.config import load_config
from mtcd.errors import ConfigError, ModemProtocolError
from mtcd.vendors.quectel import parse_qnetdevctl_auto


# --- response parsers ----------------------------------------------------------

@pytest.mark.parametrize("field", ["\u00b23", "\u0663", "9" * 5000], ids=["superscript-two", "arabic-three", "5000-nines"])
def test_qnetdevctl_with_a_digit_int_cannot_read_is_a_protocol_error(field):
    # str.isdigit() takes "²" and digit strings longer than int() converts:
    # ValueError escaped the parser.
    with pytest.raises(ModemProtocolError, match=r"\+QNETDEVCTL: unexpected fields"):
        parse_qnetdevctl_auto([f"+QNETDEVCTL: {field},1,1,1"])


def test_qnetdevctl_still_reads_its_op():
    assert parse_qnetdevctl_auto(["+QNETDEVCTL: 3,1,1,1"]) is True
    assert parse_qnetdevctl_auto(["+QNETDEVCTL: 1,1,1,1"]) is False


# --- the configuration loader --------------------------------------------------------

MINIMAL = '[modem]\nport = "/dev/ttyUSB2"\n'
HUGE = "1" + "0" * 400  # converts to int, not to float


@pytest.mark.parametrize("text, complaint", [
    # tomllib converts integers with int(), which refuses more than 4300 digits (ValueError).
    (MINIMAL + "timeout = " + "1" * 4400 + "\n", "an integer of more than 4300 digits"),
    # math.isfinite() of a huge integer: OverflowError.
    (MINIMAL + f"timeout = {HUGE}\n", "modem.timeout must be at most 1000000000 seconds"),
    # A finite float too large for any wait (Lock.acquire: OverflowError later).
    (MINIMAL + "timeout = 1e300\n", "modem.timeout must be at most 1000000000 seconds"),
    # float() of a huge day count: OverflowError; of 5000 digits, int(): ValueError.
    (MINIMAL + f'[policy]\nrotate_every = "{HUGE}d"\n', "policy.rotate_every must be"),
    (MINIMAL + f'[policy]\nrotate_every = "{"9" * 5000}d"\n', "policy.rotate_every must be"),
], ids=["long-integer", "huge-integer-seconds", "huge-float-seconds", "huge-duration", "5000-digit-duration"])
def test_numbers_too_large_are_config_errors(tmp_path, text, complaint):
    path = tmp_path / "mtcd.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert complaint in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_largest_allowed_values_still_load(tmp_path):
    path = tmp_path / "mtcd.toml"
    path.write_text(MINIMAL + "timeout = 1000000000\n[policy]\nrotate_every = \"999999999w\"\n")
    config = load_config(path)
    assert config.modem.timeout == 1e9
    assert config.policy.rotate_every == 999999999 * 7 * 86400


def test_a_huge_number_in_the_config_is_78_on_the_command_line(gateway):
    """Through the real CLI: one line, exit 78, no traceback."""
    gateway.config.write_text(f'state_dir = "{gateway.state_dir}"\n[modem]\nport = "/dev/null"\ntimeout = {HUGE}\n')
    run = gateway.mtcctl("pin", "list")
    assert run.returncode == 78, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "modem.timeout must be at most" in lines[0], run.stderr
    assert "Traceback" not in run.stderr


# --- the SMS alert's reply ----------------------------------------------------------

def test_cmgs_with_a_reference_int_cannot_read_is_a_protocol_error():
    # "\d+" took 5000 digits, and int() raised ValueError.
    with pytest.raises(ModemProtocolError, match="no \\+CMGS reference"):
        parse_cmgs(("+CMGS: " + "9" * 5000,))


def test_cmgs_still_reads_its_reference():
    assert parse_cmgs(('+CMGS: 255,"26/12/01,10:00:00+04"',)) == 255
