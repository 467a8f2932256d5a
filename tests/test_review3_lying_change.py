"""review3, left open: a modem that answers OK to AT+CPWD the card never
carried out (the counter does not move) makes the gateway drop the PIN the
card still holds (guarantee 5).

An OK to a change is overruled only by a counter that fell.  A card that
refused the change counts it, so "OK, counter unchanged" is either a change
the card made or a command the modem never passed on; the rotation takes it
for the first and promotes the new PIN, and the old one is gone from the
store.  The next pairing presents the new PIN, the card refuses it, and no
other candidate is left: the SIM needs its PUK.

Closed by the chained fallback: the PIN the card was last seen to accept is
kept, sealed, as a third candidate until the card has accepted the new one
(tests/test_chained_fallback.py has every step)."""

from __future__ import annotations

from mtcd.config import PolicyConfig
from mtcd.gate import pair
from mtcd.identity import Iccid, Imei
from mtcd.journal import PairingJournal
from mtcd.keystore import Keystore
from mtcd.lifecycle import Lifecycle, REQUESTED
from mtcd.policy import PinOutcome, PolicySettings
from mtcd.secret import Pin
from mtcd.simlock import SimLock

from simfixtures import StubCard, make_iccid, make_imei

ICCID = Iccid(make_iccid(11))
IMEI = Imei(make_imei(11))
CARDS_PIN = Pin("27182818")


class Card(StubCard):
    """Unlocked; the modem answers OK to AT+CPWD but the card never gets it.
    After `power_cycle()` it asks for its PIN."""

    def __init__(self):
        super().__init__(CARDS_PIN, ICCID, state=SimLock.READY)

    def power_cycle(self):
        self.state = SimLock.SIM_PIN

    def change_pin(self, old, new, for_iccid):
        return PinOutcome.ACCEPTED  # the modem's OK; the card never saw the command


def test_an_ok_the_card_never_acted_on_does_not_lose_its_pin(tmp_path):
    state = tmp_path / "state"
    Keystore.open(state).set_pin(ICCID, CARDS_PIN)
    card = Card()
    Lifecycle(card, Keystore.open(state), PairingJournal(state), PolicyConfig(), IMEI).rotate(REQUESTED)
    card.power_cycle()
    outcome = pair(card, Keystore.open(state), PolicySettings(), IMEI, None)
    assert outcome.paired, f"the gateway no longer has the SIM's PIN: {outcome.reason}"
    assert card.left >= 2
