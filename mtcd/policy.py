"""The pairing policy: given what has been observed of the modem, the SIM
and the keystore, decide the next step.  Pure: facts in, decision out.

The rules (TR 33.868 §7.5 PIN verification pairing, and what keeps a
gateway from blocking its own SIM):

1. The IMEI is read before anything else; with on_imei_change = "refuse"
   a SIM last paired with another IMEI is refused (`imei-changed`).
2. No SIM, a SIM in failure, or any lock other than `SIM PIN`/`READY` is
   refused: a PUK-blocked SIM (`sim-blocked`, its ICCID read for the
   report) is for a person to unblock;
   PH-SIM, PIN2 and network locks are never answered with PIN1.
3. The ICCID is read before any PIN is chosen, and only the PIN stored for
   exactly that ICCID may be presented (`unknown-sim` otherwise).
4. A stored PIN the card rejected is latched (`pin-rejected`) and never
   presented again until a person replaces it.  A SIM may have two
   candidates: the current PIN and a pending one (a change that may or may
   not have reached the card: our rotation cut short, or the operator's
   over-the-air change) -- and a third, the fallback: the PIN the card was
   last seen to accept, kept while the current one was set by a change only
   the modem's OK vouches for.  Current is tried first, then pending, then
   the fallback, each once, each only while the guard allows (and never a
   third after two spent: no counter, or one that lies, guards that).
5. The remaining attempts are read first; below `min_retries` nothing is
   presented (`retry-guard`).  When no command reports them, a PIN is
   presented at most once: an attempt whose outcome was lost (power cut)
   blocks further attempts until the counter can be read or a person acts.
   A lost change whose old PIN went out with no count read before it (a
   card whose PIN is verified tells none) may be settled only by the PIN
   it was setting, never presented before, tried once within the guard.
6. At most one presentation per candidate per run, and after a rejection
   the counter is read again before the next candidate.
7. A SIM that is unlocked but has its PIN disabled works in any device, so
   it is refused (`pin-disabled`) unless policy allows it, and even then
   only when its ICCID is known.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from .identity import Iccid, Imei
from .simlock import SimLock


class Reason(str, enum.Enum):
    """Stable refusal vocabulary: journal, JSON output and metrics use these."""

    NO_SIM = "no-sim"
    UNKNOWN_SIM = "unknown-sim"
    PIN_DISABLED = "pin-disabled"
    RETRY_GUARD = "retry-guard"
    PIN_REJECTED = "pin-rejected"
    SIM_BLOCKED = "sim-blocked"
    SIM_ERROR = "sim-error"
    IMEI_CHANGED = "imei-changed"

    def __str__(self) -> str:
        return self.value


class Step(enum.Enum):
    """An observation the policy needs before it can decide."""

    READ_SIM_LOCK = "read-sim-lock"
    READ_ICCID = "read-iccid"
    LOOK_UP_PIN = "look-up-pin"
    READ_PIN_ENABLED = "read-pin-enabled"
    READ_ATTEMPTS = "read-attempts"
    PRESENT_PIN = "present-pin"
    PRESENT_PENDING_PIN = "present-pending-pin"
    PRESENT_FALLBACK_PIN = "present-fallback-pin"
    # The counter shows that the presentation lost in a power cut was
    # rejected: latch that PIN before anything else.
    LATCH_LOST_ATTEMPT = "latch-lost-attempt"


@dataclass(frozen=True)
class Paired:
    pass


@dataclass(frozen=True)
class Refused:
    reason: Reason
    detail: str


Decision = Step | Paired | Refused


class PinOutcome(enum.Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # +CME ERROR: 16 incorrect password / 63Cx
    UNKNOWN = "unknown"  # no answer, or an error that says nothing about the PIN


class _NotRead:
    """Marks an observation not made yet (None means "made, nothing there")."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOT_READ"

    def __bool__(self) -> bool:
        return False


NOT_READ = _NotRead()


@dataclass(frozen=True)
class PolicySettings:
    min_retries: int = 2
    require_pin_enabled: bool = True
    on_imei_change: str = "report"  # "report" | "refuse"


