"""`mtcctl`: local maintenance for field technicians and device agents.

    mtcctl [--config PATH] pin set ICCID     PIN from stdin (or a no-echo prompt on a TTY)
    mtcctl [--config PATH] pin list [--json] ICCIDs and dates, never PINs
    mtcctl [--config PATH] status [--json]   last decision, stored PINs
    mtcctl [--config PATH] history [--json]  the pairing journal

Exit codes: 0 done, 64 usage, 65 bad PIN/ICCID input or damaged keystore,
74 state directory not writable, 78 configuration error.
A PIN is never taken from argv or the environment: those are visible to
every user through /proc.
"""

from __future__ import annotations

import getpass
import sys

from ..errors import EXIT_DATAERR, EXIT_OK, MtcdError, UsageError
from ..identity import Iccid
from ..journal import PairingJournal
from ..sealers import open_keystore
from ..secret import Pin
from .common import ArgumentParser, add_config_option, config_from, print_json, run_main, setup_logging

PROG = "mtcctl"


class BadInput(MtcdError):
    exit_code = EXIT_DATAERR


def _parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="mtcd maintenance")
    add_config_option(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    pin = sub.add_parser("pin", help="stored PINs")
    pin_sub = pin.add_subparsers(dest="pin_command", metavar="ACTION")
    pin_sub.required = True
    pin_set = pin_sub.add_parser("set", help="store the PIN for a SIM (PIN read from stdin)")
    pin_set.add_argument("iccid")
    pin_list = pin_sub.add_parser("list", help="list SIMs with a stored PIN")
    pin_list.add_argument("--json", action="store_true")
    status = sub.add_parser("status", help="last pairing decision and keystore summary")
    status.add_argument("--json", action="store_true")
    history = sub.add_parser("history", help="the pairing journal")
    history.add_argument("--json", action="store_true")
    return parser


def _iccid(text: str) -> Iccid:
    try:
        return Iccid(text)
    except ValueError as exc:
        raise BadInput(f"invalid ICCID: {exc}") from None


def read_pin(prompt: str) -> Pin:
    """One PIN from a no-echo prompt on a terminal, else one line of stdin."""
    if sys.stdin.isatty():
        text = getpass.getpass(prompt)
    else:
        text = sys.stdin.readline()
    text = text.strip()
    if not text:
        raise BadInput("no PIN given on standard input")
    try:
        return Pin(text)
    except ValueError as exc:  # the message names the rule, never the value
        raise BadInput(f"invalid PIN: {exc}") from None


def _pin_set(config, args) -> int:
    iccid = _iccid(args.iccid)
    pin = read_pin(f"PIN for SIM {iccid}: ")
    keystore = open_keystore(config.state_dir, config.keystore.sealer)[0]
    replaced = keystore.get(iccid) is not None
    keystore.set_pin(iccid, pin)
    PairingJournal(config.state_dir).append("pin-set", iccid=str(iccid), replaced=replaced)
    print(f"stored the PIN for {iccid}" + (" (replaced the previous one)" if replaced else ""))
    return EXIT_OK


def _entry_view(entry) -> dict:
    return {
        "iccid": str(entry.iccid),
        "state": entry.state,
        "created": entry.created,
        "updated": entry.updated,
        "last_imei": entry.last_imei,
    }


def _pin_list(config, args) -> int:
    entries = [_entry_view(e) for e in open_keystore(config.state_dir, config.keystore.sealer)[0].entries()]
    if args.json:
        print_json(entries)
        return EXIT_OK
    if not entries:
        print("no PINs stored")
    for e in entries:
        print(f"{e['iccid']}  {e['state']:<9} created {e['created']}  updated {e['updated']}")
    return EXIT_OK


def _status(config, args) -> int:
    keystore, sealer = open_keystore(config.state_dir, config.keystore.sealer)
    last = PairingJournal(config.state_dir).last("decision")
    status = {
        "state_dir": str(config.state_dir),
        "modem_port": config.modem.port,
        "sealer": sealer.describe(),
        "stored_pins": len(keystore),
        "last_decision": last,
    }
    if args.json:
        print_json(status)
        return EXIT_OK
    print(f"modem port:   {status['modem_port']}")
    print(f"state dir:    {status['state_dir']} (sealer: {status['sealer']})")
    print(f"stored PINs:  {status['stored_pins']}")
    if last is None:
        print("last decision: none yet")
    else:
        what = last.get("outcome")
        if last.get("reason"):
            what += f" ({last['reason']})"
        print(f"last decision: {what} at {last.get('time')}, ICCID {last.get('iccid')}, IMEI {last.get('imei')}")
    return EXIT_OK


def _history(config, args) -> int:
    events = PairingJournal(config.state_dir).events()
    if args.json:
        print_json(events)
        return EXIT_OK
    for ev in events:
        rest = " ".join(f"{k}={v}" for k, v in ev.items() if k not in ("time", "event") and v is not None)
        print(f"{ev.get('time')}  {ev.get('event'):<20} {rest}")
    return EXIT_OK


def _body(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    setup_logging(PROG, args.verbose)
    config = config_from(args)
    if args.command == "pin":
        return {"set": _pin_set, "list": _pin_list}[args.pin_command](config, args)
    if args.command == "status":
        return _status(config, args)
    if args.command == "history":
        return _history(config, args)
    raise UsageError(f"unknown command {args.command}")


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, _body, argv)


if __name__ == "__main__":
    sys.exit(main())
