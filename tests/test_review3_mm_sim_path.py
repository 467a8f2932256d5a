"""review3: through ModemManager, a PIN goes to the SIM object whose ICCID
it was looked up for.

MmUicc read the ICCID from the modem's `Sim` object, then, to send, read the
`Sim` property again and called SendPin on whatever object it named then.
ModemManager can put another SIM object there without exporting the modem
again (a slot switch, a card re-read in place): the PIN stored for one ICCID
went to another card (guarantee 1).  A `Sim` property change is only a
wake-up for the main loop; it does not clear the readings.

The bus is a small fake with ModemManager's property names; the real
ModemManager tests (tests/test_modemmanager_*.py) cover the rest."""

from __future__ import annotations

from mtcd.identity import Iccid
from mtcd.mm import states
from mtcd.mm.gateway import MmModem, MmSession, MmUicc
from mtcd.policy import PinOutcome
from mtcd.secret import Pin
from mtcd.simlock import SimLock
from mtcd.uicc import PresentationRefused

from simfixtures import make_iccid

MODEM_PATH = "/org/freedesktop/ModemManager1/Modem/0"
SIM_A, SIM_B = "/org/freedesktop/ModemManager1/SIM/0", "/org/freedesktop/ModemManager1/SIM/1"
ICCID_A, ICCID_B = make_iccid(1), make_iccid(2)


class Bus:
    alive = True

    def __init__(self):
        self.sim = SIM_A
        self.calls: list[tuple[str, str]] = []

    def get_all(self, path, interface):
        return {"State": states.STATE_LOCKED, "StateFailedReason": 0, "UnlockRequired": states.LOCK_SIM_PIN}

    def get(self, path, interface, name):
        if interface == states.MODEM and name == "Sim":
            return self.sim
        if interface == states.SIM and name == "SimIdentifier":
            return {SIM_A: ICCID_A, SIM_B: ICCID_B}[path]
        raise AssertionError(f"unexpected read {path} {interface}.{name}")

    def call(self, path, interface, method, signature=None, body=(), timeout=None):
        self.calls.append((path, method))
        return ()


def _uicc(bus) -> MmUicc:
    session = MmSession("/dev/ttyUSB2", 5, bus=bus)
    session.path = MODEM_PATH
    uicc = MmUicc(MmModem(session), settle_time=0)
    uicc.fresh_on = MODEM_PATH  # as inside a command that read the slot afresh: the SIM object check is under test
    return uicc


def test_a_pin_never_goes_to_a_sim_object_that_replaced_the_one_read():
    bus = Bus()
    uicc = _uicc(bus)
    assert uicc.lock() is SimLock.SIM_PIN
    assert uicc.iccid() == Iccid(ICCID_A) and uicc.may_present(Iccid(ICCID_A))
    bus.sim = SIM_B  # ModemManager now names another card's SIM object
    try:
        outcome = uicc.present_pin(Pin("27182818"), Iccid(ICCID_A))
    except PresentationRefused:
        outcome = None  # nothing sent: the gate reads the card again
    assert (SIM_B, "SendPin") not in bus.calls, "the PIN stored for card A was sent to card B's SIM object"
    assert outcome in (None, PinOutcome.UNKNOWN) or bus.calls == [(SIM_A, "SendPin")]


def test_the_same_sim_object_gets_the_pin():
    bus = Bus()
    uicc = _uicc(bus)
    uicc.lock()
    uicc.iccid()
    assert uicc.present_pin(Pin("27182818"), Iccid(ICCID_A)) is PinOutcome.ACCEPTED
    assert bus.calls == [(SIM_A, "SendPin")]
