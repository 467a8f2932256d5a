"""The card's own pairing record (TS 31.102 EF-UST service 102, EF-IPS,
EF-IPD): the pure decoders, the order of reads against a scripted card, and
the real commands (`mtcctl sim pairing-status`, `mtcctl doctor`, `mtcd once`'s
journal line) against the simulator on a pty, in every state of the files."""

from __future__ import annotations

import json

import pytest

from mtcd.identity import Imei, Imeisv
from mtcd.pairing_record import (
    EF_IPD, EF_IPS, EF_UST, FileAccessError, Service, State, Verdict, decode_ipd_record, decode_ips_record,
    encode_ipd_record, encode_ips_record, encode_ust, parse_file_header, read_pairing_record, service_in_table,
)
from simfixtures import TEST_PIN, TEST_PUK, make_card, sim_modem
from test_service import service

IMEI = "359999000000018"
IMEISV = "3599990000000101"
_CRSM_READS = ("AT+CRSM=192,", "AT+CRSM=176,", "AT+CRSM=178,")


# -- pure decoders --------------------------------------------------------------


def test_service_102_is_bit_6_of_byte_13():
    table = bytearray(16)
    assert service_in_table(bytes(table), 102) is False
    table[12] = 0x20  # byte 13, b6: service n°102
    assert service_in_table(bytes(table), 102) is True
    assert service_in_table(bytes(table), 101) is False and service_in_table(bytes(table), 103) is False
    assert service_in_table(bytes(12), 102) is None  # too short to say
    assert encode_ust({102}) == bytes(table)


@pytest.mark.parametrize("data, verdict, link", [
    (b"OK\x01\xff", Verdict.OK, 1),
    (b"KO\x07\xff", Verdict.KO, 7),
    (b"OK\xff\xff", Verdict.OK, None),  # no link
    (b"KO\x00\xff", Verdict.KO, None),  # 00 is no record number
    (b"\xff\xff\xff\xff", Verdict.EMPTY, None),
    (b"ok\x01\xff", Verdict.UNKNOWN, 1),  # only "OK"/"KO" are verdicts
    (b"\x00\x00", Verdict.UNKNOWN, None),
])
def test_ips_records(data, verdict, link):
    record = decode_ips_record(3, data)
    assert (record.number, record.verdict, record.ipd_record) == (3, verdict, link)
    assert record.raw == data.hex().upper()


def test_ipd_records():
    assert decode_ipd_record(1, encode_ipd_record(Imei(IMEI))).value == IMEI
    assert decode_ipd_record(1, encode_ipd_record(Imei(IMEI))).kind == "imei"
    device = decode_ipd_record(2, encode_ipd_record(Imeisv(IMEISV)))
    assert (device.kind, device.value) == ("imeisv", IMEISV)
    assert decode_ipd_record(3, b"\xff" * 10).kind == "empty"
    # A wrong check digit is shown raw, never corrected.
    bad = bytearray(encode_ipd_record(Imei(IMEI)))
    bad[9 - 2] ^= 0x01
    assert decode_ipd_record(4, bytes(bad)).kind == "undecodable"
    assert decode_ipd_record(5, b"\x82\x08" + b"\x00" * 8).kind == "undecodable"  # unknown tag
    assert decode_ipd_record(6, b"\x80\x0a\x00").kind == "undecodable"  # length beyond the record


def test_file_headers():
    cyclic = bytes.fromhex("621A" "8205462100040A" "83026FF1" "8002" "0028" "8A0105" "8B03000000")[:28]
    header = parse_file_header(bytes.fromhex("6211" "8205462100040A" "83026FF1" "80020028"))
    assert (header.structure, header.record_length, header.records) == ("cyclic", 4, 10)
    header = parse_file_header(bytes.fromhex("620E" "82054221000A03" "83026FF2" "8001" "1E")[:16])
    assert header.structure == "linear-fixed" and header.record_length == 10
    header = parse_file_header(bytes.fromhex("620E" "82024121" "83026F38" "8002" "0010"))
    assert (header.structure, header.size) == ("transparent", 16)
    # A 2G GET RESPONSE: size 0x28, EF, cyclic, records of 4 bytes.
    two_g = bytes([0, 0, 0x00, 0x28, 0x6F, 0xF1, 0x04, 0, 0, 0, 0, 0, 0, 0x03, 0x04])
    header = parse_file_header(two_g)
    assert (header.structure, header.record_length, header.records) == ("cyclic", 4, 10)
    assert parse_file_header(b"\x01\x02") is None
    assert cyclic  # the longer template parses too
    assert parse_file_header(cyclic).structure == "cyclic"


