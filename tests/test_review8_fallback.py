"""A hostile look at the chained fallback (guarantee 5, and 1/2/4 where it
meets them): what a person is told, and what the gateway does, while a
change only the modem's OK vouches for is not proven yet."""

from __future__ import annotations

import json

import pytest

from mtcd.config import PolicyConfig
from mtcd.journal import PairingJournal
from mtcd.keystore import Keystore
from mtcd.lifecycle import Lifecycle, LifecycleRefused
from mtcd.secret import Pin

from conftest import pin_presentations
from simfixtures import make_card, sim_modem, wait_until
from test_chained_fallback import ICCID, IMEI, Card, _entry, _pair
from test_service import service

TRANSPORT = Pin("27182818")  # the stub card's PIN (test_chained_fallback.CARDS_PIN)


def _adopt(state, card):
    lifecycle = Lifecycle(card, Keystore.open(state), PairingJournal(state), PolicyConfig(), IMEI)
    return lifecycle.adopt(TRANSPORT, lambda: _pair(state, card))


def test_an_adoption_whose_change_is_unproven_never_advises_forgetting_its_pin(tmp_path):
    """The modem said OK to the adoption's AT+CPWD and never passed it on:
    the card still holds the transport PIN.  `mtcctl pair` again must not
    advise "forget its PIN first": forgetting drops the
    gateway's PIN, and if the change did reach the card, the transport PIN
    presented next is refused and nobody knows the card's PIN any more."""
    state = tmp_path / "state"
    card = Card(True)  # unlocked with the transport PIN; the first AT+CPWD is the modem's lie
    assert _adopt(state, card).outcome == "done"
    entry = _entry(state)
    assert entry.fallback_pin == TRANSPORT and not entry.transport
    with pytest.raises(LifecycleRefused) as refused:
        _adopt(state, card)
    said = str(refused.value)
    assert "already paired" in said and "not proven" in said and "power-cycle the modem" in said, said
    assert "forget" not in said, said
    assert TRANSPORT.reveal() not in said and entry.pin.reveal() not in said
    # Nothing sent, nothing dropped.
    assert card.changes == [TRANSPORT] and card.presented == []
    assert _entry(state) == entry
    # The way out it names works: the card asks for its PIN again, the
    # gateway's PIN is refused once and the transport PIN is current again.
    card.power_cycle()
    assert _pair(state, card).paired
    entry = _entry(state)
    assert entry.pin == TRANSPORT and entry.transport and entry.fallback_pin is None


def test_pair_does_not_claim_the_gateway_s_own_pin_while_the_adoption_s_change_is_unproven(gateway, notify_socket):
    """The service adopts the SIM itself (rotate_on_adopt); the modem answers
    OK to its AT+CPWD and never passes it on.  `mtcctl pair` again does not
    say the SIM "is unlocked with this gateway's own PIN": the card still
    holds the transport PIN, which others know."""
    transport = "11223344"
    card = make_card(pin=transport)
    with sim_modem(card) as (modem, port):
        modem.fail_after("AT+CPWD=", "unsent")
        gateway.configure(port)
        with service(gateway, notify_socket):
            notify_socket.wait_for("STATUS", "refused: unknown-sim")
            run = gateway.mtcctl("pin", "set", str(card.iccid), "--transport", stdin=transport + "\n")
            assert run.returncode == 0, run.stderr
            wait_until(lambda: modem.pdp_active and any(c.startswith("AT+CPWD") for c in modem.commands), 10,
                       "paired, the change answered OK")
            wait_until(lambda: gateway.keystore().get(card.iccid).fallback_pin is not None, 10, "change settled")
            assert card.pin == transport  # the card never made it
            changes = len([c for c in modem.commands if c.startswith("AT+CPWD")])
            presented = len(pin_presentations(modem.commands))
            again = gateway.mtcctl("pair", "--json", stdin=transport + "\n")
            out = again.stdout + again.stderr
            assert transport not in out
            assert again.returncode == 0, out
            result = json.loads(again.stdout)
            assert result["outcome"] == "already-adopted", out
            assert "own PIN" not in result["detail"] and "not proven" in result["detail"], out
            assert len([c for c in modem.commands if c.startswith("AT+CPWD")]) == changes
            assert len(pin_presentations(modem.commands)) == presented
            assert card.pin_attempts == 3


# -- power cuts at the rotation's keystore writes ------------------------------

from test_chained_fallback import CARDS_PIN, PowerCut, _rotate, _store  # noqa: E402


class GuardedCard(Card):
    """Records the count before every presentation and every PIN change."""

    def __init__(self, *lies):
        super().__init__(*lies)
        self.spent_at: list[int] = []

    def present_pin(self, pin, for_iccid):
        self.spent_at.append(self.left)
        return super().present_pin(pin, for_iccid)

    def change_pin(self, old, new, for_iccid):
        self.spent_at.append(self.left)
        return super().change_pin(old, new, for_iccid)


