"""review10: `mtcctl pin stage` while the last change is unproven, through
the running service (control socket `stage`, gatekeeper._stage): the same
one-line refusal, exit 1, no PIN, valid --json, nothing staged; after the
proof the same staging goes on."""

from __future__ import annotations

import json

from simfixtures import TEST_PIN, make_card, sim_modem
from test_service import service

OTA = "66554433"


def test_pin_stage_through_the_service_while_unproven_is_refused_in_one_line(gateway, notify_socket):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("STATUS", f"paired ICCID {card.iccid}, link up")
            modem.fail_after("AT+CPWD=", "unsent")
            assert gateway.mtcctl("pin", "rotate").returncode == 0
            entry = gateway.keystore().get(card.iccid)
            assert entry.fallback_pin is not None
            unproven = entry.pin.reveal()
            for args in ((), ("--json",)):
                run = gateway.mtcctl("pin", "stage", str(card.iccid), *args, stdin=OTA + "\n")
                out = run.stdout + run.stderr
                assert run.returncode == 1, out
                assert "Traceback" not in out and "not proven yet" in out, out
                assert all(p not in out for p in (TEST_PIN, unproven, OTA)), "a PIN in the output"
                if args:
                    assert json.loads(run.stdout)["error"] == "refused", run.stdout
                else:
                    assert len(run.stderr.strip().splitlines()) == 1 and run.stdout == "", out
            assert gateway.keystore().get(card.iccid).pending_pin is None
    events = [r.get("event") for r in gateway.history()]
    assert "pin-rotation-interrupted" in events or "pin-rotated" in events, events
    assert "pin-staged" not in events, events