# -- the order of reads, against a scripted card ---------------------------------------


class ScriptedCard:
    """CardFiles answering from a table; records every call."""

    def __init__(self, files: dict, fail: dict | None = None):
        self.files = files  # fid -> (sw of the header, header, content or records, sw of reads)
        self.fail = fail or {}  # (call, fid) -> FileAccessError
        self.calls: list[tuple[str, int]] = []

    def _entry(self, call, fid):
        self.calls.append((call, fid))
        if (call, fid) in self.fail:
            raise self.fail[(call, fid)]
        return self.files.get(fid)

    def header(self, fid):
        entry = self._entry("header", fid)
        if entry is None:
            return 0x6A82, b""
        return entry[0], entry[1]

    def read_binary(self, fid, offset, length):
        entry = self._entry("read_binary", fid)
        if entry is None:
            return 0x6A82, b""
        return entry[3], entry[2][offset:offset + length] if entry[3] == 0x9000 else b""

    def read_record(self, fid, number, length):
        entry = self._entry("read_record", fid)
        if entry is None:
            return 0x6A82, b""
        if entry[3] != 0x9000:
            return entry[3], b""
        if number > len(entry[2]):
            return 0x6A83, b""
        return 0x9000, entry[2][number - 1]


UST_HEADER = bytes.fromhex("620E82024121") + bytes.fromhex("83026F38") + bytes.fromhex("80020010")


def _ips_header(records: int) -> bytes:
    body = bytes.fromhex("820546210004") + bytes([records]) + bytes.fromhex("83026FF1")
    return bytes([0x62, len(body)]) + body


def _card(services=frozenset({102}), ips=None, ips_sw=0x9000, ipd=None, ipd_sw=0x6982, ust_sw=0x9000):
    files = {EF_UST: (0x9000, UST_HEADER, encode_ust(set(services)), ust_sw)}
    if ips is not None:
        files[EF_IPS] = (0x9000, _ips_header(len(ips)), list(ips), ips_sw)
    if ipd is not None:
        files[EF_IPD] = (0x9000, bytes.fromhex("620982054221000A03"), list(ipd), ipd_sw)
    return ScriptedCard(files)


def test_no_service_reads_no_pairing_file():
    card = _card(services=frozenset({1, 2}), ips=[encode_ips_record(Verdict.OK, 1)])
    record = read_pairing_record(card)
    assert record.service is Service.NOT_AVAILABLE and "service 102 not set" in record.service_why
    assert {fid for _, fid in card.calls} == {EF_UST}
    assert record.status_file.state is State.NOT_READ and record.records == ()
    assert record.summary().startswith("not kept")


def test_verdicts_newest_first_with_the_device_where_readable():
    ips = [encode_ips_record(Verdict.KO, 2), encode_ips_record(Verdict.OK, 1)] + [b"\xff" * 4] * 8
    ipd = [encode_ipd_record(Imei(IMEI)), encode_ipd_record(Imeisv(IMEISV))]
    record = read_pairing_record(_card(ips=ips, ipd=ipd, ipd_sw=0x9000))
    assert record.service is Service.AVAILABLE and record.status_file.state is State.PRESENT
    assert [(r.number, r.verdict) for r in record.records] == [(1, Verdict.KO), (2, Verdict.OK)]
    assert record.empty_records == 8 and record.file_records == 10 and not record.limited
    assert [d.value for d in record.devices] == [IMEI, IMEISV]
    assert record.summary() == f"latest KO with IMEISV {IMEISV}; 2 pairings recorded (1 OK, 1 KO)"
    json.dumps(record.as_json())


