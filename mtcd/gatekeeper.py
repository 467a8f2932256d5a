"""`mtcd run`: keeps the pairing gate for months without anyone watching.

One main thread owns the modem.  It pairs, brings the link up when paired,
then sleeps on a wake-up pipe until something happens:

- a SIM-state URC, or the periodic check (AT+CPIN? and the ICCID) sees the
  slot change: the gate closes (link down, radio off) and pairing runs again;
- the port fails or stops answering (modem reset, USB re-enumeration): the
  session is dropped and the modem reopened with bounded backoff; the first
  thing a new session does is switch the radio off;
- SIGHUP: the configuration is read again; the link is kept when nothing it
  depends on changed;
- SIGTERM: link down, radio off, exit 0;
- SIGUSR1: log one step more (warning, info, debug with the AT traces);
  SIGUSR2: back to the level it started with; `mtcctl log-level` sets one
  by name through the control socket (all three in mtcd.logsetup);
- a control-socket request (mtcctl), run here so that one thread talks to
  the modem.  `status` is answered from the state this loop publishes, at
  once, whatever the loop is doing; a request that needs the modem is
  refused at once (69) while there is none; a request whose client hung up
  or whose deadline passed before the loop got to it is dropped, never run;
- a keystore change made by another process (mtcctl pin set/forget, the
  keyring backend): see _store_moved; the pairing policy is asked again
  whether it would decide otherwise now, and a new pairing runs if so.

systemd is told the truth through sd_notify: READY=1 once the first decision
is taken (paired, refused, or the modem not there: in each case the gate is
in a known state), STATUS= a one-line state, WATCHDOG=1 from this loop and
while a bounded AT command is awaited, RELOADING=1 and STOPPING=1.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import selectors
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config, load_config
from .datalink import DatalinkFailed
from .errors import ConfigError, ModemUnavailable, MtcdError
from .events import Event, EventLog
from . import logsetup
from .metrics import Metrics
from .identity import Iccid
from .progress import Waits
from .sdnotify import sd_notify
from .policy import Observations, Paired, PolicySettings, Reason, Refused, StoredPin, decide
from .service import Gateway, RadioNotOff, policy_settings
from .simlock import SimEvent, SimLock

if TYPE_CHECKING:  # mtcd.gate (and the keystore's cryptography) loads after the first AT command
    from .gate import PairingOutcome

log = logging.getLogger("mtcd")

# With SIM-state URCs the periodic check is only a safety net.
URC_SAFETY_CHECK = 30.0
# The longest the idle loop goes without looking for another process's
# keystore write (one stat() of keystore.json, nothing sent to the modem).
# The look rides on a wake-up the loop has anyway, its check tick (every
# 2 s by default); only a longer wait (30 s with URCs) is cut into even
# parts of at most this, each ending in one more look.
STORE_POLL = 2.0
# How long a control request may wait for the loop before it is dropped
# (below the client's 120 s, so mtcctl hears the service's own answer).
REQUEST_DEADLINE = 100.0
# How often a waiting control thread looks whether its client hung up.
CLIENT_POLL = 0.2
# Commands that talk to the modem: refused at once while there is none.
NEEDS_MODEM = frozenset({"rotate", "adopt", "compromise", "unblock", "pin-try", "repair"})


class Notifier:
    """sd_notify over the standard library (mtcd.sdnotify), so READY=1
    reaches systemd even without python3-systemd.  Never raises: a
    NOTIFY_SOCKET that points nowhere is logged once and otherwise ignored."""

    def __init__(self, environ=os.environ):
        self._environ = environ
        self.enabled = bool(environ.get("NOTIFY_SOCKET"))
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        mine = pid is None or pid == str(os.getpid())
        # Ping at half the interval, as sd_watchdog_enabled(3) advises.
        self.watchdog_interval = int(usec) / 2e6 if usec and usec.isdigit() and mine and int(usec) > 0 else None
        self._last_ping = 0.0
        self._warned = False

    def send(self, **fields: str) -> None:
        if not self.enabled:
            return
        text = "\n".join(f"{k}={v}" for k, v in fields.items())
        try:
            sd_notify(text, self._environ)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd (%s); carrying on without it", exc)
                self._warned = True

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status)

    def status(self, status: str) -> None:
        self.send(STATUS=status)

    def watchdog(self) -> None:
        """WATCHDOG=1 when half the interval has passed since the last one."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval:
            self._last_ping = now
            self.send(WATCHDOG="1")


class ClientGone(ModemUnavailable):
    """The client hung up or its deadline passed before the loop got to its
    request: dropped without being run."""


class _Request:
    """One control request on its way to the main loop.  It is run at most
    once, and only if it is still wanted when the loop picks it up: the
    waiting thread may cancel it while it is queued, never once it runs."""

    def __init__(self, action, client_left):
        self.action = action
        self.client_left = client_left
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None
        self._state = "queued"  # -> running -> done, or -> cancelled
        self._lock = threading.Lock()

    def _move(self, to: str) -> bool:
        with self._lock:
            if self._state != "queued":
                return False
            self._state = to
            return True

    def claim(self) -> bool:
        """The loop takes it: False when it was cancelled meanwhile."""
        return self._move("running")

    def cancel(self) -> bool:
        """Withdraw it: False when the loop has taken it already."""
        return self._move("cancelled")

    def fail(self, error: BaseException) -> None:
        if self.cancel():
            self.error = error
            self.done.set()


