"""Hardware-in-the-loop tests: a real modem with a real SIM on the bench.

    make hw-test MODEM=/dev/ttyUSB2 [VENDOR=quectel] [CARD=card.toml] [READER=...]
    .venv/bin/python -m pytest hw-tests --modem=/dev/ttyUSB2 --card=card.toml [--destructive] [--record DIR]

Without --modem or --reader every test is skipped with the reason.  With
--reader the card file describes the card in that PC/SC reader (the
modem's own SIM, if a modem is given too, is then only read).  Read hw-tests/README.md
before running it on a card you care about.

The guards, in the order they act:
- the card file (--card) must be mode 0600 and the runner's own; its PIN and
  PUK are never printed and reach mtcd/mtcctl only on stdin;
- before anything touches the card, both counters (PIN and PUK attempts
  left) are read and the session refuses to start unless both are full (and,
  when the card file names an ICCID, unless that card is the one inserted);
- tests that spend attempts or change the PIN run only with --destructive;
- at the end the card is checked: same ICCID, full counters, PIN enabled as
  it was and, after destructive tests, the starting PIN (proven once with
  full counters).  A card not restored fails `test_card_back_as_it_started`
  and prints a banner.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchcard import BenchCard, CardFileError, load_card  # noqa: E402

RESTORE_TEST = "test_card_back_as_it_started"
PCSC_RESTORE_TEST = "test_pcsc_card_back_as_it_started"
EXIT_REFUSED_TO_START = 3
EXIT_BAD_CARD_FILE = 4


def pytest_addoption(parser):
    group = parser.getgroup("hw-tests", "real modem and SIM")
    group.addoption("--modem", default="", help="AT port of the modem under test")
    group.addoption("--vendor", default="auto", help="dialect (default: auto from AT+CGMI)")
    group.addoption("--baudrate", type=int, default=115200)
    group.addoption("--state-dir", default="", help="mtcd state dir with the PIN of the inserted SIM (pairing test)")
    group.addoption("--card", default="", help="the test SIM's card file (TOML, mode 0600): pin, puk, iccid")
    group.addoption("--reader", default="",
                    help="PC/SC reader (name substring or index) holding the test SIM; the card file is then "
                         "its card")
    group.addoption("--destructive", action="store_true",
                    help="also run the tests that spend PIN attempts or change the PIN (the card is restored)")
    group.addoption("--record", default="", metavar="DIR",
                    help="write every AT dialogue into DIR (docs/dialogue-format.md; PIN and PUK redacted)")
    group.addoption("--foreign-sim", action="store_true",
                    help="a second SIM is at hand: the suite asks for it to be inserted, then the test SIM back")
    group.addoption("--hotswap", action="store_true",
                    help="the slot takes a SIM pulled and inserted with the modem on: the suite asks for it")
    group.addoption("--reset-wait", type=float, default=60.0, help="seconds a modem may take to come back after a reset")


def pytest_configure(config):
    config.addinivalue_line("markers", "destructive: spends PIN attempts or changes the PIN (needs --destructive)")
    config.addinivalue_line("markers", "needs_card: needs --card")
    config.addinivalue_line("markers", "pcsc: the card in the PC/SC reader (needs --reader)")
    config.hw = Bench(config)


@dataclass
class StartState:
    iccid: str | None
    lock: str
    pin_left: int | None
    puk_left: int | None
    pin_enabled: bool | None


@dataclass
class Bench:
    config: object
    card: BenchCard | None = None
    port: str = ""
    proxy: object = None
    start: StartState | None = None
    headers: dict = field(default_factory=dict)
    destructive_ran: bool = False
    restore_problems: list[str] | None = None
    scratch: Path | None = None
    restore_notes: list[str] = field(default_factory=list)  # what a test's restorer could not do
    # The card in the PC/SC reader (--reader): its own start, notes and final check.
    pcsc_start: StartState | None = None
    pcsc_destructive_ran: bool = False
    pcsc_restore_notes: list[str] = field(default_factory=list)
    pcsc_restore_problems: list[str] | None = None

    @property
    def modem_port(self) -> str:
        return self.config.getoption("--modem")

    @property
    def reader(self) -> str:
        return self.config.getoption("--reader")

    @property
    def modem_card(self) -> BenchCard | None:
        """The card file, when it describes the modem's SIM (not with --reader)."""
        return None if self.reader else self.card

    def open_modem(self, vendor: str | None = None):
        return open_modem(self.port, self.config.getoption("--baudrate"), vendor or self.config.getoption("--vendor"))


