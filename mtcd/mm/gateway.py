"""The Gateway over ModemManager: the same pairing walk (mtcd.gate), the same
keystore markers and journal, with ModemManager's D-Bus calls where the
serial driver sends AT commands.

The last line of defence stays here as in mtcd.uicc: Sim.SendPin goes out
only when the most recent reading in this session said exactly SIM PIN and
the PIN was looked up for the ICCID read from this same card, and that
reading was taken after ModemManager probed the modem again for the command
under way (MmGateway.card_command), whatever its plugin: one that reports
swaps may still miss one (a lost URC, detection switched off in the modem).
Nothing here ever calls SendPuk except `unblock`, which only a person's
command reaches.
ModemManager itself never sends a PIN on its own (measured, 1.20); the
modem is kept disabled and in low power until a Paired decision.
"""

from __future__ import annotations

import contextlib
import logging
import time

from ..datalink import Datalink, DatalinkFailed, datalink_for
from ..errors import CommandFailed, ModemUnavailable, MtcdError
from ..identity import Iccid, Imei, Imsi
from ..journal import PairingJournal
from ..policy import PinOutcome
from ..progress import NO_WAITS
from ..sealers import open_keystore
from ..secret import Pin, Puk
from ..service import Gateway
from ..simlock import PinAttempts, SimLock
from ..uicc import PresentationRefused
from . import states
from .bus import BusError, ModemManagerBus
from .nm import PROFILE_DIRS, refuse_pin_profiles

log = logging.getLogger("mtcd.mm")

# How often a reading is repeated while ModemManager is still probing.
POLL = 0.25
# After ModemManager removed the modem object, how long to wait for it to
# export one again for the same port (a SIM hot swap: it re-probes the
# modem, measured at 2-5 s) before the modem counts as gone.
REPROBE_WAIT = 10.0


class MmSession:
    """What the rest of mtcd calls the transport: here the bus connection and
    the modem object chosen by `[modem] port` (its primary port's name)."""

    slow_command_timeout = None  # read by Gateway._link_commands; ModemManager bounds its own

    def __init__(self, port: str, timeout: float, bus: ModemManagerBus | None = None):
        self.port = port
        self.timeout = timeout
        self.bus = bus or ModemManagerBus()
        self.path: str | None = None
        self.watcher = None  # mtcd.mm.watch.ModemWatcher, in `mtcd run`

    @property
    def alive(self) -> bool:
        return self.bus.alive and self.path is not None

    def open(self) -> None:
        """Connect and find the modem; waits up to `timeout` while
        ModemManager probes it.  ModemUnavailable when it is not there."""
        self.bus.open()
        try:
            self.path = self.find(self.timeout)
        except ModemUnavailable:
            self.bus.close()
            raise

    def find(self, wait: float) -> str:
        """The object path of the modem on this port, waiting up to `wait`
        seconds for ModemManager to export it."""
        deadline = time.monotonic() + wait
        while True:
            try:
                path = states.modem_for_port(self.bus.modems(), self.port)
                if path is not None:
                    return path
            except ModemUnavailable:
                if time.monotonic() >= deadline:
                    raise
            if time.monotonic() >= deadline:
                raise ModemUnavailable(f"{self.port}: ModemManager has no modem on this port")
            time.sleep(POLL)

    def reprobe(self) -> str:
        """Make ModemManager read the modem, and its SIM, afresh: inhibit
        the device (ModemManager drops the modem object) and release it at
        once (it probes the port again and exports a new object, with the
        card in the slot read now).  The only way ModemManager's SIM
        properties are known to say which card is there now, on any plugin
        (measured, 1.20 generic: about a second).  The session's path is
        None meanwhile, so the signal watcher takes the old object's
        removal for no loss of this modem.  Returns the new object's path;
        ModemUnavailable when none comes back."""
        old = self._path()
        uid = self.modem("Device")
        self.path = None
        inhibited = False
        try:
            self.bus.call(states.ROOT, states.MANAGER, "InhibitDevice", "sb", (uid, True))
            inhibited = True
            self.bus.call(states.ROOT, states.MANAGER, "InhibitDevice", "sb", (uid, False))
            inhibited = False
        except BusError as exc:
            self.path = old
            raise ModemUnavailable(f"{self.port}: ModemManager would not probe the modem again "
                                   f"(InhibitDevice: {exc.name})") from None
        finally:
            if inhibited:  # never leave the device inhibited (ModemManager also lifts it when we go)
                try:
                    self.bus.call(states.ROOT, states.MANAGER, "InhibitDevice", "sb", (uid, False))
                except MtcdError:
                    pass
        self.path = self.find(REPROBE_WAIT)
        log.info("ModemManager probed the modem again (%s, was %s)", self.path, old)
        return self.path

    def close(self) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.stop()
        self.path = None
        self.bus.close()

    # -- the modem object --------------------------------------------------
    def modem(self, name: str):
        return self.bus.get(self._path(), states.MODEM, name)

    def call(self, interface: str, method: str, signature: str | None = None, body=(), timeout: float | None = None):
        return self.bus.call(self._path(), interface, method, signature, body,
                             **({} if timeout is None else {"timeout": timeout}))

    def _path(self) -> str:
        if self.path is None:
            raise ModemUnavailable(f"{self.port}: no modem session")
        return self.path


