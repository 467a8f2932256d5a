"""u-blox (SARA, LARA, TOBY): +UPINCNT retry counters and the +UUSIMSTAT
URC.  Its ICCID command is the plain +CCID, already in the generic list."""

from __future__ import annotations

from collections.abc import Sequence

from ..at.commands import AtCommand
from ..errors import ModemProtocolError
from ..simlock import PinAttempts, SimEvent
from .base import (
    Dialect,
    Query,
    attempts,
    counter,
    cpinr_query,
    csim_attempts_query,
    reply_fields,
    urc_number,
)

UPINCNT = AtCommand("AT+UPINCNT", prefixes=("+UPINCNT:",), name="upincnt")
# <mode> is a bit mask: 1 = SIM initialisation states, 2 = phonebook,
# 4 = toolkit REFRESH.  Only the card's state matters to us.
USIMSTAT_ON = AtCommand("AT+USIMSTAT=1", name="usimstat")
# TOBY/LARA networking mode behind the USB ECM interface: +UBMCONF: 1
# router (the modem runs DHCP for the host), 2 bridge.  Either way the data
# call is the PDP context (+CGACT), the generic one.
UBMCONF_QUERY = AtCommand("AT+UBMCONF?", prefixes=("+UBMCONF:",), name="ubmconf")


def parse_ubmconf(lines: Sequence[str]) -> str:
    fields = reply_fields(lines, "+UBMCONF:")
    mode = {"1": "ecm (router)", "2": "ecm (bridge)"}.get(fields[0])
    if mode is None:
        raise ModemProtocolError(f"+UBMCONF: unknown networking mode {fields[0]!r}")
    return mode


def parse_upincnt(lines: Sequence[str]) -> PinAttempts:
    """+UPINCNT: <pin1>,<pin2>,<puk1>,<puk2> -> PinAttempts."""
    fields = reply_fields(lines, "+UPINCNT:")
    if len(fields) < 4:
        raise ModemProtocolError(f"+UPINCNT: expected 4 fields, got {len(fields)}")
    return attempts(
        counter(fields[0], "+UPINCNT PIN1 count"),
        counter(fields[2], "+UPINCNT PUK1 count", required=False),
        "+UPINCNT",
    )


# +UUSIMSTAT: <state>: 0 no card, 1 PIN needed, 2 PIN blocked, 3 PUK
# blocked, 4 not operational, 5 restricted (FDN/BDN), 6 operational;
# 7.. phonebook and toolkit notices, which say nothing new about the lock.
_UUSIMSTAT_EVENTS = {
    0: SimEvent.REMOVED,
    1: SimEvent.LOCKED,
    2: SimEvent.LOCKED,
    3: SimEvent.LOCKED,
    5: SimEvent.READY,
    6: SimEvent.READY,
}


class UbloxDialect(Dialect):
    name = "ublox"
    manufacturers = ("u-blox", "ublox")

    def attempts_queries(self) -> list[Query[PinAttempts]]:
        return [cpinr_query(), Query(UPINCNT, parse_upincnt), csim_attempts_query()]

    def urc_setup(self) -> list[AtCommand]:
        return [USIMSTAT_ON]

    def usbnet_queries(self) -> list[Query[str]]:
        return [Query(UBMCONF_QUERY, parse_ubmconf)]

    def sim_event(self, line: str) -> SimEvent | None:
        state = urc_number(line, "+UUSIMSTAT:")
        if state is not None:
            return _UUSIMSTAT_EVENTS.get(state)
        return super().sim_event(line)
