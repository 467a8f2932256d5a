"""The simulated modem: one AT command line in, reply lines out, no I/O.

It plays the modem side of TS 27.007 for whatever talks to it (mtcd, the
demo, the tests) and owns a `SimCard` the way a modem owns its SIM slot.
Reply lines come without framing; `PtyModemServer` adds the CRLFs and the
echo.  Unsolicited result codes (hot-swap, unlock) are queued and handed to
listeners, so the server can write them between replies.

Behaviour that varies between real modems is chosen by constructor options
(vendor dialect, which optional commands exist, delays), so the client can
be tested against each variant.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..identity import Imei, luhn_check_digit
from ..simlock import SimLock
from .card import (
    SECRET_INS,
    SW_BLOCKED,
    SW_CONDITIONS_NOT_SATISFIED,
    SW_INVALIDATED,
    SW_OK,
    SW_WRONG_DATA,
    PIN_TRIES,
    PUK_TRIES,
    SimCard,
)

REDACTED = "<redacted>"
VENDORS = ("generic", "quectel", "huawei", "simcom")
# "drop": applied, no answer (power cut after the card acted); "before":
# neither applied nor answered; "ok" / "error": applied, then answered with
# a plain OK / ERROR whatever the card said (modems that lie, seen in the field).
# "reset" / "reset-before": the modem resets (AT+CFUN=1,1 from another
# port, a watchdog) while the command is in flight, after or before the card
# acted on it; no answer goes out and, on a pty, the port vanishes a moment.
# "unsent": never passed to the card, answered as if done (OK; to AT+CSIM
# the status word 9000): a change the modem says OK to and the card never made.
FAULT_MODES = ("drop", "before", "ok", "error", "reset", "reset-before", "unsent")

_TAC = "35999900"
_SERIAL = "000001"
DEFAULT_IMEI = _TAC + _SERIAL + str(luhn_check_digit(_TAC + _SERIAL))

# +CME ERROR codes (TS 27.007 §9.2.1) and their verbose texts.
CME_NOT_ALLOWED = 3
CME_NOT_SUPPORTED = 4
CME_NO_SIM = 10
CME_SIM_PIN = 11
CME_SIM_PUK = 12
CME_SIM_FAILURE = 13
CME_SIM_BUSY = 14
CME_WRONG_PASSWORD = 16
CME_NO_SERVICE = 30
CME_BAD_PARAMETERS = 50
CME_TEXT = {
    CME_NOT_ALLOWED: "operation not allowed",
    CME_NOT_SUPPORTED: "operation not supported",
    CME_NO_SIM: "SIM not inserted",
    CME_SIM_PIN: "SIM PIN required",
    CME_SIM_PUK: "SIM PUK required",
    CME_SIM_FAILURE: "SIM failure",
    CME_SIM_BUSY: "SIM busy",
    CME_WRONG_PASSWORD: "incorrect password",
    CME_NO_SERVICE: "no network service",
    CME_BAD_PARAMETERS: "Incorrect parameters",
}

_IDENTITY = {
    "generic": ("mtcd simulator", "SIM-1", "SIM-1.0.0"),
    "quectel": ("Quectel", "EC25", "EC25EFAR06A06M4G"),
    "huawei": ("huawei", "ME909s-120", "11.617.01.00.00"),
    "simcom": ("SIMCOM INCORPORATED", "SIMCOM_SIM7600G-H", "LE20B04SIM7600G22"),
}

_FINAL_OK = ["OK"]
_ERROR = ["ERROR"]
# The reply to AT+CMGS in PDU mode: the server writes "\r\n> " and then
# reads the PDU up to Ctrl-Z (send) or ESC (cancel), TS 27.005 §3.5.1.
SMS_PROMPT = "> "


class _Reply(Exception):
    """Raised inside a handler to end the command with these final lines."""

    def __init__(self, lines: list[str]):
        self.lines = lines


def fields(text: str) -> list[str]:
    """Comma-separated AT arguments with their quotes removed."""
    out, cur, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def raw_fields(text: str) -> list[str] | None:
    """Split on commas outside quotes, keeping each field as written;
    None when the quotes do not balance."""
    out, start, quoted = [], 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append(text[start:i])
            start = i + 1
    out.append(text[start:])
    return None if quoted else out


def _redacted_apdu(field: str) -> str | None:
    """A CSIM APDU with its PIN/PUK data hidden (header kept, so a reader
    can tell VERIFY from UNBLOCK); None if it carries no secret."""
    hexapdu = field.strip().strip('"')
    try:
        raw = bytes.fromhex(hexapdu)
    except ValueError:
        return REDACTED
    if len(raw) < 2:
        return REDACTED
    if raw[1] in SECRET_INS and len(raw) > 5:
        return f'"{raw[:5].hex().upper()}"+{REDACTED}'
    return None


# Which argument positions of a command carry a password (None: all).
_SECRET_FIELDS: dict[str, tuple[int, ...] | None] = {
    "+CPIN": None,  # <pin>[,<newpin>]
    "^CPIN": None,
    "+CPWD": (1, 2),  # <fac>,<oldpwd>,<newpwd>
    "+CLCK": (2,),  # <fac>,<mode>[,<passwd>[,<class>]]
}


def split_command_line(body: str) -> list[str] | None:
    """The commands of one command line, after its "AT" (V.250 §5.2.1):
    basic commands (E0, &F, S7=60) follow each other directly, extended
    ones (+CMEE=1, ^SYSCFG?) end at a ';' outside quotes, and a dial
    command takes the rest of the line.  None: not a command line the
    splitter knows (it is then run as one command, as before)."""
    parts: list[str] = []
    i, n = 0, len(body)
    while i < n:
        c = body[i]
        if c in "+^$":
            j, quoted = i, False
            while j < n and (quoted or body[j] != ";"):
                quoted ^= body[j] == '"'
                j += 1
            parts.append(body[i:j])
            i = j + 1
        elif c.upper() == "D":
            parts.append(body[i:])
            break
        elif c == ";":
            i += 1
        elif c == "&" or c.isalpha():
            j = i + (2 if c == "&" else 1)
            if c.upper() == "S":  # S-registers: S7=60, S7?
                while j < n and body[j].isdigit():
                    j += 1
                if j < n and body[j] in "=?":
                    j += 1
            while j < n and body[j].isdigit():
                j += 1
            parts.append(body[i:j])
            i = j
        else:
            return None
    return parts


def redacted(line: str) -> str:
    """The command line as the simulator records it: every PIN and PUK
    replaced by <redacted>, one per argument, so that the shape stays
    visible (AT+CPIN=<redacted>,<redacted> is a PUK unblock; a CSIM APDU
    keeps its header)."""
    if not line[:2].upper() == "AT":
        return f"<non-AT line of {len(line)} characters>"
    head, sep, args = line.partition("=")
    name = head[2:].strip().upper()
    if not sep or args.strip() == "?" or name not in (*_SECRET_FIELDS, "+CSIM"):
        return line
    parts = raw_fields(args)
    if parts is None:
        return f"{head}={REDACTED}"
    if name == "+CSIM":
        if len(parts) != 2:
            return f"{head}={REDACTED}"
        apdu = _redacted_apdu(parts[1])
        return line if apdu is None else f"{head}={parts[0]},{apdu}"
    secret = _SECRET_FIELDS[name]
    parts = [
        REDACTED if (secret is None or i in secret) else part
        for i, part in enumerate(parts)
    ]
    return f"{head}={','.join(parts)}"


class SimulatedModem:
    """A 27.007 modem with one SIM slot."""

    def __init__(
        self,
        card: SimCard | None = None,
        *,
        imei: str = DEFAULT_IMEI,
        svn: str = "01",
        vendor: str = "generic",
        has_cpinr: bool = True,
        has_csim: bool = True,
        has_crsm: bool = True,
        echo: bool = True,
        cmee: int = 1,
        ready_delay: float = 0.0,
        latency: float = 0.0,
        power_on_cfun: int = 1,
        autoconnect: bool = False,
        concatenation: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        if vendor not in VENDORS:
            raise ValueError(f"vendor must be one of {', '.join(VENDORS)}")
        if power_on_cfun not in (0, 1, 4):
            raise ValueError("power-on CFUN must be 0, 1 or 4")
        if not (len(svn) == 2 and svn.isdigit()):
            raise ValueError("SVN must be 2 digits")
        if ready_delay < 0 or latency < 0:
            raise ValueError("delays must not be negative")
        self.card = card
        self.imei = Imei(imei).value
        self.svn = svn
        self.vendor = vendor
        self.has_cpinr = has_cpinr
        self.has_csim = has_csim
        self.has_crsm = has_crsm
        self.ready_delay = ready_delay
        self.latency = latency
        self.power_on_cfun = power_on_cfun
        self._clock = clock
        self._default_echo = echo
        self._default_cmee = cmee
        # V.250 command lines with several commands (ATE0+CMEE=1, AT+A;+B);
        # False: a modem that answers ERROR to any such line.
        self.concatenation = concatenation
        self.commands: list[str] = []  # every command executed, secrets redacted
        self.lines: list[str] = []  # every command line received (one per round trip), redacted
        self.contexts: dict[int, tuple[str, str]] = {}  # cid -> (PDP type, APN)
        self.dials = 0  # ATD commands answered with CONNECT
        self.sms_sent: list[bytes] = []  # SMS-SUBMIT TPDUs (SMSC field removed)
        self._sms_length: int | None = None  # the <length> of a pending AT+CMGS
        self._sms_reference = 0
        self._urcs: list[str] = []
        self._urc_listeners: list[Callable[[], None]] = []
        self._faults: list[list] = []  # [prefix, mode, times left]
        self.reset_down = 1.0  # seconds the port stays away after a reset fault
        self._reset_struck = False  # a reset fault struck: the pty server makes the port vanish
        self._lock = threading.RLock()
        # USB network (ECM) data call: the vendor's stored auto-connect
        # setting survives a reboot; the call itself does not.
        self.autoconnect = autoconnect
        self.usbnet = 1  # Quectel +QCFG "usbnet": 1 ECM
        self.data_call_starts = 0  # data calls started on request, not by auto-connect
        # SIMCom reports SIM hot-swap only once AT+UIMHOTSWAPON=1 switched it
        # on; the setting is stored in the modem and survives a reboot.
        self.hotswap = False
        self.cops_format = 0  # AT+COPS=3,<format>: how AT+COPS? names the operator
        self._reset_volatile()

    def _reset_volatile(self) -> None:
        self.echo = self._default_echo
        self.cmee = self._default_cmee
        self.radio = self.power_on_cfun
        self.pdp_active = False
        self.attached = False
        self.connected = False
        self.data_call = False
        self._busy_until = 0.0
        self.cmgf = 0

    @property
    def imeisv(self) -> str:
        return self.imei[:14] + self.svn

    @property
    def apn(self) -> str | None:
        ctx = self.contexts.get(1)
        return ctx[1] if ctx else None

    # --- hooks for tests and the CLI ---------------------------------------

    def add_urc_listener(self, listener: Callable[[], None]) -> None:
        with self._lock:
            self._urc_listeners.append(listener)

    def remove_urc_listener(self, listener: Callable[[], None]) -> None:
        with self._lock:
            if listener in self._urc_listeners:
                self._urc_listeners.remove(listener)

    def take_urcs(self) -> list[str]:
        with self._lock:
            out, self._urcs = self._urcs, []
            return out

    def _notify(self) -> None:
        with self._lock:
            listeners = list(self._urc_listeners)
        for listener in listeners:
            listener()

    def remove_card(self, report: bool = True) -> None:
        """Pull the SIM out: the network connection goes with it.
        `report=False`: the modem says nothing (card detection switched
        off, as AT+QSIMDET=0 does on a Quectel, or the URC lost)."""
        with self._lock:
            if self.card is None:
                return
            self.card.power_cycle()
            self.card = None
            self._drop_data()
            self._busy_until = 0.0
            self._urcs += {
                "generic": ["+CPIN: NOT INSERTED"],
                "quectel": ["+CPIN: NOT READY"],
                "huawei": ["^SIMST: 255"],
                "simcom": ["+SIMCARD: NOT AVAILABLE"] if self.hotswap else [],
            }[self.vendor] if report else []
        self._notify()

    def insert_card(self, card: SimCard, report: bool = True) -> None:
        """Insert a card (powered up fresh, so not verified); `report` as
        for remove_card."""
        with self._lock:
            if self.card is not None:
                self.card.power_cycle()
            card.power_cycle()
            self.card = card
            self._drop_data()
            state = self._cpin_code(card)
            self._urcs += {
                "generic": [f"+CPIN: {state}"],
                "quectel": [f"+CPIN: {state}", "+QUSIM: 1"],
                "huawei": ["^SIMST: 1"],
                "simcom": [f"+CPIN: {state}"] if self.hotswap else [],
            }[self.vendor] if report else []
        self._notify()

    def power_loss(self, announce: bool = True) -> None:
        """The modem loses power and boots again: the card loses its
        verification and every setting returns to its power-on value.
        `announce=False` keeps the boot URCs queued (the port is not back
        yet) until the server flushes them."""
        with self._lock:
            self._reboot()
        if announce:
            self._notify()

    def _reboot(self) -> None:
        if self.card is not None:
            self.card.power_cycle()
        self._reset_volatile()
        if self.vendor in ("quectel", "simcom"):
            # Both announce the end of their boot, then the SIM's state.
            self._urcs.append("RDY")
            if self.card is not None:
                self._urcs.append(f"+CPIN: {self._cpin_code(self.card)}")

    def fail_after(self, command_prefix: str, mode: str = "drop", times: int = 1) -> None:
        """Break the next `times` commands starting with `command_prefix`
        (modes: FAULT_MODES)."""
        if mode not in FAULT_MODES:
            raise ValueError(f"fault mode must be one of {', '.join(FAULT_MODES)}")
        with self._lock:
            self._faults.append([command_prefix.strip().upper(), mode, times])

    def _take_fault(self, line: str) -> str | None:
        upper = line.upper()
        for fault in self._faults:
            if upper.startswith(fault[0]):
                fault[2] -= 1
                if fault[2] <= 0:
                    self._faults.remove(fault)
                return fault[1]
        return None

    # --- the command interpreter -----------------------------------------

    def handle(self, line: str) -> list[str]:
        """Execute one command line; return the reply lines (information
        lines, then the final result).  An empty list means no reply.
        URCs the command causes are queued, not announced: the caller takes
        them with `take_urcs()` after writing the reply."""
        line = line.strip()
        with self._lock:
            parts = split_command_line(line[2:]) if line[:2].upper() == "AT" else None
            if parts is not None and len(parts) > 1:
                # Each command of a concatenated line is logged as the modem
                # runs it, so a check for AT+CGACT or AT+CPIN= sees it there too.
                self.commands.extend(redacted(f"AT{part}") for part in parts)
                shown = [redacted(f"AT{part}") for part in parts]
                secret = any(shown_part != f"AT{part}" for shown_part, part in zip(shown, parts))
                self.lines.append("AT" + ";".join(part[2:] for part in shown) if secret else line)
            else:
                self.commands.append(redacted(line))
                self.lines.append(self.commands[-1])
            if not line[:2].upper() == "AT":
                return []  # modems ignore what does not start with AT
            if parts is not None and len(parts) > 1:
                lines = self._execute_all(parts)
                self._dial_by_itself()
                return lines
            return self._execute_with_faults(line, dial=True) or []

    def _execute_with_faults(self, line: str, dial: bool) -> list[str] | None:
        """One command, struck by a fault injected for it (fail_after): None when
        no answer goes out.  `dial`: let the modem dial by itself before a
        lost answer takes the URCs the command caused."""
        fault = self._take_fault(line)
        if fault == "before":
            return None
        if fault == "unsent":
            return (['+CSIM: 4,"9000"'] if line.upper().startswith("AT+CSIM=") else []) + _FINAL_OK
        if fault in ("reset", "reset-before"):
            return self._reset_mid_command(line, acted=fault == "reset")
        queued = len(self._urcs)
        try:
            lines = self._execute(line)
        except _Reply as r:
            lines = r.lines
        if dial:
            self._dial_by_itself()
        if fault == "drop":
            del self._urcs[queued:]  # power was cut: nothing goes out
            return None
        if fault in ("ok", "error") and lines:
            return lines[:-1] + (_FINAL_OK if fault == "ok" else _ERROR)
        return lines

    def _reset_mid_command(self, line: str, acted: bool) -> None:
        """The modem resets while `line` runs: the card acted on it or not,
        its answer and the URCs it caused are lost, the boot URCs follow."""
        if acted:
            queued = len(self._urcs)
            try:
                self._execute(line)
            except _Reply:
                pass
            del self._urcs[queued:]
        self._reboot()
        self._reset_struck = True
        return None

    def take_reset(self) -> bool:
        """Whether a reset fault struck since the last call (the pty server asks)."""
        with self._lock:
            struck, self._reset_struck = self._reset_struck, False
            return struck

    def _execute_all(self, parts: list[str]) -> list[str]:
        """A concatenated command line: the commands run in order; the first
        failure ends the line with its result, else one OK at the end.  A
        fault injected for one command strikes at that command: the ones
        before it have run, and a lost answer loses the whole line's."""
        if not self.concatenation:
            return _ERROR
        information: list[str] = []
        for part in parts:
            reply = self._execute_with_faults(f"AT{part}", dial=False)
            if reply is None:
                return []  # a lost answer loses the whole line's
            if not reply or reply[-1] != "OK":
                return information + reply
            information += reply[:-1]
        return information + _FINAL_OK

    def _execute(self, line: str) -> list[str]:
        body = line[2:]
        if body == "":
            return _FINAL_OK
        first = body[0].upper()
        if first in "+^$":
            for i, ch in enumerate(body):
                if ch in "=?":
                    name, rest = body[:i].upper(), body[i:]
                    break
            else:
                name, rest = body.upper(), ""
            if rest == "?":
                form, args = "read", ""
            elif rest == "=?":
                form, args = "test", ""
            elif rest.startswith("="):
                form, args = "set", rest[1:]
            elif rest == "":
                form, args = "exec", ""
            else:
                return _ERROR
            handler = self._handlers().get(name)
            if handler is None:
                return _ERROR
            return handler(form, args)
        return self._basic(body)

    def _handlers(self) -> dict[str, Callable[[str, str], list[str]]]:
        table = {
            "+CMEE": self._cmee,
            "+CGMI": self._identity(0),
            "+CGMM": self._identity(1),
            "+CGMR": self._identity(2),
            "+CGSN": self._cgsn,
            "+CFUN": self._cfun,
            "+CPAS": self._cpas,
            "+CPIN": self._cpin,
            "+CLCK": self._clck,
            "+CPWD": self._cpwd,
            "+CIMI": self._cimi,
            "+CCID": self._ccid,
            "+CGDCONT": self._cgdcont,
            "+CGACT": self._cgact,
            "+CGATT": self._cgatt,
            "+CREG": self._registration("+CREG"),
            "+CGREG": self._registration("+CGREG"),
            "+CEREG": self._registration("+CEREG"),
            "+CSQ": self._csq,
            "+COPS": self._cops,
            "+CMGF": self._cmgf,
            "+CMGS": self._cmgs,
        }
        if self.has_cpinr:
            table["+CPINR"] = self._cpinr
        if self.has_csim:
            table["+CSIM"] = self._csim
        if self.has_crsm:
            table["+CRSM"] = self._crsm
        if self.vendor == "quectel":
            table["+QPINC"] = self._qpinc
            table["+QCCID"] = self._qccid
        if self.vendor == "quectel":
            table["+QCFG"] = self._qcfg
            table["+QNETDEVCTL"] = self._qnetdevctl
        if self.vendor == "simcom":
            table["+DIALMODE"] = self._dialmode
            table["$QCRMCALL"] = self._qcrmcall
            table["+CICCID"] = self._ciccid
            table["+SPIC"] = self._spic
            table["+UIMHOTSWAPON"] = self._uimhotswapon
        if self.vendor == "huawei":
            table["^CPIN"] = self._huawei_cpin
            table["^ICCID"] = self._huawei_iccid
        return table

    def _basic(self, body: str) -> list[str]:
        upper = body.upper()
        if upper in ("E", "E0"):
            self.echo = False
            return _FINAL_OK
        if upper == "E1":
            self.echo = True
            return _FINAL_OK
        if upper in ("Z", "Z0", "&F", "&F0"):
            self.echo = self._default_echo
            self.cmee = self._default_cmee
            return _FINAL_OK
        if upper in ("I", "I0"):
            if self.vendor == "simcom":  # SIM7600: labelled lines
                made_by, model, revision = _IDENTITY["simcom"]
                return [f"Manufacturer: {made_by}", f"Model: {model}", f"Revision: {revision}",
                        f"IMEI: {self.imei}", "+GCAP: +CGSM"] + _FINAL_OK
            return list(_IDENTITY[self.vendor]) + _FINAL_OK
        if upper.startswith("D"):
            return self._dial(body[1:])
        if upper in ("H", "H0"):
            self.connected = False
            return _FINAL_OK
        return _ERROR

    # --- helpers ------------------------------------------------------------

    def _cme(self, code: int) -> list[str]:
        if self.cmee == 0:
            return _ERROR
        if self.cmee == 2:
            return [f"+CME ERROR: {CME_TEXT.get(code, 'unknown')}"]
        return [f"+CME ERROR: {code}"]

    def _fail(self, code: int):
        raise _Reply(self._cme(code))

    def _busy(self) -> bool:
        return self._clock() < self._busy_until

    @staticmethod
    def _cpin_code(card: SimCard) -> str:
        lock = card.lock
        return "NOT READY" if lock is SimLock.FAILURE else lock.value

    def _need_card(self) -> SimCard:
        if self.card is None:
            self._fail(CME_NO_SIM)
        if self.card.dead:
            self._fail(CME_SIM_FAILURE)
        return self.card

    def _need_ready_sim(self) -> SimCard:
        card = self._need_card()
        if self._busy():
            self._fail(CME_SIM_BUSY)
        if card.lock is SimLock.SIM_PUK:
            self._fail(CME_SIM_PUK)
        if card.lock is SimLock.SIM_PIN:
            self._fail(CME_SIM_PIN)
        return card

    def _sim_ready(self) -> bool:
        return self.card is not None and self.card.lock is SimLock.READY and not self._busy()

    def _card_result(self, sw: int, was_locked: bool) -> list[str]:
        """Map the card's status word to the final result (and note an unlock)."""
        if sw == SW_OK:
            self._after_unlock(was_locked)
            return _FINAL_OK
        if sw >> 4 == 0x63C or sw == SW_WRONG_DATA:
            return self._cme(CME_WRONG_PASSWORD)
        if sw == SW_BLOCKED:
            return self._cme(CME_SIM_FAILURE if self.card.dead else CME_SIM_PUK)
        if sw in (SW_CONDITIONS_NOT_SATISFIED, SW_INVALIDATED):
            return self._cme(CME_NOT_ALLOWED)
        return self._cme(CME_SIM_FAILURE)

    def _after_unlock(self, was_locked: bool) -> None:
        if not was_locked or self.card is None or self.card.lock is not SimLock.READY:
            return
        # Modems need a moment after unlock to read the SIM (CME 14 meanwhile).
        self._busy_until = self._clock() + self.ready_delay
        if self.vendor == "quectel":
            self._urcs.append("+CPIN: READY")

    @staticmethod
    def _pin_arg(text: str, puk: bool = False) -> bool:
        if not (text.isascii() and text.isdigit()):
            return False
        return len(text) == 8 if puk else 4 <= len(text) <= 8

    @staticmethod
    def _ints(args: str, count_min: int, count_max: int) -> list[int]:
        f = fields(args)
        if not count_min <= len(f) <= count_max:
            raise _Reply(_ERROR)
        try:
            return [int(x) for x in f]
        except ValueError:
            raise _Reply(_ERROR) from None

    def _drop_data(self) -> None:
        self.pdp_active = False
        self.attached = False
        self.connected = False
        self.data_call = False

    # --- command handlers (form: exec | read | test | set) ------------------

    def _cmee(self, form, args):
        if form == "read":
            return [f"+CMEE: {self.cmee}"] + _FINAL_OK
        if form == "test":
            return ["+CMEE: (0-2)"] + _FINAL_OK
        if form != "set":
            return _ERROR
        (n,) = self._ints(args, 1, 1)
        if n not in (0, 1, 2):
            return _ERROR
        self.cmee = n
        return _FINAL_OK

    def _identity(self, index):
        def handler(form, args):
            if form != "exec":
                return _FINAL_OK if form == "test" else _ERROR
            value = _IDENTITY[self.vendor][index]
            if self.vendor == "simcom" and index == 2:
                value = f"+CGMR: {value}"  # SIM7600 prefixes its revision
            return [value] + _FINAL_OK

        return handler

    def _cgsn(self, form, args):
        if form == "test":
            return ["+CGSN: (0-3)"] + _FINAL_OK
        if form == "exec":
            return [self.imei] + _FINAL_OK
        if form != "set":
            return _ERROR
        (n,) = self._ints(args, 1, 1)
        value = {0: None, 1: self.imei, 2: self.imeisv, 3: self.svn}.get(n, "")
        if value == "":
            return self._cme(CME_BAD_PARAMETERS)
        return ([self.imei] if value is None else [f"+CGSN: {value}"]) + _FINAL_OK

    def _cfun(self, form, args):
        if form == "read":
            return [f"+CFUN: {self.radio}"] + _FINAL_OK
        if form == "test":
            return ["+CFUN: (0,1,4),(0-1)"] + _FINAL_OK
        if form != "set":
            return _ERROR
        values = self._ints(args, 1, 2)
        level, reset = values[0], values[1] if len(values) > 1 else 0
        if level not in (0, 1, 4) or reset not in (0, 1):
            return self._cme(CME_BAD_PARAMETERS)
        if reset:
            # The modem restarts: the SIM is powered down and asks for its PIN again.
            self._reboot()
            self.radio = level
            return _FINAL_OK
        self.radio = level
        if level != 1:
            self._drop_data()
        return _FINAL_OK

    def _cpas(self, form, args):
        if form == "test":
            return ["+CPAS: (0-5)"] + _FINAL_OK
        return ["+CPAS: 0"] + _FINAL_OK if form == "exec" else _ERROR

    def _cpin(self, form, args):
        if form == "test":
            return _FINAL_OK
        if form == "read":
            if self.card is None:
                return self._cme(CME_NO_SIM)
            if self.card.dead:
                return self._cme(CME_SIM_FAILURE)
            if self._busy():
                return self._cme(CME_SIM_BUSY)
            return [f"+CPIN: {self.card.lock.value}"] + _FINAL_OK
        if form != "set":
            return _ERROR
        card = self._need_card()
        if self._busy():
            return self._cme(CME_SIM_BUSY)
        f = fields(args)
        if len(f) not in (1, 2):
            return self._cme(CME_BAD_PARAMETERS)
        lock = card.lock
        if lock is SimLock.READY:
            return self._cme(CME_NOT_ALLOWED)
        if lock is SimLock.SIM_PUK:
            if len(f) != 2:
                return self._cme(CME_SIM_PUK)
            if not (f[0].isascii() and f[0].isdigit() and self._pin_arg(f[1])):
                return self._cme(CME_BAD_PARAMETERS)
            return self._card_result(card.unblock(f[0], f[1]), True)
        # SIM PIN pending: a second argument is ignored (TS 27.007 §8.3).
        if not self._pin_arg(f[0]):
            return self._cme(CME_BAD_PARAMETERS)
        return self._card_result(card.verify(f[0]), True)

    def _cpinr(self, form, args):
        if form == "test":
            return _FINAL_OK
        if form not in ("exec", "set"):
            return _ERROR
        card = self._need_card()
        pattern = fields(args)[0].upper() if form == "set" else "*"
        rows = [
            ("SIM PIN", card.pin_attempts, card.pin_max),
            ("SIM PUK", card.puk_attempts, PUK_TRIES),
            ("SIM PIN2", PIN_TRIES, PIN_TRIES),
            ("SIM PUK2", PUK_TRIES, PUK_TRIES),
        ]
        prefix = pattern[:-1] if pattern.endswith("*") else None
        out = [
            f"+CPINR: {code},{left},{default}"
            for code, left, default in rows
            if (code.startswith(prefix) if prefix is not None else code == pattern)
        ]
        return out + _FINAL_OK

    def _clck(self, form, args):
        if form == "test":
            return ['+CLCK: ("SC")'] + _FINAL_OK
        if form != "set":
            return _ERROR
        f = fields(args)
        if len(f) < 2:
            return self._cme(CME_BAD_PARAMETERS)
        if f[0].upper() != "SC":
            return self._cme(CME_NOT_SUPPORTED)
        card = self._need_card()
        if self._busy():
            return self._cme(CME_SIM_BUSY)
        if f[1] == "2":
            return [f"+CLCK: {int(card.pin_enabled)}"] + _FINAL_OK
        if f[1] not in ("0", "1") or len(f) < 3:
            return self._cme(CME_BAD_PARAMETERS)
        if card.blocked:
            return self._cme(CME_SIM_PUK)
        if not self._pin_arg(f[2]):
            return self._cme(CME_BAD_PARAMETERS)
        was_locked = card.lock is not SimLock.READY
        sw = card.enable(f[2]) if f[1] == "1" else card.disable(f[2])
        if sw == SW_CONDITIONS_NOT_SATISFIED:
            return _FINAL_OK  # already in the requested state
        return self._card_result(sw, was_locked)

    def _cpwd(self, form, args):
        if form == "test":
            return ['+CPWD: ("SC",8)'] + _FINAL_OK
        if form != "set":
            return _ERROR
        f = fields(args)
        if len(f) != 3:
            return self._cme(CME_BAD_PARAMETERS)
        if f[0].upper() != "SC":
            return self._cme(CME_NOT_SUPPORTED)
        card = self._need_card()
        if self._busy():
            return self._cme(CME_SIM_BUSY)
        if card.blocked:
            return self._cme(CME_SIM_PUK)
        if not (self._pin_arg(f[1]) and self._pin_arg(f[2])):
            return self._cme(CME_BAD_PARAMETERS)
        was_locked = card.lock is not SimLock.READY
        return self._card_result(card.change(f[1], f[2]), was_locked)

    def _crsm(self, form, args):
        if form == "test":
            return _FINAL_OK
        if form != "set":
            return _ERROR
        card = self._need_card()
        f = fields(args)
        if len(f) < 2:
            return self._cme(CME_BAD_PARAMETERS)
        try:
            nums = [int(x) for x in f[:5] if x != ""]
        except ValueError:
            return self._cme(CME_BAD_PARAMETERS)
        command, fid = nums[0], nums[1]
        p1, p2, p3 = (nums[2:] + [0, 0, 0])[:3]
        if command == 176:  # READ BINARY
            data, sw = card.read_binary(fid, (p1 << 8) | p2, p3)
        elif command == 192:  # GET RESPONSE: the file's FCP
            fcp = card.fcp(fid)
            data, sw = (fcp, SW_OK) if fcp is not None else (b"", 0x6A82)
        elif command == 242:  # STATUS
            data, sw = card.fcp(0x3F00), SW_OK
        elif command == 178:  # READ RECORD, P1 the record, P2 the mode
            data, sw = card.read_record(fid, p1, p2, p3)
        else:
            return self._cme(CME_NOT_SUPPORTED)
        line = f"+CRSM: {sw >> 8},{sw & 0xFF}"
        if data:
            line += f',"{data.hex().upper()}"'
        return [line] + _FINAL_OK

    def _csim(self, form, args):
        if form == "test":
            return _FINAL_OK
        if form != "set":
            return _ERROR
        f = fields(args)
        if len(f) != 2:
            return self._cme(CME_BAD_PARAMETERS)
        try:
            length = int(f[0])
            raw = bytes.fromhex(f[1])
        except ValueError:
            return self._cme(CME_BAD_PARAMETERS)
        if length != len(f[1]) or length == 0:
            return self._cme(CME_BAD_PARAMETERS)
        if self.card is None:
            return self._cme(CME_NO_SIM)
        card = self.card  # a dead card still answers APDUs
        was_locked = card.lock is not SimLock.READY
        response = card.apdu(raw)
        if len(raw) > 5 and raw[1] in SECRET_INS:
            if response[-2:] == b"\x90\x00":
                self._after_unlock(was_locked)
        text = response.hex().upper()
        return [f'+CSIM: {len(text)},"{text}"'] + _FINAL_OK

    def _cimi(self, form, args):
        if form == "test":
            return _FINAL_OK
        if form != "exec":
            return _ERROR
        card = self._need_ready_sim()
        return [card.imsi.value] + _FINAL_OK

    def _ccid(self, form, args):
        if form == "test":
            return _FINAL_OK
        if form not in ("exec", "read"):
            return _ERROR
        card = self._need_card()
        return [f"+CCID: {card.iccid.value}"] + _FINAL_OK

    def _cgdcont(self, form, args):
        if form == "test":
            return ['+CGDCONT: (1-15),"IP",,,(0-2),(0-4)'] + _FINAL_OK
        if form == "read":
            rows = [
                f'+CGDCONT: {cid},"{kind}","{apn}","0.0.0.0",0,0'
                for cid, (kind, apn) in sorted(self.contexts.items())
            ]
            return rows + _FINAL_OK
        if form != "set":
            return _ERROR
        f = fields(args)
        try:
            cid = int(f[0])
        except ValueError:
            return _ERROR
        if not 1 <= cid <= 15:
            return _ERROR
        if len(f) == 1:
            self.contexts.pop(cid, None)
            return _FINAL_OK
        kind = f[1].upper()
        if kind not in ("IP", "IPV6", "IPV4V6", "NON-IP"):
            return _ERROR
        self.contexts[cid] = (kind, f[2] if len(f) > 2 else "")
        return _FINAL_OK

    def _need_service(self) -> None:
        self._need_ready_sim()
        if self.radio != 1:
            self._fail(CME_NO_SERVICE)

    def _cgact(self, form, args):
        if form == "read":
            return [f"+CGACT: 1,{int(self.pdp_active)}"] + _FINAL_OK
        if form == "test":
            return ["+CGACT: (0,1)"] + _FINAL_OK
        if form != "set":
            return _ERROR
        values = self._ints(args, 1, 2)
        state, cid = values[0], values[1] if len(values) > 1 else 1
        if state not in (0, 1) or cid != 1:
            return self._cme(CME_BAD_PARAMETERS)
        if state == 0:
            self.pdp_active = False
            return _FINAL_OK
        self._need_service()
        if 1 not in self.contexts:
            return self._cme(CME_NOT_ALLOWED)
        self.attached = True
        self.pdp_active = True
        return _FINAL_OK

    def _cgatt(self, form, args):
        if form == "read":
            return [f"+CGATT: {int(self.attached)}"] + _FINAL_OK
        if form == "test":
            return ["+CGATT: (0,1)"] + _FINAL_OK
        if form != "set":
            return _ERROR
        (state,) = self._ints(args, 1, 1)
        if state == 0:
            self._drop_data()
            return _FINAL_OK
        if state != 1:
            return self._cme(CME_BAD_PARAMETERS)
        self._need_service()
        self.attached = True
        return _FINAL_OK

    def _cmgf(self, form, args):
        if form == "read":
            return [f"+CMGF: {self.cmgf}"] + _FINAL_OK
        if form == "test":
            return ["+CMGF: (0,1)"] + _FINAL_OK
        if form != "set":
            return _ERROR
        (mode,) = self._ints(args, 1, 1)
        if mode not in (0, 1):
            return _ERROR
        self.cmgf = mode
        return _FINAL_OK

    def _cmgs(self, form, args):
        if form == "test":
            return _FINAL_OK
        if form != "set" or self.cmgf != 0:
            return ["+CMS ERROR: 302"]  # only PDU mode is simulated
        (length,) = self._ints(args, 1, 1)
        if not 7 <= length <= 164:
            return ["+CMS ERROR: 304"]
        if self.radio != 1 or not self._sim_ready():
            return ["+CMS ERROR: 331"]  # no network service
        self._sms_length = length
        return [SMS_PROMPT]

    def sms_body(self, data: bytes, cancelled: bool) -> list[str]:
        """The PDU after the prompt, up to Ctrl-Z (or ESC: cancelled)."""
        with self._lock:
            length, self._sms_length = self._sms_length, None
            self.commands.append(f"<SMS PDU of {len(data)} characters{', cancelled' if cancelled else ''}>")
            if length is None:
                return _ERROR
            if cancelled:
                return _FINAL_OK
            try:
                pdu = bytes.fromhex(data.decode("ascii").strip())
            except (UnicodeDecodeError, ValueError):
                return ["+CMS ERROR: 304"]
            if not pdu or len(pdu) - 1 - pdu[0] != length:
                return ["+CMS ERROR: 304"]
            self.sms_sent.append(pdu[1 + pdu[0]:])
            self._sms_reference = (self._sms_reference + 1) % 256
            return [f"+CMGS: {self._sms_reference}"] + _FINAL_OK

    @property
    def awaiting_sms_body(self) -> bool:
        return self._sms_length is not None

    def _registration(self, prefix):
        def handler(form, args):
            if form == "read":
                stat = 1 if self.radio == 1 and self._sim_ready() else 0
                return [f"{prefix}: 0,{stat}"] + _FINAL_OK
            if form == "test":
                return [f"{prefix}: (0-2)"] + _FINAL_OK
            if form == "set":
                self._ints(args, 1, 1)
                return _FINAL_OK
            return _ERROR

        return handler

    def _cops(self, form, args):
        """Operator selection (TS 27.007 §7.3), as much as ModemManager asks:
        automatic mode only; the operator is the card's home network."""
        if form == "test":
            return ['+COPS: (2,"mtcd sim","mtcd sim","26201",7),,(0-4),(0-2)'] + _FINAL_OK
        if form == "set":
            f = fields(args)
            if f and f[0] == "0":
                return _FINAL_OK
            if len(f) >= 2 and f[0] == "3" and f[1] in ("0", "1", "2"):
                self.cops_format = int(f[1])
                return _FINAL_OK
            return _ERROR
        if form != "read":
            return _ERROR
        if not (self.radio == 1 and self._sim_ready()):
            return ["+COPS: 0"] + _FINAL_OK
        name = self.card.imsi.value[:5] if self.cops_format == 2 else "mtcd sim"
        return [f'+COPS: 0,{self.cops_format},"{name}",7'] + _FINAL_OK

    def _csq(self, form, args):
        if form != "exec":
            return _FINAL_OK if form == "test" else _ERROR
        return ["+CSQ: 20,99" if self.radio == 1 else "+CSQ: 99,99"] + _FINAL_OK

    def _dial(self, number: str) -> list[str]:
        # Packet data dial (*99#, *99***<cid>#) needs service; no PPP follows here.
        if number.startswith("*99") and self.radio == 1 and self._sim_ready() and 1 in self.contexts:
            self.attached = True
            self.connected = True
            self.dials += 1
            return ["CONNECT"]
        return ["NO CARRIER"]

    # --- vendor dialects --------------------------------------------------

    def _qpinc(self, form, args):
        if form == "test":
            return ['+QPINC: ("SC","P2")'] + _FINAL_OK
        card = self._need_card()
        rows = {
            "SC": f'+QPINC: "SC",{card.pin_attempts},{card.puk_attempts}',
            "P2": f'+QPINC: "P2",{PIN_TRIES},{PUK_TRIES}',
        }
        if form == "read":
            return list(rows.values()) + _FINAL_OK
        if form != "set":
            return _ERROR
        row = rows.get(fields(args)[0].upper())
        return [row] + _FINAL_OK if row else self._cme(CME_BAD_PARAMETERS)

    def _qccid(self, form, args):
        if form != "exec":
            return _FINAL_OK if form == "test" else _ERROR
        return [f"+QCCID: {self._need_card().iccid.value}"] + _FINAL_OK

    def _ciccid(self, form, args):
        # SIM7600: the EF.ICCID digits as stored, so a 19-digit ICCID keeps
        # its F filler.
        if form != "exec":
            return _FINAL_OK if form == "test" else _ERROR
        value = self._need_card().iccid.value
        return [f"+ICCID: {value.ljust(20, 'F')}"] + _FINAL_OK

    def _spic(self, form, args):
        # SIM7600 "times remain to input SIM PIN/PUK":
        # +SPIC: <pin1>,<puk1>,<pin2>,<puk2> (PIN2/PUK2 never used here).
        if form != "exec":
            return _FINAL_OK if form == "test" else _ERROR
        card = self._need_card()
        return [f"+SPIC: {card.pin_attempts},{card.puk_attempts},{PIN_TRIES},{PUK_TRIES}"] + _FINAL_OK

    def _uimhotswapon(self, form, args):
        if form == "read":
            return [f"+UIMHOTSWAPON: {int(self.hotswap)}"] + _FINAL_OK
        if form == "test":
            return ["+UIMHOTSWAPON: (0,1)"] + _FINAL_OK
        if form != "set":
            return _ERROR
        (on,) = self._ints(args, 1, 1)
        if on not in (0, 1):
            return self._cme(CME_BAD_PARAMETERS)
        self.hotswap = bool(on)
        return _FINAL_OK

    def _huawei_cpin(self, form, args):
        if form != "read":
            return _FINAL_OK if form == "test" else _ERROR
        card = self._need_card()
        lock = card.lock
        times = {SimLock.SIM_PIN: card.pin_attempts, SimLock.SIM_PUK: card.puk_attempts}.get(lock, "")
        return [
            f"^CPIN: {lock.value},{times},{card.puk_attempts},{card.pin_attempts},{PUK_TRIES},{PIN_TRIES}"
        ] + _FINAL_OK

    def _huawei_iccid(self, form, args):
        if form != "read":
            return _FINAL_OK if form == "test" else _ERROR
        return [f"^ICCID: {self._need_card().iccid.value}"] + _FINAL_OK