@contextlib.contextmanager
def open_modem(port: str, baudrate: int, vendor: str = "auto"):
    from mtcd.modem import Modem
    from mtcd.transport import SerialTransport

    with SerialTransport(port, baudrate, timeout=10) as transport:
        modem = Modem(transport)
        modem.initialise()
        modem.choose_dialect(vendor)
        yield modem


def read_counters(modem) -> tuple[str, str | None, int | None, int | None, bool | None]:
    """(lock, ICCID, PIN left, PUK left, PIN enabled): read-only (no VERIFY
    or UNBLOCK with data)."""
    from mtcd.uicc import Uicc

    uicc = Uicc(modem, settle_time=10)
    lock = uicc.lock()
    iccid = uicc.iccid()
    counters = uicc.attempts()
    pin_left = counters.pin1 if counters is not None else None
    puk_left = uicc.puk_attempts()
    return lock.value, str(iccid) if iccid else None, pin_left, puk_left, uicc.pin_enabled()


# -- session start: the card file and the counters ------------------------------------


def pytest_sessionstart(session):
    config = session.config
    bench: Bench = config.hw
    if not bench.modem_port and not bench.reader:
        return
    card_path = config.getoption("--card")
    if card_path:
        try:
            bench.card = load_card(card_path)
        except CardFileError as exc:
            pytest.exit(f"hw-tests: {exc}", returncode=EXIT_BAD_CARD_FILE)
    if config.getoption("--destructive") and bench.card is None:
        pytest.exit("hw-tests: --destructive needs --card (the PIN the card is restored to)",
                    returncode=EXIT_BAD_CARD_FILE)
    bench.scratch = Path(tempfile.mkdtemp(prefix="mtcd-hw-"))
    if bench.reader:
        _start_reader(bench)
    if not bench.modem_port:
        return
    bench.port = bench.modem_port
    record = config.getoption("--record")
    if record:
        bench.proxy = _start_proxy(bench, Path(record))
        bench.port = str(bench.proxy.link)
        bench.proxy.start("session-start", "the counters read before any test")
    try:
        with bench.open_modem() as modem:
            _identify(bench, modem)
            lock, iccid, pin_left, puk_left, enabled = read_counters(modem)
    except Exception as exc:  # noqa: BLE001 - any failure here means: do not start
        pytest.exit(f"hw-tests: cannot read the card's counters before starting: {exc}",
                    returncode=EXIT_REFUSED_TO_START)
    bench.start = StartState(iccid, lock, pin_left, puk_left, enabled)
    # With --reader the test SIM is the reader's: the modem's slot (empty on
    # a board whose UICC hangs off a reader chip) is only read, never refused.
    refusal = start_refusal(bench.start, bench.modem_card) if not bench.reader else None
    if refusal:
        pytest.exit(f"hw-tests: refusing to start: {refusal}", returncode=EXIT_REFUSED_TO_START)


