"""`mtcd run` over the real ModemManager: SIM hot swap and the modem's
removal, from ModemManager's signals (mtcd.mm.watch).

What ModemManager 1.20 does on a pty modem, measured here: its generic plugin
ignores the SIM-state URCs (+CPIN: NOT INSERTED / SIM PIN) and keeps the old
card's properties after a swap; its quectel plugin (the simulator with
vendor "quectel" answers AT+CGMI with Quectel, and says +QUSIM: 1 when a card
is inserted) notices the swap, removes the modem object and exports a new
one for the same port with the new card 2-5 s later.  mtcd hears the
removal, closes the gate, follows the new object and decides again, as it
does after a SIM-state URC over serial.

The periodic check is set to a minute here, so that only a signal can make
these things happen within seconds.  Skipped only where the stack cannot
run (not root, ModemManager not installed), with that reason.
"""

from __future__ import annotations

import contextlib
import time

import pytest

import mmstack
from conftest import pin_presentations, puk_commands
from mmstack import mm_rig, mm_shared  # noqa: F401  (the module's shared ModemManager)
from simfixtures import TEST_PIN, TEST_PUK, make_card
from test_modemmanager import on_air
from test_modemmanager_pins import pin_bearing

pytestmark = pytest.mark.skipif(mmstack.missing() is not None, reason=mmstack.missing() or "")

# Seconds: ModemManager's re-probe after a swap (2-5 s measured, more on a
# loaded machine), then mtcd's decision.  Far below the periodic check.
SWAP_NOTICED_WITHIN = 25.0
SLOW_CHECK = 'check_interval = 60'
ENABLED = ("enabled", "searching", "registered")


def link_commands(log) -> str:
    """The command backend, writing "up"/"down" to `log`: ModemManager's own
    connect runs PPP on the simulator's only port, where no URC is heard
    while it is in data mode (see README); a real modem says +QUSIM on
    another port."""
    return (f'backend = "command"\nup = ["/bin/sh", "-c", "echo up >> {log}"]\n'
            f'down = ["/bin/sh", "-c", "echo down >> {log}"]')


@contextlib.contextmanager
def service(r, tmp_path):
    """`mtcd run` against the rig's ModemManager; yields (proc, notify);
    stopped with SIGTERM, and it must have stopped cleanly."""
    with mmstack.mtcd_run(r.gateway, tmp_path / "notify.sock") as (proc, notify):
        yield proc, notify
    assert proc.returncode == 0 and "Traceback" not in proc.stderr_text, proc.stderr_text


status_seen = mmstack.status_seen


def decisions(r) -> list[dict]:
    return [e for e in r.gateway.history() if e.get("event") == "decision"]


@pytest.fixture
def swap_rig(tmp_path):
    """A stack of the test's own: the quectel plugin (ModemManager keeps a
    device's plugin, so the module's shared generic one cannot serve)."""
    stack = contextlib.ExitStack()
    yield lambda card: stack.enter_context(mmstack.own_rig(tmp_path, card, vendor="quectel"))
    stack.close()


def test_modemmanager_swap_to_a_foreign_sim_closes_the_gate_and_swap_back_pairs(swap_rig, tmp_path):
    first, foreign = make_card(serial_number=1), make_card(serial_number=2)
    r = swap_rig(first)
    links = tmp_path / "link.log"
    r.configure(datalink=link_commands(links), service=SLOW_CHECK)
    r.gateway.store_pin(first.iccid.value)
    with service(r, tmp_path) as (proc, notify):
        at = status_seen(notify, f"paired ICCID {first.iccid}, link up", 180)
        assert r.stack.state() in ENABLED and links.read_text().split() == ["down", "up"]
        presented = len(pin_presentations(r.modem.commands))
        swapped_at = len(r.modem.commands)
        began = time.monotonic()
        r.modem.remove_card()
        r.modem.insert_card(foreign)
        at = status_seen(notify, "refused: unknown-sim", SWAP_NOTICED_WITHIN, start=at + 1)
        took = time.monotonic() - began
        # Link down, nothing presented to the foreign card, nothing on the air for it.
        assert links.read_text().split()[-1] == "down" and r.stack.state() == "locked"
        assert len(pin_presentations(r.modem.commands)) == presented and foreign.pin_attempts == 3
        assert on_air(r.modem.commands[swapped_at:]) == []
        # A swap, not a lost modem: the session followed ModemManager's new object.
        assert not any(m.get("STATUS", "").startswith("modem unavailable") for m in notify.messages)
        # Swap back: the right card pairs again and the link comes back.
        r.modem.remove_card()
        r.modem.insert_card(first)
        status_seen(notify, f"paired ICCID {first.iccid}, link up", 180, start=at + 1)
        assert r.stack.state() in ENABLED and links.read_text().split()[-1] == "up"
    made = decisions(r)
    assert [(d["outcome"], d["reason"], d["iccid"]) for d in made] == [
        ("paired", None, first.iccid.value), ("refused", "unknown-sim", foreign.iccid.value),
        ("paired", None, first.iccid.value)]
    assert took < SWAP_NOTICED_WITHIN
    assert puk_commands(r.modem.commands) == [] and foreign.pin_attempts == 3
    # Two SendPins for the paired card, and nothing else PIN-bearing from anyone.
    assert len(pin_bearing(r.modem.commands)) == len(pin_presentations(r.modem.commands)) == 2
    assert "ModemManager removed the modem: link down" in proc.stderr_text, proc.stderr_text


