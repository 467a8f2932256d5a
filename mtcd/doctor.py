"""`mtcctl doctor`: from the facts gathered about a gateway to the problems
found and what to run next for each.  Pure: no I/O; the gathering lives in
mtcd.doctor_probe (the modem, the machine) and mtcd.cli.doctor.

The facts are one JSON-able dict with stable keys (README "mtcctl doctor"):

    config          path, port, vendor, state_dir, min_retries, require_pin_enabled,
                    on_imei_change
    port            path, exists, target (a symlink's device), holders
                    [{pid, name, unit, pty_master}], mm_ignore (true/false/null: unknown),
                    mm_ignore_by, modemmanager_running
    service         running, pid, state, status, error, error_exit (the
                    control socket's exit code when it did not answer)
    modem           reachable, via ("service" | "direct"), error, manufacturer,
                    model, firmware, dialect, dialect_reason, imei, imeisv,
                    sim_state, iccid, pin_attempts, pin_attempts_source,
                    puk_attempts, puk_attempts_source, pin_enabled, card_pairing_record
                    (mtcd.pairing_record's JSON: EF-IPS as the card keeps it), radio, registration,
                    eps_registration, signal_rssi, unreadable {fact: why}
    keystore        sealer, error, stored_pins, entry (null: none for the ICCID)
    last_decision   the journal's last decision record, or null
    modemmanager    only with driver = "modemmanager" (absent with serial):
                    reachable, error, version, modem (its D-Bus path, null: none
                    on the configured port), plugin, primary_port, ports, state,
                    udev_rule (mtcd's rule as udev reads it, null: not installed
                    or masked; not wanted in this mode).  The modem facts then
                    come from ModemManager's properties (via "modemmanager", or
                    "service"; mtcd.doctor_mm)

A fact the modem did not give is null, and named with its reason in
`modem.unreadable`; nothing is ever guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .errors import EXIT_NOPERM, EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE
from .mm.states import NO_HOT_SWAP_PLUGINS, swap_blind
from .policy import try_command

# The udev properties that keep ModemManager off a port, strongest first.
MM_IGNORE_PROPERTIES = ("ID_MM_DEVICE_IGNORE", "ID_MM_PORT_IGNORE")
UDEV_RULE = "/usr/lib/udev/rules.d/90-mtcd-modem.rules"

# The modem facts in the order a person reads them, with their labels.
MODEM_FACTS = (
    ("manufacturer", "manufacturer"),
    ("model", "model"),
    ("firmware", "firmware"),
    ("dialect", "dialect"),
    ("imei", "IMEI"),
    ("imeisv", "IMEISV"),
    ("sim_state", "SIM state"),
    ("iccid", "ICCID"),
    ("pin_attempts", "PIN attempts left"),
    ("puk_attempts", "PUK attempts left"),
    ("pin_enabled", "PIN enabled"),
    ("card_pairing_record", "card's record"),
    ("radio", "radio"),
    ("registration", "registration"),
    ("signal_rssi", "signal"),
)

_PRESENT_LOCKS = ("READY", "SIM PIN", "SIM PUK")


@dataclass(frozen=True)
class Finding:
    """One problem: a stable code, what is wrong, and what to run next (a
    command that works in that state, or an action when no command can)."""

    code: str
    problem: str
    next: str

    def as_json(self) -> dict:
        return {"code": self.code, "problem": self.problem, "next": self.next}


# -- small pure readings ---------------------------------------------------------

def dialect_choice(setting: str, manufacturer: str | None, known: Mapping[str, Sequence[str]]) -> tuple[str, str]:
    """(dialect name, why) as mtcd.vendors chooses it: the configured name,
    else the first dialect (in detection order, `known`: name ->
    manufacturer substrings) whose substring is in the AT+CGMI reply."""
    if setting != "auto":
        return setting, f'configured: [modem] vendor = "{setting}"'
    if manufacturer is None:
        return "generic", "vendor = auto and AT+CGMI gave no answer: the generic 27.007 dialect"
    text = manufacturer.lower()
    for name, substrings in known.items():
        for sub in substrings:
            if sub in text:
                return name, f'vendor = auto: AT+CGMI answered "{manufacturer}", which contains "{sub}"'
    return "generic", f'vendor = auto: AT+CGMI answered "{manufacturer}", no vendor dialect matches'


def mm_ignore(properties: str) -> tuple[bool, str | None]:
    """From `udevadm info -q property` text: whether ModemManager is told to
    ignore the device, and by which property."""
    values = {}
    for line in properties.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    for key in MM_IGNORE_PROPERTIES:
        if values.get(key) == "1":
            return True, key
    return False, None


def entry_summary(entry: Mapping | None) -> str:
    """The keystore entry's state in a few words."""
    if entry is None:
        return "no entry"
    state = entry.get("state")
    if state == "rejected" and entry.get("fallback"):
        return ("rejected: the card refused the PIN of a change said done; the PIN it was last seen to accept "
                "is kept (presented once within the guard, or `mtcctl pin try`)")
    if state == "rejected":
        return "rejected (the card refused the stored PIN; never presented again)"
    if state == "compromised" and (entry.get("fallback") or entry.get("pending")):
        # No change begins while the last one is unproven or a pending PIN
        # is not settled (lifecycle.change_waits).
        return ("compromised (rotated once the card has unlocked with its PIN at a SIM PIN prompt: "
                "power-cycle the modem, then `mtcctl repair`)")
    if state == "compromised":
        return "compromised (rotated at the next pairing)"
    words = ["stored"]
    if entry.get("transport"):
        words.append("transport PIN (replaced when the SIM is adopted)")
    if entry.get("pending"):
        words.append(f"pending change ({entry['pending']})" + (", pending PIN rejected" if entry.get("pending_rejected") else ""))
    if entry.get("fallback"):
        words.append("old PIN kept until the card proves the new one (a change only the modem's OK vouches for; "
                     "no further change until then)")
    if entry.get("attempt_in_flight"):
        words.append("a presentation's outcome not yet settled")
    return ", ".join(words)


