"""The pairing gate: walks the policy's steps against the real SIM and the
keystore, and records what the card said before acting on it again.

Order of persistence matters (guarantee 1): the keystore notes that an
attempt has started, with the counter read just before, *before* the PIN
goes out; the outcome is recorded as soon as the card answers.  A power cut
in between leaves a marker that the policy settles on the next boot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .errors import ModemUnavailable, MtcdError
from .identity import Iccid, Imei, Imeisv, Imsi
from .keystore import CURRENT, FALLBACK, PENDING, Keystore
from .simlock import SimLock
from .policy import (
    Decision,
    Observations,
    Paired,
    PinOutcome,
    PolicySettings,
    Reason,
    Refused,
    Step,
    StoredPin,
    decide,
)
from .uicc import PresentationRefused, Uicc

log = logging.getLogger("mtcd.gate")


@dataclass(frozen=True)
class PairingOutcome:
    decision: Paired | Refused
    observations: Observations
    imei: Imei
    imeisv: Imeisv | None
    iccid: Iccid | None
    imsi: Imsi | None
    pin_retries: int | None  # PIN1 attempts left as last reported
    # Journal events for every step that changed what is known of a PIN
    # (an attempt rejected, a pending PIN promoted), in order.
    pin_events: tuple[tuple[str, dict], ...] = ()

    @property
    def paired(self) -> bool:
        return isinstance(self.decision, Paired)

    @property
    def reason(self) -> Reason | None:
        return self.decision.reason if isinstance(self.decision, Refused) else None


def pair(uicc: Uicc, keystore: Keystore, settings: PolicySettings, imei: Imei, imeisv: Imeisv | None) -> PairingOutcome:
    obs = Observations(imei=imei)
    events: list[tuple[str, dict]] = []
    retries: int | None = None
    rereads = 0
    while True:
        decision: Decision = decide(obs, settings)
        read = read_step(decision, obs, uicc, keystore)
        if read is not None:
            obs = read
            if decision is Step.READ_ATTEMPTS:
                retries = obs.attempts
            continue
        if decision is Step.LATCH_LOST_ATTEMPT:
            # Only the marker the counter was compared with: a person may
            # have stored or forgotten the PIN since it was looked up.
            which = obs.stored.attempt_pin
            entry = keystore.get(obs.iccid)
            if entry is not None and entry.attempt == which and entry.attempts_before == obs.stored.attempts_before:
                log.warning("the PIN attempt lost in a power cut was rejected (%s PIN); latched", which)
                keystore.record_rejected(obs.iccid, which, presented=entry.candidate(which))
                events.append(("pin-attempt-rejected",
                               {"iccid": str(obs.iccid), "pin": which, "settled": "by counter"}))
            obs = obs.with_(stored=_stored_view(keystore, obs.iccid))
        elif decision in _PRESENTING:
            which = _PRESENTING[decision]
            if _presented(obs) and not _still_the_card(uicc, obs.iccid):
                # A second candidate in one run (after a refusal): a modem
                # may give no word of a swap, so the ICCID read before the
                # first one is checked again.  Another card starts afresh,
                # with none of this card's outcomes (guarantee 1).
                rereads += 1
                if rereads > 3:
                    decision = Refused(Reason.SIM_ERROR, "the SIM's state keeps changing; `mtcctl repair`")
                    break
                obs = Observations(imei=imei)
                retries = None
                continue
            # A SIM-state URC since the card was read (seen before the
            # presentation, or landing after that check, when nothing was
            # sent either): read it all again rather than present on a
            # stale reading.
            sent = uicc.may_present(obs.iccid)
            if sent:
                try:
                    obs = _present(uicc, keystore, obs, which, events)
                except PresentationRefused:
                    sent = False
            if not sent:
                rereads += 1
                if rereads > 3:
                    decision = Refused(Reason.SIM_ERROR, "the SIM's state keeps changing; `mtcctl repair`")
                    break
                obs = Observations(imei=imei, presented=obs.presented, presented_pending=obs.presented_pending,
                                   presented_fallback=obs.presented_fallback)
                continue
            if PinOutcome.ACCEPTED in _presented(obs):
                retries = None  # the card reset its counter to its maximum
            elif PinOutcome.UNKNOWN in _presented(obs):
                retries = None  # the count before it no longer holds
            elif PinOutcome.REJECTED in _presented(obs):
                # Read what is left before any other candidate (costs nothing).
                retries = _pin1(uicc)
                obs = obs.with_(attempts=retries)
        else:
            break
    imsi = None
    if isinstance(decision, Paired):
        if not _presented(obs):
            keystore.note_paired(obs.iccid, imei.value)
        imsi = uicc.imsi()
    return PairingOutcome(
        decision=decision,
        observations=obs,
        imei=imei,
        imeisv=imeisv,
        iccid=obs.iccid or None,
        imsi=imsi,
        pin_retries=retries,
        pin_events=tuple(events),
    )


# The step that presents each candidate, in the policy's order.
_PRESENTING = {Step.PRESENT_PIN: CURRENT, Step.PRESENT_PENDING_PIN: PENDING, Step.PRESENT_FALLBACK_PIN: FALLBACK}
_FIELD = {CURRENT: "presented", PENDING: "presented_pending", FALLBACK: "presented_fallback"}


def _presented(obs: Observations) -> tuple[PinOutcome, ...]:
    """The outcomes of this run's presentations so far."""
    return tuple(o for o in (obs.presented, obs.presented_pending, obs.presented_fallback) if o is not None)


def presented(obs: Observations, which: str) -> PinOutcome | None:
    """What this run's presentation of `which` came to (None: not presented)."""
    return getattr(obs, _FIELD[which])


