"""Fewer round trips: V.250 command lines with several commands, and the
IMEI taken from the IMEISV.

Only commands whose whole answer is the final result go on one line, never
one that carries a secret; a modem that refuses the form gets one command a
line from then on.  The simulator runs each command of such a line (and logs
each, so every check for AT+CGACT or AT+CPIN= still sees it) and counts the
line once in `lines`."""

from __future__ import annotations

import pytest

from simfixtures import TEST_PIN, make_card

from mtcd.at import commands
from mtcd.errors import CommandFailed
from mtcd.identity import Imei, Imeisv
from mtcd.modem import Modem
from mtcd.secret import Pin
from mtcd.sim import SimulatedModem
from mtcd.sim.modem import split_command_line
from mtcd.sim.pty import PtyModemServer
from mtcd.transport import SerialTransport


# --- the pure parts ---------------------------------------------------------------

@pytest.mark.parametrize("body, parts", [
    ("", []),
    ("E0", ["E0"]),
    ("E0+CMEE=1", ["E0", "+CMEE=1"]),
    ("E0V1&F", ["E0", "V1", "&F"]),
    ("S7=60E0", ["S7=60", "E0"]),
    ('+CGDCONT=1,"IP","a;b";+CGACT=1,1', ['+CGDCONT=1,"IP","a;b"', "+CGACT=1,1"]),
    ("+CPIN?;", ["+CPIN?"]),
    ("D*99#", ["D*99#"]),
    ("#SIMDET?", None),  # a vendor form the splitter does not know: run whole
])
def test_the_simulator_splits_command_lines_as_v250_says(body, parts):
    assert split_command_line(body) == parts


def test_concatenated_lines_join_basic_then_extended_commands():
    assert commands.concatenated([commands.echo_off(), commands.verbose_errors()]).text == "ATE0+CMEE=1"
    both = commands.concatenated([commands.define_pdp_context(1, "IP", "iot"), commands.activate_pdp_context(1)])
    assert both.text == 'AT+CGDCONT=1,"IP","iot";+CGACT=1,1'
    assert both.timeout == commands.activate_pdp_context(1).timeout  # the slowest part's bound


@pytest.mark.parametrize("parts, why", [
    ([commands.verbose_errors(), commands.enter_pin(Pin(TEST_PIN))], "secret"),
    ([commands.verbose_errors(), commands.sim_lock_query()], "information"),
    ([commands.verbose_errors(), commands.echo_off()], "basic"),
    ([commands.echo_off()], "two"),
])
def test_what_is_never_concatenated(parts, why):
    with pytest.raises(ValueError, match=why):
        commands.concatenated(parts)


def test_imei_of_an_imeisv_adds_the_check_digit():
    assert Imei.of_imeisv(Imeisv("3599990000000101")) == Imei("359999000000018")
    assert Imei.of_imeisv(Imeisv("4901542032375199")) == Imei("490154203237518")


# --- against the simulator ----------------------------------------------------------

@pytest.fixture
def served(request):
    options = getattr(request, "param", {})
    sim = SimulatedModem(make_card(), **options)
    with PtyModemServer(sim) as server, SerialTransport(server.port, timeout=2) as transport:
        yield sim, Modem(transport)


def test_set_up_is_one_line_on_a_modem_that_takes_it(served):
    sim, modem = served
    modem.initialise()
    assert sim.lines == ["ATE0+CMEE=1"]
    assert sim.commands == ["ATE0", "AT+CMEE=1"]
    assert (sim.echo, sim.cmee, modem.concatenation) == (False, 1, True)


@pytest.mark.parametrize("served", [{"concatenation": False}], indirect=True)
def test_a_modem_refusing_the_form_gets_one_command_a_line_from_then_on(served):
    sim, modem = served
    modem.initialise()
    assert sim.lines == ["ATE0+CMEE=1", "ATE0", "AT+CMEE=1"]
    assert (sim.echo, sim.cmee, modem.concatenation) == (False, 1, False)
    modem.run_together([commands.define_pdp_context(1, "IP", "iot"), commands.functionality(4)])
    assert sim.lines[3:] == ['AT+CGDCONT=1,"IP","iot"', "AT+CFUN=4"]  # no second try of the form


@pytest.mark.parametrize("served", [{"concatenation": False}], indirect=True)
def test_run_together_falls_back_and_remembers(served):
    sim, modem = served
    modem.run(commands.echo_off())
    modem.run_together([commands.define_pdp_context(2, "IP", "iot"), commands.functionality(4)])
    assert sim.lines[1:] == ['AT+CGDCONT=2,"IP","iot";+CFUN=4', 'AT+CGDCONT=2,"IP","iot"', "AT+CFUN=4"]
    assert sim.contexts[2] == ("IP", "iot") and sim.radio == 4 and modem.concatenation is False


def test_a_part_failing_in_its_own_words_is_not_sent_again(served):
    sim, modem = served
    modem.initialise()
    with pytest.raises(CommandFailed):
        modem.run_together([commands.define_pdp_context(1, "IP", "iot"), commands.activate_pdp_context(1)])
    # The SIM is still locked: the activation fails with a +CME ERROR of its
    # own, which sending the commands one by one would not change.
    assert sim.lines[-1] == 'AT+CGDCONT=1,"IP","iot";+CGACT=1,1'
    assert sim.commands.count("AT+CGACT=1,1") == 1 and modem.concatenation


def test_a_secret_in_a_concatenated_line_is_redacted_in_both_logs(served):
    sim, modem = served
    # mtcd never sends this; another client of a simulator might.
    sim.handle(f'AT+CMEE=1;+CPIN="{TEST_PIN}"')
    assert TEST_PIN not in repr(sim.lines) + repr(sim.commands)
    assert sim.commands[-1].startswith("AT+CPIN=")


def test_identities_read_both_from_one_command(served):
    sim, modem = served
    modem.initialise()
    imei, imeisv = modem.identities()
    assert str(imei) == sim.imei and str(imeisv) == sim.imei[:14] + sim.svn
    assert sim.lines[1:] == ["AT+CGSN=2"]


def test_identities_without_an_imeisv_read_the_imei(served):
    sim, modem = served
    modem.initialise()
    sim.fail_after("AT+CGSN=2", mode="error")
    imei, imeisv = modem.identities()
    assert str(imei) == sim.imei and imeisv is None
    assert sim.lines[1:] == ["AT+CGSN=2", "AT+CGSN"]


def test_a_fault_strikes_at_its_own_command_inside_a_line():
    sim = SimulatedModem(make_card())
    sim.fail_after("AT+CGACT", "before")
    assert sim.handle('AT+CGDCONT=1,"IP","iot";+CGACT=1,1') == []  # hangs at the activation
    assert sim.contexts[1] == ("IP", "iot") and not sim.pdp_active  # the definition ran
    sim.fail_after("AT+CMEE", "error")
    assert sim.handle("ATE0+CMEE=1") == ["ERROR"] and sim.echo is False
