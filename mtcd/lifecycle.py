"""The PIN lifecycle on the card: rotation, adoption of a new SIM, and a
person's unblocking with the PUK.

TR 33.868 answers a gateway that may be compromised ("all the PINs are
known to an attacker") by changing PINs: on the spot when a SIM is put into
a gateway, and remotely.  The ordering rule that keeps guarantee 5 (an
interrupted change never locks the gateway out of its own SIM): the new PIN
is sealed in the keystore as *pending*, and fsynced, before the card is
asked to change; it becomes *current* only after the card said OK.  Until
then the pairing step tries current, then pending, each once, each only
while the retry guard allows (mtcd.policy).

An OK with the counter unchanged is also what a modem that never passed the
change on answers, so the PIN the card was last seen to accept stays, sealed,
as the *fallback* until the card unlocks with the new one.  No further
change begins before that proof (`change_waits`): after two unproven changes
the card could hold any of three PINs, and only two presentations fit above
the guard.  With at most one outstanding, the card holds the current PIN or
the fallback whatever the modem passed on or dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from .config import PolicyConfig
from .errors import EXIT_TEMPFAIL, MtcdError
from .identity import Iccid, Imei
from .journal import PairingJournal
from .keystore import CURRENT, ROTATION, STAGED, ChangeNotSettled, Keystore, PinEntry, PinNotStored
from .policy import PinOutcome
from .secret import Pin, Puk
from .simlock import SimLock
from .uicc import PresentationRefused, Uicc

log = logging.getLogger("mtcd.lifecycle")

# Reasons a rotation is due (journal vocabulary).
COMPROMISED = "compromised"
ADOPTED = "adopted"
SCHEDULED = "scheduled"
REQUESTED = "requested"


class LifecycleRefused(MtcdError):
    """The card or the store is not in a state where this change is safe.
    Example: a rotation asked for while an over-the-air PIN is staged."""

    exit_code = 1


class ChangeLost(LifecycleRefused):
    """The card's answer to a command changing its PIN state was lost:
    a temporary failure, settled at the next pairing."""

    exit_code = EXIT_TEMPFAIL


@dataclass(frozen=True)
class ChangeResult:
    outcome: str  # "done" | "interrupted" (the card's answer was lost)
    detail: str


def rotation_due(entry: PinEntry, policy: PolicyConfig, now: datetime) -> str | None:
    """Why the PIN of a freshly paired SIM should be changed now, if at all."""
    if entry.compromised:
        return COMPROMISED
    if entry.transport and policy.rotate_on_adopt:
        return ADOPTED
    if policy.rotate_every is not None and entry.rotated is not None:
        age = (now - datetime.fromisoformat(entry.rotated)).total_seconds()
        if age >= policy.rotate_every:
            return SCHEDULED
    return None


def change_waits(entry: PinEntry) -> str | None:
    """Why no change of the card's PIN may begin now; None when one may.
    Either waits until the SIM next asks for its PIN and is unlocked: a
    pending PIN the card may hold already (replacing it could lose the only
    copy of the card's PIN), or our last change with only the modem's OK."""
    if entry.pending_pin is not None:
        origin = "an over-the-air change" if entry.pending_origin == STAGED else "an earlier change"
        return f"a PIN from {origin} of {entry.iccid} is not settled yet"
    if entry.fallback_pin is not None:
        return _unproven(entry.iccid)
    return None


def _unproven(iccid: Iccid) -> str:
    return (f"the last PIN change of {iccid} is not proven yet (the modem said OK; the SIM has not "
            "unlocked with the new PIN since)")


def stage(keystore: Keystore, journal: PairingJournal | None, policy: PolicyConfig, iccid: Iccid, pin: Pin) -> ChangeResult:
    """Keep the PIN an over-the-air change is about to set (device first, SIM
    second).  Needs no modem."""
    check_change_allowed(policy)
    entry = keystore.get(iccid)
    if entry is None:
        raise LifecycleRefused(f"no PIN is stored for {iccid}; store its current PIN first: `mtcctl pin set {iccid}`")
    refused = _stage_waits(entry)
    if refused is not None:
        raise refused
    # Checked again under the keystore's lock: a rotation may start meanwhile.
    try:
        keystore.stage_pending(iccid, pin, STAGED, over_rotation=False)
    except PinNotStored:
        # A person forgot it since the look above (another process).
        raise LifecycleRefused(f"no PIN is stored for {iccid} (forgotten meanwhile); nothing staged: "
                               f"store its current PIN first: `mtcctl pin set {iccid}`") from None
    except ChangeNotSettled:
        raise (_stage_waits(keystore.get(iccid)) or _pending_not_settled(iccid)) from None
    if journal is not None:
        journal.append("pin-staged", iccid=str(iccid))
    return ChangeResult("staged", f"staged the new PIN for {iccid}; change the SIM over the air now")


def _stage_waits(entry: PinEntry | None) -> LifecycleRefused | None:
    """Why an OTA PIN may not be staged now (change_waits, in staging's words)."""
    if entry is None or change_waits(entry) is None:
        return None
    if entry.pending_pin is not None:
        # The card may hold that PIN already (our rotation, a person's
        # unblock, or an earlier OTA change that was delivered): replacing it
        # could leave the card with a PIN nobody has.
        return _pending_not_settled(entry.iccid)
    return _unproven_not_staged(entry.iccid)


def _pending_not_settled(iccid: Iccid) -> LifecycleRefused:
    return LifecycleRefused(
        f"a pending PIN of {iccid} is not settled yet; stage after the SIM is next unlocked "
        f"(or, if that OTA change was never sent, store the current PIN again: `mtcctl pin set {iccid}`)"
    )


def _unproven_not_staged(iccid: Iccid) -> LifecycleRefused:
    # A dropped change plus an OTA change never sent would leave the card's
    # PIN third, behind two refusals: a person on its last attempt.
    return LifecycleRefused(f"{_unproven(iccid)}; nothing staged: stage once `mtcctl pin list --json` shows "
                            "\"fallback\": false (power-cycle the modem, then `mtcctl repair`)")


def check_change_allowed(policy: PolicyConfig) -> None:
    """A change that is cut short leaves two candidates; the gateway may
    spend one attempt on the wrong one and must still be allowed to try the
    other, which the guard only allows at min_retries = 2."""
    if policy.min_retries > 2:
        raise LifecycleRefused(
            "PIN changes need policy.min_retries = 2: after an interrupted change the "
            "gateway must be able to spend one attempt on the old PIN and still try the new one; "
            "set it in the configuration, then `systemctl reload mtcd`"
        )


class Lifecycle:
    """PIN changes on the inserted SIM, with the keystore and journal."""

    def __init__(self, uicc: Uicc, keystore: Keystore, journal: PairingJournal, policy: PolicyConfig, imei: Imei):
        self.uicc = uicc
        self.keystore = keystore
        self.journal = journal
        self.policy = policy
        self.imei = imei

    # -- rotation -------------------------------------------------------------
    def rotate(self, reason: str, length: int | None = None) -> ChangeResult:
        """Replace the inserted, unlocked SIM's PIN by a fresh random one."""
        check_change_allowed(self.policy)
        iccid = self._unlocked_card()
        entry = self.keystore.get(iccid)
        if entry is None:
            raise LifecycleRefused(f"no PIN is stored for the inserted SIM {iccid}; store it: `mtcctl pin set {iccid}`")
        if entry.rejected:
            raise LifecycleRefused(f"the stored PIN of {iccid} was rejected; store the right one first: "
                                   f"`mtcctl pin set {iccid}`")
        waits = change_waits(entry)
        if waits is not None:
            raise _change_waits(waits)
        left = self._guard(iccid)
        new = Pin.generate(length or self.policy.pin_length)
        # Sealed and fsynced before the card hears of it (guarantee 5).
        try:
            self.keystore.stage_pending(iccid, new, ROTATION)
        except PinNotStored:
            raise _forgotten_before_sent(iccid) from None
        except ChangeNotSettled:
            # An over-the-air PIN staged since the look above (another
            # process, outside the keystore's lock): nothing was sent.
            now = self.keystore.get(iccid)
            raise _change_waits((change_waits(now) if now is not None else None)
                                or f"a pending PIN of {iccid} is not settled yet") from None
        self.journal.append("pin-rotation-started", iccid=str(iccid), reason=reason)
        # AT+CPWD carries the current PIN: a wrong one costs an attempt, so
        # it is marked like a presentation and settled the same way.
        try:
            outcome = self._spend(iccid, left, lambda: self.uicc.change_pin(entry.pin, new, iccid), change=True,
                                  presenting=entry.pin)
        except PresentationRefused:
            # Nothing went out: the new PIN never reached the card.
            self.keystore.discard_pending(iccid, new)
            self.journal.append("pin-rotation-failed", iccid=str(iccid), reason=reason, why="SIM state changed")
            raise LifecycleRefused(f"SIM {iccid} changed state while it was read; its PIN was not changed: "
                                   "run the command again") from None
        except _PinReplaced:
            self.keystore.discard_pending(iccid, new)
            self.journal.append("pin-rotation-failed", iccid=str(iccid), reason=reason, why="PIN stored meanwhile")
            raise LifecycleRefused(f"the PIN of {iccid} was stored again while the change began; nothing was sent "
                                   "to the card: run the command again") from None
        except PinNotStored:
            # Only begin_attempt, before the send, can find it gone.
            self.journal.append("pin-rotation-failed", iccid=str(iccid), reason=reason, why="PIN forgotten")
            raise _forgotten_before_sent(iccid) from None
        return self._settle_change(iccid, outcome, reason, entry.pin, new)

    def _spend(self, iccid: Iccid, attempts_before: int | None, send, change: bool = False,
               presenting: Pin | None = None) -> PinOutcome:
        """Send a command that carries the current PIN to the card: the
        attempt marker is written before, and settled after by the answer,
        or by the counter when the answer was lost or said nothing (a plain
        ERROR).  Unsettled, the marker blocks automatic attempts on a modem
        without counters until a person acts.  A counter that fell also
        overrules an OK: some modems answer OK whatever the card said."""
        before = self.keystore.get(iccid)
        if not self.keystore.begin_attempt(iccid, attempts_before=attempts_before, which=CURRENT,
                                           presenting=presenting, change=change):
            # A person stored another PIN since `presenting` was looked up:
            # the marker would belong to a PIN this command does not carry.
            raise _PinReplaced()
        try:
            outcome = send()
        except PresentationRefused:
            # A URC changed what the UICC layer knew: nothing was sent.
            self.keystore.cancel_attempt(iccid, CURRENT, before)
            raise
        if outcome is not PinOutcome.REJECTED and attempts_before is not None:
            attempts = self.uicc.attempts()
            after = attempts.pin1 if attempts is not None else None
            if after is not None and after < attempts_before:
                # Only if the counter is this card's: one swapped in while
                # the command was out says nothing about it, and the change
                # is then settled at this card's next pairing (both PINs
                # and the marker stay).
                outcome = PinOutcome.REJECTED if self._still_the_card(iccid) else PinOutcome.UNKNOWN
        return outcome

    def _still_the_card(self, iccid: Iccid) -> bool:
        try:
            return self.uicc.iccid() == iccid
        except MtcdError:
            return False

    def _settle_change(self, iccid: Iccid, outcome: PinOutcome, reason: str, old: Pin, new: Pin) -> ChangeResult:
        # Settled on the PINs this change sent: `mtcctl pin set` and `pin
        # stage` need no modem and may have replaced them while AT+CPWD was out.
        if outcome is PinOutcome.ACCEPTED:
            # An OK with the counter unchanged is also what a modem that never
            # passed the change on says: the PIN the card was last seen to
            # accept stays as the fallback until it accepts the new one.
            if self.keystore.promote_unproven(iccid, self.imei.value, new) is None:
                if self.keystore.get(iccid) is None:
                    # A person forgot the PIN while the card was taking the
                    # new one: theirs wins, nothing is stored again.
                    self.journal.append("pin-rotation-interrupted", iccid=str(iccid), reason=reason)
                    log.warning("the PIN of %s was forgotten while its change was under way", iccid)
                    return ChangeResult("interrupted", f"the PIN of {iccid} was forgotten while the SIM took a "
                                                       f"new one; {_FORGOTTEN_MID_CHANGE}")
                # A person's store removed or replaced the pending PIN
                # while the card was taking it: settled like a lost answer.
                self._keep_new_pin(iccid, new)
                self.journal.append("pin-rotation-interrupted", iccid=str(iccid), reason=reason)
                return ChangeResult("interrupted", f"the SIM {iccid} took the new PIN while its PIN was stored "
                                                   "again; the next pairing settles which one it holds")
            self.journal.append("pin-rotated", iccid=str(iccid), reason=reason)
            log.info("PIN of %s rotated (%s)", iccid, reason)
            return ChangeResult("done", f"the PIN of {iccid} was changed")
        if outcome is PinOutcome.REJECTED:
            # The card does not hold the PIN we gave as the old one.
            self.keystore.discard_pending(iccid, new)
            try:
                self.keystore.record_rejected(iccid, CURRENT, presented=old)
            except PinNotStored:  # a person forgot it meanwhile
                raise _forgotten_rejected(iccid) from None
            self.journal.append("pin-rotation-failed", iccid=str(iccid), reason=reason, why="old PIN rejected")
            raise LifecycleRefused(f"the SIM {iccid} rejected its stored PIN; the change was not made; "
                                   f"store the right one: `mtcctl pin set {iccid}`")
        # Lost answer: both PINs and the attempt marker stay; the next
        # pairing settles which one the card has.
        self._keep_new_pin(iccid, new)
        self.journal.append("pin-rotation-interrupted", iccid=str(iccid), reason=reason)
        if self.keystore.get(iccid) is None:
            # Forgotten by a person meanwhile: no pairing has anything to settle.
            log.warning("the PIN of %s was forgotten while its change was under way", iccid)
            return ChangeResult("interrupted", f"the card's answer was lost and the PIN of {iccid} was forgotten "
                                               f"meanwhile; {_FORGOTTEN_MID_CHANGE}")
        log.warning("the SIM's answer to the PIN change was lost; the next pairing settles it")
        return ChangeResult("interrupted", "the card's answer was lost; the next pairing settles it")

    def _keep_new_pin(self, iccid: Iccid, new: Pin) -> None:
        """The card may hold `new` (or does) although a person's store
        removed it from the entry: keep it as the pending PIN, the other
        candidate the next pairing tries (guarantee 5).  A PIN a person
        staged meanwhile is never replaced for it."""
        entry = self.keystore.get(iccid)
        if entry is None or entry.pending_pin == new:
            return
        if entry.pending_pin is None:
            try:
                self.keystore.stage_pending(iccid, new, ROTATION)
                return
            except MtcdError:
                pass  # staged by a person since this look: theirs stays
        log.warning("the SIM %s may hold the rotation's new PIN, but a PIN staged meanwhile is kept instead", iccid)

    # -- adoption -------------------------------------------------------------
    def adopt(self, transport_pin: Pin, pair) -> ChangeResult:
        """Take a SIM into this gateway with the operator's transport PIN:
        verify it, enable the PIN if needed, and change it to a fresh one.
        `pair` runs the pairing gate (mtcd.gate.pair with this session)."""
        check_change_allowed(self.policy)
        lock = self.uicc.lock()
        iccid = self.uicc.iccid()
        if iccid is None:
            raise LifecycleRefused("the SIM's ICCID cannot be read; reseat the SIM, then `mtcctl pair` again")
        existing = self.keystore.get(iccid)
        if existing is not None and existing.adoption_unproven:
            # Not "forget it first": if the change did reach the card, the
            # transport PIN is refused and the PIN the card holds is gone.
            raise LifecycleRefused(
                f"{iccid} is already paired with this gateway; its change from the transport PIN is not proven "
                "yet (only the modem's OK): it is settled when the SIM next asks for its PIN (power-cycle the "
                "modem, then `mtcctl repair`)"
            )
        if existing is not None and not existing.transport:
            # Storing the transport PIN over it would throw away the PIN this
            # gateway set on the card, which nobody else knows.
            raise LifecycleRefused(
                f"{iccid} is already paired with this gateway; to adopt it again, "
                f"forget its PIN first (`mtcctl pin forget {iccid}`) — only if the SIM holds the transport PIN again"
            )
        if existing is not None and existing.pending_pin is not None:
            # An earlier adoption's change may have reached the card: storing
            # the transport PIN again would drop the PIN the card may hold.
            raise LifecycleRefused(
                f"the PIN change of an earlier adoption of {iccid} is not settled yet; "
                "it is settled when the SIM next asks for its PIN (power-cycle the modem, then `mtcctl repair`)"
            )
        change_started = False
        try:
            self._take_transport_pin(lock, iccid, transport_pin, pair)
            change_started = True  # from here on the card's PIN may change
            result = self.rotate(ADOPTED)
        except MtcdError:
            # A failed adoption leaves no entry behind, unless a change of the
            # card's PIN started: then the entry may hold the card's PIN.
            entry = self.keystore.get(iccid)
            if existing is None and entry is not None and not change_started:
                self.keystore.forget(iccid)
                self.journal.append("pin-forgotten", iccid=str(iccid), why="adoption failed")
            raise
        self.journal.append("sim-adopted", iccid=str(iccid), imei=self.imei.value, outcome=result.outcome)
        return result

    def _take_transport_pin(self, lock: SimLock, iccid: Iccid, transport_pin: Pin, pair) -> None:
        """Store the transport PIN and get the card unlocked with its PIN enabled."""
        if lock is SimLock.SIM_PIN:
            self.keystore.set_pin(iccid, transport_pin, transport=True)
            self.journal.append("pin-set", iccid=str(iccid), replaced=False, transport=True)
            outcome = pair()
            if not outcome.paired:
                raise LifecycleRefused(self._not_unlocked(iccid, outcome))
        elif lock is SimLock.READY:
            enabled = self.uicc.pin_enabled()
            if enabled is None:
                raise LifecycleRefused(f"cannot tell whether the PIN of SIM {iccid} is enabled; try `mtcctl pair` again")
            self.keystore.set_pin(iccid, transport_pin, transport=True)
            self.journal.append("pin-set", iccid=str(iccid), replaced=False, transport=True)
            if not enabled:
                self._enable(iccid, transport_pin)
        elif lock is SimLock.SIM_PUK:
            raise LifecycleRefused(f"the SIM {iccid} is PUK-blocked; unblock it first: `mtcctl sim unblock`")
        else:
            raise LifecycleRefused(f"the SIM {iccid} reports {lock.value}; it cannot be adopted "
                                   "(`mtcctl status` shows the last decision)")

    def _not_unlocked(self, iccid: Iccid, outcome) -> str:
        """Why an adoption's transport PIN did not unlock the SIM, and what
        works next: the failed adoption leaves no entry behind, so below the
        guard the way out is to store the right transport PIN and present it
        on explicit request."""
        from .policy import Reason, try_command

        why = f"the SIM {iccid} was not unlocked: {outcome.reason.value}"
        left = outcome.pin_retries
        if outcome.reason is Reason.PIN_REJECTED:
            count = "an unknown number of PIN attempts" if left is None else \
                f"{left} PIN attempt{'s' if left != 1 else ''}"
            if left is not None and left >= self.policy.min_retries:
                return (f"{why}: it rejected the transport PIN ({count} left); "
                        "check the PIN and run `mtcctl pair` again")
            return (f"{why}: it rejected the transport PIN ({count} left, guard "
                    f"{self.policy.min_retries}); with the right transport PIN: `mtcctl pin set {iccid} --transport`, "
                    f"then `{try_command(left, self.policy.min_retries)}`")
        if outcome.reason is Reason.RETRY_GUARD:
            left = self.uicc.attempts()
            left = left.pin1 if left is not None else None
            return (f"{why}: too few PIN attempts left to try a transport PIN (guard {self.policy.min_retries}); "
                    f"with the right transport PIN: `mtcctl pin set {iccid} --transport`, "
                    f"then `{try_command(left, self.policy.min_retries)}`")
        return f"{why}: {outcome.decision.detail}"

    def _enable(self, iccid: Iccid, pin: Pin) -> None:
        attempts = self._guard(iccid)
        # A wrong PIN here costs an attempt: mark it like a presentation.
        try:
            outcome = self._spend(iccid, attempts, lambda: self.uicc.enable_pin(pin, iccid))
        except PresentationRefused:
            raise LifecycleRefused(f"SIM {iccid} changed state while it was read; nothing was sent: "
                                   "run `mtcctl pair` again") from None
        except PinNotStored:  # a person forgot it before the send (begin_attempt)
            raise LifecycleRefused(f"the transport PIN of {iccid} was forgotten while the adoption began; "
                                   "nothing was sent: run `mtcctl pair` again") from None
        try:
            if outcome is PinOutcome.ACCEPTED:
                self.keystore.record_accepted(iccid, self.imei.value)
            elif outcome is PinOutcome.REJECTED:
                self.keystore.record_rejected(iccid, CURRENT)
        except PinNotStored:
            # Forgotten while AT+CLCK was out: theirs wins, no change follows.
            enabled = "its PIN is enabled now; " if outcome is PinOutcome.ACCEPTED else ""
            raise LifecycleRefused(f"the transport PIN of {iccid} was forgotten while the adoption enabled it; "
                                   f"{enabled}nothing is stored for it: run `mtcctl pair` again") from None
        if outcome is PinOutcome.ACCEPTED:
            self.journal.append("pin-enabled", iccid=str(iccid))
        elif outcome is PinOutcome.REJECTED:
            raise LifecycleRefused(f"the SIM {iccid} rejected the transport PIN; check it and run `mtcctl pair` again")
        else:
            raise ChangeLost("the SIM's answer to enabling its PIN was lost; run the adoption again")

    # -- unblocking, only ever for a person -----------------------------------
    def unblock(self, puk: Puk, new_pin: Pin, allow_last_attempt: bool = False,
                named: Iccid | None = None) -> ChangeResult:
        """`named`: the SIM the person means; nothing is sent to another."""
        lock = self.uicc.lock()
        if named is not None:
            here = self.uicc.iccid() if lock in (SimLock.SIM_PIN, SimLock.SIM_PUK, SimLock.READY) else None
            if here != named:
                what = f"SIM {here}" if here is not None else f"a SIM that reports {lock.value}"
                raise LifecycleRefused(f"the slot holds {what}, not {named}; nothing was sent")
        if lock is not SimLock.SIM_PUK:
            iccid = self.uicc.iccid() if lock in (SimLock.SIM_PIN, SimLock.READY) else None
            what = f"the SIM {iccid}" if iccid else "the SIM"
            nxt = ""
            if lock is SimLock.SIM_PIN and iccid is not None:
                entry = self.keystore.get(iccid)
                attempt = f"`{_try_hint(self.uicc, self.policy.min_retries)}`"
                nxt = (f"; it asks for its PIN: {attempt}" if entry is not None and not entry.rejected
                       else f"; it asks for its PIN: store the right one with `mtcctl pin set {iccid}`, then {attempt}")
            elif lock is SimLock.READY:
                nxt = "; `mtcctl repair` takes a pairing decision"
            raise LifecycleRefused(f"{what} is not blocked (it reports {lock.value}){nxt}")
        iccid = self.uicc.iccid()
        if iccid is None:
            raise LifecycleRefused("the SIM's ICCID cannot be read; reseat the SIM, then `mtcctl sim unblock` again")
        left = self.uicc.puk_attempts()
        if (left is None or left < 2) and not allow_last_attempt:
            count = "the PUK attempts left cannot be read" if left is None else f"{left} PUK attempt left"
            raise LifecycleRefused(
                f"{count} on SIM {iccid}: a wrong PUK could kill the card for good; if you are sure of the PUK: "
                "`mtcctl sim unblock --allow-last-attempt`"
            )
        existing = self.keystore.get(iccid)
        # The card may take the new PIN even if its answer is lost: keep it first.
        if existing is not None:
            try:
                self.keystore.stage_pending(iccid, new_pin, STAGED)
            except PinNotStored:  # a person forgot it since the look above
                raise LifecycleRefused(f"the PIN of {iccid} was forgotten while the unblock began; nothing was "
                                       "sent: run `mtcctl sim unblock` again") from None
        else:
            self.keystore.set_pin(iccid, new_pin)
        try:
            outcome = self.uicc.unblock(puk, new_pin, iccid)
        except PresentationRefused as exc:
            # Nothing was sent: the new PIN kept for the card goes again.
            if existing is not None:
                self.keystore.discard_pending(iccid)
            else:
                self.keystore.forget(iccid)
            raise LifecycleRefused(f"nothing was sent to SIM {iccid}: {exc}; run the command again") from None
        # A person's forget while the PUK was out wins: nothing is stored again.
        forgotten = self.keystore.get(iccid) is None
        if outcome is PinOutcome.ACCEPTED:
            stored = not forgotten
            if stored and existing is not None:
                try:
                    self.keystore.promote_pending(iccid, self.imei.value)
                except PinNotStored:  # forgotten since the look above
                    stored = False
            self.journal.append("sim-unblocked", iccid=str(iccid))
            if not stored:
                return ChangeResult("done", f"{iccid} unblocked; its PIN was forgotten meanwhile, so the new PIN "
                                            f"is not stored: `mtcctl pin set {iccid}`")
            return ChangeResult("done", f"{iccid} unblocked; its new PIN is stored")
        if outcome is PinOutcome.REJECTED:
            if existing is not None:
                self.keystore.discard_pending(iccid)
            else:
                self.keystore.forget(iccid)
            left = self.uicc.puk_attempts()
            self.journal.append("sim-unblock-failed", iccid=str(iccid), puk_retries=left)
            raise LifecycleRefused(f"SIM {iccid} rejected the PUK ({left if left is not None else 'unknown'} PUK "
                                   "attempts left); with the right PUK: `mtcctl sim unblock`")
        self.journal.append("sim-unblock-interrupted", iccid=str(iccid))
        if forgotten:
            return ChangeResult("interrupted", f"the card's answer was lost and the PIN of {iccid} was forgotten "
                                               "meanwhile; nothing is stored for it now")
        return ChangeResult("interrupted", "the card's answer was lost; the new PIN is kept as pending")

    # -- helpers ----------------------------------------------------------------
    def _unlocked_card(self) -> Iccid:
        lock = self.uicc.lock()
        if lock is not SimLock.READY:
            raise LifecycleRefused(f"the SIM must be unlocked for a PIN change (it reports {lock.value}); "
                                   "`mtcctl repair` pairs it first")
        iccid = self.uicc.iccid()
        if iccid is None:
            raise LifecycleRefused("the SIM's ICCID cannot be read; reseat the SIM, then `mtcctl repair`")
        return iccid

    def _guard(self, iccid: Iccid) -> int | None:
        attempts = self.uicc.attempts()
        left = attempts.pin1 if attempts is not None else None
        if left is not None and left < self.policy.min_retries:
            raise LifecycleRefused(f"{left} PIN attempts left on {iccid}, below the guard of {self.policy.min_retries}; "
                                   "nothing changed (power-cycle the modem, then `mtcctl repair`)")
        return left


def _change_waits(waits: str) -> LifecycleRefused:
    return LifecycleRefused(f"{waits}; the PIN was not changed: it is settled when the SIM next asks "
                            "for its PIN (power-cycle the modem, then `mtcctl repair`)")


# The random PIN the change sent was in the entry alone: a person's forget
# leaves the card holding, maybe, a PIN nobody has.
_FORGOTTEN_MID_CHANGE = ("nothing is stored for it now, and the SIM may hold the change's new PIN, which nobody has: "
                         "if it asks for its PIN, only its PUK opens it (`mtcctl sim unblock`)")


def _forgotten_before_sent(iccid: Iccid) -> LifecycleRefused:
    return LifecycleRefused(f"the PIN of {iccid} was forgotten while the change began; nothing was sent "
                            "to the card and nothing is stored for it")


def _forgotten_rejected(iccid: Iccid) -> LifecycleRefused:
    return LifecycleRefused(f"the SIM {iccid} rejected its old PIN, which a person forgot meanwhile; "
                            "the change was not made and nothing is stored for it")


class _PinReplaced(Exception):
    """begin_attempt found another PIN stored than the one to be sent."""


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def _try_hint(uicc: Uicc, min_retries: int) -> str:
    from .policy import try_command

    attempts = uicc.attempts()
    return try_command(attempts.pin1 if attempts is not None else None, min_retries)
