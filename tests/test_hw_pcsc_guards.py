"""The safety guards of hw-tests/ on the PC/SC path: the real hw-tests suite
runs (as a separate pytest process) against a private pcscd with vpcd's
reader and the virtual USIM (mtcd.sim.pcscstack), with a card file like a
bench's, and a simulated modem for the IMEI where `mtcd once` needs one.
The card's own log and memory say what reached it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from pcscstack import PcscStack, missing
from simfixtures import TEST_PIN, TEST_PUK, make_card, make_imei, sim_modem
from test_hw_guards import EVENT, HW_TESTS, ROOT, card_file

from mtcd.identity import Imei
from mtcd.pairing_record import SERVICE_USAT_PAIRING, Verdict, encode_ipd_record, encode_ips_record, encode_ust

READER = "--reader=mtcd virtual reader 00 00"
NOT_RESTORED = "THE TEST SIM IN THE PC/SC READER WAS NOT RESTORED"


@pytest.fixture
def stack(tmp_path):
    """stack(card, **options): the private PC/SC stack holding `card`."""
    if why := missing():
        pytest.fail(f"the PC/SC stack is not available: {why}")  # never skipped: `make deps` installs it

    def make(card, **options):
        return PcscStack(tmp_path / "pcsc", card, **options)
    return make


def hw(stack: PcscStack, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTCD", "PYTEST", "PCSCLITE"))}
    env.update(stack.env)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", str(HW_TESTS),
                           READER, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def the_modem(slot: str = "own-sim"):
    """The modem that gives the IMEI: its own SIM, PIN-less, is not the test
    SIM; or its slot is empty (a board whose UICC hangs off the reader)."""
    card = make_card(serial_number=99, pin_enabled=False) if slot == "own-sim" else None
    return sim_modem(card, vendor="simcom")


def no_secret(stack: PcscStack, done: subprocess.CompletedProcess, secrets=(TEST_PIN, TEST_PUK)) -> None:
    texts = [done.stdout + done.stderr, stack.log.read_text(), stack.pcscd_log.read_text()]
    for secret in secrets:
        for text in texts:
            assert secret not in text and secret.encode().hex() not in text.lower()


def outcomes(done: subprocess.CompletedProcess, word: str) -> set[str]:
    """The names of the hw tests the summary lists as PASSED (or SKIPPED...)."""
    return set(re.findall(rf"^{word} \S*::(\w+)", done.stdout, re.M))


def skipped(done: subprocess.CompletedProcess) -> str:
    return "\n".join(line for line in done.stdout.splitlines() if line.startswith("SKIPPED"))


def test_pcsc_a_full_card_runs_and_is_left_as_it_started(tmp_path, stack):
    card = make_card()
    with stack(card) as pcsc, the_modem() as (modem, port):
        done = hw(pcsc, f"--modem={port}", f"--card={card_file(tmp_path, card)}")
        state = pcsc.state()
        verify = [e for e in pcsc.pin_commands()]
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    # Every PC/SC test ran but the destructive one; the AT tests that need the card are left to an AT session.
    assert {"test_pcsc_identities", "test_pcsc_pin_state_and_counters_spend_nothing",
            "test_pcsc_pairing_decision_for_the_right_sim", "test_pcsc_foreign_card_is_refused_with_nothing_presented",
            "test_pcsc_pairing_record", "test_pcsc_card_back_as_it_started",
            "test_card_back_as_it_started"} <= outcomes(done, "PASSED"), out
    assert "spends PIN attempts or changes the PIN: run with --destructive" in out
    assert "with --reader the card file is the reader's card: the modem's SIM is only read" in out
    assert (state["pin"], state["pin_attempts"], state["puk_attempts"], state["pin_enabled"]) == (TEST_PIN, 3, 10, True)
    # One VERIFY with the PIN (the right SIM's pairing); nothing else carried a secret.
    assert [e["ins"] for e in verify] == ["20"]
    assert not [c for c in modem.commands if "<redacted>" in c]  # the modem's own SIM was never presented a PIN
    no_secret(pcsc, done)


@pytest.mark.parametrize("state, words", [
    ({"pin_attempts": 2}, "the card has 2 of 3 PIN and 10 of 10 PUK attempts left"),
    ({"puk_attempts": 9}, "the card has 3 of 3 PIN and 9 of 10 PUK attempts left"),
])
def test_pcsc_a_card_without_full_counters_makes_the_suite_refuse_to_start(tmp_path, stack, state, words):
    card = make_card(**state)
    with stack(card) as pcsc:
        done = hw(pcsc, f"--card={card_file(tmp_path, card)}", "--destructive")
        after, secrets_sent = pcsc.state(), pcsc.pin_commands()
    out = done.stdout + done.stderr
    assert done.returncode == 3, out
    assert "refusing to start: PC/SC reader 'mtcd virtual reader 00 00'" in out and words in out
    assert secrets_sent == []  # only reads reached the card: no PIN, no PUK, no change
    assert (after["pin_attempts"], after["puk_attempts"]) == (state.get("pin_attempts", 3),
                                                              state.get("puk_attempts", 10))
    no_secret(pcsc, done)


def test_pcsc_the_wrong_card_makes_the_suite_refuse_to_start(tmp_path, stack):
    card, other = make_card(), make_card(serial_number=2)
    with stack(card) as pcsc:
        done = hw(pcsc, f"--card={card_file(tmp_path, other)}", "--destructive")
        secrets_sent = pcsc.pin_commands()
    assert done.returncode == 3 and f"the inserted card is {card.iccid}" in done.stdout + done.stderr
    assert secrets_sent == []


@pytest.mark.parametrize("modem_slot", ["own-sim", "empty", None], ids=["gateway-rotation", "modem-slot-empty",
                                                                       "reader-only"])
def test_pcsc_a_destructive_run_leaves_the_card_at_its_starting_pin(tmp_path, stack, modem_slot):
    card = make_card()
    with stack(card) as pcsc, the_modem(modem_slot or "empty") as (modem, port):
        args = [f"--modem={port}"] if modem_slot else []
        done = hw(pcsc, *args, f"--card={card_file(tmp_path, card)}", "--destructive")
        state, changes = pcsc.state(), [e for e in pcsc.pin_commands() if e["ins"] == "24"]
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert {"test_pcsc_rotation_ends_at_the_starting_pin", "test_pcsc_card_back_as_it_started"} <= \
        outcomes(done, "PASSED"), out
    # The change, the restore, and the starting PIN proven at the end (old = new).
    assert len(changes) == 3, changes
    assert (state["pin"], state["pin_attempts"], state["puk_attempts"], state["pin_enabled"]) == (TEST_PIN, 3, 10, True)
    no_secret(pcsc, done)


def test_pcsc_a_failed_restore_is_reported_loudly(tmp_path, stack):
    """The virtual card takes the rotation's CHANGE REFERENCE DATA and
    refuses every later one (6F00): the restore fails.  The suite fails,
    says so in its banner, and spends no attempt proving a PIN the card
    is known not to hold."""
    card = make_card()
    with stack(card, vusim_args=("--refuse-ins", "24", "--refuse-after", "1")) as pcsc:
        done = hw(pcsc, f"--card={card_file(tmp_path, card)}", "--destructive")
        state, commands = pcsc.state(), pcsc.pin_commands()
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "FAILED hw-tests/test_zz_card_restored.py::test_pcsc_card_back_as_it_started" in out
    assert NOT_RESTORED in out and "the card did not take back its starting PIN (unknown)" in out
    assert state["pin"] != TEST_PIN and state["pin_attempts"] == 3  # the rotated PIN, no attempt spent
    # The PIN to unlock, the change, the refused restore; no proof tried.
    assert [e["ins"] for e in commands] == ["20", "24", "24"]
    no_secret(pcsc, done, secrets=(TEST_PIN, TEST_PUK, state["pin"]))


def test_pcsc_a_failed_restore_is_reported_when_its_test_was_deselected(tmp_path, stack):
    card = make_card()
    with stack(card, vusim_args=("--refuse-ins", "24", "--refuse-after", "1")) as pcsc:
        done = hw(pcsc, f"--card={card_file(tmp_path, card)}", "--destructive", "-k", "rotation")
    out = done.stdout + done.stderr
    assert done.returncode == 1 and NOT_RESTORED in out, out


def test_pcsc_the_cards_pairing_record_is_read_through_the_reader(tmp_path, stack):
    imei = Imei(make_imei(5))
    files = {
        "6F38": encode_ust({SERVICE_USAT_PAIRING}).hex(),
        "6FF1": [encode_ips_record(Verdict.OK, 1).hex(), encode_ips_record(Verdict.KO, 1).hex(), "FFFFFFFF"],
        "6FF2": [encode_ipd_record(imei).hex()],
    }
    card = make_card()
    with stack(card, files=files) as pcsc:
        done = hw(pcsc, f"--card={card_file(tmp_path, card)}", "-k", "pairing_record")
        secrets_sent = pcsc.pin_commands()
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "the card's pairing record: latest OK" in out and f"IMEI {imei.value}" in out, out
    assert "2 pairings recorded (1 OK, 1 KO)" in out
    assert secrets_sent == []


def test_pcsc_record_writes_the_at_side_with_no_pin_or_puk(tmp_path, stack):
    """`--record DIR` on a PC/SC session: the AT side (the modem that gives
    the IMEI) is written in the dialogue format, and neither the reader
    card's PIN nor its PUK ever crosses it."""
    card = make_card()
    record = tmp_path / "dialogues"
    with stack(card) as pcsc, the_modem() as (modem, port):
        done = hw(pcsc, f"--modem={port}", f"--card={card_file(tmp_path, card)}", "--destructive",
                  f"--record={record}")
    assert done.returncode == 0, done.stdout + done.stderr
    files = {p.name: p.read_text() for p in record.glob("*.dialogue")}
    assert {"session-start.dialogue", "session-end.dialogue", "test_pcsc_rotation_ends_at_the_starting_pin.dialogue",
            "test_pcsc_pairing_decision_for_the_right_sim.dialogue"} <= set(files), sorted(files)
    everything = "".join(files.values())
    assert TEST_PIN not in everything and TEST_PUK not in everything
    assert "AT+CPIN=" not in everything and "AT+CPWD" not in everything  # the reader's card is not the modem's
    for name, text in files.items():
        assert all(EVENT.match(line) for line in text.splitlines()), name
    no_secret(pcsc, done)