@dataclass(frozen=True)
class StoredPin:
    """What the policy may know about a keystore entry: never the PIN itself."""

    rejected: bool = False
    # A presentation was started and its outcome never recorded (power cut),
    # with the attempts counter as read just before it (None: not reported).
    attempt_started: bool = False
    attempts_before: int | None = None
    last_imei: str | None = None
    attempt_pin: str = "current"  # which candidate was in flight: "current" | "pending" | "fallback"
    has_pending: bool = False
    pending_rejected: bool = False
    # The PIN the card was last seen to accept, kept while the current one
    # is unproven (a refused one is dropped, so never a rejected one).
    has_fallback: bool = False
    # Candidates presented before `attempt_pin` whose outcome no counter
    # could settle: the card may have refused them (never presented again).
    unsettled: tuple[str, ...] = ()
    # The attempt in flight was the old PIN of our change to the pending one.
    attempt_change: bool = False


@dataclass(frozen=True)
class Observations:
    imei: Imei | None = None
    lock: SimLock | _NotRead = NOT_READ
    iccid: Iccid | None | _NotRead = NOT_READ  # None: could not be read
    stored: StoredPin | None | _NotRead = NOT_READ  # None: no PIN for this ICCID
    pin_enabled: bool | None | _NotRead = NOT_READ  # None: could not be read
    attempts: int | None | _NotRead = NOT_READ  # PIN1 tries left; None: unreported
    presented: PinOutcome | None = None  # the current PIN, this run
    presented_pending: PinOutcome | None = None  # the pending PIN, this run
    presented_fallback: PinOutcome | None = None  # the fallback PIN, this run

    def with_(self, **changes) -> "Observations":
        return replace(self, **changes)


_BLOCKED = {SimLock.SIM_PUK}
_ABSENT = {SimLock.NOT_INSERTED, SimLock.NOT_READY}


def decide(obs: Observations, settings: PolicySettings) -> Decision:
    """The next step towards a pairing decision, or the decision itself."""
    if obs.lock is NOT_READ:
        return Step.READ_SIM_LOCK
    if obs.lock in _ABSENT:
        return Refused(Reason.NO_SIM, f"SIM reports {obs.lock.value}; insert or reseat a SIM, then `mtcctl repair`")
    if obs.lock in _BLOCKED:
        if obs.iccid is NOT_READ:
            # EF.ICCID is readable in PUK state: the report names the card.
            return Step.READ_ICCID
        return Refused(Reason.SIM_BLOCKED, f"SIM {_named(obs.iccid)} asks for its PUK; a person must unblock it: "
                       "`mtcctl sim unblock` (PUK and a new PIN on stdin)")
    if obs.lock not in (SimLock.SIM_PIN, SimLock.READY):
        return Refused(Reason.SIM_ERROR, f"SIM asks for {obs.lock.value}, which mtcd never answers; "
                       "check the card in another device (`mtcctl status` shows the last decision)")

    if obs.iccid is NOT_READ:
        return Step.READ_ICCID
    if obs.iccid is None:
        return Refused(Reason.SIM_ERROR, "the SIM's ICCID could not be read; reseat the SIM, then `mtcctl repair`")
    if obs.stored is NOT_READ:
        return Step.LOOK_UP_PIN

    stored = obs.stored
    if stored is not None and _imei_changed(obs, stored) and settings.on_imei_change == "refuse":
        return Refused(Reason.IMEI_CHANGED, f"SIM {obs.iccid} was paired with IMEI {stored.last_imei}; if the move "
                       f"is intended, store its PIN again: `mtcctl pin set {obs.iccid}`")

    if obs.lock is SimLock.READY:
        return _decide_unlocked(obs, settings)
    return _decide_locked(obs, settings)


def _imei_changed(obs: Observations, stored: StoredPin) -> bool:
    return obs.imei is not None and stored.last_imei is not None and stored.last_imei != obs.imei.value


def _outcomes(obs: Observations) -> tuple[PinOutcome, ...]:
    return tuple(o for o in (obs.presented, obs.presented_pending, obs.presented_fallback) if o is not None)


def _pending_usable(stored: StoredPin) -> bool:
    return stored.has_pending and not stored.pending_rejected


