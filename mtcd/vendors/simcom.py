"""SIMCom (SIM7000, SIM7600, SIM800...): +CICCID, and the +SIMCARD URC
of SIM hot-swap.

No vendor retry counter on purpose: AT+SPIC prints four counters whose
order differs between firmware documents and reports, and reading PUK1
as PIN1 would defeat the remaining-attempts guard.  +CPINR and +CSIM
VERIFY (read from the card itself) are trusted instead.
"""

from __future__ import annotations

from ..at.commands import AtCommand
from ..at.parsers import parse_iccid
from ..identity import Iccid
from ..simlock import SimEvent
from .base import Dialect, Query, after_prefix, ccid_query, crsm_iccid_query

CICCID = AtCommand("AT+CICCID", prefixes=("+ICCID:",), name="ciccid")
# SIM hot-swap detection (SIM7600 family; unverified on others).  Removal
# then shows as +SIMCARD: NOT AVAILABLE, insertion as the usual +CPIN lines.
HOTSWAP_ON = AtCommand("AT+UIMHOTSWAPON=1", name="hotswap")


class SimcomDialect(Dialect):
    name = "simcom"
    manufacturers = ("simcom",)

    def iccid_queries(self) -> list[Query[Iccid]]:
        # SIM800 prints +CCID as bare digits; the parser takes that too.
        return [crsm_iccid_query(), ccid_query(), Query(CICCID, parse_iccid)]

    def urc_setup(self) -> list[AtCommand]:
        return [HOTSWAP_ON]

    def sim_event(self, line: str) -> SimEvent | None:
        body = after_prefix(line, "+SIMCARD:")
        if body is not None:
            removed = " ".join(body.upper().split()) == "NOT AVAILABLE"
            return SimEvent.REMOVED if removed else None
        return super().sim_event(line)