def radio_text(level: int) -> str:
    return {
        0: "minimum functionality (CFUN=0)",
        1: "on (CFUN=1)",
        4: "off, SIM powered (CFUN=4)",
    }.get(level, f"vendor level {level} (CFUN={level})")


_REG_STAT = {
    0: "not registered, not searching",
    1: "registered, home network",
    2: "not registered, searching",
    3: "registration denied",
    4: "unknown",
    5: "registered, roaming",
}


def registration_text(stat: int) -> str:
    return _REG_STAT.get(stat, f"status {stat}")


def signal_text(rssi: int) -> str:
    """AT+CSQ <rssi> (27.007 §8.5): 0..31 is -113..-51 dBm, 99 unknown."""
    if rssi == 99:
        return "not known or not detectable (CSQ 99)"
    if 0 <= rssi <= 31:
        return f"{-113 + 2 * rssi} dBm (CSQ {rssi})"
    return f"CSQ {rssi}"


# -- findings -------------------------------------------------------------------

def findings(facts: Mapping, available: Iterable[str] = ()) -> list[Finding]:
    """Every problem the facts show, each with what to run next.
    `available`: the mtcctl commands this build has ("pin try", ...), so
    that advice never names one that is not there."""
    available = frozenset(available)
    out: list[Finding] = []
    config, port, service = facts["config"], facts["port"], facts["service"]
    modem, keystore = facts["modem"], facts["keystore"]

    mm = facts.get("modemmanager")
    if mm is None:
        out += _port_findings(port, service)
    else:
        # ModemManager holds the port by design here; what matters is that it runs and has the modem.
        out += _modemmanager_findings(mm, port, config)
    if not modem["reachable"]:
        out.append(_unreachable(modem, port, service) if mm is None else
                   Finding("modem-unreachable", f"the modem cannot be reached: {modem.get('error') or 'no answer'}",
                           "fix what is named above, then `mtcctl doctor` again (`mmcli -m any` shows what "
                           "ModemManager sees)"))
    if keystore.get("error"):
        if keystore["error"] == "permission denied":
            nxt = "run `mtcctl doctor` as root or as a member of service.admin_group"
        else:
            nxt = "see README \"At rest\": restore the state directory, or store each SIM's PIN again (`mtcctl pin set`)"
        out.append(Finding("keystore-unreadable", f"the keystore cannot be read: {keystore['error']}", nxt))
    if modem["reachable"]:
        sim = _sim_findings(modem, keystore, config, available)
        out += sim
        if sim and modem.get("radio") == 1:
            out.append(_radio_on(service))
    return out


