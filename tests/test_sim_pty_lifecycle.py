"""The simulated modem's pty server is opened, closed and stopped from
several threads at once: the test's own, the thread a modem reset starts to
bring the port back, and the control socket's.  A stop that lands while a
reset's reopen is half done must neither fail ("cannot join thread before it
is started", seen as a teardown flake in test_sim_reset_mid_change.py) nor
leave a server running after it."""

from __future__ import annotations

import threading

import serial

import mtcd.sim.pty as pty_module
from mtcd.sim import PtyModemServer, SimulatedModem
from simfixtures import make_card, wait_until


class _WatchedLock:
    """The server's lifecycle lock, telling when a second thread waits on it."""

    def __init__(self, lock):
        self._lock = lock
        self.contended = threading.Event()

    def acquire(self, blocking=True, timeout=-1):
        if self._lock.acquire(blocking=False):
            return True
        self.contended.set()
        return self._lock.acquire(blocking, timeout)

    def release(self):
        self._lock.release()

    __enter__ = acquire

    def __exit__(self, *exc):
        self.release()


def test_a_stop_while_the_port_reopens_waits_for_it_and_leaves_the_server_stopped(monkeypatch):
    modem = SimulatedModem(make_card())
    server = PtyModemServer(modem).start()
    server.close_port()  # a reset took the port away
    # (a server without a lifecycle lock gets one nobody else takes)
    watched = server._lifecycle = _WatchedLock(getattr(server, "_lifecycle", threading.RLock()))
    outcome: list[BaseException | None] = []

    def stopper():
        try:
            server.stop()
        except BaseException as exc:  # the race's symptom: kept for the assertion
            outcome.append(exc)
        else:
            outcome.append(None)

    real_thread = threading.Thread
    stopping = real_thread(target=stopper, daemon=True)

    class ServingThread(real_thread):
        def start(self):
            # The port exists, its serving thread not yet: the window in
            # which the reset's reopen used to be visible to a stop.
            if self.name.startswith("sim-modem") and not stopping.is_alive() and not outcome:
                assert server.is_open
                stopping.start()
                # Either the stop is held off (fixed) or it has already run
                # into the half-opened port (the race): wait for whichever.
                while not watched.contended.wait(0.01) and stopping.is_alive():
                    pass
            super().start()

    monkeypatch.setattr(pty_module.threading, "Thread", ServingThread)
    server.reopen()
    monkeypatch.undo()
    stopping.join(5)

    assert outcome == [None], f"stop failed against a half-opened port: {outcome!r}"
    assert not server.is_open
    assert not server._listening, "the stopped server still listens for the modem's URCs"


def test_a_stop_during_a_resets_downtime_ends_it_and_the_port_stays_away():
    modem = SimulatedModem(make_card())
    modem.reset_down = 60.0  # far longer than the test may wait
    server = PtyModemServer(modem).start()
    vanishers_before = {t for t in threading.enumerate() if "vanish_for" in t.name}
    modem.fail_after("AT", "reset")
    with serial.Serial(server.port, 115200, timeout=0.5) as link:
        link.write(b"AT\r")
        wait_until(lambda: not server.is_open, 5, "the port gone with the reset")
    vanishers = {t for t in threading.enumerate() if "vanish_for" in t.name} - vanishers_before
    assert len(vanishers) == 1, vanishers
    server.stop()
    (vanisher,) = vanishers
    vanisher.join(5)
    assert not vanisher.is_alive(), "the reset's downtime outlived the server's stop"
    assert not server.is_open and not server._listening


def test_a_stop_during_a_control_reset_ends_it_and_the_port_stays_away():
    """`mtcd-sim reset --down N` (the control socket): a stop during the
    downtime ends the wait at once, and no port comes back after it."""
    from mtcd.sim.control import ControlError, SimController

    server = PtyModemServer(SimulatedModem(make_card())).start()
    controller = SimController(server)
    outcome: list = []

    def reset():
        try:
            outcome.append(controller.reset(down=60.0))
        except ControlError as exc:
            outcome.append(exc)

    resetting = threading.Thread(target=reset, daemon=True)
    resetting.start()
    wait_until(lambda: not server.is_open, 5, "the reset to close the port")
    server.stop()
    resetting.join(5)
    assert not resetting.is_alive(), "the reset kept waiting out its downtime after the stop"
    assert len(outcome) == 1 and isinstance(outcome[0], ControlError), outcome
    assert not server.is_open, "the stopped modem's port came back"
