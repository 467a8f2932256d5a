"""Soak: boot, SIM swap, wrong SIM, modem reset and power-cut cycles against
the simulator, with random timing and random concurrent `mtcctl` commands,
and the guarantees checked after every cycle.

    python tests/soak.py --cycles 200 [--seed N] [--mode once|service|both]

`make soak` runs SOAK_CYCLES (default 10000) of it; tests/test_soak.py runs
a few cycles in `make test`.  Every progress line carries the seed and the
cycle number; `--seed S --start N` runs the same schedule from cycle N on (a
fresh gateway, so state carried over from earlier cycles is not replayed,
and the processes' own interleaving is the machine's, not the seed's).

What the soak does on purpose, and what it never does:
- `mtcctl sim unblock` is never sent: the only PUK command is a person's.
  A SIM the gateway blocked is a fault in itself, so no step needs a PUK.
- The one person step is `mtcctl pin try --below-guard [--last-attempt]
  --yes` with the card's right PIN stored, taken between cycles when the
  card has fewer attempts left than the guard (wrong PINs stored by the
  random `pin set`s cost attempts legitimately).  Presentations inside it
  are exempt from the guard check, nothing else is.
- A lying change: a `pin rotate` whose AT+CPWD the modem answers OK and
  never passes to the card (the simulator's `unsent` fault), then the modem
  loses power.  The gateway must pair again by itself, before any person
  step: the PIN the card still holds is kept as the fallback.
- A power cut kills every gateway process (`mtcd` and any `mtcctl`) with
  SIGKILL, at a random time or right at a command carrying a PIN (the card
  acts on it or not, its answer lost), and power-losses the modem.

The checks come from the simulator's side (it sees every command before
redaction and the card's counters around it) and from the state directory.
A network command that reaches a card swapped in (or a modem power-lost)
after the gateway's last `AT+CPIN?` is counted as a swap race, not a fault:
no gateway can see a change between two of its own commands.  The gate must
close at its next look, and any such command after that look is a fault.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import Gateway  # noqa: E402
from simfixtures import make_card, server_of, sim_modem  # noqa: E402

from mtcd.sim.card import SECRET_INS  # noqa: E402

GUARD = 2  # policy.min_retries, its default
NETWORK = ("AT+CFUN=1", "AT+CGACT=1", "AT+CGATT=1", "ATD", "AT+COPS=")
EVENTS = ("boot", "swap", "wrong-sim", "reset", "power-cut", "lying-change")
CTL_COMMANDS = ("status", "pin list", "pin try", "pin rotate", "repair", "pin set right", "pin set wrong")
PROC_TIMEOUT = 90.0


@dataclass
class Presentation:
    t: float
    iccid: str
    pin: str
    before: int
    after: int
    accepted: bool
    person: bool
    command: str


@dataclass
class PinSet:
    iccid: str
    pin: str
    start: float
    end: float = float("inf")
    rc: int | None = None


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    out: str = ""
    err: str = ""


def _digits(n: int, rng: random.Random) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _presented(line: str) -> tuple[str | None, bool]:
    """(the PIN a command line presents, whether it carries a PUK)."""
    head, _, args = line.partition("=")
    name = head.strip().upper()
    fields = [f.strip().strip('"') for f in args.split(",")] if args and args != "?" else []
    if name in ("AT+CPIN", "AT^CPIN") and fields:
        return (None, True) if len(fields) > 1 else (fields[0], False)
    if name == "AT+CPWD" and len(fields) >= 3 and fields[0].upper() == "SC":
        return fields[1], False
    if name == "AT+CLCK" and len(fields) >= 3 and fields[0].upper() == "SC":
        return fields[2], False
    if name == "AT+CSIM" and len(fields) == 2:
        try:
            raw = bytes.fromhex(fields[1])
        except ValueError:
            return None, False
        if len(raw) > 5 and raw[1] in SECRET_INS:
            if raw[1] == 0x2C:
                return None, True
            pin = raw[5:13].rstrip(b"\xff").decode("ascii", "replace")
            return pin, False
    return None, False


def _held_pins(entry) -> set[str]:
    """Every PIN a keystore entry holds: current, pending and fallback."""
    return {p.reveal() for p in (entry.pin, entry.pending_pin, entry.fallback_pin) if p}


class Monitor:
    """Wraps the simulated modem's command handler: every command line is
    seen with the card's state around it, before the simulator redacts it."""

    def __init__(self, soak: "Soak", modem):
        self.soak = soak
        self.modem = modem
        self.handle = modem.handle
        self.lock = threading.Lock()
        self.presentations: list[Presentation] = []
        self.card_pins: list[tuple[float, str, str]] = []  # (t, iccid, new PIN) a change asked the card for
        self.cut_at: tuple[str, ...] = ()
        self.cut = threading.Event()
        self.cut_note = ""
        # The next AT+CPWD is answered OK and never reaches the card.
        self.lie_armed = self.lie_struck = False
        # Command counter; the last AT+CPIN? read and the last change made
        # behind the gateway's back, in its terms.
        self.seq = self.cpin_read = 0
        self.changed_at = -1
        self.races = 0
        modem.handle = self

    def arm_cut(self, prefixes: tuple[str, ...]) -> None:
        if prefixes:
            self.cut.clear()
            self.cut_note = ""
        self.cut_at = prefixes

    def __call__(self, line: str) -> list[str]:
        text = line.strip()
        upper = text.upper()
        card = self.modem.card
        before = card.pin_attempts if card else None
        pin, puk = _presented(text)
        if self.cut_at and upper.startswith(self.cut_at) and (pin or puk):
            self.cut_at = ()
            mode = self.soak.rng_cut.choice(("drop", "before"))
            self.modem.fail_after(upper[:8], mode)
            self.cut_note = f"{upper[:8]} ({mode})"
            self.cut.set()
        if self.lie_armed and upper.startswith("AT+CPWD="):
            self.lie_armed, self.lie_struck = False, True
            self.modem.fail_after("AT+CPWD=", "unsent")
        reply = self.handle(line)
        t = time.monotonic()
        soak = self.soak
        if puk and not soak.person_puk:
            soak.violation(f"a PUK was sent: {self.modem.commands[-1]}")
        with self.lock:
            self.seq += 1
            if upper == "AT+CPIN?":
                self.cpin_read = self.seq
            unseen = self.changed_at >= self.cpin_read
        unlocked = card and card is self.modem.card and card.verified and card.pin_enabled
        if upper.startswith(NETWORK) and not unlocked and unseen:
            self.races += 1  # the gate must close at its next look (checked below)
        elif upper.startswith(NETWORK) and not unlocked:
            state = (f"{card.iccid.value[-4:]} verified={card.verified} enabled={card.pin_enabled} "
                     f"attempts={card.pin_attempts} now in slot: "
                     f"{self.modem.card.iccid.value[-4:] if self.modem.card else 'none'}") if card else "no SIM"
            soak.violation(f"{text} while the SIM is not unlocked by the gateway ({state})")
        if card is None:
            return reply
        iccid = card.iccid.value
        if pin is not None:
            if before < GUARD and not soak.person:
                soak.violation(f"a PIN presented with {before} attempts left (guard {GUARD}): "
                               f"{self.modem.commands[-1]}")
            accepted = card.pin_attempts >= before
            with self.lock:
                self.presentations.append(Presentation(t, iccid, pin, before, card.pin_attempts,
                                                       accepted, soak.person, self.modem.commands[-1]))
                soak.secrets.add(pin)
                if upper.startswith("AT+CPWD") or (upper.startswith("AT+CSIM") and len(pin) >= 4):
                    new = text.rsplit(",", 1)[-1].strip().strip('"')
                    if upper.startswith("AT+CPWD"):
                        # Asked for, whether the card then made it or not
                        # (a lie): the store may rightly hold it instead.
                        self.card_pins.append((t, iccid, new))
                        soak.secrets.add(new)
        if card.pin_attempts == 0:
            soak.violation(f"the SIM {iccid} is PIN-blocked after {self.modem.commands[-1]}")
        return reply