class SmsAlerts:
    """The association-change SMS to `[alerts] sms_to` (TS 22.368 §7.2.8:
    warn the MTC server).  Failing to send is logged, never fatal: the
    journal event has been written anyway."""

    def __init__(self, config: Config):
        self.number = config.alerts.sms_to
        self.show_imsi = config.service.show_imsi

    def association_changed(self, gateway: Gateway, change: dict, imsi) -> None:
        if not self.number:
            return
        from datetime import datetime, timezone

        try:
            from .alerts import AssociationChange, send_alert
        except ImportError as exc:
            # A .deb installed without its Recommends: the journal event is
            # written anyway; say what to install.
            log.warning("association-change SMS not sent: %s (install python3-gsmmodem-new)", exc)
            return
        try:
            alert = AssociationChange(
                old_iccid=change.get("old_iccid"), new_iccid=change.get("new_iccid"),
                old_imei=change.get("old_imei"), new_imei=change.get("new_imei"),
                time=datetime.now(timezone.utc), imsi=str(imsi) if imsi else None,
            )
            refs = send_alert(gateway.transport, self.number, alert, show_imsi=self.show_imsi)
            log.info("association-change SMS sent to %s (reference %s)", self.number, refs)
        except (MtcdError, ValueError) as exc:
            log.warning("association-change SMS not sent: %s", exc)