def _cut(monkeypatch, name, when, at):
    """The power goes in Keystore.<name>'s `at`-th call (0-based), before its
    write or right after it."""
    original = getattr(Keystore, name)
    calls = []

    def cut(self, *args, **kwargs):
        calls.append(1)
        if len(calls) - 1 != at:
            return original(self, *args, **kwargs)
        if when == "after":
            original(self, *args, **kwargs)
        raise PowerCut()

    monkeypatch.setattr(Keystore, name, cut)
    return lambda: monkeypatch.setattr(Keystore, name, original)


@pytest.mark.parametrize("lies", [(True, True), (True, False), (False, True), (False, False)])
@pytest.mark.parametrize("name, at", [("promote_unproven", 0), ("promote_unproven", 1), ("discard_pending", 0),
                                      ("record_accepted", 0), ("record_accepted", 1)])
@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("boot_between", [False, True])
def test_a_power_cut_at_each_write_of_two_rotations_never_blocks_nor_loses_the_card_s_pin(
        tmp_path, monkeypatch, lies, name, at, when, boot_between):
    """Two rotations, each change carried out by the card or only answered
    OK by the modem, with or without the card asking for its PIN between
    them, the power cut inside one of the writes that settle them.  Then
    the card asks for its PIN at every boot: the gateway never presents
    below the guard nor a PIN the card refused twice, and either pairs by
    itself or still holds the card's PIN for a person's `pin try`."""
    state = tmp_path / "state"
    _store(state)
    card = GuardedCard(*lies)
    restore = _cut(monkeypatch, name, when, at)
    for _ in range(2):
        try:
            _rotate(state, card)
        except (PowerCut, LifecycleRefused):
            pass
        if boot_between:
            card.power_cycle()
            try:
                _pair(state, card)
            except PowerCut:
                pass
    restore()
    paired = False
    for _ in range(3):
        card.power_cycle()
        outcome = _pair(state, card)
        paired = paired or outcome.paired
    # Every presentation and change was made at or above the guard of 2
    # (a change's old PIN counts as an attempt too), none went twice wrong.
    assert all(left >= 2 for left in card.spent_at), card.spent_at
    assert len(card.refused) == len(set(card.refused)), card.refused
    assert card.left >= 1
    entry = _entry(state)
    held = [p.reveal() for p in (entry.pin, entry.pending_pin, entry.fallback_pin) if p is not None]
    assert card.pin.reveal() in held, (lies, name, at, when)
    if not paired:
        # A person's `pin try` below the guard finds the card's PIN.
        from mtcd.recovery import TryRequest, try_pin
        from mtcd.policy import PolicySettings

        for _ in range(3):
            if card.state.name == "READY":
                break
            try_pin(card, Keystore.open(state), PairingJournal(state), PolicySettings(), IMEI,
                    TryRequest(below_guard=True, last_attempt=True, confirmed=True, iccid=ICCID))
        assert card.state.name == "READY" and _entry(state).pin == card.pin


# -- three candidates on a card that tells no count ---------------------------

from dataclasses import replace  # noqa: E402

from mtcd.keystore import STAGED  # noqa: E402


def _stage_as_earlier_code(state, pin):
    """An OTA PIN staged while the fallback is held, as the code before
    staging waited for the proof let a store be (three candidates)."""
    keystore = Keystore.open(state)
    with keystore._locked():
        keystore._commit([replace(keystore.get(ICCID), pending_pin=pin, pending_origin=STAGED)])


from mtcd.policy import Reason  # noqa: E402
from test_chained_fallback import CountlessCard  # noqa: E402


def test_a_card_that_tells_no_count_never_has_three_candidates_spent_automatically(tmp_path):
    """Without a counter each candidate is presented at most once, which with
    two candidates leaves the card one attempt.  With the fallback there are
    three: a change the modem dropped, an over-the-air change staged that
    never came, and a PIN changed behind the gateway's back.  Current,
    staged and fallback are all wrong; presenting all three blocks the SIM
    (PUK).  Two may be spent automatically, the third waits for a person."""
    state = tmp_path / "state"
    _store(state)
    card = CountlessCard(True)  # the change is the modem's lie
    _rotate(state, card)
    card.pin = holds = Pin("44443333")  # changed elsewhere
    _stage_as_earlier_code(state, Pin("55667788"))  # never sent
    entry = _entry(state)
    assert holds != CARDS_PIN and entry.pin != holds and entry.fallback_pin == CARDS_PIN
    card.power_cycle()
    outcomes = [_pair(state, card) for _ in range(4)]
    assert card.left >= 1, f"the SIM is PIN-blocked: {[o.reason for o in outcomes]}"
    assert len(card.presented) == 2 and outcomes[-1].reason is Reason.RETRY_GUARD
    assert _entry(state).fallback_pin == CARDS_PIN  # kept for a person's `pin try`


