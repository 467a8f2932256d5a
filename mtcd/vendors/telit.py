"""Telit (LE910, LN920, ME910...): #PCT retry counter, #CCID, the #QSS
URC, and +CSIM only inside AT+CSIM=1 / AT+CSIM=0 (unverified).

#PCT answers for the code +CPIN is currently asking for, not for PIN1 as
such: its count is PIN1's only while +CPIN says SIM PIN.  The reply does
not say which code it counted, so `PinAttempts.source` carries the caveat
and callers must read attempts only in that state (the pairing flow does:
it asks for attempts when, and because, the card wants SIM PIN).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..at.commands import AtCommand
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
    iccid_reply,
    reply_fields,
    urc_number,
)

PCT = AtCommand("AT#PCT", prefixes=("#PCT:",), name="#pct")
TELIT_CCID = AtCommand("AT#CCID", prefixes=("#CCID:",), name="#ccid")
# Generic SIM access must be opened and closed around +CSIM (unverified).
CSIM_OPEN = AtCommand("AT+CSIM=1", name="csim-open")
CSIM_CLOSE = AtCommand("AT+CSIM=0", name="csim-close")
# Report SIM insertion/removal as #QSS: <status>; mode 1 is understood by
# every firmware (mode 2 adds the unlocked/ready states on newer ones).
QSS_ON = AtCommand("AT#QSS=1", name="#qss")

PCT_SOURCE = "#PCT (counts for the code +CPIN asks; PIN1 only when SIM PIN)"

parse_telit_ccid = iccid_reply("#CCID:")


def parse_pct(lines: Sequence[str]) -> PinAttempts:
    """#PCT: <n> -> PinAttempts(pin1=n); see the module note on its meaning."""
    fields = reply_fields(lines, "#PCT:")
    if len(fields) != 1:
        raise ModemProtocolError(f"#PCT: expected 1 field, got {len(fields)}")
    return attempts(counter(fields[0], "#PCT count"), None, PCT_SOURCE)


# #QSS: <status>: 0 not inserted, 1 inserted, 2 inserted and PIN unlocked,
# 3 inserted and ready (SMS/phonebook read).
_QSS_EVENTS = {
    0: SimEvent.REMOVED,
    1: SimEvent.INSERTED,
    2: SimEvent.READY,
    3: SimEvent.READY,
}


class TelitDialect(Dialect):
    name = "telit"
    manufacturers = ("telit",)

    def iccid_queries(self) -> list[Query[Iccid]]:
        return [crsm_iccid_query(), Query(TELIT_CCID, parse_telit_ccid), ccid_query()]

    def attempts_queries(self) -> list[Query[PinAttempts]]:
        return [
            cpinr_query(),
            Query(PCT, parse_pct),
            csim_attempts_query(before=(CSIM_OPEN,), after=(CSIM_CLOSE,)),
        ]

    def urc_setup(self) -> list[AtCommand]:
        return [QSS_ON]

    def sim_event(self, line: str) -> SimEvent | None:
        # Only the one-field URC form; "#QSS: <mode>,<status>" is the
        # answer to AT#QSS? and gives None here.
        state = urc_number(line, "#QSS:")
        if state is not None:
            return _QSS_EVENTS.get(state)
        return super().sim_event(line)
