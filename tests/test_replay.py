"""The pairing gate against recorded modems: every file in tests/dialogues/
is replayed on a real pty (mtcd.sim.replay) and the real `mtcd once` or
`mtcctl pair` runs against it as against /dev/ttyUSB2.

Each file says in its `source` header which public record its replies come
from.  The replay is strict: a command the recording does not expect fails
the test, so each file also pins down what mtcd sends.  Whatever the
decision, the guarantees are checked: a PIN goes out only for exactly SIM
PIN and the ICCID it was stored for, never a PUK, never a network command
on a refusal, and the PIN in no output.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import network_commands, pin_presentations, puk_commands
from mtcd.sim.replay import DialogueError, Script, framed, load_dialogue, parse_dialogue
from mtcd.sim.replay_pty import ReplayPtyServer
from simfixtures import TEST_PIN, sim_cli

DIALOGUES = Path(__file__).parent / "dialogues"


@dataclass(frozen=True)
class Expect:
    run: str = "once"  # "once": mtcd once --json; "pair": mtcctl pair --json
    stored: str | None = None  # ICCID the PIN is stored for, as a person types it
    modem: str = ""  # extra [modem] settings
    exit: int = 0
    state: str | None = "paired"  # once: paired/refused; None: no decision (error)
    reason: str | None = None
    error: str | None = None  # the JSON "error" of a run without a decision
    message: str | None = None  # words the one-line message must hold
    presented: int = 1  # PIN presentations expected
    iccid: str | None = None  # the identity mtcd must report
    notes: list[str] = field(default_factory=list)


CASES: dict[str, Expect] = {
    "generic-27007-baseline": Expect(stored="8949020000000000014", iccid="8949020000000000014"),
    "simcom-a7672-echo-doubled": Expect(stored="8901260000000001236", iccid="8901260000000001236"),
    "huawei-e1752-command-not-support": Expect(stored="8944000000000004565", iccid="8944000000000004565"),
    "huawei-e397-swapped-iccid": Expect(stored="8901260000000001236", iccid="8901260000000001236"),
    "wavecom-cpin-without-ok": Expect(stored="8939100000000003210", iccid="8939100000000003210"),
    "zte-k3565z-only-cpin-while-locked": Expect(
        stored="89490000000000006541", exit=69, state=None, error="modem-unavailable", presented=0,
        message="answers nothing but AT+CPIN while the SIM is locked"),
    # Busy for about 11.7 s: longer than the default 10 s, so only this file raises the bound.
    "simcom-sim7600-sim-busy-over-10s": Expect(
        stored="89351000000000009879", modem="sim_ready_timeout = 14", iccid="89351000000000009879"),
    # Typed in lower case: the keystore keeps the canonical upper-case form.
    "quectel-ec25-cpin-ready-inside-reply": Expect(stored="898602f9091830030220", iccid="898602F9091830030220"),
    "motorola-quoted-cpin": Expect(stored="89490000000000006541", iccid="89490000000000006541"),
    "generic-cpinr-extra-rows": Expect(stored="89460000000000001115", iccid="89460000000000001115"),
    "telit-le910-verbose-wrong-pin": Expect(
        stored="89490000000000006541", exit=1, state="refused", reason="pin-rejected",
        iccid="89490000000000006541"),
    "ublox-sara-hex-iccid-pair": Expect(run="pair", iccid="898602C0123456789012"),
    "sierra-mc7455-sim-puk": Expect(
        stored="89490000000000006541", exit=1, state="refused", reason="sim-blocked", presented=0,
        iccid="89490000000000006541", message="asks for its PUK"),
    "quectel-m10-ph-sim-pin-underscore": Expect(
        stored="89490000000000006541", exit=1, state="refused", reason="sim-error", presented=0,
        message="SIM asks for PH-SIM PIN"),
    "cinterion-els61-sim-not-inserted": Expect(
        stored="89490000000000006541", exit=1, state="refused", reason="no-sim", presented=0),
}


def test_every_dialogue_file_has_a_case():
    files = {p.stem for p in DIALOGUES.glob("*.dialogue")}
    assert files == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gate_against_recorded_modem(gateway, name):
    expect = CASES[name]
    dialogue = load_dialogue(DIALOGUES / f"{name}.dialogue")
    assert dialogue.headers["source"] and dialogue.headers["vendor"]
    script = Script(dialogue)
    reported: list[str] = []
    with ReplayPtyServer(script, report=reported.append) as server:
        gateway.configure(server.port, modem=expect.modem)
        if expect.stored:
            gateway.store_pin(expect.stored)
        if expect.run == "once":
            run = gateway.mtcd("once", "--json")
        else:
            run = gateway.mtcctl("pair", "--json", "--yes", stdin=TEST_PIN + "\n")
    assert script.mismatches == [] and reported == [], run.stderr
    assert script.finished, f"mtcd stopped before the recording ended: {script.commands}"
    assert run.returncode == expect.exit, run.stderr
    report = run.last_json
    if expect.run == "once" and expect.state is not None:
        assert (report["state"], report["reason"]) == (expect.state, expect.reason)
        assert report["link"] == ("up" if expect.state == "paired" else "down")
        assert report["iccid"] == expect.iccid
    elif expect.run == "pair":
        assert report["ok"] and report["iccid"] == expect.iccid
        assert [str(i) for i in gateway.keystore().iccids()] == [expect.iccid]
    else:
        assert report["error"] == expect.error
    if expect.message:
        assert expect.message in report["message"]
    assert "Traceback" not in run.stderr
    if expect.exit:
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr  # one line for a person

    # Guarantee 1: a PIN only after the card said exactly SIM PIN, and only
    # once the ICCID it was stored for had been read from this card.
    sent = script.commands
    presentations = [i for i, c in enumerate(sent) if c in pin_presentations(sent)]
    assert len(presentations) == expect.presented
    for at in presentations:
        assert any(c.startswith(("AT+CRSM=176,12258", "AT+CCID", "AT^ICCID", "AT+QCCID", "AT#CCID"))
                   for c in sent[:at])
    assert lock_answer_before_each_presentation(dialogue, sent) == ["SIM PIN"] * expect.presented
    # Guarantee 2: never a PUK.
    assert puk_commands(sent) == []
    # Guarantee 3: on anything but a pairing, radio never on, no attach, no PDP, no dial.
    if expect.state != "paired" or expect.run != "once":
        assert network_commands(sent) == [] and not any(c.upper().startswith("ATD") for c in sent)
    # Guarantee 4: the PIN (echoed back by some modems) in no output or unsealed file.
    assert TEST_PIN not in run.stdout + run.stderr
    for path, data in gateway.every_state_file().items():
        assert TEST_PIN.encode() not in data, path


def lock_answer_before_each_presentation(dialogue, sent: list[str]) -> list[str]:
    """What the recorded modem last answered to AT+CPIN? before each PIN."""
    from mtcd.sim.replay import Output, Sent

    answers, last = [], None
    pending_cpin = False
    for event in dialogue.events:
        if isinstance(event, Sent):
            if event.text.startswith("AT+CPIN="):
                answers.append(last)
            pending_cpin = event.text == "AT+CPIN?"
        elif isinstance(event, Output) and pending_cpin and b"+CPIN:" in event.data:
            last = event.data.decode().split("+CPIN:", 1)[1].splitlines()[0].strip().strip('"')
    return answers


# --- the format and the replayer themselves ---------------------------------

MINIMAL = "#: vendor: test\n#: source: this test\n"


def test_placeholders_match_any_secret_and_the_echo_carries_it():
    script = Script(parse_dialogue(MINIMAL + '> AT+CPIN="<pin>"\n<~ AT+CPIN="<pin>"\\r\n< OK\n'))
    out = script.answer('AT+CPIN="27182818"')
    assert out == [b'AT+CPIN="27182818"\r', b"\r\nOK\r\n"]
    assert script.commands == ["AT+CPIN=<redacted>"] and script.finished


def test_a_mismatch_names_the_line_and_both_commands_never_the_secret():
    script = Script(parse_dialogue(MINIMAL + "> AT+CPIN?\n< OK\n", "x.dialogue"))
    assert script.answer('AT+CPIN="27182818"') == [b"\r\nERROR\r\n"]
    assert script.mismatches == ["x.dialogue:3: expected 'AT+CPIN?', got 'AT+CPIN=<redacted>'"]
    script = Script(parse_dialogue(MINIMAL + "> AT\n< OK\n", "x.dialogue"))
    script.answer("AT")
    script.answer("AT+CGSN")
    assert script.mismatches == ["x.dialogue: 'AT+CGSN' after the end of the dialogue"]


def test_pauses_raw_bytes_and_unsolicited_lines():
    script = Script(parse_dialogue(MINIMAL + "! RDY\n> AT\n@ 0.25\n<~ \\r\\r\\nOK\\r\\n\n! +CPIN: READY\n> AT\n<\n"))
    assert script.opening() == [b"\r\nRDY\r\n"]
    assert script.answer("AT") == [0.25, b"\r\r\nOK\r\n", b"\r\n+CPIN: READY\r\n"]
    assert script.answer("AT") == [b"\r\n\r\n"]


@pytest.mark.parametrize("text, problem", [
    ("> AT\n", "missing header source, vendor"),
    (MINIMAL, "no command"),
    (MINIMAL + "> AT\n#: model: late\n", ":4: header after the first event"),
    (MINIMAL + "AT\n", ":3: unknown event 'A'"),
    (MINIMAL + "> AT\n@ soon\n", ":4: '@' needs seconds"),
    (MINIMAL + "> AT\n@ 61\n", ":4: a pause is 0 to 60 seconds"),
    (MINIMAL + "> AT\n<~ \\xZZ\n", ":4: raw bytes"),
])
def test_bad_dialogue_files_are_named_with_their_line(text, problem):
    with pytest.raises(DialogueError, match=problem):
        parse_dialogue(text, "f.dialogue")


def test_mtcd_sim_replay_serves_a_file_to_the_real_mtcd(gateway, tmp_path):
    """The console script: the port on stdout, the recording answered,
    a command it does not expect reported on stderr in one line."""
    proc = subprocess.Popen([*sim_cli(), "replay", str(DIALOGUES / "generic-27007-baseline.dialogue")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = proc.stdout.readline().strip()
        gateway.configure(port)
        gateway.store_pin("8949020000000000014")
        run = gateway.mtcd("once", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stderr
        again = gateway.mtcd("once", "--json")  # the recording is over: nothing is expected
        assert again.returncode != 0
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert err.splitlines()[0] == ("mtcd-sim replay: " + str(DIALOGUES / "generic-27007-baseline.dialogue")
                                   + ": 'ATE0+CMEE=1' after the end of the dialogue")


def test_mtcd_sim_replay_rejects_a_bad_file_in_one_line(tmp_path):
    bad = tmp_path / "bad.dialogue"
    bad.write_text("> AT\n< OK\n")
    done = subprocess.run([*sim_cli(), "replay", str(bad)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 65
    assert done.stderr == f"mtcd-sim: {bad}: missing header source, vendor\n"


def test_a_recording_of_single_commands_refuses_a_concatenated_line():
    """Recorded one command a line, the modem is played as one that refuses
    several on one line: the host's concatenated line gets ERROR, is not a
    mismatch, and the recorded single commands follow."""
    script = Script(parse_dialogue("#: vendor: x\n#: source: y\n> ATE0\n< OK\n> AT+CMEE=1\n< OK\n"))
    assert script.answer("ATE0+CMEE=1") == [framed("ERROR")]
    assert script.answer("ATE0") == [framed("OK")]
    assert script.answer("AT+CMEE=1") == [framed("OK")]
    assert script.mismatches == [] and script.finished


def test_the_cards_pairing_record_reads_are_refused_not_mismatched():
    """No public recording has mtcd's read of EF-UST/EF-IPS by path; such a
    read is answered ERROR (mtcd journals the record as unreadable), while
    any other unexpected command is still a mismatch."""
    script = Script(parse_dialogue("#: vendor: x\n#: source: y\n> AT+CFUN=1\n< OK\n"))
    assert script.answer('AT+CRSM=192,28472,0,0,0,,"3F007FFF"') == [framed("ERROR")]
    assert script.answer("AT+CFUN=1") == [framed("OK")]
    assert script.answer('AT+CRSM=176,28472,0,0,13,,"3F007FFF"') == [framed("ERROR")]
    assert script.mismatches == []
    script.answer('AT+CRSM=214,28472,0,0,1,"00",,"3F007FFF"')  # an UPDATE BINARY is never played along
    assert len(script.mismatches) == 1