class StuckCounterCard(Card):
    """A modem whose PIN counter always reads full (a counter that lies)."""

    def attempts(self):
        from mtcd.uicc import PinAttempts

        return PinAttempts(pin1=3, puk1=10)


def test_a_counter_that_lies_never_lets_the_fallback_go_third(tmp_path):
    """The counter reads 3 after every refusal: the guard sees nothing.  With
    two candidates that cost at most two attempts; the fallback, a third,
    must not take the last one (the same three wrong PINs as above)."""
    state = tmp_path / "state"
    _store(state)
    card = StuckCounterCard(True)
    _rotate(state, card)
    card.pin = Pin("44443333")  # changed elsewhere
    _stage_as_earlier_code(state, Pin("55667788"))
    card.power_cycle()
    outcomes = [_pair(state, card) for _ in range(3)]
    assert card.left >= 1, f"the SIM is PIN-blocked: {[o.reason for o in outcomes]}"
    assert len(card.presented) == 2 and outcomes[-1].reason is Reason.RETRY_GUARD
    assert _entry(state).fallback_pin == CARDS_PIN


# -- leaks (guarantee 4) --------------------------------------------------------

from mtcd.identity import Iccid as _Iccid  # noqa: E402
from simfixtures import TEST_PIN  # noqa: E402


