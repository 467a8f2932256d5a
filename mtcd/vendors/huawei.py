"""Huawei (ME909, MU709, E3372...): ^CPIN retry counters, ^ICCID, and the
^SIMST URC, which the modem sends without being asked."""

from __future__ import annotations

from collections.abc import Sequence

from ..at.commands import AtCommand
from ..at.parsers import parse_iccid
from ..errors import ModemProtocolError
from ..identity import Iccid
from ..simlock import PinAttempts, SimEvent
from .base import (
    Dialect,
    Query,
    attempts,
    ccid_query,
    counter,
    cpinr_query,
    crsm_iccid_query,
    csim_attempts_query,
    reply_fields,
    urc_number,
)

HUAWEI_CPIN = AtCommand("AT^CPIN?", prefixes=("^CPIN:",), name="^cpin")
HUAWEI_ICCID = AtCommand("AT^ICCID?", prefixes=("^ICCID:",), name="^iccid")


def parse_huawei_cpin(lines: Sequence[str]) -> PinAttempts:
    """^CPIN: <code>,[<times>],<puk>,<pin>,<puk2>,<pin2> -> PinAttempts.

    <times> counts for whatever <code> asks and may be empty; the fixed
    fields after it are what we read.
    """
    fields = reply_fields(lines, "^CPIN:")
    if len(fields) < 6:
        raise ModemProtocolError(f"^CPIN: expected 6 fields, got {len(fields)}")
    return attempts(
        counter(fields[3], "^CPIN PIN1 count"),
        counter(fields[2], "^CPIN PUK1 count", required=False),
        "^CPIN",
    )


def parse_huawei_iccid(lines: Sequence[str]) -> Iccid:
    """^ICCID: "<iccid>".  Qualcomm-based Huawei firmware prints EF.ICCID as
    stored, each digit pair swapped (HiSilicon-based firmware does not):
    20 characters starting "98" are swapped back (no ICCID starts so, its
    industry prefix is 89); the result is checked like any ICCID."""
    swapped = []
    for line in lines:
        body = line.strip()
        if body[:7].upper() == "^ICCID:":
            value = body[7:].strip().strip('"').strip()
            if len(value) == 20 and value[:2] == "98":
                body = "^ICCID: " + "".join(value[i + 1] + value[i] for i in range(0, 20, 2))
        swapped.append(body)
    return parse_iccid(swapped)


# ^SIMST: <state>: 0 invalid card or PIN-locked, 1 valid, 2/3/4 refused by
# the network for CS/PS/both (a network verdict, not a card change),
# 240 ROM-SIM, 255 no card.  0 is ambiguous, so it only says "a card is
# there": the service re-reads +CPIN? to learn which.
_SIMST_EVENTS = {0: SimEvent.INSERTED, 1: SimEvent.READY, 255: SimEvent.REMOVED}


class HuaweiDialect(Dialect):
    name = "huawei"
    manufacturers = ("huawei",)

    def iccid_queries(self) -> list[Query[Iccid]]:
        return [crsm_iccid_query(), Query(HUAWEI_ICCID, parse_huawei_iccid), ccid_query()]

    def attempts_queries(self) -> list[Query[PinAttempts]]:
        return [cpinr_query(), Query(HUAWEI_CPIN, parse_huawei_cpin), csim_attempts_query()]

    def sim_event(self, line: str) -> SimEvent | None:
        state = urc_number(line.split(",")[0], "^SIMST:")  # [,<lock_state>] may follow
        if state is not None:
            return _SIMST_EVENTS.get(state)
        return super().sim_event(line)
