"""review6: hostile pass over the ModemManager re-probe (MmGateway.card_command,
MmUicc._require), with a small fake bus that has ModemManager's names.

1. A plugin mtcd never measured was taken to notice SIM swaps: only
   `generic` counted as blind, so a Telit, Sierra or any other plugin name
   got no re-probe and a PIN went on properties that may describe a card
   that left the slot (guarantee 1).  Unknown now means blind.
2. A re-probe that exports the same object paths again (ModemManager's
   indexes start over when it restarts) left the ICCID read before the
   re-probe standing: with the lock read afresh, `_require` passed for the
   old card's ICCID and the PIN went to the card swapped in.
3. The quectel plugin, measured to notice a swap (+QUSIM), was taken at its
   word: no re-probe, and a swap the modem did not report (the URC lost,
   detection switched off with AT+QSIMDET) left the old card's properties
   for a PIN to go on.  The re-probe is now unconditional; the plugin list
   only says who reports a swap while the link is up."""

from __future__ import annotations

import pytest

from types import SimpleNamespace

from mtcd.gatekeeper import Gatekeeper
from mtcd.identity import Iccid, Imei
from mtcd.mm import states
from mtcd.mm.gateway import MmGateway, MmModem, MmSession, MmUicc
from mtcd.progress import NO_WAITS
from mtcd.secret import Pin
from mtcd.simlock import SimLock
from mtcd.uicc import PresentationRefused

from simfixtures import make_iccid, make_imei

MODEM = "/org/freedesktop/ModemManager1/Modem/0"
SIM = "/org/freedesktop/ModemManager1/SIM/0"
ICCID_A, ICCID_B = make_iccid(1), make_iccid(2)
IMEI = make_imei(1)


class Bus:
    """One modem on ttyUSB2 whose re-probe exports the same paths again."""

    alive = True

    def __init__(self, plugin="generic"):
        self.card = ICCID_A
        self.plugin = plugin
        self.state, self.unlock = states.STATE_LOCKED, states.LOCK_SIM_PIN
        self.calls: list[tuple[str, str]] = []

    def modems(self):
        return {MODEM: {"PrimaryPort": "ttyUSB2", "Ports": [("ttyUSB2", 3)]}}

    def get_all(self, path, interface):
        return {"State": self.state, "StateFailedReason": 0, "UnlockRequired": self.unlock}

    def get(self, path, interface, name):
        if interface == states.MODEM:
            return {"Sim": SIM, "Device": "/sys/devices/usb1", "Plugin": self.plugin,
                    "EquipmentIdentifier": IMEI, "State": self.state}[name]
        if interface == states.SIM and name == "SimIdentifier":
            return self.card
        raise AssertionError(f"unexpected read {path} {interface}.{name}")

    def call(self, path, interface, method, signature=None, body=(), timeout=None):
        self.calls.append((path, method))
        return ()

    def reprobes(self) -> int:
        return self.calls.count((states.ROOT, "InhibitDevice")) // 2  # inhibit, then release


def fake_bus_gateway(bus, modem: str, imei: str) -> MmGateway:
    """An MmGateway over a fake bus, with only what card_command and
    MmUicc use."""
    gw = object.__new__(MmGateway)
    gw.transport = MmSession("/dev/ttyUSB2", 5, bus=bus)
    gw.transport.path = modem
    gw.modem = MmModem(gw.transport)
    gw.uicc = MmUicc(gw.modem, settle_time=0)
    gw.imei = Imei(imei)
    gw.waits = NO_WAITS
    gw.link_up = False
    return gw


def _gateway(bus) -> MmGateway:
    return fake_bus_gateway(bus, MODEM, IMEI)


@pytest.mark.parametrize("plugin", ["telit", "sierra", "huawei", "some-future-plugin", "Generic", "", None])
def test_a_plugin_not_measured_to_notice_swaps_counts_as_blind(plugin):
    assert states.swap_blind(plugin)


def test_the_plugin_list_says_who_reports_a_swap_not_who_is_reprobed():
    # quectel reports a swap while the link is up (the doctor and the start
    # warning stay quiet for it); a command re-probes on it all the same.
    assert not states.swap_blind("quectel")
    assert states.swap_blind("generic")


@pytest.mark.parametrize("plugin", ["quectel", "Quectel", "generic", "telit", None])
def test_every_plugin_gets_one_reprobe_per_command_and_none_for_a_command_inside_it(plugin):
    bus = Bus(plugin=plugin)
    gw = _gateway(bus)
    with gw.card_command():
        assert bus.reprobes() == 1 and gw.uicc.fresh_on == MODEM
        with gw.card_command():  # a decision inside the command: the same reading
            assert gw.uicc.fresh_on == MODEM
    assert bus.reprobes() == 1 and gw.uicc.fresh_on is None