def _start_reader(bench: Bench) -> None:
    """The same guard for the card in the PC/SC reader, before anything
    else touches it: both counters full, the card file's card."""
    from pcscbench import open_reader, read_card

    try:
        with open_reader(bench.reader) as uicc:
            lock, iccid, pin_left, puk_left, enabled = read_card(uicc)
    except Exception as exc:  # noqa: BLE001 - any failure here means: do not start
        pytest.exit(f"hw-tests: cannot read the counters of the card in PC/SC reader {bench.reader!r} before "
                    f"starting: {exc}", returncode=EXIT_REFUSED_TO_START)
    bench.pcsc_start = StartState(iccid, lock, pin_left, puk_left, enabled)
    refusal = start_refusal(bench.pcsc_start, bench.card)
    if refusal:
        pytest.exit(f"hw-tests: refusing to start: PC/SC reader {bench.reader!r}: {refusal}",
                    returncode=EXIT_REFUSED_TO_START)


def start_refusal(start: StartState, card: BenchCard | None) -> str | None:
    """Why the session must not touch this card, or None."""
    pin_full = card.pin_tries if card else 3
    puk_full = card.puk_tries if card else 10
    if start.iccid is None:
        return f"no card's ICCID could be read (SIM state {start.lock})"
    if card is not None and card.iccid is not None and str(card.iccid) != start.iccid:
        return f"the inserted card is {start.iccid}, not the card file's {card.iccid}"
    if start.pin_left is None and start.lock == "READY" and start.pin_enabled:
        return ("the card's PIN is verified already, so it tells no count (VERIFY without data: 9000); "
                "power-cycle the card (pull and reinsert it, or reset the modem) so that it asks for its PIN")
    if start.pin_left is None or start.puk_left is None:
        return (f"the attempt counters cannot be read (PIN: {_count(start.pin_left)}, PUK: {_count(start.puk_left)}); "
                "a modem with AT+CPINR, a vendor counter or AT+CSIM is needed")
    if start.pin_left != pin_full or start.puk_left != puk_full:
        return (f"the card has {start.pin_left} of {pin_full} PIN and {start.puk_left} of {puk_full} PUK attempts "
                "left: restore it first (enter the right PIN once on a phone), or use another card")
    return None


def _count(value: int | None) -> str:
    return "unreadable" if value is None else str(value)


def _identify(bench: Bench, modem) -> None:
    from mtcd.at import commands, parsers

    def ask(command, prefixes):
        try:
            return parsers.parse_identity_text(modem.run(command).lines, command.text, prefixes)
        except Exception:  # noqa: BLE001 - the header says unknown
            return "unknown"

    bench.headers = {
        "vendor": ask(commands.manufacturer(), ("+CGMI:", "Manufacturer:")),
        "model": ask(commands.model(), ("+CGMM:", "Model:")),
        "firmware": ask(commands.revision(), ("+CGMR:", "Revision:")),
        "source": f"bench {datetime.date.today().isoformat()}",
    }
    if bench.proxy is not None:
        bench.proxy.set_headers(bench.headers)


def _start_proxy(bench: Bench, directory: Path):
    from dialogue import DialogueProxy

    secrets = {}
    if bench.card is not None:
        secrets[bench.card.pin.reveal()] = "<pin>"
        if bench.card.puk is not None:
            secrets[bench.card.puk.reveal()] = "<puk>"
    proxy = DialogueProxy(bench.modem_port, bench.config.getoption("--baudrate"), directory,
                          bench.scratch / "ttyRECORDED", secrets,
                          {"source": f"bench {datetime.date.today().isoformat()}", "vendor": "unknown"},
                          reopen_wait=bench.config.getoption("--reset-wait"))
    try:
        return proxy.open()
    except Exception as exc:  # noqa: BLE001
        pytest.exit(f"hw-tests: cannot open {bench.modem_port} for --record: {exc}", returncode=EXIT_REFUSED_TO_START)


# -- collection: what runs ---------------------------------------------------------------


