"""`mtcctl`: local maintenance for field technicians and device agents.

    mtcctl pin set ICCID [--transport] [--json]  PIN from stdin (or a no-echo prompt on a TTY)
    mtcctl pin list [--json]             ICCIDs, states and dates, never PINs
    mtcctl pin stage ICCID [--json]      the PIN an over-the-air change will set (stdin)
    mtcctl pin rotate [--length N] [--json]  change the inserted SIM's PIN now
    mtcctl pin forget ICCID [--yes] [--json]  drop a stored PIN
    mtcctl pin try [--below-guard] [--last-attempt] [--unsettled] [--yes] [--json]
                                         present the inserted SIM's stored PIN once, now
    mtcctl pair [--yes] [--json]         adopt the inserted SIM (transport PIN on stdin)
    mtcctl repair [--json]               take a pairing decision now
    mtcctl compromise [--json]           presume every stored PIN known; rotate them
    mtcctl sim unblock [--allow-last-attempt] [--iccid ICCID]  PUK and new PIN on stdin, two lines
    mtcctl sim pairing-status [--json]   the card's own pairing record (EF-IPS), read-only
    mtcctl status [--json]               last decision, stored PINs, sealer
    mtcctl history [--limit N] [--since WHEN] [--follow] [--json]  the pairing journal, newest N
                                         events (--json: one object a line), then new ones (--follow)
    mtcctl doctor [--json]               read-only check; what to run next for each problem
    mtcctl log-level LEVEL [--json]      the running service's log level: debug, info,
                                         warning, error, or reset (the configured one)
    mtcctl datalink release [--json]     give NetworkManager back its autoconnect and WWAN values
(all take --config PATH; with --json every outcome, errors included, is one
JSON object on stdout: docs/json/, mtcd/cli/jsonout.py)

Exit codes: 0 done, 1 refused (the SIM or the store is not in a state for
it; the reason is printed), 64 usage, 65 bad PIN/ICCID input or damaged
keystore, 69 modem unavailable, 74 state directory not writable or stdout
not writable, 75 the card's answer to a PIN change was lost (the next
pairing settles it), 77 not allowed on the service's control socket or in
root's state directory, 78 configuration error, 141 stdout's reader went away.
While `mtcd run` holds the modem, commands that need it go through the
service's control socket; otherwise mtcctl opens the modem itself.
A PIN is never taken from argv or the environment: those are visible to
every user through /proc.
"""

from __future__ import annotations

import getpass
import json
import os
import sys

from ..errors import EXIT_DATAERR, EXIT_OK, EXIT_TEMPFAIL, ModemUnavailable, MtcdError, UsageError
from ..identity import Iccid
from ..secret import Pin, Puk
from ..logsetup import LEVEL_NAMES, RESET
from .common import ArgumentParser, add_version_option, add_config_option, config_from, print_json, run_main, setup_logging

PROG = "mtcctl"


