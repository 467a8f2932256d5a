"""Review 9: `mtcctl compromise` through the running service while the
last PIN change is unproven."""

from __future__ import annotations

import json

from simfixtures import TEST_PIN, make_card, sim_modem, wait_until
from test_service import service


def test_compromise_through_the_service_while_unproven_says_the_pins_were_marked(gateway, notify_socket):
    """The service's answer, like mtcctl's own without a service, says that
    every stored PIN was marked compromised and the inserted SIM's is
    changed after its next unlock: "the PIN was not changed" alone reads as
    if nothing was done, and an agent would mark them again or give up."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("STATUS", f"paired ICCID {card.iccid}, link up")
            modem.fail_after("AT+CPWD=", "unsent")
            assert gateway.mtcctl("pin", "rotate").returncode == 0
            assert gateway.keystore().get(card.iccid).fallback_pin is not None
            for args in (("compromise",), ("compromise", "--json")):
                run = gateway.mtcctl(*args)
                out = run.stdout + run.stderr
                assert run.returncode == 1, out
                assert "Traceback" not in out and TEST_PIN not in out, out
                assert "not proven yet" in out and "marked compromised" in out, out
                if "--json" in args:
                    assert json.loads(run.stdout)["error"] == "refused", run.stdout
            assert gateway.keystore().get(card.iccid).compromised
            assert len([c for c in modem.commands if c.startswith("AT+CPWD")]) == 1
