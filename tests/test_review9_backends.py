"""Review 9: no PIN change begins while the last one is unproven, through
each backend that can change a PIN (ModemManager's Sim.ChangePin, CHANGE
REFERENCE DATA over AT+CSIM and over PC/SC), not only AT+CPWD.

The plainest mixed pattern: one change the card made, then a second one
asked for before the card was asked for its PIN again (the modem would
have dropped it).  The second is refused before anything reaches the
card; the next boot pairs with the PIN the card holds, and the change
asked for then goes through."""

from __future__ import annotations

import pytest

import mmstack
from mmstack import mm_rig, mm_shared  # noqa: F401  (the module's shared ModemManager)
from simfixtures import TEST_PIN, make_card
from test_card_backends import backend, bench  # noqa: F401  (fixtures)
from test_modemmanager_pins import cpwd, pin_bearing, power_cycle


def _refused_unproven(run, *secrets) -> None:
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "not proven yet" in out and "Traceback" not in out, out
    for secret in secrets:
        assert secret not in out


@pytest.mark.skipif(mmstack.missing() is not None, reason=mmstack.missing() or "")
def test_modemmanager_a_second_change_waits_for_the_proof(mm_rig):
    card = make_card()
    r = mm_rig(card)
    r.configure()
    r.gateway.store_pin(card.iccid.value)
    first = r.gateway.mtcctl("pin", "rotate", "--json", timeout=180)
    assert first.returncode == 0 and first.last_json["outcome"] == "done", first.stdout + first.stderr
    entry = r.gateway.keystore().get(card.iccid)
    made = entry.pin.reveal()
    assert card.pin == made and entry.fallback_pin.reveal() == TEST_PIN  # made, but only the OK says so
    r.modem.fail_after("AT+CPWD=", "unsent")  # the modem would drop the next one
    bearing = len(pin_bearing(r.modem.commands))
    second = r.gateway.mtcctl("pin", "rotate", "--json", timeout=180)
    _refused_unproven(second, TEST_PIN, made)
    assert len(pin_bearing(r.modem.commands)) == bearing and len(cpwd(r.modem.commands)) == 1
    assert card.pin == made and card.pin_attempts == 3
    power_cycle(r)
    run = r.gateway.mtcd("once", "--json", timeout=180)
    assert run.returncode == 0 and run.last_json["state"] == "paired", run.stdout + run.stderr
    entry = r.gateway.keystore().get(card.iccid)
    assert entry.pin.reveal() == card.pin == made and entry.fallback_pin is None
    assert card.pin_attempts == 3 and len(pin_bearing(r.modem.commands)) == bearing + 1


def test_apdu_backends_a_second_change_waits_for_the_proof(bench, backend):
    card = make_card()
    with bench(card) as b:
        b.gateway.store_pin(str(card.iccid))
        assert b.gateway.mtcd("once", "--json").last_json["state"] == "paired"
        first = b.gateway.mtcctl("pin", "rotate")
        assert first.returncode == 0, first.stdout + first.stderr
        entry = b.gateway.keystore().get(card.iccid)
        made = entry.pin.reveal()
        assert b.state()["pin"] == made and entry.fallback_pin.reveal() == TEST_PIN
        if backend == "csim":
            b.modem.fail_after('AT+CSIM=42,"0024', "unsent")  # the modem would drop the next one
        sent = b.pin_commands()
        assert sent == ["20", "24"], sent
        for args in (("pin", "rotate"), ("pin", "rotate", "--json"), ("compromise",)):
            _refused_unproven(b.gateway.mtcctl(*args), TEST_PIN, made)
        assert b.pin_commands() == sent and b.state()["pin"] == made and b.state()["pin_attempts"] == 3
        b.power_cycle()
        run = b.gateway.mtcd("once", "--json")
        assert run.returncode == 0 and run.last_json["state"] == "paired", run.stdout + run.stderr
        # The proof, then the compromised PIN changed right after it, from
        # the PIN the card holds (over AT+CSIM the modem drops that one).
        entry = b.gateway.keystore().get(card.iccid)
        assert b.pin_commands() == sent + ["20", "24"], b.pin_commands()
        assert entry.fallback_pin.reveal() == made and entry.pin.reveal() != made and not entry.compromised
        assert b.state()["pin"] == (made if backend == "csim" else entry.pin.reveal())
        b.power_cycle()
        again = b.gateway.mtcd("once", "--json")
        assert again.returncode == 0 and again.last_json["state"] == "paired", again.stdout + again.stderr
        assert b.gateway.keystore().get(card.iccid).pin.reveal() == b.state()["pin"]
        assert b.state()["pin_attempts"] == 3
        b.no_secret_anywhere(run, again, secrets=(TEST_PIN, made, entry.pin.reveal()))
