"""The pairing gate and the PIN lifecycle over the APDU backends: `csim`
(APDUs through the simulator's AT+CSIM) and `pcsc` (a real pcscd with
vpcd's reader and the virtual USIM of tests/vusim.py, private to each
test).  Every scenario is one of the AT path's, run with the real mtcd and
mtcctl commands; the card's own log and memory say what reached it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pcscstack import APDU_BACKENDS, PcscStack, apdu_backend
from simfixtures import TEST_PIN, TEST_PUK, make_card, make_iccid, sim_modem

NEW_PIN = "24681357"


def _ins_of_csim(command: str) -> tuple[str, bool] | None:
    """(INS, carries data) of a logged AT+CSIM, None for other commands."""
    if not command.startswith("AT+CSIM="):
        return None
    hexapdu = command.split('"')[1]
    return hexapdu[2:4], len(hexapdu) > 10 or "<redacted>" in command


class Bench:
    """One gateway with its modem and the card under test, whichever way it is reached."""

    def __init__(self, backend, gateway, modem, card, stack=None):
        self.backend, self.gateway, self.modem, self.card, self.stack = backend, gateway, modem, card, stack

    def state(self) -> dict:
        if self.stack is not None:
            return self.stack.state()
        c = self.card
        return {"pin": c.pin, "pin_attempts": c.pin_attempts, "puk_attempts": c.puk_attempts,
                "pin_enabled": c.pin_enabled}

    def pin_commands(self) -> list[str]:
        """INS of each PIN command that carried a PIN or PUK to the card."""
        if self.stack is not None:
            return [e["ins"] for e in self.stack.pin_commands()]
        out = []
        for command in self.modem.commands:
            seen = _ins_of_csim(command)
            if seen and seen[0] in ("20", "24", "26", "28", "2C") and seen[1]:
                out.append(seen[0])
        return out

    def power_cycle(self) -> None:
        if self.stack is not None:
            self.stack.pull_and_reinsert()
        else:
            self.modem.power_loss()

    def no_secret_anywhere(self, *runs, secrets=(TEST_PIN, TEST_PUK)) -> None:
        """Guard 4 on this path: not in the commands' output, the card's log or pcscd's."""
        texts = [r.stdout + r.stderr for r in runs]
        if self.stack is not None:
            texts += [self.stack.log.read_text(), self.stack.pcscd_log.read_text()]
        for secret in secrets:
            for text in texts:
                assert secret not in text
                assert secret.encode().hex() not in text.lower()


@pytest.fixture(params=APDU_BACKENDS)
def backend(request):
    return apdu_backend(request)


@pytest.fixture
def bench(backend, gateway, tmp_path, monkeypatch):
    @contextlib.contextmanager
    def make(card, *, policy="", vusim_args=()):
        if backend == "csim":
            with sim_modem(card) as (modem, port):
                gateway.configure(port, policy=policy)
                with open(gateway.config, "a") as f:
                    f.write('[uicc]\nbackend = "csim"\n')
                yield Bench(backend, gateway, modem, card)
            return
        # The modem keeps its own (PIN-less) SIM for the data link; the card
        # under test is the one in the PC/SC reader.  A modem with SIM-state
        # URCs: they must not stand in for checks of the reader's card.
        with PcscStack(tmp_path / "pcsc", card, vusim_args=vusim_args) as stack, \
                sim_modem(make_card(serial_number=99, pin_enabled=False), vendor="simcom") as (modem, port):
            monkeypatch.setenv("PCSCLITE_CSOCK_NAME", str(stack.socket))
            gateway.configure(port, policy=policy)
            with open(gateway.config, "a") as f:
                f.write('[uicc]\nbackend = "pcsc"\n')
            yield Bench(backend, gateway, modem, card, stack)
    return make


