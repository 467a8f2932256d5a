"""ModemManager's signals read as what they mean for the modem mtcd holds
(mtcd.mm.states.modem_signal, pure), and the guard that keeps a PIN looked
up on one modem object from reaching the object ModemManager exports after
a hot swap."""

from __future__ import annotations

import pytest

from mtcd.identity import Iccid
from mtcd.mm import states
from mtcd.simlock import SimLock
from mtcd.uicc import PresentationRefused

OURS = "/org/freedesktop/ModemManager1/Modem/0"
OM, PROPS = states.OBJECT_MANAGER, states.PROPERTIES


@pytest.mark.parametrize("interface, member, path, body, meaning", [
    (OM, "InterfacesRemoved", states.ROOT, (OURS, [states.MODEM, states.SIMPLE]), states.MODEM_REMOVED),
    # Another modem, or our modem's bearer, going away says nothing of ours.
    (OM, "InterfacesRemoved", states.ROOT, ("/org/freedesktop/ModemManager1/Modem/3", [states.MODEM]), None),
    (OM, "InterfacesRemoved", states.ROOT, (OURS, ["org.freedesktop.ModemManager1.Bearer"]), None),
    (OM, "InterfacesAdded", states.ROOT, ("/org/freedesktop/ModemManager1/Modem/1", {states.MODEM: {}}),
     states.MODEM_ADDED),
    (OM, "InterfacesAdded", states.ROOT, ("/org/freedesktop/ModemManager1/Bearer/0", {"x.Bearer": {}}), None),
    (PROPS, "PropertiesChanged", OURS, (states.MODEM, {"UnlockRequired": ("u", 2)}, []), states.SIM_CHANGED),
    (PROPS, "PropertiesChanged", OURS, (states.MODEM, {"Sim": ("o", "/")}, []), states.SIM_CHANGED),
    (PROPS, "PropertiesChanged", OURS, (states.MODEM, {}, ["State"]), states.SIM_CHANGED),
    (PROPS, "PropertiesChanged", OURS, (states.MODEM, {"SignalQuality": ("(ub)", (50, True))}, []), None),
    (PROPS, "PropertiesChanged", "/org/freedesktop/ModemManager1/Modem/3",
     (states.MODEM, {"State": ("i", 8)}, []), None),
    (PROPS, "PropertiesChanged", "/org/freedesktop/ModemManager1/SIM/0",
     (states.SIM, {"SimIdentifier": ("s", "8949")}, []), states.SIM_CHANGED),
    ("org.freedesktop.DBus", "NameOwnerChanged", "/org/freedesktop/DBus", (states.SERVICE, ":1.4", ""),
     states.SERVICE_GONE),
    ("org.freedesktop.DBus", "NameOwnerChanged", "/org/freedesktop/DBus", (states.SERVICE, "", ":1.9"), None),
    ("org.freedesktop.DBus", "NameOwnerChanged", "/org/freedesktop/DBus", ("org.example", ":1.2", ""), None),
])
def test_modemmanager_signal_meanings(interface, member, path, body, meaning):
    assert states.modem_signal(interface, member, path, body, OURS) == meaning


def test_modemmanager_modem_for_port():
    modems = {
        "/org/freedesktop/ModemManager1/Modem/4": {"PrimaryPort": "ttyUSB5", "Ports": [("ttyUSB5", 3)]},
        "/org/freedesktop/ModemManager1/Modem/7": {"PrimaryPort": "cdc-wdm0",
                                                   "Ports": [("cdc-wdm0", 6), ("ttyUSB2", 3)]},
    }
    assert states.modem_for_port(modems, "/dev/ttyUSB2") == "/org/freedesktop/ModemManager1/Modem/7"
    assert states.modem_for_port(modems, "/dev/ttyUSB5") == "/org/freedesktop/ModemManager1/Modem/4"
    assert states.modem_for_port(modems, "/dev/ttyUSB9") is None


class _Bus:
    def __init__(self, props):
        self.props, self.calls = props, []

    def get_all(self, path, interface):
        return self.props[path]

    def get(self, path, interface, name):
        return self.props[path][name]

    def call(self, *args, **kwargs):
        self.calls.append(args)
        return ()


class _Session:
    timeout = 5

    def __init__(self, bus, path):
        self.bus, self.path = bus, path

    def modem(self, name):
        return self.bus.get(self.path, states.MODEM, name)

    def _path(self):
        return self.path


def test_modemmanager_no_pin_for_a_card_read_on_the_object_before_a_hot_swap():
    """Lock and ICCID read on Modem/0; ModemManager then exports Modem/1
    (a swap): the PIN looked up for Modem/0's card is not sent."""
    from mtcd.mm.gateway import MmUicc
    from mtcd.secret import Pin

    iccid = "8949020000000000014"
    locked = {"State": states.STATE_LOCKED, "StateFailedReason": 0, "UnlockRequired": states.LOCK_SIM_PIN,
              "Sim": "/org/freedesktop/ModemManager1/SIM/0", "SimIdentifier": iccid}
    bus = _Bus({OURS: locked, "/org/freedesktop/ModemManager1/Modem/1": dict(locked),
                "/org/freedesktop/ModemManager1/SIM/0": locked})
    session = _Session(bus, OURS)
    uicc = MmUicc(type("M", (), {"session": session})(), settle_time=0)
    uicc.fresh_on = OURS  # as inside a command that read the slot afresh: the object check alone is under test
    assert uicc.lock() is SimLock.SIM_PIN and uicc.iccid() == Iccid(iccid)
    assert uicc.may_present(Iccid(iccid))
    session.path = "/org/freedesktop/ModemManager1/Modem/1"
    assert not uicc.may_present(Iccid(iccid))
    with pytest.raises(PresentationRefused):
        uicc.present_pin(Pin("1234"), Iccid(iccid))
    assert bus.calls == []  # nothing went out


def test_modemmanager_pin1_counter_after_an_accepted_send_pin():
    """ModemManager reports no PIN1 count for a verified card; after this
    session's accepted SendPin it is the maximum, known only when the count
    before was the maximum already."""
    from mtcd.simlock import PinAttempts

    puk_only = PinAttempts(pin1=None, puk1=10, source="ModemManager UnlockRetries")
    assert states.pin1_after_verification(puk_only, 3).pin1 == 3
    assert states.pin1_after_verification(puk_only, 3).puk1 == 10
    assert states.pin1_after_verification(puk_only, 2) is puk_only  # the maximum is not known
    assert states.pin1_after_verification(None, None) is None
    reported = PinAttempts(pin1=2, puk1=10)
    assert states.pin1_after_verification(reported, 3) is reported  # a count reported wins
