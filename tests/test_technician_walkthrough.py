"""A new technician's walk through the README, as one scripted session.

Everything runs as a person or an agent would run it: `mtcd-sim serve` in its
own process with two rehearsal cards, `mtcd once`, `mtcctl` and the
simulator's control commands, every one with `--json`.  The autouse fixture
in conftest.py checks each JSON output against docs/json/; here each step
checks what it decided, and every refusal is answered only with the commands
its message names (between backquotes), which must then succeed.

The session: look (doctor), store and pair with a transport PIN mistyped
twice, recover with the commands the refusal names, rotate, swap in a second
SIM and back, pull the modem away and bring it back, forget the PIN.  At the
end no PIN or PUK appears in anything the session printed or journaled."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from simfixtures import TEST_IMSI, TEST_PIN, TEST_PUK, make_iccid, sim_cli, wait_until

from mtcd.sim import SimCard

B_TRANSPORT_PIN = "66203141"
B_PUK = "90817263"
MISTYPED = ("11112222", "22223333")
NAMED = re.compile(r"`((?:mtcctl|mtcd) [^`]*)`")


def named_commands(message: str) -> list[list[str]]:
    """The commands a message names, in order, without the program name's path."""
    return [shlex.split(text) for text in NAMED.findall(message)]


class Session:
    """The technician's terminal: every command run and what it printed."""

    def __init__(self, gateway, tmp_path: Path):
        self.gateway = gateway
        self.tmp = tmp_path
        self.link = tmp_path / "ttyMODEM"
        self.sim_socket = tmp_path / "sim.sock"
        self.card_a = tmp_path / "card-a.json"
        self.card_b = tmp_path / "card-b.json"
        self.iccid_a = make_iccid(41)
        self.iccid_b = make_iccid(42)
        self.printed: list[str] = []
        self.simulator: subprocess.Popen | None = None

    # -- the simulator, as the README shows it --------------------------------------
    def make_cards(self) -> None:
        for path, iccid, secrets in ((self.card_a, self.iccid_a, f"{TEST_PIN}\n{TEST_PUK}\n"),
                                     (self.card_b, self.iccid_b, f"{B_TRANSPORT_PIN}\n{B_PUK}\n")):
            made = subprocess.run([*sim_cli(), "card", "--state", str(path), "--iccid", iccid, "--imsi", TEST_IMSI],
                                  input=secrets, capture_output=True, text=True, timeout=20)
            assert made.returncode == 0, made.stderr

    def serve(self) -> None:
        self.simulator = subprocess.Popen(
            [*sim_cli(), "serve", "--state", str(self.card_a), "--link", str(self.link),
             "--control", str(self.sim_socket)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        port = self.simulator.stdout.readline().strip()
        assert port.startswith("/dev/"), self.simulator.stderr.read()
        wait_until(lambda: self.link.exists() and self.sim_socket.exists(), 10, "the simulator's link and socket")

    def stop_simulator(self) -> None:
        if self.simulator is None:
            return
        self.simulator.send_signal(signal.SIGTERM)
        out, err = self.simulator.communicate(timeout=20)
        self.printed += [out, err]
        assert self.simulator.returncode == 0, err
        self.simulator = None

    def sim(self, *args: str) -> dict:
        run = subprocess.run([*sim_cli(), *args, "--control", str(self.sim_socket), "--json"],
                             capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)

    # -- the gateway's commands -------------------------------------------------------
    def run(self, argv: list[str], stdin: str | None = None):
        program, *args = argv
        if "--json" not in args:
            args.append("--json")
        if program == "mtcd":
            result = self.gateway.mtcd(*args)
        else:
            result = self.gateway.mtcctl(*args, stdin=stdin, timeout=60)
        self.printed += [result.stdout, result.stderr]
        return result

    def expect(self, argv: list[str], code: int, stdin: str | None = None) -> dict:
        result = self.run(argv, stdin)
        assert result.returncode == code, f"{' '.join(argv)}: exit {result.returncode}\n{result.stdout}{result.stderr}"
        answer = result.last_json
        assert answer["ok"] is (code == 0), answer
        return answer

    def follow(self, message: str, inputs: dict[str, str]) -> None:
        """Run every command the message names, with what a person types for it
        (`inputs`: first words of the command -> its standard input) and
        `--yes`, as standard input is not a terminal; each must succeed."""
        commands = named_commands(message)
        assert commands, f"the refusal names no way out: {message}"
        for argv in commands:
            words = " ".join(argv[1:3])
            stdin = next((text for prefix, text in inputs.items() if words.startswith(prefix)), None)
            if argv[1:3] in (["pin", "try"], ["pin", "forget"]):
                argv = [*argv, "--yes"]
            answer = self.expect(argv, 0, stdin)
            assert answer["ok"], answer

    def radio_is_off_and_no_data(self) -> None:
        status = self.sim("status")
        assert (status["radio"], status["pdp"], status["attached"]) == ("off", "inactive", False), status


@pytest.fixture
def session(gateway, tmp_path):
    walk = Session(gateway, tmp_path)
    walk.make_cards()
    walk.serve()
    gateway.configure(str(walk.link))
    yield walk
    walk.stop_simulator()


def test_a_technician_walks_through_the_readme(session, gateway):
    s = session

    # 1. Look first: doctor names the unknown SIM and the commands for it.
    report = s.expect(["mtcctl", "doctor"], 1)
    assert report["error"] == "problems-found"
    unknown = next(p for p in report["problems"] if p["code"] == "unknown-sim")
    assert s.iccid_a in unknown["problem"]
    assert ["mtcctl", "pair"] in named_commands(unknown["next"])

    # 2. The gate refuses it, radio off, and names the same way in.
    refusal = s.expect(["mtcd", "once"], 1)
    assert (refusal["reason"], refusal["iccid"], refusal["link"]) == ("unknown-sim", s.iccid_a, "down")
    assert ["mtcctl", "pair"] in named_commands(refusal["message"])
    s.radio_is_off_and_no_data()

    # 3. The transport PIN mistyped twice: the card is left with one attempt.
    first = s.expect(["mtcctl", "pair"], 1, MISTYPED[0] + "\n")
    assert first["reason"] == "pin-rejected" and ["mtcctl", "pair"] in named_commands(first["message"])
    second = s.expect(["mtcctl", "pair"], 1, MISTYPED[1] + "\n")
    assert second["reason"] == "pin-rejected"
    assert s.sim("status")["pin_attempts"] == 1
    # Typing it right now is below the guard: refused, nothing presented.
    third = s.expect(["mtcctl", "pair"], 1, TEST_PIN + "\n")
    assert third["reason"] == "retry-guard"
    assert s.sim("status")["pin_attempts"] == 1
    assert named_commands(third["message"]) == named_commands(second["message"])

    # 4. Recover exactly as the refusal says: store the right transport PIN,
    #    then present it once on the last attempt, confirmed.
    s.follow(third["message"], {"pin set": TEST_PIN + "\n"})
    assert s.sim("status")["pin_attempts"] == 3 and s.sim("status")["pin_state"] == "READY"
    paired = s.expect(["mtcd", "once"], 0)
    assert (paired["state"], paired["iccid"], paired["link"]) == ("paired", s.iccid_a, "up")
    adopted_pin = SimCard.load(s.card_a).pin
    assert adopted_pin != TEST_PIN, "the transport PIN was not replaced on adoption"
    [entry] = s.expect(["mtcctl", "pin", "list"], 0)["pins"]
    assert (entry["iccid"], entry["transport"], entry["pending"]) == (s.iccid_a, False, None)

    # 5. Rotate.  Right after the adoption the card has not unlocked with its
    #    new PIN yet (only the modem's OK vouches for that change): refused,
    #    nothing sent.  Do what the refusal says: power-cycle the modem, then
    #    the command it names; the rotation then goes through, the card gets
    #    a new PIN, the gateway keeps pairing.
    waits = s.expect(["mtcctl", "pin", "rotate"], 1)
    assert "not proven yet" in waits["message"] and "power-cycle the modem" in waits["message"], waits
    assert SimCard.load(s.card_a).pin == adopted_pin
    s.sim("reset", "--down", "0.3")
    wait_until(s.link.exists, 10, "the modem back after its reset")
    s.follow(waits["message"], {})
    rotated = s.expect(["mtcctl", "pin", "rotate"], 0)
    assert rotated["iccid"] == s.iccid_a
    rotated_pin = SimCard.load(s.card_a).pin
    assert rotated_pin not in (adopted_pin, TEST_PIN)
    s.sim("reset", "--down", "0.3")
    wait_until(s.link.exists, 10, "the modem back after its reset")
    assert s.expect(["mtcd", "once"], 0)["state"] == "paired"

    # 6. Another SIM in the slot: refused by ICCID, never given a PIN, radio off.
    s.sim("swap-sim", "--card", str(s.card_b))
    foreign = s.expect(["mtcd", "once"], 1)
    assert (foreign["reason"], foreign["iccid"]) == ("unknown-sim", s.iccid_b)
    assert s.iccid_b in foreign["message"]
    s.radio_is_off_and_no_data()
    assert s.sim("status")["pin_attempts"] == 3
    #    It belongs here after all: adopt it with the command the refusal names.
    pair_b = [argv for argv in named_commands(foreign["message"]) if argv[1:] == ["pair"]]
    assert pair_b, foreign["message"]
    s.expect(pair_b[0], 0, B_TRANSPORT_PIN + "\n")
    assert s.expect(["mtcd", "once"], 0)["iccid"] == s.iccid_b
    #    And the first SIM back: its own PIN still pairs it.
    s.sim("pull-sim")
    s.sim("insert-sim", "--card", str(s.card_a))
    assert s.expect(["mtcd", "once"], 0)["iccid"] == s.iccid_a

    # 7. The modem pulled off the bus: one JSON error, exit 69, and doctor says so.
    s.stop_simulator()
    gone = s.expect(["mtcd", "once"], 69)
    assert gone["exit"] == 69 and gone["error"]
    report = s.expect(["mtcctl", "doctor"], 69)
    assert not report["modem"]["reachable"]
    assert [p["code"] for p in report["problems"]][:1] == ["port-missing"]
    #    Plugged back in: paired again without anyone typing anything.
    s.serve()
    assert s.expect(["mtcd", "once"], 0)["iccid"] == s.iccid_a

    # 8. Forget the PIN of the SIM that is in use: asked, then done, then refused.
    unconfirmed = s.expect(["mtcctl", "pin", "forget", s.iccid_a], 1)
    assert "--yes" in unconfirmed["message"]
    s.expect(["mtcctl", "pin", "forget", s.iccid_a, "--yes"], 0)
    assert s.expect(["mtcd", "once"], 1)["reason"] == "unknown-sim"
    s.radio_is_off_and_no_data()
    assert [p["iccid"] for p in s.expect(["mtcctl", "pin", "list"], 0)["pins"]] == [s.iccid_b]

    # The card was never blocked and never asked for its PUK.
    status = s.sim("status")
    assert (status["pin_attempts"], status["puk_attempts"]) == (3, 10)

    # The journal tells the story, in order (other records in between).
    story = [("pin-set", s.iccid_a), ("pin-attempt-rejected", s.iccid_a), ("pin-attempt-rejected", s.iccid_a),
             ("pin-try", s.iccid_a), ("pin-rotated", s.iccid_a), ("pin-rotated", s.iccid_a),
             ("decision", s.iccid_b), ("sim-adopted", s.iccid_b), ("pin-forgotten", s.iccid_a)]
    told = iter((record.get("event"), record.get("iccid")) for record in gateway.history())
    missing = [step for step in story if step not in told]  # `in` consumes the iterator: a subsequence
    assert missing == [], f"the journal lacks, in this order: {missing}"

    # No PIN or PUK in anything printed, nor in the journal.
    everything = "\n".join(s.printed) + json.dumps(gateway.history())
    for secret in (TEST_PIN, TEST_PUK, B_TRANSPORT_PIN, B_PUK, adopted_pin, rotated_pin, *MISTYPED,
                   SimCard.load(s.card_b).pin):
        assert secret not in everything