def test_right_sim_pairs(bench):
    card = make_card()
    with bench(card) as b:
        b.gateway.store_pin(str(card.iccid))
        run = b.gateway.mtcd("once", "--json")
        assert run.returncode == 0, run.stderr
        assert run.last_json["state"] == "paired" and run.last_json["iccid"] == str(card.iccid)
        assert b.pin_commands() == ["20"] and b.state()["pin_attempts"] == 3
        doctor = b.gateway.mtcctl("doctor", "--json")
        facts = json.loads(doctor.stdout)["modem"]
        assert facts["iccid"] == str(card.iccid) and facts["pin_enabled"] is True
        assert facts["puk_attempts"] == 10
        b.no_secret_anywhere(run, doctor)
        # The card's pairing record is read from the card the decision was
        # about, the way it is reached: never through the modem's own slot
        # (AT+CRSM) when that card is in a reader.
        [record] = [e for e in b.gateway.history() if e["event"] == "card-record"]
        assert record["card_service"] == "not-available", record  # this card has no service n°102
        assert not any(c.startswith("AT+CRSM") for c in b.modem.commands)


def test_foreign_sim_refused(bench):
    card = make_card()
    with bench(card) as b:
        b.gateway.store_pin(make_iccid(2))
        run = b.gateway.mtcd("once", "--json")
        assert run.last_json["state"] == "refused" and run.last_json["reason"] == "unknown-sim"
        assert b.pin_commands() == [] and b.state()["pin_attempts"] == 3
        assert b.modem.radio != 1


def test_wrong_stored_pin_is_presented_once_then_never_again(bench):
    card = make_card()
    with bench(card) as b:
        b.gateway.store_pin(str(card.iccid), "11112222")
        first = b.gateway.mtcd("once", "--json")
        assert first.last_json["reason"] == "pin-rejected"
        assert b.pin_commands() == ["20"] and b.state()["pin_attempts"] == 2
        b.power_cycle()
        second = b.gateway.mtcd("once", "--json")
        assert second.last_json["reason"] == "pin-rejected"
        assert b.pin_commands() == ["20"] and b.state()["pin_attempts"] == 2  # never again
        b.no_secret_anywhere(first, second, secrets=(TEST_PIN, "11112222"))


def test_retry_guard_respected(bench):
    card = make_card(pin_attempts=1)
    with bench(card) as b:
        b.gateway.store_pin(str(card.iccid))
        run = b.gateway.mtcd("once", "--json")
        assert run.last_json["reason"] == "retry-guard" and run.last_json["pin_retries"] == 1
        assert b.pin_commands() == [] and b.state()["pin_attempts"] == 1


def test_pin_disabled_refused(bench):
    card = make_card(pin_enabled=False)
    with bench(card) as b:
        b.gateway.store_pin(str(card.iccid))
        run = b.gateway.mtcd("once", "--json")
        assert run.last_json["state"] == "refused" and run.last_json["reason"] == "pin-disabled"
        assert b.pin_commands() == []


