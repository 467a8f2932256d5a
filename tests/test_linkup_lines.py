"""Link-up in at most 12 AT command lines on a plain 27.007 modem, with the
card's own pairing record read after it (issue 11).

The record (EF-UST, EF-IPS, EF-IPD over AT+CRSM: 2 to 6 read-only lines)
is journaled on a `card-record` line of its own after the decision: once
the link is up, or on a refusal once the gate is closed and the radio off.
Its reads never come before the link, never run in a session that failed,
and never describe another card than the one the decision was about.
Real `mtcd once` and `mtcd run` against the simulator on a pty."""

from __future__ import annotations

import signal
import subprocess
import sys

from conftest import network_commands
from simfixtures import make_card, make_iccid, sim_modem, wait_until
from test_pairing_record import IMEI, _with_pairing

RECORD_PATH = ',"3F007FFF"'  # the record's reads, by path from ADF.USIM
ICCID_READ = "AT+CRSM=176,12258,"  # READ BINARY of EF.ICCID


def record_reads(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.endswith(RECORD_PATH)]


def activation(lines: list[str]) -> int:
    [index] = [i for i, line in enumerate(lines) if "+CGACT=1" in line]
    return index


def decision_and_record(history: list[dict]) -> tuple[dict, dict]:
    """The last decision and the card-record line that follows it."""
    at = max(i for i, e in enumerate(history) if e["event"] == "decision")
    records = [e for e in history[at:] if e["event"] == "card-record"]
    assert len(records) == 1, history[at:]
    return history[at], records[0]


def test_link_up_in_twelve_lines_then_the_cards_record(gateway):
    card = _with_pairing(make_card(), ipd_readable=True)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once", "--json")
        lines = list(modem.lines)
    assert run.returncode == 0 and run.last_json["link"] == "up", run.stderr
    up = activation(lines)
    assert up + 1 <= 12, lines
    reads = record_reads(lines)
    assert reads and min(reads) > up, lines
    # After the record, one ICCID read says it came from the paired card.
    assert lines[-1].startswith(ICCID_READ) and max(reads) < len(lines) - 1, lines
    decision, record = decision_and_record(gateway.history())
    assert decision["outcome"] == "paired" and not any(k.startswith("card_") for k in decision)
    assert record["iccid"] == str(card.iccid) and record["decided"] == decision["time"]
    assert (record["card_service"], record["card_ips"], record["card_latest"], record["card_device"]) == (
        "available", "present", "ok", IMEI)


def test_a_refusal_reads_the_record_with_the_radio_off(gateway):
    card = _with_pairing(make_card())
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(make_iccid(2))  # not this card: refused
        run = gateway.mtcd("once", "--json")
        sent, lines, radio = list(modem.commands), list(modem.lines), modem.radio
    assert run.returncode == 1 and run.last_json["reason"] == "unknown-sim", run.stderr
    assert network_commands(sent) == [] and radio == 4
    reads = record_reads(lines)
    # Nothing but read-only AT+CRSM from the first of the record's reads on.
    assert reads and all(line.startswith(("AT+CRSM=176,", "AT+CRSM=178,", "AT+CRSM=192,"))
                         for line in lines[min(reads):]), lines
    decision, record = decision_and_record(gateway.history())
    assert decision["outcome"] == "refused" and record["iccid"] == str(card.iccid)
    assert (record["card_ips"], record["card_latest"]) == ("present", "ok")


def test_a_sim_swapped_after_pairing_is_not_taken_for_the_paired_one(gateway):
    """The SIM changes once the link is up, before its record is read: the
    record says so and holds nothing of the new card, and the gate closes
    (tests/test_review3_card_record_swap.py)."""
    paired = make_card()
    other = _with_pairing(make_card(serial_number=7), ipd_readable=True)
    with sim_modem(paired) as (modem, port):
        handle = modem.handle

        def swap_after_link_up(line: str) -> list[str]:
            reply = handle(line)
            if "+CGACT=1" in line:
                modem.insert_card(other)
            return reply

        modem.handle = swap_after_link_up
        gateway.configure(port)
        gateway.store_pin(str(paired.iccid))
        run = gateway.mtcd("once", "--json")
        lines = list(modem.lines)
    assert run.returncode == 1 and run.last_json["iccid"] == str(paired.iccid), run.stderr
    assert run.last_json["link"] == "down" and run.last_json["reason"] == "sim-error"
    assert record_reads(lines) and min(record_reads(lines)) > activation(lines)
    _, record = decision_and_record(gateway.history())
    assert record["iccid"] == str(paired.iccid)
    assert record["card_record"] == "not read: the SIM changed"
    assert (record["card_service"], record["card_ips"], record["card_latest"], record["card_device"]) == (
        None, None, None, None)


def test_no_card_no_read(gateway):
    with sim_modem(None) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcd("once", "--json")
        lines = list(modem.lines)
    assert run.returncode == 1 and run.last_json["reason"] == "no-sim", run.stderr
    assert record_reads(lines) == []
    _, record = decision_and_record(gateway.history())
    assert record["iccid"] is None and record["card_record"] == "not read: no card was identified"


def test_a_session_that_failed_reads_nothing(gateway):
    """The link cannot come up (the modem refuses the radio): `mtcd once`
    fails with the gate closed, and the card is not asked for its record."""
    card = _with_pairing(make_card())
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CFUN=1", mode="error", times=10)
        run = gateway.mtcd("once", "--json")
        lines = list(modem.lines)
    assert run.returncode == 69, run.stderr
    assert record_reads(lines) == []
    history = gateway.history()
    assert [e["outcome"] for e in history if e["event"] == "decision"] == ["paired"]
    assert [e for e in history if e["event"] == "card-record"] == []


def test_the_service_reads_the_record_after_the_link(gateway):
    card = _with_pairing(make_card())
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        proc = subprocess.Popen([sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "run"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=gateway.env)
        try:
            journal = gateway.state_dir / "journal.jsonl"
            wait_until(lambda: journal.exists() and b'"card-record"' in journal.read_bytes(), 30, "the card's record")
            lines = list(modem.lines)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert activation(lines) + 1 <= 12 and min(record_reads(lines)) > activation(lines), lines
    decision, record = decision_and_record(gateway.history())
    assert decision["outcome"] == "paired" and record["decided"] == decision["time"]
    assert (record["iccid"], record["card_latest"]) == (str(card.iccid), "ok")