def _radio_on(service: Mapping) -> Finding:
    """The radio on while the SIM is not in a state to be paired: the
    modem's power-on default, or a gate that did not close."""
    if service.get("running"):
        nxt = "`systemctl restart mtcd` (a new session switches the radio off first)"
    else:
        nxt = "`mtcd once` (it switches the radio off when it refuses) or start the service"
    return Finding("radio-on-unpaired", "the radio is on although the SIM is not paired by mtcd", nxt)


def _holder_name(holder: Mapping, role: str = "") -> str:
    extra = "".join(f", {part}" for part in (holder.get("unit"), role) if part)
    return f"{holder.get('name') or 'a process'} (pid {holder['pid']}{extra})"


def _is_modemmanager(holder: Mapping) -> bool:
    return (holder.get("name") or "").lower() == "modemmanager" or (holder.get("unit") or "").lower().startswith(
        "modemmanager")


def _port_findings(port: Mapping, service: Mapping) -> list[Finding]:
    out = []
    if not port["exists"]:
        out.append(Finding("port-missing", f"the modem port {port['path']} does not exist",
                           f"check the modem's USB cable and power, `ls -l /dev/serial/by-id/`, and the udev rule "
                           f"({UDEV_RULE}: its USB ids must match the modem)"))
    # The service holds the port by design; a pseudo-terminal's master end
    # is the (simulated) modem itself.
    others = [h for h in port.get("holders", []) if h["pid"] != service.get("pid") and not h.get("pty_master")]
    for holder in others:
        if _is_modemmanager(holder):
            out.append(Finding("port-held-by-modemmanager",
                               f"ModemManager holds the modem port (pid {holder['pid']}): it sends its own AT+CPIN "
                               "and switches the radio on",
                               f"install the udev rule that sets ID_MM_DEVICE_IGNORE (copy {UDEV_RULE} to "
                               "/etc/udev/rules.d/, adapt its USB ids), then `udevadm control --reload && "
                               "udevadm trigger` and `systemctl restart ModemManager`"))
        else:
            out.append(Finding("port-held", f"{_holder_name(holder)} holds the modem port",
                               f"stop that process (`kill {holder['pid']}`, or stop its unit) so mtcd can open the port"))
    if port.get("mm_ignore") is False and port.get("modemmanager_running"):
        out.append(Finding("modemmanager-not-told",
                           "ModemManager runs and the udev rule does not tell it to ignore the modem port",
                           f"copy {UDEV_RULE} to /etc/udev/rules.d/, adapt its USB ids, then "
                           "`udevadm control --reload && udevadm trigger`"))
    return out


def _modemmanager_findings(mm: Mapping, port: Mapping, config: Mapping) -> list[Finding]:
    """driver = "modemmanager": ModemManager must run and drive the modem
    on the configured port; mtcd's udev rule, which keeps it off, must not
    be in effect."""
    out = []
    rule = mm.get("udev_rule")
    if rule or port.get("mm_ignore"):
        where = rule or f"the port's udev property {port.get('mm_ignore_by')}"
        out.append(Finding("udev-rule-keeps-modemmanager-off",
                           f"mtcd's udev rule ({where}) tells ModemManager to ignore the modem, but driver = "
                           "\"modemmanager\" needs ModemManager to drive it",
                           f"mask the rule: `ln -s /dev/null /etc/udev/rules.d/{UDEV_RULE.rsplit('/', 1)[-1]} && "
                           "udevadm control --reload && udevadm trigger`"))
    if not mm.get("reachable"):
        out.append(Finding("modemmanager-unreachable",
                           f"ModemManager cannot be reached on the system bus: {mm.get('error') or 'no answer'}",
                           "`systemctl enable --now ModemManager` (driver = \"modemmanager\" talks to it over D-Bus)"))
    elif not mm.get("modem"):
        out.append(Finding("modemmanager-no-modem", f"ModemManager has no modem on {config.get('port')}",
                           "`mmcli -L` lists ModemManager's modems and `mmcli -m any` each one's primary port: "
                           "set [modem] port to it"))
    elif mm.get("plugin") and swap_blind(mm["plugin"]):
        # Any plugin not measured to report a swap is treated as one that
        # does not: a swap while the link is up waits for the next re-probe.
        how = "does not notice" if mm["plugin"] in NO_HOT_SWAP_PLUGINS else "is not known to notice"
        out.append(Finding("modemmanager-no-hot-swap",
                           f"ModemManager drives the modem with its {mm['plugin']} plugin, which {how} a "
                           "SIM swap: mtcd has it probe the modem again (about a second) before every decision and "
                           "every link it brings up, but a swap while the link is up is seen only at the next one",
                           "for a swap noticed within seconds use the serial driver with this modem (mtcd reads the "
                           "slot itself), or a modem whose ModemManager plugin reports SIM hot swap (see README "
                           "\"In front of ModemManager\")"))
    return out