class Gatekeeper:
    def __init__(self, config_path: Path, config: Config, *, notifier: Notifier | None = None,
                 events=None, metrics=None, alerts=None):
        self.config_path = Path(config_path)
        self.config = config
        self.notifier = notifier or Notifier()
        self.events = events if events is not None else EventLog(show_imsi=config.service.show_imsi)
        self.metrics = metrics if metrics is not None else Metrics(config.service.metrics_file)
        self.alerts = alerts if alerts is not None else SmsAlerts(config)
        self.gateway: Gateway | None = None
        self.outcome: PairingOutcome | None = None
        self.signature: tuple[SimLock, object] | None = None
        self.backoff = 1.0
        self.modem_up: bool | None = None
        self.status_text = "starting"
        self._ready_sent = False
        self._stop = False
        self._reload = False
        self._sim_event = False
        self._port_failed = False
        self._store_dirty = False
        self._store_reloads_seen = 0
        self._closing = False
        self._metrics_owned = False  # written at least once: ours to mark stopped
        self.modem_state = "starting"  # connected | lost (port gone) | reconnecting
        self._modem_why = "the service is starting"
        self._next_attempt: float | None = None
        self._snapshot: dict = {}
        self._requests: queue.Queue[_Request] = queue.Queue()
        # A long wait (SIM busy, a slow modem, the data link) is what STATUS= says meanwhile.
        self.waits = Waits(sys.stderr, on_start=self.notifier.status,
                           on_end=lambda: self.notifier.status(self.status_text))
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._publish()  # status has an answer from the first request on

    # -- waking the main loop (safe from other threads and signal handlers) --
    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # the pipe is full: the loop is awake anyway

    def _on_sim_event(self, event: SimEvent) -> None:
        self._sim_event = True
        self._wake()

    def _on_port_failure(self) -> None:
        self._port_failed = True
        self._wake()

    def request_stop(self, *_) -> None:
        self._stop = True

    def request_reload(self, *_) -> None:
        self._reload = True

    def submit(self, action, client_left=lambda: False, timeout: float = REQUEST_DEADLINE):
        """Run `action(gatekeeper)` in the main loop and return its result
        (called from the control socket's thread).  Until the loop takes it,
        the request is withdrawn when its client hangs up or after `timeout`
        seconds: a rotation nobody waits for any more is never run later.
        Once taken it runs to its end (a PIN change is not cut short)."""
        req = _Request(action, client_left)
        self._requests.put(req)
        self._wake()
        deadline = time.monotonic() + timeout
        while not req.done.wait(CLIENT_POLL):
            if self._closing and req.cancel():
                raise ModemUnavailable("the service is stopping; the request was not run")
            if client_left() and req.cancel():
                raise ClientGone("the client hung up before its request was run; dropped")
            if time.monotonic() >= deadline and req.cancel():
                raise ClientGone(f"the service was busy for {timeout:g} s; the request was dropped, not run")
        if req.error is not None:
            raise req.error
        return req.result

    # -- what the control thread may read without the loop -------------------
    def status_now(self) -> dict:
        """The state the loop last published, with the time to the next
        connection attempt when the modem is away."""
        snap = dict(self._snapshot)
        next_attempt = snap.pop("_next_attempt", None)
        snap["retry_in"] = (max(0, math.ceil(next_attempt - time.monotonic()))
                            if next_attempt is not None and snap.get("modem") != "connected" else None)
        return snap

    def not_connected(self) -> str:
        """Why a request that needs the modem cannot run now (one line)."""
        snap = self.status_now()
        retry = snap["retry_in"]
        when = f"; retrying in {retry} s" if retry is not None else ""
        return f"the modem is not connected: {snap['modem_why']}{when}"

    def _publish(self) -> None:
        """A consistent copy of the state for status_now (one assignment,
        so a reader sees the old copy or the new one, never half)."""
        out, gw = self.outcome, self.gateway
        if gw is None:
            state = "modem-unavailable" if self.modem_state in ("lost", "reconnecting") else "starting"
        else:
            state = "paired" if out is not None and out.paired else ("refused" if out is not None else "pairing")
        self._snapshot = {
            "state": state,
            "status": self.status_text,
            "modem": "connected" if gw is not None else self.modem_state,
            "modem_why": None if gw is not None else self._modem_why,
            "reason": out.reason.value if out is not None and out.reason else None,
            "iccid": str(out.iccid) if out is not None and out.iccid else None,
            "imei": str(out.imei) if out is not None else None,
            "pin_retries": out.pin_retries if out is not None else None,
            "link": "up" if gw is not None and gw.link_up else "down",
            "sealer": gw.sealer.describe() if gw is not None and hasattr(gw, "sealer") else None,
            "_next_attempt": self._next_attempt,
        }

    # -- the loop ------------------------------------------------------------
    def run(self) -> int:
        # Signals can only be taken in the main thread (tests run the loop
        # in another one and call request_stop/request_reload themselves).
        in_main = threading.current_thread() is threading.main_thread()
        old = {}
        if in_main:
            old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
                                                     signal.SIGUSR1, signal.SIGUSR2)}
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
            signal.signal(signal.SIGHUP, self.request_reload)
            # The level changes in the handler itself, not at the loop's next
            # turn: the traces are wanted for an exchange that is hanging now.
            signal.signal(signal.SIGUSR1, lambda *_: logsetup.more_verbose())
            signal.signal(signal.SIGUSR2, lambda *_: logsetup.configured_verbosity())
            old_wakeup = signal.set_wakeup_fd(self._wake_w)
        self._control = None
        try:
            self._start_control()
            while not self._stop:
                if self._reload:
                    self._do_reload()
                if self.gateway is None:
                    port_was_there = os.path.exists(self.config.modem.port)
                    if not self._connect():
                        self._wait_for_modem(self.backoff, port_missing=not port_was_there)
                        self.backoff = min(self.backoff * 2, self.config.service.backoff_max)
                        continue
                self._serve_requests()
                self._sleep(self._check_interval(), watch_store=True)
                if self._stop:
                    break
                self._serve_requests()
                if self.gateway is not None and (self._port_failed or not self.gateway.transport.alive):
                    self._lose_modem(ModemUnavailable(f"{self.config.modem.port}: the modem port went away"))
                elif self.gateway is not None and not self._reload:
                    self._check_sim()
                    if self._store_dirty and self.gateway is not None:
                        self._reevaluate("the keystore changed")
        finally:
            self._closing = True
            self.notifier.send(STOPPING="1", STATUS="stopping: closing the link")
            self._fail_requests()
            try:
                self._close_session(close_gate=True)
            finally:
                self._fail_requests()
                self._mark_stopped()
            if self._control is not None:
                self._control.close(timeout=5)
            if in_main:
                signal.set_wakeup_fd(old_wakeup)
            for s, handler in old.items():
                signal.signal(s, handler)
            self._selector.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
        return 0

    def _start_control(self) -> None:
        from .control import ControlServer

        # No lock around the handler: each request waits for this loop on
        # its own thread (the loop runs them one at a time), so a request
        # waiting for the modem never keeps `status` or others waiting.
        self._control = ControlServer(self.config.service.control_socket, control_handler(self),
                                      self.config.service.admin_group, lock=contextlib.nullcontext())

    def _check_interval(self) -> float:
        interval = self.config.service.check_interval
        # The modem's SIM-state URCs say nothing of a card in a PC/SC reader.
        if self.gateway is not None and self.gateway.urcs_enabled and self.config.uicc.backend != "pcsc":
            interval = max(interval, URC_SAFETY_CHECK)
        if self.notifier.watchdog_interval is not None:
            interval = min(interval, self.notifier.watchdog_interval)
        return interval

    def _sleep(self, seconds: float, port_missing: bool = False, watch_store: bool = False) -> None:
        """Wait for a wake-up or the timeout; pet the watchdog either way.
        `port_missing`: also end the wait as soon as the modem's port comes
        back (a modem that re-enumerated may have attached by itself: the
        sooner a session switches its radio off, the better).
        `watch_store`: also end it when another process wrote the keystore."""
        deadline = time.monotonic() + seconds
        # Looks at the store: at the start, then at the end of each part
        # (the last part ends at the deadline, where the check follows).
        store_part = seconds / math.ceil(seconds / STORE_POLL) if watch_store and seconds > 0 else None
        while not (self._stop or self._reload or self._sim_event or self._port_failed or self._store_dirty
                   or not self._requests.empty()):
            left = deadline - time.monotonic()
            if left <= 0:
                if store_part is not None:
                    self._store_moved()  # a change is then taken at this tick, after its check
                break
            if port_missing:
                if os.path.exists(self.config.modem.port):
                    break
                left = min(left, 0.5)
            if store_part is not None:
                if self._store_moved():
                    break
                left = min(left, store_part)
            if self.notifier.watchdog_interval is not None:
                left = min(left, self.notifier.watchdog_interval)
            for key, _ in self._selector.select(left):
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            self.notifier.watchdog()
        self.notifier.watchdog()

    def _wait_for_modem(self, seconds: float, port_missing: bool) -> None:
        """The backoff between connection attempts.  Requests are served all
        along (status from the published state; those that need the modem
        are refused at once), and nothing is left to make the loop spin."""
        deadline = time.monotonic() + seconds
        self._next_attempt = deadline
        self._publish()
        while not (self._stop or self._reload):
            # No session: a URC or port failure reported by a reader thread
            # that is going away has nothing left to act on, and the next
            # session reads the keystore anyway.
            self._sim_event = self._port_failed = self._store_dirty = False
            if time.monotonic() >= deadline or (port_missing and os.path.exists(self.config.modem.port)):
                return
            self._sleep(deadline - time.monotonic(), port_missing=port_missing)
            self._serve_requests()

    # -- the keystore, as other processes change it ------------------------------
    # Why a poll of the file rather than a message from mtcctl: every writer
    # is caught (mtcctl, the keyring backend, a restore by hand), none of them
    # has to know the service exists, and nothing can be missed because a
    # notification was lost: the next look at the file sees the change.
    # Keystore.reloads counts the writes of *other* processes that this
    # process loaded (its own writes never count), including those loaded in
    # the middle of a pairing or a rotation, so a change that raced one of
    # those is still looked at afterwards.  Cost: one stat() at each check tick
    # (STORE_POLL), and no wake-up of its own.
    def _store_moved(self) -> bool:
        gw = self.gateway
        if gw is None or getattr(gw, "keystore", None) is None:
            return False
        try:
            len(gw.keystore)  # reloads the file if another process replaced it
        except MtcdError:
            self._store_dirty = True  # damaged: _reevaluate meets the error and closes the gate
            return True
        if gw.keystore.reloads != self._store_reloads_seen:
            self._store_dirty = True
        return self._store_dirty

    def _reevaluate(self, why: str) -> None:
        """Ask the pairing policy whether it would decide otherwise with the
        keystore as it is now; pair again only if so.  The policy decides
        what is presented (a latched PIN stays latched): this only triggers it."""
        gw, outcome = self.gateway, self.outcome
        self._store_dirty = False
        if gw is None or outcome is None:
            return
        try:
            self._store_reloads_seen = gw.keystore.reloads
            iccid = outcome.observations.iccid
            if not isinstance(iccid, Iccid):
                return  # no card identity was read: no stored PIN can matter
            from .gate import _stored_view

            fresh = _stored_view(gw.keystore, iccid)
            if not decision_may_change(outcome, fresh, policy_settings(self.config)):
                log.debug("%s; the decision for %s stands", why, iccid)
                return
            log.info("%s: the pairing policy may decide otherwise for SIM %s; pairing again", why, iccid)
            self._pair()
        except ModemUnavailable as exc:
            self._lose_modem(exc)
        except MtcdError as exc:
            self._drop_session(exc)

    # -- sessions ------------------------------------------------------------
    def _connect(self) -> bool:
        self._port_failed = False
        gateway = Gateway(self.config, on_sim_event=self._on_sim_event,
                          on_failure=self._on_port_failure, heartbeat=self.notifier.watchdog, waits=self.waits)
        try:
            gateway.transport.open()
        except ModemUnavailable as exc:
            self._modem_unavailable(exc)
            return False
        self.gateway = gateway
        try:
            gateway.start()
            self._store_reloads_seen = gateway.keystore.reloads
            self._store_dirty = False
            # Whatever an earlier session (or an earlier mtcd) left up outside
            # the modem comes down before anything is decided.
            gateway.datalink.release_without_modem()
            gateway.enable_sim_urcs()
            if self.modem_up is False:
                log.info("modem is back")
            self.modem_up = True
            self._metric("set_modem", True)
            self._pair()
        except ModemUnavailable as exc:
            self._lose_modem(exc)
            return False
        except MtcdError as exc:
            # A damaged keystore or journal: the gate stays closed and the
            # service stays up, so status can say why.
            log.error("%s", exc)
            self.modem_state, self._modem_why = "reconnecting", f"the session could not start: {exc}"
            self._set_status(f"gate closed: {exc}")
            self._first_ready()
            self._close_session(close_gate=True)
            return False
        self.backoff = 1.0
        return True

    def _modem_unavailable(self, exc: MtcdError) -> None:
        if self.modem_up is not False:
            self._emit("MODEM_LOST", f"modem unavailable: {exc}")
        self.modem_up = False
        self.modem_state = "reconnecting" if os.path.exists(self.config.modem.port) else "lost"
        self._modem_why = str(exc)
        self._next_attempt = time.monotonic() + self.backoff
        self._metric("set_modem", False)
        self._metric("set_link", False)
        self._write_metrics()
        self._set_status(f"modem unavailable: {exc}; retrying in {self.backoff:g} s")
        self._first_ready()

    def _lose_modem(self, exc: MtcdError) -> None:
        log.warning("%s", exc)
        if self.gateway is not None:
            # The modem is gone, but a link managed outside it (the command
            # backend's unit) must not outlive the gate.
            try:
                self.gateway.datalink.release_without_modem()
            except MtcdError as down_exc:
                log.warning("taking the link down: %s", down_exc)
        self._close_session(close_gate=False)  # nothing to send to: the port is gone
        self._modem_unavailable(exc)

    def _close_session(self, close_gate: bool) -> None:
        gateway, self.gateway = self.gateway, None
        self.outcome, self.signature = None, None
        self._sim_event = self._port_failed = self._store_dirty = False
        if gateway is None:
            return
        self._publish()
        if close_gate and gateway.transport.alive:
            gateway.close_gate()
            try:
                gateway.ensure_radio_off()
            except RadioNotOff as exc:
                log.error("%s", exc)  # says so itself, with the modem's answers
            except MtcdError as exc:
                log.error("the radio could not be switched off: %s", exc)
        gateway.transport.close()
        self._metric("set_link", False)
        self._write_metrics()

    # -- pairing and watching ---------------------------------------------------
    def _pair(self) -> None:
        """_decide_and_open, then the card's own pairing record: its reads
        wait until the link is up or the gate closed (Gateway.card_record_after)."""
        with self.gateway.card_record_after():
            self._decide_and_open()
        if self.gateway.paired_card_gone:
            # The record's ICCID read found another SIM: decide again at
            # once, which closes the gate first (no URC may come for it).
            log.warning("the SIM changed after the link came up: pairing again")
            self._sim_event = True

    def _decide_and_open(self) -> None:
        """Close the gate, take a decision, open it only for a paired SIM.
        Raises (the caller drops the session) when the radio cannot be
        confirmed off: pairing never goes on with it in an unknown state."""
        gw = self.gateway
        self.outcome, self.signature = None, None
        if gw.link_up:
            gw.close_gate()
        gw.ensure_radio_off()
        self._sim_event = False
        outcome = gw.pair()
        link_error = None
        if outcome.paired:
            try:
                gw.bring_up(outcome)
            except DatalinkFailed as exc:
                link_error = str(exc)
        else:
            gw.ensure_radio_off()
        self.outcome = outcome
        # A paired gate belongs to the SIM it unlocked.  The slot read now may
        # already hold a card swapped in during pairing or link-up, which every
        # later check would then pass as the paired one (and retry its link).
        self.signature = _paired_signature(outcome) if outcome.paired else gw.sim_signature()
        self._announce(outcome, link_error, new_decision=True)

    def _check_sim(self) -> None:
        gw = self.gateway
        self._sim_event = False
        try:
            radio, signature = gw.idle_reading()
            if (radio == 1) != gw.link_up:
                # A modem that browned out behind a port that stayed open comes
                # back at its power-on CFUN=1 (and forgets ATE0, CMEE): start a
                # new session, which switches the radio off first.
                log.warning("the modem's radio is not where the gate left it (modem reset?): new session")
                self._close_session(close_gate=True)
                return
            if signature is None:
                signature = gw.sim_signature()
            if signature != self.signature:
                lock, iccid = signature
                if lock in (SimLock.NOT_INSERTED, SimLock.NOT_READY) and self.outcome and self.outcome.iccid:
                    self._emit("SIM_REMOVED", f"SIM {self.outcome.iccid} removed; link down, radio off",
                               iccid=str(self.outcome.iccid))
                else:
                    log.info("SIM slot changed (%s, %s): pairing again", lock.value, iccid)
                self._pair()
            elif self.outcome is not None and self.outcome.paired and not gw.link_up:
                self._retry_link()
        except ModemUnavailable as exc:
            self._lose_modem(exc)
        except MtcdError as exc:
            self._drop_session(exc)

    def _drop_session(self, exc: MtcdError) -> None:
        """Something other than the port failed (the radio would not switch
        off, the keystore is damaged): close what can be closed and start
        over with a new session after the backoff."""
        log.error("%s; closing the gate and starting a new session", exc)
        self._close_session(close_gate=True)
        self._set_status(f"gate closed: {exc}")

    def _retry_link(self) -> None:
        try:
            self.gateway.bring_up(self.outcome)
            self._announce(self.outcome, None, new_decision=False)
        except DatalinkFailed as exc:
            log.warning("%s", exc)

    def _announce(self, outcome: PairingOutcome, link_error: str | None, new_decision: bool) -> None:
        """Tell the journal, metrics, systemd and (for a new association) the
        operator.  A link retried for the same decision is no new decision:
        counted once, and no second alert."""
        gw = self.gateway
        iccid = str(outcome.iccid) if outcome.iccid else None
        imei = str(outcome.imei)
        fields = dict(iccid=iccid, imei=imei, imsi=outcome.imsi)
        if outcome.paired:
            link = "link up" if gw.link_up else f"link down ({link_error})"
            self._emit("PAIRED", f"paired SIM {iccid} with IMEI {imei}; {link}", state="paired", **fields)
            status = f"paired ICCID {iccid}, {link}"
        else:
            reason = outcome.reason.value
            self._emit("REFUSED", f"refused: {reason}: {outcome.decision.detail}; radio off",
                       state="refused", reason=reason, **fields)
            if outcome.reason is Reason.RETRY_GUARD:
                self._emit("RETRY_GUARD", f"retry guard tripped for SIM {iccid}: {outcome.decision.detail}",
                           state="refused", reason=reason, **fields)
            if outcome.reason is Reason.PIN_REJECTED:
                self._emit("PIN_REJECTED", f"the stored PIN of SIM {iccid} is rejected; a person must replace it: "
                                           f"`mtcctl pin set {iccid}`",
                           state="refused", reason=reason, **fields)
            status = f"refused: {reason}"
        change = gw.association_change if new_decision else None
        if change is not None:
            self._emit("ASSOCIATION_CHANGED", change["message"], iccid=iccid, imei=imei, state="association-changed")
            # Only a paired SIM with the radio on can send it (guarantee 3).
            if outcome.paired and gw.link_up:
                self.alerts.association_changed(gw, change, outcome.imsi)
        if new_decision:
            self._metric("record_decision", "paired" if outcome.paired else "refused",
                         outcome.reason.value if outcome.reason else None, outcome.pin_retries)
        self._metric("set_link", gw.link_up)
        self._metric("set_sim_present", outcome.observations.lock not in (SimLock.NOT_INSERTED, SimLock.NOT_READY))
        self._write_metrics()
        self._set_status(status)
        self._first_ready()

    # -- reload, requests ------------------------------------------------------
    def _do_reload(self) -> None:
        self._reload = False
        self.notifier.send(RELOADING="1", STATUS="reloading the configuration")
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            self.notifier.ready(f"{self.status_text} (reload failed: bad configuration)")
            return
        relevant = ("state_dir", "modem", "policy", "datalink", "keystore")
        changed = [name for name in relevant if getattr(new, name) != getattr(self.config, name)]
        old = self.config
        self.config = new
        if new.service != old.service or new.alerts != old.alerts:
            self.events = EventLog(show_imsi=new.service.show_imsi)
            self.metrics = Metrics(new.service.metrics_file)
            self.alerts = SmsAlerts(new)
            socket_of = (lambda c: (c.service.control_socket, c.service.admin_group))
            if socket_of(new) != socket_of(old):
                # Who may send a PUK through the socket changed: apply it now.
                if self._control is not None:
                    self._control.close(timeout=5)
                    self._control = None
                try:
                    self._start_control()
                except MtcdError as exc:
                    log.error("control socket not restarted: %s", exc)
        if changed and self.gateway is not None:
            log.info("configuration changed (%s): closing the gate and pairing again", ", ".join(changed))
            self._close_session(close_gate=True)
            self._connect()
        elif self.gateway is not None:
            log.info("configuration reloaded; the link is kept")
            # systemctl reload is also how a person says "look again": the
            # keystore may have changed in a way no poll saw yet.
            self._reevaluate("reload")
        self.notifier.ready(self.status_text)

    def _serve_requests(self) -> None:
        while True:
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                return
            if req.client_left() and req.cancel():
                log.info("control: a request whose client hung up was dropped, not run")
                continue
            if not req.claim():
                continue  # withdrawn while queued (client gone, deadline passed)
            try:
                req.result = req.action(self)
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
                req.error = exc
            finally:
                req.done.set()

    def _fail_requests(self) -> None:
        while True:
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                return
            req.fail(ModemUnavailable("the service is stopping; the request was not run"))

    # -- reporting -------------------------------------------------------------
    def _set_status(self, text: str) -> None:
        self.status_text = text
        self._publish()
        self.notifier.status(text)

    def _first_ready(self) -> None:
        if not self._ready_sent:
            self._ready_sent = True
            self.notifier.ready(self.status_text)

    def _emit(self, event: str, message: str, **fields) -> None:
        self.events.emit(Event[event], message, **fields)

    def _metric(self, name: str, *args) -> None:
        if self.metrics is not None:
            getattr(self.metrics, name)(*args)

    def _write_metrics(self) -> None:
        if self.metrics is not None:
            self._metrics_owned = self.metrics.write() or self._metrics_owned

    def _mark_stopped(self) -> None:
        """Leave a file that says the service is gone (mtcd_up 0, gate
        closed), not the last "paired, link up": only when this service
        wrote the file (an instance that found another one running and
        gave up must not overwrite that one's metrics)."""
        if self.metrics is not None and self._metrics_owned:
            self.metrics.mark_stopped()
            self.metrics.write()