def _decide_unlocked(obs: Observations, settings: PolicySettings) -> Decision:
    outcomes = _outcomes(obs)
    if obs.stored is None:
        # Whatever else was observed: no stored PIN, no pairing.
        return Refused(Reason.UNKNOWN_SIM, _unknown(obs.iccid))
    if PinOutcome.ACCEPTED in outcomes:
        return Paired()
    if outcomes:
        return Refused(Reason.SIM_ERROR, f"SIM {obs.iccid} changed state while the PIN was presented; `mtcctl repair`")
    if obs.pin_enabled is NOT_READ:
        return Step.READ_PIN_ENABLED
    if obs.pin_enabled is None:
        return Refused(Reason.SIM_ERROR, f"could not tell whether the PIN of SIM {obs.iccid} is enabled; `mtcctl repair`")
    if not obs.pin_enabled:
        if settings.require_pin_enabled:
            return Refused(Reason.PIN_DISABLED, f"the PIN of SIM {obs.iccid} is disabled, so it would work in any device; "
                           "`mtcctl pair` (its PIN on stdin) enables it and sets one unique to this gateway")
        return Paired()
    if obs.stored.rejected and not _pending_usable(obs.stored) and not obs.stored.has_fallback:
        return Refused(Reason.PIN_REJECTED, _rejected(obs.iccid))
    # Unlocked with PIN enabled: it was unlocked in this modem since the card
    # was powered, and its ICCID has a good stored PIN.
    return Paired()


def _decide_locked(obs: Observations, settings: PolicySettings) -> Decision:
    stored = obs.stored
    if stored is None:
        return Refused(Reason.UNKNOWN_SIM, _unknown(obs.iccid))
    outcomes = _outcomes(obs)
    if PinOutcome.UNKNOWN in outcomes:
        return Refused(Reason.SIM_ERROR, f"the answer of SIM {obs.iccid} to the PIN was lost; the next run settles it "
                       "by the counter: `mtcctl repair`")
    if PinOutcome.ACCEPTED in outcomes:
        return Refused(Reason.SIM_ERROR, f"SIM {obs.iccid} still asks for its PIN after accepting it; `mtcctl repair`")
    current_ok = not stored.rejected and "current" not in stored.unsettled and obs.presented is None
    pending_ok = _pending_usable(stored) and "pending" not in stored.unsettled and obs.presented_pending is None
    fallback_ok = stored.has_fallback and "fallback" not in stored.unsettled and obs.presented_fallback is None
    if not (current_ok or pending_ok or fallback_ok):
        if stored.unsettled and not outcomes:
            return Refused(Reason.RETRY_GUARD, f"earlier PIN attempts on SIM {obs.iccid} have no recorded outcome "
                           f"and the card may have refused them; {_unsettled_hint(obs.iccid, None, stored, 0)}")
        return Refused(Reason.PIN_REJECTED, _rejected(obs.iccid))
    if obs.attempts is NOT_READ:
        return Step.READ_ATTEMPTS
    if stored.attempt_started:
        # An earlier presentation's outcome was lost (power cut).  Only the
        # card's counter can tell what happened to it.
        if stored.attempts_before is None and _lost_change_to_pending(obs, stored, settings):
            return Step.PRESENT_PENDING_PIN
        if obs.attempts is None or stored.attempts_before is None:
            return Refused(
                Reason.RETRY_GUARD,
                f"an earlier PIN attempt on SIM {obs.iccid} has no recorded outcome and the SIM's attempts counter "
                f"cannot settle it; {_unsettled_hint(obs.iccid, obs.attempts, stored, settings.min_retries)}",
            )
        if obs.attempts < stored.attempts_before:
            return Step.LATCH_LOST_ATTEMPT
    if obs.attempts is None and outcomes:
        # Without a counter, nothing after a rejection: it may have been the last-but-one.
        return Refused(Reason.RETRY_GUARD, f"SIM {obs.iccid} does not report its attempts, and one was just spent; "
                       f"{_try_hint(obs.iccid, None, settings.min_retries)}")
    if obs.attempts is not None and obs.attempts < settings.min_retries:
        return Refused(
            Reason.RETRY_GUARD,
            f"{_attempts_left(obs.attempts)} on SIM {obs.iccid}, below the guard of {settings.min_retries}; "
            f"{_try_hint(obs.iccid, obs.attempts, settings.min_retries)}",
        )
    if current_ok:
        return Step.PRESENT_PIN
    if pending_ok:
        return Step.PRESENT_PENDING_PIN
    if _spent(stored) >= 2:
        # Two candidates cost a card of three attempts at most two; a third
        # after two refused may take its last, whatever a counter says (none,
        # or one that lies: the guard of 2 already stops a true one).
        return Refused(Reason.RETRY_GUARD, f"two stored PINs of SIM {obs.iccid} were refused, or may have been; "
                       f"{_try_hint(obs.iccid, obs.attempts, settings.min_retries)}")
    return Step.PRESENT_FALLBACK_PIN