def pytest_collection_modifyitems(config, items):
    bench: Bench = config.hw
    no_modem = "no modem given (use --modem=/dev/ttyUSBn or make hw-test MODEM=...)"
    if not bench.modem_port and not bench.reader:
        skip = pytest.mark.skip(reason=no_modem)
        for item in items:
            item.add_marker(skip)
        return
    for item in items:
        pcsc = item.get_closest_marker("pcsc") is not None
        if pcsc and not bench.reader:
            item.add_marker(pytest.mark.skip(reason="the PC/SC path needs --reader=NAME (make hw-test READER=...)"))
        elif not pcsc and not bench.modem_port:
            item.add_marker(pytest.mark.skip(reason=no_modem))
        elif not pcsc and bench.reader and item.get_closest_marker("needs_card"):
            item.add_marker(pytest.mark.skip(
                reason="with --reader the card file is the reader's card: the modem's SIM is only read"))
        elif item.get_closest_marker("destructive") and not config.getoption("--destructive"):
            item.add_marker(pytest.mark.skip(
                reason="spends PIN attempts or changes the PIN: run with --destructive (the card is restored)"))
        elif item.get_closest_marker("needs_card") and bench.card is None:
            item.add_marker(pytest.mark.skip(reason="needs the test SIM's card file: --card card.toml (mode 0600)"))
    # The card's check comes last, whatever order the files were given in.
    items.sort(key=lambda item: item.name in (RESTORE_TEST, PCSC_RESTORE_TEST))


def pytest_runtest_setup(item):
    bench: Bench = item.config.hw
    if item.get_closest_marker("destructive") and item.config.getoption("--destructive"):
        if item.get_closest_marker("pcsc"):
            bench.pcsc_destructive_ran = bench.pcsc_destructive_ran or bool(bench.reader)
        elif bench.modem_port and not bench.reader:
            bench.destructive_ran = True
    if bench.proxy is not None:
        bench.proxy.start(item.nodeid.split("::", 1)[-1].replace("::", "."), f"{item.nodeid}")


# -- the end: the card back as it started ---------------------------------------------------


def card_differences(start: StartState, card, counters, *, notes: list[str], destructive_ran: bool,
                     fresh_uicc, proven: bool = False) -> list[str]:
    """The final check's judgement, the same through AT and PC/SC: what
    differs from the start (empty: the card is back as it started).  After
    destructive tests the starting PIN is proven once, with full counters
    only (a wrong one then costs one attempt, and is reported).  `counters`
    is (lock, ICCID, PIN left, PUK left, PIN enabled) as read; `fresh_uicc()`
    gives a Uicc that has not cached the lock, for the proof."""
    from mtcd.policy import PinOutcome
    from mtcd.simlock import SimLock

    _, _, pin_left, puk_left, enabled = counters
    problems: list[str] = []
    if pin_left != start.pin_left:
        problems.append(f"PIN attempts left: {_count(pin_left)}, {start.pin_left} at the start")
    if puk_left != start.puk_left:
        problems.append(f"PUK attempts left: {_count(puk_left)}, {start.puk_left} at the start")
    if enabled != start.pin_enabled:
        problems.append(f"PIN enabled: {enabled}, {start.pin_enabled} at the start")
    if notes:
        # Known not restored: proving the starting PIN would spend an attempt.
        return problems + notes
    if problems or not destructive_ran or card is None or proven:
        return problems
    uicc = fresh_uicc()
    lock = uicc.lock()
    iccid_now = uicc.iccid()
    if lock is SimLock.SIM_PIN:
        outcome = uicc.present_pin(card.pin, iccid_now)
    elif lock is SimLock.READY and enabled:
        outcome = uicc.change_pin(card.pin, card.pin, iccid_now)
    else:
        return [f"the starting PIN cannot be proven in SIM state {lock.value}"]
    if outcome is not PinOutcome.ACCEPTED:
        problems.append(f"the card did not accept the starting PIN ({outcome.value}): its PIN was not restored")
    return problems


def final_check(where: str, start: StartState, opened, read, judge) -> list[str]:
    """One card's final check, whichever its transport: `opened()` is the
    card's context manager, `read(handle)` its counters, `judge(handle,
    counters)` the verdict once the ICCID is the one of the start."""
    try:
        with opened() as handle:
            counters = read(handle)
            if counters[1] != start.iccid:
                return [f"the card {where} is {counters[1] or 'unreadable'}, not {start.iccid}"]
            return judge(handle, counters)
    except Exception as exc:  # noqa: BLE001 - reported as a problem, never swallowed
        return [f"the card {where} could not be checked: {exc}"]


