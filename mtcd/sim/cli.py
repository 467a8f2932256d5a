"""mtcd-sim: create a simulated SIM card and serve a simulated modem.

    mtcd-sim card --state FILE --iccid ICCID --imsi IMSI [--pin-disabled]
                  [--pin-attempts N] [--puk-attempts N] [--force]
        The card's PIN is read from stdin (first line), its PUK from the
        second line or generated; neither is ever taken from argv.
    mtcd-sim serve --state FILE [--imei IMEI] [--vendor V] [--no-cpinr]
                   [--no-csim] [--no-crsm] [--ready-delay S] [--latency S]
                   [--power-on-cfun N] [--link PATH]
        Prints the pty path as the first line of stdout.  SIGUSR1 pulls the
        card out, SIGUSR2 puts it back, SIGTERM/SIGINT stop (exit 0).
    mtcd-sim status --state FILE
        Prints the card's identity and counters (never its PIN or PUK).

Exit codes: 0 ok, 64 bad arguments, 65 bad card state file, 74 I/O error.
"""

from __future__ import annotations

import argparse
import getpass
import os
import queue
import secrets
import signal
import sys

from ..errors import EXIT_DATAERR, EXIT_IOERR, EXIT_OK, EXIT_USAGE
from ..identity import Iccid, Imei, Imsi
from ..secret import Pin, Puk
from .card import PIN_TRIES, PUK_TRIES, CardFileError, SimCard
from .modem import DEFAULT_IMEI, VENDORS, SimulatedModem
from .pty import PtyModemServer

PROG = "mtcd-sim"


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and EX_USAGE, not argparse's exit 2
        raise _Usage(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Simulated modem and SIM card for mtcd.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    card = sub.add_parser("card", help="create a card state file (PIN, PUK on stdin)")
    card.add_argument("--state", required=True, help="card state file to write")
    card.add_argument("--iccid", required=True)
    card.add_argument("--imsi", required=True)
    card.add_argument("--pin-disabled", action="store_true", help="PIN1 check switched off")
    card.add_argument("--pin-attempts", type=int, default=PIN_TRIES)
    card.add_argument("--puk-attempts", type=int, default=PUK_TRIES)
    card.add_argument("--force", action="store_true", help="overwrite an existing file")

    serve = sub.add_parser("serve", help="serve the modem on a pty")
    serve.add_argument("--state", required=True, help="card state file (kept up to date)")
    serve.add_argument("--imei", default=DEFAULT_IMEI)
    serve.add_argument("--vendor", choices=VENDORS, default="generic")
    serve.add_argument("--no-cpinr", action="store_true", help="modem lacks AT+CPINR")
    serve.add_argument("--no-csim", action="store_true", help="modem lacks AT+CSIM")
    serve.add_argument("--no-crsm", action="store_true", help="modem lacks AT+CRSM")
    serve.add_argument("--ready-delay", type=float, default=0.0, metavar="S",
                       help="seconds of CME 14 (SIM busy) after unlock")
    serve.add_argument("--latency", type=float, default=0.0, metavar="S",
                       help="seconds before each reply")
    serve.add_argument("--power-on-cfun", type=int, choices=(0, 1, 4), default=1)
    serve.add_argument("--link", help="symlink to create to the pty")

    status = sub.add_parser("status", help="show the card's identity and counters")
    status.add_argument("--state", required=True)
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
    return EXIT_OK


def _cmd_status(args) -> int:
    card = SimCard.load(args.state)
    print(f"iccid {card.iccid}")
    print(f"imsi {card.imsi.masked()}")
    print(f"pin {'enabled' if card.pin_enabled else 'disabled'}")
    print(f"pin-attempts {card.pin_attempts}/{PIN_TRIES}")
    print(f"puk-attempts {card.puk_attempts}/{PUK_TRIES}")
    return EXIT_OK


def _cmd_serve(args) -> int:
    if args.ready_delay < 0 or args.latency < 0:
        raise _Usage("delays must not be negative")
    try:
        Imei(args.imei)
    except ValueError as e:
        raise _Usage(str(e)) from None
    card = SimCard.load(args.state)

    def save(changed: SimCard) -> None:
        try:
            changed.save(args.state)
        except OSError as e:
            print(f"{PROG}: cannot save card state: {e.strerror}", file=sys.stderr, flush=True)

    card.on_change = save
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
        with PtyModemServer(modem, link=args.link) as server:
            print(server.port, flush=True)
            while True:
                try:
                    signum = signals.get(timeout=1.0)
                except queue.Empty:
                    continue
                if signum == signal.SIGUSR1:
                    modem.remove_card()
                elif signum == signal.SIGUSR2:
                    if modem.card is None:
                        modem.insert_card(card)
                else:
                    break
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        return {"card": _cmd_card, "serve": _cmd_serve, "status": _cmd_status}[args.command](args)
    except _Usage as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CardFileError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return EXIT_DATAERR
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        print(f"{PROG}: I/O error{where}: {e.strerror or e}", file=sys.stderr)
        return EXIT_IOERR


if __name__ == "__main__":
    sys.exit(main())