# --- USB network (ECM/RNDIS) data calls: Quectel and SIMCom --------------

    def _dial_by_itself(self) -> None:
        """The danger of such modems: with auto-connect on, the data call
        starts by itself as soon as the radio is on and the SIM unlocked."""
        if self.autoconnect and self.radio == 1 and self._sim_ready() and not self.data_call:
            self.attached = self.data_call = True

    def _start_data_call(self, cid: int) -> None:
        self._need_service()
        if cid not in self.contexts:
            self._fail(CME_NOT_ALLOWED)
        self.attached = self.data_call = True
        self.data_call_starts += 1

    def _qcfg(self, form, args):
        if form != "set":
            return _FINAL_OK if form == "test" else _ERROR
        f = fields(args)
        if f[0].lower() != "usbnet":
            return self._cme(CME_NOT_SUPPORTED)
        if len(f) == 1:
            return [f'+QCFG: "usbnet",{self.usbnet}'] + _FINAL_OK
        (self.usbnet,) = self._ints(f[1], 1, 1)
        return _FINAL_OK

    def _qnetdevctl(self, form, args):
        if form == "read":
            if not (self.autoconnect or self.data_call):
                return _FINAL_OK
            return [f"+QNETDEVCTL: {3 if self.autoconnect else 1},1,1,{int(self.data_call)}"] + _FINAL_OK
        if form != "set":
            return _FINAL_OK if form == "test" else _ERROR
        op, cid, _urc = self._ints(args, 3, 3)
        if op == 0:
            self.autoconnect = self.data_call = False
        elif op in (1, 3):
            self.autoconnect = op == 3
            self._start_data_call(cid)
        else:
            return self._cme(CME_BAD_PARAMETERS)
        return _FINAL_OK

    def _dialmode(self, form, args):
        if form == "read":
            return [f"+DIALMODE: {0 if self.autoconnect else 1}"] + _FINAL_OK
        if form != "set":
            return _FINAL_OK if form == "test" else _ERROR
        (mode,) = self._ints(args, 1, 1)
        if mode not in (0, 1):
            return self._cme(CME_BAD_PARAMETERS)
        self.autoconnect = mode == 0
        return _FINAL_OK

    def _qcrmcall(self, form, args):
        if form == "read":
            return (["$QCRMCALL: 1,V4"] if self.data_call else []) + _FINAL_OK
        if form != "set":
            return _FINAL_OK if form == "test" else _ERROR
        values = self._ints(args, 2, 5)
        action, cid = values[0], values[4] if len(values) == 5 else 1
        if action == 0:
            self.data_call = False
            return _FINAL_OK
        if action != 1:
            return self._cme(CME_BAD_PARAMETERS)
        self._start_data_call(cid)
        return ["$QCRMCALL: 1,V4"] + _FINAL_OK


__all__ = ["DEFAULT_IMEI", "SimulatedModem", "redacted", "fields"]