# -- what the control socket asks of the running service ----------------------
# Each runs in the main loop (Gatekeeper.submit), the one thread that talks to
# the modem.

def control_handler(gatekeeper: Gatekeeper):
    """The ControlServer handler: hand each request to the main loop."""
    actions = {
        "status": _status,
        "rotate": _rotate,
        "adopt": _adopt,
        "stage": _stage,
        "compromise": _compromise,
        "unblock": _unblock,
        "reload": _reload,
        "pin-try": _pin_try,
        "repair": _repair,
        "doctor": _doctor,
    }

    def handle(request):
        if request.command == "status":
            # From the published state: answered at once, even while the
            # loop waits for the modem or runs a long PIN change.
            return gatekeeper.status_now()
        if request.command == "doctor" and gatekeeper.gateway is None:
            # Answered at once: there is no modem session to ask.
            return _doctor_without_modem(gatekeeper)
        if request.command == "log-level":
            # At once too: the traces may be wanted for an exchange that is
            # hanging in the loop now.
            return _log_level(request.args["level"], request.peer)
        if request.command in NEEDS_MODEM and gatekeeper.gateway is None:
            raise ModemUnavailable(gatekeeper.not_connected())
        action = actions[request.command]
        return gatekeeper.submit(lambda gk: action(gk, **request.args), request.client_left)

    return handle


