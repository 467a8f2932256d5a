"""The simulator as a rehearsal tool: the SIMCom SIM7600 personality, the
control commands of a running `mtcd-sim serve`, and the PUK a new card
shows once.  The personality is checked against mtcd itself (its SIMCom
dialect and `mtcd once`), not only at the AT level."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from conftest import network_commands, pin_presentations
from simfixtures import TEST_IMSI, TEST_PIN, TEST_PUK, AtPort, make_card, make_iccid, sim_cli, sim_modem, wait_until

from mtcd.at.parsers import parse_iccid
from mtcd.modem import Modem
from mtcd.sim import SimCard
from mtcd.simlock import SimEvent
from mtcd.transport import SerialTransport
from mtcd.vendors.simcom import CICCID, SimcomDialect
from mtcd.vendors.base import Query

NEW_PIN = "60221409"


# --- the SIM7600 at the AT level ---------------------------------------------------

def test_simcom_identity_iccid_and_counters():
    card = make_card(pin_attempts=2, puk_attempts=9)
    with sim_modem(card, vendor="simcom") as (modem, port), AtPort(port) as at:
        assert at.info("AT+CGMI") == ["SIMCOM INCORPORATED"]
        assert at.info("AT+CGMM") == ["SIMCOM_SIM7600G-H"]
        assert at.info("AT+CGMR") == ["+CGMR: LE20B04SIM7600G22"]
        assert at.info("ATI")[:3] == ["Manufacturer: SIMCOM INCORPORATED", "Model: SIMCOM_SIM7600G-H",
                                      "Revision: LE20B04SIM7600G22"]
        # 19-digit ICCID: EF.ICCID's F filler stays, as SIM7600 prints it.
        assert at.info("AT+CICCID") == [f"+ICCID: {card.iccid}F"]
        # +SPIC: <pin1>,<puk1>,<pin2>,<puk2> (times remain to input SIM PIN/PUK).
        assert at.info("AT+SPIC") == ["+SPIC: 2,9,3,10"]
        assert at.final("AT+SPIC=?") == "OK"


def test_other_personalities_lack_the_simcom_commands():
    with sim_modem(vendor="quectel") as (modem, port), AtPort(port) as at:
        assert at.final("AT+CICCID") == "ERROR"
        assert at.final("AT+SPIC") == "ERROR"


def test_simcom_hot_swap_urcs_only_once_switched_on():
    card = make_card()
    with sim_modem(card, vendor="simcom") as (modem, port), AtPort(port) as at:
        modem.remove_card()
        modem.insert_card(card)
        assert at.info("AT+UIMHOTSWAPON?") == ["+UIMHOTSWAPON: 0"]
        assert at.final("AT+UIMHOTSWAPON=1") == "OK"
        modem.remove_card()
        assert at.unsolicited() == "+SIMCARD: NOT AVAILABLE"
        modem.insert_card(card)
        assert at.unsolicited() == "+CPIN: SIM PIN"
        # A reboot keeps the setting and announces itself.
        modem.power_loss()
        assert at.unsolicited() == "RDY"
        assert at.unsolicited() == "+CPIN: SIM PIN"
        assert modem.hotswap


def test_mtcds_simcom_dialect_reads_the_personality():
    card = make_card()
    with sim_modem(card, vendor="simcom", has_crsm=False) as (modem, port):
        with SerialTransport(port, timeout=5) as transport:
            m = Modem(transport)
            m.initialise()
            assert m.choose_dialect("auto").name == "simcom"
            assert m.first_answer([Query(CICCID, parse_iccid)]) == card.iccid
            for command in SimcomDialect().urc_setup():
                m.run(command)
            events = []
            transport.on_unsolicited = lambda line: events.append(m.dialect.sim_event(line))
            modem.remove_card()
            wait_until(lambda: events, 5, "the removal URC")
            assert events == [SimEvent.REMOVED]


# --- mtcd once against the SIM7600 ---------------------------------------------------

def test_mtcd_once_pairs_with_the_simcom_personality(gateway):
    card = make_card()
    with sim_modem(card, vendor="simcom") as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0, run.stderr
        assert run.last_json["state"] == "paired" and run.last_json["iccid"] == str(card.iccid)
        assert "AT+CGMI" in modem.commands  # the dialect was chosen from the modem's own answer
        assert modem.radio == 1 and modem.pdp_active
        assert len(pin_presentations(modem.commands)) == 1


@pytest.mark.parametrize("stored", ["other-sim", "wrong-pin"])
def test_mtcd_once_refuses_with_the_simcom_personality(gateway, stored):
    card = make_card()
    with sim_modem(card, vendor="simcom") as (modem, port):
        gateway.configure(port)
        if stored == "other-sim":
            gateway.store_pin(make_iccid(99))
        else:
            gateway.store_pin(str(card.iccid), "11112222")
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 1, run.stderr
        assert run.last_json["reason"] == ("unknown-sim" if stored == "other-sim" else "pin-rejected")
        assert modem.radio == 4 and not network_commands(modem.commands)
        assert card.pin_attempts == (3 if stored == "other-sim" else 2)


# --- the card's PUK ------------------------------------------------------------------

def _card(tmp_path, name, iccid, stdin):
    return subprocess.run(
        [*sim_cli(), "card", "--state", str(tmp_path / name), "--iccid", iccid, "--imsi", TEST_IMSI],
        input=stdin, capture_output=True, text=True, timeout=10,
    )


def test_a_generated_puk_is_shown_once_at_creation(tmp_path):
    made = _card(tmp_path, "card.json", make_iccid(5), f"{TEST_PIN}\n")
    assert made.returncode == 0, made.stderr
    puk = SimCard.load(tmp_path / "card.json").puk
    assert made.stdout.count(puk) == 1 and "rehearsal" in made.stdout
    assert TEST_PIN not in made.stdout + made.stderr
    status = subprocess.run([*sim_cli(), "status", "--state", str(tmp_path / "card.json"), "--json"],
                            capture_output=True, text=True, timeout=10)
    assert puk not in status.stdout and TEST_PIN not in status.stdout
    assert json.loads(status.stdout)["puk_attempts"] == 10


def test_a_puk_given_on_stdin_is_not_printed(tmp_path):
    made = _card(tmp_path, "card.json", make_iccid(5), f"{TEST_PIN}\n{TEST_PUK}\n")
    assert made.returncode == 0 and made.stdout == ""


# --- control of a running simulator ---------------------------------------------------

@pytest.fixture
def served(tmp_path):
    """A `mtcd-sim serve --control` process with card A inserted and card B
    on the shelf: (socket path, card A file, card B file, port)."""
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for path, serial in ((a, 1), (b, 2)):
        assert _card(tmp_path, path.name, make_iccid(serial), f"{TEST_PIN}\n{TEST_PUK}\n").returncode == 0
    sock = tmp_path / "sim.sock"
    proc = subprocess.Popen([*sim_cli(), "serve", "--state", str(a), "--control", str(sock)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    port = proc.stdout.readline().strip()
    assert port.startswith("/dev/"), proc.stderr.read()
    yield sock, a, b, port
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and TEST_PIN not in err and NEW_PIN not in err
    assert not sock.exists()


def ctl(sock, *args, stdin=""):
    run = subprocess.run([*sim_cli(), *args, "--control", str(sock), "--json"], input=stdin,
                         capture_output=True, text=True, timeout=30)
    return run.returncode, (json.loads(run.stdout) if run.returncode == 0 else run.stderr)


def test_swap_pull_insert_and_status(served):
    sock, a, b, port = served
    code, status = ctl(sock, "status")
    assert code == 0
    assert (status["sim"], status["iccid"], status["pin_state"], status["radio"], status["pdp"]) == \
        ("inserted", make_iccid(1), "SIM PIN", "on", "inactive")
    code, status = ctl(sock, "swap-sim", "--card", str(b))
    assert code == 0 and status["iccid"] == make_iccid(2) and status["card_file"] == str(b)
    code, status = ctl(sock, "pull-sim")
    assert code == 0 and status["sim"] == "removed" and status["iccid"] is None
    code, err = ctl(sock, "pull-sim")
    assert code == 69 and err == "mtcd-sim: the slot is already empty\n"
    code, status = ctl(sock, "insert-sim")  # the card pulled last goes back
    assert code == 0 and status["iccid"] == make_iccid(2)
    code, err = ctl(sock, "swap-sim", "--card", str(b))
    assert code == 69 and "already" in err
    with AtPort(port) as at:
        assert at.info("AT+CCID") == [f"+CCID: {make_iccid(2)}"]


def test_ota_pin_change_from_stdin(served):
    sock, a, b, port = served
    code, status = ctl(sock, "ota-pin", stdin=f"{NEW_PIN}\n")
    assert code == 0 and status["pin_state"] == "SIM PIN" and status["pin_attempts"] == 3
    assert SimCard.load(a).pin == NEW_PIN  # the card's own memory, saved to its file
    with AtPort(port) as at:
        assert at.final(f'AT+CPIN="{TEST_PIN}"') == "+CME ERROR: 16"
        assert at.final(f'AT+CPIN="{NEW_PIN}"') == "OK"
    code, err = ctl(sock, "ota-pin", stdin="12ab\n")
    assert code == 64 and err == "mtcd-sim: PIN must be digits only\n"
    code, err = ctl(sock, "ota-pin")
    assert code == 64 and "no PIN on stdin" in err


def test_ota_pin_change_refreshes_the_card_unless_asked_not_to(served):
    sock, a, b, port = served
    with AtPort(port) as at:
        assert at.final(f'AT+CPIN="{TEST_PIN}"') == "OK"
        code, status = ctl(sock, "ota-pin", "--no-refresh", stdin=f"{NEW_PIN}\n")
        assert status["pin_state"] == "READY"  # verification holds until the next reset
        code, status = ctl(sock, "ota-pin", stdin=f"{TEST_PIN}\n")
        assert status["pin_state"] == "SIM PIN"
        assert at.unsolicited() == "+CPIN: SIM PIN"


def test_reset_takes_the_port_away_and_boots_again(served):
    sock, a, b, port = served
    with AtPort(port) as at:
        assert at.final(f'AT+CPIN="{TEST_PIN}"') == "OK"
        assert at.final("AT+CFUN=4") == "OK"
        code, status = ctl(sock, "reset", "--down", "0.3")
        assert code == 0
    assert status["radio"] == "on" and status["pin_state"] == "SIM PIN"  # power-on values
    with AtPort(status["port"]) as at:
        assert at.info("AT+CPIN?") == ["+CPIN: SIM PIN"]
    code, err = ctl(sock, "reset", "--down", "120")
    assert code == 69 and "--down" in err


def test_control_without_a_simulator_is_one_line(tmp_path):
    code, err = ctl(tmp_path / "nobody.sock", "status")
    assert code == 69 and err == f"mtcd-sim: no simulator listens on {tmp_path / 'nobody.sock'}\n"


def test_a_card_goes_only_into_an_empty_slot(served):
    sock, a, b, port = served
    code, status = ctl(sock, "swap-sim", "--card", str(b))
    code, status = ctl(sock, "pull-sim")
    code, status = ctl(sock, "insert-sim", "--card", str(a))
    assert status["iccid"] == make_iccid(1)
    code, err = ctl(sock, "insert-sim", "--card", str(b))
    assert code == 69 and "pull it first" in err