class MmModem:
    """The mobile equipment through ModemManager: identity and radio."""

    dialect = None  # no AT dialect: ModemManager drives the modem

    def doctor_facts(self) -> dict:
        """`mtcctl doctor`'s modem facts from ModemManager's properties
        (read-only; mtcd.doctor_mm)."""
        from ..doctor_mm import modem_facts

        return modem_facts(self.session.bus, self.session._path())

    def __init__(self, session: MmSession):
        self.session = session
        self.transport = session  # for code that names the port
        self.radio_on: bool | None = None

    def imei(self) -> Imei:
        value = self.session.modem("EquipmentIdentifier")
        try:
            return Imei(value)
        except ValueError:
            raise ModemUnavailable(f"{self.session.port}: ModemManager reports no IMEI (got {value!r})") from None

    def state(self) -> int:
        return self.session.modem("State")

    def switch_radio_off(self) -> None:
        """Disabled and in low power: ModemManager sends no attach, PDP or
        dial command for a disabled modem, and low power switches the radio
        off (CFUN=4 on an AT modem).  A modem whose SIM is locked cannot be
        enabled without the PIN, and ModemManager refuses low power then
        (WrongState): locked counts as off, and low power follows once the
        card is unlocked and the modem disabled.  A plugin without low power
        (ModemManager's generic one answers Unsupported) fails here: the gate
        cannot be confirmed closed, and the caller says so (exit 69)."""
        deadline = time.monotonic() + self.session.timeout
        while True:
            try:
                if self.state() >= states.STATE_DISABLING:
                    self.session.call(states.MODEM, "Enable", "b", (False,))
                if self.state() == states.STATE_DISABLED:
                    self.session.call(states.MODEM, "SetPowerState", "u", (states.POWER_LOW,))
                break
            except BusError as exc:
                # InProgress: ModemManager is still busy with something of its
                # own (NetworkManager's bearer being disconnected): measured,
                # a retry after it is done succeeds.  Bounded by modem.timeout.
                if exc.name == states.ERROR_IN_PROGRESS and time.monotonic() < deadline:
                    time.sleep(POLL)
                    continue
                failure = CommandFailed("Modem.Enable(false)/SetPowerState(low)", exc.name)
            raise failure
        self.radio_on = False

    def switch_radio_on(self) -> None:
        # After an unlock ModemManager re-reads the modem before it may be
        # enabled (WrongState until then): wait for that, bounded.
        deadline = time.monotonic() + self.session.timeout
        while self.state() < states.STATE_DISABLED and time.monotonic() < deadline:
            time.sleep(POLL)
        try:
            self.session.call(states.MODEM, "Enable", "b", (True,), timeout=120)
        except BusError as exc:
            raise CommandFailed("Modem.Enable(true)", exc.name) from None
        self.radio_on = True