class Soak:
    def __init__(self, root: Path, seed: int, mode: str, log=print, detail: Path | None = None):
        self.detail = detail
        self.deadline: float | None = None
        self.done = 0
        self.root = root
        self.seed = seed
        self.mode = mode
        self.log = log
        self.rng_cut = random.Random(seed ^ 0x5A)
        self.violations: list[str] = []
        self.secrets: set[str] = set()
        self.person = False
        self.person_puk = False
        self.sets: list[PinSet] = []
        self.procs: list[Proc] = []
        self.procs_lock = threading.Lock()
        self.service: Proc | None = None
        self.service_log = root / "service.stderr"
        self.cycle = 0
        self.checked = 0
        self.log_seen = 0
        self.leaked: set[str] = set()
        self.outcomes: dict[str, int] = {}

    # --- bookkeeping -----------------------------------------------------

    def violation(self, text: str) -> None:
        message = f"[seed {self.seed} cycle {self.cycle}] {text}"
        self.violations.append(message)
        self.log("VIOLATION " + message)
        if self.detail is not None:
            # What led there: the simulator's log (PINs redacted) and the
            # service's, both checked PIN-free.
            modem = getattr(self, "modem", None)
            tail = "\n".join(modem.commands[-80:]) if modem else ""
            log = self.service_log.read_text(errors="replace")[-6000:] if self.service_log.exists() else ""
            with open(self.detail, "a") as out:
                out.write(f"=== {message}\n--- modem commands\n{tail}\n--- mtcd run log\n{log}\n")

    def _spawn(self, name: str, argv: list[str], stdin: str = "", env: dict | None = None,
               stderr_path: Path | None = None) -> Proc:
        popen = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(stderr_path, "a") if stderr_path else subprocess.PIPE,
            text=True, env=env or self.gw.env)
        proc = Proc(name, popen)
        with self.procs_lock:
            self.procs.append(proc)
        if stdin:
            try:
                popen.stdin.write(stdin)
            except BrokenPipeError:
                pass
        try:
            popen.stdin.close()
        except BrokenPipeError:
            pass
        popen.stdin = None  # communicate() must not flush it again
        return proc

    def _finish(self, proc: Proc, timeout: float = PROC_TIMEOUT) -> Proc:
        try:
            out, err = proc.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            out, err = proc.popen.communicate()
            self.violation(f"{proc.name} did not end within {timeout:.0f} s")
        proc.out, proc.err = out or "", err or ""
        with self.procs_lock:
            if proc in self.procs:
                self.procs.remove(proc)
        self._check_output(proc.name, proc.out + proc.err, proc.popen.returncode)
        return proc

    def _check_output(self, name: str, text: str, rc: int | None) -> None:
        if "Traceback" in text:
            self.violation(f"{name} printed a traceback (exit {rc}): {text[-800:]}")
        for pin in self._leaks(text):
            self.violation(f"{name} printed a PIN ({len(pin)} digits)")
        key = f"{name.split(':')[0]} exit {rc}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1

    def _leaks(self, text: str) -> list[str]:
        return [p for p in list(self.secrets) if re.search(rf"(?<![0-9]){p}(?![0-9])", text)]

    def _mtcd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mtcd.cli.daemon", "--config", str(self.gw.config), *args]

    def _mtcctl(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(self.gw.config), *args]

    def behind_back(self, change, *args, **kwargs) -> None:
        """A change to the slot or the modem the gateway learns of only by
        looking: until its next AT+CPIN? a command it sends may still be
        meant for the card it saw (a race no gateway can close)."""
        with self.monitor.lock:
            self.monitor.changed_at = self.monitor.seq
        change(*args, **kwargs)

    # --- the gateway's side ------------------------------------------------

    def pin_set(self, iccid: str, pin: str) -> None:
        record = PinSet(iccid, pin, time.monotonic())
        self.secrets.add(pin)
        with self.procs_lock:
            self.sets.append(record)
        proc = self._finish(self._spawn(f"pin set:{iccid[-4:]}", self._mtcctl("pin", "set", iccid), pin + "\n"))
        record.end, record.rc = time.monotonic(), proc.popen.returncode

    def ctl(self, command: str, rng: random.Random) -> None:
        if command.startswith("pin set"):
            card = rng.choice(self.cards)
            if command == "pin set right":
                pin = card.pin
            else:
                pin = _digits(8, rng)
                while pin in self.secrets:
                    pin = _digits(8, rng)
            self.pin_set(card.iccid.value, pin)
        else:
            self._finish(self._spawn(command, self._mtcctl(*command.split())))

    def power_cut(self) -> None:
        """Every gateway process dies at once and the modem loses power."""
        with self.procs_lock:
            victims = list(self.procs)
        if self.service is not None:
            victims.append(self.service)
        for proc in victims:
            try:
                proc.popen.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.behind_back(self.modem.power_loss)

    def start_service(self) -> None:
        self.service = self._spawn("mtcd run", self._mtcd("run"), stderr_path=self.service_log)
        with self.procs_lock:
            self.procs.remove(self.service)

    def service_down(self) -> bool:
        return self.service is None or self.service.popen.poll() is not None

    def stop_service(self) -> None:
        if self.service is None:
            return
        if self.service.popen.poll() is None:
            self.service.popen.send_signal(signal.SIGTERM)
        try:
            out, _ = self.service.popen.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.service.popen.kill()
            out, _ = self.service.popen.communicate()
            self.violation("mtcd run did not stop within 60 s of SIGTERM")
        self._check_output("mtcd run", out or "", self.service.popen.returncode)
        self.service = None

    # --- one cycle -----------------------------------------------------------

    def run_cycle(self, index: int) -> None:
        self.cycle = index
        rng = random.Random(f"{self.seed}:{self.mode}:{index}")
        event = rng.choice(EVENTS)
        commands = [rng.choice(CTL_COMMANDS) for _ in range(rng.randint(0, 3))]
        if event == "lying-change":
            # Alone: a wrong PIN stored meanwhile would need a person anyway.
            commands = ["pin rotate"]
            self.monitor.lie_struck = False
            self.monitor.lie_armed = True
            # The fallback can only give back a PIN the store held: after a
            # person's wrong `pin set` the card needs that person anyway.
            self.lie_on_known_pin = self.store_holds_the_cards_pin()
        at = rng.uniform(0.0, 1.5)
        cut_on_pin = event == "power-cut" and rng.random() < 0.5
        # Half of those cut a PIN change: a rotation runs, power goes at its AT+CPWD.
        cut_prefixes = ("AT+CPIN=", "AT+CPWD=", "AT+CLCK=", "AT+CSIM=")
        if cut_on_pin and rng.random() < 0.5:
            cut_prefixes = ("AT+CPWD=",)
            commands.append("pin rotate")
        if event == "swap":
            self.behind_back(self.modem.insert_card, rng.choice([c for c in self.cards[:2] if c is not self.modem.card]
                                              or self.cards[:2]))
        elif event == "wrong-sim":
            self.behind_back(self.modem.insert_card, self.cards[2])
        elif event == "boot":
            self.behind_back(self.modem.power_loss)
        if cut_on_pin:
            self.monitor.arm_cut(cut_prefixes)
        start = time.monotonic()
        main = None
        if self.mode == "once":
            main = self._spawn("mtcd once", self._mtcd("once", "--json"))
        elif self.service_down():
            self.start_service()
        workers = []
        for command in commands:
            delay = rng.uniform(0.0, 2.0)

            def work(command=command, delay=delay, seed=rng.random()):
                time.sleep(delay)
                self.ctl(command, random.Random(seed))

            workers.append(threading.Thread(target=work, daemon=True))
            workers[-1].start()
        if event in ("reset", "power-cut"):
            if cut_on_pin:
                self.monitor.cut.wait(timeout=at + 3.0)
                self.monitor.arm_cut(())
            else:
                time.sleep(max(0.0, at - (time.monotonic() - start)))
            if event == "power-cut":
                self.power_cut()
            else:
                self.server.close_port()
                self.behind_back(self.modem.power_loss, announce=False)
                time.sleep(rng.uniform(0.0, 1.0))
                self.server.reopen()
                self.server.flush_urcs()
        if main is not None:
            self._finish(main)
        for worker in workers:
            worker.join(PROC_TIMEOUT * 2)
        if event == "lying-change":
            self.monitor.lie_armed = False
            if self.monitor.lie_struck and self.lie_on_known_pin:
                self.check_pairs_after_a_lie()
        if self.mode == "once" and event not in ("reset", "power-cut"):
            card = self.modem.card
            if self.modem.radio == 1 and not (card and card.verified):
                self.violation("the radio is left on with a locked SIM after every gateway process ended")
        if self.mode == "service" and self.service_down():
            code = self.service.popen.returncode
            if code != -signal.SIGKILL:
                err = self.service_log.read_text()[-800:]
                self.violation(f"mtcd run ended by itself with exit {code}: {err}")
            self.service = None
        self.check_state()
        self.settle(rng)
        self.log(f"seed {self.seed} {self.mode} cycle {index} ({time.monotonic() - start:.1f} s): {event}"
                 f"{' (struck)' if event == 'lying-change' and self.monitor.lie_struck else ''}"
                 f"{' at ' + (self.monitor.cut_note or 'a PIN command that never came') if cut_on_pin else ''}, {', '.join(commands) or 'no mtcctl'};"
                 f" card {self.modem.card.iccid.value[-4:] if self.modem.card else '-'}"
                 f" {self.modem.card.pin_attempts if self.modem.card else '-'} left,"
                 f" {self.monitor.races} swap race(s), {len(self.violations)} violation(s)", flush=True)

    # --- checks ----------------------------------------------------------------

    def check_state(self) -> None:
        # No PIN in any state file, the sealed keystore included (its digits
        # must never appear in clear), nor in the service's log.
        for path in self.gw.state_dir.rglob("*"):
            if path.is_file():
                text = path.read_bytes().decode("latin-1")
                for pin in self._leaks(text):
                    self.violation(f"a PIN ({len(pin)} digits) in {path.name}")
        if self.service_log.exists():
            whole = self.service_log.read_text(errors="replace")
            log, self.log_seen = whole[self.log_seen:], len(whole)
            if "Traceback" in log:
                self.violation(f"mtcd run logged a traceback: {log[log.index('Traceback'):][:800]}")
            for pin in set(self._leaks(whole)) - self.leaked:  # a PIN learnt later may have leaked earlier
                self.leaked.add(pin)
                self.violation(f"mtcd run logged a PIN ({len(pin)} digits)")
        self.check_rejected_twice()
        self.check_keystore()

    def check_rejected_twice(self) -> None:
        with self.monitor.lock:
            shown = list(self.monitor.presentations)
        for i in range(self.checked, len(shown)):
            p = shown[i]
            if p.person:
                continue
            for q in shown[:i]:
                if q.iccid != p.iccid or q.pin != p.pin or q.after >= q.before:
                    continue
                # A person storing that PIN again in between lifts the latch
                # (a set killed by a power cut may have committed too).
                lifted = any(s.iccid == p.iccid and s.pin == p.pin and q.t <= s.end and s.start <= p.t
                             for s in self.sets)
                if not lifted:
                    self.violation(f"a PIN the card rejected presented again: {p.command}")
                    break
        self.checked = len(shown)

    def check_keystore(self) -> None:
        """A `pin set` that returned 0 is in the keystore (or what replaced it
        since: a later set, a PIN change the card was asked for)."""
        keystore = self.gw.keystore()
        from mtcd.identity import Iccid

        by_iccid: dict[str, list[PinSet]] = {}
        for s in self.sets:
            by_iccid.setdefault(s.iccid, []).append(s)
        for iccid, sets in by_iccid.items():
            done = [s for s in sets if s.rc == 0]
            if not done:
                continue
            last = max(done, key=lambda s: s.end)
            allowed = {s.pin for s in sets if s.end >= last.start}
            allowed |= {pin for t, i, pin in self.monitor.card_pins if i == iccid and t >= last.start}
            entry = keystore.get(Iccid(iccid))
            if entry is None:
                self.violation(f"the PIN stored for {iccid} by a `pin set` that returned 0 is gone")
                continue
            # The fallback too: the PIN the card was last seen to accept.
            held = _held_pins(entry)
            if not held & allowed:
                self.violation(f"the keystore lost a write for {iccid}: it holds none of the PINs "
                               f"stored or changed to since the last successful `pin set`")

    def store_holds_the_cards_pin(self) -> bool:
        """Whether the keystore holds the PIN the card in the slot holds."""
        from mtcd.identity import Iccid

        card = self.modem.card
        entry = self.gw.keystore().get(Iccid(card.iccid.value)) if card else None
        if entry is None:
            return False
        return card.pin in _held_pins(entry)

    def check_pairs_after_a_lie(self) -> None:
        """The card never made the change the modem said OK to: once it asks
        for its PIN again, the gateway pairs by itself with the PIN the card
        still holds (the fallback), no person in between."""
        self.behind_back(self.modem.power_loss)
        self.decide()
        if not self.paired():
            card = self.modem.card
            self.violation(f"SIM {card.iccid.value if card else '-'} not paired again by itself after a PIN change "
                           f"the modem said OK to and never passed on ({card.pin_attempts if card else '-'} "
                           f"attempts left, radio {self.modem.radio})")

    # --- between cycles: the gateway must come back by itself -------------

    def paired(self) -> bool:
        card = self.modem.card
        return bool(card and card.verified and self.modem.radio == 1 and self.modem.pdp_active)

    def decide(self) -> None:
        """One pairing decision with no fault in the way."""
        if self.mode == "once":
            self._finish(self._spawn("mtcd once", self._mtcd("once", "--json")))
        else:
            if self.service_down():
                self.start_service()
            self._wait_for_service()
            # `mtcctl repair` answers once a decision is taken (and a paired
            # SIM's link is up); 69 while the service has no modem yet.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not self.paired():
                repair = self._finish(self._spawn("repair (settle)", self._mtcctl("repair")))
                if repair.popen.returncode != 69:
                    break
                time.sleep(0.5)

    def _wait_for_service(self, within: float = 20.0) -> None:
        """Until the service answers on its control socket: a `repair` sent
        before would open the modem itself (seed 1201 cycle 1119: it paired
        in competition with the starting service, which lost the port and
        was still backing off when the person's `pin try` came)."""
        from mtcd.control import ControlClient

        client = ControlClient(self.gw.control_socket)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not self.service_down() and not client.available():
            time.sleep(0.1)

    def person_try(self, card) -> Proc:
        """The person's `mtcctl pin try --below-guard`, again while it says
        the modem or the service is not there yet (exit 69: the service
        backing off after losing the port), as a person would."""
        args = ["pin", "try", "--below-guard", "--yes"] + (["--last-attempt"] if card.pin_attempts == 1 else [])
        deadline = time.monotonic() + 30
        while True:
            proc = self._finish(self._spawn("pin try --below-guard", self._mtcctl(*args)))
            if proc.popen.returncode != 69 or time.monotonic() > deadline:
                return proc
            time.sleep(0.5)

    def settle(self, rng: random.Random) -> None:
        card = self.modem.card
        if card is None or card is self.cards[2]:
            self.behind_back(self.modem.insert_card, rng.choice(self.cards[:2]))
            card = self.modem.card
        if self.paired():
            return
        self.decide()
        if self.paired():
            return
        if card.verified:
            # Unlocked but the radio stays off: the gate refused a card it can
            # unlock only when its entry is not the card's PIN any more.
            pass
        # A person stores the card's PIN again; with the guard allowing it,
        # the gateway must pair by itself now.
        self.pin_set(card.iccid.value, card.pin)
        if card.pin_attempts >= GUARD:
            self.decide()
            if not self.paired():
                self.decide()
        tried = None
        if not self.paired() and card.pin_attempts < GUARD:
            self.person = True
            try:
                tried = self.person_try(card)
            finally:
                self.person = False
            self.decide()
        if not self.paired():
            said = (tried.out + tried.err).strip().splitlines() if tried else []
            person = f"; `pin try` exit {tried.popen.returncode}: {said[-1] if said else ''}" if tried else ""
            self.violation(f"SIM {card.iccid.value} not paired again with its PIN stored "
                           f"({card.pin_attempts} attempts left, radio {self.modem.radio}){person}")

    # --- the whole run ------------------------------------------------------

    def run(self, cycles: int, start: int = 0) -> int:
        rng = random.Random(self.seed)
        pins = [_digits(8, rng) for _ in range(3)]
        self.cards = [make_card(pin, _digits(8, rng), serial_number=9000 + i) for i, pin in enumerate(pins)]
        self.secrets |= set(pins)
        link = self.root / "ttyMODEM"
        with sim_modem(self.cards[0], link=link) as (modem, _port):
            self.modem = modem
            self.server = server_of(modem)
            self.monitor = Monitor(self, modem)
            self.gw = Gateway(self.root)
            self.gw.configure(str(link), modem="timeout = 3\npin_timeout = 4\nsim_ready_timeout = 3",
                              service="check_interval = 0.5\nbackoff_max = 2")
            for card in self.cards[:2]:
                self.pin_set(card.iccid.value, card.pin)
            try:
                for index in range(start, start + cycles):
                    if self.deadline is not None and time.monotonic() > self.deadline:
                        self.log(f"seed {self.seed} {self.mode}: time is up after cycle {index - 1}; "
                                 f"resume with --seed {self.seed} --start {index}", flush=True)
                        break
                    self.run_cycle(index)
                    self.done += 1
            finally:
                if self.mode == "service":
                    self.stop_service()
        return len(self.violations)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="soak mtcd against the simulator")
    parser.add_argument("--cycles", type=int, default=int(os.environ.get("SOAK_CYCLES", "100")))
    parser.add_argument("--seed", type=int, default=None, help="random seed (printed; default: from the clock)")
    parser.add_argument("--start", type=int, default=0, help="first cycle number (to resume a run)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop after this long (each mode its share), after the cycle under way")
    parser.add_argument("--detail", type=Path, default=None,
                        help="append what led to each violation (redacted AT log, service log) to this file")
    parser.add_argument("--mode", choices=("once", "service", "both"), default="both",
                        help="mtcd once per cycle, one mtcd run service, or half of each")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    print(f"soak: seed {seed}, {args.cycles} cycles from {args.start}, mode {args.mode}", flush=True)
    modes = ("once", "service") if args.mode == "both" else (args.mode,)
    began = time.monotonic()
    violations: list[str] = []
    races = done = 0
    outcomes: dict[str, int] = {}
    for n, mode in enumerate(modes):
        share = args.cycles // len(modes) + (1 if n < args.cycles % len(modes) else 0)
        with tempfile.TemporaryDirectory(prefix=f"mtcd-soak-{mode}-") as tmp:
            soak = Soak(Path(tmp), seed, mode, detail=args.detail)
            if args.minutes is not None:
                soak.deadline = time.monotonic() + args.minutes * 60 / len(modes)
            soak.run(share, args.start)
            violations += soak.violations
            races += soak.monitor.races
            done += soak.done
            for k, v in soak.outcomes.items():
                outcomes[k] = outcomes.get(k, 0) + v
    took = time.monotonic() - began
    print(json.dumps({"seed": seed, "cycles": done, "seconds": round(took, 1),
                      "violations": violations, "exits": outcomes,
                      "swap_races": races}, sort_keys=True), flush=True)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