def check_restored(bench: Bench) -> list[str]:
    """card_differences for the modem's SIM, through AT."""
    from mtcd.policy import PinOutcome
    from mtcd.uicc import Uicc

    start, card = bench.start, bench.modem_card
    if bench.proxy is not None:
        bench.proxy.start("session-end", "the card checked after the tests")

    def judge(modem, counters):
        lock, iccid, pin_left, puk_left, enabled = counters
        proven = False
        if pin_left is None and lock == "READY" and enabled and card is not None:
            # A verified card's VERIFY without data says 9000, not its count
            # (modems without AT+CPINR): the starting PIN accepted now means full.
            uicc = Uicc(modem, settle_time=10)
            uicc.lock()
            if uicc.change_pin(card.pin, card.pin, uicc.iccid()) is PinOutcome.ACCEPTED:
                counters, proven = (lock, iccid, start.pin_left, puk_left, enabled), True
        return card_differences(start, card, counters, notes=bench.restore_notes,
                                destructive_ran=bench.destructive_ran, proven=proven,
                                fresh_uicc=lambda: Uicc(modem, settle_time=10))

    return final_check("in the slot", start, bench.open_modem, read_counters, judge)


def run_restore_check(bench: Bench) -> list[str]:
    if bench.restore_problems is None:
        bench.restore_problems = check_restored(bench)
    return bench.restore_problems


def check_reader_restored(bench: Bench) -> list[str]:
    """card_differences for the card in the PC/SC reader."""
    from pcscbench import open_reader, read_card

    def judge(uicc, counters):
        lock, _, pin_left, _, enabled = counters
        if pin_left is None and lock == "READY" and enabled and not bench.pcsc_restore_notes:
            # Verified: VERIFY without data says 9000, not the count, and the
            # presentation the card accepted put its counter back at its
            # maximum, which the start guard saw.  After destructive tests the
            # starting PIN is still proven by card_differences.
            counters = (*counters[:2], bench.pcsc_start.pin_left, *counters[3:])
        return card_differences(bench.pcsc_start, bench.card, counters, notes=bench.pcsc_restore_notes,
                                destructive_ran=bench.pcsc_destructive_ran, fresh_uicc=lambda: uicc)

    return final_check("in the reader", bench.pcsc_start, lambda: open_reader(bench.reader), read_card, judge)


def run_reader_restore_check(bench: Bench) -> list[str]:
    if bench.pcsc_restore_problems is None:
        bench.pcsc_restore_problems = check_reader_restored(bench)
    return bench.pcsc_restore_problems


def pytest_sessionfinish(session, exitstatus):
    bench: Bench = session.config.hw
    if bench.start is not None and bench.restore_problems is None:
        # The check's own test did not run (-k, -x): the check runs anyway.
        if run_restore_check(bench):
            session.exitstatus = 1
    if bench.pcsc_start is not None and bench.pcsc_restore_problems is None:
        if run_reader_restore_check(bench):
            session.exitstatus = 1
    if bench.proxy is not None:
        bench.proxy.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    bench: Bench = config.hw
    for where, problems in (("", bench.restore_problems), (" IN THE PC/SC READER", bench.pcsc_restore_problems)):
        if not problems:
            continue
        terminalreporter.write_sep("!", f"THE TEST SIM{where} WAS NOT RESTORED", red=True, bold=True)
        for problem in problems:
            terminalreporter.write_line(f"  {problem}", red=True, bold=True)
        terminalreporter.write_line("  Restore it by hand before any other run (hw-tests/README.md, \"If the card "
                                    "was not restored\").", red=True, bold=True)
        terminalreporter.write_sep("!", red=True, bold=True)
    if bench.proxy is not None:
        terminalreporter.write_line(f"AT dialogues written to {bench.proxy.directory}")


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bench(request) -> Bench:
    bench: Bench = request.config.hw
    if not bench.modem_port:
        pytest.skip("no modem given (use --modem=/dev/ttyUSBn or make hw-test MODEM=...)")
    return bench


