"""Real firmware's final results through the real `mtcd once`: a modem that
says "COMMAND NOT SUPPORT" instead of ERROR, and one that keeps answering
+CME ERROR in words although mtcd sent AT+CMEE=1."""

from __future__ import annotations

import time

import pytest

from mtcd.sim import PtyModemServer, SimulatedModem
from simfixtures import TEST_PIN, make_card


class NotSupportModem(SimulatedModem):
    """Answers every ERROR with a vendor's word for it (Huawei, ZTE)."""

    def __init__(self, *args, word: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.word = word

    def handle(self, line: str) -> list[str]:
        return [self.word if r == "ERROR" else r for r in super().handle(line)]


class WordyModem(SimulatedModem):
    """Accepts AT+CMEE=1 but keeps answering +CME ERROR in words."""

    def _cmee(self, form, args):
        reply = super()._cmee(form, args)
        self.cmee = 2
        return reply


@pytest.mark.parametrize("word", ["COMMAND NOT SUPPORT", "NOT SUPPORT"])
def test_once_pairs_quickly_when_unsupported_commands_say_not_support(gateway, word):
    card = make_card()
    # No AT+CPINR: the attempts come from the next source after the refusal.
    modem = NotSupportModem(card, has_cpinr=False, word=word)
    with PtyModemServer(modem) as server:
        gateway.configure(server.port, datalink='backend = "none"')
        gateway.store_pin(str(card.iccid))
        started = time.monotonic()
        run = gateway.mtcd("-vv", "once", "--json")
        took = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    assert run.last_json["state"] == "paired"
    assert 'AT+CPINR="SIM PIN"' in modem.commands  # it was asked, and refused
    assert "ERROR" in run.stderr and "no answer" not in run.stderr
    assert took < 5, "an unsupported command waited for its timeout"


def test_a_wrong_pin_answered_in_words_is_rejected_and_latched(gateway):
    card = make_card(pin=TEST_PIN)
    modem = WordyModem(card)
    with PtyModemServer(modem) as server:
        gateway.configure(server.port, datalink='backend = "none"')
        gateway.store_pin(str(card.iccid), "11223344")  # not the card's PIN
        first = gateway.mtcd("once", "--json")
        second = gateway.mtcd("once", "--json")
    assert modem.cmee == 2
    assert first.returncode == 1 and first.last_json["reason"] == "pin-rejected", first.stdout + first.stderr
    # Rejected, not "unknown": the wrong PIN is never presented again.
    assert second.returncode == 1 and second.last_json["reason"] == "pin-rejected"
    assert sum(c.startswith("AT+CPIN=") for c in modem.commands) == 1
    assert card.pin_attempts == 2