def _spent(stored: StoredPin) -> int:
    """How many of current and pending the card refused, or may have (no
    outcome recorded), since it last accepted a PIN."""
    return sum((stored.rejected or "current" in stored.unsettled,
                (stored.has_pending and stored.pending_rejected) or "pending" in stored.unsettled))


def _lost_change_to_pending(obs: Observations, stored: StoredPin, settings: PolicySettings) -> bool:
    """A change whose answer was lost, with no counter read before it (a
    card whose PIN was verified tells none): the counter cannot say whether
    the card refused its old PIN, so that PIN is never presented again
    automatically (rule 4).  The PIN the change was setting was never
    presented: it is tried once, while the counter read now allows.  The
    card took the change: paired.  It did not: that PIN is latched, and
    the old one stays for a person (`mtcctl pin try --unsettled`)."""
    return (stored.attempt_change and stored.attempt_pin == "current" and _pending_usable(stored)
            and "pending" not in stored.unsettled and obs.presented_pending is None
            and obs.attempts is not None and obs.attempts >= settings.min_retries)


# -- the way out named in each refusal (a command that works in that state) --

def _named(iccid) -> str:
    return str(iccid) if iccid else "(ICCID unreadable)"


def _unknown(iccid: Iccid) -> str:
    return (f"no PIN is stored for ICCID {iccid}; for a SIM that belongs here: `mtcctl pin set {iccid}` "
            "(its PIN on stdin), or `mtcctl pair` (its transport PIN on stdin)")


def _rejected(iccid: Iccid) -> str:
    return (f"the stored PIN of SIM {iccid} was rejected by the card and is never presented again; "
            f"store the right one: `mtcctl pin set {iccid}`")


def _attempts_left(attempts: int) -> str:
    return "1 PIN attempt left" if attempts == 1 else f"{attempts} PIN attempts left"


def try_command(attempts: int | None, min_retries: int) -> str:
    """The `mtcctl pin try` that a person may run with this many attempts
    left (None: not reported): the flags it needs, no more."""
    command = "mtcctl pin try"
    if attempts is None or attempts < min_retries:
        command += " --below-guard"
    if attempts == 1:
        command += " --last-attempt"
    return command


def _unsettled_hint(iccid: Iccid, attempts: int | None, stored: StoredPin, min_retries: int) -> str:
    # `mtcctl pin try` never presents the unsettled candidate again (the card
    # may have refused it); only the other one, if there is one.
    spent = {*stored.unsettled, stored.attempt_pin} if stored.attempt_started else set(stored.unsettled)
    other = ("current" not in spent and not stored.rejected) or \
        ("pending" not in spent and stored.has_pending and not stored.pending_rejected) or \
        ("fallback" not in spent and stored.has_fallback)
    if other:
        return _try_hint(iccid, attempts, min_retries)
    return (f"if you know the right PIN, store it again: `mtcctl pin set {iccid}` (its PIN on stdin), "
            "then `mtcctl repair`; if nobody knows it (a PIN this gateway set) and you accept that a wrong one "
            "may PUK-block the SIM: `mtcctl pin try --unsettled --below-guard --last-attempt`")


def _try_hint(iccid: Iccid, attempts: int | None, min_retries: int) -> str:
    # `mtcctl sim unblock` is no way out here: the SIM is not PUK-blocked yet.
    what = "on its last attempt" if attempts == 1 else "once"
    return (f"a person who knows the stored PIN is right runs `{try_command(attempts, min_retries)}` to present it {what} "
            f"(if it may be wrong, store the right one first: `mtcctl pin set {iccid}`)")