def _log_level(name: str, peer) -> dict:
    level = logsetup.set_level(name, f"mtcctl log-level {name}, uid {peer.uid}")
    return {"level": logsetup.level_name(level)}


def _status(gk: Gatekeeper) -> dict:
    return gk.status_now()


def decision_may_change(outcome: PairingOutcome, stored: StoredPin | None, settings: PolicySettings) -> bool:
    """Would the pairing policy, given what it saw of the card and the
    keystore entry as it is now, decide something other than `outcome`?
    Pure.  A refusal is looked at as a new run would: nothing presented yet
    (a rejected PIN is latched in `stored` itself, so it stays refused).
    A step (the policy wants to read or present) counts as "may change":
    only a real pairing run can tell."""
    obs: Observations = outcome.observations.with_(stored=stored)
    if not outcome.paired:
        obs = obs.with_(presented=None, presented_pending=None, presented_fallback=None)
    again = decide(obs, settings)
    if isinstance(again, Paired):
        return not outcome.paired
    if isinstance(again, Refused):
        return outcome.paired or again.reason is not outcome.reason
    return True


def _no_modem(gk: Gatekeeper) -> ModemUnavailable:
    return ModemUnavailable(gk.not_connected())


def _paired_gateway(gk: Gatekeeper) -> Gateway:
    from .lifecycle import LifecycleRefused

    if gk.gateway is None:
        raise _no_modem(gk)
    if gk.outcome is None or not gk.outcome.paired:
        out = gk.outcome
        why = f"{out.reason.value}: {out.decision.detail}" if out is not None and out.reason else gk.status_text
        refused = LifecycleRefused(f"the inserted SIM is not paired: {why}")
        # for mtcctl --json: the gate's reason and the SIM
        refused.details = {"reason": out.reason.value if out is not None and out.reason else None,
                           "iccid": str(out.iccid) if out is not None and out.iccid else None}
        raise refused
    return gk.gateway


