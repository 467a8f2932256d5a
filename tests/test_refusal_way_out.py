"""Every refusal names the ICCID and a command that works in that state.

For each refusal the simulator can produce, the test reads the message as a
person would (`mtcd once`'s line, or the refusing command's stderr), takes the
mtcctl command(s) it names between backquotes, runs them in that state with
what a person would type (the right PIN, the PUK; `--yes` because stdin is
not a terminal here), and checks that they work and that pairing no longer
refuses for the same reason.  A message that names no command, or a command
that refuses in that state, fails the test."""

from __future__ import annotations

import re
import shlex

import pytest

from conftest import network_commands, puk_commands
from simfixtures import TEST_PIN, TEST_PUK, make_card, make_imei, sim_modem

WRONG_PIN = "11112222"
NEW_PIN = "97531864"
NO_COUNTERS = {"has_cpinr": False, "has_csim": False}
COMMAND = re.compile(r"`(mtcctl [^`]*)`")


def named_commands(message: str) -> list[list[str]]:
    return [shlex.split(c)[1:] for c in COMMAND.findall(message)]


def refusal_of_once(gateway, reason: str, card) -> str:
    run = gateway.mtcd("once")
    assert run.returncode == 1, run.stdout + run.stderr
    line = run.stdout.strip().splitlines()[-1]
    assert line.startswith(f"refused: {reason}: "), line
    if card is not None:
        assert str(card.iccid) in line, f"the refusal does not name the ICCID: {line}"
    return line


def follow(gateway, card, message: str, reason: str, count: int = 1) -> None:
    """Run the first `count` commands the message names (alternatives are
    separated by "or": the first one; steps by "then": all of them)."""
    commands = named_commands(message)
    assert len(commands) >= count, f"the message names no way out: {message}"
    for argv in commands[:count]:
        stdin = None
        if argv[:2] == ["pin", "set"] or argv[:1] == ["pair"]:
            stdin = card.pin + "\n"
        elif argv[:2] == ["sim", "unblock"]:
            stdin = f"{TEST_PUK}\n{NEW_PIN}\n"
        if argv[:2] == ["pin", "try"] or argv[:2] == ["pin", "forget"]:
            argv = [*argv, "--yes"]
        run = gateway.mtcctl(*argv, stdin=stdin, timeout=60)
        assert run.returncode == 0, f"`mtcctl {' '.join(argv)}` named by {message!r} failed: {run.stdout}{run.stderr}"
        assert reason not in run.stdout + run.stderr


def pairs_now(gateway, modem, reason: str) -> None:
    modem.power_loss()
    run = gateway.mtcd("once")
    assert run.returncode == 0 and reason not in run.stdout, run.stdout + run.stderr
    assert puk_commands([c for c in modem.commands if "AT+CPIN=" in c and "," in c]) == \
        puk_commands(modem.commands)