def test_ipd_readable_only_with_adm_is_said_so():
    ips = [encode_ips_record(Verdict.OK, 1)]
    record = read_pairing_record(_card(ips=ips, ipd=[encode_ipd_record(Imei(IMEI))], ipd_sw=0x6982))
    assert record.device_file.state is State.UNREADABLE and "6982" in record.device_file.why
    assert record.devices == () and "device: EF-IPD unreadable" in record.summary()


def test_ipd_absent_is_said_so():
    record = read_pairing_record(_card(ips=[encode_ips_record(Verdict.OK, 1)], ipd=None))
    assert record.device_file.state is State.ABSENT and record.device_file.why.startswith("6A82")
    assert record.latest.ipd_record == 1 and record.devices == ()


def test_a_refusal_is_journaled_with_the_cards_record(gateway):
    card = _with_pairing(make_card())
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        done = gateway.mtcd("once", "--json")
    assert done.returncode == 1 and done.last_json["reason"] == "unknown-sim"
    record = [e for e in gateway.history() if e["event"] == "card-record"][-1]
    # Locked card: EF-UST needs the PIN, EF-IPS is READ ALWAYS.
    assert (record["card_service"], record["card_ips"], record["card_latest"]) == ("unreadable", "present", "ok")


@pytest.mark.parametrize("sw, state", [(0x6982, State.UNREADABLE), (0x6A82, State.ABSENT)])
def test_ips_unreadable_or_absent(sw, state):
    card = _card(ips=[encode_ips_record(Verdict.OK, 1)])
    card.files[EF_IPS] = (sw, b"", [], sw)
    record = read_pairing_record(card)
    assert record.status_file.state is state and record.status_file.why.startswith(f"{sw:04X}")
    assert record.records == () and record.device_file.state is State.NOT_READ


def test_locked_card_still_reads_ips_which_is_read_always():
    card = _card(ips=[encode_ips_record(Verdict.OK, 1)], ust_sw=0x6982)
    record = read_pairing_record(card)
    assert record.service is Service.UNREADABLE and "6982" in record.service_why
    assert [r.verdict for r in record.records] == [Verdict.OK]


def test_wrong_structure_is_not_decoded():
    card = _card(ips=[b"OK\x01\xff"])
    card.files[EF_IPS] = (0x9000, bytes.fromhex("620982054221000503"), [b"OK\x01\xff\xff"], 0x9000)
    record = read_pairing_record(card)
    assert record.status_file.state is State.UNREADABLE and "not cyclic" in record.status_file.why
    assert record.records == ()


def test_limit_reads_only_the_newest():
    ips = [encode_ips_record(Verdict.OK, 1)] * 10
    card = _card(ips=ips)
    record = read_pairing_record(card, limit=3)
    assert len(record.records) == 3 and record.limited
    assert sum(1 for call, fid in card.calls if call == "read_record" and fid == EF_IPS) == 3
    assert "recorded" not in record.summary()  # no count it did not read
    with pytest.raises(ValueError):
        read_pairing_record(card, limit=0)


def test_transport_gone_stops_asking():
    card = _card(ips=[encode_ips_record(Verdict.OK, 1)] * 3)
    card.fail[("read_record", EF_IPS)] = FileAccessError("port closed", fatal=True)
    record = read_pairing_record(card)
    assert record.status_file.state is State.UNREADABLE and "port closed" in record.status_file.why
    assert card.calls[-1] == ("read_record", EF_IPS)  # nothing asked after it


def test_transport_error_on_the_table():
    card = _card(ips=[encode_ips_record(Verdict.OK, 1)])
    card.fail[("header", EF_UST)] = FileAccessError("AT+CRSM: +CME ERROR: 4")
    record = read_pairing_record(card)
    assert record.service is Service.UNREADABLE and "CME ERROR: 4" in record.service_why
    assert record.latest.verdict is Verdict.OK


# -- over AT+CRSM, with the real commands --------------------------------------------


def _with_pairing(card, *, service=True, ips=True, ipd_readable=False, unreadable=None):
    records = [encode_ips_record(Verdict.OK, 1), encode_ips_record(Verdict.KO, 2)] if ips else None
    devices = [encode_ipd_record(Imei(IMEI)), encode_ipd_record(Imeisv("3599990000020201"))]
    if unreadable is None:
        unreadable = set() if ipd_readable else {EF_IPD}
    card.pairing_record(service=service, ips=records, ipd=devices, unreadable=unreadable)
    return card


