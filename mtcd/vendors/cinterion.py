"""Cinterion / Gemalto / Thales (PLS, ELS, EHS, BGS): ^SPIC retry counter
and the ^SCKS card-holder URC."""

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

# With a facility, ^SPIC counts that facility's PIN (a second argument
# 1 would ask for its PUK): unlike bare AT^SPIC it does not depend on
# what +CPIN is asking for.
SPIC = AtCommand('AT^SPIC="SC"', prefixes=("^SPIC:",), name="^spic")
SCKS_ON = AtCommand("AT^SCKS=1", name="^scks")


def parse_spic(lines: Sequence[str]) -> PinAttempts:
    """^SPIC: <n> -> PinAttempts(pin1=n)."""
    fields = reply_fields(lines, "^SPIC:")
    if len(fields) != 1:
        raise ModemProtocolError(f"^SPIC: expected 1 field, got {len(fields)}")
    return attempts(counter(fields[0], "^SPIC count"), None, "^SPIC")


class CinterionDialect(Dialect):
    name = "cinterion"
    manufacturers = ("cinterion", "gemalto", "thales")

    def attempts_queries(self) -> list[Query[PinAttempts]]:
        return [cpinr_query(), Query(SPIC, parse_spic), csim_attempts_query()]

    def urc_setup(self) -> list[AtCommand]:
        return [SCKS_ON]

    def sim_event(self, line: str) -> SimEvent | None:
        # ^SCKS: 0 card removed, 1 card inserted; 2 (interface shut down on
        # some models) says nothing certain about the card.
        state = urc_number(line, "^SCKS:")
        if state is not None:
            return {0: SimEvent.REMOVED, 1: SimEvent.INSERTED}.get(state)
        return super().sim_event(line)
