"""Wires the edges together: config -> serial port -> modem -> pairing gate
-> journal -> data link.  `pair_once` is one whole pairing decision."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace

from typing import TYPE_CHECKING

from .at import commands, parsers
from .config import Config
from .datalink import Datalink, datalink_for
from .errors import EXIT_UNAVAILABLE, CommandFailed, MtcdError
from .modem import Modem
from .policy import PolicySettings, Reason
from .progress import NO_WAITS, Waits
from .transport import STILL_WAITING_EVERY, SerialTransport
from .identity import Iccid
from .simlock import SimLock

# The pairing stack (keystore and its cryptography, sealers, journal, gate,
# UICC layer, the card's record) is imported where it is used, once the
# session has sent its first command: the modem hears from a booting
# gateway sooner (bench/first_command.py, tests/test_first_command.py).
if TYPE_CHECKING:
    from .gate import PairingOutcome
    from .journal import PairingJournal
    from .lifecycle import Lifecycle
    from .uicc import Uicc

log = logging.getLogger("mtcd")

# The journal event after a decision with the card's own pairing record
# (mtcd.pairing_record): `iccid` and `decided` (the decision line's time)
# name the decision it belongs to.
CARD_RECORD = "card-record"


class RadioNotOff(MtcdError):
    """The modem refused both AT+CFUN=4 and AT+CFUN=0: the gate cannot be
    closed, so nothing else is done with this modem (exit 69).  Not a
    ModemUnavailable: the modem answers, and the service keeps trying to
    close the gate rather than treating the port as gone."""

    exit_code = EXIT_UNAVAILABLE


def switch_radio_off(modem: Modem) -> None:
    """modem.switch_radio_off, failing with what the modem answered to each
    command, in words an operator reading `journalctl -p err` understands."""
    try:
        modem.switch_radio_off()
    except CommandFailed as exc:
        answers = [exc]
        if isinstance(exc.__context__, CommandFailed):  # CFUN=4, before the CFUN=0 fallback
            answers.insert(0, exc.__context__)
        said = "; ".join(f"{a.command} answered {a.result}" for a in answers)
        raise RadioNotOff(f"the radio could not be switched off (the modem: {said})") from None


@dataclass(frozen=True)
class Report:
    """What `mtcd once --json` prints (the contract device agents rely on)."""

    state: str  # "paired" | "refused"
    reason: str | None
    detail: str
    imei: str | None
    imeisv: str | None
    iccid: str | None
    pin_retries: int | None
    link: str  # "up" | "down"

    def as_json(self) -> dict:
        return {
            "state": self.state,
            "reason": self.reason,
            "imei": self.imei,
            "imeisv": self.imeisv,
            "iccid": self.iccid,
            "pin_retries": self.pin_retries,
            "link": self.link,
        }


def policy_settings(config: Config) -> PolicySettings:
    p = config.policy
    return PolicySettings(
        min_retries=p.min_retries,
        require_pin_enabled=p.require_pin_enabled,
        on_imei_change=p.on_imei_change,
    )


class Gateway:
    """One session with the modem: holds the port while it lives.

    `on_sim_event` and `on_failure` are called from the port's reader thread
    (a SIM-state URC; the port failed); `heartbeat` while a command is awaited.
    `waits` tells a person or systemd what a long wait is for (mtcd.progress).
    """

    # Inside card_record_after(): the decision whose card record waits.  On
    # the class, so that a subclass with its own __init__ has it too.
    _card_record_held: list | None = None
    # The ICCID read after the card's record was not the paired card's: the
    # gate is open for a SIM that is gone (the caller closes it).
    paired_card_gone: bool = False

    def __new__(cls, config: Config, **_):
        # The driver seam: `[modem] driver = "modemmanager"` reaches the modem
        # through ModemManager over D-Bus (mtcd.mm), everything else as here.
        if cls is Gateway and config.modem.driver == "modemmanager":
            from .mm.gateway import MmGateway

            cls = MmGateway
        return super().__new__(cls)

    def __init__(self, config: Config, *, on_sim_event=None, on_failure=None, heartbeat=None,
                 waits: Waits = NO_WAITS):
        self.config = config
        self.uicc: Uicc | None = None
        self.on_sim_event = on_sim_event
        self.waits = waits
        m = config.modem
        self.transport = _WaitingTransport(
            m.port, m.baudrate, rtscts=m.rtscts, timeout=m.timeout, pin_timeout=m.pin_timeout,
            on_unsolicited=self._unsolicited, on_failure=on_failure, heartbeat=heartbeat,
        )
        self.transport.waits = waits
        self.modem = Modem(self.transport)
        self.datalink: Datalink = datalink_for(config.datalink, self.modem)
        self.link_up = False
        self.urcs_enabled = False
        self._idle_line_ok = True  # False once the modem refused the one-line check
        self.association_change: dict | None = None  # from the last pair()

    def _unsolicited(self, line: str) -> None:
        event = self.modem.dialect.sim_event(line)
        if event is not None:
            self.modem.sim_events += 1  # stops a run_together under way (mtcd.modem)
        if event is not None and self.uicc is not None:
            log.info("SIM event: %s", event.value)
            self.uicc.sim_changed()
            if self.on_sim_event is not None:
                self.on_sim_event(event)

    def __enter__(self) -> "Gateway":
        self.transport.open()
        return self

    def __exit__(self, *exc) -> None:
        self.transport.close()
        if self.uicc is not None and hasattr(self.uicc, "close"):
            self.uicc.close()  # a PC/SC card connection (mtcd.card)

    def start(self, prepare_link: bool = True) -> None:
        """Open the session: echo off, radio off, identities, keystore.
        `prepare_link=False` (a dry run) leaves the vendor's auto-connect
        setting as it is: a dry run changes nothing stored in the modem."""
        modem = self.modem
        modem.initialise()
        keystore = _open_keystore_meanwhile(self.config)
        # Radio off before anything else: a modem powers up with CFUN=1 and
        # would attach by itself with a SIM whose PIN is disabled.
        switch_radio_off(modem)
        modem.choose_dialect(self.config.modem.vendor)
        # With the radio off and before any pairing: a vendor auto-connect
        # the backend finds switched on is switched off.
        if prepare_link:
            self.datalink.prepare()
        self.imei, self.imeisv = modem.identities()
        self.keystore, self.sealer = keystore.result()
        from .card import uicc_for
        from .journal import PairingJournal

        self.journal = PairingJournal(self.config.state_dir)
        self.uicc = uicc_for(self.config, modem, waits=self.waits)

    def enable_sim_urcs(self) -> bool:
        """Ask the modem for its SIM-state URCs; True when it has some."""
        setup = self.modem.dialect.urc_setup()
        try:
            for command in setup:
                self.modem.run(command)
        except CommandFailed as exc:
            log.info("SIM-state notifications not available (%s); checking periodically", exc.result)
            return False
        self.urcs_enabled = bool(setup)
        return self.urcs_enabled

    def radio_level(self) -> int:
        """AT+CFUN? now (1 on, 4 or 0 off)."""
        return parsers.parse_cfun(self.modem.run(commands.functionality_query()).lines)

    def idle_reading(self) -> tuple[int, tuple[SimLock, Iccid | None] | None]:
        """The periodic check: the radio level and the slot's signature, on
        one command line where the modem takes it (mtcd.idlecheck), else
        `radio_level()` alone (signature None: the caller reads it with
        `sim_signature()` once the radio is where it should be)."""
        from .idlecheck import IdleReading, idle_line, read_idle_answer
        from .uicc import Uicc

        query = self.uicc.iccid_query if type(self.uicc) is Uicc else None
        line = idle_line(query.command) if query is not None and self.modem.concatenation else None
        if line is not None and self._idle_line_ok:
            answer = self.modem.transport.execute(line)
            reading = read_idle_answer(answer.lines, answer.result, query.command.prefixes, query.parse,
                                       Uicc.lock_of_error)
            # This line's AT+CPIN? is now the latest: the UICC layer holds
            # no reading a PIN could be presented on.
            self.uicc.forget_readings()
            if isinstance(reading, IdleReading):
                return reading.radio, (reading.lock, reading.iccid)
            if reading.form_refused:
                log.info("the modem refuses the one-line periodic check; three commands from now on")
                self._idle_line_ok = False
        return self.radio_level(), None

    def sim_signature(self) -> tuple[SimLock, Iccid | None]:
        """What the slot holds now, cheaply: one AT+CPIN? and, when a card
        answers, its ICCID (a swap to a PIN-less card stays READY)."""
        lock = self.uicc.lock(settle=False)
        iccid = self.uicc.iccid() if lock in (SimLock.READY, SimLock.SIM_PIN, SimLock.SIM_PUK) else None
        return lock, iccid

    def bring_up(self, outcome: PairingOutcome) -> None:
        """After a Paired decision: due rotations, then the link."""
        self._rotate_if_due(outcome.iccid)
        with self.waits.waiting("waiting for the data link"), self._link_commands():
            self.datalink.up(outcome.decision)
        self.link_up = True

    @contextlib.contextmanager
    def _link_commands(self):
        """While the link comes up, the modem's slow commands (radio on,
        attach, PDP activation, the vendor's data call) get
        datalink.command_timeout instead of their built-in bound.  Not on
        the way down: switching the radio off keeps its own short bound."""
        self.transport.slow_command_timeout = self.config.datalink.command_timeout
        try:
            yield
        finally:
            self.transport.slow_command_timeout = None

    def pair(self) -> PairingOutcome:
        """One pairing decision, journalled; the link is not touched.  The
        card's own pairing record follows on a card-record line: at once,
        or inside card_record_after() once that block is done."""
        from .gate import pair

        outcome = pair(self.uicc, self.keystore, policy_settings(self.config), self.imei, self.imeisv)
        for event, fields in outcome.pin_events:
            self.journal.append(event, **fields)
        decided, self.association_change = _journal_decision(self.journal, outcome, self.config.service.show_imsi)
        if self._card_record_held is not None:
            self._card_record_held[:] = [(outcome, decided["time"])]
        else:
            self.journal_card_record(outcome, decided["time"])
        return outcome

    @contextlib.contextmanager
    def card_record_after(self):
        """Hold back the card's pairing record of a decision taken inside
        this block until the block is done: after the link is up, or the
        gate closed and the radio off, so its reads (2 to 6 AT+CRSM lines, or APDUs)
        never stand between a decision and the link.  A block that ends in
        an error (the radio would not switch off, the port went away) reads
        nothing: the card is not asked again in a session that failed."""
        self._card_record_held = held = []
        self.paired_card_gone = False
        try:
            yield
        finally:
            self._card_record_held = None
        for outcome, decided in held:
            self.journal_card_record(outcome, decided)

    def journal_card_record(self, outcome: PairingOutcome, decided: str) -> None:
        """Read the card's pairing record (read-only) and journal it as the
        record of the decision journaled at `decided`.  Never raises for
        the card or the journal: the decision stands as it was taken."""
        fields = self._card_record(outcome)
        try:
            self.journal.append(CARD_RECORD, iccid=str(outcome.iccid) if outcome.iccid else None,
                                decided=decided, **fields)
        except MtcdError as exc:
            log.warning("the card's pairing record was not journaled: %s", exc)

    def _card_record(self, outcome: PairingOutcome) -> dict:
        """The card's pairing record, read the way the card is reached: in
        APDUs through the UICC's own channel ([uicc] backend pcsc or csim),
        else over AT+CRSM; only where mtcd holds the AT port (not through
        ModemManager), and only from the card the decision was about."""
        from .pairing_record import card_files, journal_fields, not_read

        if self.config.modem.driver != "serial":
            return not_read("the modem is reached through ModemManager")
        if outcome.iccid is None:
            return not_read("no card was identified")
        files = card_files(self.config.uicc.backend, modem=self.modem, uicc=self.uicc)
        fields = journal_fields(files)
        # The link came up (or the gate closed) since the card was read: the
        # answers may be another card's.  The ICCID read after the record
        # says which card gave it; a swap back within that time is not
        # possible in the hand.  A modem that only said ERROR told of no card.
        if files.card_answered:
            try:
                now = self.uicc.iccid()
            except MtcdError as exc:
                return not_read(f"the SIM could not be identified again ({exc})")
            if now != outcome.iccid:
                self.paired_card_gone = outcome.paired
                return not_read("the SIM changed")
        return fields

    def card_command(self):
        """Around a command that may send a PIN or PUK (a rotation, an
        adoption, an unblock, a person's PIN try).  Nothing to do over a
        port mtcd holds: the card's state is read with each step.
        Through ModemManager, the slot is read afresh first (mtcd.mm)."""
        return contextlib.nullcontext()

    def lifecycle(self) -> Lifecycle:
        from .lifecycle import Lifecycle

        return Lifecycle(self.uicc, self.keystore, self.journal, self.config.policy, self.imei)

    def pair_once(self) -> Report:
        self.start()
        with self.card_record_after():
            outcome = self.pair()
            if outcome.paired:
                try:
                    self.bring_up(outcome)
                except MtcdError:
                    # Half up is not up, whatever failed: close what may be open.
                    self.close_gate()
                    raise
                log.info("paired: ICCID %s, IMEI %s, link up (%s)", outcome.iccid, self.imei, self.datalink.name)
            else:
                self.ensure_radio_off()
                log.warning("refused: %s (%s); radio off", outcome.reason.value, outcome.decision.detail)
        if self.paired_card_gone:
            # Another SIM answered after the link came up: no decision was
            # taken on it, so it gets neither the link nor the radio (guarantee 3).
            self.close_gate()
            self.ensure_radio_off()
            detail = (f"SIM {outcome.iccid} was taken out after the link came up; link down, radio off: "
                      "`mtcctl repair` pairs the SIM now in the slot")
            log.warning("%s", detail)
            return replace(_report(outcome, self.link_up), state="refused", reason=Reason.SIM_ERROR.value,
                           detail=detail)
        return _report(outcome, self.link_up)

    def _rotate_if_due(self, iccid) -> None:
        """Compromised, transport or old PINs are changed while the SIM is
        unlocked, before the link comes up.  A failed change does not keep
        a paired SIM off the network: it is journalled and tried again."""
        from .lifecycle import LifecycleRefused, change_waits, now_utc, rotation_due

        entry = self.keystore.get(iccid)
        reason = rotation_due(entry, self.config.policy, now_utc())
        if reason is None:
            return
        waits = change_waits(entry)
        if waits is not None:
            # Changing again now could lose the PIN the card holds; the next
            # pairing of a locked SIM settles it, and the rotation follows.
            log.info("PIN rotation (%s) waits: %s", reason, waits)
            return
        try:
            result = self.lifecycle().rotate(reason)
            log.info("PIN rotation (%s): %s", reason, result.detail)
        except LifecycleRefused as exc:
            log.warning("PIN rotation (%s) not done: %s", reason, exc)

    def close_gate(self) -> bool:
        """Link down and radio off.  True when the radio is known to be off;
        False leaves `modem.radio_on` unknown, for the caller to act on."""
        try:
            self.datalink.down()
            closed = True
        except MtcdError as exc:
            log.warning("closing the link: %s", exc)
            self.modem.radio_on = None
            closed = False
        self.link_up = False
        return closed

    def ensure_radio_off(self) -> None:
        """After a refusal, or before pairing: raises unless the radio is
        confirmed off (CFUN=4, else CFUN=0), so a caller that cannot switch
        it off drops the session instead of carrying on with it on."""
        if self.modem.radio_on is not False:
            switch_radio_off(self.modem)


def _open_keystore_meanwhile(config: Config):
    """The keystore opening (and AES-GCM's bindings loading, which its first
    lookup needs) in a thread of its own while the session's first commands
    wait for the modem (mtcd.background): a key sealed with systemd-creds
    or the TPM takes a program run or a TPM round trip.  Its modules are
    imported here first, in this thread."""
    import shutil  # noqa: F401 - the sealer's choice (systemd-creds installed?), imported here too
    import subprocess  # noqa: F401 - the systemd-creds sealer's, imported here rather than in the thread

    from .background import Background
    from .sealers import open_keystore

    def open_it():
        opened = open_keystore(config.state_dir, config.keystore.sealer)
        try:
            import cryptography.hazmat.primitives.ciphers.aead  # noqa: F401
        except ImportError:
            pass  # said by the keystore when it needs it
        return opened

    return Background(open_it, name="mtcd-keystore-open")


# A command whose own bound is this long or longer is one of the link's slow
# ones (radio on, PDP activation, a vendor data call), not an ordinary query.
SLOW_COMMAND = 30.0


class _WaitingTransport(SerialTransport):
    """The serial port, saying what it waits for when the modem is slow to
    answer (mtcd.progress); every wait keeps its bound."""

    waits: Waits = NO_WAITS
    slow_command_timeout: float | None = None  # see Gateway._link_commands

    def execute(self, command, timeout=None):
        if timeout is None and self.slow_command_timeout is not None and command.timeout >= SLOW_COMMAND:
            timeout = max(self.timeout, self.slow_command_timeout)
        bound = max(command.timeout, self.timeout) if timeout is None else timeout
        # Nudged from _still_waiting: a command answered within a second (the
        # idle check's, every one but the slow) wakes no progress thread.
        nudged = self.waits.show_after >= STILL_WAITING_EVERY
        with self.waits.waiting(f"waiting for the modem to answer {command.loggable}", bound, nudged=nudged):
            return super().execute(command, timeout)

    def _still_waiting(self) -> None:
        super()._still_waiting()
        self.waits.nudge()


def _journal_decision(journal: PairingJournal, outcome: PairingOutcome,
                      show_imsi: bool = False) -> tuple[dict, dict | None]:
    """Journal the decision, and an association change when there is one;
    return the decision's record and that change (with a one-line
    `message`) or None.  The IMSI is masked as in the systemd journal
    unless `show_imsi`."""
    from .events import masked_imsi

    iccid = str(outcome.iccid) if outcome.iccid else None
    imei = str(outcome.imei)
    # Compared with what the gateway saw last time, paired or not, so that a
    # foreign SIM left in the slot is reported once, not at every boot.
    # From the journal's summary, not a scan; {} when unknown.
    last = journal.last("decision") or {}
    old_iccid, old_imei = last.get("iccid"), last.get("imei")
    decided = journal.append(
        "decision",
        outcome="paired" if outcome.paired else "refused",
        reason=outcome.reason.value if outcome.reason else None,
        detail=getattr(outcome.decision, "detail", None),
        imei=imei,
        imeisv=str(outcome.imeisv) if outcome.imeisv else None,
        iccid=iccid,
        imsi=None if not outcome.imsi else str(outcome.imsi) if show_imsi else masked_imsi(outcome.imsi),
        pin_retries=outcome.pin_retries,
    )
    sim_changed = old_iccid is not None and iccid is not None and iccid != old_iccid
    imei_changed = old_imei is not None and imei != old_imei
    if sim_changed or imei_changed:
        change = "both" if sim_changed and imei_changed else ("sim" if sim_changed else "imei")
        journal.append(
            "association-changed",
            change=change,
            old_iccid=old_iccid,
            new_iccid=iccid,
            old_imei=old_imei,
            new_imei=imei,
        )
        parts = []
        if sim_changed:
            parts.append(f"ICCID {old_iccid} -> {iccid}")
        if imei_changed:
            parts.append(f"IMEI {old_imei} -> {imei}")
        message = "association changed: " + ", ".join(parts)
        log.warning("%s", message)
        return decided, {"change": change, "old_iccid": old_iccid, "new_iccid": iccid,
                         "old_imei": old_imei, "new_imei": imei, "message": message}
    return decided, None


def _report(outcome: PairingOutcome, link_up: bool) -> Report:
    return Report(
        state="paired" if outcome.paired else "refused",
        reason=outcome.reason.value if outcome.reason else None,
        detail=getattr(outcome.decision, "detail", ""),
        imei=str(outcome.imei),
        imeisv=str(outcome.imeisv) if outcome.imeisv else None,
        iccid=str(outcome.iccid) if outcome.iccid else None,
        pin_retries=outcome.pin_retries,
        link="up" if link_up else "down",
    )
