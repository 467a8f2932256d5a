"""A person's way out of states the gate refuses on its own: `mtcctl pin try`
(present the stored PIN once, now, on explicit request) and `mtcd once
--dry-run` (what a pairing would do, doing none of it).

`plan_try` is pure: facts in, the one step allowed out.  The rules for an
explicit try (guarantees 1 and 2 hold for a person's request too):

- only when the SIM asks for exactly `SIM PIN`, and only the PIN stored for
  the ICCID read from this card;
- never a PIN the card rejected (a person who knows better stores it again
  with `mtcctl pin set`, which lifts the latch), nor one whose attempt no
  counter can settle (the card may have refused it), never a PUK;
- attempts left >= policy.min_retries, unless the person says
  `--below-guard` (and confirms); an unknown count also needs it;
- never on the last attempt without `--last-attempt` as well;
- one presentation per command.  With a pending PIN (a change whose outcome
  is unknown) the current PIN is presented first, as pairing does; once the
  card rejected it, the next `pin try` presents the pending one, then the
  fallback (the PIN the card was last seen to accept, kept while the current
  one is unproven).  What the card answers settles the keystore (a pending
  PIN accepted is promoted; the current one accepted voids our own
  interrupted rotation's pending PIN and the fallback; the fallback
  accepted is current again as it was).

The presentation itself is the gate's (`mtcd.gate._present`): the attempt
marker is written before AT+CPIN= and settled after, by the card's answer
or its counter, exactly as for automatic pairing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .errors import EXIT_REFUSED, MtcdError
from .gate import _PRESENTING, _pin1, _present, _stored_view, presented, read_step
from .identity import Iccid, Imei
from .journal import PairingJournal
from .keystore import CURRENT, FALLBACK, PENDING, Keystore
from .policy import (
    NOT_READ,
    Observations,
    Paired,
    PinOutcome,
    PolicySettings,
    Refused,
    Step,
    StoredPin,
    decide,
    try_command,
)
from .simlock import SimLock
from .uicc import PresentationRefused, Uicc

log = logging.getLogger("mtcd.recovery")

# Refusal codes of `pin try` (JSON "reason"; stable).
NO_SIM = "no-sim"
NOT_ASKING = "not-asking-for-pin"
SIM_BLOCKED = "sim-blocked"
SIM_ERROR = "sim-error"
UNKNOWN_SIM = "unknown-sim"
PIN_REJECTED = "pin-rejected"
BELOW_GUARD = "retry-guard"
LAST_ATTEMPT = "last-attempt"
NOT_CONFIRMED = "not-confirmed"
SIM_CHANGED = "sim-changed"
UNSETTLED = "attempt-unsettled"


class TryRefused(MtcdError):
    """`pin try` presented nothing: the message says why and what works."""

    exit_code = EXIT_REFUSED
    code = "refused"  # --json error code; `reason` says which refusal

    def __init__(self, reason: str, message: str, iccid: Iccid | None = None):
        super().__init__(message)
        self.reason = reason
        self.iccid = iccid
        self.details = {"reason": reason, "iccid": str(iccid) if iccid else None}


@dataclass(frozen=True)
class TryPlan:
    """What an explicit try may do now: present `which`, latch a lost
    attempt first, or nothing (`refusal`)."""

    which: str | None = None  # CURRENT | PENDING | FALLBACK
    latch: str | None = None  # the candidate a lost attempt is now known to have spent
    refusal: TryRefused | None = None
    below_guard: bool = False  # presenting needs the person's confirmation
    unsettled: bool = False  # `which` is a candidate whose earlier attempt was never settled


def plan_try(lock: SimLock, iccid: Iccid | None, stored: StoredPin | None, attempts: int | None,
             min_retries: int, *, below_guard: bool = False, last_attempt: bool = False,
             unsettled_ok: bool = False) -> TryPlan:
    """Pure.  `attempts`: PIN1 attempts left (None: the modem does not say).
    `unsettled_ok`: the person asked (`--unsettled`) for a candidate whose
    earlier attempt was never settled, knowing the card may have refused it."""
    def refuse(reason: str, message: str) -> TryPlan:
        return TryPlan(refusal=TryRefused(reason, message, iccid))

    if lock in (SimLock.NOT_INSERTED, SimLock.NOT_READY):
        return refuse(NO_SIM, f"no SIM answers (it reports {lock.value}); insert one, then `mtcctl repair`")
    if lock is SimLock.SIM_PUK:
        return refuse(SIM_BLOCKED, f"SIM {_shown(iccid)} asks for its PUK; a PIN cannot help: "
                                   "`mtcctl sim unblock` (PUK and a new PIN on stdin)")
    if lock is SimLock.READY:
        return refuse(NOT_ASKING, f"SIM {_shown(iccid)} is unlocked already; nothing to present "
                                  "(`mtcctl repair` takes a pairing decision now)")
    if lock is not SimLock.SIM_PIN:
        return refuse(NOT_ASKING, f"SIM {_shown(iccid)} asks for {lock.value}, which mtcd never answers; "
                                  "check the card (`mtcctl status`)")
    if iccid is None:
        return refuse(SIM_ERROR, "the SIM's ICCID cannot be read, so no stored PIN can be chosen; "
                                 "reseat the SIM, then `mtcctl repair`")
    if stored is None:
        return refuse(UNKNOWN_SIM, f"no PIN is stored for ICCID {iccid}; store it first: `mtcctl pin set {iccid}`")
    if stored.attempt_started and attempts is not None and stored.attempts_before is not None \
            and attempts < stored.attempts_before:
        # The counter settles an attempt lost in a power cut: latch first.
        return TryPlan(latch=stored.attempt_pin)
    # An attempt no counter can settle may have been refused: its candidate
    # counts as rejected here (only a PIN a person stores again lifts that).
    # Every such candidate, not only the last one: two lost answers on a
    # card holding neither PIN have spent two of its three attempts.
    # A counter read before and now that has not fallen settles the open
    # attempt as not refused (as pairing takes it): that candidate may go.
    counted = attempts is not None and stored.attempts_before is not None
    unsettled = {*stored.unsettled, stored.attempt_pin} if stored.attempt_started and not counted \
        else set(stored.unsettled)
    if not stored.rejected and CURRENT not in unsettled:
        which = CURRENT
    elif stored.has_pending and not stored.pending_rejected and PENDING not in unsettled:
        which = PENDING
    elif stored.has_fallback and FALLBACK not in unsettled:
        which = FALLBACK
    elif unsettled and unsettled_ok:
        # Only on a person's explicit word: nobody may know the PIN (one this
        # gateway set), and the card may be on its last attempt.
        usable = {CURRENT: not stored.rejected, PENDING: stored.has_pending and not stored.pending_rejected,
                  FALLBACK: stored.has_fallback}
        which = next((w for w in (CURRENT, PENDING, FALLBACK) if w in unsettled and usable[w]), PENDING)
        if not usable[which]:
            return refuse(PIN_REJECTED, f"the PIN stored for {iccid} was rejected by the card and is never "
                                        f"presented again; if you know the right one, store it first: "
                                        f"`mtcctl pin set {iccid}`")
        return _plan_unsettled(iccid, which, attempts, min_retries, below_guard, last_attempt)
    elif unsettled:
        named = " and ".join(sorted(unsettled))
        return refuse(UNSETTLED, f"the answer of SIM {iccid} to its stored {named} PIN was lost and its "
                                 "attempts counter cannot tell whether the card refused it, so it is not presented "
                                 f"again; if you know the right PIN, store it first: `mtcctl pin set {iccid}`; "
                                 "if nobody knows it (a PIN this gateway set) and you accept that a wrong one may "
                                 f"PUK-block the SIM: `{_OVERRIDE}`")
    else:
        return refuse(PIN_REJECTED, f"the PIN stored for {iccid} was rejected by the card and is never presented "
                                    f"again; if you know the right one, store it first: `mtcctl pin set {iccid}`")
    needed = try_command(attempts, min_retries)
    count = "the SIM does not report its attempts left" if attempts is None else \
        f"{attempts} PIN attempt{'s' if attempts != 1 else ''} left on SIM {iccid}"
    low = attempts is None or attempts < min_retries
    if low and not below_guard:
        where = "" if attempts is None else f", below the guard of {min_retries}"
        return refuse(BELOW_GUARD, f"{count}{where}; to present the stored PIN anyway: `{needed}`")
    if attempts == 1 and not last_attempt:
        return refuse(LAST_ATTEMPT, f"{count}: a wrong PIN would PUK-block the SIM; if you are sure the stored "
                                    f"PIN is right: `{needed}`")
    return TryPlan(which=which, below_guard=low)


_OVERRIDE = "mtcctl pin try --unsettled --below-guard --last-attempt"


def _plan_unsettled(iccid: Iccid, which: str, attempts: int | None, min_retries: int,
                    below_guard: bool, last_attempt: bool) -> TryPlan:
    """A candidate that may have been refused already: without a counter
    the card may be on its last attempt, so both flags and a confirmation."""
    low = attempts is None or attempts < min_retries
    last = attempts is None or attempts == 1
    needed = "mtcctl pin try --unsettled" + (" --below-guard" if low else "") + (" --last-attempt" if last else "")
    if (low and not below_guard) or (last and not last_attempt):
        count = "its attempts left are unknown" if attempts is None else f"{attempts} PIN attempts left"
        return TryPlan(refusal=TryRefused(
            LAST_ATTEMPT if last else BELOW_GUARD,
            f"the stored {which} PIN of SIM {iccid} may have been refused already and {count}: a wrong PIN "
            f"may PUK-block it; if you accept that: `{needed}`", iccid))
    return TryPlan(which=which, below_guard=True, unsettled=True)


def _shown(iccid: Iccid | None) -> str:
    return str(iccid) if iccid else "(ICCID unreadable)"


@dataclass(frozen=True)
class TryRequest:
    below_guard: bool = False
    last_attempt: bool = False
    confirmed: bool = False  # the person confirmed a try below the guard (or --yes)
    iccid: Iccid | None = None  # the SIM the confirmation was given for
    unsettled: bool = False  # also a candidate whose earlier attempt was never settled (--unsettled)


def try_pin(uicc: Uicc, keystore: Keystore, journal: PairingJournal, settings: PolicySettings,
            imei: Imei, request: TryRequest) -> dict:
    """Read the card, and present one stored PIN if `plan_try` allows it.
    Returns the answer `mtcctl pin try` prints; outcome "confirm" means the
    person must confirm first (nothing was presented).  Raises TryRefused."""
    for _ in range(3):  # at most: latch a lost attempt, then plan again
        lock = uicc.lock()
        iccid = uicc.iccid() if lock in (SimLock.SIM_PIN, SimLock.READY, SimLock.SIM_PUK) else None
        stored = _stored_view(keystore, iccid) if iccid is not None else None
        attempts = _pin1(uicc) if lock is SimLock.SIM_PIN else None
        plan = plan_try(lock, iccid, stored, attempts, settings.min_retries,
                        below_guard=request.below_guard, last_attempt=request.last_attempt,
                        unsettled_ok=request.unsettled)
        if plan.latch is None:
            break
        # Only the marker the counter was compared with (mtcd.gate.pair does
        # the same): a PIN stored since is planned for afresh, not latched.
        entry = keystore.get(iccid)
        if entry is not None and entry.attempt == plan.latch and entry.attempts_before == stored.attempts_before:
            log.warning("the PIN attempt lost in a power cut was rejected (%s PIN); latched", plan.latch)
            keystore.record_rejected(iccid, plan.latch, presented=entry.candidate(plan.latch))
            journal.append("pin-attempt-rejected", iccid=str(iccid), pin=plan.latch, settled="by counter")
    else:
        raise TryRefused(SIM_ERROR, "the SIM's state keeps changing; try again (`mtcctl repair` first)", iccid)
    base = {"iccid": str(iccid) if iccid else None, "pin": plan.which, "attempts_before": attempts,
            "guard": settings.min_retries}
    if plan.refusal is not None:
        _journal(journal, base, "refused", reason=plan.refusal.reason)
        raise plan.refusal
    if request.iccid is not None and request.iccid != iccid:
        refusal = TryRefused(SIM_CHANGED, f"the SIM in the slot is {iccid}, not {request.iccid} that was "
                                          "confirmed; nothing presented: run `mtcctl pin try` again", iccid)
        _journal(journal, base, "refused", reason=SIM_CHANGED)
        raise refusal
    if plan.below_guard and not request.confirmed:
        count = "an unknown number of PIN attempts" if attempts is None else \
            f"{attempts} PIN attempt{'s' if attempts != 1 else ''}"
        return {**base, "outcome": "confirm",
                "detail": f"SIM {iccid} has {count} left (guard {settings.min_retries}); "
                          f"presenting its stored {plan.which} PIN spends one if it is wrong"}
    if not uicc.may_present(iccid):
        raise TryRefused(SIM_ERROR, f"SIM {iccid} changed state while it was read; nothing presented: "
                                    "run `mtcctl pin try` again", iccid)
    events: list[tuple[str, dict]] = []
    obs = Observations(imei=imei, lock=lock, iccid=iccid, stored=stored, attempts=attempts)
    try:
        obs = _present(uicc, keystore, obs, plan.which, events, unsettled_ok=plan.unsettled)
    except PresentationRefused:
        _journal(journal, base, "refused", reason=SIM_ERROR)
        raise TryRefused(SIM_ERROR, f"SIM {iccid} changed state while it was read; nothing presented: "
                                    "run `mtcctl pin try` again", iccid) from None
    for event, fields in events:
        journal.append(event, **fields)
    outcome = presented(obs, plan.which)
    if outcome is None:
        # Forgotten or replaced by a person between the look-up and now.
        _journal(journal, base, "refused", reason=UNKNOWN_SIM)
        raise TryRefused(UNKNOWN_SIM, f"the PIN of {iccid} changed in the keystore meanwhile; nothing presented: "
                                      "run `mtcctl pin try` again", iccid)
    left = _pin1(uicc) if outcome is PinOutcome.REJECTED and obs.lock is SimLock.SIM_PIN else None
    answer = {**base, "outcome": outcome.value, "attempts_left": left,
              "detail": _outcome_detail(iccid, plan.which, outcome, keystore, left, settings.min_retries, obs.lock)}
    _journal(journal, base, outcome.value, below_guard=plan.below_guard, last_attempt=attempts == 1,
             **({"unsettled": True} if plan.unsettled else {}))
    return answer


def _journal(journal: PairingJournal, base: dict, outcome: str, **fields) -> None:
    journal.append("pin-try", iccid=base["iccid"], pin=base["pin"], outcome=outcome,
                   attempts_before=base["attempts_before"], **fields)


def _outcome_detail(iccid: Iccid, which: str, outcome: PinOutcome, keystore: Keystore, left: int | None,
                    min_retries: int, lock) -> str:
    if outcome is PinOutcome.ACCEPTED:
        return (f"SIM {iccid} accepted its stored {which} PIN and is unlocked; the service pairs it now "
                "(without the service: `mtcd once`)")
    if outcome is PinOutcome.UNKNOWN:
        return (f"the answer of SIM {iccid} was lost; the attempt stays unsettled until its counter settles it "
                "(`mtcd once --dry-run` shows what the next pairing would do)")
    if lock is SimLock.SIM_PUK:
        return f"SIM {iccid} rejected its stored {which} PIN and is now PUK-blocked: `mtcctl sim unblock`"
    entry = keystore.get(iccid)
    if which == CURRENT and entry is not None and entry.pending_pin is not None and not entry.pending_rejected:
        return (f"SIM {iccid} rejected its stored current PIN; its pending PIN is the other candidate: "
                f"`{try_command(left, min_retries)}` presents it")
    if which != FALLBACK and entry is not None and entry.fallback_pin is not None:
        return (f"SIM {iccid} rejected its stored {which} PIN; the PIN it was last seen to accept is kept: "
                f"`{try_command(left, min_retries)}` presents it")
    return f"SIM {iccid} rejected its stored {which} PIN; store the right one: `mtcctl pin set {iccid}`"


# -- mtcd once --dry-run ---------------------------------------------------------

def dry_run(uicc: Uicc, keystore: Keystore, settings: PolicySettings, imei: Imei, imeisv,
            rotation=None, backend: str = "") -> dict:
    """Walk the pairing policy reading everything it asks for, and stop at the
    first step that would present, latch or write anything.  Sends only
    queries (AT+CPIN?, the ICCID, the counters, AT+CLCK query): no PIN, no
    PUK, no radio, no keystore or journal write.  `rotation(iccid)` names a
    PIN change pairing would make (or None)."""
    obs = Observations(imei=imei)
    while True:
        decision = decide(obs, settings)
        read = read_step(decision, obs, uicc, keystore)
        if read is None:
            break
        obs = read
    iccid = obs.iccid if isinstance(obs.iccid, Iccid) else None
    attempts = obs.attempts if isinstance(obs.attempts, int) else None
    counted = "an unreported number of PIN attempts left" if attempts is None else \
        f"{attempts} PIN attempt{'s' if attempts != 1 else ''} left"
    answer = {
        "dry_run": True,
        "imei": str(imei),
        "imeisv": str(imeisv) if imeisv else None,
        "iccid": str(iccid) if iccid else None,
        "sim": obs.lock.value if obs.lock is not NOT_READ else None,
        "pin_retries": attempts,
        "guard": settings.min_retries,
        "reason": None,
        "pin": None,
        "link": "down",
    }
    link = f"bring the link up ({backend})" if backend else "bring the link up"
    if isinstance(decision, Refused):
        answer.update(state="would-refuse", reason=decision.reason.value,
                      detail=f"would refuse: {decision.reason.value}: {decision.detail}; the radio stays off")
    elif isinstance(decision, Paired):
        change = rotation(iccid) if rotation is not None and iccid else None
        then = f", change its PIN ({change})" if change else ""
        answer.update(state="would-pair",
                      detail=f"would pair SIM {iccid} (unlocked, nothing to present){then} and {link}")
    elif decision is Step.LATCH_LOST_ATTEMPT:
        which = obs.stored.attempt_pin
        answer.update(state="would-latch", pin=which,
                      detail=f"would record the {which} PIN of SIM {iccid} as rejected (its counter shows that an "
                             f"attempt lost in a power cut was refused: {counted}), then decide again")
    else:
        which = _PRESENTING[decision]
        answer.update(state="would-present", pin=which,
                      detail=f"would present the stored {which} PIN for {iccid}: {counted}, guard "
                             f"{settings.min_retries}; if the card accepts it, pair and {link}")
    return answer