def _paired_signature(outcome) -> tuple[SimLock, object]:
    """What the slot holds while the gate is open: the SIM it paired, unlocked."""
    return SimLock.READY, outcome.iccid


def _change_result(gw: Gateway, result) -> dict:
    iccid = gw.uicc.iccid()
    return {"iccid": str(iccid) if iccid else None, "outcome": result.outcome, "detail": result.detail}


def _rotate(gk: Gatekeeper, length=None) -> dict:
    from .lifecycle import REQUESTED

    gw = _paired_gateway(gk)
    was_up = gw.link_up
    with gw.card_command():
        try:
            result = gw.lifecycle().rotate(REQUESTED, length)
        finally:
            _link_again(gk, gw, was_up)
    gk._emit("PIN_ROTATED", f"PIN of SIM {gk.outcome.iccid} rotated on request", iccid=str(gk.outcome.iccid),
             imei=str(gk.outcome.imei), state="paired")
    gk.signature = _paired_signature(gk.outcome)
    return _change_result(gw, result)


def _link_again(gk: Gatekeeper, gw: Gateway, was_up: bool) -> None:
    """A command's fresh read of the slot took a paired SIM's link down
    (mtcd.mm): up again on that reading, after the card is confirmed to be
    the paired one; else the next check decides."""
    if was_up and gk.gateway is gw and gk.outcome is not None and gk.outcome.paired and not gw.link_up:
        gk._retry_link()


