"""mtcd-sim: create a simulated SIM card and serve a simulated modem, for
development, tests and rehearsal (never on a production gateway).

    mtcd-sim card --state FILE --iccid ICCID --imsi IMSI [--pin-disabled]
                  [--pin-attempts N] [--puk-attempts N] [--force]
        The card's PIN is read from stdin (first line), its PUK from the
        second line or generated; neither is ever taken from argv.  A
        generated PUK is printed once, as a SIM's carrier card shows it.
    mtcd-sim serve --state FILE [--imei IMEI] [--vendor V] [--no-cpinr]
                   [--no-csim] [--no-crsm] [--ready-delay S] [--latency S]
                   [--power-on-cfun N] [--link PATH] [--control SOCKET]
        Prints the pty path as the first line of stdout.  SIGUSR1 pulls the
        card out, SIGUSR2 puts it back, SIGTERM/SIGINT stop (exit 0).
        --control: the socket the commands below reach it on.
    mtcd-sim replay FILE [--link PATH]
        Serve a recorded modem (a .dialogue file, docs/dialogue-format.md)
        on a pty: prints the pty path, answers each command as recorded,
        and reports a command the recording does not expect on stderr.
    mtcd-sim pull-sim | insert-sim [--card FILE] | swap-sim --card FILE |
             ota-pin [--no-refresh] | reset [--down S]   --control SOCKET [--json]
        Events on the running simulator; the new PIN of ota-pin on stdin.
    mtcd-sim status (--state FILE | --control SOCKET) [--json]
        The card's identity and counters (with --control also the slot,
        radio and PDP state); never its PIN or PUK.

Exit codes: 0 ok, 64 bad arguments, 65 bad card state or dialogue file, 69 no
simulator on the socket or it refused the event, 74 I/O error.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import queue
import secrets
import signal
import sys

from ..errors import EXIT_DATAERR, EXIT_IOERR, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from ..identity import Iccid, Imei, Imsi
from ..secret import Pin, Puk
from .card import PIN_TRIES, PUK_TRIES, CardFileError, SimCard
from .control import ControlError, ControlServer, NoSimulator, SimController, card_status, open_card, request
from .modem import DEFAULT_IMEI, VENDORS, SimulatedModem
from .pty import PtyModemServer

PROG = "mtcd-sim"


class _Usage(Exception):
    pass


class _Unavailable(Exception):
    """No simulator on the control socket, or it refused the event."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and EX_USAGE, not argparse's exit 2
        raise _Usage(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Simulated modem and SIM card for mtcd: for development, tests and "
                "rehearsal, never on a production gateway.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    card = sub.add_parser("card", help="create a card state file (PIN, PUK on stdin)")
    card.add_argument("--state", required=True, help="card state file to write")
    card.add_argument("--iccid", required=True, help="the card's ICCID (18 to 20 digits, Luhn check digit last; hex digits A-F after the sixth, as some operators issue, without one)")
    card.add_argument("--imsi", required=True, help="the card's IMSI (6 to 15 digits)")
    card.add_argument("--pin-disabled", action="store_true", help="PIN1 check switched off")
    card.add_argument("--pin-attempts", type=int, default=PIN_TRIES, help=f"PIN attempts left (default {PIN_TRIES})")
    card.add_argument("--puk-attempts", type=int, default=PUK_TRIES, help=f"PUK attempts left (default {PUK_TRIES})")
    card.add_argument("--force", action="store_true", help="overwrite an existing file")

    serve = sub.add_parser("serve", help="serve the modem on a pty")
    serve.add_argument("--state", required=True, help="card state file (kept up to date)")
    serve.add_argument("--imei", default=DEFAULT_IMEI, help="the modem's IMEI")
    serve.add_argument("--vendor", choices=VENDORS, default="generic",
                       help="personality: its identity, dialect and URCs (simcom: a SIM7600G-H)")
    serve.add_argument("--no-cpinr", action="store_true", help="modem lacks AT+CPINR")
    serve.add_argument("--no-csim", action="store_true", help="modem lacks AT+CSIM")
    serve.add_argument("--no-crsm", action="store_true", help="modem lacks AT+CRSM")
    serve.add_argument("--ready-delay", type=float, default=0.0, metavar="S",
                       help="seconds of CME 14 (SIM busy) after unlock")
    serve.add_argument("--latency", type=float, default=0.0, metavar="S",
                       help="seconds before each reply")
    serve.add_argument("--power-on-cfun", type=int, choices=(0, 1, 4), default=1,
                       help="radio level after power-on and reset (default 1)")
    serve.add_argument("--pairing-record", choices=PAIRING_RECORDS, default="none",
                       help="the card's USAT Application Pairing files: none (no service), ok / ko (EF-IPS's "
                            "newest verdict, linked to this modem's IMEI in EF-IPD), absent (service, no "
                            "EF-IPS), unreadable (EF-IPS refuses reads)")
    serve.add_argument("--ipd-readable", action="store_true",
                       help="EF-IPD readable by anyone (real cards: ADM only)")
    serve.add_argument("--link", help="symlink to create to the pty")
    serve.add_argument("--control", metavar="SOCKET",
                       help="Unix socket for pull-sim, insert-sim, swap-sim, ota-pin, reset and status")

    replay = sub.add_parser("replay", help="serve a recorded modem dialogue on a pty",
                            description="Answer each command as the recorded modem did (docs/dialogue-format.md).")
    replay.add_argument("file", metavar="FILE", help="the .dialogue file to replay")
    replay.add_argument("--link", help="symlink to create to the pty")

    def control(name: str, help: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help, description=help)
        cmd.add_argument("--control", required=True, metavar="SOCKET",
                         help="the control socket of the running simulator (serve --control)")
        cmd.add_argument("--json", action="store_true", help="print the simulator's state as one JSON object")
        return cmd

    control("pull-sim", "take the card out of the running simulator's slot")
    insert = control("insert-sim", "put a card into the empty slot (by default the one pulled last)")
    insert.add_argument("--card", metavar="FILE", help="card state file of the card to insert")
    swap = control("swap-sim", "replace the card in the slot by another one")
    swap.add_argument("--card", required=True, metavar="FILE", help="card state file of the new card")
    ota = control("ota-pin", "change the card's PIN as an operator's over-the-air update would (new PIN on stdin)")
    ota.add_argument("--no-refresh", action="store_true",
                     help="change the PIN only; without it the card then resets and asks for the new PIN")
    reset = control("reset", "reset the modem: its port vanishes, then it boots again")
    reset.add_argument("--down", type=float, default=1.0, metavar="S",
                       help="seconds the port stays away (default 1, at most 60)")

    status = sub.add_parser("status", help="show the card's identity and counters, or the running simulator's state")
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--state", metavar="FILE", help="card state file")
    where.add_argument("--control", metavar="SOCKET", help="control socket of a running simulator")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _read_secret_lines() -> tuple[str, str | None]:
    if sys.stdin is None:
        raise _Usage("no PIN on stdin")
    if sys.stdin.isatty():
        pin = getpass.getpass("card PIN: ")
        puk = getpass.getpass("card PUK (empty: random): ") or None
        return pin, puk
    pin = sys.stdin.readline().strip()
    puk = sys.stdin.readline().strip() or None
    if not pin:
        raise _Usage("no PIN on stdin (expected one line of 4 to 8 digits)")
    return pin, puk


def _cmd_card(args) -> int:
    if os.path.exists(args.state) and not args.force:
        raise _Usage(f"{args.state} exists (use --force to overwrite)")
    try:
        iccid, imsi = Iccid(args.iccid), Imsi(args.imsi)
    except ValueError as e:
        raise _Usage(str(e)) from None
    pin_text, puk_text = _read_secret_lines()
    try:
        pin = Pin(pin_text)
        puk = Puk(puk_text) if puk_text else Puk("".join(secrets.choice("0123456789") for _ in range(8)))
        card = SimCard(
            iccid, imsi, pin, puk,
            pin_enabled=not args.pin_disabled,
            pin_attempts=args.pin_attempts,
            puk_attempts=args.puk_attempts,
        )
    except ValueError as e:  # messages name the rule, never the value
        raise _Usage(str(e)) from None
    card.save(args.state)
    if not puk_text:
        # The only place the generated PUK is ever shown, as the carrier
        # card of a real SIM shows it: the person rehearsing `mtcctl sim
        # unblock` needs it.  The simulator's own output, never mtcd's.
        print(f"simulated SIM {iccid}: PUK {puk.reveal()}  (shown once; rehearsal card, not a real SIM)")
    return EXIT_OK


def _cmd_status(args) -> int:
    if args.control:
        status = _control(args, {"op": "status"})
    else:
        card = SimCard.load(args.state)
        status = card_status(card)
    _print_status(status, args.json)
    return EXIT_OK


def _print_status(status: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(status, sort_keys=True))
        return
    if "sim" in status:
        print(f"slot {'card inserted' if status['sim'] == 'inserted' else 'empty'}")
    if status["iccid"] is not None:
        print(f"iccid {status['iccid']}")
        print(f"imsi {status['imsi']}")
        print(f"pin {'enabled' if status['pin_enabled'] else 'disabled'}")
        print(f"pin-state {status['pin_state']}")
        print(f"pin-attempts {status['pin_attempts']}/{status['pin_attempts_max']}")
        print(f"puk-attempts {status['puk_attempts']}/{status['puk_attempts_max']}")
    if "radio" in status:
        print(f"radio {status['radio']} (CFUN={status['cfun']})")
        print(f"pdp {status['pdp']}")
        print(f"port {status['port'] or 'gone'}")


def _control(args, message: dict) -> dict:
    try:
        answer = request(args.control, message)
    except NoSimulator as e:
        raise _Unavailable(str(e)) from None
    if not answer.get("ok"):
        raise _Unavailable(str(answer.get("error", "the simulator refused")))
    return answer["status"]


def _cmd_event(args) -> int:
    message = {
        "pull-sim": lambda: {"op": "pull"},
        "insert-sim": lambda: {"op": "insert", "card": os.path.abspath(args.card) if args.card else None},
        "swap-sim": lambda: {"op": "swap", "card": os.path.abspath(args.card)},
        "ota-pin": lambda: {"op": "ota-pin", "pin": _read_new_pin(), "refresh": not args.no_refresh},
        "reset": lambda: {"op": "reset", "down": args.down},
    }[args.command]()
    _print_status(_control(args, message), args.json)
    return EXIT_OK


def _read_new_pin() -> str:
    """The card's new PIN: stdin, never argv (a PIN in argv is visible to
    every user of the machine)."""
    if sys.stdin is None:
        raise _Usage("no PIN on stdin")
    if sys.stdin.isatty():
        pin = getpass.getpass("new card PIN: ")
        if getpass.getpass("new card PIN again: ") != pin:
            raise _Usage("the two PINs differ")
    else:
        pin = sys.stdin.readline().strip()
    if not pin:
        raise _Usage("no PIN on stdin (expected one line of 4 to 8 digits)")
    try:
        return Pin(pin).reveal()
    except ValueError as e:  # the rule, never the value
        raise _Usage(str(e)) from None


PAIRING_RECORDS = ("none", "ok", "ko", "absent", "unreadable")


def _pairing_files(card, kind: str, ipd_readable: bool, imei: Imei) -> None:
    """EF-UST/EF-IPS/EF-IPD as `--pairing-record` asks (not kept in the state file)."""
    from ..pairing_record import EF_IPD, EF_IPS, Verdict, encode_ipd_record, encode_ips_record

    if kind == "none":
        return
    verdict = Verdict.KO if kind == "ko" else Verdict.OK
    ips = None if kind == "absent" else [encode_ips_record(verdict, 1)]
    unreadable = ({EF_IPS} if kind == "unreadable" else set()) | (set() if ipd_readable else {EF_IPD})
    card.pairing_record(service=True, ips=ips, ipd=[encode_ipd_record(imei)], unreadable=unreadable)


def _cmd_serve(args) -> int:
    if args.ready_delay < 0 or args.latency < 0:
        raise _Usage("delays must not be negative")
    try:
        Imei(args.imei)
    except ValueError as e:
        raise _Usage(str(e)) from None
    card = open_card(args.state)
    _pairing_files(card, args.pairing_record, args.ipd_readable, Imei(args.imei))
    modem = SimulatedModem(
        card,
        imei=args.imei,
        vendor=args.vendor,
        has_cpinr=not args.no_cpinr,
        has_csim=not args.no_csim,
        has_crsm=not args.no_crsm,
        ready_delay=args.ready_delay,
        latency=args.latency,
        power_on_cfun=args.power_on_cfun,
    )
    # Handlers only queue the signal (SimpleQueue.put is safe in a handler);
    # acting inside the handler could deadlock on a lock the interrupted
    # code holds.
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        previous[signum] = signal.signal(signum, lambda n, _frame: signals.put(n))
    try:
        with contextlib.ExitStack() as stack:
            server = stack.enter_context(PtyModemServer(modem, link=args.link))
            controller = SimController(server, args.state)
            if args.control:
                try:
                    stack.enter_context(ControlServer(controller, args.control))
                except FileExistsError as e:
                    raise _Usage(str(e)) from None
            print(server.port, flush=True)
            while True:
                try:
                    signum = signals.get(timeout=1.0)
                except queue.Empty:
                    continue
                if signum in (signal.SIGUSR1, signal.SIGUSR2):
                    try:
                        controller.pull() if signum == signal.SIGUSR1 else controller.insert()
                    except ControlError:
                        pass  # already out / already in: nothing happens, as with a real slot
                else:
                    break
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_OK


def _cmd_replay(args) -> int:
    from .replay import DialogueError, Script, load_dialogue
    from .replay_pty import ReplayPtyServer

    try:
        dialogue = load_dialogue(args.file)
    except (DialogueError, UnicodeDecodeError) as e:
        raise CardFileError(str(e)) from None
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()
    previous = {s: signal.signal(s, lambda n, _frame: signals.put(n)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with ReplayPtyServer(Script(dialogue), link=args.link) as server:
            print(server.port, flush=True)
            while True:
                try:
                    signals.get(timeout=1.0)
                    break
                except queue.Empty:
                    continue
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        commands = {"card": _cmd_card, "serve": _cmd_serve, "status": _cmd_status, "replay": _cmd_replay}
        return commands.get(args.command, _cmd_event)(args)
    except _Usage as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except _Unavailable as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except CardFileError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_DATAERR
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"{PROG}: I/O error{where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_IOERR


if __name__ == "__main__":
    sys.exit(main())