def test_modemmanager_swap_refusal_is_journalled_as_over_serial(swap_rig, tmp_path):
    """The same journal as the serial driver's swap: the refusal's reason
    and an association change from the paired card to the foreign one."""
    first, foreign = make_card(serial_number=3), make_card(serial_number=4)
    r = swap_rig(first)
    r.configure(service=SLOW_CHECK)
    r.gateway.store_pin(first.iccid.value)
    with service(r, tmp_path) as (proc, notify):
        at = status_seen(notify, f"paired ICCID {first.iccid}", 180)
        r.modem.remove_card()
        r.modem.insert_card(foreign)
        status_seen(notify, "refused: unknown-sim", SWAP_NOTICED_WITHIN, start=at + 1)
        assert r.stack.state() == "locked"
    events = r.gateway.history()
    change = [e for e in events if e["event"] == "association-changed"][-1]
    assert (change["old_iccid"], change["new_iccid"]) == (first.iccid.value, foreign.iccid.value)
    assert decisions(r)[-1]["reason"] == "unknown-sim"
    assert len(pin_presentations(r.modem.commands)) == 1


def test_modemmanager_modem_removed_is_noticed_from_the_signal_and_readded(mm_rig, tmp_path):
    """The port goes away (ModemManager drops the modem and exports none
    again): reported within seconds although the periodic check is a minute
    away; when the port is back the service pairs again."""
    card = make_card()
    r = mm_rig(card)
    r.configure(service=SLOW_CHECK)
    r.gateway.store_pin(card.iccid.value)
    with service(r, tmp_path) as (proc, notify):
        at = status_seen(notify, "paired", 180)
        began = time.monotonic()
        r.stack.withdraw(r.port)
        at = status_seen(notify, "modem unavailable", SWAP_NOTICED_WITHIN, start=at + 1)
        took = time.monotonic() - began
        r.stack.announce(r.port)
        status_seen(notify, "paired", 120, start=at + 1)
    assert took < SWAP_NOTICED_WITHIN
    assert len(pin_presentations(r.modem.commands)) == 1  # the card stayed unlocked
    # This modem runs on ModemManager's generic plugin, which notices no SIM swap: said at start.
    assert "generic plugin does not notice a SIM swap" in proc.stderr_text


# -- a swap the generic plugin does not see ------------------------------------
# ModemManager's generic plugin keeps the old card's SIM properties after a
# swap.  A PIN-less foreign card behind it would look like the paired,
# unlocked one; mtcd makes ModemManager probe the modem again (a fresh read
# of the slot) before a decision and before any link comes up.

def reported_iccid(stack) -> str:
    """The ICCID ModemManager's SIM object holds now (mmcli, as a person would see it)."""
    modem = stack.mmcli("-m", "any", "-K").stdout
    sim = next(line.split(":", 1)[1].strip() for line in modem.splitlines()
               if line.startswith("modem.generic.sim "))
    props = stack.mmcli("-i", sim, "-K").stdout
    return next(line.split(":", 1)[1].strip() for line in props.splitlines()
                if line.startswith("sim.properties.iccid"))