def _status(gateway, modem) -> tuple[dict, list[str]]:
    seen = len(modem.commands)
    run = gateway.mtcctl("sim", "pairing-status", "--json")
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    return json.loads(run.stdout), modem.commands[seen:]


def _read_only(sent: list[str]) -> None:
    assert sent and all(c.startswith(_CRSM_READS) or c in ("ATE0", "AT+CMEE=1") for c in sent), sent


def test_pairing_status_every_state_of_the_files(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        # A card without the service (the simulator's default), PIN not verified.
        report, sent = _status(gateway, modem)
        _read_only(sent)
        assert report["service"] == "unreadable" and "6982" in report["service_why"]
        assert report["ips"]["state"] == "absent" and report["records"] == []
        card.verify(TEST_PIN)
        report, _ = _status(gateway, modem)
        assert report["service"] == "not-available" and report["ips"]["state"] == "not-read"

        _with_pairing(card)
        before = (card.pin_attempts, card.puk_attempts, card.pin_enabled, list(card.ips_records))
        report, sent = _status(gateway, modem)
        _read_only(sent)
        assert report["via"] == "direct" and report["service"] == "available"
        assert [(r["record"], r["status"], r["ipd_record"]) for r in report["records"]] == [(1, "ok", 1), (2, "ko", 2)]
        assert report["ips"] == {"state": "present", "why": None, "file_records": 10, "empty_records": 8,
                                 "limited": False}
        assert report["ipd"]["state"] == "unreadable" and "6982" in report["ipd"]["why"] and report["devices"] == []
        assert (card.pin_attempts, card.puk_attempts, card.pin_enabled, list(card.ips_records)) == before

        _with_pairing(card, ipd_readable=True)
        report, _ = _status(gateway, modem)
        assert [d["value"] for d in report["devices"]] == [IMEI, "3599990000020201"]
        human = gateway.mtcctl("sim", "pairing-status")
        assert human.returncode == 0 and f"IMEI {IMEI} (EF-IPD record 1)" in human.stdout
        assert "None" not in human.stdout

        _with_pairing(card, unreadable={EF_IPS, EF_IPD})
        report, _ = _status(gateway, modem)
        assert report["ips"]["state"] == "unreadable" and "record 1: 6982" in report["ips"]["why"]

        _with_pairing(card, ips=False)
        report, _ = _status(gateway, modem)
        assert report["service"] == "available" and report["ips"]["state"] == "absent"
        assert "no EF-IPS on the card" in report["summary"]


def test_pairing_status_without_crsm(gateway):
    card = _with_pairing(make_card())
    with sim_modem(card, has_crsm=False) as (modem, port):
        gateway.configure(port)
        report, _ = _status(gateway, modem)
    assert report["service"] == "unreadable" and "AT+CRSM" in report["service_why"]
    assert report["ips"]["state"] == "unreadable" and report["records"] == []


def test_pairing_status_without_modem(gateway):
    gateway.configure(str(gateway.root / "ttyGONE"))
    run = gateway.mtcctl("sim", "pairing-status", "--json")
    assert run.returncode == 69 and json.loads(run.stdout)["error"] == "modem-unavailable"
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1


def test_doctor_and_the_journal_show_the_cards_record(gateway):
    card = _with_pairing(make_card(), ipd_readable=True)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert gateway.mtcd("once").returncode == 0
        doctor = gateway.mtcctl("doctor", "--json")
        human = gateway.mtcctl("doctor")
    decision = [e for e in gateway.history() if e["event"] == "decision"][-1]
    record = [e for e in gateway.history() if e["event"] == "card-record"][-1]
    assert decision["outcome"] == "paired" and record["decided"] == decision["time"]
    assert (record["card_service"], record["card_ips"], record["card_latest"], record["card_device"]) == (
        "available", "present", "ok", IMEI)
    assert record["card_record"].startswith(f"latest OK with IMEI {IMEI}")
    record = json.loads(doctor.stdout)["modem"]["card_pairing_record"]
    assert record["records"][0]["status"] == "ok" and record["service"] == "available"
    assert f"card's record: latest OK with IMEI {IMEI}" in " ".join(human.stdout.split())
    assert TEST_PIN not in doctor.stdout + human.stdout and TEST_PUK not in doctor.stdout


def test_a_failed_read_is_journaled_and_pairing_goes_on(gateway):
    card = _with_pairing(make_card())
    with sim_modem(card, has_crsm=False) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        done = gateway.mtcd("once", "--json")
        assert done.returncode == 0 and done.last_json["state"] == "paired", done.stderr
        assert modem.pdp_active
    record = [e for e in gateway.history() if e["event"] == "card-record"][-1]
    assert record["card_ips"] == "unreadable" and "AT+CRSM" in record["card_record"]
    assert record["card_latest"] is None


def test_a_broken_reader_never_raises(monkeypatch):
    """Whatever goes wrong inside the read (here: a bug), journal_fields
    says so instead of raising into the pairing, whatever the transport."""
    from mtcd import pairing_record

    def broken(files, limit=1):
        raise KeyError("boom")

    monkeypatch.setattr(pairing_record, "read_pairing_record", broken)
    fields = pairing_record.journal_fields(files=None)
    assert fields["card_record"] == "unreadable: internal error (KeyError)"
    assert fields["card_latest"] is None


def test_pairing_status_through_the_running_service(gateway, notify_socket):
    card = _with_pairing(make_card())
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("READY", "1")
            report, sent = _status(gateway, modem)
    assert report["via"] == "service" and report["service"] == "available"
    assert [r["status"] for r in report["records"]] == ["ok", "ko"]
    assert not any(c.startswith(("AT+CPIN=", "AT+CFUN=", "AT+CPWD", "AT+CLCK=\"SC\",1", "AT+CLCK=\"SC\",0"))
                   for c in sent)


@pytest.mark.parametrize("kind, expect", [
    ("ko", ("available", "present", ["ko"])),
    ("absent", ("available", "absent", [])),
    ("unreadable", ("available", "unreadable", [])),
    ("none", ("not-available", "not-read", [])),
])
def test_mtcd_sim_serve_pairing_record(gateway, tmp_path, kind, expect):
    """`mtcd-sim serve --pairing-record`: the same states from the command line."""
    import signal
    import subprocess

    from simfixtures import sim_cli

    state = tmp_path / "card.json"
    made = subprocess.run([*sim_cli(), "card", "--state", str(state), "--iccid", "8949020000000000014",
                           "--imsi", "262019876543210", "--pin-disabled"], input=f"{TEST_PIN}\n{TEST_PUK}\n",
                          capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    proc = subprocess.Popen([*sim_cli(), "serve", "--state", str(state), "--pairing-record", kind, "--ipd-readable"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert port.startswith("/dev/"), proc.stderr.read()
        gateway.configure(port)
        run = gateway.mtcctl("sim", "pairing-status", "--json")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    report = json.loads(run.stdout)
    assert (report["service"], report["ips"]["state"], [r["status"] for r in report["records"]]) == expect, report
    if kind == "ko":
        assert report["devices"][0]["kind"] == "imei"  # the simulator's own IMEI, readable here


@pytest.mark.parametrize("backend", ["at", "csim", "pcsc"])
def test_one_choice_of_the_files_a_reading_goes_through(backend):
    # mtcd.pairing_record.card_files is the choice the service and
    # `mtcctl sim pairing-status` both make: APDUs through the UICC's own
    # channel where the backend has one, else AT+CRSM through the modem.
    from mtcd.card.record import ApduFiles
    from mtcd.config import UICC_BACKENDS
    from mtcd.pairing_record import APDU_BACKENDS, card_files
    from mtcd.pairing_record_at import CrsmFiles

    assert backend in UICC_BACKENDS and APDU_BACKENDS <= set(UICC_BACKENDS)

    class Channel:
        session = 7

    class Uicc:
        channel = Channel()

    modem, uicc = object(), Uicc()
    files = card_files(backend, modem=modem, uicc=uicc)
    if backend == "at":
        assert type(files) is CrsmFiles and files.modem is modem
    else:
        assert type(files) is ApduFiles and files.uicc is uicc and files.session == 7
