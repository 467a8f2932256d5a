"""The mobile equipment seen through its AT port: identity, radio, and the
plumbing that runs a dialect's query lists.  SIM operations live in
`mtcd.uicc`; what to do with the answers lives in `mtcd.policy`."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypeVar

from .at import commands, parsers
from .at.commands import NOT_THIS_FORM, AtCommand
from .at.reader import Response
from .errors import CommandFailed, ModemProtocolError, ModemUnavailable
from .identity import Imei, Imeisv
from .transport import SerialTransport
from .vendors import detect_dialect, dialect_named
from .vendors.base import Dialect, Query

log = logging.getLogger("mtcd.modem")

T = TypeVar("T")

CME_SIM_PIN_REQUIRED = 11  # TS 27.007 §9.2
CME_SIM_PUK_REQUIRED = 12


class LockedOutModem(ModemUnavailable):
    """The modem refuses every command but AT+CPIN while the SIM is locked.
    Unavailable (exit 69) rather than a refusal: nothing about the card or
    the modem could be read; `mtcd run` keeps trying, as for a modem gone."""


class SimChangedMidway(ModemUnavailable):
    """A SIM-state URC arrived while commands that go together ran: the
    rest is not sent, for a card the decision was not taken on."""


class Modem:
    def __init__(self, transport: SerialTransport, dialect: Dialect | None = None):
        self.transport = transport
        self.dialect = dialect or dialect_named("generic")
        self.radio_on: bool | None = None  # None: not known
        # Whether command lines with several commands are worth trying: set
        # False once this modem refused one that its parts then passed.
        self.concatenation = True
        # SIM-state URCs seen (counted by whoever reads them: the Gateway).
        self.sim_events = 0

    # -- plumbing ------------------------------------------------------------
    def run(self, command: AtCommand) -> Response:
        """Run a command that must succeed; raise CommandFailed otherwise."""
        response = self.transport.execute(command)
        if not response.result.ok:
            raise CommandFailed(command.loggable, _describe(response), response.result.code)
        return response

    def run_together(self, parts: Sequence[AtCommand]) -> None:
        """Run commands without information replies on one command line
        (one round trip), or one by one on a modem that refuses the
        concatenated line.  Raises CommandFailed like `run` for the first
        command that fails.  A SIM-state URC on the way stops the rest:
        a line that failed may have failed for a card swapped meanwhile,
        and its commands (a PDP activation) are not sent again for that one."""
        events = self.sim_events
        if self.concatenation and len(parts) > 1:
            try:
                self.run(commands.concatenated(parts))
                return
            except CommandFailed as exc:
                if exc.cme not in NOT_THIS_FORM:
                    raise  # a command of the line failed in its own words: alone it would too
                failed = exc
        else:
            failed = None
        for part in parts:
            if self.sim_events != events:
                raise SimChangedMidway(f"the SIM changed while {part.loggable} waited to be sent; not sent")
            self.run(part)
        if failed is not None:
            # Every part passed alone: the line's form was the problem.
            log.info("the modem refused a concatenated command line (%s); one command a line from now on",
                     failed.result)
            self.concatenation = False

    def first_answer(self, queries: Sequence[Query[T]], answered: list | None = None) -> T | None:
        """The first query whose command succeeds and whose reply parses.
        Unsupported commands (ERROR) and odd replies just move on.  The
        query that answered is appended to `answered` when given."""
        for query in queries:
            try:
                for cmd in query.before:
                    self.run(cmd)
                try:
                    response = self.run(query.command)
                finally:
                    for cmd in query.after:
                        self.transport.execute(cmd)
                value = query.parse(response.lines)
                if answered is not None:
                    answered.append(query)
                return value
            except CommandFailed as exc:
                log.debug("%s not answered (%s); trying the next source", query.command.loggable, exc.result)
            except ModemProtocolError as exc:
                log.info("%s gave an unusable reply (%s); trying the next source", query.command.loggable, exc)
        return None

    # -- set-up and identity --------------------------------------------------
    def initialise(self) -> None:
        """Echo off (fewer bytes, and no echo of a PIN) and numeric errors."""
        tried_together = self.concatenation
        if tried_together:
            try:
                self.run(commands.concatenated([commands.echo_off(), commands.verbose_errors()]))
                return
            except CommandFailed:
                pass  # a modem without +CMEE, or without concatenation: one by one
        try:
            self.run(commands.echo_off())
        except CommandFailed as exc:
            self._refuse_if_locked_out(exc)
            raise ModemUnavailable(f"{self.transport.port}: the port does not accept AT commands") from None
        try:
            self.run(commands.verbose_errors())
        except CommandFailed:
            log.info("modem refuses AT+CMEE=1; errors will be plain ERROR")
            return
        if tried_together:  # both passed alone: the line's form was refused
            log.info("the modem refuses concatenated command lines; one command a line")
            self.concatenation = False

    def choose_dialect(self, vendor: str) -> Dialect:
        if vendor == "auto":
            try:
                manufacturer = parsers.parse_cgmi(self.run(commands.manufacturer()).lines)
            except (CommandFailed, ModemProtocolError):
                manufacturer = ""
            self.dialect = detect_dialect(manufacturer)
        else:
            self.dialect = dialect_named(vendor)
        return self.dialect

    def imei(self) -> Imei:
        try:
            return parsers.parse_imei(self.run(commands.imei()).lines)
        except CommandFailed as exc:
            self._refuse_if_locked_out(exc)
            raise ModemUnavailable(f"{self.transport.port}: the modem does not report its IMEI ({exc.result})") from None

    def identities(self) -> tuple[Imei, Imeisv | None]:
        """IMEI and IMEISV in one command where the modem gives the IMEISV:
        both share TAC and serial number (TS 23.003 §6.2), the IMEI adds
        the Luhn check digit of those 14 digits.  Else AT+CGSN alone."""
        try:
            lines = self.run(commands.imeisv()).lines
        except CommandFailed:
            return self.imei(), None
        try:
            imeisv = parsers.parse_imeisv(lines)
        except ModemProtocolError:
            try:  # some firmware ignores the parameter and prints the IMEI
                return parsers.parse_imei(lines), None
            except ModemProtocolError:
                return self.imei(), None
        return Imei.of_imeisv(imeisv), imeisv

    def imeisv(self) -> Imeisv | None:
        try:
            return parsers.parse_imeisv(self.run(commands.imeisv()).lines)
        except (CommandFailed, ModemProtocolError):
            return None

    def _refuse_if_locked_out(self, exc: CommandFailed) -> None:
        """Some modems (ZTE, Qualcomm M6280) answer every command but AT+CPIN
        with "SIM PIN required" while the SIM is locked: no IMEI and no
        ICCID before the PIN, so no PIN can ever be matched to the card.
        Confirmed with AT+CPIN? (nothing else is sent), then refused."""
        if exc.cme not in (CME_SIM_PIN_REQUIRED, CME_SIM_PUK_REQUIRED):
            return
        try:
            lock = parsers.parse_cpin(self.run(commands.sim_lock_query()).lines)
        except (CommandFailed, ModemProtocolError):
            return
        if lock.value in ("SIM PIN", "SIM PUK"):
            raise LockedOutModem(
                f"{self.transport.port}: the modem answers nothing but AT+CPIN while the SIM is locked "
                f"({lock.value}): it reports no IMEI or ICCID before the PIN, so no PIN was presented; "
                "this modem cannot be paired"
            ) from None

    # -- radio -------------------------------------------------------------
    def switch_radio_off(self) -> None:
        """Radio off, SIM kept powered (CFUN=4).  Falls back to CFUN=0 on
        modems without mode 4: a refused gateway must not transmit."""
        try:
            self.run(commands.functionality(4))
        except CommandFailed:
            self.run(commands.functionality(0))
        self.radio_on = False

    def switch_radio_on(self) -> None:
        self.run(commands.functionality(1))
        self.radio_on = True


def _describe(response: Response) -> str:
    r = response.result
    if r.code is not None:
        return f"{r.kind}: {r.code}" + (f" ({r.text})" if r.text else "")
    return r.kind + (f" {r.text}" if r.text else "")