def test_foreign_sim_unknown_sim(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        message = refusal_of_once(gateway, "unknown-sim", card)
        follow(gateway, card, message, "unknown-sim")
        pairs_now(gateway, modem, "unknown-sim")


def test_foreign_sim_adopted_with_the_second_named_command(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        message = refusal_of_once(gateway, "unknown-sim", card)
        commands = named_commands(message)
        assert commands[1] == ["pair"]
        run = gateway.mtcctl("pair", stdin=card.pin + "\n", timeout=60)
        assert run.returncode == 0, run.stderr
        pairs_now(gateway, modem, "unknown-sim")


def test_rejected_pin(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        message = refusal_of_once(gateway, "pin-rejected", card)
        follow(gateway, card, message, "pin-rejected")
        pairs_now(gateway, modem, "pin-rejected")


def test_below_the_guard(gateway):
    card = make_card(pin_attempts=1)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        message = refusal_of_once(gateway, "retry-guard", card)
        assert "`mtcctl pin try --below-guard --last-attempt`" in message
        follow(gateway, card, message, "retry-guard")
        pairs_now(gateway, modem, "retry-guard")


def test_retry_guard_of_an_unsettled_attempt_without_counters(gateway):
    """The known leftover: an attempt lost on a modem without counters."""
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CPIN=", "before")  # lost before it reached the card
        assert gateway.mtcd("once").returncode == 1
        modem.power_loss()
        message = refusal_of_once(gateway, "retry-guard", card)
        follow(gateway, card, message, "retry-guard")
        pairs_now(gateway, modem, "retry-guard")


def test_sim_puk(gateway):
    card = make_card(pin_attempts=0)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        message = refusal_of_once(gateway, "sim-blocked", card)
        follow(gateway, card, message, "sim-blocked")
        pairs_now(gateway, modem, "sim-blocked")


def test_pin_disabled(gateway):
    card = make_card(pin_enabled=False)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        message = refusal_of_once(gateway, "pin-disabled", card)
        gateway.mtcctl("pin", "forget", str(card.iccid), "--yes")  # a SIM not yet adopted
        follow(gateway, card, message, "pin-disabled")
        assert card.pin_enabled
        pairs_now(gateway, modem, "pin-disabled")


def test_imei_changed(gateway):
    card = make_card()
    with sim_modem(card, imei=make_imei(1)) as (modem, port):
        gateway.configure(port, policy='on_imei_change = "refuse"')
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
    card.power_cycle()
    with sim_modem(card, imei=make_imei(2)) as (modem, port):
        gateway.configure(port, policy='on_imei_change = "refuse"')
        message = refusal_of_once(gateway, "imei-changed", card)
        follow(gateway, card, message, "imei-changed")
        pairs_now(gateway, modem, "imei-changed")


def test_no_sim(gateway):
    card = make_card()
    with sim_modem(None) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        message = refusal_of_once(gateway, "no-sim", None)
        modem.insert_card(card)  # the physical step the message names first
        follow(gateway, card, message, "no-sim")
        assert network_commands(modem.commands) == []


def test_two_mistyped_transport_pins_in_pair(gateway):
    """The issue's example: each failed `mtcctl pair` names what works next;
    after the second the SIM is at 1 attempt and the way out is to store the
    right transport PIN and present it on the last attempt."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        first = gateway.mtcctl("pair", stdin=WRONG_PIN + "\n", timeout=60)
        assert first.returncode == 1 and str(card.iccid) in first.stderr, first.stderr
        assert named_commands(first.stderr) == [["pair"]] and card.pin_attempts == 2
        second = gateway.mtcctl("pair", stdin="22223333\n", timeout=60)
        assert second.returncode == 1 and card.pin_attempts == 1, second.stderr
        # What else a technician may try now: each names the same way out.
        for argv, stdin in ((["pair"], card.pin + "\n"), (["sim", "unblock"], f"{TEST_PUK}\n{NEW_PIN}\n")):
            run = gateway.mtcctl(*argv, stdin=stdin, timeout=60)
            assert run.returncode == 1 and str(card.iccid) in run.stderr, run.stderr
            assert "mtcctl pin try --below-guard --last-attempt" in run.stderr, run.stderr
        assert card.pin_attempts == 1 and puk_commands(modem.commands) == []
        follow(gateway, card, second.stderr, "pin-rejected", count=2)
        assert card.verified
        pairs_now(gateway, modem, "retry-guard")
        assert card.pin != TEST_PIN  # adopted: the transport PIN was replaced


@pytest.mark.parametrize("message_of", ["catalog"])
def test_the_catalog_names_only_commands_that_exist(message_of):
    """Every command the journal catalog names parses (a renamed command or
    flag there would point a person at an error)."""
    from pathlib import Path

    from mtcd.cli.ctl import _parser

    catalog = (Path(__file__).parent.parent / "systemd" / "mtcd.catalog").read_text()
    named = named_commands(catalog)
    assert ["pin", "try", "--below-guard"] in named
    for argv in named:
        argv = [a.replace("@MTCD_ICCID@", "89490200000000000014") for a in argv]
        _parser().parse_args(argv)
