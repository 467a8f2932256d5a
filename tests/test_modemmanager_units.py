"""The modemmanager driver's pure parts: ModemManager's numbers read as the
project's facts, and the configuration that selects the driver."""

from __future__ import annotations

import pytest

from mtcd.config import load_config
from mtcd.errors import ConfigError
from mtcd.mm import states
from mtcd.policy import PinOutcome
from mtcd.simlock import SimLock


@pytest.mark.parametrize("state, reason, lock, expected", [
    (states.STATE_LOCKED, 0, states.LOCK_SIM_PIN, SimLock.SIM_PIN),
    (states.STATE_LOCKED, 0, states.LOCK_SIM_PUK, SimLock.SIM_PUK),
    (states.STATE_DISABLED, 0, states.LOCK_NONE, SimLock.READY),
    (states.STATE_LOCKED, 0, 10, SimLock.PH_SIM_PIN),
    (states.STATE_LOCKED, 0, 99, SimLock.OTHER),
    # Still probing, or the lock not read yet: wait, never act.
    (states.STATE_INITIALIZING, 0, states.LOCK_SIM_PIN, SimLock.NOT_READY),
    (states.STATE_LOCKED, 0, states.LOCK_UNKNOWN, SimLock.NOT_READY),
    # Unlocked a moment ago, ModemManager not done re-reading the modem.
    (states.STATE_LOCKED, 0, states.LOCK_NONE, SimLock.NOT_READY),
    (states.STATE_FAILED, states.FAILED_SIM_MISSING, states.LOCK_UNKNOWN, SimLock.NOT_INSERTED),
    (states.STATE_FAILED, states.FAILED_SIM_ERROR, states.LOCK_SIM_PIN, SimLock.FAILURE),
])
def test_modemmanager_lock_states(state, reason, lock, expected):
    assert states.sim_lock(state, reason, lock) is expected


def test_modemmanager_unlock_retries_are_pin1_and_puk1():
    attempts = states.pin_attempts({states.LOCK_SIM_PIN: 3, states.LOCK_SIM_PUK: 10, states.LOCK_SIM_PIN2: 2})
    assert (attempts.pin1, attempts.puk1) == (3, 10)
    assert states.pin_attempts({states.LOCK_SIM_PUK: 10}).pin1 is None  # not reported is not 0
    assert states.pin_attempts({}) is None
    assert states.pin_attempts({states.LOCK_SIM_PIN: 99}) is None  # no card has that


def test_modemmanager_pin_enabled_is_the_sim_facility_bit():
    assert states.pin_enabled(1) and states.pin_enabled(1 | 4)
    assert not states.pin_enabled(0) and not states.pin_enabled(2)


@pytest.mark.parametrize("error, outcome", [
    (None, PinOutcome.ACCEPTED),
    ("org.freedesktop.ModemManager1.Error.MobileEquipment.IncorrectPassword", PinOutcome.REJECTED),
    ("org.freedesktop.ModemManager1.Error.MobileEquipment.SimPuk", PinOutcome.REJECTED),
    # Anything else says nothing about the card: the marker stays, the counter settles it.
    ("org.freedesktop.ModemManager1.Error.Core.WrongState", PinOutcome.UNKNOWN),
    ("org.freedesktop.DBus.Error.NoReply", PinOutcome.UNKNOWN),
])
def test_modemmanager_send_pin_answers(error, outcome):
    assert states.pin_outcome(error) is outcome


def _config(tmp_path, modem: str, datalink: str):
    path = tmp_path / "mtcd.toml"
    path.write_text(f'state_dir = "{tmp_path}/state"\n[modem]\nport = "/dev/ttyUSB2"\n{modem}\n[datalink]\n{datalink}\n')
    return load_config(path)


def test_modemmanager_driver_config(tmp_path):
    assert _config(tmp_path, "", "").modem.driver == "serial"
    config = _config(tmp_path, 'driver = "modemmanager"', 'backend = "modemmanager"')
    assert config.modem.driver == "modemmanager" and config.datalink.backend == "modemmanager"
    assert _config(tmp_path, 'driver = "modemmanager"', 'backend = "none"').datalink.backend == "none"