def paired_then_swapped_unseen(r, stack, paired, foreign) -> int:
    """`mtcd once` pairs `paired` (configured already); then `foreign` is
    swapped in and ModemManager's generic plugin does not notice: it still
    describes the paired card, unlocked (the hole).  Returns the index of
    the first command after the swap."""
    r.gateway.store_pin(paired.iccid.value)
    first = r.gateway.mtcd("once", "--json", timeout=240)
    assert first.returncode == 0 and first.last_json["link"] == "up", first.stdout + first.stderr
    r.modem.remove_card()
    r.modem.insert_card(foreign)
    assert reported_iccid(stack) == paired.iccid.value
    return len(r.modem.commands)


def test_modemmanager_generic_swap_to_a_pinless_foreign_sim_never_connects(mm_rig):
    paired, foreign = make_card(serial_number=21), make_card(serial_number=22, pin_enabled=False)
    r = mm_rig(paired)
    r.configure()
    paired_then_swapped_unseen(r, r.stack, paired, foreign)
    r.configure(datalink='backend = "modemmanager"\napn = "iot.example"')
    swapped_at = len(r.modem.commands)
    run = r.gateway.mtcd("once", "--json", timeout=180)
    # Refused; and as with any unlocked card the generic plugin refuses low
    # power, so mtcd stops with exit 69 rather than claim the radio off.
    assert run.returncode == 69 and "Unsupported" in run.last_json["message"], run.stdout + run.stderr
    decided = decisions(r)[-1]
    assert (decided["outcome"], decided["reason"], decided["iccid"]) == ("refused", "unknown-sim",
                                                                         foreign.iccid.value)
    after = r.modem.commands[swapped_at:]
    assert on_air(after) == [] and not any(c.upper().startswith("AT+CGDCONT=1") for c in after)
    assert pin_presentations(after) == [] and r.modem.contexts == {}
    assert reported_iccid(r.stack) == foreign.iccid.value  # read afresh


def test_modemmanager_generic_swap_before_a_link_retry_is_refused(mm_rig, monkeypatch):
    """A link retried later (`mtcd run` retries a paired SIM's failed link)
    reads the slot afresh first: a PIN-less foreign card swapped in since
    the decision gets no radio, no Simple.Connect."""
    from mtcd.config import load_config
    from mtcd.datalink import DatalinkFailed
    from mtcd.service import Gateway as ServiceGateway

    paired, foreign = make_card(serial_number=23), make_card(serial_number=24, pin_enabled=False)
    r = mm_rig(paired)
    r.configure(datalink='backend = "modemmanager"\napn = "iot.example"')
    r.gateway.store_pin(paired.iccid.value)
    for key, value in r.gateway.env.items():
        if key.startswith(("DBUS_", "SYSTEMD_CREDENTIAL")):
            monkeypatch.setenv(key, value)
    with ServiceGateway(load_config(r.gateway.config)) as gw:
        gw.start()
        outcome = gw.pair()
        assert outcome.paired
        gw.bring_up(outcome)
        assert r.stack.state() == "connected"
        gw.close_gate()  # the link went down
        r.modem.remove_card()
        r.modem.insert_card(foreign)
        swapped_at = len(r.modem.commands)
        with pytest.raises(DatalinkFailed) as refused:
            gw.bring_up(outcome)
        assert f"found ICCID {foreign.iccid}, not the paired ICCID {paired.iccid}" in str(refused.value)
        assert not gw.link_up
    assert on_air(r.modem.commands[swapped_at:]) == []
    assert pin_presentations(r.modem.commands[swapped_at:]) == []


# -- commands that carry a PIN or PUK, after a swap the generic plugin missed --
# Every Sim.SendPin, ChangePin, EnablePin and SendPuk mtcd makes goes on a
# reading of the slot taken afresh for the command (MmGateway.card_command):
# never on the old card's properties the generic plugin still holds.

def unseen_swap(r, foreign) -> int:
    """`foreign` swapped in behind the generic plugin, which keeps the old
    card's properties; the index of the first command after the swap."""
    old = reported_iccid(r.stack)
    r.modem.remove_card()
    r.modem.insert_card(foreign)
    assert reported_iccid(r.stack) == old  # the hole: ModemManager still names the old card
    return len(r.modem.commands)