def read_step(step: Decision, obs: Observations, uicc: Uicc, keystore: Keystore) -> Observations | None:
    """The observations with what a read-only step asks for; None for any
    other step (one that presents, latches, writes or ends the walk).  The
    one place pairing and its dry run read the card and the keystore."""
    if step is Step.READ_SIM_LOCK:
        return obs.with_(lock=uicc.lock())
    if step is Step.READ_ICCID:
        return obs.with_(iccid=uicc.iccid())
    if step is Step.LOOK_UP_PIN:
        return obs.with_(stored=_stored_view(keystore, obs.iccid))
    if step is Step.READ_PIN_ENABLED:
        return obs.with_(pin_enabled=uicc.pin_enabled())
    if step is Step.READ_ATTEMPTS:
        return obs.with_(attempts=_pin1(uicc))
    return None


def _still_the_card(uicc: Uicc, iccid) -> bool:
    """Whether the card in the slot now is the one with `iccid`."""
    try:
        return uicc.iccid() == iccid
    except MtcdError:
        return False


def _pin1(uicc: Uicc) -> int | None:
    attempts = uicc.attempts()
    return attempts.pin1 if attempts is not None else None


def _stored_view(keystore: Keystore, iccid: Iccid) -> StoredPin | None:
    entry = keystore.get(iccid)
    if entry is None:
        return None
    return StoredPin(
        rejected=entry.rejected,
        attempt_started=entry.attempt_started,
        attempts_before=entry.attempts_before,
        last_imei=entry.last_imei,
        attempt_pin=entry.attempt or CURRENT,
        has_pending=entry.pending_pin is not None,
        pending_rejected=entry.pending_rejected,
        has_fallback=entry.fallback_pin is not None,
        unsettled=entry.unsettled,
        attempt_change=entry.attempt_change,
    )


def _present(uicc: Uicc, keystore: Keystore, obs: Observations, which: str,
             events: list[tuple[str, dict]], unsettled_ok: bool = False) -> Observations:
    entry = keystore.get(obs.iccid)
    pin = entry.candidate(which) if entry is not None else None
    if pin is None:
        # Forgotten (or replaced) by a person since it was looked up: look again.
        return obs.with_(stored=_stored_view(keystore, obs.iccid))
    if not keystore.begin_attempt(obs.iccid, attempts_before=obs.attempts, which=which, presenting=pin,
                                  unsettled_ok=unsettled_ok):
        # Replaced by a person (mtcctl pin set) since it was looked up: the
        # marker would belong to a PIN not sent.  Look again.
        return obs.with_(stored=_stored_view(keystore, obs.iccid))
    try:
        outcome = uicc.present_pin(pin, obs.iccid)
    except PresentationRefused:
        # The card's state changed after the marker was written (a URC from
        # the reader thread): nothing went out, so no attempt stays marked.
        keystore.cancel_attempt(obs.iccid, which, entry)
        raise
    # What the card asks for now (READY, SIM PIN again, or SIM PUK after its
    # last attempt): the UICC layer sends nothing more without a fresh reading.
    try:
        lock = uicc.lock()
    except ModemUnavailable:
        if outcome is not PinOutcome.UNKNOWN:
            raise
        lock = obs.lock  # the modem went quiet: the marker stays for the next run
        settles = False
    else:
        # A lost answer is settled by what the card says now: only if it is
        # still the card the PIN went to (a reader's card can be swapped
        # while the answer is lost; another card's READY or counter says
        # nothing about this PIN).  Otherwise the marker stays.
        settles = outcome is not PinOutcome.UNKNOWN or _still_the_card(uicc, obs.iccid)
    if settles and lock is SimLock.READY and outcome is PinOutcome.UNKNOWN:
        # The answer was lost but the card unlocked: it took this PIN.
        outcome = PinOutcome.ACCEPTED
    elif outcome is PinOutcome.ACCEPTED and lock is not SimLock.READY:
        # Some modems answer OK whatever the card said.  Only a card seen
        # READY has accepted; until then the marker stays and the counter
        # (now, or at the next run) settles it.
        log.warning("the modem accepted the %s PIN but the SIM reports %s; outcome unknown", which, lock.value)
        outcome = PinOutcome.UNKNOWN
    if settles and outcome is PinOutcome.UNKNOWN and lock is SimLock.SIM_PIN and obs.attempts is not None:
        after = _pin1(uicc)
        if after is not None and after < obs.attempts:
            outcome = PinOutcome.REJECTED  # the counter fell: the card refused it
    log.info("%s PIN presented for ICCID %s: %s", which, obs.iccid, outcome.value)
    field = _FIELD[which]
    if outcome is PinOutcome.REJECTED:
        keystore.record_rejected(obs.iccid, which, presented=pin)
        events.append(("pin-attempt-rejected", {"iccid": str(obs.iccid), "pin": which}))
    elif outcome is PinOutcome.ACCEPTED:
        entry = keystore.get(obs.iccid)
        keystore.record_accepted(obs.iccid, obs.imei.value if obs.imei else None, which)
        if which == PENDING:
            events.append(("pin-promoted", {"iccid": str(obs.iccid), "origin": entry.pending_origin}))
        elif which == FALLBACK:
            # The card refused the PIN our change set and took the one
            # before it: the OK to that change never reached the card.
            events.append(("pin-change-not-made", {"iccid": str(obs.iccid)}))
    # Unknown: the marker stays, and the next run settles it by the counter.
    return obs.with_(**{field: outcome}, lock=lock, stored=_stored_view(keystore, obs.iccid))
