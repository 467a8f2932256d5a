"""R4 (review of issue 7, guarantee 5): `Lifecycle.rotate` checks "no pending
PIN" outside the keystore transaction that stages its own pending PIN.  An
over-the-air `mtcctl pin stage` (no service running: it needs no modem) that
lands between that check and the rotation's stage_pending exits 0, and its
PIN is overwritten by the rotation's.  The back end then sends the OTA change
(only after exit 0, as the README says) and the card holds a PIN the gateway
no longer has."""

from __future__ import annotations

import subprocess
import sys
import time

from simfixtures import TEST_PIN, make_card, sim_modem, slow_after

OTA_PIN = "55667788"


def _ctl(gateway, *argv):
    return subprocess.Popen([sys.executable, "-m", "mtcd.cli.ctl", "--config", str(gateway.config), *argv],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=gateway.env, text=True)


def test_R4_a_stage_that_exited_0_survives_a_concurrent_rotation(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        assert card.verify(TEST_PIN) == 0x9000  # unlocked: the rotation pairs without presenting
        stager = _ctl(gateway, "pin", "stage", str(card.iccid))  # waits on stdin, imports done
        time.sleep(1.5)
        # The rotation's own ICCID read (the second one) precedes the guard's
        # counter read, which the latency from there on holds back for 2 s.
        slow_after(modem, "AT+CRSM=176,12258", 2.0, count=2)
        rotator = _ctl(gateway, "pin", "rotate")
        rotator.stdin.close()
        deadline = time.monotonic() + 60
        while len([c for c in modem.commands if c.upper().startswith("AT+CRSM=176,12258")]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        stager.stdin.write(OTA_PIN + "\n")  # the agent hands over the OTA PIN during the guard's read
        stager.stdin.close()
        assert stager.wait(30) == 0, stager.stderr.read()
        modem.latency = 0  # the stage landed in the window; the rest may be quick
        print("rotate:", rotator.wait(60), rotator.stderr.read().strip())
        # Exit 0: the back end now changes the card's PIN over the air.
        entry = gateway.keystore().get(card.iccid)
        held = {entry.pin.reveal()} | ({entry.pending_pin.reveal()} if entry.pending_pin else set())
        assert OTA_PIN in held, "the staged PIN that exited 0 is gone; after the OTA change nobody has the card's PIN"