def test_an_unmeasured_plugin_gets_the_slot_read_afresh_before_a_pin():
    bus = Bus(plugin="telit")
    gw = _gateway(bus)
    with gw.card_command():
        assert ("/org/freedesktop/ModemManager1", "InhibitDevice") in bus.calls
        assert gw.uicc.fresh_on == MODEM


def test_a_reprobe_to_the_same_paths_does_not_keep_the_iccid_read_before_it():
    bus = Bus()
    gw = _gateway(bus)
    gw.uicc.lock()
    assert gw.uicc.iccid() == Iccid(ICCID_A)  # the periodic check's reading
    bus.card = ICCID_B  # swapped; the generic plugin notices nothing
    with gw.card_command():
        assert gw.uicc.fresh_on == MODEM  # the re-probe exported the same path
        with pytest.raises(PresentationRefused):
            gw.uicc.present_pin(Pin("27182818"), Iccid(ICCID_A))
        assert not gw.uicc.may_present(Iccid(ICCID_A))
        # Read again, the slot says which card is there, and A's PIN is not for it.
        assert gw.uicc.iccid() == Iccid(ICCID_B)
        assert not gw.uicc.may_present(Iccid(ICCID_A))
    assert not any(method == "SendPin" for _, method in bus.calls), "card A's PIN went to card B"


def test_fresh_on_is_cleared_when_the_command_raises():
    gw = _gateway(Bus())
    with pytest.raises(RuntimeError):
        with gw.card_command():
            assert gw.uicc.fresh_on == MODEM
            raise RuntimeError("the command failed")
    assert gw.uicc.fresh_on is None
    gw.uicc.lock()
    gw.uicc.iccid()
    assert not gw.uicc.may_present(Iccid(ICCID_A))  # outside a command: no send on the generic plugin
    with pytest.raises(PresentationRefused):
        gw.uicc.present_pin(Pin("27182818"), Iccid(ICCID_A))


def test_a_swap_the_quectel_plugin_does_not_signal_is_still_read_before_a_pin():
    bus = Bus(plugin="quectel")
    gw = _gateway(bus)
    gw.uicc.lock()
    assert gw.uicc.iccid() == Iccid(ICCID_A)  # the periodic check's reading
    bus.card = ICCID_B  # swapped; the modem said nothing (+QUSIM lost or switched off)
    # Outside a command the plugin's word alone sends nothing.
    assert not gw.uicc.may_present(Iccid(ICCID_A))
    with pytest.raises(PresentationRefused, match="not read afresh"):
        gw.uicc.present_pin(Pin("27182818"), Iccid(ICCID_A))
    with gw.card_command():
        assert ("/org/freedesktop/ModemManager1", "InhibitDevice") in bus.calls
        with pytest.raises(PresentationRefused):
            gw.uicc.present_pin(Pin("27182818"), Iccid(ICCID_A))
        assert gw.uicc.iccid() == Iccid(ICCID_B)
        assert not gw.uicc.may_present(Iccid(ICCID_A))
    assert not any(method == "SendPin" for _, method in bus.calls), "card A's PIN went to card B"


def test_the_quectel_plugin_sends_a_pin_on_a_reading_taken_afresh():
    """The other side: the card in the slot is the one the PIN is for."""
    bus = Bus(plugin="quectel")
    gw = _gateway(bus)
    with gw.card_command():
        assert gw.uicc.lock() is SimLock.SIM_PIN and gw.uicc.iccid() == Iccid(ICCID_A)
        assert gw.uicc.may_present(Iccid(ICCID_A))
        gw.uicc.present_pin(Pin("27182818"), Iccid(ICCID_A))
    assert bus.calls.count((SIM, "SendPin")) == 1


def _watching(gw, signature, outcome) -> Gatekeeper:
    gk = object.__new__(Gatekeeper)  # only what the periodic check uses
    gk.gateway, gk.signature, gk.outcome, gk._sim_event = gw, signature, outcome, False
    gk._pair = gk._retry_link = gk._close_session = gk._drop_session = gk._lose_modem = None  # any is a failure
    return gk


@pytest.mark.parametrize("paired", [True, False])
def test_idle_checks_on_the_quectel_plugin_never_reprobe(paired):
    """The periodic check reads ModemManager's properties only: a re-probe
    there would cost a second every check and drop a paired SIM's link."""
    bus = Bus(plugin="quectel")
    gw = _gateway(bus)
    if paired:
        bus.state, bus.unlock = states.STATE_CONNECTED, states.LOCK_NONE
        gw.link_up = True
        signature = (SimLock.READY, Iccid(ICCID_A))
    else:
        signature = (SimLock.SIM_PIN, Iccid(ICCID_A))  # refused (unknown-sim): radio off, the card locked
    gk = _watching(gw, signature, SimpleNamespace(paired=paired, iccid=Iccid(ICCID_A)))
    for _ in range(5):
        gk._check_sim()
    assert bus.reprobes() == 0 and bus.calls == []
    assert gw.link_up is paired and gk.signature == signature