def _unreachable(modem: Mapping, port: Mapping, service: Mapping) -> Finding:
    why = modem.get("error") or "no answer"
    if service.get("error_exit") == EXIT_NOPERM:
        nxt = "run `mtcctl doctor` as root or as a member of service.admin_group"
    elif service.get("running"):
        nxt = "see `journalctl -u mtcd`; the service reopens the modem by itself when it comes back"
    elif not port["exists"] or port.get("holders"):
        nxt = "fix the port first (above), then run `mtcctl doctor` again"
    else:
        nxt = "check the configured port ([modem] port) is the modem's AT port, and its baud rate"
    return Finding("modem-unreachable", f"the modem cannot be reached: {why}", nxt)


def _sim_findings(modem: Mapping, keystore: Mapping, config: Mapping, available: frozenset[str]) -> list[Finding]:
    out: list[Finding] = []
    state = modem.get("sim_state")
    iccid = modem.get("iccid")
    entry = keystore.get("entry")
    if state is None:
        return [Finding("sim-state-unreadable", "the SIM state (AT+CPIN?) cannot be read",
                        "run `mtcctl doctor` again; if it stays so, reseat the SIM and power-cycle the modem")]
    if state in ("NOT INSERTED", "NOT READY"):
        return [Finding("no-sim", "no SIM in the slot" if state == "NOT INSERTED" else "the SIM is not ready",
                        "insert the SIM (the service pairs it by itself; without the service: `mtcd once`)")]
    if state == "BUSY":
        return [Finding("sim-busy", "the SIM is still initialising", "run `mtcctl doctor` again in a few seconds")]
    if state not in _PRESENT_LOCKS:
        return [Finding("sim-state", f"the SIM reports {state}, which mtcd never answers",
                        "reseat the SIM or use one without that lock (a network or PH lock is lifted by the operator)")]
    if iccid is None:
        out.append(Finding("iccid-unreadable", "the SIM's ICCID cannot be read, so no stored PIN can be chosen",
                           "reseat the SIM and power-cycle the modem, then `mtcctl doctor` again"))
        return out
    pin_left, puk_left = modem.get("pin_attempts"), modem.get("puk_attempts")

    if state == "SIM PUK":
        if puk_left == 0:
            out.append(Finding("sim-dead", f"SIM {iccid} is blocked and has no PUK attempts left", "replace the SIM"))
        else:
            flag = " --allow-last-attempt" if puk_left == 1 else ""
            left = f" ({puk_left} PUK attempts left)" if puk_left is not None else ""
            out.append(Finding("sim-puk", f"SIM {iccid} is blocked and asks for its PUK{left}",
                               f"`mtcctl sim unblock{flag}` (PUK and a new PIN on stdin, two lines)"))
        return out

    if keystore.get("error"):
        return out  # what is stored for the SIM is not known: nothing to conclude from it
    if entry is None:
        if state == "READY" and modem.get("pin_enabled") is False:
            out.append(Finding("unknown-sim", f"no PIN is stored for SIM {iccid}, and its PIN is disabled",
                               "`mtcctl pair` (its PIN on stdin: enabled, then replaced by one unique to this gateway)"))
        else:
            out.append(Finding("unknown-sim", f"no PIN is stored for SIM {iccid}",
                               f"`mtcctl pair` (transport PIN on stdin, replaced by a fresh one) or "
                               f"`mtcctl pin set {iccid}` (PIN on stdin)"))
        return out

    if entry.get("state") == "rejected":
        out.append(Finding("pin-rejected", f"the stored PIN of SIM {iccid} was rejected by the card",
                           f"`mtcctl pin set {iccid}` with the right PIN (stdin); it lifts the latch"))
    elif entry.get("state") == "compromised":
        nxt = "`mtcctl pin rotate`" if state == "READY" else "it is rotated when the SIM is next paired (start the service)"
        out.append(Finding("pin-compromised", f"the stored PIN of SIM {iccid} is marked compromised", nxt))

    if state == "SIM PIN" and entry.get("state") != "rejected":
        guard = config.get("min_retries", 2)
        if pin_left is None:
            nxt = "use a modem with AT+CPINR, AT+CSIM or a vendor counter command"
            if "pin try" in available:
                nxt = f"`{try_command(None, guard)}` (only if you are certain the stored PIN is right), or {nxt}"
            out.append(Finding("attempts-unreadable",
                               f"SIM {iccid} asks for its PIN, but its attempts left cannot be read: mtcd presents "
                               "nothing without a counter", nxt))
        elif pin_left < guard:
            if "pin try" in available:
                nxt = f"`{try_command(pin_left, guard)}` (only if you are certain the stored PIN is right)"
            else:
                nxt = ("no mtcd command presents a PIN below the guard; once the card asks for its PUK, "
                       "`mtcctl sim unblock`")
            out.append(Finding("retry-guard",
                               f"SIM {iccid} has {pin_left} PIN attempt{'s' if pin_left != 1 else ''} left, below the "
                               f"guard (policy.min_retries = {guard}): the stored PIN is not presented", nxt))

    if state == "READY" and modem.get("pin_enabled") is False and config.get("require_pin_enabled", True):
        if entry.get("transport"):
            nxt = "`mtcctl pair` (the transport PIN on stdin: PIN enabled, then replaced)"
        else:
            nxt = f"`mtcctl pin forget {iccid}`, then `mtcctl pair` with the card's PIN on stdin"
        out.append(Finding("pin-disabled", f"the PIN check of SIM {iccid} is switched off", nxt))

    last_imei, imei = entry.get("last_imei"), modem.get("imei")
    if config.get("on_imei_change") == "refuse" and last_imei and imei and last_imei != imei:
        out.append(Finding("imei-changed", f"SIM {iccid} was last paired with IMEI {last_imei}, this modem is {imei}",
                           f"if the move is intended: `mtcctl pin set {iccid}` (PIN on stdin)"))
    return out


