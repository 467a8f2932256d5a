"""The pairing policy, example by example and as properties over random SIM
situations (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from mtcd.identity import Iccid, Imei, luhn_check_digit
from mtcd.policy import (
    NOT_READ,
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
from mtcd.simlock import SimLock


def _with_luhn(payload: str) -> str:
    return payload + str(luhn_check_digit(payload))


ICCID = Iccid(_with_luhn("894900000000000001"))
IMEI = Imei(_with_luhn("35345678901234"))
OTHER_IMEI = Imei(_with_luhn("35345678901235"))
DEFAULT = PolicySettings()


def ready_to_present(**changes) -> Observations:
    base = Observations(
        imei=IMEI, lock=SimLock.SIM_PIN, iccid=ICCID, stored=StoredPin(), attempts=3
    )
    return base.with_(**changes)


# --- the walk to a decision, step by step ---------------------------------

def test_first_step_reads_the_sim_lock():
    assert decide(Observations(imei=IMEI), DEFAULT) is Step.READ_SIM_LOCK


def test_iccid_is_read_before_any_pin_is_chosen():
    obs = Observations(imei=IMEI, lock=SimLock.SIM_PIN)
    assert decide(obs, DEFAULT) is Step.READ_ICCID
    assert decide(obs.with_(iccid=ICCID), DEFAULT) is Step.LOOK_UP_PIN


def test_attempts_are_read_before_presenting():
    assert decide(ready_to_present(attempts=NOT_READ), DEFAULT) is Step.READ_ATTEMPTS
    assert decide(ready_to_present(), DEFAULT) is Step.PRESENT_PIN


def test_accepted_pin_then_ready_is_paired():
    obs = ready_to_present(presented=PinOutcome.ACCEPTED, lock=SimLock.READY)
    assert decide(obs, DEFAULT) == Paired()


# --- every refusal reason ---------------------------------------------------

@pytest.mark.parametrize(
    "obs, policy, reason",
    [
        (Observations(lock=SimLock.NOT_INSERTED), DEFAULT, Reason.NO_SIM),
        (Observations(lock=SimLock.NOT_READY), DEFAULT, Reason.NO_SIM),
        (Observations(lock=SimLock.SIM_PUK, iccid=ICCID), DEFAULT, Reason.SIM_BLOCKED),
        (Observations(lock=SimLock.SIM_PUK, iccid=None), DEFAULT, Reason.SIM_BLOCKED),
        (Observations(lock=SimLock.PH_SIM_PIN), DEFAULT, Reason.SIM_ERROR),
        (Observations(lock=SimLock.SIM_PIN2), DEFAULT, Reason.SIM_ERROR),
        (Observations(lock=SimLock.SIM_PUK2), DEFAULT, Reason.SIM_ERROR),
        (Observations(lock=SimLock.PH_NET_PIN), DEFAULT, Reason.SIM_ERROR),
        (Observations(lock=SimLock.FAILURE), DEFAULT, Reason.SIM_ERROR),
        (Observations(lock=SimLock.BUSY), DEFAULT, Reason.SIM_ERROR),
        (Observations(lock=SimLock.OTHER), DEFAULT, Reason.SIM_ERROR),
        (ready_to_present(iccid=None), DEFAULT, Reason.SIM_ERROR),
        (ready_to_present(stored=None), DEFAULT, Reason.UNKNOWN_SIM),
        (ready_to_present(stored=StoredPin(rejected=True)), DEFAULT, Reason.PIN_REJECTED),
        (ready_to_present(presented=PinOutcome.REJECTED), DEFAULT, Reason.PIN_REJECTED),
        (ready_to_present(attempts=1), DEFAULT, Reason.RETRY_GUARD),
        (ready_to_present(attempts=0), DEFAULT, Reason.RETRY_GUARD),
        (ready_to_present(attempts=2), PolicySettings(min_retries=3), Reason.RETRY_GUARD),
        (
            ready_to_present(lock=SimLock.READY, pin_enabled=False),
            DEFAULT,
            Reason.PIN_DISABLED,
        ),
        (
            ready_to_present(lock=SimLock.READY, pin_enabled=False, stored=None),
            PolicySettings(require_pin_enabled=False),
            Reason.UNKNOWN_SIM,
        ),
        (ready_to_present(lock=SimLock.READY, pin_enabled=None), DEFAULT, Reason.SIM_ERROR),
        (ready_to_present(lock=SimLock.READY, pin_enabled=True, stored=None), DEFAULT, Reason.UNKNOWN_SIM),
        (
            ready_to_present(stored=StoredPin(last_imei=OTHER_IMEI.value)),
            PolicySettings(on_imei_change="refuse"),
            Reason.IMEI_CHANGED,
        ),
        (ready_to_present(presented=PinOutcome.UNKNOWN), DEFAULT, Reason.SIM_ERROR),
    ],
)
def test_refusal_reasons(obs, policy, reason):
    decision = decide(obs, policy)
    assert isinstance(decision, Refused)
    assert decision.reason is reason
    assert decision.detail


def test_imei_change_is_only_reported_by_default():
    obs = ready_to_present(stored=StoredPin(last_imei=OTHER_IMEI.value))
    assert decide(obs, DEFAULT) is Step.PRESENT_PIN


def test_pin_disabled_sim_with_known_iccid_may_be_allowed_by_policy():
    obs = ready_to_present(lock=SimLock.READY, pin_enabled=False)
    assert decide(obs, PolicySettings(require_pin_enabled=False)) == Paired()


def test_unlocked_sim_with_good_stored_pin_is_paired_without_presenting():
    obs = ready_to_present(lock=SimLock.READY, pin_enabled=True, attempts=NOT_READ)
    assert decide(obs, DEFAULT) == Paired()


# --- unreported counters and lost attempts -----------------------------------

def test_unreported_attempts_allow_one_presentation():
    assert decide(ready_to_present(attempts=None), DEFAULT) is Step.PRESENT_PIN


def test_lost_attempt_without_counter_blocks_further_attempts():
    stored = StoredPin(attempt_started=True, attempts_before=None)
    d = decide(ready_to_present(attempts=None, stored=stored), DEFAULT)
    assert isinstance(d, Refused) and d.reason is Reason.RETRY_GUARD


def test_lost_change_without_a_count_before_tries_only_the_pin_it_was_setting():
    """A change's old PIN went out with no count read before it (a verified
    card tells none): the counter read now cannot say whether the card
    refused it, so only the never-presented pending PIN may be tried, and
    only while the guard allows."""
    lost = StoredPin(attempt_started=True, attempts_before=None, attempt_change=True, has_pending=True)
    assert decide(ready_to_present(attempts=4, stored=lost), DEFAULT) is Step.PRESENT_PENDING_PIN
    below = decide(ready_to_present(attempts=1, stored=lost), DEFAULT)
    assert isinstance(below, Refused) and below.reason is Reason.RETRY_GUARD
    unreported = decide(ready_to_present(attempts=None, stored=lost), DEFAULT)
    assert isinstance(unreported, Refused) and unreported.reason is Reason.RETRY_GUARD
    # A lost plain presentation (not a change), or no pending PIN: nothing to try.
    for stored in (StoredPin(attempt_started=True, attempts_before=None, has_pending=True),
                   StoredPin(attempt_started=True, attempts_before=None, attempt_change=True),
                   StoredPin(attempt_started=True, attempts_before=None, attempt_change=True, has_pending=True,
                             pending_rejected=True)):
        d = decide(ready_to_present(attempts=4, stored=stored), DEFAULT)
        assert isinstance(d, Refused) and d.reason in (Reason.RETRY_GUARD, Reason.PIN_REJECTED), stored
    # The pending PIN was tried and refused: the old one is never tried by itself.
    tried = decide(ready_to_present(attempts=3, stored=lost).with_(presented_pending=PinOutcome.REJECTED), DEFAULT)
    assert isinstance(tried, Refused)


def test_lost_attempt_that_the_counter_shows_rejected_is_latched():
    stored = StoredPin(attempt_started=True, attempts_before=3)
    assert decide(ready_to_present(attempts=2, stored=stored), DEFAULT) is Step.LATCH_LOST_ATTEMPT
    latched = StoredPin(rejected=True)
    d = decide(ready_to_present(attempts=2, stored=latched), DEFAULT)
    assert isinstance(d, Refused) and d.reason is Reason.PIN_REJECTED


# --- two candidates: current and pending ---------------------------------------

def test_pending_is_tried_after_current_is_rejected_while_the_guard_allows():
    stored = StoredPin(has_pending=True)
    assert decide(ready_to_present(stored=stored), DEFAULT) is Step.PRESENT_PIN
    after = ready_to_present(stored=StoredPin(rejected=True, has_pending=True), presented=PinOutcome.REJECTED, attempts=2)
    assert decide(after, DEFAULT) is Step.PRESENT_PENDING_PIN
    guarded = decide(after, PolicySettings(min_retries=3))
    assert isinstance(guarded, Refused) and guarded.reason is Reason.RETRY_GUARD


def test_rejected_current_and_a_pending_pin_next_boot():
    stored = StoredPin(rejected=True, has_pending=True)
    assert decide(ready_to_present(stored=stored), DEFAULT) is Step.PRESENT_PENDING_PIN
    both = StoredPin(rejected=True, has_pending=True, pending_rejected=True)
    d = decide(ready_to_present(stored=both), DEFAULT)
    assert isinstance(d, Refused) and d.reason is Reason.PIN_REJECTED


def test_without_a_counter_nothing_follows_a_rejection():
    after = ready_to_present(stored=StoredPin(rejected=True, has_pending=True), presented=PinOutcome.REJECTED, attempts=None)
    d = decide(after, DEFAULT)
    assert isinstance(d, Refused) and d.reason is Reason.RETRY_GUARD


def test_accepted_pending_pin_pairs():
    obs = ready_to_present(stored=StoredPin(rejected=True, has_pending=True), presented=PinOutcome.REJECTED,
                           presented_pending=PinOutcome.ACCEPTED, lock=SimLock.READY)
    assert decide(obs, DEFAULT) == Paired()


def test_lost_attempt_that_never_reached_the_card_may_be_retried():
    stored = StoredPin(attempt_started=True, attempts_before=3)
    assert decide(ready_to_present(attempts=3, stored=stored), DEFAULT) is Step.PRESENT_PIN


@pytest.mark.parametrize("stored", [
    StoredPin(rejected=True, has_pending=True, pending_rejected=True, has_fallback=True),
    StoredPin(unsettled=("current", "pending"), has_pending=True, has_fallback=True),
    StoredPin(rejected=True, unsettled=("pending",), has_pending=True, has_fallback=True),
])
def test_the_fallback_never_goes_third(stored):
    """Each candidate once, without a counter (or with one that lies): two
    refused left the card one attempt, and a third may be its last (a PUK)."""
    decision = decide(ready_to_present(attempts=None, stored=stored), DEFAULT)
    assert isinstance(decision, Refused) and decision.reason is Reason.RETRY_GUARD
    assert "mtcctl pin try" in decision.detail
    # With one spent it goes; a counter that says otherwise changes nothing.
    assert decide(ready_to_present(attempts=None, stored=replace(stored, has_pending=False,
                                                                           unsettled=tuple(u for u in stored.unsettled if u != "pending"))),
                  DEFAULT) is Step.PRESENT_FALLBACK_PIN
    assert decide(ready_to_present(attempts=3, stored=stored), DEFAULT).reason is Reason.RETRY_GUARD


# --- properties over random situations ---------------------------------------

maybe = lambda s: st.one_of(st.just(NOT_READ), st.none(), s)  # noqa: E731

stored_pins = st.builds(
    StoredPin,
    rejected=st.booleans(),
    attempt_started=st.booleans(),
    attempts_before=st.one_of(st.none(), st.integers(0, 3)),
    last_imei=st.one_of(st.none(), st.just(IMEI.value), st.just(OTHER_IMEI.value)),
    attempt_pin=st.sampled_from(["current", "pending", "fallback"]),
    has_pending=st.booleans(),
    pending_rejected=st.booleans(),
    has_fallback=st.booleans(),
    unsettled=st.sets(st.sampled_from(["current", "pending", "fallback"])).map(lambda u: tuple(sorted(u))),
)
observations = st.builds(
    Observations,
    imei=st.one_of(st.none(), st.just(IMEI)),
    lock=st.one_of(st.just(NOT_READ), st.sampled_from(SimLock)),
    iccid=maybe(st.just(ICCID)),
    stored=maybe(stored_pins),
    pin_enabled=maybe(st.booleans()),
    attempts=maybe(st.integers(0, 10)),
    presented=st.one_of(st.none(), st.sampled_from(PinOutcome)),
    presented_pending=st.one_of(st.none(), st.sampled_from(PinOutcome)),
    presented_fallback=st.one_of(st.none(), st.sampled_from(PinOutcome)),
)
policies = st.builds(
    PolicySettings,
    min_retries=st.integers(1, 3),
    require_pin_enabled=st.booleans(),
    on_imei_change=st.sampled_from(["report", "refuse"]),
)


@given(observations, policies)
def test_pin_is_presented_only_when_every_rule_allows(obs, policy):
    step = decide(obs, policy)
    if step not in (Step.PRESENT_PIN, Step.PRESENT_PENDING_PIN, Step.PRESENT_FALLBACK_PIN):
        return
    assert obs.lock is SimLock.SIM_PIN  # exactly SIM PIN, nothing else
    assert isinstance(obs.iccid, Iccid)  # ICCID read first
    assert isinstance(obs.stored, StoredPin)  # a PIN stored for this ICCID
    stored = obs.stored
    current_out = stored.rejected or obs.presented is not None or "current" in stored.unsettled
    pending_out = not stored.has_pending or stored.pending_rejected or obs.presented_pending is not None \
        or "pending" in stored.unsettled
    if step is Step.PRESENT_PIN:
        assert not stored.rejected  # never a rejected PIN
        assert obs.presented is None  # at most once a run
        assert "current" not in stored.unsettled
    elif step is Step.PRESENT_PENDING_PIN:
        assert stored.has_pending and not stored.pending_rejected
        assert obs.presented_pending is None
        # current first: pending only once current is out of the running
        assert current_out or (stored.attempt_started and stored.attempts_before is None)
    else:
        assert stored.has_fallback and obs.presented_fallback is None and "fallback" not in stored.unsettled
        # the fallback last: only once current and pending are out of the running
        assert current_out and pending_out
    outcomes = (obs.presented, obs.presented_pending, obs.presented_fallback)
    assert PinOutcome.ACCEPTED not in outcomes
    assert PinOutcome.UNKNOWN not in outcomes
    assert obs.attempts is not NOT_READ  # counter asked first
    if obs.attempts is not None:
        assert obs.attempts >= policy.min_retries  # the guard
    else:
        assert not obs.stored.attempt_started  # unknown counter: one try per PIN
        assert outcomes == (None, None, None)
    if step is Step.PRESENT_FALLBACK_PIN:
        # Never a third after two spent, whatever a counter says: that may be the card's last.
        assert not ((stored.rejected or "current" in stored.unsettled)
                    and ((stored.has_pending and stored.pending_rejected) or "pending" in stored.unsettled))
    if obs.stored.attempt_started:  # a lost attempt is settled by the counter first
        assert obs.stored.attempts_before is not None
        assert obs.attempts >= obs.stored.attempts_before
    if obs.stored.attempt_started:
        assert obs.stored.attempts_before is not None
        assert obs.attempts >= obs.stored.attempts_before


@given(observations, policies)
def test_paired_only_for_a_known_unlocked_sim(obs, policy):
    if decide(obs, policy) != Paired():
        return
    assert obs.lock is SimLock.READY
    assert isinstance(obs.iccid, Iccid)
    assert isinstance(obs.stored, StoredPin)
    if obs.presented is None and obs.presented_pending is None:
        assert obs.pin_enabled in (True, False)
        if obs.pin_enabled:
            assert not obs.stored.rejected or (obs.stored.has_pending and not obs.stored.pending_rejected)
        else:
            assert not policy.require_pin_enabled
    else:
        assert PinOutcome.ACCEPTED in (obs.presented, obs.presented_pending)
    if policy.on_imei_change == "refuse" and obs.imei is not None:
        assert obs.stored.last_imei in (None, obs.imei.value)


@given(observations, policies)
def test_blocked_or_foreign_locks_are_always_refused(obs, policy):
    decision = decide(obs, policy)
    if obs.lock is SimLock.SIM_PUK:
        # Only the ICCID is read first, for the report; never a presentation.
        if obs.iccid is NOT_READ:
            assert decision is Step.READ_ICCID
        else:
            assert decision == Refused(Reason.SIM_BLOCKED, decision.detail)
    elif obs.lock not in (NOT_READ, SimLock.SIM_PIN, SimLock.READY):
        assert isinstance(decision, Refused)


# A pure model of many boots of the gateway against one card, with power cuts
# at random moments, shows the gateway alone never blocks its SIM.

@dataclass
class ModelCard:
    pin: str
    left: int = 3
    max_tries: int = 3

    def verify(self, pin: str) -> bool:
        if self.left == 0:
            return False
        if pin == self.pin:
            self.left = self.max_tries
            return True
        self.left -= 1
        return False


@dataclass
class ModelStore:
    """The keystore entry as the gate keeps it (current, pending, latches,
    and the marker written before a PIN goes out)."""

    pin: str
    pending: str | None = None
    rejected: bool = False
    pending_rejected: bool = False
    attempt: str | None = None
    attempts_before: int | None = None
    fallback: str | None = None  # the PIN last seen accepted, while current is unproven

    def view(self) -> StoredPin:
        return StoredPin(
            rejected=self.rejected,
            attempt_started=self.attempt is not None,
            attempts_before=self.attempts_before,
            attempt_pin=self.attempt or "current",
            has_pending=self.pending is not None,
            pending_rejected=self.pending_rejected,
            has_fallback=self.fallback is not None,
        )

    def latch(self, which: str) -> None:
        if which == "pending":
            self.pending_rejected = True
        elif which == "fallback":
            self.fallback = None  # refused: dropped
        else:
            self.rejected = True
        self.attempt = None


def boot(card: ModelCard, store: ModelStore, policy: PolicySettings, counter_readable: bool, cut_at: str | None) -> object:
    """One run of the gate against the model card; a power cut may end it
    right before or right after the card sees a PIN."""
    obs = Observations(imei=IMEI)
    while True:
        d = decide(obs, policy)
        if d is Step.READ_SIM_LOCK:
            if PinOutcome.ACCEPTED in (obs.presented, obs.presented_pending, obs.presented_fallback):
                lock = SimLock.READY
            else:
                lock = SimLock.SIM_PUK if card.left == 0 else SimLock.SIM_PIN
            obs = obs.with_(lock=lock)
        elif d is Step.READ_ICCID:
            obs = obs.with_(iccid=ICCID)
        elif d is Step.LOOK_UP_PIN:
            obs = obs.with_(stored=store.view())
        elif d is Step.READ_ATTEMPTS:
            obs = obs.with_(attempts=card.left if counter_readable else None)
        elif d is Step.LATCH_LOST_ATTEMPT:
            store.latch(store.attempt)
            obs = obs.with_(stored=store.view())
        elif d in (Step.PRESENT_PIN, Step.PRESENT_PENDING_PIN, Step.PRESENT_FALLBACK_PIN):
            which = {Step.PRESENT_PIN: "current", Step.PRESENT_PENDING_PIN: "pending"}.get(d, "fallback")
            store.attempt, store.attempts_before = which, obs.attempts
            if cut_at == "before-send":
                return "power-cut"
            ok = card.verify({"current": store.pin, "pending": store.pending, "fallback": store.fallback}[which])
            if cut_at == "after-send":
                return "power-cut"
            field = {"current": "presented", "pending": "presented_pending", "fallback": "presented_fallback"}[which]
            if ok:
                if which == "pending":
                    store.pin, store.pending = store.pending, None
                    store.rejected = store.pending_rejected = False
                elif which == "fallback":
                    store.pin, store.rejected = store.fallback, False
                store.fallback = None  # proven either way
                store.attempt = None
                obs = obs.with_(**{field: PinOutcome.ACCEPTED}, lock=NOT_READ, stored=store.view())
            else:
                store.latch(which)
                obs = obs.with_(**{field: PinOutcome.REJECTED}, stored=store.view(),
                                attempts=card.left if counter_readable else None)
        else:
            return d


cuts_strategy = st.lists(st.sampled_from([None, "before-send", "after-send"]), min_size=1, max_size=8)


@hsettings(max_examples=300)
@given(
    correct=st.booleans(),
    counter_readable=st.booleans(),
    min_retries=st.integers(2, 3),
    start_left=st.integers(0, 3),
    cuts=cuts_strategy,
)
def test_many_boots_never_block_the_sim(correct, counter_readable, min_retries, start_left, cuts):
    card = ModelCard(pin="12345678", left=start_left)
    store = ModelStore(pin="12345678" if correct else "87654321")
    policy = PolicySettings(min_retries=min_retries)
    wrong_presentations = 0
    for cut in cuts + [None, None]:
        before = card.left
        boot(card, store, policy, counter_readable, cut)
        if card.left < before:
            wrong_presentations += 1
    # A wrong PIN is spent at most once per stored PIN (power cuts included).
    assert wrong_presentations <= 1
    if counter_readable:
        # With the counter known the guard holds: the gateway never spends
        # an attempt that would leave fewer than min_retries - 1.
        assert card.left >= min(start_left, min_retries - 1)
        if start_left > 0:
            assert card.left > 0, "the gateway blocked its own SIM"


@hsettings(max_examples=400)
@given(
    card_holds=st.sampled_from(["current", "pending", "neither"]),
    cuts=cuts_strategy,
)
def test_an_interrupted_pin_change_never_locks_the_gateway_out(card_holds, cuts):
    """Guarantee 5: the card holds the old PIN or the new one (a change cut
    short at any point), the keystore holds both; with the default guard the
    gateway always gets back in and never blocks the card."""
    pins = {"current": "11111111", "pending": "22222222", "neither": "33333333"}
    card = ModelCard(pin=pins[card_holds])
    store = ModelStore(pin=pins["current"], pending=pins["pending"])
    policy = PolicySettings(min_retries=2)
    outcomes = [boot(card, store, policy, True, cut) for cut in cuts + [None]]
    assert card.left > 0
    if card_holds == "neither":
        assert isinstance(outcomes[-1], Refused) and outcomes[-1].reason is Reason.PIN_REJECTED
        assert card.left >= 1
    else:
        assert outcomes[-1] == Paired(), outcomes
        assert store.pin == pins[card_holds]  # whichever the card accepted is current now
        assert card.left == 3


@hsettings(max_examples=400)
@given(
    card_holds=st.sampled_from(["current", "fallback", "neither"]),
    counter_readable=st.booleans(),
    cuts=cuts_strategy,
)
def test_a_change_the_card_never_made_never_locks_the_gateway_out(card_holds, counter_readable, cuts):
    """Guarantee 5 for a change only the modem's OK vouched for: the card
    holds the new (current) PIN or the one before it (the fallback); with
    the default guard the gateway gets back in, never spends a wrong PIN
    twice, and never blocks the card."""
    pins = {"current": "11111111", "fallback": "22222222", "neither": "33333333"}
    card = ModelCard(pin=pins[card_holds])
    store = ModelStore(pin=pins["current"], fallback=pins["fallback"])
    policy = PolicySettings(min_retries=2)
    outcomes = []
    for cut in cuts + [None, None]:
        before = card.left
        outcomes.append(boot(card, store, policy, counter_readable, cut))
        assert before - card.left <= 1 or counter_readable  # without a count: one try a run
    assert card.left > 0, "the gateway blocked its own SIM"
    if card_holds == "neither":
        assert isinstance(outcomes[-1], Refused)
    elif counter_readable:
        assert outcomes[-1] == Paired(), outcomes
        assert store.pin == pins[card_holds] and store.fallback is None and card.left == 3