def _with_gate_closed(gk: Gatekeeper, change) -> dict:
    """Run a SIM change with the link down, then pair again as usual."""
    if gk.gateway is None:
        raise _no_modem(gk)
    gw = gk.gateway
    if gw.link_up:
        gw.close_gate()
    # One fresh read of the slot for the change and the decision after it
    # (mtcd.mm: moments apart, nobody's hand in between).
    with gw.card_command():
        try:
            result = change(gw)
            answer = _change_result(gw, result)
        finally:
            _pair_again(gk)
    return answer


def _adopt(gk: Gatekeeper, transport_pin) -> dict:
    if gk.gateway is None:
        raise _no_modem(gk)
    was_up = gk.gateway.link_up
    with gk.gateway.card_command():  # "already adopted" is said of the card in the slot now
        done = _already_adopted(gk)
        if done is not None:
            _link_again(gk, gk.gateway, was_up)
            return done
        return _with_gate_closed(gk, lambda gw: gw.lifecycle().adopt(transport_pin, gw.pair))


def _already_adopted(gk: Gatekeeper) -> dict | None:
    """The service may have adopted the SIM itself a moment ago (its
    transport PIN was stored, the service paired it and replaced the PIN):
    asking again is then answered as done, not refused.  Only when the gate
    paired exactly the SIM in the slot, unlocked with a PIN of this
    gateway's own (no transport PIN, nothing latched or pending).  Nothing
    is presented: the transport PIN given is not needed."""
    gw, out = gk.gateway, gk.outcome
    if gw is None or out is None or not out.paired or not out.iccid:
        return None
    entry = gw.keystore.get(out.iccid)
    if entry is None or entry.transport or entry.rejected or entry.compromised or entry.pending_pin is not None:
        return None
    if gw.sim_signature() != (SimLock.READY, out.iccid):
        return None  # the slot changed since: adopt as usual
    detail = "already adopted and paired with this gateway (the SIM is unlocked with this gateway's own PIN)"
    if entry.adoption_unproven:  # a modem's OK may be all there is: the card may hold the transport PIN
        detail = ("already adopted and paired with this gateway; its change from the transport PIN is not proven "
                  "yet (only the modem's OK): it is when the SIM next asks for its PIN")
    return {"iccid": str(out.iccid), "outcome": "already-adopted", "detail": detail}