def test_card_swapped_between_read_and_verify_gets_no_pin(bench, backend):
    card, other = make_card(), make_card(serial_number=2)
    vusim_args = ("--pull-after-iccid-reads", "1", "--pull-for", "1.5")
    with bench(card, vusim_args=vusim_args) as b:
        b.gateway.store_pin(str(card.iccid))
        b.gateway.store_pin(str(other.iccid))
        if backend == "csim":
            # The modem's slot: another card the moment the ICCID was read,
            # with no word of it (as a modem without SIM-state URCs).
            handle, swapped = b.modem.handle, []

            def handle_then_swap(line):
                reply = handle(line)
                if line.upper().startswith('AT+CSIM=10,"00B0') and not swapped:
                    swapped.append(line)
                    with b.modem._lock:
                        other.power_cycle()
                        b.modem.card = other
                return reply
            b.modem.handle = handle_then_swap
        run = b.gateway.mtcd("once", "--json")
        assert b.state()["pin_attempts"] == 3
        if backend == "csim":
            # Seen at the last look before the VERIFY: nothing went to the
            # first card; the gate read the slot again and paired the card
            # now in it with that card's own PIN, read for its own ICCID.
            assert run.returncode == 0 and run.last_json["iccid"] == str(other.iccid), run.stdout + run.stderr
            assert b.pin_commands() == ["20"] and other.pin_attempts == 3
            swap_at = b.modem.commands.index(swapped[0])
            verify_at = next(i for i, c in enumerate(b.modem.commands) if (_ins_of_csim(c) or ("", ""))[0] == "20"
                             and _ins_of_csim(c)[1])
            assert any(c.upper().startswith('AT+CSIM=10,"00B0') for c in b.modem.commands[swap_at + 1:verify_at])
            with b.modem._lock:  # the first card back for the way-out check below
                card.power_cycle()
                b.modem.card = card
        else:
            # PC/SC ends the card session; whatever this run did next, a PIN
            # only went to the card inserted again, after its ICCID was read anew.
            entries = b.stack.entries()
            pulled = next(i for i, e in enumerate(entries) if e.get("event") == "pulled")
            for i, e in enumerate(entries):
                if e.get("ins") == "20" and e.get("lc"):
                    assert i > pulled and any(x.get("ins") == "B0" for x in entries[pulled:i]), entries
        if backend == "pcsc":
            deadline = time.monotonic() + 10
            while [e.get("event") for e in b.stack.entries()].count("inserted") < 2:
                assert time.monotonic() < deadline, "the card never came back"
                time.sleep(0.05)
            b.stack.wait_for_card()
        # The way out: the next run pairs (the card back, or the other one).
        again = b.gateway.mtcd("once", "--json")
        assert again.returncode == 0 and again.last_json["state"] == "paired", again.stdout + again.stderr
        # One VERIFY with a PIN per pairing (over csim two: the other card's, then this one's).
        assert b.pin_commands() == ["20"] * (2 if backend == "csim" else 1) and b.state()["pin_attempts"] == 3


