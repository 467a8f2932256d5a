"""`modem.pin_timeout`: the longest wait for a command carrying a PIN or PUK.
Its default keeps the commands' own 20 s; set lower, a lost answer to
AT+CPIN/AT+CPWD/AT+CLCK is given up sooner (the suite's lost-answer tests use
it so as not to sit out 20 s each), never below `modem.timeout`, and never
for a command without a secret."""

from __future__ import annotations

import time

import pytest

from mtcd.at import commands
from mtcd.config import ConfigError, load_config
from mtcd.errors import ModemUnavailable
from mtcd.secret import Pin, Puk
from mtcd.transport import SerialTransport
from simfixtures import TEST_PIN, make_card, sim_modem


def test_default_is_twenty_seconds_and_changes_nothing(tmp_path):
    path = tmp_path / "mtcd.toml"
    path.write_text('[modem]\nport = "/dev/ttyUSB2"\n')
    config = load_config(path)
    assert config.modem.pin_timeout == 20.0
    t = SerialTransport("/dev/null", timeout=config.modem.timeout, pin_timeout=config.modem.pin_timeout)
    pin, puk = Pin(TEST_PIN), Puk("31415926")
    assert t._wait_for(commands.enter_pin(pin)) == 20.0
    assert t._wait_for(commands.change_pin(pin, Pin("11223344"))) == 20.0
    assert t._wait_for(commands.enter_puk(puk, pin)) == 20.0
    assert t._wait_for(commands.set_pin_enabled(True, pin)) == 20.0
    assert t._wait_for(commands.restricted_sim_access(176, 0x2FE2, 0, 0, 10)) == 10.0


def test_it_shortens_only_secret_commands_and_never_below_the_ordinary_timeout():
    t = SerialTransport("/dev/null", timeout=2, pin_timeout=3)
    pin = Pin(TEST_PIN)
    assert t._wait_for(commands.enter_pin(pin)) == 3.0
    assert t._wait_for(commands.set_pin_enabled(False, pin)) == 3.0
    assert t._wait_for(commands.functionality(0)) == 30.0  # no secret: its own wait
    assert t._wait_for(commands.restricted_sim_access(176, 0x2FE2, 0, 0, 10)) == 10.0
    assert SerialTransport("/dev/null", timeout=5, pin_timeout=1)._wait_for(commands.enter_pin(pin)) == 5.0


@pytest.mark.parametrize("value", ["0", "-1", '"20"', "true", "nan"])
def test_a_bad_value_names_the_key(tmp_path, value):
    path = tmp_path / "mtcd.toml"
    path.write_text(f'[modem]\nport = "/dev/ttyUSB2"\npin_timeout = {value}\n')
    with pytest.raises(ConfigError, match=r"modem\.pin_timeout must be a number of seconds > 0"):
        load_config(path)


def test_a_lost_answer_to_the_pin_is_given_up_after_pin_timeout():
    with sim_modem() as (modem, port), SerialTransport(port, timeout=1, pin_timeout=1.5) as t:
        modem.fail_after("AT+CPIN=", "drop")
        started = time.monotonic()
        with pytest.raises(ModemUnavailable, match="within 1.5 s"):
            t.execute(commands.enter_pin(Pin(TEST_PIN)))
        assert 1.4 < time.monotonic() - started < 10


def test_the_cli_takes_it_from_the_configuration(gateway):
    """A real `mtcctl pin rotate` whose AT+CPWD answer is lost: exit 75 after
    the configured wait, not the command's own 20 s."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, modem="timeout = 2\npin_timeout = 2")
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CPWD", "drop")
        started = time.monotonic()
        run = gateway.mtcctl("pin", "rotate", timeout=60)
        assert run.returncode == 75, run.stdout + run.stderr
        assert time.monotonic() - started < 15
