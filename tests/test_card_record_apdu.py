"""The card's own pairing record (EF-UST, EF-IPS, EF-IPD) read in APDUs,
over AT+CSIM (the simulator on a pty) and over PC/SC (a private pcscd with
vpcd's reader and the virtual USIM), with the real commands: `mtcctl sim
pairing-status`, `mtcctl doctor` and the journal's card-record line of
`mtcd once`.  Whatever cannot be read is reported as such; the card's own
log (or the modem's) shows that reading sent no PIN and touched no counter."""

from __future__ import annotations

import contextlib
import json

import pytest

from pcscstack import APDU_BACKENDS, PcscStack, apdu_backend
from simfixtures import TEST_PIN, TEST_PUK, make_card, sim_modem

from mtcd.identity import Imei, Imeisv
from mtcd.pairing_record import EF_IPD, EF_IPS, Verdict, encode_ipd_record, encode_ips_record

IMEI = "359999000000018"
OTHER = "3599990000020201"
# INS of the commands that carry or touch a PIN: VERIFY, CHANGE, DISABLE, ENABLE, UNBLOCK.
PIN_INS = ("20", "24", "26", "28", "2C")
READS = {"A4", "C0", "B0", "B2"}  # SELECT, GET RESPONSE, READ BINARY, READ RECORD


def _pairing(*, service=True, ips=True, ipd=True, unreadable=(EF_IPD,)) -> dict:
    return {
        "service": service,
        "ips": [encode_ips_record(Verdict.OK, 1).hex(), encode_ips_record(Verdict.KO, 2).hex()] if ips else None,
        "ipd": [encode_ipd_record(Imei(IMEI)).hex(), encode_ipd_record(Imeisv(OTHER)).hex()] if ipd else None,
        "unreadable": [f"{fid:04X}" for fid in unreadable],
    }


def _give(card, spec: dict) -> None:
    """The same files on the simulator's card as the virtual USIM gets from `spec`."""
    card.pairing_record(service=spec["service"],
                        ips=None if spec["ips"] is None else [bytes.fromhex(r) for r in spec["ips"]],
                        ipd=None if spec["ipd"] is None else [bytes.fromhex(r) for r in spec["ipd"]],
                        unreadable={int(f, 16) for f in spec["unreadable"]})


class Bench:
    def __init__(self, backend, gateway, modem, card, stack=None):
        self.backend, self.gateway, self.modem, self.card, self.stack = backend, gateway, modem, card, stack

    def mark(self) -> int:
        return len(self.stack.entries()) if self.stack is not None else len(self.modem.commands)

    def commands_since(self, mark: int) -> list[tuple[str, bool]]:
        """(INS, carried data) of every command the card got since `mark`."""
        if self.stack is not None:
            return [(e["ins"], bool(e["lc"])) for e in self.stack.entries()[mark:] if "ins" in e]
        out = []
        for command in self.modem.commands[mark:]:
            if command.startswith("AT+CSIM="):
                hexapdu = command.split('"')[1]
                out.append((hexapdu[2:4], len(hexapdu) > 10 or "<redacted>" in command))
            elif command.startswith(("AT+CPIN=", "AT+CPWD", "AT+CLCK")):
                out.append((command, True))  # never expected on this path
        return out

    def status(self) -> dict:
        mark = self.mark()
        run = self.gateway.mtcctl("sim", "pairing-status", "--json")
        assert run.returncode == 0 and "Traceback" not in run.stderr, run.stdout + run.stderr
        read_only(self.commands_since(mark))
        return json.loads(run.stdout)

    def no_secret(self, *runs) -> None:
        texts = [r.stdout + r.stderr for r in runs]
        if self.stack is not None:
            texts += [self.stack.log.read_text(), self.stack.pcscd_log.read_text()]
        for secret in (TEST_PIN, TEST_PUK):
            for text in texts:
                assert secret not in text and secret.encode().hex() not in text.lower()


def read_only(sent: list[tuple[str, bool]]) -> None:
    """Reading the record sent reads only: no PIN command at all, with or without data."""
    assert sent, "the card was not asked"
    assert {ins for ins, _ in sent} <= READS, sent


@pytest.fixture(params=APDU_BACKENDS)
def backend(request):
    return apdu_backend(request)


@pytest.fixture
def bench(backend, gateway, tmp_path, monkeypatch):
    @contextlib.contextmanager
    def make(card, spec: dict | None):
        if backend == "csim":
            if spec is not None:
                _give(card, spec)
            with sim_modem(card) as (modem, port):
                gateway.configure(port)
                with open(gateway.config, "a") as f:
                    f.write('[uicc]\nbackend = "csim"\n')
                yield Bench(backend, gateway, modem, card)
            return
        files = {"pairing": spec} if spec is not None else None
        with PcscStack(tmp_path / "pcsc", card, files=files) as stack, \
                sim_modem(make_card(serial_number=99, pin_enabled=False), vendor="simcom") as (modem, port):
            monkeypatch.setenv("PCSCLITE_CSOCK_NAME", str(stack.socket))
            gateway.configure(port)
            with open(gateway.config, "a") as f:
                f.write('[uicc]\nbackend = "pcsc"\n')
            yield Bench(backend, gateway, modem, card, stack)
    return make