def test_pin_rotate_interrupted_recovers(bench, backend):
    card = make_card()
    with bench(card, vusim_args=("--stall-ins", "24", "--stall-for", "3")) as b:
        b.gateway.store_pin(str(card.iccid))
        assert b.gateway.mtcd("once", "--json").last_json["state"] == "paired"
        if backend == "csim":
            b.modem.fail_after('AT+CSIM=42,"0024', "drop")  # the card changes its PIN; the answer is lost
        proc = subprocess.Popen([sys.executable, "-m", "mtcd.cli.ctl", "--config", str(b.gateway.config), "pin",
                                 "rotate"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=b.gateway.env)
        deadline = time.monotonic() + 30
        while "24" not in b.pin_commands() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)  # the gateway's power is cut mid-change
        proc.wait()
        assert "24" in b.pin_commands(), "CHANGE PIN never reached the card"
        entry = b.gateway.keystore().get(card.iccid)
        assert entry.pending_pin is not None and b.state()["pin"] == entry.pending_pin.reveal()
        b.power_cycle()
        run = b.gateway.mtcd("once", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stdout + run.stderr
        entry = b.gateway.keystore().get(card.iccid)
        assert entry.pin.reveal() == b.state()["pin"] and entry.pending_pin is None
        assert b.state()["pin_attempts"] == 3
        b.no_secret_anywhere(run, secrets=(TEST_PIN, b.state()["pin"]))


def test_a_change_said_done_that_the_card_never_made_loses_no_pin(bench, backend):
    """CHANGE REFERENCE DATA answered 9000 (the modem's +CSIM, or the
    reader) and never carried out: the counter does not move, so the
    rotation settles it as done and keeps the old PIN as the sealed
    fallback; the next boot presents the new PIN, the card refuses it, the
    fallback pairs (tests/test_chained_fallback.py has every step)."""
    card = make_card()
    with bench(card, vusim_args=("--swallow-ins", "24")) as b:
        b.gateway.store_pin(str(card.iccid))
        assert b.gateway.mtcd("once", "--json").last_json["state"] == "paired"
        if backend == "csim":
            b.modem.fail_after('AT+CSIM=42,"0024', "unsent")
        rotate = b.gateway.mtcctl("pin", "rotate")
        assert rotate.returncode == 0, rotate.stdout + rotate.stderr
        assert b.state()["pin"] == TEST_PIN  # the card never changed
        entry = b.gateway.keystore().get(card.iccid)
        assert entry.fallback_pin.reveal() == TEST_PIN and entry.pending_pin is None
        new = entry.pin.reveal()
        b.power_cycle()
        run = b.gateway.mtcd("once", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stdout + run.stderr
        entry = b.gateway.keystore().get(card.iccid)
        assert entry.pin.reveal() == TEST_PIN and entry.fallback_pin is None and not entry.rejected
        assert b.state()["pin_attempts"] == 3
        assert b.pin_commands()[-2:] == ["20", "20"]  # the new PIN, refused, then the fallback
        b.no_secret_anywhere(rotate, run, secrets=(TEST_PIN, new))


def test_sim_unblock_with_a_puk_from_a_person(bench):
    card = make_card(pin_attempts=0)
    with bench(card) as b:
        b.gateway.store_pin(str(card.iccid))
        refused = b.gateway.mtcd("once", "--json")
        assert refused.last_json["reason"] == "sim-blocked"
        assert "2C" not in b.pin_commands()  # the service never sends a PUK
        run = b.gateway.mtcctl("sim", "unblock", stdin=f"{TEST_PUK}\n{NEW_PIN}\n")
        assert run.returncode == 0, run.stderr
        assert b.pin_commands() == ["2C"]
        state = b.state()
        assert state["pin"] == NEW_PIN and state["pin_attempts"] == 3 and state["puk_attempts"] == 10
        b.power_cycle()
        paired = b.gateway.mtcd("once", "--json")
        assert paired.last_json["state"] == "paired", paired.stdout + paired.stderr
        b.no_secret_anywhere(refused, run, paired, secrets=(TEST_PUK, NEW_PIN))


@pytest.mark.parametrize("pin_enabled", [True, False])
def test_pair_adopts_a_sim_with_its_transport_pin(bench, pin_enabled):
    transport = "80246913"
    card = make_card(pin=transport, pin_enabled=pin_enabled)
    with bench(card) as b:
        run = b.gateway.mtcctl("pair", "--json", stdin=transport + "\n")
        assert run.returncode == 0, run.stdout + run.stderr
        assert json.loads(run.stdout)["outcome"] == "done"
        state = b.state()
        assert state["pin_enabled"] and state["pin"] != transport and len(state["pin"]) == 8
        # VERIFY (or ENABLE, for a disabled PIN), then CHANGE: each once.
        assert b.pin_commands() == (["20", "24"] if pin_enabled else ["28", "24"])
        entry = b.gateway.keystore().get(card.iccid)
        assert entry.pin.reveal() == state["pin"] and not entry.transport
        b.power_cycle()
        assert b.gateway.mtcd("once", "--json").last_json["state"] == "paired"
        b.no_secret_anywhere(run, secrets=(transport, state["pin"]))


def test_service_pairs_again_after_the_card_was_power_cycled(bench, notify_socket):
    from test_service import service

    card = make_card()
    with bench(card) as b:
        b.gateway.store_pin(str(card.iccid))
        with service(b.gateway, notify_socket):
            ready = notify_socket.wait_for("READY", "1")
            assert ready["STATUS"].startswith(f"paired ICCID {card.iccid}")
            # doctor through the service: the card asked over the service's own channel.
            facts = json.loads(b.gateway.mtcctl("doctor", "--json").stdout)["modem"]
            assert facts["via"] == "service" and facts["iccid"] == str(card.iccid)
            # Verified: the card tells no PIN count (9000), and none is made up.
            assert facts["pin_enabled"] is True and facts["pin_attempts"] is None
            assert "not told" in facts["unreadable"]["pin_attempts"]
            start = len(notify_socket.messages)
            b.power_cycle()  # the card forgets its verification: it asks for its PIN again
            deadline = time.monotonic() + 30
            while len(b.pin_commands()) < 2:
                assert time.monotonic() < deadline, "the service never noticed the card's power cycle"
                time.sleep(0.1)
            notify_socket.wait_until(lambda m: m.get("STATUS", "").startswith(f"paired ICCID {card.iccid}"),
                                     start=start, what="paired again")
            assert b.pin_commands() == ["20", "20"] and b.state()["pin_attempts"] == 3
