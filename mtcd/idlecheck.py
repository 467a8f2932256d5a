"""The service's periodic check on one command line.

While paired (or refused) and without SIM-state URCs, the service asks every
`service.check_interval` seconds where the radio is (a modem reset behind an
open port comes back at CFUN=1) and what the slot holds (AT+CPIN? and the
ICCID: a swap to a PIN-less card stays READY).  As three commands every 2 s
that is 90 lines a minute, enough to keep USB autosuspend and the modem's
sleep from ever starting.  As one V.250 line, `AT+CFUN?;+CPIN?;+CRSM=...`,
it is 30, and each answer is still told apart by its own prefix.

Pure: the line to send and what its answer says; the Gateway sends it and
falls back to the three commands whenever this says it cannot tell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .at import commands, parsers
from .at.commands import AtCommand
from .at.reader import FinalResult
from .errors import ModemProtocolError
from .identity import Iccid
from .simlock import SimLock

# A slot whose card answers: its ICCID belongs in the signature.
CARD_STATES = (SimLock.READY, SimLock.SIM_PIN, SimLock.SIM_PUK)


@dataclass(frozen=True)
class IdleReading:
    radio: int  # AT+CFUN? level
    lock: SimLock
    iccid: Iccid | None


@dataclass(frozen=True)
class Unclear:
    """The answer cannot be read as a whole: check with single commands.
    `form_refused`: the modem refused the line itself; never send it again."""

    form_refused: bool = False


def idle_line(iccid_query: AtCommand) -> AtCommand | None:
    """`AT+CFUN?;+CPIN?;<ICCID query>` when the ICCID query can share a line
    (a plain extended command with its own reply prefix), else None."""
    body = iccid_query.text[2:]
    if not iccid_query.prefixes or iccid_query.sensitive or body[:1] not in ("+", "^", "$"):
        return None
    if ";" in body or '"' in body:  # a quoted ';' would split it for some parsers
        return None
    radio, lock = commands.functionality_query(), commands.sim_lock_query()
    return AtCommand(f"{radio.text};{lock.text[2:]};{body}",
                     prefixes=(*radio.prefixes, *lock.prefixes, *iccid_query.prefixes),
                     timeout=max(radio.timeout, lock.timeout, iccid_query.timeout), name="idle-check")


def read_idle_answer(lines: Sequence[str], result: FinalResult, iccid_prefixes: Sequence[str],
                     parse_iccid: Callable[[Sequence[str]], Iccid],
                     lock_of_error: Callable[[int | None], SimLock]) -> IdleReading | Unclear:
    """What the answer to `idle_line` says.  The commands run in order and
    the first failure ends the line, so a failed AT+CPIN? (+CME ERROR: 10,
    no SIM) leaves only the +CFUN line; anything less clear is Unclear."""
    radio_lines = [line for line in lines if line.startswith("+CFUN:")]
    lock_lines = [line for line in lines if line.startswith("+CPIN:")]
    iccid_lines = [line for line in lines if line.startswith(tuple(iccid_prefixes))]
    if not radio_lines:
        # Nothing ran: the line's form, or the modem, said no.
        return Unclear(form_refused=not result.ok and not lines and result.code in commands.NOT_THIS_FORM)
    try:
        radio = parsers.parse_cfun(radio_lines)
        if not lock_lines:
            if result.ok or result.kind != "CME ERROR":
                return Unclear()
            lock = lock_of_error(result.code)  # AT+CPIN? itself failed, as it does without a SIM
            return IdleReading(radio, lock, None) if lock not in CARD_STATES else Unclear()
        lock = parsers.parse_cpin(lock_lines)
        if lock not in CARD_STATES:
            # The ICCID query may fail or answer without a card: not needed.
            return IdleReading(radio, lock, None)
        if not result.ok or not iccid_lines:
            return Unclear()
        return IdleReading(radio, lock, parse_iccid(iccid_lines))
    except ModemProtocolError:
        return Unclear()  # a URC crossing, an odd reply: ask again, one by one