@pytest.mark.parametrize("modem, datalink, complaint", [
    ('driver = "mm"', "", "modem.driver must be one of"),
    ('driver = "modemmanager"', 'backend = "at"', 'datalink.backend must be one of modemmanager, networkmanager, command, none'),
    ("", 'backend = "modemmanager"', 'needs modem.driver = "modemmanager"'),
])
def test_modemmanager_driver_config_mistakes(tmp_path, modem, datalink, complaint):
    with pytest.raises(ConfigError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        _config(tmp_path, modem, datalink)


def test_modemmanager_gateway_seam_picks_the_driver(tmp_path):
    from mtcd.mm.gateway import MmGateway
    from mtcd.service import Gateway

    assert type(Gateway(_config(tmp_path, 'driver = "modemmanager"', 'backend = "none"'))) is MmGateway
    assert type(Gateway(_config(tmp_path, "", ""))) is Gateway


def test_modemmanager_simulator_answers_the_cops_family():
    """What ModemManager's enable and connect ask of the simulator."""
    from mtcd.sim import SimulatedModem
    from simfixtures import make_card

    modem = SimulatedModem(make_card(pin_enabled=False), power_on_cfun=4)
    assert modem.handle("AT+COPS?") == ["+COPS: 0", "OK"]  # radio off: no operator
    assert modem.handle("AT+COPS=?")[-1] == "OK"
    assert modem.handle("AT+CFUN=1")[-1] == "OK"
    assert modem.handle("AT+COPS=0") == ["OK"]
    assert modem.handle("AT+COPS=3,2") == ["OK"]
    assert modem.handle("AT+COPS?") == ['+COPS: 0,2,"26201",7', "OK"]
    assert modem.handle("AT+COPS=3,0") == ["OK"]
    assert modem.handle("AT+COPS?") == ['+COPS: 0,0,"mtcd sim",7', "OK"]
    assert modem.handle("AT+COPS=1,2,\"26202\"")[-1] == "ERROR"  # manual selection: not simulated
    assert modem.handle("AT+COPS=3")[-1] == "ERROR"
    assert modem.handle("AT+COPS=3,x")[-1] == "ERROR"


class _BusyModemManager:
    """A modem object that answers Enable(false) with InProgress `busy`
    times (ModemManager still disconnecting NetworkManager's bearer)."""

    def __init__(self, busy: int, error: str = "org.freedesktop.ModemManager1.Error.Core.InProgress"):
        from mtcd.mm import states

        self.busy, self.error, self.state, self.calls = busy, error, states.STATE_CONNECTED, []

    def get(self, path, interface, name):
        assert name == "State"
        return self.state

    def call(self, path, interface, method, signature=None, body=(), timeout=None):
        from mtcd.mm import states
        from mtcd.mm.bus import BusError

        self.calls.append(method)
        if method == "Enable" and self.busy:
            self.busy -= 1
            raise BusError(self.error, "Bearer already being disconnected", "Modem.Enable")
        if method == "Enable":
            self.state = states.STATE_DISABLED
        return ()


def _mm_modem(bus, timeout=5.0):
    from mtcd.mm.gateway import MmModem, MmSession

    session = MmSession("/dev/ttyUSB2", timeout, bus=bus)
    session.path = "/org/freedesktop/ModemManager1/Modem/0"
    return MmModem(session)


def test_modemmanager_radio_off_waits_out_modemmanager_busy_with_a_bearer():
    bus = _BusyModemManager(busy=2)
    modem = _mm_modem(bus)
    modem.switch_radio_off()
    assert modem.radio_on is False and bus.calls == ["Enable", "Enable", "Enable", "SetPowerState"]


def test_modemmanager_radio_off_other_errors_fail_at_once_in_one_line():
    from mtcd.errors import CommandFailed

    bus = _BusyModemManager(busy=1, error="org.freedesktop.ModemManager1.Error.Core.Unauthorized")
    modem = _mm_modem(bus)
    with pytest.raises(CommandFailed) as failed:
        modem.switch_radio_off()
    assert str(failed.value) == ("Modem.Enable(false)/SetPowerState(low): "
                                 "org.freedesktop.ModemManager1.Error.Core.Unauthorized")
    assert failed.value.__context__ is None and bus.calls == ["Enable"] and modem.radio_on is None
