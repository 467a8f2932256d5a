"""What a modem dialect is: the generic 27.007 behaviour, which vendor
modules subclass to override only what differs.

Command sequences are data: a list of `Query` objects tried in order until
one answers.  A query whose command ends in ERROR/+CME ERROR (not
supported, not allowed) or whose reply does not parse is skipped and the
next one tried.

Every parse function here and in the vendor modules is pure: it takes the
information lines of one reply and returns a value or raises
`ModemProtocolError`; nothing else escapes it.

URC interpretation follows one rule: a line is turned into a `SimEvent`
only when its meaning for the card is clear; anything else (unknown
prefixes, unknown codes, the read-command form of a URC) gives None, so a
strange line can never start the pairing flow by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..apdu import ApduResponse, remaining_attempts, verify_pin
from ..at import commands
from ..at.commands import AtCommand
from ..at.parsers import info_fields, parse_cpinr, parse_crsm, parse_csim, parse_iccid
from ..errors import ModemProtocolError
from ..identity import Iccid
from ..simlock import PinAttempts, SimEvent, SimLock

T = TypeVar("T")


@dataclass(frozen=True)
class Query(Generic[T]):
    command: AtCommand
    parse: Callable[[Sequence[str]], T]
    # Commands to run before and after (e.g. Telit's AT+CSIM=1 / =0 around CSIM).
    before: tuple[AtCommand, ...] = ()
    after: tuple[AtCommand, ...] = ()


# --- helpers the vendor modules share -------------------------------------


def reply_fields(lines: Sequence[str], prefix: str) -> list[str]:
    """The fields of the first line starting with `prefix`; a reply
    without such a line is a protocol error."""
    found = info_fields(lines, prefix)
    if not found:
        raise ModemProtocolError(f"no {prefix} line in the reply")
    return found[0]


def counter(text: str, what: str, *, required: bool = True) -> int | None:
    """A retry counter field.  An empty field means "not reported" (None)
    unless `required`: a reply without the PIN1 counter must not count as an
    answer, so that the next query in the list gets its turn."""
    text = text.strip()
    if not text:
        if required:
            raise ModemProtocolError(f"{what} is missing")
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 2):
        raise ModemProtocolError(f"{what} is not a retry count: {text!r}")
    return int(text)


def attempts(pin1: int | None, puk1: int | None, source: str) -> PinAttempts:
    """PinAttempts, with an out-of-range count reported as the modem's fault."""
    try:
        return PinAttempts(pin1=pin1, puk1=puk1, source=source)
    except ValueError as exc:
        raise ModemProtocolError(f"{source}: {exc}") from None


def iccid_reply(*prefixes: str) -> Callable[[Sequence[str]], Iccid]:
    """A parser for a vendor ICCID command answering `<prefix> <digits>`
    with a prefix `parse_iccid` does not know: the prefix is taken off and
    the rest read as any ICCID reply (bare, quoted, F-padded)."""

    def parse(lines: Sequence[str]) -> Iccid:
        bare = []
        for line in lines:
            for prefix in prefixes:
                body = after_prefix(line, prefix)
                if body is not None:
                    line = body
                    break
            bare.append(line)
        return parse_iccid(bare)

    parse.__name__ = "parse_" + prefixes[0].strip("+^#!:").lower()
    return parse


def after_prefix(line: str, prefix: str) -> str | None:
    """What follows `prefix` (matched case-insensitively, blanks around the
    line ignored), or None when the line has another prefix.  For reply
    and URC lines alike."""
    line = line.strip()
    if line[: len(prefix)].upper() != prefix.upper():
        return None
    return line[len(prefix):].strip()


def urc_number(line: str, prefix: str) -> int | None:
    """The single small number a state URC such as `^SIMST: 255` carries,
    or None when the line is anything else (also two-field read replies)."""
    body = after_prefix(line, prefix)
    if body is None:
        return None
    body = body.strip('"').strip()
    if not (body.isascii() and body.isdigit() and len(body) <= 3):
        return None
    return int(body)


# --- the generic 27.007 queries --------------------------------------------

# Status word 90 00 as +CRSM prints it (27.007 §8.18: decimal sw1, sw2).
_SW_OK = (144, 0)


def parse_crsm_iccid(lines: Sequence[str]) -> Iccid:
    """+CRSM: 144,0,"<EF.ICCID>" -> Iccid (READ BINARY of 2FE2)."""
    sw1, sw2, data = parse_crsm(lines)
    if (sw1, sw2) != _SW_OK:
        raise ModemProtocolError(
            f"AT+CRSM: reading EF.ICCID ended with status {sw1:02X}{sw2:02X}"
        )
    try:
        return Iccid.from_ef(data)
    except ValueError as exc:
        raise ModemProtocolError(f"AT+CRSM: EF.ICCID: {exc}") from None


