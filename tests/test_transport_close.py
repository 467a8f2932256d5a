"""Closing the port does not sit out the reader thread's read timeout: every
`mtcd once` and `mtcctl` that opened the modem used to spend 0.2 s in close."""

from __future__ import annotations

import time

from mtcd.at import commands
from mtcd.transport import SerialTransport
from simfixtures import sim_modem


def test_close_wakes_the_reader_at_once():
    with sim_modem() as (modem, port):
        took = []
        for _ in range(5):
            t = SerialTransport(port, timeout=2).open()
            assert t.execute(commands.manufacturer()).result.ok
            reader = t._thread
            started = time.monotonic()
            t.close()
            took.append(time.monotonic() - started)
            assert not reader.is_alive() and not t.alive
        # The reader's read waits up to 0.2 s; the quickest of five closes
        # shows whether close waited for it (a loaded machine slows some).
        assert min(took) < 0.1, took


def test_the_port_opens_again_after_a_close():
    with sim_modem() as (modem, port):
        t = SerialTransport(port, timeout=2)
        for _ in range(3):
            t.open()
            assert t.execute(commands.manufacturer()).lines == ("mtcd simulator",)
            t.close()
