"""`mtcctl pin try`, `mtcctl repair`, and the confirmations a person at a
terminal is asked for (`pair`, `pin set`, `pin forget`, a try below the
guard).  Off a terminal nothing is asked: secrets are one line each on
stdin, as agents and tests send them, and a step that needs a person's
confirmation needs `--yes` instead."""

from __future__ import annotations

import sys

from ..errors import EXIT_DATAERR, EXIT_OK, EXIT_REFUSED, EXIT_TEMPFAIL, MtcdError
from ..identity import Iccid
from ..journal import PairingJournal
from ..recovery import NOT_CONFIRMED, TryRefused, TryRequest, try_pin
from ..secret import Pin
from .common import print_json


class Mismatch(MtcdError):
    exit_code = EXIT_DATAERR


class NotConfirmed(MtcdError):
    exit_code = EXIT_REFUSED
    code = "not-confirmed"


def on_terminal() -> bool:
    stdin = sys.stdin
    try:
        return stdin is not None and stdin.isatty()
    except (OSError, ValueError):
        return False


def read_pin_confirmed(read_secret, prompt: str, yes: bool = False) -> Pin:
    """A PIN; on a terminal typed twice (without --yes), and refused when the
    two differ: a mistyped PIN stored or presented costs the SIM an attempt."""
    pin = read_secret(Pin, prompt)
    if yes or not on_terminal():
        return pin
    again = read_secret(Pin, "the same PIN again: ")
    if again != pin:
        raise Mismatch("the two PINs differ; nothing was stored or presented")
    return pin


def confirm(question: str, iccid: str | None, yes: bool, refusal: str) -> None:
    """Go on only with --yes, or a person at the terminal typing "yes" or the
    ICCID's last 4 digits.  Off a terminal without --yes: NotConfirmed
    naming --yes (`refusal` says what was not done)."""
    if yes:
        return
    if not on_terminal():
        raise NotConfirmed(f"{refusal}: {question}; confirm with --yes (standard input is not a terminal)")
    tail = iccid[-4:] if iccid else None
    hint = f'type "yes" or the last 4 digits of the ICCID ({tail})' if tail else 'type "yes"'
    sys.stderr.write(f"{question}\n{hint} to go on: ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline(256).strip()
    except (OSError, ValueError, UnicodeDecodeError):
        answer = ""
    # An ICCID may end in hex digits (A-F): typed in either case.
    if answer.lower() != "yes" and (tail is None or answer.upper() != tail.upper()):
        raise NotConfirmed(f"{refusal}: not confirmed")


# -- mtcctl pin forget ---------------------------------------------------------

def forget_warning(config, iccid: Iccid, service) -> str | None:
    """A warning when `iccid` is the SIM the gateway has paired now (from the
    running service, else the journal's last decision); None otherwise or
    when it cannot tell."""
    if service is not None:
        live = service.call("status")
        paired = live.get("state") == "paired" and live.get("iccid") == str(iccid)
    else:
        last = PairingJournal(config.state_dir).last("decision") or {}
        paired = last.get("outcome") == "paired" and last.get("iccid") == str(iccid)
    if not paired:
        return None
    return (f"SIM {iccid} is the inserted, paired SIM: without its PIN the gateway refuses it "
            "(unknown-sim) at the next pairing or boot, and only its PIN on stdin "
            f"(`mtcctl pin set {iccid}`) brings it back")


# -- mtcctl pin try ------------------------------------------------------------

def pin_try(config, args, running_service) -> int:
    from ..service import Gateway, policy_settings

    request = TryRequest(below_guard=args.below_guard, last_attempt=args.last_attempt, confirmed=args.yes,
                         unsettled=args.unsettled)
    service = running_service(config)
    if service is not None:
        def run(req: TryRequest) -> dict:
            fields = dict(below_guard=req.below_guard, last_attempt=req.last_attempt, confirmed=req.confirmed)
            if req.iccid is not None:
                fields["iccid"] = req.iccid
            if req.unsettled:
                fields["unsettled"] = True
            return service.call("pin-try", **fields)
        answer = _confirmed(run, request, args, PairingJournal(config.state_dir))
    else:
        with Gateway(config) as gateway:
            gateway.start()
            settings = policy_settings(config)

            def run(req: TryRequest) -> dict:
                with gateway.card_command():
                    return try_pin(gateway.uicc, gateway.keystore, gateway.journal, settings, gateway.imei, req)
            answer = _confirmed(run, request, args, gateway.journal)
    outcome = answer.get("outcome")
    code = EXIT_OK if outcome == "accepted" else EXIT_TEMPFAIL if outcome == "unknown" else EXIT_REFUSED
    if outcome == "rejected":
        answer = {**answer, "reason": "pin-rejected"}
    if args.json:
        print_json(answer, code, error="change-lost" if code == EXIT_TEMPFAIL else "refused", message=answer["detail"])
    else:
        print(answer["detail"])
    return code


def _confirmed(run, request: TryRequest, args, journal: PairingJournal) -> dict:
    answer = run(request)
    if answer.get("outcome") != "confirm":
        return answer
    iccid = answer.get("iccid")
    try:
        confirm(answer["detail"], iccid, args.yes, "nothing presented")
    except NotConfirmed as exc:
        try:
            journal.append("pin-try", iccid=iccid, pin=answer.get("pin"), outcome="refused",
                           reason=NOT_CONFIRMED, attempts_before=answer.get("attempts_before"))
        except MtcdError:
            # Through the service, a person in service.admin_group may not
            # write root's state directory: the refusal is what they must see.
            pass
        raise TryRefused(NOT_CONFIRMED, str(exc), iccid) from None
    return run(TryRequest(below_guard=request.below_guard, last_attempt=request.last_attempt,
                          confirmed=True, iccid=Iccid(iccid), unsettled=request.unsettled))


# -- mtcctl repair ---------------------------------------------------------------

def repair(config, args, running_service) -> int:
    """One pairing decision now: through the running service (which keeps a
    paired SIM's link), or without it like `mtcd once` but with no link and
    the radio left off."""
    from ..service import Gateway

    service = running_service(config)
    if service is not None:
        live = service.call("repair")
        answer = {key: live.get(key) for key in ("state", "reason", "detail", "iccid", "imei", "pin_retries", "link")}
        answer["service"] = True
    else:
        with Gateway(config) as gateway:
            gateway.start()
            outcome = gateway.pair()
            gateway.ensure_radio_off()
        answer = {
            "state": "paired" if outcome.paired else "refused",
            "reason": outcome.reason.value if outcome.reason else None,
            "detail": getattr(outcome.decision, "detail", None),
            "iccid": str(outcome.iccid) if outcome.iccid else None,
            "imei": str(outcome.imei),
            "pin_retries": outcome.pin_retries,
            "link": "down",
            "service": False,
        }
    code = EXIT_OK if answer["state"] == "paired" else EXIT_REFUSED
    if args.json:
        shown = {k: v for k, v in answer.items() if not (k == "reason" and v is None and code)}
        print_json(shown, code, error="refused", message=_line(answer))
    else:
        print(_line(answer))
    return code


def _line(answer: dict) -> str:
    if answer["state"] == "paired":
        where = f"link {answer['link']}" if answer["service"] else \
            "radio off (no service runs: `mtcd once` or the service brings the link up)"
        return f"paired: ICCID {answer['iccid']}, IMEI {answer['imei']}, {where}"
    if answer["state"] == "refused":
        return f"refused: {answer['reason']}: {answer['detail']}"
    return f"the service is {answer['state']}: {answer.get('detail') or 'no decision yet'}"
