"""Sierra Wireless (MC/EM 73xx, 74xx, 75xx): +CPINC retry counters and
!ICCID.  No SIM-state URC of its own is switched on; +CPIN lines are
understood as everywhere."""

from __future__ import annotations

from collections.abc import Sequence

from ..at.commands import AtCommand
from ..errors import ModemProtocolError
from ..identity import Iccid
from ..simlock import PinAttempts
from .base import (
    Dialect,
    Query,
    attempts,
    ccid_query,
    counter,
    cpinr_query,
    crsm_iccid_query,
    csim_attempts_query,
    iccid_reply,
    reply_fields,
)

CPINC = AtCommand("AT+CPINC?", prefixes=("+CPINC:",), name="cpinc")
# Firmware differs in how it prints the reply: "!ICCID: <digits>" or
# "ICCID: <digits>" (unverified which models do which); accept both.
SIERRA_ICCID = AtCommand("AT!ICCID?", prefixes=("!ICCID:", "ICCID:"), name="!iccid")

parse_sierra_iccid = iccid_reply("!ICCID:", "ICCID:")


def parse_cpinc(lines: Sequence[str]) -> PinAttempts:
    """+CPINC: <pin1>,<pin2>,<puk1>,<puk2> -> PinAttempts."""
    fields = reply_fields(lines, "+CPINC:")
    if len(fields) < 4:
        raise ModemProtocolError(f"+CPINC: expected 4 fields, got {len(fields)}")
    return attempts(
        counter(fields[0], "+CPINC PIN1 count"),
        counter(fields[2], "+CPINC PUK1 count", required=False),
        "+CPINC",
    )


class SierraDialect(Dialect):
    name = "sierra"
    manufacturers = ("sierra",)

    def iccid_queries(self) -> list[Query[Iccid]]:
        return [crsm_iccid_query(), Query(SIERRA_ICCID, parse_sierra_iccid), ccid_query()]

    def attempts_queries(self) -> list[Query[PinAttempts]]:
        return [cpinr_query(), Query(CPINC, parse_cpinc), csim_attempts_query()]
