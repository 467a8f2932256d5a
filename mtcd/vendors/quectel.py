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
# The USB network mode, +QCFG: "usbnet",<n> (a reboot applies a change:
# mtcd only reads it).
QCFG_USBNET = AtCommand('AT+QCFG="usbnet"', prefixes=("+QCFG:",), name="qcfg-usbnet")
QNETDEVCTL_QUERY = AtCommand("AT+QNETDEVCTL?", prefixes=("+QNETDEVCTL:",), name="qnetdevctl")
_USBNET_MODES = {"0": "rmnet", "1": "ecm", "2": "mbim", "3": "rndis", "5": "ncm"}
# +QNETDEVCTL=<op>,<cid>,<urc_en>: op 0 disconnects, 1 connects once,
# 3 connects and reconnects by itself, which the modem keeps across
# reboots: that is its auto-connect.
_QNETDEV_DISCONNECT, _QNETDEV_CONNECT, _QNETDEV_AUTO = 0, 1, 3


def qnetdevctl(op: int, cid: int) -> AtCommand:
    # A data call may take the network's time to come up.
    return AtCommand(f"AT+QNETDEVCTL={op},{cid},1", timeout=60.0, name="qnetdevctl")


def parse_usbnet(lines: Sequence[str]) -> str:
    """+QCFG: "usbnet",<n> -> "ecm", "rndis", "rmnet", "mbim" or "ncm"."""
    for fields in info_fields(lines, "+QCFG:"):
        if fields and fields[0].lower() == "usbnet" and len(fields) >= 2:
            mode = _USBNET_MODES.get(fields[1])
            if mode is None:
                raise ModemProtocolError(f'+QCFG "usbnet": unknown mode {fields[1]!r}')
            return mode
    raise ModemProtocolError('no +QCFG: "usbnet" line in the reply')


def parse_qnetdevctl_auto(lines: Sequence[str]) -> bool:
    """+QNETDEVCTL: <op>,<cid>,<urc_en>,<state> -> True when op is 3
    (connect and reconnect by itself); an empty reply: nothing set."""
    rows = info_fields(lines, "+QNETDEVCTL:")
    for fields in rows:
        # ASCII and short: int() refuses "²" and digit strings past 4300.
        if not fields or not (fields[0].isascii() and fields[0].isdigit() and len(fields[0]) <= 3):
            raise ModemProtocolError(f"+QNETDEVCTL: unexpected fields {fields!r}")
    return any(int(fields[0]) == _QNETDEV_AUTO for fields in rows)


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

    def data_call(self, cid: int, on: bool) -> list[AtCommand]:
        return [qnetdevctl(_QNETDEV_CONNECT if on else _QNETDEV_DISCONNECT, cid)]

    def usbnet_queries(self) -> list[Query[str]]:
        return [Query(QCFG_USBNET, parse_usbnet)]

    def autoconnect_queries(self, cid: int) -> list[Query[bool]]:
        return [Query(QNETDEVCTL_QUERY, parse_qnetdevctl_auto)]

    def autoconnect_off(self, cid: int) -> list[AtCommand]:
        return [qnetdevctl(_QNETDEV_DISCONNECT, cid)]

    def sim_event(self, line: str) -> SimEvent | None:
        body = after_prefix(line, "+QSIMSTAT:")
        if body is not None:
            return _qsimstat_event(body)
        # +QUSIM: <0 SIM | 1 USIM> follows card initialisation: a card is there.
        if urc_number(line, "+QUSIM:") in (0, 1):
            return SimEvent.INSERTED
        return super().sim_event(line)
