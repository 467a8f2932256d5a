"""SIMCom (SIM7000, SIM7600, SIM800...): +CICCID, and the +SIMCARD URC
of SIM hot-swap.

No vendor retry counter on purpose: AT+SPIC prints four counters whose
order differs between firmware documents and reports, and reading PUK1
as PIN1 would defeat the remaining-attempts guard.  +CPINR and +CSIM
VERIFY (read from the card itself) are trusted instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..at.commands import AtCommand
from ..at.parsers import parse_iccid
from ..errors import ModemProtocolError
from ..identity import Iccid
from ..simlock import SimEvent
from .base import Dialect, Query, after_prefix, ccid_query, crsm_iccid_query, reply_fields

CICCID = AtCommand("AT+CICCID", prefixes=("+ICCID:",), name="ciccid")
# SIM hot-swap detection (SIM7600 family; unverified on others).  Removal
# then shows as +SIMCARD: NOT AVAILABLE, insertion as the usual +CPIN lines.
HOTSWAP_ON = AtCommand("AT+UIMHOTSWAPON=1", name="hotswap")
# USB network auto-dial (A76xx and later SIM7600 firmware): +DIALMODE: 0
# dials by itself as soon as it can, 1 waits to be asked.  Stored in the modem.
DIALMODE_QUERY = AtCommand("AT+DIALMODE?", prefixes=("+DIALMODE:",), name="dialmode")
DIALMODE_MANUAL = AtCommand("AT+DIALMODE=1", name="dialmode")


def qcrmcall(on: bool, cid: int) -> AtCommand:
    """$QCRMCALL=<action>,<instance>[,<ip type>,<act>,<umts profile>]: the
    data call behind the RNDIS/ECM interface (instance 1).  The profile is
    the context `cid`; act 2 is UMTS/LTE."""
    if not on:
        return AtCommand("AT$QCRMCALL=0,1", timeout=30.0, name="qcrmcall")
    tail = "" if cid == 1 else f",1,2,{cid}"
    return AtCommand(f"AT$QCRMCALL=1,1{tail}", prefixes=("$QCRMCALL:",), timeout=60.0, name="qcrmcall")


def parse_dialmode_auto(lines: Sequence[str]) -> bool:
    """+DIALMODE: <n> -> True when the modem dials by itself (0)."""
    fields = reply_fields(lines, "+DIALMODE:")
    if fields[0] not in ("0", "1"):
        raise ModemProtocolError(f"+DIALMODE: unknown mode {fields[0]!r}")
    return fields[0] == "0"


class SimcomDialect(Dialect):
    name = "simcom"
    manufacturers = ("simcom",)

    def iccid_queries(self) -> list[Query[Iccid]]:
        # SIM800 prints +CCID as bare digits; the parser takes that too.
        return [crsm_iccid_query(), ccid_query(), Query(CICCID, parse_iccid)]

    def urc_setup(self) -> list[AtCommand]:
        return [HOTSWAP_ON]

    def data_call(self, cid: int, on: bool) -> list[AtCommand]:
        return [qcrmcall(on, cid)]

    def autoconnect_queries(self, cid: int) -> list[Query[bool]]:
        return [Query(DIALMODE_QUERY, parse_dialmode_auto)]

    def autoconnect_off(self, cid: int) -> list[AtCommand]:
        return [DIALMODE_MANUAL]

    def sim_event(self, line: str) -> SimEvent | None:
        body = after_prefix(line, "+SIMCARD:")
        if body is not None:
            removed = " ".join(body.upper().split()) == "NOT AVAILABLE"
            return SimEvent.REMOVED if removed else None
        return super().sim_event(line)