def test_pairing_status_reads_the_whole_record(bench):
    card = make_card(pin_enabled=False)  # EF-UST is READ PIN: a card without PIN lets it be read
    with bench(card, _pairing(unreadable=())) as b:
        report = b.status()
        assert report["via"] == "direct" and report["service"] == "available"
        assert [(r["record"], r["status"], r["ipd_record"]) for r in report["records"]] == [(1, "ok", 1), (2, "ko", 2)]
        assert report["ips"] == {"state": "present", "why": None, "file_records": 10, "empty_records": 8,
                                 "limited": False}
        assert report["ipd"] == {"state": "present", "why": None}
        assert [d["value"] for d in report["devices"]] == [IMEI, OTHER]
        human = b.gateway.mtcctl("sim", "pairing-status")
        assert human.returncode == 0 and f"IMEI {IMEI} (EF-IPD record 1)" in human.stdout
        assert ("PC/SC reader" if b.backend == "pcsc" else "AT+CSIM") in human.stdout
        state = b.stack.state() if b.stack is not None else b.card.to_dict()
        assert (state["pin_attempts"], state["puk_attempts"]) == (3, 10)
        b.no_secret(human)


def test_pairing_status_service_not_in_the_table(bench):
    card = make_card(pin_enabled=False)
    with bench(card, _pairing(service=False)) as b:
        report = b.status()
    assert report["service"] == "not-available" and "service 102 not set" in report["service_why"]
    assert report["ips"]["state"] == "not-read" and report["records"] == []
    assert report["summary"].startswith("not kept")


def test_pairing_status_file_not_found(bench):
    card = make_card(pin_enabled=False)
    with bench(card, _pairing(ips=False)) as b:
        report = b.status()
    assert report["service"] == "available"
    assert report["ips"]["state"] == "absent" and "6A82" in report["ips"]["why"]
    assert report["ipd"]["state"] == "not-read" and report["records"] == []
    assert report["summary"].startswith("no EF-IPS on the card")


def test_pairing_status_access_refused(bench):
    """EF-IPD refused (its ADM condition), then EF-IPS refused too; and with
    the PIN enabled and not verified, EF-UST (READ PIN) is refused while
    EF-IPS (READ ALWAYS) is still read.  Never guessed."""
    card = make_card(pin_enabled=False)
    with bench(card, _pairing(unreadable=(EF_IPD,))) as b:
        report = b.status()
    assert report["records"][0]["status"] == "ok"
    assert report["ipd"]["state"] == "unreadable" and "6982" in report["ipd"]["why"] and report["devices"] == []
    assert "EF-IPD unreadable" in report["summary"]

    with bench(make_card(pin_enabled=False), _pairing(unreadable=(EF_IPS, EF_IPD))) as b:
        report = b.status()
    assert report["ips"]["state"] == "unreadable" and "record 1: 6982" in report["ips"]["why"]
    assert report["records"] == []

    with bench(make_card(), _pairing()) as b:  # PIN enabled, nobody verified it
        report = b.status()
    assert report["service"] == "unreadable" and "6982" in report["service_why"]
    assert "readable once the PIN is verified" in report["service_why"]
    assert [r["status"] for r in report["records"]] == ["ok", "ko"]


def test_pairing_status_without_the_files(bench):
    """A card with none of the files: the simulator's default card."""
    with bench(make_card(pin_enabled=False), None) as b:
        report = b.status()
    assert report["service"] == "not-available" and report["records"] == []


def test_the_journal_and_doctor_show_the_record_read_in_apdus(bench):
    card = make_card()
    with bench(card, _pairing(unreadable=())) as b:
        b.gateway.store_pin(str(card.iccid))
        mark = b.mark()
        run = b.gateway.mtcd("once", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stdout + run.stderr
        sent = b.commands_since(mark)
        mark = b.mark()
        doctor = b.gateway.mtcctl("doctor", "--json")
        human = b.gateway.mtcctl("doctor")
        doctor_sent = b.commands_since(mark)
    # The pairing presented the PIN once; the record's reads added no PIN command.
    assert [ins for ins, data in sent if data and ins in PIN_INS] == ["20"]
    # No CHANGE, DISABLE, ENABLE at all; UNBLOCK only bare (the PUK counter).
    assert not [ins for ins, data in sent if ins in ("24", "26", "28") or (ins == "2C" and data)]
    assert not [ins for ins, data in doctor_sent if data and ins in PIN_INS]
    decision = [e for e in b.gateway.history() if e["event"] == "decision"][-1]
    record = [e for e in b.gateway.history() if e["event"] == "card-record"][-1]
    assert decision["outcome"] == "paired" and record["decided"] == decision["time"]
    assert (record["card_service"], record["card_ips"], record["card_latest"], record["card_device"]) == (
        "available", "present", "ok", IMEI), record
    facts = json.loads(doctor.stdout)["modem"]
    assert facts["card_pairing_record"]["records"][0]["status"] == "ok", facts
    assert "card_pairing_record" not in facts["unreadable"]
    assert f"card's record: latest OK with IMEI {IMEI}" in " ".join(human.stdout.split())
    b.no_secret(run, doctor, human)


def test_a_refused_read_is_journaled_and_pairing_goes_on(bench):
    card = make_card()
    with bench(card, _pairing(ips=False)) as b:
        b.gateway.store_pin(str(card.iccid))
        run = b.gateway.mtcd("once", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stdout + run.stderr
    record = [e for e in b.gateway.history() if e["event"] == "card-record"][-1]
    assert record["card_ips"] == "absent" and record["card_latest"] is None
    assert record["card_record"].startswith("no EF-IPS on the card")