class BadInput(MtcdError):
    exit_code = EXIT_DATAERR
    code = "bad-input"


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="mtcd maintenance")
    add_version_option(parser)
    add_config_option(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    pin = sub.add_parser("pin", help="stored PINs")
    pin_sub = pin.add_subparsers(dest="pin_command", metavar="ACTION")
    pin_sub.required = True
    pin_set = pin_sub.add_parser("set", help="store the PIN for a SIM (PIN read from stdin)")
    pin_set.add_argument("iccid", help=_ICCID_HELP)
    pin_set.add_argument("--transport", action="store_true",
                         help="it is the operator's transport PIN: replace it when the SIM is first paired")
    pin_set.add_argument("--yes", action="store_true", help="on a terminal, ask for the PIN once, not twice")
    pin_set.add_argument("--json", action="store_true")
    pin_list = pin_sub.add_parser("list", help="list SIMs with a stored PIN")
    pin_list.add_argument("--json", action="store_true")
    pin_stage = pin_sub.add_parser("stage", help="store the PIN an over-the-air change is about to set (stdin)")
    pin_stage.add_argument("iccid", help=_ICCID_HELP)
    pin_stage.add_argument("--json", action="store_true")
    pin_rotate = pin_sub.add_parser("rotate", help="change the inserted SIM's PIN to a fresh random one")
    pin_rotate.add_argument("--length", type=int, choices=range(4, 9), metavar="4..8",
                            help="digits of the new PIN (default policy.pin_length)")
    pin_rotate.add_argument("--json", action="store_true")
    pin_forget = pin_sub.add_parser("forget", help="drop the PIN stored for a SIM")
    pin_forget.add_argument("iccid", help=_ICCID_HELP)
    pin_forget.add_argument("--json", action="store_true")
    pin_forget.add_argument("--yes", action="store_true",
                            help="forget it even if it is the inserted, paired SIM (no question asked)")
    _add_pin_try(pin_sub)
    adopt = sub.add_parser("pair", help="adopt the inserted SIM: transport PIN on stdin, replaced by a fresh one")
    adopt.add_argument("--json", action="store_true")
    adopt.add_argument("--yes", action="store_true", help="on a terminal, ask for the PIN once, not twice")
    repair = sub.add_parser("repair", help="take a pairing decision now (through the service if it runs) and print it")
    repair.add_argument("--json", action="store_true", help="print the decision as one JSON object")
    compromise = sub.add_parser("compromise", help="presume every stored PIN known to an attacker; rotate them")
    compromise.add_argument("--json", action="store_true")
    sim = sub.add_parser("sim", help="the inserted SIM")
    sim_sub = sim.add_subparsers(dest="sim_command", metavar="ACTION")
    sim_sub.required = True
    unblock = sim_sub.add_parser("unblock", help="unblock with the PUK (PUK and new PIN on stdin, two lines)")
    unblock.add_argument("--allow-last-attempt", action="store_true",
                         help="send the PUK even when the card has one PUK attempt left")
    unblock.add_argument("--iccid", metavar="ICCID",
                         help="the SIM the PUK is for: nothing is sent when the card in the slot is another")
    unblock.add_argument("--json", action="store_true")
    pairing = sim_sub.add_parser("pairing-status", help="the card's own pairing record (EF-IPS, EF-IPD), read-only")
    pairing.add_argument("--json", action="store_true", help="one JSON object")
    status = sub.add_parser("status", help="last pairing decision and keystore summary")
    status.add_argument("--json", action="store_true")
    history = sub.add_parser("history", help="the pairing journal (the newest events, oldest first)")
    history.add_argument("--json", action="store_true")
    history.add_argument("--limit", type=_history_limit, default=50, metavar="N",
                         help="at most N events, the newest (default 50; 0: all)")
    history.add_argument("--since", type=_history_since, metavar="WHEN",
                         help='only events at or after WHEN: an ISO date or time (UTC unless given), or a duration such as "7d", "12h"')
    history.add_argument("--follow", action="store_true",
                         help="then keep printing new events as they are journaled, until interrupted")
    doctor = sub.add_parser("doctor", help="read-only check of modem, SIM, port, service and keystore, "
                                           "with what to run next for each problem (exit 1: problems found)")
    doctor.add_argument("--json", action="store_true", help="one JSON object with stable keys")
    log_level = sub.add_parser("log-level", help="change the running service's log level, without a restart")
    log_level.add_argument("level", choices=(*LEVEL_NAMES, RESET), metavar="LEVEL",
                           help="debug (with the AT traces), info, warning, error, or reset (the configured level)")
    log_level.add_argument("--json", action="store_true", help='print {"ok": true, "level": ...}')
    from .datalink_release import add_parser as add_datalink_parser

    add_datalink_parser(sub)
    return parser


_ICCID_HELP = "the SIM's ICCID (printed on the card, or read with AT+CCID)"


def _add_pin_try(pin_sub) -> None:
    pin_try = pin_sub.add_parser(
        "try", help="present the inserted SIM's stored PIN once, now (never a rejected PIN, never a PUK)")
    pin_try.add_argument("--below-guard", action="store_true",
                         help="also when fewer attempts than policy.min_retries are left, or their count is "
                              "unknown (asks to confirm on a terminal)")
    pin_try.add_argument("--last-attempt", action="store_true",
                         help="also on the SIM's last PIN attempt (a wrong PIN then PUK-blocks it)")
    pin_try.add_argument("--unsettled", action="store_true",
                         help="also a stored PIN whose earlier attempt was never settled, when nobody knows it "
                              "(the card may have refused it: a wrong one may PUK-block the SIM)")
    pin_try.add_argument("--yes", action="store_true", help="confirm without being asked (scripts)")
    pin_try.add_argument("--json", action="store_true", help="print the outcome as one JSON object")


def _iccid(text: str) -> Iccid:
    try:
        return Iccid(text)
    except ValueError as exc:
        raise BadInput(f"invalid ICCID: {exc}") from None


_MAX_SECRET_LINE = 1024


def read_secret(kind, prompt: str):
    """One PIN or PUK from a no-echo prompt on a terminal, else one line of stdin."""
    stdin = sys.stdin  # None when started with file descriptor 0 closed
    try:
        if stdin is not None and stdin.isatty():
            text = getpass.getpass(prompt)
        else:
            # Bounded: a PIN is short, and `< /dev/zero` must not eat memory.
            text = stdin.readline(_MAX_SECRET_LINE) if stdin is not None else ""
    except (OSError, ValueError, UnicodeDecodeError):
        text = ""
    text = text.strip()
    if not text:
        raise BadInput(f"no {kind.kind} given on standard input")
    try:
        return kind(text)
    except ValueError as exc:  # the message names the rule, never the value
        raise BadInput(f"invalid {kind.kind}: {exc}") from None


def read_pin(prompt: str) -> Pin:
    return read_secret(Pin, prompt)


def _pin_set(config, args) -> int:
    iccid = _iccid(args.iccid)
    pin = read_pin_confirmed(read_secret, f"PIN for SIM {iccid}: ", args.yes)
    keystore = open_keystore(config.state_dir, config.keystore.sealer)[0]
    replaced = keystore.get(iccid) is not None
    keystore.set_pin(iccid, pin, transport=args.transport)
    PairingJournal(config.state_dir).append("pin-set", iccid=str(iccid), replaced=replaced, transport=args.transport)
    detail = f"stored the PIN for {iccid}" + (" (replaced the previous one)" if replaced else "")
    if args.json:
        print_json({"iccid": str(iccid), "outcome": "stored", "replaced": replaced, "transport": args.transport,
                    "detail": detail})
    else:
        print(detail)
    return EXIT_OK


def _entry_view(entry) -> dict:
    return {
        "iccid": str(entry.iccid),
        "state": entry.state,
        "pending": entry.pending_origin,  # null, "rotation" or "staged"
        # The PIN the card was last seen to accept is kept (sealed) until it
        # proves the current one: the last change had only the modem's OK.
        "fallback": entry.fallback_pin is not None,
        "transport": entry.transport,
        "created": entry.created,
        "updated": entry.updated,
        "rotated": entry.rotated,
        "last_imei": entry.last_imei,
    }


def _pin_list(config, args) -> int:
    from ..sealers import open_keystore

    entries = [_entry_view(e) for e in open_keystore(config.state_dir, config.keystore.sealer)[0].entries()]
    if args.json:
        # One object, as every --json output; the entries under "pins".
        print_json({"pins": entries})
        return EXIT_OK
    if not entries:
        print("no PINs stored")
    width = max((len(e["iccid"]) for e in entries), default=0)
    for e in entries:
        marks = [m for m, on in (("pending " + str(e["pending"]), e["pending"]),
                                 ("old PIN kept until the card proves the new one", e["fallback"]),
                                 ("transport PIN", e["transport"])) if on]
        extra = f"  ({', '.join(marks)})" if marks else ""
        created = f"created {e['created']}" if e["created"] else "created at an unknown time"
        changed = f"changed {e['rotated']}" if e["rotated"] else "never changed"
        print(f"{e['iccid']:<{width}}  {e['state']:<11} {created}  {changed}{extra}")
    return EXIT_OK


def _result(args, iccid, outcome: str, detail: str) -> int:
    """A change made here, printed as the service would answer it."""
    return _print_result(args, {"iccid": str(iccid) if iccid else None, "outcome": outcome, "detail": detail})


def _running_service(config):
    """A client of the running service, or None when none runs (then mtcctl
    opens the modem itself; the port's exclusive lock keeps it single)."""
    try:
        os.lstat(config.service.control_socket)
    except (FileNotFoundError, NotADirectoryError):
        return None  # no socket, no service: the offline commands never load the control stack
    except OSError:
        pass  # e.g. not allowed to look: the client says so
    from ..control import ControlClient

    client = ControlClient(config.service.control_socket)
    return client if client.available() else None


def _print_result(args, result: dict) -> int:
    # A change whose answer was lost is not done: the agent tries again
    # after the next pairing has settled which PIN the card holds.
    code = EXIT_TEMPFAIL if result.get("outcome") == "interrupted" else EXIT_OK
    if args.json:
        print_json(result, code, error="change-lost")
    else:
        print(result.get("detail") or _said(result))
    return code


def _said(result: dict) -> str:
    """A result without a detail, as words: its known fields, never "None"."""
    return ", ".join(f"{k} {v}" for k, v in result.items() if v is not None and v != "") or "done"


def _pin_stage(config, args) -> int:
    check_change_allowed(config.policy)
    iccid = _iccid(args.iccid)
    pin = read_pin(f"new PIN for SIM {iccid}: ")
    service = _running_service(config)
    if service is not None:
        return _print_result(args, service.call("stage", iccid=iccid, pin=pin))
    keystore = open_keystore(config.state_dir, config.keystore.sealer)[0]
    result = stage(keystore, PairingJournal(config.state_dir), config.policy, iccid, pin)
    return _result(args, iccid, result.outcome, result.detail)


def _pin_forget(config, args) -> int:
    iccid = _iccid(args.iccid)
    keystore = open_keystore(config.state_dir, config.keystore.sealer)[0]
    warning = forget_warning(config, iccid, _running_service(config)) if iccid in keystore else None
    if warning is not None:
        confirm(warning, str(iccid), args.yes, f"the PIN of {iccid} was not forgotten")
    forgotten = keystore.forget(iccid)
    if forgotten:
        PairingJournal(config.state_dir).append("pin-forgotten", iccid=str(iccid))
    detail = f"forgot the PIN of {iccid}" if forgotten else f"no PIN was stored for {iccid}"
    if args.json:
        print_json({"iccid": str(iccid), "outcome": "forgotten" if forgotten else "not-stored", "detail": detail})
    else:
        print(detail)
    return EXIT_OK


def _with_paired_sim(config, action):
    """Open the modem (the service must not hold it), pair the inserted SIM
    without bringing a link up, run `action`, and leave the radio off."""
    with Gateway(config) as gateway:
        gateway.start()
        with gateway.card_command():
            outcome = gateway.pair()
            if not outcome.paired:
                sim = f"SIM {outcome.iccid}" if outcome.iccid else "SIM"
                refused = LifecycleRefused(f"the inserted {sim} is not paired: {outcome.reason.value}: "
                                           f"{outcome.decision.detail}")
                _refusal_details(refused, outcome)
                raise refused
            return outcome.iccid, action(gateway)


def _pin_rotate(config, args) -> int:
    service = _running_service(config)
    if service is not None:
        return _print_result(args, service.call("rotate", length=args.length))
    iccid, result = _with_paired_sim(config, lambda g: g.lifecycle().rotate(REQUESTED, args.length))
    return _result(args, iccid, result.outcome, result.detail)


def _adopt(config, args) -> int:
    pin = read_pin_confirmed(read_secret, "transport PIN of the inserted SIM: ", args.yes)
    service = _running_service(config)
    if service is not None:
        result = service.call("adopt", transport_pin=pin)
        result["detail"] = f"adopted {result['iccid']}: {result['detail']}"
        return _print_result(args, result)
    with Gateway(config) as gateway:
        gateway.start()
        tried = []

        def pair():
            tried.append(gateway.pair())
            return tried[-1]

        with gateway.card_command():
            try:
                result = gateway.lifecycle().adopt(pin, pair)
            except LifecycleRefused as exc:
                _refusal_details(exc, tried[-1] if tried else None)
                raise
            iccid = gateway.uicc.iccid()
    return _result(args, iccid, result.outcome, f"adopted {iccid}: " + result.detail)


def _refusal_details(exc: LifecycleRefused, outcome) -> None:
    """For --json: the gate's reason and the SIM, when a pairing refused it."""
    if outcome is not None and not outcome.paired and getattr(exc, "details", None) is None:
        exc.details = {"reason": outcome.reason.value if outcome.reason else None,
                       "iccid": str(outcome.iccid) if outcome.iccid else None}


def _compromise(config, args) -> int:
    service = _running_service(config)
    if service is not None:
        return _print_result(args, service.call("compromise"))
    keystore = open_keystore(config.state_dir, config.keystore.sealer)[0]
    marked = keystore.mark_compromised()
    PairingJournal(config.state_dir).append("pins-compromised", count=marked)
    try:
        iccid, result = _with_paired_sim(config, lambda g: g.lifecycle().rotate(COMPROMISED))
    except (ModemUnavailable, LifecycleRefused) as exc:
        again = type(exc)(
            f"{_pins(marked)} marked compromised (each is rotated when its SIM is next paired); "
            f"the inserted SIM was not rotated now: {exc}"
        )
        again.details = getattr(exc, "details", None)
        raise again from None
    return _result(args, iccid, result.outcome, f"{_pins(marked)} marked compromised; inserted SIM: {result.detail}")


def _pins(count: int) -> str:
    return f"{count} stored PIN" + ("" if count == 1 else "s")


def _unblock(config, args) -> int:
    args.iccid = _iccid(args.iccid) if args.iccid is not None else None
    puk = read_secret(Puk, "PUK: ")
    new_pin = read_secret(Pin, "new PIN: ")
    service = _running_service(config)
    if service is not None:
        fields = {"iccid": str(args.iccid)} if args.iccid is not None else {}
        return _print_result(args, service.call("unblock", puk=puk, new_pin=new_pin,
                                                allow_last_attempt=args.allow_last_attempt, **fields))
    with Gateway(config) as gateway:
        gateway.start()
        with gateway.card_command():
            result = gateway.lifecycle().unblock(puk, new_pin, args.allow_last_attempt, args.iccid)
            iccid = gateway.uicc.iccid()
    return _result(args, iccid, result.outcome, result.detail)


def _status(config, args) -> int:
    from ..journal import PairingJournal
    from ..sealers import open_keystore

    keystore, sealer = open_keystore(config.state_dir, config.keystore.sealer)
    # From the journal's summary file; None when unknown (never an error).
    last = PairingJournal(config.state_dir).last("decision")
    if last is not None:
        last = _imsi_shown(last, config.service.show_imsi)
    status = {
        "state_dir": str(config.state_dir),
        "modem_port": config.modem.port,
        "sealer": sealer.describe(),
        "stored_pins": len(keystore),
        "last_decision": last,
        "service": None,
    }
    service = _running_service(config)
    if service is not None:
        status["service"] = service.call("status")
    if args.json:
        print_json(status)
        return EXIT_OK
    live = status["service"]
    rows = [
        ("modem port", status["modem_port"]),
        ("state dir", f"{status['state_dir']} (sealer: {status['sealer']})"),
        ("stored PINs", status["stored_pins"]),
        ("service", (live.get("status") or "running") if live else "not running"),
        ("last decision", _decision_line(last)),
    ]
    for label, value in rows:
        print(f"{label + ':':<15}{value}")
    return EXIT_OK


def _decision_line(last: dict | None) -> str:
    """The last decision in words; a value the journal lacks is left out."""
    if last is None:
        return "none yet"
    what = str(last.get("outcome") or "unknown")
    if last.get("reason"):
        what += f" ({last['reason']})"
    if last.get("time"):
        what += f" at {last['time']}"
    known = [f"{name} {last[key]}" for name, key in (("ICCID", "iccid"), ("IMEI", "imei")) if last.get(key)]
    return ", ".join([what, *known])


def _history_limit(text: str) -> int:
    import argparse

    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"--limit must be a whole number >= 0 (got {text!r})")
    return int(text)