class MmUicc:
    """The SIM as ModemManager reports it, with mtcd.uicc.Uicc's contract."""

    def __init__(self, modem: MmModem, *, settle_time: float = 10.0, waits=None):
        self.modem = modem
        self.session = modem.session
        self.settle_time = settle_time
        self.waits = waits if waits is not None else NO_WAITS
        self._lock: SimLock | None = None
        self._iccid: Iccid | None = None
        # The modem object both readings were taken from: ModemManager
        # exports a new one after a SIM hot swap, and a PIN looked up for
        # the old object's card is never sent to the new one.
        self._read_on: str | None = None
        # The SIM object the ICCID was read from: the one a PIN goes to.
        # ModemManager may name another one in `Sim` without exporting the
        # modem again (a slot switch, a card read again in place).
        self._iccid_on: str | None = None
        # PIN1's counter as last reported for (modem object, ICCID), and the
        # count seen before a SendPin that card accepted in this session.
        self._pin1_seen: tuple | None = None
        self._verified: tuple | None = None
        # A PIN or PUK goes only on a reading taken on the modem object a
        # re-probe exported for the command under way, on every plugin
        # (MmGateway.card_command): `fresh_on`, None outside one.
        self.fresh_on: str | None = None
        # The fresh reading a secret went out on and the card did not take
        # (refused, or the answer lost): the slot may hold another card
        # since, and a plugin blind to swaps would still name the old one.
        # `reprobe` (set by MmGateway.card_command) reads it afresh again.
        self._spent_on: str | None = None
        self.reprobe = None

    def followed(self, old_path: str, new_path: str) -> None:
        """ModemManager probed the modem again at mtcd's own request, with
        the same card still in the slot (its ICCID read again and equal):
        the card kept its state, so what was known of its PIN1 counter is
        carried to the new object."""
        if self._pin1_seen is not None and self._pin1_seen[0] == old_path:
            self._pin1_seen = (new_path,) + self._pin1_seen[1:]
        if self._verified is not None and self._verified[0] == old_path:
            self._verified = (new_path,) + self._verified[1:]

    def sim_changed(self) -> None:
        self._lock = None
        self._iccid = None
        self._read_on = None
        self._iccid_on = None
        self._verified = None

    def forget_iccid(self) -> None:
        """A re-probe: the ICCID is read again before anything is sent
        (what is known of PIN1's counter stays for `followed`)."""
        self._iccid = None
        self._iccid_on = None
        self._spent_on = None

    def lock(self, settle: bool = True) -> SimLock:
        """What the SIM asks for, waiting a bounded time while ModemManager
        still probes or re-reads the card (after an unlock, it does)."""
        self._lock = None
        self._read_on = self.session.path
        deadline = time.monotonic() + (self.settle_time if settle else 0.0)
        with self.waits.waiting("waiting for ModemManager to read the SIM", self.settle_time):
            while True:
                props = self.session.bus.get_all(self.session._path(), states.MODEM)
                state = states.sim_lock(props.get("State", states.STATE_UNKNOWN),
                                        props.get("StateFailedReason", 0),
                                        props.get("UnlockRequired", states.LOCK_UNKNOWN))
                if state is not SimLock.NOT_READY or time.monotonic() >= deadline:
                    self._lock = state
                    return state
                time.sleep(POLL)

    def _sim_path(self) -> str | None:
        path = self.session.modem("Sim")
        return None if path in ("", "/") else path

    def iccid(self) -> Iccid | None:
        self._iccid = None
        self._iccid_on = None
        if self._spent_on is not None and self._spent_on == self.fresh_on and self.reprobe is not None:
            # After a secret the card did not take: what follows (a run's
            # second candidate, a lost answer settled) rests on the slot as
            # ModemManager reads it now, not on its word from before.
            self.reprobe()  # (its forget_iccid: no longer spent)
        if self._read_on != self.session.path:
            self._lock = None  # the lock was read on another modem object
        path = self._sim_path()
        if path is None:
            return None
        try:
            self._iccid = Iccid(self.session.bus.get(path, states.SIM, "SimIdentifier"))
        except (ValueError, BusError):
            return None
        self._iccid_on = path
        return self._iccid

    def attempts(self) -> PinAttempts | None:
        reported = states.pin_attempts(dict(self.session.modem("UnlockRetries")))
        card = (self.session.path, self._iccid)
        if reported is not None and reported.pin1 is not None:
            self._pin1_seen = card + (reported.pin1,)
            return reported
        if self._verified is not None and self._verified[:2] == card:
            return states.pin1_after_verification(reported, self._verified[2])
        return reported

    def pin_enabled(self) -> bool | None:
        try:
            return states.pin_enabled(self.session.bus.get(self.session._path(), states.MODEM_3GPP,
                                                           "EnabledFacilityLocks"))
        except BusError:
            return None

    def imsi(self) -> Imsi | None:
        path = self._sim_path()
        if path is None:
            return None
        try:
            return Imsi(self.session.bus.get(path, states.SIM, "Imsi"))
        except (ValueError, BusError):
            return None

    def puk_attempts(self) -> int | None:
        attempts = self.attempts()
        return attempts.puk1 if attempts is not None else None

    def may_present(self, iccid: Iccid) -> bool:
        return (self._lock is SimLock.SIM_PIN and self._iccid is not None and self._iccid == iccid
                and self._read_on == self.session.path and self._read_afresh())

    def _read_afresh(self) -> bool:
        """The reading rests on the slot as it is now: taken after a
        re-probe for the command under way, on the object that re-probe
        exported.  Never on a plugin's word that no swap happened: the one
        that reports swaps (quectel) misses those the modem does not tell."""
        return (self.fresh_on is not None and self._read_on == self.fresh_on
                and self._spent_on != self.fresh_on)

    def present_pin(self, pin: Pin, for_iccid: Iccid) -> PinOutcome:
        self._require(SimLock.SIM_PIN, for_iccid, "the SIM is not asking for exactly SIM PIN")
        return self._send("SendPin", "s", (pin.reveal(),))

    def change_pin(self, old: Pin, new: Pin, for_iccid: Iccid) -> PinOutcome:
        self._require(SimLock.READY, for_iccid, "a PIN is only changed on an unlocked SIM")
        return self._send("ChangePin", "ss", (old.reveal(), new.reveal()))

    def enable_pin(self, pin: Pin, for_iccid: Iccid) -> PinOutcome:
        self._require(SimLock.READY, for_iccid, "the PIN is only enabled on an unlocked SIM")
        return self._send("EnablePin", "sb", (pin.reveal(), True))

    def unblock(self, puk: Puk, new_pin: Pin, for_iccid: Iccid) -> PinOutcome:
        """Sim.SendPuk: only for a person who typed the PUK (guarantee 2)."""
        self._require(SimLock.SIM_PUK, for_iccid, "the SIM is not asking for its PUK")
        return self._send("SendPuk", "ss", (puk.reveal(), new_pin.reveal()))

    def _require(self, lock: SimLock, iccid: Iccid, why: str) -> None:
        """Every Sim.SendPin, ChangePin, EnablePin and SendPuk passes here."""
        if not self._read_afresh():
            raise PresentationRefused("the slot was not read afresh for this command (ModemManager may still "
                                      "describe a card that left it)")
        if self._lock is not lock:
            raise PresentationRefused(why)
        if self._iccid is None or self._iccid != iccid:
            raise PresentationRefused("the secret was not looked up for the ICCID of this card")
        if self._read_on != self.session.path:
            raise PresentationRefused("ModemManager exported the modem again since the SIM was read")
        if self._sim_path() != self._iccid_on:
            raise PresentationRefused("ModemManager names another SIM object since its ICCID was read")

    def _send(self, method: str, signature: str, body) -> PinOutcome:
        self._lock = None  # whatever happens next, the reading is no longer current
        card = (self.session.path, self._iccid)
        outcome = self._call_sim(method, signature, body)
        if outcome is PinOutcome.ACCEPTED and method == "SendPin":
            seen = self._pin1_seen[2] if self._pin1_seen is not None and self._pin1_seen[:2] == card else None
            self._verified = card + (seen,)
        elif outcome is not PinOutcome.ACCEPTED:
            self._verified = None  # the counter may have moved since: no longer known
        if outcome is not PinOutcome.ACCEPTED:
            self._spent_on = self.fresh_on
        return outcome

    def _call_sim(self, method: str, signature: str, body) -> PinOutcome:
        # The object whose ICCID was read (_require), never the one `Sim`
        # names by now: if it went away, the call fails and nothing is sent.
        path = self._iccid_on
        if path is None:
            return PinOutcome.UNKNOWN
        try:
            self.session.bus.call(path, states.SIM, method, signature, body, timeout=self.session.timeout + 30)
        except BusError as exc:
            outcome = states.pin_outcome(exc.name)
            if outcome is PinOutcome.UNKNOWN:
                log.warning("Sim.%s ended with %s; outcome unknown", method, exc.name)
            return outcome
        except ModemUnavailable:
            return PinOutcome.UNKNOWN
        return PinOutcome.ACCEPTED