def parse_csim_attempts(lines: Sequence[str]) -> PinAttempts:
    """+CSIM: 4,"63C3" (answer to VERIFY PIN1 without data) -> PinAttempts."""
    left = remaining_attempts(ApduResponse.parse(parse_csim(lines)))
    if left is None:
        # 9000: PIN1 already verified (or disabled); the card gives no count.
        raise ModemProtocolError("AT+CSIM: the card did not report a retry count")
    return attempts(left, None, "+CSIM VERIFY")


def crsm_iccid_query() -> Query[Iccid]:
    """READ BINARY of EF.ICCID through +CRSM: works before the PIN on
    nearly every modem, and reads the card itself rather than a cache."""
    return Query(commands.read_iccid_file(), parse_crsm_iccid)


def ccid_query() -> Query[Iccid]:
    return Query(AtCommand("AT+CCID", prefixes=("+CCID:",), name="ccid"), parse_iccid)


def cpinr_query() -> Query[PinAttempts]:
    return Query(commands.pin_retries(), parse_cpinr)


def csim_verify_command() -> AtCommand:
    """VERIFY PIN1 with no data (TS 102 221 §11.1.9): asks for the retry
    counter without presenting anything.  +CSIM carries the T=0 form
    (P3 = 00), as the card receives it."""
    return commands.generic_sim_access(verify_pin(None).tpdu())


def csim_attempts_query(
    before: tuple[AtCommand, ...] = (), after: tuple[AtCommand, ...] = ()
) -> Query[PinAttempts]:
    return Query(csim_verify_command(), parse_csim_attempts, before=before, after=after)


# What an unsolicited +CPIN line says about the card.  Any lock code other
# than PIN2/PUK2 (which concern an operation, not the card) means "the card
# wants a code again": the service re-reads +CPIN? and the policy decides;
# a PIN is only ever presented for exactly SIM PIN.
_CPIN_EVENTS = {
    SimLock.READY: SimEvent.READY,
    SimLock.NOT_INSERTED: SimEvent.REMOVED,
    SimLock.NOT_READY: SimEvent.REMOVED,
    SimLock.SIM_PIN: SimEvent.LOCKED,
    SimLock.SIM_PUK: SimEvent.LOCKED,
    SimLock.PH_SIM_PIN: SimEvent.LOCKED,
}


class Dialect:
    """Generic 3GPP TS 27.007 modem.  Subclasses set `name` and
    `manufacturers` and override only the methods whose behaviour differs."""

    name = "generic"
    # Lower-case substrings of the AT+CGMI reply that select this dialect.
    manufacturers: tuple[str, ...] = ()

    def iccid_queries(self) -> list[Query[Iccid]]:
        """Ways to read the ICCID, best first.  Vendors put their own
        command after +CRSM."""
        return [crsm_iccid_query(), ccid_query()]

    def attempts_queries(self) -> list[Query[PinAttempts]]:
        """Ways to read the PIN1 retry counter, best first.  Vendors put
        their own counter command between +CPINR and +CSIM."""
        return [cpinr_query(), csim_attempts_query()]

    def urc_setup(self) -> list[AtCommand]:
        """Commands that switch on SIM-state unsolicited result codes."""
        return []

    # -- the USB network interface (datalink backend "ecm") ----------------
    # Modems in ECM/RNDIS/NCM mode give the host an Ethernet-like interface;
    # the data call behind it is started the vendor's way.  The generic
    # answer is the 27.007 one: the PDP context itself (+CGACT).

    def data_call(self, cid: int, on: bool) -> list[AtCommand]:
        """Commands that start (on) or stop the data call behind the USB
        network interface, for a context `cid` already defined."""
        return [commands.activate_pdp_context(cid, on)]

    def usbnet_queries(self) -> list[Query[str]]:
        """Ways to read the USB network mode ("ecm", "rndis", "rmnet",
        "mbim", "ncm"...); none when the vendor has no such setting."""
        return []

    def autoconnect_queries(self, cid: int) -> list[Query[bool]]:
        """Ways to read whether the modem starts its data call by itself
        (True: auto-connect is on); none when the vendor has no such setting."""
        return []

    def autoconnect_off(self, cid: int) -> list[AtCommand]:
        """Commands that switch the vendor's auto-connect off."""
        return []

    def sim_event(self, line: str) -> SimEvent | None:
        """Interpret an unsolicited line as a SIM-state change, or None."""
        body = after_prefix(line, "+CPIN:")
        if body is None:
            return None
        code = " ".join(body.strip('"').upper().split())
        try:
            lock = SimLock(code)
        except ValueError:
            return None
        return _CPIN_EVENTS.get(lock)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
