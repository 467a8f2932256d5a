"""The thin edges of `mtcctl doctor`: what the modem answers to read-only
queries, and what the machine says about the port, the keystore and the
journal.  The conclusions are drawn in mtcd.doctor (pure).

Read-only means: nothing here presents a PIN or PUK, switches the radio,
or writes to the keystore.  The modem is asked only AT+CGMI/CGMM/CGMR,
AT+CGSN, AT+CPIN?, the dialect's ICCID and attempt-counter queries (none
spends an attempt: VERIFY and UNBLOCK go without data), AT+CLCK="SC",2,
AT+CFUN?, AT+CREG?, AT+CEREG?, AT+CSQ, and AT+CRSM reads (GET RESPONSE,
READ BINARY, READ RECORD) of EF-UST, EF-IPS and EF-IPD.  With [uicc]
backend csim or pcsc the card is asked in APDUs instead: SELECT, READ
BINARY, READ RECORD, GET RESPONSE, and VERIFY / UNBLOCK PIN without data.  (The direct path also sends
ATE0 and AT+CMEE=1 first, as every mtcd session does: they change how the
modem answers, not what it does.)
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from . import apdu
from .at import commands, parsers
from .card.record import read_over_apdu
from .doctor import dialect_choice, mm_ignore
from .errors import CommandFailed, ModemProtocolError, ModemUnavailable, MtcdError
from .modem import Modem
from .pairing_record_at import read_over_at
from .portholder import PROC, holders_of, unit_of
from .simlock import SimLock
from .uicc import Uicc
from .vendors import DIALECTS, Dialect, dialect_named

# How long AT+CPIN? may keep saying "busy" before doctor reports it as is.
SIM_SETTLE = 3.0
_SIM_PRESENT = (SimLock.READY, SimLock.SIM_PIN, SimLock.SIM_PUK)
# The newest EF-IPS records doctor reads (`mtcctl sim pairing-status`: all).
CARD_RECORDS = 10


def unreachable_modem(error: str, via: str | None) -> dict:
    return {"reachable": False, "via": via, "error": error, "unreadable": {}}


class _Probe:
    """Asks one fact at a time; a fact whose query fails is recorded as
    unreadable with the modem's answer.  Once the port itself fails, the
    remaining facts are not asked (each would wait out the timeout)."""

    def __init__(self):
        self.facts: dict = {"reachable": True, "error": None, "unreadable": {}}
        self.dead: str | None = None

    def ask(self, key: str, read: Callable[[], object], none_means: str = "no answer"):
        if self.dead is not None:
            self.facts[key] = None
            self.facts["unreadable"][key] = f"not asked: {self.dead}"
            return None
        try:
            value = read()
            why = none_means
        except CommandFailed as exc:
            value, why = None, exc.result
        except ModemProtocolError as exc:
            value, why = None, str(exc)
        except ModemUnavailable as exc:
            value, why = None, str(exc)
            self.dead = "the modem stopped answering"
        self.facts[key] = value
        if value is None:
            self.facts["unreadable"][key] = why
        return value


def probe_modem(modem: Modem, vendor: str, dialect: Dialect | None = None, *, via: str,
                settle_time: float = SIM_SETTLE, uicc=None) -> dict:
    """The modem facts (mtcd.doctor's `modem` keys).  `dialect`: the one a
    running session chose already (kept); None: chosen here as mtcd would,
    and set on `modem` so the vendor's queries are the ones asked."""
    own = getattr(modem, "doctor_facts", None)
    if own is not None:
        # The modemmanager driver: ModemManager's properties, not AT (mtcd.doctor_mm).
        facts = own()
        facts["via"] = via
        return facts
    p = _Probe()
    p.facts["via"] = via
    run = modem.run
    manufacturer = p.ask("manufacturer", lambda: parsers.parse_cgmi(run(commands.manufacturer()).lines))
    p.ask("model", lambda: parsers.parse_identity_text(run(commands.model()).lines, "AT+CGMM", ("+CGMM:", "Model:")))
    p.ask("firmware", lambda: parsers.parse_identity_text(run(commands.revision()).lines, "AT+CGMR",
                                                          ("+CGMR:", "Revision:")))
    known = {name: cls.manufacturers for name, cls in DIALECTS.items()}
    name, why = dialect_choice(vendor, manufacturer, known)
    if dialect is None:
        modem.dialect = dialect_named(name)
    elif dialect.name != name:
        name, why = dialect.name, "chosen when the service's modem session started"
    p.facts["dialect"], p.facts["dialect_reason"] = name, why

    p.ask("imei", lambda: str(parsers.parse_imei(run(commands.imei()).lines)))
    p.ask("imeisv", lambda: str(parsers.parse_imeisv(run(commands.imeisv()).lines)))
    # Its own: a service's cached SIM state stays untouched.  `uicc`: the
    # card asked in APDUs ([uicc] backend csim or pcsc, mtcd.card).
    apdu_path = uicc is not None
    uicc = uicc if apdu_path else Uicc(modem, settle_time=settle_time)
    lock = p.ask("sim_state", lambda: uicc.lock(settle=True))
    p.facts["sim_state"] = lock.value if lock is not None else None
    for key in ("iccid", "pin_attempts", "puk_attempts", "pin_attempts_source", "puk_attempts_source",
                "pin_enabled", "card_pairing_record"):
        p.facts.setdefault(key, None)
    if lock in _SIM_PRESENT:
        iccid = p.ask("iccid", uicc.iccid, "no ICCID query of the dialect answered")
        p.facts["iccid"] = str(iccid) if iccid is not None else None
        counters = p.ask("pin_attempts", uicc.attempts, "no attempt-counter query of the dialect answered")
        p.facts["pin_attempts"] = counters.pin1 if counters is not None else None
        if counters is not None:
            p.facts["pin_attempts_source"] = counters.source
            if counters.pin1 is None and apdu_path:
                p.facts["unreadable"]["pin_attempts"] = ("not told: a card whose PIN is verified or not needed "
                                                         "answers VERIFY without data with 9000, no count")
        if counters is not None and counters.puk1 is not None:
            p.facts["puk_attempts"], p.facts["puk_attempts_source"] = counters.puk1, counters.source
        else:
            # Over csim/pcsc the card itself; the modem's AT+CSIM may reach another card.
            puk = p.ask("puk_attempts", uicc.puk_attempts if apdu_path else lambda: _unblock_counter(modem),
                        "the card gave no PUK counter")
            if puk is not None:
                p.facts["puk_attempts_source"] = "UNBLOCK PIN APDU" if apdu_path else "+CSIM UNBLOCK PIN"
        if apdu_path:
            p.ask("pin_enabled", uicc.pin_enabled, "the card's FCP has no PIN status for PIN1")
            # The card's own pairing record, in APDUs through the card's channel: reads only.
            p.ask("card_pairing_record", lambda: read_over_apdu(uicc, CARD_RECORDS).as_json())
        else:
            p.ask("pin_enabled", lambda: parsers.parse_clck(run(commands.pin_enabled_query()).lines))
            # The card's own pairing record (EF-UST, EF-IPS, EF-IPD over AT+CRSM): reads only.
            p.ask("card_pairing_record", lambda: read_over_at(modem, CARD_RECORDS).as_json())
    p.ask("radio", lambda: parsers.parse_cfun(run(commands.functionality_query()).lines))
    p.ask("registration", lambda: parsers.parse_registration(run(commands.registration_query("+CREG")).lines, "+CREG"))
    p.ask("eps_registration",
          lambda: parsers.parse_registration(run(commands.registration_query("+CEREG")).lines, "+CEREG"))
    p.ask("signal_rssi", lambda: parsers.parse_csq(run(commands.signal_quality()).lines))
    return p.facts


def _unblock_counter(modem: Modem) -> int | None:
    """UNBLOCK PIN without data (63Cx): the PUK counter, spending nothing."""
    raw = parsers.parse_csim(modem.run(commands.generic_sim_access(apdu.unblock_query().tpdu())).lines)
    return apdu.remaining_attempts(apdu.ApduResponse.parse(raw))


# -- the machine ------------------------------------------------------------------

def _comm(pid: int, proc: Path) -> str | None:
    try:
        return (proc / str(pid) / "comm").read_text().strip() or None
    except OSError:
        return None


def port_facts(port: str, *, proc: Path = PROC, udevadm: Sequence[str] = ("udevadm",)) -> dict:
    """The configured port: whether it exists, where a udev symlink points,
    who else holds it open, and whether udev tells ModemManager to ignore it."""
    facts: dict = {"path": port, "exists": os.path.exists(port), "target": None}
    if os.path.islink(port):
        facts["target"] = os.path.realpath(port)
    holders = []
    for pid in holders_of(port, proc):
        try:
            unit = unit_of((proc / str(pid) / "cgroup").read_text())
        except OSError:
            unit = None
        holders.append({"pid": pid, "name": _comm(pid, proc), "unit": unit,
                        "pty_master": _holds_pty_master(pid, port, proc)})
    facts["holders"] = holders
    facts["mm_ignore"], facts["mm_ignore_by"], facts["mm_ignore_why"] = None, None, None
    if facts["exists"]:
        try:
            # The device node itself: udevadm reads a name outside /dev as relative to it.
            device = os.path.realpath(port)
            done = subprocess.run([*udevadm, "info", "-q", "property", "-n", device], capture_output=True, text=True,
                                  timeout=5, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            facts["mm_ignore_why"] = "udevadm not available"
        except (OSError, subprocess.TimeoutExpired) as exc:
            facts["mm_ignore_why"] = f"udevadm failed: {type(exc).__name__}"
        else:
            if done.returncode == 0:
                facts["mm_ignore"], facts["mm_ignore_by"] = mm_ignore(done.stdout)
            else:
                first = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
                facts["mm_ignore_why"] = f"udevadm: {first[:120]}"
    else:
        facts["mm_ignore_why"] = "the port does not exist"
    facts["modemmanager_running"] = modemmanager_running(proc)
    return facts


def _holds_pty_master(pid: int, port: str, proc: Path) -> bool:
    """Whether `pid` holds the master side of the pseudo-terminal `port` is:
    then it is the device itself (the simulator), not a rival user."""
    device = os.path.realpath(port)
    if not device.startswith("/dev/pts/") or not device[9:].isdigit():
        return False
    index = device[9:]
    try:
        fds = list((proc / str(pid) / "fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) not in ("/dev/ptmx", "/dev/pts/ptmx"):
                continue
            info = (proc / str(pid) / "fdinfo" / fd.name).read_text()
        except OSError:
            continue
        if any(line.split() == ["tty-index:", index] for line in info.splitlines()):
            return True
    return False


def modemmanager_running(proc: Path = PROC) -> bool | None:
    """Whether a process named ModemManager runs (None: /proc unreadable)."""
    try:
        entries = [e for e in proc.iterdir() if e.name.isdigit()]
    except OSError:
        return None
    return any(_comm(int(e.name), proc) == "ModemManager" for e in entries)


def keystore_facts(state_dir: Path, sealer_kind: str, iccid: str | None) -> dict:
    """The sealer, the number of stored PINs and the inserted SIM's entry
    (never a PIN).  Opening the store reads it only: the key is created on
    the first write, never here."""
    from .identity import Iccid
    from .sealers import open_keystore

    facts: dict = {"sealer": None, "error": None, "stored_pins": None, "entry": None}
    try:
        keystore, sealer = open_keystore(state_dir, sealer_kind)
        facts["sealer"] = sealer.describe()
        facts["stored_pins"] = len(keystore)
        entry = keystore.get(Iccid(iccid)) if iccid else None
    except MtcdError as exc:
        cause = exc.__cause__ or exc.__context__
        facts["error"] = "permission denied" if isinstance(cause, PermissionError) else str(exc)
        return facts
    if entry is not None:
        facts["entry"] = {
            "state": entry.state,
            "transport": entry.transport,
            "pending": entry.pending_origin,
            "pending_rejected": entry.pending_rejected,
            "fallback": entry.fallback_pin is not None,  # never the PIN: only that one is kept
            "attempt_in_flight": entry.attempt is not None or bool(entry.unsettled),
            "last_imei": entry.last_imei,
            "created": entry.created,
            "rotated": entry.rotated,
        }
    return facts


_DECISION_KEYS = ("time", "outcome", "reason", "detail", "iccid", "imei", "pin_retries")


def last_decision(state_dir: Path) -> dict | None:
    """The journal's last pairing decision (no IMSI: doctor does not need it)."""
    from .journal import PairingJournal

    try:
        record = PairingJournal(state_dir).last("decision")
    except (MtcdError, OSError):
        return None
    if not record:
        return None
    return {k: record.get(k) for k in _DECISION_KEYS}