def exit_code(facts: Mapping, found: Sequence[Finding]) -> int:
    """69: the modem could not be reached at all; 1: problems found; 0: none."""
    if not facts["modem"]["reachable"]:
        return EXIT_UNAVAILABLE
    return EXIT_REFUSED if found else EXIT_OK


def report(facts: Mapping, found: Sequence[Finding]) -> dict:
    """The `--json` object: the facts, the findings, the exit code."""
    return {**facts, "problems": [f.as_json() for f in found], "exit": exit_code(facts, found)}


# -- the human form ------------------------------------------------------------------

def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


def _modem_value(modem: Mapping, key: str) -> str:
    value = modem.get(key)
    if value is None:
        why = (modem.get("unreadable") or {}).get(key)
        return f"unreadable ({why})" if why else "not asked"
    if key == "dialect":
        reason = modem.get("dialect_reason")
        return f"{value} ({reason})" if reason else str(value)
    if key in ("pin_attempts", "puk_attempts"):
        source = modem.get(f"{key}_source")
        return f"{value} (from {source})" if source else str(value)
    if key == "pin_enabled":
        return _yes_no(value)
    if key == "card_pairing_record":
        return str(value.get("summary") or "read")
    if key == "radio":
        return radio_text(value)
    if key == "registration":
        eps = modem.get("eps_registration")
        text = f"{registration_text(value)} (CREG)"
        return text + (f"; {registration_text(eps)} (CEREG)" if eps is not None else "")
    if key == "signal_rssi":
        return signal_text(value)
    return str(value)


