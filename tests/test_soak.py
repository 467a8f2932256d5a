"""The soak's short run (tests/soak.py; `make soak` runs the long one), and
proof that its checks see what they are there to see."""

from __future__ import annotations

import pytest

import soak
from simfixtures import AtPort, TEST_PUK, make_card, sim_modem


def test_short_soak_once_and_service(tmp_path, capsys):
    """A few cycles against `mtcd once` and a few against `mtcd run`: every
    guarantee holds on each."""
    for mode, cycles in (("once", 3), ("service", 3)):
        runner = soak.Soak(tmp_path / mode, seed=20261201, mode=mode)
        (tmp_path / mode).mkdir()
        runner.run(cycles)
        assert runner.violations == [], runner.violations
        # The cycles did talk to the SIM: the checks had something to check.
        assert runner.monitor.presentations, "no PIN was presented in the whole run"
    printed = capsys.readouterr().out
    assert "seed 20261201 service cycle 2" in printed


class _Watch:
    """A Monitor on a bare simulated modem, with no gateway around it."""

    def __init__(self, modem):
        self.violations: list[str] = []
        self.person = self.person_puk = False
        self.secrets: set[str] = set()
        self.rng_cut = None

    def violation(self, text: str) -> None:
        self.violations.append(text)


@pytest.mark.parametrize("commands, expected", [
    (["AT+CPIN=" + TEST_PUK + ",11112222"], "a PUK was sent"),
    (["AT+CFUN=1"], "while the SIM is not unlocked"),
    (["AT+CPIN=99990000", "AT+CPIN=99990001", "AT+CPIN=99990002"], "with 1 attempts left (guard 2)"),
])
def test_soak_checks_catch_what_they_guard(commands, expected):
    card = make_card()
    with sim_modem(card) as (modem, port):
        watch = _Watch(modem)
        soak.Monitor(watch, modem)
        with AtPort(port) as at:
            for command in commands:
                at.command(command)
    assert any(expected in v for v in watch.violations), watch.violations


def test_soak_sees_a_rejected_pin_presented_twice(tmp_path):
    card = make_card()
    with sim_modem(card) as (modem, port):
        runner = soak.Soak(tmp_path, seed=1, mode="once")
        runner.monitor = soak.Monitor(runner, modem)
        with AtPort(port) as at:
            at.command("AT+CPIN=99990000")
            runner.check_rejected_twice()
            assert runner.violations == []
            at.command("AT+CPIN=99990000")
        runner.check_rejected_twice()
    assert any("rejected presented again" in v for v in runner.violations), runner.violations


def test_soak_sees_a_pin_in_output(tmp_path):
    runner = soak.Soak(tmp_path, seed=1, mode="once")
    runner.secrets.add("48151623")
    runner._check_output("mtcctl status", "ICCID 8949020000000000014 PIN 48151623\n", 0)
    runner._check_output("mtcctl status", "ICCID 89490200048151623000\n", 0)  # digits of an ICCID: not a PIN
    assert runner.violations == ["[seed 1 cycle 0] mtcctl status printed a PIN (8 digits)"]


@pytest.mark.parametrize("mode", ["once", "service"])
def test_soak_lying_change_pairs_again_by_itself(tmp_path, monkeypatch, mode):
    """The soak's lying-change event: a rotation's AT+CPWD answered OK and
    never passed to the card, the modem power-lost, and the gateway pairs
    again with no person step (the fallback), every guarantee checked."""
    monkeypatch.setattr(soak, "EVENTS", ("lying-change",))
    runner = soak.Soak(tmp_path, seed=20261201, mode=mode)
    struck = []
    check = runner.check_pairs_after_a_lie
    monkeypatch.setattr(runner, "check_pairs_after_a_lie", lambda: (struck.append(True), check())[1])
    runner.run(2)
    assert struck, "no rotation met the lie: the event checked nothing"
    assert runner.violations == [], runner.violations
    # The card never took a rotation's PIN: it still holds its first one.
    assert runner.modem.card.pin in {c.pin for c in runner.cards[:2]}


def test_soak_sees_a_gateway_that_does_not_pair_after_a_lie(tmp_path):
    """The lying-change check fails when the gateway stays unpaired."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        runner = soak.Soak(tmp_path, seed=1, mode="once")
        runner.monitor = soak.Monitor(runner, modem)
        runner.modem = modem
        runner.decide = lambda: None  # a gateway that never unlocks the card again
        runner.check_pairs_after_a_lie()
    assert any("not paired again by itself" in v for v in runner.violations), runner.violations


def test_soak_counts_every_change_asked_for_even_a_lie_and_those_after_it(tmp_path):
    """The keystore check allows the PINs a change asked the card for: the
    lie's (the store rightly holds it as current) and every later one (a
    mark left by the lie made every real change after it look like a lost
    write)."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        runner = soak.Soak(tmp_path, seed=1, mode="once")
        monitor = soak.Monitor(runner, modem)
        old = card.pin
        monitor(f'AT+CPIN="{old}"\r')
        monitor.lie_armed = True
        monitor(f'AT+CPWD="SC","{old}","11112222"\r')  # answered OK, never reaches the card
        assert card.pin == old and monitor.lie_struck
        monitor(f'AT+CPWD="SC","{old}","33334444"\r')  # a real one
        assert card.pin == "33334444"
    told = [pin for _t, _iccid, pin in monitor.card_pins]
    assert told == ["11112222", "33334444"], told
    assert runner.violations == [], runner.violations