def test_neither_pin_of_a_lying_change_shows_anywhere(gateway):
    """A lying change, then every command a technician runs while the
    fallback is held and after it settled: no output, log line or state
    file carries the card's PIN (the fallback) or the unproven one."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once", "--json").returncode == 0
        modem.fail_after("AT+CPWD=", "unsent")
        runs = [gateway.mtcctl("pin", "rotate", "--json")]
        assert runs[-1].returncode == 0, runs[-1].stderr
        unproven = gateway.keystore().get(_Iccid(str(card.iccid))).pin.reveal()
        assert unproven != TEST_PIN and card.pin == TEST_PIN
        held = [("pin", "list"), ("pin", "list", "--json"), ("doctor",), ("doctor", "--json"),
                ("status", "--json")]
        runs += [gateway.mtcctl(*args) for args in held]
        modem.power_loss()
        runs.append(gateway.mtcd("once", "--dry-run", "--json"))
        runs.append(gateway.mtcd("once", "--json", "-v"))
        assert card.verified and gateway.keystore().get(_Iccid(str(card.iccid))).pin.reveal() == TEST_PIN
        runs += [gateway.mtcctl(*args) for args in held]
        runs.append(gateway.mtcctl("pin", "try", "--dry-run", "--json"))
        for run in runs:
            text = run.stdout + run.stderr
            assert "Traceback" not in text
            assert TEST_PIN not in text and unproven not in text, text
        runs.append(gateway.mtcctl("history", "--json"))
        text = runs[-1].stdout + runs[-1].stderr
        assert "pin-change-not-made" in text and TEST_PIN not in text and unproven not in text
        for path, data in gateway.every_state_file().items():
            text = data.decode("latin-1")
            assert TEST_PIN not in text and unproven not in text, path


# -- damaged or odd fallback fields ----------------------------------------------

from mtcd import keystore as keystore_module  # noqa: E402
from mtcd.errors import KeystoreError  # noqa: E402
from test_chained_fallback import _store as _store_cards_pin  # noqa: E402


def _write_record(state, change):
    keystore = Keystore.open(state)
    entry = keystore.get(ICCID)
    bad = keystore_module._record(entry)
    change(bad)
    record = keystore_module._record
    keystore_module._record = lambda e: bad
    try:
        with keystore._locked():
            keystore._commit([entry])
    finally:
        keystore_module._record = record


def _set(key, value):
    return lambda record: record["fallback"].__setitem__(key, value)


@pytest.mark.parametrize("change", [
    _set("pin", 27182818), _set("pin", "27a8"), _set("pin", ""), _set("pin", None), _set("pin", "1" * 40),
    _set("transport", "true"), _set("transport", 1), _set("rotated", 5), _set("state", None),
    lambda r: r["fallback"].pop("rotated"), lambda r: r["fallback"].__setitem__("extra", 1),
    lambda r: r.__setitem__("fallback", []), lambda r: r.__setitem__("fallback", "27182818"),
    lambda r: r.__setitem__("fallback", {}), lambda r: r.__setitem__("unsettled", ["fallback", "fallback"]),
    lambda r: r.__setitem__("attempt", "fallbacks"),
], ids=lambda c: getattr(c, "__qualname__", "c"))
def test_an_odd_fallback_field_is_one_keystore_error(tmp_path, change):
    state = tmp_path / "state"
    _store_cards_pin(state)
    _rotate(state, Card(True))
    _write_record(state, change)
    with pytest.raises(KeystoreError) as raised:
        Keystore.open(state).get(ICCID)
    assert "\n" not in str(raised.value) and CARDS_PIN.reveal() not in str(raised.value)


def test_a_fallback_marked_while_none_is_held_settles_without_a_traceback(tmp_path):
    """An attempt marker naming the fallback in an entry holding none (an
    edited or half-understood file): the counter settles it, nothing is
    presented that is not held."""
    state = tmp_path / "state"
    _store_cards_pin(state)
    _write_record(state, lambda r: r.update(attempt="fallback", attempts_before=3))
    card = Card()
    card.power_cycle()
    outcome = _pair(state, card)
    assert outcome.paired and card.presented == [CARDS_PIN]


def test_seventy_sims_with_fallbacks_in_a_bucketed_store_each_settle_on_their_own(tmp_path):
    """Past INLINE_MAX (64) entries the store is split into buckets: every
    entry's fallback survives, and settling one (fallback refused; fallback
    accepted; current accepted) touches no other."""
    from mtcd.identity import Iccid
    from simfixtures import make_iccid

    state = tmp_path / "state"
    keystore = Keystore.open(state)
    iccids = [Iccid(make_iccid(1000 + i)) for i in range(70)]
    for i, iccid in enumerate(iccids):
        keystore.set_pin(iccid, Pin(f"{i:04d}1111"))
        keystore.stage_pending(iccid, Pin(f"{i:04d}2222"), "rotation")
        assert keystore.promote_unproven(iccid, IMEI.value, Pin(f"{i:04d}2222")) is not None
    assert json.loads((state / "keystore.json").read_text())["format"] == "mtcd-keystore/3"
    keystore = Keystore.open(state)
    keystore.record_rejected(iccids[0], "fallback")
    keystore.record_accepted(iccids[1], IMEI.value, "fallback")
    keystore.record_accepted(iccids[2], IMEI.value)
    reopened = Keystore.open(state)
    for i, iccid in enumerate(iccids):
        entry = reopened.get(iccid)
        if i == 1:
            assert entry.pin == Pin(f"{i:04d}1111") and entry.fallback_pin is None
        elif i in (0, 2):
            assert entry.pin == Pin(f"{i:04d}2222") and entry.fallback_pin is None
        else:
            assert entry.pin == Pin(f"{i:04d}2222") and entry.fallback_pin == Pin(f"{i:04d}1111"), i
    for path in state.rglob("*"):
        if path.is_file():
            assert b"00001111" not in path.read_bytes() and b"00692222" not in path.read_bytes()


# -- a card swapped between the current's refusal and the fallback ------------


def test_a_silent_swap_after_the_current_s_refusal_never_gets_the_fallback_on_a_pty(gateway):
    """AT path, a modem that reports no swap: card A refuses the unproven
    PIN, and before the fallback goes out card B is in the slot.  The
    fallback (A's PIN) is never presented to B, nor B's counter spent."""
    a = make_card(serial_number=41)
    b = make_card(pin="90807060", serial_number=42)
    with sim_modem(a) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(a.iccid))
        assert gateway.mtcd("once", "--json").returncode == 0
        modem.fail_after("AT+CPWD=", "unsent")
        assert gateway.mtcctl("pin", "rotate").returncode == 0
        assert a.pin == TEST_PIN and gateway.keystore().get(a.iccid).fallback_pin.reveal() == TEST_PIN
        modem.power_loss()
        handle, seen = modem.handle, []

        def swapping(line):
            card = modem.card
            reply = handle(line)
            if line.strip().upper().startswith("AT+CPIN="):
                seen.append((card.iccid.value, line.strip()))
                if card is a:
                    modem.remove_card(report=False)
                    modem.insert_card(b, report=False)
            return reply

        modem.handle = swapping
        run = gateway.mtcd("once", "--json")
        assert run.returncode != 0 and not modem.pdp_active
        assert [iccid for iccid, _ in seen] == [a.iccid.value], seen  # one presentation, to A
        assert b.pin_attempts == 3 and a.pin_attempts == 2
        # A's fallback is still held for A, and pairs A when it is back.
        assert gateway.keystore().get(a.iccid).fallback_pin.reveal() == TEST_PIN
        modem.handle = handle
        modem.remove_card()
        modem.insert_card(a)
        assert gateway.mtcd("once", "--json").last_json["state"] == "paired"
        assert a.pin_attempts == 3
