"""What the real `mtcd once` and `mtcd run` import before their first AT
command: the serial port and the AT stack, not the pairing stack.

A booting gateway should reach its modem (and switch the radio off) as soon
as it can; the keystore, its cryptography, the sealers, the journal and the
gate are needed only once the modem has answered.  The process runs with
`-X importtime` against the simulator on a pty and is stopped (SIGSTOP) as
the simulator receives its first command line, so the import lines written
until then are exactly the modules loaded before it.  Which modules, not
how long: the time is bench/first_command.py's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from mtcd.sim.modem import SimulatedModem
from mtcd.sim.pty import PtyModemServer
from simfixtures import make_card

# Loaded only once the session has sent its first command.
AFTER_THE_FIRST_COMMAND = ("mtcd.keystore", "mtcd.sealers", "mtcd.keyring_backend", "mtcd.journal", "mtcd.gate",
                           "mtcd.lifecycle", "mtcd.uicc", "mtcd.card", "mtcd.pairing_record", "mtcd.idlecheck",
                           "mtcd.statefile", "cryptography", "keyring", "systemd", "secrets", "hmac", "_hashlib",
                           # Only a data link backend that runs a program needs these (and shutil
                           # brings zlib, bz2 and lzma): 4 ms of imports a start did not need.
                           "subprocess", "shutil", "bz2", "lzma")
NEEDED = ("mtcd.transport", "mtcd.modem", "serial")


class StoppingServer(PtyModemServer):
    """Stops the client process as its first command line arrives."""

    pid: int | None = None

    def __init__(self, modem):
        super().__init__(modem)
        self.first = threading.Event()

    def _serve_line(self, raw: bytes) -> None:
        if not self.first.is_set() and raw.strip() and self.pid is not None:
            os.kill(self.pid, signal.SIGSTOP)
            self.first.set()
        super()._serve_line(raw)


def imported_before_the_first_command(gateway, command: str) -> set[str]:
    with StoppingServer(SimulatedModem(make_card())) as server:
        gateway.configure(server.port)
        err = open(gateway.root / "importtime", "w+")
        proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "mtcd.cli.daemon", "--config",
                                 str(gateway.config), command],
                                stdout=subprocess.DEVNULL, stderr=err, env=gateway.env)
        server.pid = proc.pid
        try:
            assert server.first.wait(30), f"mtcd {command} sent no command"
            text = (gateway.root / "importtime").read_text()
        finally:
            proc.kill()  # stopped or not, SIGKILL ends it
            proc.wait(timeout=30)
            err.close()
    return {line.rsplit("|", 1)[-1].strip() for line in text.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("command", ["once", "run"])
def test_the_pairing_stack_loads_after_the_first_command(gateway, command):
    loaded = imported_before_the_first_command(gateway, command)
    assert all(any(m == n or m.startswith(n + ".") for m in loaded) for n in NEEDED), sorted(loaded)
    early = sorted(m for m in loaded if any(m == n or m.startswith(n + ".") for n in AFTER_THE_FIRST_COMMAND))
    assert early == []
