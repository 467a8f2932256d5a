"""Quectel (EC2x, EG9x, BG9x, RM5xx): +QPINC retry counters, +QCCID, and the
+QSIMSTAT / +QUSIM SIM-state URCs."""

from __future__ import annotations

from collections.abc import Sequence

from ..at.commands import AtCommand
from ..at.parsers import info_fields, parse_iccid
from ..errors import ModemProtocolError
from ..identity import Iccid
from ..simlock import PinAttempts, SimEvent
from .base import (
    Dialect,
    Query,
    after_prefix,
    attempts,
    ccid_query,
    counter,
    cpinr_query,
    crsm_iccid_query,
    csim_attempts_query,
    urc_number,
)

QPINC = AtCommand('AT+QPINC="SC"', prefixes=("+QPINC:",), name="qpinc")
QCCID = AtCommand("AT+QCCID", prefixes=("+QCCID:",), name="qccid")
# Report SIM insertion and removal as +QSIMSTAT: <enable>,<inserted>.
QSIMSTAT_ON = AtCommand("AT+QSIMSTAT=1", name="qsimstat")


def parse_qpinc(lines: Sequence[str]) -> PinAttempts:
    """+QPINC: "SC",<pin1 left>,<puk1 left> -> PinAttempts.

    `AT+QPINC?` lists every facility ("SC" and "P2"); only "SC" (PIN1/PUK1)
    counts here.
    """
    for fields in info_fields(lines, "+QPINC:"):
        if fields[0].upper() != "SC":
            continue
        if len(fields) < 3:
            raise ModemProtocolError(f"+QPINC: expected 3 fields, got {len(fields)}")
        return attempts(
            counter(fields[1], "+QPINC PIN1 count"),
            counter(fields[2], "+QPINC PUK1 count", required=False),
            "+QPINC",
        )
    raise ModemProtocolError('no +QPINC: "SC" line in the reply')


def _qsimstat_event(body: str) -> SimEvent | None:
    # +QSIMSTAT: <enable>,<inserted>; <inserted> 0 removed, 1 inserted,
    # 2 unknown (before initialisation).
    fields = [f.strip() for f in body.split(",")]
    if len(fields) != 2:
        return None
    return {"0": SimEvent.REMOVED, "1": SimEvent.INSERTED}.get(fields[1])


class QuectelDialect(Dialect):
    name = "quectel"
    manufacturers = ("quectel",)

    def iccid_queries(self) -> list[Query[Iccid]]:
        return [crsm_iccid_query(), Query(QCCID, parse_iccid), ccid_query()]

    def attempts_queries(self) -> list[Query[PinAttempts]]:
        return [cpinr_query(), Query(QPINC, parse_qpinc), csim_attempts_query()]

    def urc_setup(self) -> list[AtCommand]:
        # +QUSIM needs no switch: it comes by itself once the card is read.
        return [QSIMSTAT_ON]

    def sim_event(self, line: str) -> SimEvent | None:
        body = after_prefix(line, "+QSIMSTAT:")
        if body is not None:
            return _qsimstat_event(body)
        # +QUSIM: <0 SIM | 1 USIM> follows card initialisation: a card is there.
        if urc_number(line, "+QUSIM:") in (0, 1):
            return SimEvent.INSERTED
        return super().sim_event(line)