def _history_since(text: str):
    """An ISO date or time (UTC when no zone is given), or a duration back from now."""
    import argparse
    from datetime import datetime, timedelta, timezone

    from ..config import _Bad, _duration

    try:
        seconds = _duration(text) if text != "off" else None
    except _Bad:
        seconds = None
    if seconds is not None:
        return datetime.now(timezone.utc) - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'--since must be an ISO date or time, or a duration such as "7d" or "12h" (got {text!r})'
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _imsi_shown(record: dict, show_imsi: bool) -> dict:
    """A record as it may be shown: an IMSI journaled in full (before
    show_imsi was honoured, or with it on) is masked unless show_imsi."""
    from ..events import masked_imsi

    imsi = record.get("imsi")
    if show_imsi or not isinstance(imsi, str) or "*" in imsi:
        return record
    return {**record, "imsi": masked_imsi(imsi)}


def _history(config, args) -> int:
    from ..journal import PairingJournal

    journal = PairingJournal(config.state_dir)

    def show(ev: dict) -> None:
        ev = _imsi_shown(ev, config.service.show_imsi)
        if args.json:
            # JSON lines: one event object per line, as journaled.
            print(json.dumps(ev), flush=args.follow)
        else:
            rest = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("time", "event") and v is not None)
            print(f"{ev.get('time') or '?':<29}  {ev.get('event') or '?':<24} {rest}".rstrip(), flush=args.follow)

    if not args.follow:
        for ev in journal.recent(args.limit or None, args.since):
            show(ev)
        return EXIT_OK
    from .follow import follow_journal

    return follow_journal(journal, lambda: journal.recent(args.limit or None, args.since), show, args.since)


