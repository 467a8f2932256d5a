"""Faults the soak (tests/soak.py) found, each replayed deterministically
against the real `mtcd run` and the simulator."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys

from simfixtures import make_card, sim_modem, wait_until

GATE_CLOSES_WITHIN = 5.0


@contextlib.contextmanager
def service(gateway):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "run"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gateway.env,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def swap_at(modem, prefix: str, card) -> None:
    """The SIM is swapped (no URC) the moment the modem gets `prefix`, before
    it acts on it: a person pulling the card mid-pairing."""
    handle, done = modem.handle, []

    def handle_after_swap(line: str) -> list[str]:
        if not done and line.strip().upper().startswith(prefix):
            done.append(line)
            with modem._lock:
                modem.card = card
        return handle(line)

    modem.handle = handle_after_swap


def test_sim_swapped_during_link_up_closes_the_gate(gateway):
    """Soak seed 7, service cycle 17: a swap between the unlock and the link
    coming up.  The service took the slot as it read it after pairing for the
    paired SIM's, so it never noticed the swap: with a PIN-less foreign SIM
    the link stayed up on it for good (with a locked one, its link was
    retried, AT+CFUN=1 and AT+CGACT=1 every check)."""
    home = make_card()
    foreign = make_card(serial_number=2, pin_enabled=False)
    with sim_modem(home) as (modem, port):
        gateway.configure(port, service="check_interval = 0.5")
        gateway.store_pin(str(home.iccid))
        swap_at(modem, "AT+CFUN=1", foreign)
        with service(gateway):
            # The link came up with the foreign card in the slot; the card
            # record's ICCID read right after it may close the gate sooner
            # than a poll sees the radio on (tests/test_review3_card_record_swap.py).
            wait_until(lambda: modem.card is foreign and any("+CGACT=1" in c for c in modem.commands), 20,
                       "the swap during link-up")
            # The next check sees a SIM the gate did not pair: gate closed.
            wait_until(lambda: modem.radio == 4 and not modem.pdp_active, GATE_CLOSES_WITHIN,
                       "radio off with a foreign SIM in the slot")
            status = gateway.mtcctl("status", "--json").last_json
    assert status["service"]["status"].startswith("refused"), status
