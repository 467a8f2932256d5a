"""Journal events: the fields (pure), the stderr fallback, and the real
journald protocol.

libsystemd's sd_journal_sendv() always writes to /run/systemd/journal/socket
and takes no other path.  To see what it really sends, the journald tests run
a child in its own user and mount namespace (`unshare`), with a fresh tmpfs
on /run where the test binds its own datagram socket at that path: the child
uses systemd-python unchanged and the test reads the datagram libsystemd
wrote, in journald's native protocol.  The host's journal is never touched.
Where namespaces are not allowed, those tests skip with the reason.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
import textwrap
from enum import Enum

import pytest
from hypothesis import given, strategies as st

from mtcd.events import (
    LOG_ERR, LOG_INFO, LOG_NOTICE, LOG_WARNING, Event, EventLog, journal_available,
    journal_fields, masked_imsi, stderr_line,
)
from mtcd.identity import Iccid, Imei, Imsi
from mtcd.secret import Pin, Puk

ICCID = "8949020000000000014"
IMEI = "359999000000018"
IMSI = "262019876543210"
PIN = "48151623"

MESSAGE_IDS = {
    "PAIRED": "1e1d3c77c59a4159bc0320b54e28266c",
    "REFUSED": "1c1b8bdce6ed421da101b696fe888a81",
    "ASSOCIATION_CHANGED": "e9f85833818d420f84af777d8984e0df",
    "SIM_REMOVED": "84ca2d8ea7ab4e9d9f41fe098dd5b067",
    "PIN_ROTATED": "7475ffcf40634f4bbf0ac8c53ad6859b",
    "RETRY_GUARD": "09490d20745d44f8aa41f1717be81df8",
    "MODEM_LOST": "f59341c35e8a48a89c0c5b2b831d8f2e",
    "PIN_REJECTED": "065e2eb1d11349eca2ad2896441aefcb",
}


# --- the fields (pure) -------------------------------------------------------

def test_message_ids_are_the_catalog_ids():
    assert {e.name: e.message_id for e in Event} == MESSAGE_IDS


def test_priorities_per_event():
    assert Event.PAIRED.priority == LOG_INFO
    assert Event.PIN_ROTATED.priority == LOG_NOTICE
    assert Event.REFUSED.priority == LOG_WARNING
    assert Event.ASSOCIATION_CHANGED.priority == LOG_WARNING
    assert Event.SIM_REMOVED.priority == LOG_WARNING
    for needs_a_person in (Event.RETRY_GUARD, Event.PIN_REJECTED, Event.MODEM_LOST):
        assert needs_a_person.priority == LOG_ERR


def test_all_fields():
    fields = journal_fields(
        Event.REFUSED, "SIM refused", iccid=Iccid(ICCID), imei=Imei(IMEI),
        state="refused", reason="unknown-sim", imsi=Imsi(IMSI),
    )
    assert fields == {
        "MESSAGE": "SIM refused",
        "MESSAGE_ID": MESSAGE_IDS["REFUSED"],
        "PRIORITY": "4",
        "SYSLOG_IDENTIFIER": "mtcd",
        "MTCD_EVENT": "refused",
        "MTCD_STATE": "refused",
        "MTCD_REASON": "unknown-sim",
        "MTCD_ICCID": ICCID,
        "MTCD_IMEI": IMEI,
        "MTCD_IMSI": "26201**********",
    }


def test_unknown_fields_are_left_out():
    fields = journal_fields(Event.MODEM_LOST, "modem gone")
    assert fields == {
        "MESSAGE": "modem gone",
        "MESSAGE_ID": MESSAGE_IDS["MODEM_LOST"],
        "PRIORITY": "3",
        "SYSLOG_IDENTIFIER": "mtcd",
        "MTCD_EVENT": "modem-lost",
    }


def test_imsi_in_full_only_when_configured():
    assert journal_fields(Event.PAIRED, "p", imsi=IMSI)["MTCD_IMSI"] == "26201**********"
    assert journal_fields(Event.PAIRED, "p", imsi=Imsi(IMSI), show_imsi=True)["MTCD_IMSI"] == IMSI


def test_malformed_imsi_is_hidden_entirely():
    assert masked_imsi("26201x") == "******"
    assert journal_fields(Event.PAIRED, "p", imsi="2620198765432101234")["MTCD_IMSI"] == "*" * 19


def test_enum_values_and_priority_override():
    class Reason(Enum):
        RETRY_GUARD = "retry-guard"

    fields = journal_fields(Event.RETRY_GUARD, "guard", reason=Reason.RETRY_GUARD, priority=2)
    assert fields["MTCD_REASON"] == "retry-guard"
    assert fields["PRIORITY"] == "2"
    assert fields["MTCD_EVENT"] == "retry-guard"


@pytest.mark.parametrize("priority", [-1, 8, True, "3", 3.0])
def test_bad_priority(priority):
    with pytest.raises(ValueError, match="priority must be a syslog level"):
        journal_fields(Event.PAIRED, "p", priority=priority)


@pytest.mark.parametrize("bad", ["PAIRED", None, 1])
def test_event_must_be_an_event(bad):
    with pytest.raises(TypeError, match="Event"):
        journal_fields(bad, "p")


@pytest.mark.parametrize("message", ["", None, b"bytes"])
def test_message_must_be_text(message):
    with pytest.raises(TypeError, match="message"):
        journal_fields(Event.PAIRED, message)


@pytest.mark.parametrize("field", ["iccid", "imei", "state", "reason", "imsi"])
@pytest.mark.parametrize("secret", [Pin(PIN), Puk("12345678")])
def test_a_secret_in_any_field_is_refused(field, secret):
    log = EventLog(journal=False, stream=io.StringIO())
    with pytest.raises(TypeError) as caught:
        log.emit(Event.PAIRED, "paired", **{field: secret})
    assert repr(field) in str(caught.value)
    assert secret.reveal() not in str(caught.value)
    assert log._stream.getvalue() == ""


def test_a_secret_as_message_is_refused():
    with pytest.raises(TypeError, match="'message' is a PIN") as caught:
        EventLog(journal=False, stream=io.StringIO()).emit(Event.PAIRED, Pin(PIN))
    assert PIN not in str(caught.value)


@given(
    message=st.text(min_size=1),
    reason=st.none() | st.text(),
    iccid=st.none() | st.text(),
)
def test_stderr_line_is_one_line(message, reason, iccid):
    fields = journal_fields(Event.REFUSED, message, reason=reason, iccid=iccid)
    line = stderr_line(fields)
    assert line.startswith("mtcd: ")
    assert len(line.splitlines()) <= 1


def test_stderr_line_format():
    fields = journal_fields(Event.REFUSED, "SIM refused", reason="unknown-sim", iccid=ICCID,
                            imsi=IMSI)
    assert stderr_line(fields) == (
        f"mtcd: SIM refused [reason=unknown-sim iccid={ICCID} imsi=26201**********]"
    )
    assert stderr_line(journal_fields(Event.MODEM_LOST, "modem gone")) == "mtcd: modem gone"


# --- the stderr fallback, for real --------------------------------------------

def test_fallback_writes_one_line_to_the_real_stderr(capfd):
    log = EventLog(journal=False)
    log.emit(Event.PIN_REJECTED, "stored PIN rejected by the card", iccid=ICCID,
             reason="pin-rejected", state="refused")
    out, err = capfd.readouterr()
    assert out == ""
    assert err == (
        "mtcd: stored PIN rejected by the card "
        f"[state=refused reason=pin-rejected iccid={ICCID}]\n"
    )


def test_closed_stderr_does_not_raise():
    stream = io.StringIO()
    stream.close()
    fields = EventLog(journal=False, stream=stream).emit(Event.MODEM_LOST, "modem gone")
    assert fields["MESSAGE"] == "modem gone"


def test_without_systemd_python_there_is_no_journal(monkeypatch, capfd):
    # An import of a module set to None in sys.modules raises ImportError,
    # exactly as on a system without systemd-python.
    monkeypatch.setitem(sys.modules, "systemd", None)
    monkeypatch.setitem(sys.modules, "systemd.journal", None)
    assert journal_available(__file__) is False  # even where the "socket" exists
    log = EventLog(journal=True)
    log.emit(Event.SIM_REMOVED, "SIM removed", iccid=ICCID)
    assert capfd.readouterr().err == f"mtcd: SIM removed [iccid={ICCID}]\n"


def test_no_socket_no_journal(tmp_path):
    assert journal_available(str(tmp_path / "socket")) is False


# --- the journald path, for real (libsystemd in a private /run) -------------------

_CHILD = textwrap.dedent(
    """
    import json, os, socket, sys
    from mtcd.events import Event, EventLog, journal_available
    from mtcd.identity import Iccid, Imei, Imsi

    scenario = sys.argv[1]
    out = {"available_before": journal_available()}
    sock = None
    if scenario == "stale-socket":
        # journald died: its socket file is left, nobody reads it.
        os.makedirs("/run/systemd/journal", exist_ok=True)
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).bind("/run/systemd/journal/socket")
    elif scenario != "no-socket":
        os.makedirs("/run/systemd/journal", exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind("/run/systemd/journal/socket")
        sock.settimeout(5)
    out["available"] = journal_available()
    log = EventLog(show_imsi=scenario == "show-imsi", journal=True if scenario in ("no-socket", "stale-socket") else None)
    out["journal"] = log.journal
    log.emit(Event.REFUSED, "SIM refused: no stored PIN", iccid=Iccid("%(iccid)s"),
             imei=Imei("%(imei)s"), state="refused", reason="unknown-sim", imsi=Imsi("%(imsi)s"))
    if sock is not None:
        out["datagram"] = sock.recv(1 << 16).hex()
    print(json.dumps(out))
    """
) % {"iccid": ICCID, "imei": IMEI, "imsi": IMSI}


def _namespaces_work() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare(1)"
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         "mount -t tmpfs tmpfs /run"],
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        return f"cannot make a private /run: {probe.stderr.strip() or probe.returncode}"
    return None


def _run_in_private_run(tmp_path, scenario: str) -> tuple[dict, str]:
    why = _namespaces_work()
    if why:
        pytest.skip(f"journald protocol test needs a user+mount namespace: {why}")
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         'mount -t tmpfs tmpfs /run && exec "$0" "$1" "$2"', sys.executable, str(script), scenario],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def parse_native(datagram: bytes) -> dict[str, str]:
    """journald's native protocol: 'NAME=value\\n', or for values with a
    newline 'NAME\\n' + little-endian 64-bit length + value + '\\n'."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        line_end = rest.index(b"\n")
        head = rest[:line_end]
        if b"=" in head:
            name, _, value = head.partition(b"=")
            rest = rest[line_end + 1 :]
        else:
            name = head
            (size,) = struct.unpack("<Q", rest[line_end + 1 : line_end + 9])
            value = rest[line_end + 9 : line_end + 9 + size]
            assert rest[line_end + 9 + size : line_end + 10 + size] == b"\n"
            rest = rest[line_end + 10 + size :]
        assert name.decode() not in fields
        fields[name.decode()] = value.decode()
    return fields


def test_parse_native_reads_both_forms():
    data = b"A=1\nB\n" + struct.pack("<Q", 3) + b"x\ny\n"
    assert parse_native(data) == {"A": "1", "B": "x\ny"}


def test_libsystemd_sends_every_field_to_the_journal_socket(tmp_path):
    out, stderr = _run_in_private_run(tmp_path, "journal")
    assert out["available_before"] is False and out["available"] is True
    assert out["journal"] is True
    assert stderr == ""  # sent to the journal, not printed
    fields = parse_native(bytes.fromhex(out["datagram"]))
    assert fields["MESSAGE"] == "SIM refused: no stored PIN"
    assert fields["MESSAGE_ID"] == MESSAGE_IDS["REFUSED"]
    assert fields["PRIORITY"] == "4"
    assert fields["SYSLOG_IDENTIFIER"] == "mtcd"
    assert fields["MTCD_EVENT"] == "refused"
    assert fields["MTCD_STATE"] == "refused"
    assert fields["MTCD_REASON"] == "unknown-sim"
    assert fields["MTCD_ICCID"] == ICCID
    assert fields["MTCD_IMEI"] == IMEI
    assert fields["MTCD_IMSI"] == "26201**********"
    assert IMSI not in out["datagram"]
    # The caller's location, not the events module's.
    assert fields["CODE_FILE"].endswith("child.py")
    assert fields["CODE_FUNC"] == "<module>"


def test_full_imsi_reaches_the_journal_when_configured(tmp_path):
    out, _ = _run_in_private_run(tmp_path, "show-imsi")
    assert parse_native(bytes.fromhex(out["datagram"]))["MTCD_IMSI"] == IMSI


@pytest.mark.parametrize("scenario", ["no-socket", "stale-socket"])
def test_journal_gone_falls_back_to_stderr(tmp_path, scenario):
    # journal=True (journald was there at start) but now nothing listens:
    # libsystemd would drop a missing socket's entry silently, or fail with
    # ECONNREFUSED on a stale one; either way the event reaches stderr.
    out, stderr = _run_in_private_run(tmp_path, scenario)
    assert out["journal"] is True
    assert stderr == (
        "mtcd: SIM refused: no stored PIN "
        f"[state=refused reason=unknown-sim iccid={ICCID} imei={IMEI} imsi=26201**********]\n"
    )
