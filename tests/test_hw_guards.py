"""The safety guards of hw-tests/, tested against the simulator: the real
hw-tests suite runs (as a separate pytest process) against a simulated
modem on a pty, with a card file like a bench's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from simfixtures import TEST_PIN, TEST_PUK, make_card, sim_modem

ROOT = Path(__file__).resolve().parent.parent
HW_TESTS = ROOT / "hw-tests"
# The simulated modem's port is away this long after each reset the
# destructive hw tests cause (the simulator's default is 1 s): the suite
# waits for it to come back either way.
RESET_DOWN = 0.2
EVENT = re.compile(r"^(#: [a-z]+: .*|# .*|> .+|< .*|<|<~ .*|@ [0-9]+\.[0-9]+|! .*|!)$")


def card_file(tmp_path: Path, card, mode: int = 0o600, pin: str = TEST_PIN, **extra) -> Path:
    path = tmp_path / "card.toml"
    text = f'pin = "{pin}"\npuk = "{TEST_PUK}"\niccid = "{card.iccid}"\n'
    text += "".join(f"{k} = {v}\n" for k, v in extra.items())
    path.write_text(text)
    os.chmod(path, mode)
    return path


def hw(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTCD", "PYTEST"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs", str(HW_TESTS), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def no_secret(done: subprocess.CompletedProcess) -> None:
    out = done.stdout + done.stderr
    assert TEST_PIN not in out and TEST_PUK not in out


def test_without_a_modem_everything_is_skipped_with_the_reason():
    done = hw()
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b(\d+) skipped\b", done.stdout) and " passed" not in done.stdout
    assert "no modem given (use --modem=/dev/ttyUSBn or make hw-test MODEM=...)" in done.stdout


@pytest.mark.parametrize("personality", [{}, {"has_cpinr": False}, {"vendor": "quectel", "has_cpinr": False},
                                         {"vendor": "huawei", "has_cpinr": False}, {"vendor": "simcom"}])
def test_a_full_card_runs_and_is_left_as_it_started(tmp_path, personality):
    card = make_card()
    with sim_modem(card, **personality) as (modem, port):
        done = hw(f"--modem={port}", f"--card={card_file(tmp_path, card)}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "spends PIN attempts or changes the PIN: run with --destructive" in done.stdout
    assert (card.pin, card.pin_attempts, card.puk_attempts, card.pin_enabled) == (TEST_PIN, 3, 10, True)
    assert not [c for c in modem.commands if c.startswith("AT+CLCK=\"SC\",0")]
    # Only where a verified card's counter cannot be read: the starting PIN proven (old = new).
    assert len([c for c in modem.commands if c.startswith("AT+CPWD")]) <= (personality == {"has_cpinr": False})
    no_secret(done)


@pytest.mark.parametrize("state, words", [
    ({"pin_attempts": 2}, "the card has 2 of 3 PIN and 10 of 10 PUK attempts left"),
    ({"puk_attempts": 9}, "the card has 3 of 3 PIN and 9 of 10 PUK attempts left"),
])
def test_a_card_without_full_counters_makes_the_suite_refuse_to_start(tmp_path, state, words):
    card = make_card(**state)
    with sim_modem(card) as (modem, port):
        done = hw(f"--modem={port}", f"--card={card_file(tmp_path, card)}", "--destructive")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "refusing to start" in done.stdout + done.stderr and words in done.stdout + done.stderr
    # Nothing but reads reached the card: no PIN, no PUK, no change.
    assert not [c for c in modem.commands if "<redacted>" in c or c.startswith(("AT+CPWD", "AT+CLCK=\"SC\",0"))]
    assert (card.pin_attempts, card.puk_attempts) == (state.get("pin_attempts", 3), state.get("puk_attempts", 10))
    no_secret(done)


def test_the_wrong_card_makes_the_suite_refuse_to_start(tmp_path):
    card, other = make_card(), make_card(serial_number=2)
    with sim_modem(card) as (modem, port):
        done = hw(f"--modem={port}", f"--card={card_file(tmp_path, other)}")
    assert done.returncode == 3 and f"the inserted card is {card.iccid}" in done.stdout + done.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o606])
def test_a_card_file_open_to_others_is_refused(tmp_path, mode):
    card = make_card()
    with sim_modem(card) as (modem, port):
        done = hw(f"--modem={port}", f"--card={card_file(tmp_path, card, mode)}")
    assert done.returncode == 4, done.stdout + done.stderr
    assert f"(mode {mode:04o}): chmod 600" in done.stdout + done.stderr
    assert modem.commands == []  # refused before the modem was opened
    no_secret(done)


def test_a_bad_card_file_says_what_without_the_values(tmp_path):
    card = make_card()
    path = tmp_path / "card.toml"
    path.write_text(f"pin = {TEST_PIN}\n")  # a number: leading zeros would be lost
    os.chmod(path, 0o600)
    with sim_modem(card) as (modem, port):
        done = hw(f"--modem={port}", f"--card={path}")
    assert done.returncode == 4 and "pin must be a quoted string of digits" in done.stdout + done.stderr
    no_secret(done)


SPOIL = '''
import serial


def test_spoils_the_card(request):
    """Spends one PIN attempt with a wrong PIN and leaves it so."""
    port = serial.Serial(request.config.getoption("--modem"), 115200, timeout=2)
    port.write(b'AT+CPWD="SC","0000","1111"\\r')
    port.read(64)
    port.close()
'''


def test_a_failed_restore_is_reported_loudly(tmp_path):
    spoil = tmp_path / "spoil" / "test_spoil.py"
    spoil.parent.mkdir()
    spoil.write_text(SPOIL)
    card = make_card()
    with sim_modem(card) as (modem, port):
        done = hw(f"--modem={port}", f"--card={card_file(tmp_path, card)}", str(spoil), "--rootdir", str(ROOT))
    out = done.stdout + done.stderr
    assert card.pin_attempts == 2  # the spoiler did spend it
    assert done.returncode == 1, out
    assert "FAILED hw-tests/test_zz_card_restored.py::test_card_back_as_it_started" in out
    assert "THE TEST SIM WAS NOT RESTORED" in out and "PIN attempts left: 2, 3 at the start" in out
    no_secret(done)


def test_a_failed_restore_is_reported_when_its_test_was_deselected(tmp_path):
    spoil = tmp_path / "spoil" / "test_spoil.py"
    spoil.parent.mkdir()
    spoil.write_text(SPOIL)
    card = make_card()
    with sim_modem(card) as (modem, port):
        done = hw(f"--modem={port}", f"--card={card_file(tmp_path, card)}", str(spoil), "--rootdir", str(ROOT),
                  "-k", "spoils")
    out = done.stdout + done.stderr
    assert done.returncode == 1 and "THE TEST SIM WAS NOT RESTORED" in out, out


def test_destructive_tests_put_the_card_back(tmp_path):
    card = make_card()
    with sim_modem(card) as (modem, port):
        modem.reset_down = RESET_DOWN
        done = hw(f"--modem={port}", f"--card={card_file(tmp_path, card)}", "--destructive", "-rA")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "SKIPPED [1] hw-tests/test_destructive.py" not in out  # none skipped
    # The modem reset in the middle of the gateway's own AT+CPWD, both ways.
    for way in ("card-changed", "card-not-changed"):
        assert f"PASSED hw-tests/test_destructive.py::test_rotation_interrupted_by_a_modem_reset_recovers[{way}]" in out
    assert any(c.startswith("AT+CPWD") for c in modem.commands) and "AT+CFUN=1,1" in modem.commands
    assert (card.pin, card.pin_attempts, card.puk_attempts, card.pin_enabled) == (TEST_PIN, 3, 10, True)
    no_secret(done)


def test_record_writes_redacted_dialogues(tmp_path):
    card = make_card()
    record = tmp_path / "dialogues"
    with sim_modem(card, vendor="quectel") as (modem, port):
        modem.reset_down = RESET_DOWN
        done = hw(f"--modem={port}", f"--card={card_file(tmp_path, card)}", "--destructive", f"--record={record}")
    assert done.returncode == 0, done.stdout + done.stderr
    files = {p.name: p.read_text() for p in record.glob("*.dialogue")}
    assert {"session-start.dialogue", "session-end.dialogue", "test_the_right_sim_is_paired.dialogue",
            "test_rotation_interrupted_by_a_modem_reset_recovers_card-changed.dialogue"} <= set(files)
    everything = "".join(files.values())
    assert TEST_PIN not in everything and TEST_PUK not in everything
    for name, text in files.items():
        lines = text.splitlines()
        assert "#: source: bench " in text and "#: vendor: Quectel" in text, name
        assert all(EVENT.match(line) for line in lines), [line for line in lines if not EVENT.match(line)]
        headers = [i for i, line in enumerate(lines) if line.startswith("#:")]
        events = [i for i, line in enumerate(lines) if not line.startswith("#")]
        assert not events or max(headers) < min(events), name  # headers before the first event
    assert '> AT+CPIN="<pin>"' in everything and "< +CPIN: SIM PIN" in everything
    assert "> AT+CPIN?" in files["test_the_right_sim_is_paired.dialogue"]
    rotated = files["test_rotation_interrupted_by_a_modem_reset_recovers_card-changed.dialogue"]
    assert '> AT+CPWD="SC","<pin>","<newpin>"' in rotated and "> AT+CFUN=1,1" in rotated
    no_secret(done)


def test_record_redacts_every_secret_form():
    sys.path.insert(0, str(HW_TESTS))
    try:
        from dialogue import redact_command, scrub
    finally:
        sys.path.remove(str(HW_TESTS))
    assert redact_command('AT+CPIN="1234"')[0] == 'AT+CPIN="<pin>"'
    assert redact_command('AT+CPIN="12345678","4321"')[0] == 'AT+CPIN="<puk>","<newpin>"'
    assert redact_command('AT+CPWD="SC","1234","5678"')[0] == 'AT+CPWD="SC","<pin>","<newpin>"'
    assert redact_command('AT+CLCK="SC",1,"1234"')[0] == 'AT+CLCK="SC",1,"<pin>"'
    assert redact_command('AT+CSIM=26,"002000010831323334FFFFFFFF"')[0] == 'AT+CSIM=26,"0020000108<pin>"'
    unblock = 'AT+CSIM=42,"002C000110' + "3132333435363738" + "35363738FFFFFFFF" + '"'
    assert redact_command(unblock)[0] == 'AT+CSIM=42,"002C000110<puk><newpin>"'
    assert redact_command('AT+CSIM=10,"002C000100"')[0] == 'AT+CSIM=10,"002C000100"'  # a bare counter query
    assert redact_command("AT+CPIN?")[0] == "AT+CPIN?" and redact_command('AT+CLCK="SC",2')[0] == 'AT+CLCK="SC",2'
    secrets = dict((v, n) for v, n in redact_command('AT+CPWD="SC","1234","5678"')[1])
    # A modem repeating a secret has it replaced; the same digits inside an IMEI stay.
    assert scrub("+CPIN: 5678", secrets) == "+CPIN: <newpin>"
    assert scrub("359999012345678", secrets) == "359999012345678"


def test_dialogue_format_is_the_shared_text():
    text = (ROOT / "docs" / "dialogue-format.md").read_text()
    assert text.startswith("# mtcd dialogue file format, version 1")
    for needle in ('`> AT+CPIN="<pin>"`', "`<~ \\r\\r\\n`", "`bench <date>`", "A mismatch is a"):
        assert needle in text or needle.replace("`", "") in text
