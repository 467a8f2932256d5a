"""D-Bus failures over the real ModemManager become the project's own
one-line errors with a documented exit code, never a jeepney exception or
a traceback: a method that answers with an error, a modem object that
vanished, ModemManager stopped mid-run, the bus itself gone.  Skipped only
where the stack cannot run (not root, ModemManager not installed)."""

from __future__ import annotations

import pytest

import mmstack
from mtcd.errors import EXIT_UNAVAILABLE, CommandFailed, ModemUnavailable, MtcdError
from mtcd.mm import states
from mtcd.mm.bus import BusError, ModemManagerBus, call_name
from simfixtures import make_card

needs_stack = pytest.mark.skipif(mmstack.missing() is not None, reason=mmstack.missing() or "")


@pytest.mark.parametrize("interface, method, body, name", [
    (states.PROPERTIES, "Get", (states.MODEM, "State"), "Properties.Get(Modem.State)"),
    (states.PROPERTIES, "GetAll", (states.MODEM,), "Properties.GetAll(Modem)"),
    (states.PROPERTIES, "Get", (states.MANAGER, "Version"), "Properties.Get(Manager.Version)"),
    (states.SIM, "SendPin", ("never shown",), "Sim.SendPin"),
    (states.MANAGER, "InhibitDevice", ("uid", True), "Manager.InhibitDevice"),
])
def test_modemmanager_calls_are_named_without_their_arguments(interface, method, body, name):
    assert call_name(interface, method, body) == name


def test_modemmanager_bus_error_is_one_line_with_exit_69():
    error = BusError("org.freedesktop.ModemManager1.Error.Core.Failed", "first line\nsecond line", "Sim.SendPin")
    assert isinstance(error, CommandFailed) and error.exit_code == EXIT_UNAVAILABLE
    assert str(error) == "ModemManager Sim.SendPin: org.freedesktop.ModemManager1.Error.Core.Failed (first line " \
                         "second line)"


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert isinstance(exc, MtcdError) and exc.exit_code == EXIT_UNAVAILABLE and "\n" not in text, repr(exc)
    return text


@needs_stack
def test_modemmanager_dbus_failures_in_process(tmp_path, monkeypatch):
    """One stack, taken apart step by step: an error reply, a vanished
    object, ModemManager stopped, the bus gone."""
    with mmstack.own_rig(tmp_path, make_card()) as r:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", r.stack.bus_address)
        bus = ModemManagerBus()
        bus.open()
        path = states.modem_for_port(bus.modems(), r.port)
        # A method that answers with an error: ModemManager allows Modem.Command only in debug mode.
        with pytest.raises(BusError) as refused:
            bus.call(path, states.MODEM, "Command", "su", ("ATI", 1))
        assert one_line(refused.value).startswith("ModemManager Modem.Command: org.freedesktop.ModemManager1.Error.")
        with pytest.raises(BusError) as unknown:
            bus.get(path, states.MODEM, "NoSuchProperty")
        assert "ModemManager Properties.Get(Modem.NoSuchProperty): " in one_line(unknown.value)
        # A modem object that vanished.
        with pytest.raises(ModemUnavailable) as vanished:
            bus.get(path + "9", states.MODEM, "State")
        assert one_line(vanished.value).startswith("the modem is gone from ModemManager (Properties.Get(Modem.State)")
        # ModemManager stopped mid-run.
        mmstack._stop(r.stack.processes["ModemManager"])
        with pytest.raises(ModemUnavailable) as stopped:
            bus.get(path, states.MODEM, "State")
        assert one_line(stopped.value) == ("ModemManager is not running on the system bus "
                                           "(Properties.Get(Modem.State))")
        # The bus itself gone.
        mmstack._stop(r.stack.processes["dbus-daemon"])
        with pytest.raises(ModemUnavailable) as gone:
            bus.get(path, states.MODEM, "State")
        assert one_line(gone.value).startswith("the system bus connection failed during Properties.Get(Modem.State)")
        with pytest.raises(ModemUnavailable) as unreachable:
            ModemManagerBus().open()
        assert one_line(unreachable.value).startswith("cannot reach the system bus")
        # And a command run now says so in one line, exit 69, no traceback.
        r.configure()
        run = r.gateway.mtcd("once", "--json", timeout=60)
        assert run.returncode == 69 and run.last_json["error"] == "modem-unavailable", run.stdout + run.stderr
        assert run.last_json["message"].startswith("cannot reach the system bus")
        assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr


@needs_stack
def test_modemmanager_stopped_under_the_service(tmp_path):
    """`mtcd run`: ModemManager stops while the SIM is paired; the service
    says the modem is unavailable (no traceback) and stops cleanly."""
    card = make_card()
    with mmstack.own_rig(tmp_path, card) as r:
        # The service's search for the modem again lasts modem.timeout, and
        # SIGTERM is acted on after it: a short one keeps the test short.
        r.configure(timeout=5)
        r.gateway.store_pin(card.iccid.value)
        with mmstack.mtcd_run(r.gateway, tmp_path / "notify.sock") as (proc, notify):
            ready = notify.wait_for("READY", "1", timeout=120)
            assert ready["STATUS"].startswith("paired")
            mmstack._stop(r.stack.processes["ModemManager"])
            mmstack.status_seen(notify, "modem unavailable", 30, start=notify.messages.index(ready) + 1)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr_text, proc.stderr_text


def test_modemmanager_networkmanager_errors_name_the_call():
    from mtcd.datalink import networkmanager as nmlink

    assert nmlink.call_name(nmlink.SETTINGS, "ListConnections") == "Settings.ListConnections"
    assert nmlink.call_name(nmlink.PROPERTIES, "Set", (nmlink.SERVICE, "WwanEnabled", ("b", True))) == \
        "Properties.Set(NetworkManager.WwanEnabled)"
    error = nmlink.BusError("org.freedesktop.NetworkManager.PermissionDenied", "not\nallowed",
                            "NetworkManager.ActivateConnection")
    assert one_line(error) == ("NetworkManager NetworkManager.ActivateConnection answered "
                               "org.freedesktop.NetworkManager.PermissionDenied: not allowed")