def test_modemmanager_generic_swap_then_rotation_through_the_service_sends_nothing(mm_rig, tmp_path):
    """`mtcctl pin rotate` while `mtcd run` holds the paired card's link:
    the paired card's PIN never goes (as ChangePin's old PIN) to a foreign
    card swapped in unseen; the rotation is refused, the keystore unchanged."""
    paired, foreign = make_card(serial_number=31), make_card(serial_number=32)
    r = mm_rig(paired)
    r.configure(service=SLOW_CHECK)
    r.gateway.store_pin(paired.iccid.value)
    with service(r, tmp_path) as (proc, notify):
        notify.wait_for("READY", "1", timeout=120)
        status_seen(notify, "paired", timeout=120)
        swapped_at = unseen_swap(r, foreign)
        run = r.gateway.mtcctl("pin", "rotate", "--json", timeout=180)
    assert run.returncode == 1 and run.last_json["error"] == "refused", run.stdout + run.stderr
    assert "must be unlocked" in run.last_json["message"], run.last_json
    assert pin_bearing(r.modem.commands[swapped_at:]) == []
    stored = r.gateway.keystore().get(paired.iccid)
    assert stored.pin.reveal() == paired.pin and stored.pending_pin is None
    assert foreign.pin_attempts == 3


def test_modemmanager_generic_swap_then_pair_sends_no_pin_to_the_card_swapped_in(mm_rig):
    """`mtcctl pair` (adoption) after a swap the generic plugin missed: the
    old, PIN-less card's properties would have the transport PIN enabled
    (EnablePin) on whatever card is in the slot, stored for the old ICCID.
    Read afresh, the card in the slot is PUK-blocked: refused, nothing sent."""
    old, blocked = make_card(serial_number=33, pin_enabled=False), make_card(serial_number=34, pin_attempts=0)
    r = mm_rig(old)
    r.configure()
    swapped_at = unseen_swap(r, blocked)
    run = r.gateway.mtcctl("pair", "--json", stdin=TEST_PIN + "\n", timeout=240)
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"the SIM {blocked.iccid} is PUK-blocked" in run.last_json["message"], run.last_json
    assert pin_bearing(r.modem.commands[swapped_at:]) == []
    assert r.gateway.keystore().get(old.iccid) is None and r.gateway.keystore().get(blocked.iccid) is None


def test_modemmanager_generic_swap_then_unblock_stores_the_pin_for_the_card_unblocked(mm_rig):
    """`mtcctl sim unblock` after one blocked card was swapped for another
    unseen: the PUK goes to the card in the slot, and the new PIN is stored
    for that card's ICCID, never for the old card's (which would then be
    presented to a card that does not hold it)."""
    old, other = make_card(serial_number=35, pin_attempts=0), make_card(serial_number=36, pin_attempts=0)
    r = mm_rig(old)
    r.configure()
    swapped_at = unseen_swap(r, other)
    run = r.gateway.mtcctl("sim", "unblock", "--json", stdin=f"{TEST_PUK}\n13572468\n", timeout=180)
    assert run.returncode == 0 and run.last_json["iccid"] == other.iccid.value, run.stdout + run.stderr
    assert len(puk_commands(r.modem.commands[swapped_at:])) == 1 and other.pin == "13572468"
    assert r.gateway.keystore().get(old.iccid) is None
    assert r.gateway.keystore().get(other.iccid).pin.reveal() == "13572468"


def test_modemmanager_generic_swap_then_unblock_of_the_named_sim_sends_no_puk(mm_rig):
    """`mtcctl sim unblock --iccid` names the card the PUK is for: another
    card in the slot (read afresh, whatever ModemManager said before) gets
    nothing, and nothing is stored."""
    old, other = make_card(serial_number=37, pin_attempts=0), make_card(serial_number=38, pin_attempts=0)
    r = mm_rig(old)
    r.configure()
    swapped_at = unseen_swap(r, other)
    run = r.gateway.mtcctl("sim", "unblock", "--iccid", old.iccid.value, "--json",
                           stdin=f"{TEST_PUK}\n13572468\n", timeout=180)
    assert run.returncode == 1 and run.last_json["error"] == "refused", run.stdout + run.stderr
    assert f"the slot holds SIM {other.iccid}, not {old.iccid}" in run.last_json["message"]
    assert pin_bearing(r.modem.commands[swapped_at:]) == [] and puk_commands(r.modem.commands[swapped_at:]) == []
    assert other.puk_attempts == 10 and r.gateway.keystore().get(old.iccid) is None
    assert TEST_PUK not in run.stdout + run.stderr