@pytest.fixture(scope="session")
def modem_port(bench) -> str:
    """The port the tests and the processes they start use (the recording
    proxy's, with --record)."""
    return bench.port


@pytest.fixture
def modem(request, bench):
    with bench.open_modem() as m:
        yield m


@pytest.fixture(scope="session")
def bench_card(request) -> BenchCard:
    bench: Bench = request.config.hw
    if bench.card is None:
        pytest.skip("needs the test SIM's card file: --card card.toml (mode 0600)")
    return bench.card


@dataclass
class BenchGateway:
    """A throw-away mtcd state directory and configuration for the modem on
    the bench; mtcd and mtcctl run as separate processes, secrets on stdin."""

    root: Path
    port: str
    vendor: str
    reader: str | None = None  # the PIN's card is in this PC/SC reader: [uicc] backend = "pcsc"

    def __post_init__(self):
        self.state_dir = self.root / "state"
        self.config = self.root / "mtcd.toml"
        uicc = "" if self.reader is None else f'[uicc]\nbackend = "pcsc"\nreader = {self.reader!r}\n'
        self.config.write_text(
            f'state_dir = "{self.state_dir}"\n[modem]\nport = "{self.port}"\nvendor = "{self.vendor}"\n'
            f'[datalink]\nbackend = "none"\n[service]\ncontrol_socket = "{self.root / "control.sock"}"\n{uicc}')

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MTCD")}
        # systemd-creds' host secret of this run, never the bench machine's own.
        env["SYSTEMD_CREDENTIAL_SECRET"] = str(self.root / "host-credential.secret")
        return env

    def run(self, module: str, *args: str, stdin: str = "", timeout: float = 300):
        import subprocess

        return subprocess.run([sys.executable, "-m", module, "--config", str(self.config), *args], input=stdin,
                              capture_output=True, text=True, timeout=timeout, env=self.env)

    def mtcd(self, *args: str):
        return self.run("mtcd.cli.daemon", *args)

    def mtcctl(self, *args: str, stdin: str = ""):
        return self.run("mtcd.cli.ctl", *args, stdin=stdin)

    def stored_pin(self, iccid: str):
        """The PIN the keystore holds now (a Pin: never printed)."""
        from mtcd.identity import Iccid
        from mtcd.sealers import open_keystore

        saved = os.environ.get("SYSTEMD_CREDENTIAL_SECRET")
        os.environ["SYSTEMD_CREDENTIAL_SECRET"] = self.env["SYSTEMD_CREDENTIAL_SECRET"]
        try:
            entry = open_keystore(self.state_dir, "auto")[0].get(Iccid(iccid))
        finally:
            if saved is None:
                del os.environ["SYSTEMD_CREDENTIAL_SECRET"]
            else:
                os.environ["SYSTEMD_CREDENTIAL_SECRET"] = saved
        return entry


@pytest.fixture
def bench_gateway(bench, tmp_path) -> BenchGateway:
    return BenchGateway(tmp_path, bench.port, bench.config.getoption("--vendor"))


@pytest.fixture
def card_restorer(bench, bench_card, tmp_path):
    """For a destructive test: `restorer.pin` is the PIN the card holds now
    (the test updates it when it changes it); afterwards the card gets its
    starting PIN back and its PIN enabled as it was.  Best effort: the
    session's final check says whether it worked."""
    restorer = Restorer(bench, bench_card.pin)
    yield restorer
    try:
        restorer.restore()
    finally:
        bench.restore_notes += [f"{note} (that test's gateway state: {tmp_path})" for note in restorer.notes]