def _port_lines(port: Mapping, service: Mapping) -> list[tuple[str, str]]:
    where = port["path"]
    if port.get("target"):
        where += f" -> {port['target']}"
    if not port["exists"]:
        where += " (missing)"
    holders = port.get("holders") or []
    held = "; ".join(_holder_name(h, _holder_role(h, service)) for h in holders)
    ignore = port.get("mm_ignore")
    if ignore is None:
        mm = "unknown (" + (port.get("mm_ignore_why") or "udevadm not available") + ")"
    elif ignore:
        mm = f"told to ignore the port ({port.get('mm_ignore_by')})"
    else:
        mm = "not told to ignore the port"
    if port.get("modemmanager_running") is not None:
        mm += "; ModemManager " + ("is running" if port["modemmanager_running"] else "is not running")
    return [("port", where), ("port held by", held or "nobody else"), ("ModemManager", mm)]


def _modemmanager_lines(port: Mapping, mm: Mapping) -> list[tuple[str, str]]:
    if not mm.get("reachable"):
        text = f"not reachable ({mm.get('error') or 'no answer'})"
    else:
        text = f"{mm.get('version') or 'version unknown'}"
        if mm.get("modem"):
            text += (f"; modem {mm['modem']} (plugin {mm.get('plugin') or 'unknown'}, primary port "
                     f"{mm.get('primary_port') or 'unknown'}), {mm.get('state') or 'state unknown'}")
        else:
            text += "; no modem on the configured port"
    rule = mm.get("udev_rule")
    return [("port", port["path"] + ("" if port["exists"] else " (missing)")), ("ModemManager", text),
            ("udev rule", f"{rule} (not wanted with this driver)" if rule else
             "not in effect (right: ModemManager drives the modem)")]


def _holder_role(holder: Mapping, service: Mapping) -> str:
    if holder["pid"] == service.get("pid"):
        return "the service"
    if holder.get("pty_master"):
        return "the pseudo-terminal's master: a simulated modem"
    return ""


def _service_text(service: Mapping) -> str:
    if not service.get("running"):
        return "not running"
    text = "running" + (f" (pid {service['pid']})" if service.get("pid") else "")
    if service.get("status"):
        text += f": {service['status']}"
    if service.get("error"):
        text += f" (control socket: {service['error']})"
    return text


def _decision_text(last: Mapping | None) -> str:
    if not last:
        return "none yet"
    what = str(last.get("outcome") or "unknown")
    if last.get("reason"):
        what += f" ({last['reason']})"
    parts = [what]
    if last.get("time"):
        parts.append(f"at {last['time']}")
    if last.get("iccid"):
        parts.append(f"ICCID {last['iccid']}")
    return " ".join(parts)


def render(facts: Mapping, found: Sequence[Finding]) -> list[str]:
    """Aligned "label: value" lines, then one line per problem."""
    config, port, service = facts["config"], facts["port"], facts["service"]
    modem, keystore = facts["modem"], facts["keystore"]
    rows: list[tuple[str, str]] = [("config", str(config["path"]))]
    mm = facts.get("modemmanager")
    rows += _port_lines(port, service) if mm is None else _modemmanager_lines(port, mm)
    rows.append(("service", _service_text(service)))
    if modem["reachable"]:
        via = {"service": "through the service", "modemmanager": "through ModemManager (D-Bus)"}
        rows.append(("modem", via.get(modem.get("via"), "opened directly")
                     + (" (ModemManager's properties)" if mm is not None and modem.get("via") == "service" else "")))
        rows += [(label, _modem_value(modem, key)) for key, label in MODEM_FACTS]
    else:
        rows.append(("modem", f"unreachable: {modem.get('error') or 'no answer'}"))
    if keystore.get("error"):
        rows.append(("keystore", f"unreadable: {keystore['error']}"))
    else:
        rows.append(("sealer", str(keystore.get("sealer") or "unknown")))
        rows.append(("stored PINs", str(keystore.get("stored_pins", 0))))
        if modem.get("iccid"):
            rows.append(("keystore entry", entry_summary(keystore.get("entry"))))
    rows.append(("last decision", _decision_text(facts.get("last_decision"))))
    width = max(len(label) for label, _ in rows) + 1
    lines = [f"{label + ':':<{width}} {value}" for label, value in rows]
    if found:
        lines.append(f"{'problems:':<{width}} {len(found)}")
        lines += [f"  {f.problem} -> {f.next}" for f in found]
    else:
        lines.append(f"{'problems:':<{width}} none")
    return lines