def test_modemmanager_generic_no_pin_goes_out_on_a_reading_not_taken_afresh(mm_rig, monkeypatch):
    """The rule in one place (MmUicc): on the generic plugin, a PIN goes
    only on a reading of the modem object a re-probe exported for the
    command under way; the same reading outside a command sends nothing."""
    from mtcd.config import load_config
    from mtcd.secret import Pin
    from mtcd.service import Gateway as ServiceGateway
    from mtcd.simlock import SimLock
    from mtcd.uicc import PresentationRefused

    card = make_card(serial_number=39)
    r = mm_rig(card)
    r.configure()
    for key, value in r.gateway.env.items():
        if key.startswith(("DBUS_", "SYSTEMD_CREDENTIAL")):
            monkeypatch.setenv(key, value)
    with ServiceGateway(load_config(r.gateway.config)) as gw:
        gw.start()
        assert gw.uicc.lock() is SimLock.SIM_PIN and gw.uicc.iccid() == card.iccid
        with pytest.raises(PresentationRefused, match="not read afresh"):
            gw.uicc.present_pin(Pin(TEST_PIN), card.iccid)
        assert pin_bearing(r.modem.commands) == []
        with gw.card_command():
            assert gw.uicc.lock() is SimLock.SIM_PIN and gw.uicc.iccid() == card.iccid
            assert gw.uicc.present_pin(Pin(TEST_PIN), card.iccid).value == "accepted"
        assert gw.uicc.fresh_on is None  # the command's reading ends with it
    assert len(pin_presentations(r.modem.commands)) == 1


def test_modemmanager_generic_swap_then_pin_try_presents_nothing_to_the_card_swapped_in(mm_rig):
    """`mtcctl pin try` after a locked card was swapped for another unseen:
    the old card's stored PIN is not presented to the card in the slot,
    which has none stored (refused)."""
    old, foreign = make_card(serial_number=40), make_card(serial_number=41)
    r = mm_rig(old)
    r.configure()
    r.gateway.store_pin(old.iccid.value)
    swapped_at = unseen_swap(r, foreign)
    run = r.gateway.mtcctl("pin", "try", "--yes", "--json", timeout=180)
    assert run.returncode == 1 and run.last_json["reason"] == "unknown-sim", run.stdout + run.stderr
    assert run.last_json["iccid"] == foreign.iccid.value
    assert pin_bearing(r.modem.commands[swapped_at:]) == [] and foreign.pin_attempts == 3


# -- a swap the quectel plugin is never told of --------------------------------
# The quectel plugin re-exports the modem when the modem says +QUSIM; a
# modem that says nothing (detection switched off with AT+QSIMDET, the URC
# lost, a firmware that does not send it) leaves the old card's properties,
# as the generic plugin does.  mtcd re-probes on this plugin too.

def test_modemmanager_quectel_swap_never_signalled_gets_no_pin(swap_rig):
    """Both cards locked, with the same PIN (one batch): ModemManager still
    names the paired card, asking for SIM PIN.  Taken at its word (before
    this fix), the paired card's PIN went to the foreign card, which took
    it: paired under the old ICCID, link up.  Read afresh, refused."""
    paired, foreign = make_card(serial_number=51), make_card(serial_number=52)
    r = swap_rig(paired)
    r.configure()
    r.gateway.store_pin(paired.iccid.value)
    assert reported_iccid(r.stack) == paired.iccid.value
    r.modem.remove_card(report=False)
    r.modem.insert_card(foreign, report=False)
    swapped_at = len(r.modem.commands)
    assert reported_iccid(r.stack) == paired.iccid.value  # the hole, on this plugin too
    run = r.gateway.mtcd("once", "--json", timeout=180)
    assert run.returncode == 1, run.stdout + run.stderr
    decided = decisions(r)[-1]
    assert (decided["outcome"], decided["reason"], decided["iccid"]) == ("refused", "unknown-sim",
                                                                         foreign.iccid.value)
    after = r.modem.commands[swapped_at:]
    assert pin_bearing(after) == [] and puk_commands(after) == [] and on_air(after) == []
    assert foreign.pin_attempts == 3 and paired.pin_attempts == 3
    assert reported_iccid(r.stack) == foreign.iccid.value  # read afresh
