"""review7: a run's second candidate through ModemManager goes only to the
card it is stored for (guarantee 1), even on a plugin that notices no swap.

The gate reads the ICCID again before a second candidate (mtcd.gate.pair,
_still_the_card).  Over AT that read reaches the card; over ModemManager it
reads the SIM object's SimIdentifier, which a plugin blind to swaps (generic,
or quectel when the modem says nothing) leaves as it was at the last probe.
The command's re-probe was taken before the first SendPin: a card swapped in
after the refusal still read as the stored one, and got the other candidate.
The fake bus here keeps ModemManager's properties from its last probe and
sends a PIN to the card physically in the slot."""

from __future__ import annotations

import pytest

from mtcd.gate import pair
from mtcd.identity import Iccid, Imei
from mtcd.keystore import Keystore
from mtcd.mm import states
from mtcd.mm.bus import BusError
from mtcd.mm.gateway import MmGateway
from mtcd.policy import PinOutcome, PolicySettings
from mtcd.secret import Pin
from mtcd.simlock import SimLock

import mmstack
from conftest import pin_presentations, puk_commands
from mmstack import mm_rig, mm_shared  # noqa: F401  (the module's shared ModemManager)
from simfixtures import TEST_PIN, make_card, make_iccid, make_imei, stage_two_candidates
from test_review6_mm_reprobe import fake_bus_gateway
from test_modemmanager import on_air

MODEM = "/org/freedesktop/ModemManager1/Modem/0"
SIM = "/org/freedesktop/ModemManager1/SIM/0"
A, B = make_iccid(71), make_iccid(72)
IMEI = make_imei(71)
CARDS_PIN = Pin("31415926")  # card A's PIN, staged
STALE_PIN = Pin("16180339")  # stored as current; card A refuses it
_WRONG = "org.freedesktop.ModemManager1.Error.MobileEquipment.IncorrectPassword"


class CachingBus:
    """One modem on ttyUSB2.  ModemManager's SimIdentifier is the card it
    found at its last probe (InhibitDevice released); a SendPin goes to the
    card in the slot.  `swap_after_refusal`: card A is pulled for B, without
    a word, right after it refuses a PIN."""

    alive = True

    def __init__(self, swap_after_refusal: bool):
        self.slot = A
        self.probed = A
        self.swap_after_refusal = swap_after_refusal
        self.calls: list[tuple[str, str]] = []
        self.sent_to: list[str] = []  # the card in the slot for every SendPin
        self.left = {A: 3, B: 3}
        self.unlocked = False
        self.puk_blocked = False

    def modems(self):
        return {MODEM: {"PrimaryPort": "ttyUSB2", "Ports": [("ttyUSB2", 3)]}}

    def get_all(self, path, interface):
        if self.puk_blocked:
            return {"State": states.STATE_LOCKED, "StateFailedReason": 0, "UnlockRequired": states.LOCK_SIM_PUK}
        if self.unlocked:
            return {"State": states.STATE_DISABLED, "StateFailedReason": 0, "UnlockRequired": states.LOCK_NONE}
        return {"State": states.STATE_LOCKED, "StateFailedReason": 0, "UnlockRequired": states.LOCK_SIM_PIN}

    def get(self, path, interface, name):
        if interface == states.MODEM:
            if name == "UnlockRetries":
                return {states.LOCK_SIM_PIN: self.left[self.probed]}
            return {"Sim": SIM, "Device": "/sys/devices/usb1", "Plugin": "generic",
                    "EquipmentIdentifier": IMEI, "State": states.STATE_LOCKED}[name]
        if interface == states.SIM and name == "SimIdentifier":
            return self.probed
        if interface == states.SIM and name == "Imsi":
            return "001010123456789"
        raise AssertionError(f"unexpected read {path} {interface}.{name}")

    def call(self, path, interface, method, signature=None, body=(), timeout=None):
        self.calls.append((path, method))
        if method == "InhibitDevice" and body[1] is False:
            self.probed = self.slot
        if method == "SendPuk":
            self.sent_to.append(self.slot)
            if self.swap_after_refusal:
                self.slot = B
            raise BusError(_WRONG, call="Sim.SendPuk")
        if method == "SendPin":
            self.sent_to.append(self.slot)
            if self.slot == A and body[0] == CARDS_PIN.reveal():
                self.unlocked = True
                return ()
            self.left[self.slot] -= 1
            if self.swap_after_refusal:
                self.slot = B
            raise BusError(_WRONG, call="Sim.SendPin")
        return ()


def _gateway(bus) -> MmGateway:
    return fake_bus_gateway(bus, MODEM, IMEI)