def _log_level(config, args) -> int:
    """Only the running service has a level to change: no fallback here."""
    service = _running_service(config)
    if service is None:
        raise ControlUnavailable(f"the service is not running (nothing listens on {config.service.control_socket})")
    level = service.call("log-level", level=args.level)["level"]
    if args.json:
        print_json({"ok": True, "level": level})
    else:
        print(f"log level: {level}")
    return EXIT_OK


def _import_the_stack() -> None:
    """The modules the commands work with (keystore, sealers, the service,
    the control socket), imported once the arguments and the configuration
    were read: --help, usage and configuration errors need none of them."""
    global PairingJournal, open_keystore, COMPROMISED, REQUESTED, LifecycleRefused, check_change_allowed, stage
    global ControlClient, ControlUnavailable, Gateway, confirm, forget_warning, pin_try, read_pin_confirmed, repair
    from ..control import ControlClient, ControlUnavailable
    from ..journal import PairingJournal
    from ..lifecycle import COMPROMISED, REQUESTED, LifecycleRefused, check_change_allowed, stage
    from ..sealers import open_keystore
    from ..service import Gateway
    from .recovery import confirm, forget_warning, pin_try, read_pin_confirmed, repair


# Commands that read the state directory only: each imports what it needs
# itself, never the service, the modem or the control stack (unless a
# service's socket is there), so a 512 MB gateway pays for the store alone.
_OFFLINE = {("pin", "list"): _pin_list, ("status", None): _status, ("history", None): _history}


