"""Backends "ecm", "qmi" and "ppp" against the simulated modem through a real pty.

ECM: the simulator plays a Quectel EC25 (+QCFG "usbnet", +QNETDEVCTL) and a
SIMCom SIM7600 (+DIALMODE, $QCRMCALL), including the danger of such modems:
with auto-connect on they start their data call by themselves.  `networkctl`
is a recorded stand-in script on PATH (no systemd-networkd in the test).

QMI: qmicli is a recorded stand-in script, not the real program: there is
no /dev/cdc-wdm0 (a USB QMI device) to run it against, and libqmi-utils is
not installed where the suite runs.  It answers in qmicli's output format.

PPP: pppd is a recorded stand-in script, not the real program: pppd needs
/dev/ppp and root, and is not installed where the suite runs.  The stand-in
records its argv and the files it was given, "brings up" the interface in a
stand-in /sys/class/net, and takes it down again on SIGTERM as pppd does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from pathlib import Path

import pytest

from mtcd.config import load_config
from mtcd.datalink import DatalinkFailed, EcmDatalink, PppDatalink, QmiDatalink, datalink_for
from mtcd.datalink import ppp, qmi
from mtcd.errors import ConfigError
from mtcd.modem import Modem
from mtcd.policy import Paired, Reason, Refused
from mtcd.sim import PtyModemServer, SimulatedModem
from mtcd.transport import SerialTransport
from simfixtures import TEST_PIN, make_card


@contextlib.contextmanager
def vendor_link(vendor: str, card=None, **options):
    """(sim, Modem with the vendor's dialect, commands sent since set-up);
    radio off as the session start leaves it."""
    sim = SimulatedModem(card if card is not None else make_card(pin_enabled=False), vendor=vendor, **options)
    with PtyModemServer(sim) as server, SerialTransport(server.port, timeout=2) as transport:
        modem = Modem(transport)
        modem.initialise()
        modem.switch_radio_off()
        modem.choose_dialect("auto")
        assert modem.dialect.name == vendor
        mark = len(sim.commands)
        yield sim, modem, lambda: sim.commands[mark:]


@pytest.fixture
def networkctl(tmp_path, monkeypatch):
    """A stand-in networkctl first on PATH; returns the file of its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "networkctl.calls"
    program = bin_dir / "networkctl"
    program.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\n')
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


# --- ECM: Quectel ------------------------------------------------------------------

def test_quectel_auto_connect_is_switched_off_at_session_start_with_a_warning(caplog):
    with vendor_link("quectel", autoconnect=True) as (sim, modem, sent):
        link = EcmDatalink(modem, apn="iot.example", networkctl=False)
        with caplog.at_level(logging.WARNING, "mtcd.datalink"):
            link.prepare()
        assert sent() == ['AT+QCFG="usbnet"', "AT+QNETDEVCTL?", "AT+QNETDEVCTL=0,1,1"]
        assert sim.autoconnect is False and not sim.data_call and sim.radio == 4
        assert any("auto-connect" in r.getMessage() for r in caplog.records)


def test_quectel_without_auto_connect_is_only_read():
    with vendor_link("quectel") as (sim, modem, sent):
        EcmDatalink(modem, apn="iot.example", networkctl=False).prepare()
        assert sent() == ['AT+QCFG="usbnet"', "AT+QNETDEVCTL?"]


def test_quectel_in_rmnet_mode_is_a_warning(caplog):
    with vendor_link("quectel") as (sim, modem, sent):
        sim.usbnet = 0
        with caplog.at_level(logging.WARNING, "mtcd.datalink"):
            EcmDatalink(modem, apn="iot.example", interface="usb0", networkctl=False).prepare()
    assert any("rmnet" in r.getMessage() and "usb0" in r.getMessage() for r in caplog.records)


def test_quectel_data_call_comes_up_after_pairing_and_goes_down(networkctl):
    with vendor_link("quectel") as (sim, modem, sent):
        link = EcmDatalink(modem, apn="iot.example", interface="usb0")
        link.up(Paired())
        assert sent() == ["AT+CFUN=1", 'AT+CGDCONT=1,"IP","iot.example"', "AT+QNETDEVCTL=1,1,1"]
        assert sim.data_call and sim.data_call_starts == 1
        assert networkctl.read_text().splitlines() == ["up usb0", "reconfigure usb0"]
        link.down()
        assert sent()[3:] == ["AT+QNETDEVCTL=0,1,1", "AT+CFUN=4"]
        assert not sim.data_call and sim.radio == 4
        assert networkctl.read_text().splitlines()[2:] == ["down usb0"]


def test_quectel_sim_pulled_then_gate_closes_cleanly(networkctl):
    with vendor_link("quectel") as (sim, modem, sent):
        link = EcmDatalink(modem, apn="iot.example")
        link.up(Paired())
        sim.remove_card()
        assert not sim.data_call  # the modem drops it by itself
        link.down()  # a refused stop does not keep the radio on
        assert sim.radio == 4 and sent()[-1] == "AT+CFUN=4"


def test_ecm_modem_lost_takes_the_interface_down(networkctl):
    with vendor_link("quectel") as (sim, modem, sent):
        EcmDatalink(modem, apn="iot.example", interface="eth1").release_without_modem()
        assert sent() == []
    assert networkctl.read_text().splitlines() == ["down eth1"]


def test_quectel_failed_data_call_is_one_line_and_radio_off(networkctl):
    locked = make_card()  # still asks for its PIN: no service
    with vendor_link("quectel", locked) as (sim, modem, sent):
        with pytest.raises(DatalinkFailed) as failed:
            EcmDatalink(modem, apn="iot.example").up(Paired())
        assert str(failed.value).startswith("data call on usb0 failed") and "\n" not in str(failed.value)
        assert sim.radio == 4 and not sim.data_call


# --- ECM: SIMCom -------------------------------------------------------------------

def test_simcom_auto_dial_is_switched_off_and_qcrmcall_starts_the_call(networkctl):
    with vendor_link("simcom", autoconnect=True) as (sim, modem, sent):
        link = EcmDatalink(modem, apn="iot.example", cid=1)
        link.prepare()
        assert sent() == ["AT+DIALMODE?", "AT+DIALMODE=1"] and sim.autoconnect is False
        link.up(Paired())
        assert sent()[2:] == ["AT+CFUN=1", 'AT+CGDCONT=1,"IP","iot.example"', "AT$QCRMCALL=1,1"]
        assert sim.data_call
        link.down()
        assert sent()[5:] == ["AT$QCRMCALL=0,1", "AT+CFUN=4"] and not sim.data_call


def test_auto_connect_left_on_would_dial_by_itself():
    # What prepare() prevents: the simulated modem really dials on its own.
    with vendor_link("simcom", autoconnect=True) as (sim, modem, sent):
        modem.switch_radio_on()
        assert sim.data_call and sim.data_call_starts == 0


# --- guarantee 3 end to end: `mtcd once` ------------------------------------------

@pytest.mark.parametrize("vendor", ["quectel", "simcom"])
def test_refused_pairing_sends_no_data_call_and_disables_auto_connect(gateway, vendor):
    card = make_card()
    sim = SimulatedModem(card, vendor=vendor, autoconnect=True)
    with PtyModemServer(sim) as server:
        gateway.configure(server.port, datalink='backend = "ecm"\napn = "iot.example"\nnetworkctl = false')
        # No PIN stored for this ICCID: refused.
        run = gateway.mtcd("once", "--json")
        assert run.returncode != 0
        assert run.returncode == 1 and run.last_json["state"] != "paired", run.stdout + run.stderr
        assert not any(c.startswith(("AT+QNETDEVCTL=1", "AT+QNETDEVCTL=3", "AT$QCRMCALL=1", "AT+CGACT=1", "ATD"))
                       for c in sim.commands), sim.commands
        assert sim.autoconnect is False and not sim.data_call and sim.data_call_starts == 0
        assert sim.radio == 4 and not card.verified


def test_paired_ecm_link_comes_up_through_mtcd_once(gateway):
    card = make_card()
    sim = SimulatedModem(card, vendor="quectel", autoconnect=True)
    with PtyModemServer(sim) as server:
        gateway.configure(server.port, datalink='backend = "ecm"\napn = "iot.example"\nnetworkctl = false')
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0, run.stderr
        assert run.last_json["link"] == "up"
        # Auto-connect was switched off before the PIN went to the card.
        assert sim.commands.index("AT+QNETDEVCTL=0,1,1") < next(
            i for i, c in enumerate(sim.commands) if c.startswith("AT+CPIN="))
        assert sim.data_call and sim.data_call_starts == 1 and sim.autoconnect is False


# --- QMI -------------------------------------------------------------------------------

@pytest.fixture
def fake_qmicli(tmp_path, monkeypatch):
    """A stand-in qmicli: appends its argv (and environment) to a record
    and answers --wds-start-network as qmicli does."""
    net = tmp_path / "net"
    (net / "wwan0" / "qmi").mkdir(parents=True)
    (net / "wwan0" / "qmi" / "raw_ip").write_text("N\n")
    monkeypatch.setattr(qmi, "SYS_CLASS_NET", net)
    record = tmp_path / "qmicli.record"
    program = tmp_path / "qmicli"
    program.write_text(f"""#!/bin/sh
echo "argv $@" >> "{record}"
env >> "{record}"
case "$3" in
  --wds-start-network=*)
    printf "[/dev/cdc-wdm0] Network started\\n\\tPacket data handle: '2264924160'\\n"
    printf "[/dev/cdc-wdm0] Client ID not released:\\n\\tService: 'wds'\\n\\t    CID: '20'\\n" ;;
  --wds-stop-network=*) echo "[/dev/cdc-wdm0] Network stopped" ;;
esac
""")
    program.chmod(0o755)
    return program, record, net


def qmi_calls(record: Path) -> list[str]:
    return [line[5:] for line in record.read_text().splitlines() if line.startswith("argv ")]


def test_qmi_call_comes_up_after_pairing_and_goes_down(tmp_path, fake_qmicli, networkctl):
    program, record, net = fake_qmicli
    with vendor_link("quectel") as (sim, modem, sent):
        link = QmiDatalink(modem, apn="iot.example", qmicli=str(program))
        link.up(Paired())
        assert sent() == ["AT+CFUN=1"] and sim.radio == 1  # the APN goes with qmicli
        assert qmi_calls(record) == [
            "--device=/dev/cdc-wdm0 --device-open-proxy --wds-start-network=apn=iot.example,ip-type=4 "
            "--client-no-release-cid"]
        assert (net / "wwan0" / "qmi" / "raw_ip").read_text() == "Y\n"
        assert networkctl.read_text().splitlines() == ["down wwan0", "up wwan0", "reconfigure wwan0"]
        link.down()
        assert qmi_calls(record)[1] == ("--device=/dev/cdc-wdm0 --device-open-proxy "
                                        "--wds-stop-network=2264924160 --client-cid=20")
        assert networkctl.read_text().splitlines()[-1] == "down wwan0"
        assert sent()[1:] == ["AT+CFUN=4"] and sim.radio == 4
    text = record.read_text()
    assert TEST_PIN not in text and "pin" not in " ".join(qmi_calls(record)).lower()


def test_qmi_modem_lost_stops_the_call(tmp_path, fake_qmicli, networkctl):
    program, record, net = fake_qmicli
    with vendor_link("quectel") as (sim, modem, sent):
        link = QmiDatalink(modem, apn="iot.example", qmicli=str(program))
        link.up(Paired())
        link.release_without_modem()
        assert "--wds-stop-network=2264924160" in qmi_calls(record)[-1] and link.session is None


def test_qmi_failure_is_one_line_and_radio_off(tmp_path, fake_qmicli, networkctl):
    failing = tmp_path / "failing-qmicli"
    failing.write_text("#!/bin/sh\necho \"error: couldn't start network: QMI protocol error (14): 'CallFailed'\" >&2\n"
                       "exit 1\n")
    failing.chmod(0o755)
    with vendor_link("quectel") as (sim, modem, sent):
        with pytest.raises(DatalinkFailed) as failed:
            QmiDatalink(modem, apn="iot.example", qmicli=str(failing)).up(Paired())
        assert str(failed.value) == ("qmicli --wds-start-network=apn=iot.example,ip-type=4 exited with 1: "
                                     "error: couldn't start network: QMI protocol error (14): 'CallFailed'")
        assert sim.radio == 4


# --- PPP -------------------------------------------------------------------------------

@pytest.fixture
def fake_pppd(tmp_path, monkeypatch):
    """A stand-in pppd: records argv and its options file, puts the
    interface into a stand-in /sys/class/net, removes it on SIGTERM."""
    net = tmp_path / "net"
    net.mkdir()
    monkeypatch.setattr(ppp, "SYS_CLASS_NET", net)
    record = tmp_path / "pppd.record"
    program = tmp_path / "pppd"
    program.write_text(f"""#!/bin/sh
echo "argv $@" > "{record}"
env >> "{record}"
iface=$(sed -n 's/^ifname //p' "$2")
trap 'rm -rf "{net}/$iface"; echo stopped >> "{record}"; exit 5' TERM
echo "pppd stand-in: connecting"
mkdir "{net}/$iface"
while :; do sleep 0.05; done
""")
    program.chmod(0o755)
    return program, record, net


def ppp_link(modem, tmp_path, pppd, **kw):
    return PppDatalink(modem, apn="iot.example", port="/dev/ttyUSB3", pppd=str(pppd),
                       run_dir=tmp_path / "run", timeout=kw.pop("timeout", 5), **kw)


def test_ppp_comes_up_after_pairing_and_goes_down(tmp_path, fake_pppd):
    program, record, net = fake_pppd
    with vendor_link("quectel") as (sim, modem, sent):
        link = ppp_link(modem, tmp_path, program, cid=2)
        link.up(Paired())
        assert sent() == ["AT+CFUN=1", 'AT+CGDCONT=2,"IP","iot.example"']
        assert (net / "ppp0").is_dir()
        peer, chat = tmp_path / "run" / "peer", tmp_path / "run" / "chat"
        assert record.read_text().splitlines()[0] == f"argv file {peer}"
        options = peer.read_text().splitlines()
        assert "/dev/ttyUSB3" in options and "nodetach" in options and "ifname ppp0" in options
        assert f'connect "/usr/sbin/chat -v -f {chat}"' in options
        script = chat.read_text()
        assert "ATD*99***2#" in script and "CPIN" not in script.upper()
        for path in (peer, chat, tmp_path / "run"):
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
        link.down()
        assert record.read_text().splitlines()[-1] == "stopped"
        assert not (net / "ppp0").exists()
        assert sent()[2:] == ["AT+CFUN=4"] and sim.radio == 4
    assert TEST_PIN not in record.read_text()  # neither argv nor environment


def test_ppp_modem_lost_stops_pppd(tmp_path, fake_pppd):
    program, record, net = fake_pppd
    with vendor_link("quectel") as (sim, modem, sent):
        link = ppp_link(modem, tmp_path, program)
        link.up(Paired())
        assert "ATD*99#" in (tmp_path / "run" / "chat").read_text()
        link.release_without_modem()
        assert record.read_text().splitlines()[-1] == "stopped" and link.process is None


def test_ppp_exiting_early_is_one_line_and_radio_off(tmp_path, fake_pppd):
    failing = tmp_path / "failing-pppd"
    failing.write_text('#!/bin/sh\necho "Connect script failed"\nexit 8\n')
    failing.chmod(0o755)
    with vendor_link("quectel") as (sim, modem, sent):
        with pytest.raises(DatalinkFailed) as failed:
            ppp_link(modem, tmp_path, failing).up(Paired())
        assert str(failed.value) == "pppd exited with 8: Connect script failed"
        assert sim.radio == 4


def test_ppp_interface_never_up_is_cut_off(tmp_path, fake_pppd):
    hanging = tmp_path / "hanging-pppd"
    started = tmp_path / "hanging.pid"
    hanging.write_text(f'#!/bin/sh\necho $$ > "{started}"\nexec sleep 30\n')
    hanging.chmod(0o755)
    with vendor_link("quectel") as (sim, modem, sent):
        link = ppp_link(modem, tmp_path, hanging, timeout=0.5)
        with pytest.raises(DatalinkFailed, match="ppp0 not up within 0.5 s"):
            link.up(Paired())
        assert sim.radio == 4 and link.process is None
    pid = int(started.read_text())
    with pytest.raises(ProcessLookupError):  # stopped and reaped, not left behind
        os.kill(pid, 0)


@pytest.mark.parametrize("not_a_proof", [None, Refused(Reason.UNKNOWN_SIM, "no PIN stored"), Paired])
def test_no_data_call_and_no_pppd_without_a_paired_decision(tmp_path, fake_pppd, networkctl, not_a_proof):
    program, record, net = fake_pppd
    with vendor_link("quectel") as (sim, modem, sent):
        qmicli = tmp_path / "qmicli-never"
        for link in (EcmDatalink(modem, apn="iot.example"), ppp_link(modem, tmp_path, program),
                     QmiDatalink(modem, apn="iot.example", qmicli=str(qmicli))):
            with pytest.raises(TypeError, match="paired"):
                link.up(not_a_proof)
        assert sent() == [] and not record.exists() and not networkctl.exists()
        assert sim.radio == 4 and not sim.data_call


# --- configuration ------------------------------------------------------------------

def _config(tmp_path, datalink: str) -> Path:
    path = tmp_path / "mtcd.toml"
    path.write_text(f'[modem]\nport = "/dev/ttyUSB2"\n[datalink]\n{datalink}\n')
    return path


def test_backends_are_built_from_configuration(tmp_path):
    config = load_config(_config(tmp_path, 'backend = "ppp"\nppp_port = "/dev/ttyUSB3"\nrun_dir = "/run/x"'))
    link = datalink_for(config.datalink, modem=None)
    assert type(link) is PppDatalink and (link.port, link.interface, link.run_dir) == (
        "/dev/ttyUSB3", "ppp0", Path("/run/x"))
    config = load_config(_config(tmp_path, 'backend = "ecm"\ninterface = "eth1"\nnetworkctl = false'))
    link = datalink_for(config.datalink, modem=None)
    assert type(link) is EcmDatalink and (link.interface, link.networkctl) == ("eth1", False)
    config = load_config(_config(tmp_path, 'backend = "qmi"\nqmi_device = "/dev/cdc-wdm1"\nup_timeout = 20'))
    link = datalink_for(config.datalink, modem=None)
    assert type(link) is QmiDatalink and (link.device, link.interface, link.qmicli, link.timeout) == (
        "/dev/cdc-wdm1", "wwan0", "/usr/bin/qmicli", 20)


@pytest.mark.parametrize("datalink, complaint", [
    ('backend = "ppp"', "datalink.ppp_port is required"),
    ('backend = "ppp"\nppp_port = "/dev/ttyUSB2"', "datalink.ppp_port must not be modem.port"),
    ('backend = "ppp"\nppp_port = "/dev/ttyUSB3\\nnoauth"', "datalink.ppp_port must be an absolute path"),
    ('backend = "ppp"\nppp_port = "/dev/ttyUSB3"\npppd = "/usr/sbin/pppd call x"', "datalink.pppd must be an absolute path"),
    ('backend = "ecm"\ninterface = "usb0 up"', "datalink.interface must be a network interface name"),
    ('backend = "ecm"\ninterface = "a-very-long-ifname0"', "datalink.interface must be a network interface name"),
    ('backend = "at"\ninterface = "usb0"', 'datalink.interface is only used with backend = "ecm" or "qmi" or "ppp"'),
    ('backend = "qmi"\napn = "a,ip-type=6"', 'datalink.apn must not contain "," with backend = "qmi"'),
    ('backend = "ecm"\nqmicli = "/usr/bin/qmicli"', 'datalink.qmicli is only used with backend = "qmi"'),
    ('backend = "ecm"\nppp_port = "/dev/ttyUSB3"', 'datalink.ppp_port is only used with backend = "ppp"'),
    # qmicli can unlock the SIM itself: never with a PIN on its command line.
    ('backend = "command"\nup = ["/usr/bin/qmicli", "-d", "/dev/cdc-wdm0", "--uim-verify-pin=PIN1,1234"]\n'
     'down = ["/bin/true"]', 'datalink.up must not unlock the SIM itself; mtcd does (got "--uim-verify-pin")'),
    ('backend = "command"\nup = ["/bin/true"]\ndown = ["/usr/bin/qmicli", "--DMS-UIM-VERIFY-PIN=PIN,1234"]',
     'datalink.down must not unlock the SIM itself'),
])
def test_bad_datalink_settings_name_the_key(tmp_path, datalink, complaint):
    with pytest.raises(ConfigError) as failed:
        load_config(_config(tmp_path, datalink))
    assert complaint in str(failed.value) and "\n" not in str(failed.value)
    assert "1234" not in str(failed.value)