def _two_candidates(state):
    stage_two_candidates(state, Iccid(A), STALE_PIN, CARDS_PIN)


def test_the_second_candidate_does_not_go_to_a_card_modemmanager_still_names_as_the_stored_one(tmp_path):
    state = tmp_path / "state"
    _two_candidates(state)
    bus = CachingBus(swap_after_refusal=True)
    gw = _gateway(bus)
    with gw.card_command():
        outcome = pair(gw.uicc, Keystore.open(state), PolicySettings(), Imei(IMEI), None)
    assert bus.sent_to == [A], f"a second candidate went to the card swapped in: {bus.sent_to}"
    assert bus.left[B] == 3
    assert not outcome.paired


def test_without_a_swap_the_second_candidate_still_goes_to_the_same_card(tmp_path):
    """The other side: the card that refused one candidate gets the other, and pairs."""
    state = tmp_path / "state"
    _two_candidates(state)
    bus = CachingBus(swap_after_refusal=False)
    gw = _gateway(bus)
    with gw.card_command():
        outcome = pair(gw.uicc, Keystore.open(state), PolicySettings(), Imei(IMEI), None)
    assert bus.sent_to == [A, A]
    assert outcome.paired and outcome.iccid == Iccid(A)



def test_after_a_refused_puk_the_decision_in_the_same_command_reads_the_slot_afresh(tmp_path):
    """`mtcctl sim unblock` through the service: SendPuk, then a pairing in
    the same command (gatekeeper._with_gate_closed).  A PUK the card refused,
    then a swap nobody reports: the pairing reads the card in the slot, not
    ModemManager's word from before the SendPuk, and A's PIN goes nowhere."""
    from mtcd.secret import Puk

    state = tmp_path / "state"
    Keystore.open(state).set_pin(Iccid(A), CARDS_PIN)
    bus = CachingBus(swap_after_refusal=True)
    gw = _gateway(bus)
    bus.puk_blocked = True
    with gw.card_command():
        assert gw.uicc.lock() is SimLock.SIM_PUK and gw.uicc.iccid() == Iccid(A)
        assert gw.uicc.unblock(Puk("12345678"), CARDS_PIN, Iccid(A)) is PinOutcome.REJECTED
        bus.puk_blocked = False  # card B, in the slot now, asks for its PIN
        outcome = pair(gw.uicc, Keystore.open(state), PolicySettings(), Imei(IMEI), None)
    assert bus.sent_to == [A], f"A's PIN went to the card swapped in: {bus.sent_to}"
    assert outcome.iccid == Iccid(B) and not outcome.paired


# -- through the real ModemManager (generic plugin), on the simulator ----------

def test_modemmanager_second_candidate_after_an_unreported_swap_goes_nowhere(mm_rig):
    """Card A holds the staged PIN and refuses the stored current one; right
    after its refusal it is swapped, without a word, for a foreign card with
    the same PIN (one batch).  ModemManager's generic plugin still names A.
    Before the fix the staged PIN went to the foreign card, which took it,
    and mtcd said paired under A's ICCID.  Now the slot is read afresh first:
    the foreign card is unknown and gets nothing."""
    if mmstack.missing() is not None:
        pytest.skip(mmstack.missing())
    paired, foreign = make_card(serial_number=73), make_card(serial_number=74)
    r = mm_rig(paired)
    r.configure()
    r.gateway.store_pin(paired.iccid.value, STALE_PIN.reveal())
    staged = r.gateway.mtcctl("pin", "stage", paired.iccid.value, stdin=TEST_PIN + "\n")
    assert staged.returncode == 0, staged.stdout + staged.stderr
    modem, cpin = r.modem, r.modem._cpin
    swapped = []

    def cpin_then_swap(form, args):
        reply = cpin(form, args)
        if form == "set" and modem.card is paired and not swapped and reply[-1].startswith("+CME ERROR"):
            swapped.append(len(modem.commands))
            modem.remove_card(report=False)
            modem.insert_card(foreign, report=False)
        return reply

    modem._cpin = cpin_then_swap
    run = r.gateway.mtcd("once", "--json", timeout=180)
    assert swapped, "card A never refused the stale PIN: " + run.stdout + run.stderr + repr(pin_presentations(modem.commands))
    after = modem.commands[swapped[0]:]
    assert pin_presentations(after) == [], f"a second candidate went to the foreign card: {pin_presentations(after)}"
    assert foreign.pin_attempts == 3 and puk_commands(modem.commands) == [] and on_air(after) == []
    assert run.returncode == 1 and run.last_json["reason"] == "unknown-sim", run.stdout + run.stderr
    assert run.last_json["iccid"] == foreign.iccid.value