def _body(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    setup_logging(PROG, args.verbose)
    config = config_from(args)
    if (args.command, getattr(args, "pin_command", None)) in _OFFLINE:
        return _OFFLINE[args.command, getattr(args, "pin_command", None)](config, args)
    _import_the_stack()
    if args.command == "pin":
        actions = {"set": _pin_set, "list": _pin_list, "stage": _pin_stage, "rotate": _pin_rotate, "forget": _pin_forget,
                   "try": lambda c, a: pin_try(c, a, _running_service)}
        return actions[args.pin_command](config, args)
    if args.command == "pair":
        return _adopt(config, args)
    if args.command == "repair":
        return repair(config, args, _running_service)
    if args.command == "compromise":
        return _compromise(config, args)
    if args.command == "sim" and args.sim_command == "pairing-status":
        from .pairing_status import pairing_status

        return pairing_status(config, args)
    if args.command == "sim":
        return _unblock(config, args)
    if args.command == "status":
        return _status(config, args)
    if args.command == "history":
        return _history(config, args)
    if args.command == "doctor":
        from .common import _leaves
        from .doctor import doctor

        return doctor(config, args, {" ".join(words) for words, _ in _leaves(_parser())})
    if args.command == "log-level":
        return _log_level(config, args)
    if args.command == "datalink":
        from .datalink_release import release

        return release(config, args, _running_service)
    raise UsageError(f"unknown command {args.command}")


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    sys.exit(main())