class Restorer:
    def __init__(self, bench: Bench, pin):
        self.bench, self.pin = bench, pin
        self.notes: list[str] = []

    def restore(self) -> None:
        from mtcd.policy import PinOutcome
        from mtcd.simlock import SimLock
        from mtcd.uicc import Uicc

        card, start = self.bench.card, self.bench.start
        wait_for_modem(self.bench)
        with self.bench.open_modem() as modem:
            uicc = Uicc(modem, settle_time=10)
            lock = uicc.lock()
            iccid = uicc.iccid()
            if lock is SimLock.SIM_PIN:
                uicc.present_pin(self.pin, iccid)
                lock = uicc.lock()
            if lock is not SimLock.READY:
                self.notes.append(f"cannot restore: SIM state {lock.value}")
                return
            if uicc.pin_enabled() is False and start.pin_enabled:
                uicc.enable_pin(self.pin, iccid)
                uicc.lock()
            if self.pin != card.pin:
                if uicc.change_pin(self.pin, card.pin, iccid) is not PinOutcome.ACCEPTED:
                    self.notes.append("the card did not take back its starting PIN: it still holds the PIN a "
                                      "test set (sealed in that test's gateway state)")
                    return
                self.pin = card.pin


def wait_for_modem(bench: Bench, timeout: float | None = None) -> None:
    """After a reset: until the port opens and the SIM answers AT+CPIN?."""
    from mtcd.simlock import SimLock
    from mtcd.uicc import Uicc

    deadline = time.monotonic() + (timeout or bench.config.getoption("--reset-wait"))
    last = None
    while time.monotonic() < deadline:
        try:
            with bench.open_modem() as modem:
                lock = Uicc(modem, settle_time=5).lock()
                if lock in (SimLock.SIM_PIN, SimLock.READY, SimLock.SIM_PUK):
                    return
                last = lock.value
        except Exception as exc:  # noqa: BLE001 - not back yet
            last = str(exc)
        time.sleep(0.25)  # a look at the port costs nothing: the modem is used as soon as it is back
    raise AssertionError(f"the modem did not come back within the reset wait: {last}")


def ask_person(request, prompt: str) -> None:
    """A question to the person at the bench, on the terminal (pytest holds stdin)."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        try:
            with open("/dev/tty", "r+") as tty:
                tty.write(f"\n>>> {prompt} [Enter] ")
                tty.flush()
                tty.readline()
        except OSError:
            pytest.skip("needs a person at a terminal to answer")


# -- the card in the PC/SC reader ----------------------------------------------------------


@pytest.fixture(scope="session")
def pcsc_bench(request) -> Bench:
    bench: Bench = request.config.hw
    if not bench.reader:
        pytest.skip("the PC/SC path needs --reader=NAME (make hw-test READER=...)")
    return bench


@pytest.fixture
def reader_uicc(pcsc_bench):
    """mtcd's ApduUicc on the reader's card (mtcd.card.pcsc)."""
    from pcscbench import open_reader

    with open_reader(pcsc_bench.reader) as uicc:
        yield uicc


@pytest.fixture
def pcsc_gateway(pcsc_bench, tmp_path) -> BenchGateway:
    """A throw-away gateway whose SIM is the reader's card; the modem (its
    own SIM left alone) gives the IMEI, or /dev/null where mtcd needs none."""
    port = pcsc_bench.port or "/dev/null"
    return BenchGateway(tmp_path, port, pcsc_bench.config.getoption("--vendor"), reader=pcsc_bench.reader)


@pytest.fixture
def pcsc_restorer(request, pcsc_bench, bench_card, tmp_path):
    """card_restorer for the reader's card."""
    from pcscbench import PcscRestorer

    restorer = PcscRestorer(pcsc_bench, bench_card.pin)
    yield restorer
    restorer.restore(request.node.name)
    pcsc_bench.pcsc_restore_notes += [f"{note} (the test's gateway state: {tmp_path})" for note in restorer.notes]