def _unblock(gk: Gatekeeper, puk, new_pin, allow_last_attempt=False, iccid=None) -> dict:
    return _with_gate_closed(gk, lambda gw: gw.lifecycle().unblock(puk, new_pin, allow_last_attempt, iccid))


def _stage(gk: Gatekeeper, iccid, pin) -> dict:
    from .journal import PairingJournal
    from .lifecycle import stage
    from .sealers import open_keystore

    if gk.gateway is not None:
        keystore, journal = gk.gateway.keystore, gk.gateway.journal
    else:
        keystore = open_keystore(gk.config.state_dir, gk.config.keystore.sealer)[0]
        journal = PairingJournal(gk.config.state_dir)
    result = stage(keystore, journal, gk.config.policy, iccid, pin)
    # A person's change to the store, made through the socket rather than by
    # another process: the policy may want to try the staged PIN now.
    gk._store_dirty = gk.gateway is not None
    return {"iccid": str(iccid), "outcome": result.outcome, "detail": result.detail}


def _compromise(gk: Gatekeeper) -> dict:
    from .lifecycle import COMPROMISED, LifecycleRefused

    gw = gk.gateway
    if gw is None:
        raise _no_modem(gk)
    marked = gw.keystore.mark_compromised()
    gw.journal.append("pins-compromised", count=marked)
    try:
        gw = _paired_gateway(gk)
        was_up = gw.link_up
        with gw.card_command():
            try:
                result = gw.lifecycle().rotate(COMPROMISED)
            finally:
                _link_again(gk, gw, was_up)
    except (ModemUnavailable, LifecycleRefused) as exc:
        # The marks stand whatever the inserted SIM's change came to (as
        # mtcctl says without a service): "not changed" alone reads as if
        # nothing was done.
        again = type(exc)(f"{marked} stored PIN{'' if marked == 1 else 's'} marked compromised (each is rotated "
                          f"when its SIM is next paired); the inserted SIM was not rotated now: {exc}")
        again.details = getattr(exc, "details", None)
        raise again from None
    gk.signature = _paired_signature(gk.outcome)
    answer = _change_result(gw, result)
    answer["detail"] = f"{marked} stored PINs marked compromised; inserted SIM: {result.detail}"
    return answer


def _reload(gk: Gatekeeper) -> dict:
    gk._reload = True
    return {"outcome": "reloading"}


def _pin_try(gk: Gatekeeper, below_guard=False, last_attempt=False, confirmed=False, iccid=None,
             unsettled=False) -> dict:
    """A person's single presentation of the stored PIN (mtcd.recovery).
    Only an accepted PIN opens the gate, through a pairing as usual; after a
    rejection nothing more is presented (the other candidate, if any, waits
    for the person's next `pin try`)."""
    from .recovery import TryRequest, try_pin

    gw = gk.gateway
    if gw is None:
        raise _no_modem(gk)
    request = TryRequest(below_guard=below_guard, last_attempt=last_attempt, confirmed=confirmed, iccid=iccid,
                         unsettled=unsettled)
    was_up = gw.link_up
    with gw.card_command():
        try:
            answer = try_pin(gw.uicc, gw.keystore, gw.journal, policy_settings(gk.config), gw.imei, request)
            if answer["outcome"] == "accepted":
                _pair_again(gk)
        finally:
            _link_again(gk, gw, was_up)
        answer["detail"] += f"; now {gk.status_text}"
    # After a rejection the slot's signature is unchanged (SIM PIN, same
    # ICCID), so the periodic check does not pair again; a card now
    # PUK-blocked is a change, and pairing only reports it.
    return answer


def _pair_again(gk: Gatekeeper) -> None:
    try:
        gk._pair()
    except ModemUnavailable as exc:
        gk._lose_modem(exc)
    except MtcdError as exc:
        gk._drop_session(exc)


def _repair(gk: Gatekeeper) -> dict:
    """Take a pairing decision now.  A paired SIM still in the slot keeps its
    link (nothing is closed to decide the same); anything else pairs again."""
    gw = gk.gateway
    if gw is None:
        raise _no_modem(gk)
    out = gk.outcome
    kept = out is not None and out.paired and gw.link_up and gw.sim_signature() == gk.signature
    if not kept:
        _pair_again(gk)
    out = gk.outcome
    detail = getattr(out.decision, "detail", None) if out is not None else gk.status_text
    return {**gk.status_now(), "detail": detail, "outcome": "kept" if kept else "decided"}


def _doctor_without_modem(gk: Gatekeeper) -> dict:
    return {"pid": os.getpid(), "status": gk.status_now(), "modem": None, "modem_error": gk.not_connected()}


def _doctor(gk: Gatekeeper) -> dict:
    """Read-only queries through the service's own session (it holds the
    port): nothing presented, the radio and the gate left as they are."""
    from .doctor_probe import probe_modem

    gw = gk.gateway
    if gw is None:
        return _doctor_without_modem(gk)
    # A port that fails meanwhile is noticed by the loop as usual (on_failure).
    from .card import doctor_uicc

    modem = probe_modem(gw.modem, gk.config.modem.vendor, gw.modem.dialect, via="service",
                        uicc=doctor_uicc(gk.config, gw.modem, gw.uicc))
    return {"pid": os.getpid(), "status": gk.status_now(), "modem": modem, "modem_error": None}