class MmDatalink(Datalink):
    """`[datalink] backend = "modemmanager"`: Simple.Connect with the APN
    after a Paired decision, Simple.Disconnect and low power when the gate
    closes."""

    name = "modemmanager"

    def __init__(self, modem: MmModem, apn: str, pdp_type: str = "IP"):
        super().__init__(modem)
        self.apn, self.pdp_type = apn, pdp_type

    def _bring_up(self) -> None:
        ip_type = {"IP": 1, "IPV6": 2, "IPV4V6": 4}[self.pdp_type]  # MMBearerIpFamily
        try:
            self.modem.session.call(states.SIMPLE, "Connect", "a{sv}",
                                    ({"apn": ("s", self.apn), "ip-type": ("u", ip_type)},), timeout=180)
        except BusError as exc:
            raise DatalinkFailed(f"ModemManager could not connect ({exc.name})") from None

    def _take_down(self) -> None:
        try:
            if self.modem.state() >= states.STATE_ENABLED:
                self.modem.session.call(states.SIMPLE, "Disconnect", "o", ("/",), timeout=60)
        except BusError as exc:
            log.info("Simple.Disconnect: %s", exc.name)  # nothing connected is not a failure


class MmGateway(Gateway):
    """Gateway with `[modem] driver = "modemmanager"` (see Gateway.__new__)."""

    def __init__(self, config, *, on_sim_event=None, on_failure=None, heartbeat=None, waits=NO_WAITS):
        self.config = config
        self.uicc = None
        self.on_sim_event = on_sim_event
        self.waits = waits
        self.transport = MmSession(config.modem.port, config.modem.timeout)
        self.modem = MmModem(self.transport)
        if config.datalink.backend == "modemmanager":
            self.datalink = MmDatalink(self.modem, config.datalink.apn, config.datalink.pdp_type)
        elif config.datalink.backend == "networkmanager":
            from ..datalink.networkmanager import NmDatalink

            self.datalink = NmDatalink(self.modem, config.datalink.connection, config.state_dir,
                                       config.datalink.command_timeout, profile_dirs=self.nm_profile_dirs)
        else:
            self.datalink = datalink_for(config.datalink, self.modem)
        self.link_up = False
        self.urcs_enabled = False
        self.association_change = None

    # NetworkManager's keyfile directories (a test points them elsewhere).
    nm_profile_dirs = PROFILE_DIRS

    def start(self, prepare_link: bool = True) -> None:
        # Disabled and low power before anything is decided (guarantee 3).
        from ..service import RadioNotOff, switch_radio_off

        if prepare_link:
            self.datalink.hold()  # networkmanager: it would enable the modem again
        try:
            switch_radio_off(self.modem)
        except RadioNotOff as exc:
            if self.modem.state() > states.STATE_DISABLED or "Unsupported" not in str(exc):
                raise
            # Disabled, but this plugin has no low power: ModemManager sends
            # nothing to the network for a disabled modem.  The decision goes
            # on; a refusal then stops with this error (ensure_radio_off), a
            # pairing enables the modem anyway.
            log.warning("%s; the modem is disabled, and a refusal will stop here", exc)
            self.modem.radio_on = None
        # A profile that lets NetworkManager send a PIN would unlock any card
        # behind the gate: nothing is decided while one exists.
        refuse_pin_profiles(self.nm_profile_dirs)
        if prepare_link:
            self.datalink.prepare()  # networkmanager: WWAN and autoconnect off, its refusals
        self.imei = self.modem.imei()
        self.imeisv = None  # ModemManager does not report the SVN
        self.keystore, self.sealer = open_keystore(self.config.state_dir, self.config.keystore.sealer)
        self.journal = PairingJournal(self.config.state_dir)
        self.uicc = MmUicc(self.modem, settle_time=self.config.modem.sim_ready_timeout, waits=self.waits)

    _refused = False  # the last decision of this session was a refusal
    # The modem object whose SIM properties the last decision read afresh
    # (a reprobe): the link, and a due rotation, may use that reading once.
    _fresh_for_link: str | None = None

    @contextlib.contextmanager
    def card_command(self):
        """One command or decision that may send a PIN or PUK:
        ModemManager probes the modem again first, on every plugin (once: a
        command inside a command reuses that reading, taken moments before
        with nothing in between a person could swap a card in), and
        MmUicc sends only on a reading of the object it exported.  A plugin
        that reports swaps is not taken at its word: a swap the modem does
        not tell it of (a lost URC, detection switched off) leaves the old
        card's properties.  About a second per decision or command; the
        periodic check never comes here (idle_reading, sim_signature)."""
        if self.uicc.fresh_on is not None:
            yield
            return
        if self.link_up:
            # ModemManager drops the modem object, and its bearer, for the
            # fresh read: the link comes down properly first.
            self.close_gate()
        try:
            self._read_afresh()
            self.uicc.reprobe = self._read_afresh  # again before a second secret (MmUicc.iccid)
            yield
        finally:
            self.uicc.fresh_on = None
            self.uicc.reprobe = None

    def pair(self):
        """The SIM is read afresh first, on every plugin, so that neither a
        PIN nor a Paired decision rests on a card that is gone."""
        self._fresh_for_link = None
        with self.card_command():
            outcome = super().pair()
            self._fresh_for_link = self.uicc.fresh_on
        self._refused = not outcome.paired
        return outcome

    def bring_up(self, outcome) -> None:
        """No Simple.Connect, NetworkManager activation, radio on or PIN
        rotation unless the card in the slot was just confirmed to be the
        paired one: right after pair()'s fresh read (the rotation sends on
        that reading), or by a fresh read now (a link retried later), or by
        the reading of the command under way."""
        fresh, self._fresh_for_link = self._fresh_for_link, None
        old = self.transport.path
        if self.uicc.fresh_on is None and fresh is not None and fresh == old:
            scope, confirm = self._on_reading(fresh), False
        else:
            scope, confirm = self.card_command(), True
        with scope:
            if confirm:  # on the slot as read afresh for this link (or the command under way)
                lock = self.uicc.lock()
                iccid = self.uicc.iccid() if lock is SimLock.READY else None
                if iccid is None or iccid != outcome.iccid:
                    found = f"ICCID {iccid}" if iccid is not None else f"a SIM that is {lock.value}"
                    raise DatalinkFailed(f"the link is not brought up: ModemManager read the slot again and "
                                         f"found {found}, not the paired ICCID {outcome.iccid}")
                self.uicc.followed(old, self.transport.path)
            super().bring_up(outcome)

    @contextlib.contextmanager
    def _on_reading(self, path: str):
        """Sends allowed on the reading pair() took afresh on `path`, just now."""
        self.uicc.fresh_on = path
        try:
            yield
        finally:
            self.uicc.fresh_on = None

    def _read_afresh(self) -> None:
        with self.waits.waiting("waiting for ModemManager to read the SIM again", REPROBE_WAIT):
            self.transport.reprobe()
        imei = self.modem.session.modem("EquipmentIdentifier")
        if imei != self.imei.value:
            raise ModemUnavailable(f"{self.transport.port}: ModemManager probed another modem (IMEI {imei})")
        self.modem.radio_on = None  # a new object: the gate's next step confirms the radio off
        self.uicc.fresh_on = self.transport.path
        # ModemManager may export the same paths again (its indexes start
        # over when it restarts): an ICCID read before the re-probe is not
        # a reading of the slot now, whatever path it was read on.
        self.uicc.forget_iccid()
        self.uicc.lock()  # bounded, until ModemManager has read the card

    def ensure_radio_off(self) -> None:
        """As over serial, except before a decision: a disabled modem whose
        plugin has no low power lets the decision go on (ModemManager sends
        nothing to the network for it); after a refusal it never does."""
        from ..service import RadioNotOff

        try:
            super().ensure_radio_off()
        except RadioNotOff as exc:
            if self._refused or "Unsupported" not in str(exc) or self.modem.state() > states.STATE_DISABLED:
                raise
            log.warning("%s; the modem is disabled, and a refusal will stop here", exc)

    def enable_sim_urcs(self) -> bool:
        """`mtcd run`: listen to ModemManager's signals (mtcd.mm.watch), so a
        swap, a lock change or the modem's removal wakes the main loop at
        once.  False all the same: the periodic check reads only
        ModemManager's properties (nothing reaches the modem), so it keeps
        its configured interval as the safety net for a signal not sent
        (ModemManager's generic plugin does not notice a swap at all)."""
        from .watch import ModemWatcher, sim_event

        if self.transport.watcher is None:
            def heard(meaning: str) -> None:
                if meaning in (states.MODEM_REMOVED, states.SERVICE_GONE) and self.uicc is not None:
                    self.uicc.sim_changed()  # nothing is presented on a reading of the old object
                if self.on_sim_event is not None:
                    self.on_sim_event(sim_event(meaning))

            watcher = ModemWatcher(lambda: self.transport.path, heard, bus=self.transport.bus.bus_name)
            if watcher.start():
                self.transport.watcher = watcher
            try:
                plugin = self.modem.session.modem("Plugin")
            except BusError:
                plugin = None
            if states.swap_blind(plugin):
                how = "does not notice" if plugin in states.NO_HOT_SWAP_PLUGINS else "is not known to notice"
                log.warning("ModemManager's %s plugin %s a SIM swap on this modem: mtcd has it probe "
                            "the modem again before every decision and link, and a card swapped in while the link "
                            "is up is seen only then (see README)", plugin or "unnamed", how)
        return False

    def idle_reading(self):
        """The periodic check (and the check a signal wakes): the radio
        level; the slot is read by sim_signature.  When ModemManager took
        the modem object away, the gate closes first, then the session
        follows the object it exports again for the same port (after a SIM
        hot swap it re-probes the modem: a new object, the new card), or
        the modem is lost (ModemUnavailable) when none comes back."""
        watcher = self.transport.watcher
        if watcher is not None:
            self._settle(watcher)
            if watcher.removed.is_set():
                self._follow_reprobe(watcher)
        return self.radio_level(), None

    def _settle(self, watcher) -> None:
        """Wait, bounded, while ModemManager is in the middle of something
        of its own (a hot swap starts by disabling the modem, then removes
        it): the reading is taken once it is done, not half-way."""
        deadline = time.monotonic() + REPROBE_WAIT
        while not watcher.removed.is_set() and time.monotonic() < deadline:
            try:
                if self.modem.state() not in states.TRANSIENT:
                    return
            except ModemUnavailable:
                # Gone before its removal was heard: give the signal a moment.
                if not watcher.removed.wait(1.0):
                    raise
                return
            time.sleep(POLL)

    def _follow_reprobe(self, watcher) -> None:
        self.uicc.sim_changed()
        if self.link_up:
            # ModemManager's bearer went with the old object; a link kept
            # outside the modem (the command backend) comes down now.
            try:
                self.datalink.release_without_modem()
            finally:
                self.link_up = False
                self.modem.radio_on = None
            log.warning("ModemManager removed the modem: link down")
        watcher.removed.clear()
        old = self.transport.path
        with self.waits.waiting("waiting for ModemManager to export the modem again", REPROBE_WAIT):
            try:
                new = self.transport.find(REPROBE_WAIT)
            except ModemUnavailable:
                raise ModemUnavailable(f"{self.transport.port}: ModemManager removed the modem") from None
        try:
            imei = self.transport.bus.get(new, states.MODEM, "EquipmentIdentifier")
        except BusError as exc:
            raise ModemUnavailable(f"{self.transport.port}: the modem ModemManager exported again: {exc}") from None
        if imei != self.imei.value:
            raise ModemUnavailable(f"{self.transport.port}: ModemManager exported another modem (IMEI {imei})")
        self.transport.path = new
        self.modem.radio_on = None  # the gate's next step switches it off again
        log.info("ModemManager exported the modem again (%s, was %s): reading the SIM", new, old)
        self.uicc.lock()  # wait, bounded, until ModemManager has read the new card

    def radio_level(self) -> int:
        return 1 if self.modem.state() >= states.STATE_ENABLING else 4
