"""Data link backends against the simulated modem through a real pty: what
each sends to bring the link up and down, that nothing comes up without a
`Paired` decision, and how a failing link command is reported."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from mtcd.config import DatalinkConfig
from mtcd.datalink import AtDatalink, CommandDatalink, Datalink, DatalinkFailed, datalink_for
from mtcd.modem import Modem
from mtcd.policy import Paired, Reason, Refused
from mtcd.sim import PtyModemServer, SimulatedModem
from mtcd.transport import SerialTransport
from simfixtures import TEST_PIN, make_card


@contextlib.contextmanager
def sim_link(card=None, **options):
    """(simulated modem, Modem, a function giving the commands sent since
    set-up), with the radio off as the gate leaves it before pairing."""
    sim = SimulatedModem(card if card is not None else make_card(pin_enabled=False), **options)
    with PtyModemServer(sim) as server, SerialTransport(server.port, timeout=2) as transport:
        modem = Modem(transport)
        modem.initialise()
        modem.switch_radio_off()
        assert sim.radio == 4
        mark = len(sim.commands)
        yield sim, modem, lambda: sim.commands[mark:]


def script(tmp_path: Path, name: str, body: str = "") -> tuple[str, Path]:
    """An executable that records that it ran (with its arguments and
    environment) and then runs `body`."""
    marker = tmp_path / f"{name}.ran"
    path = tmp_path / f"{name}.sh"
    path.write_text(f'#!/bin/sh\necho "$@" > "{marker}"\nenv >> "{marker}"\n{body}\n')
    path.chmod(0o755)
    return str(path), marker


# --- AT+CGDCONT / AT+CGACT ------------------------------------------------------

def test_at_link_comes_up_with_the_configured_context_and_goes_down():
    with sim_link() as (sim, modem, sent):
        link = AtDatalink(modem, apn="iot.example", pdp_type="IPV4V6", cid=1)
        link.up(Paired())
        assert sent() == ["AT+CFUN=1", 'AT+CGDCONT=1,"IPV4V6","iot.example"', "AT+CGACT=1,1"]
        assert sim.radio == 1 and modem.radio_on is True
        assert sim.contexts[1] == ("IPV4V6", "iot.example") and sim.pdp_active
        link.down()
        assert sent()[3:] == ["AT+CGACT=0,1", "AT+CFUN=4"]
        assert sim.radio == 4 and modem.radio_on is False
        assert not sim.pdp_active and not sim.attached


def test_at_link_uses_the_configured_cid():
    # The simulator activates only cid 1: the configured cid 3 reaches both
    # commands, and the refusal comes back as one line.
    with sim_link() as (sim, modem, sent):
        with pytest.raises(DatalinkFailed) as failed:
            AtDatalink(modem, apn="m2m.example", pdp_type="IP", cid=3).up(Paired())
        # Half up is not up: the backend itself takes it down again.  Both
        # commands went on one line; the card's own error is final (no retry).
        assert sent() == ["AT+CFUN=1", 'AT+CGDCONT=3,"IP","m2m.example"', "AT+CGACT=1,3",
                          "AT+CGACT=0,3", "AT+CFUN=4"]
        assert sim.lines[-4:] == ["AT+CFUN=1", 'AT+CGDCONT=3,"IP","m2m.example";+CGACT=1,3',
                                  "AT+CGACT=0,3", "AT+CFUN=4"]
        assert sim.radio == 4
        assert sim.contexts == {3: ("IP", "m2m.example")}
        message = str(failed.value)
        assert message.startswith("PDP context activation failed") and "\n" not in message
        assert failed.value.exit_code == 69


def test_at_link_failing_activation_is_datalink_failed_and_down_still_turns_the_radio_off():
    locked = make_card()  # still asks for its PIN: no service
    with sim_link(locked) as (sim, modem, sent):
        link = AtDatalink(modem, apn="iot.example")
        with pytest.raises(DatalinkFailed, match="PDP context activation failed"):
            link.up(Paired())
        assert not sim.pdp_active
        link.down()
        assert sim.radio == 4 and sent()[-1] == "AT+CFUN=4"


# --- no Paired, no link ------------------------------------------------------------

def _backends(modem, tmp_path):
    up, up_ran = script(tmp_path, "up")
    down, _ = script(tmp_path, "down")
    return [
        (Datalink(modem), None),
        (AtDatalink(modem, apn="iot.example"), None),
        (CommandDatalink(modem, [up], [down]), up_ran),
    ]


@pytest.mark.parametrize("not_a_proof", [
    None,
    Refused(Reason.UNKNOWN_SIM, "no PIN stored for this ICCID"),
    Paired,  # the class, not a decision
    "paired",
    True,
], ids=["None", "Refused", "Paired-class", "str", "True"])
def test_no_backend_comes_up_without_a_paired_decision(tmp_path, not_a_proof):
    with sim_link() as (sim, modem, sent):
        for link, marker in _backends(modem, tmp_path):
            with pytest.raises(TypeError, match="paired"):
                link.up(not_a_proof)
            assert marker is None or not marker.exists(), f"{link.name}: the up command ran"
        assert sent() == []
        assert sim.radio == 4 and not sim.pdp_active


# --- configured commands ---------------------------------------------------------------

def test_command_link_runs_its_commands_around_the_radio(tmp_path):
    up, up_ran = script(tmp_path, "up")
    down, down_ran = script(tmp_path, "down")
    with sim_link() as (sim, modem, sent):
        link = CommandDatalink(modem, [up, "wwan0", "--apn", "iot.example"], [down, "wwan0"])
        link.up(Paired())
        assert sent() == ["AT+CFUN=1"] and sim.radio == 1
        assert up_ran.read_text().splitlines()[0] == "wwan0 --apn iot.example"
        assert not down_ran.exists()
        link.down()
        assert down_ran.read_text().splitlines()[0] == "wwan0"
        assert sent() == ["AT+CFUN=1", "AT+CFUN=4"] and sim.radio == 4
    for marker in (up_ran, down_ran):
        assert TEST_PIN not in marker.read_text()


def test_command_link_failure_is_one_line(tmp_path):
    down, down_ran = script(tmp_path, "down")
    with sim_link() as (sim, modem, sent):
        link = CommandDatalink(modem, ["false"], [down])
        with pytest.raises(DatalinkFailed) as failed:
            link.up(Paired())
        assert str(failed.value) == "datalink up command 'false' exited with 1"
        assert failed.value.exit_code == 69
        link.down()
        assert down_ran.exists() and sim.radio == 4


def test_command_link_failure_output_stays_out_of_the_message(tmp_path):
    noisy, _ = script(tmp_path, "noisy", "echo 'line one\nline two' >&2\nexit 3")
    with sim_link() as (sim, modem, sent):
        with pytest.raises(DatalinkFailed) as failed:
            CommandDatalink(modem, [noisy], ["true"]).up(Paired())
    message = str(failed.value)
    assert message.endswith("exited with 3: line two") and "\n" not in message


@pytest.mark.parametrize("stderr, said", [
    # one endless line: its head, bounded
    ("printf 'first\\n' >&2; head -c 100000 /dev/zero | tr '\\0' 'x' >&2", "x" * 197 + "..."),
    # control bytes never reach the one-line error; trailing blank lines are skipped
    ("printf 'ok\\n\\033[31mqmicli: error\\007\\r\\n\\n\\n' >&2", "[31mqmicli: error"),
])
def test_command_link_failure_says_the_last_stderr_line_bounded_and_printable(tmp_path, stderr, said):
    noisy, _ = script(tmp_path, "noisy", f"{stderr}\nexit 4")
    with sim_link() as (sim, modem, sent):
        with pytest.raises(DatalinkFailed) as failed:
            CommandDatalink(modem, [noisy], ["true"]).up(Paired())
    assert str(failed.value) == f"datalink up command {noisy!r} exited with 4: {said}"


def test_missing_program_is_datalink_failed(tmp_path):
    missing = str(tmp_path / "no-such-program")
    with sim_link() as (sim, modem, sent):
        with pytest.raises(DatalinkFailed) as failed:
            CommandDatalink(modem, [missing], ["true"]).up(Paired())
    message = str(failed.value)
    assert "no-such-program" in message and "\n" not in message


def test_hanging_command_is_cut_off(tmp_path):
    with sim_link() as (sim, modem, sent):
        with pytest.raises(DatalinkFailed, match="no exit within") as failed:
            CommandDatalink(modem, ["sleep", "10"], ["true"], timeout=0.3).up(Paired())
    assert "\n" not in str(failed.value)


def test_failing_down_command_still_turns_the_radio_off(tmp_path):
    with sim_link() as (sim, modem, sent):
        link = CommandDatalink(modem, ["true"], ["false"])
        link.up(Paired())
        link.down()
        assert sim.radio == 4 and sent()[-1] == "AT+CFUN=4"


# --- the radio only --------------------------------------------------------------------

def test_plain_datalink_only_switches_the_radio():
    with sim_link() as (sim, modem, sent):
        link = Datalink(modem)
        link.up(Paired())
        assert sent() == ["AT+CFUN=1"] and sim.radio == 1
        link.down()
        assert sent() == ["AT+CFUN=1", "AT+CFUN=4"] and sim.radio == 4
        assert sim.contexts == {} and not sim.pdp_active


def test_backend_is_chosen_by_configuration():
    with sim_link() as (sim, modem, sent):
        at = datalink_for(DatalinkConfig(backend="at", apn="a.example", pdp_type="IPV6", cid=2), modem)
        assert type(at) is AtDatalink and (at.apn, at.pdp_type, at.cid) == ("a.example", "IPV6", 2)
        cmd = datalink_for(DatalinkConfig(backend="command", up=("ifup", "wwan0"), down=("ifdown", "wwan0")), modem)
        assert type(cmd) is CommandDatalink
        assert (cmd.up_argv, cmd.down_argv) == (["ifup", "wwan0"], ["ifdown", "wwan0"])
        assert type(datalink_for(DatalinkConfig(backend="none"), modem)) is Datalink
        assert sent() == []


# --- end to end: `mtcd once` ------------------------------------------------------------

def test_mtcd_once_link_failure_after_pairing_is_69_and_radio_off(gateway, tmp_path):
    down, down_ran = script(tmp_path, "down")
    card = make_card()
    sim = SimulatedModem(card)
    with PtyModemServer(sim) as server:
        gateway.configure(server.port, datalink=f'backend = "command"\nup = ["false"]\ndown = ["{down}"]')
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 69, run.stderr
        errors = run.stderr.strip().splitlines()
        assert len(errors) == 1 and "false" in errors[0] and "exited with 1" in errors[0]
        assert TEST_PIN not in run.stderr + run.stdout
        assert card.verified  # it was paired; the link itself failed
        assert sim.radio == 4, "the radio must be off again after the link failed"
        assert sim.commands[-1] == "AT+CFUN=4"
        assert down_ran.exists()
        assert not sim.pdp_active and not sim.attached


def test_mtcd_once_runs_the_link_command_without_any_secret(gateway, tmp_path):
    up, up_ran = script(tmp_path, "up")
    card = make_card()
    sim = SimulatedModem(card)
    with PtyModemServer(sim) as server:
        gateway.configure(server.port, datalink=f'backend = "command"\nup = ["{up}", "wwan0"]\ndown = ["true"]')
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0, run.stderr
        assert run.last_json["link"] == "up" and sim.radio == 1
    recorded = up_ran.read_text()
    assert recorded.splitlines()[0] == "wwan0"
    assert TEST_PIN not in recorded  # neither in its argv nor in its environment
