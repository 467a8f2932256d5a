"""Idle while paired (issue 11): no thread of mtcd's wakes up for nothing.

An idle service sends one check every few seconds.  Between checks the AT
reader waits for the modem to say something (close() wakes it), and the
progress ticker sleeps until a wait starts; neither is woken by a timer,
and the ticker is one thread for the session, not one per command.  This
counts how often the kernel ran the threads (schedstat), not how long it
took: the CPU figure is bench/idle_cpu.py's."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from mtcd.at.commands import AtCommand
from mtcd.progress import Waits
from mtcd.transport import SerialTransport
from simfixtures import sim_modem

READER_THREAD = "mtcd-at-reader"


def runs(thread: threading.Thread) -> int:
    """How many times the kernel has run this thread so far."""
    return int(Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()[2])


def test_an_idle_reader_sleeps_until_the_modem_speaks():
    with sim_modem() as (modem, port), SerialTransport(port, timeout=5) as transport:
        assert transport.execute(AtCommand("AT")).result.ok
        [reader] = [t for t in threading.enumerate() if t.name == READER_THREAD and t.is_alive()]
        time.sleep(0.2)
        before = runs(reader)
        time.sleep(1.2)
        # A read timeout of 0.2 s ran it six times in this window.
        assert runs(reader) - before <= 2  # (a run cut short by another thread counts twice)
        assert transport.execute(AtCommand("AT")).result.ok  # and it still hears the modem
    assert not reader.is_alive()


def test_one_progress_ticker_for_many_quick_waits():
    waits = Waits()
    with waits.waiting("waiting for the modem to answer AT"):
        pass
    ticker = waits._ticker
    time.sleep(0.3)  # a ticker that ended when idle has ended by now
    for _ in range(5):
        with waits.waiting("waiting for the modem to answer AT"):
            pass
    assert waits._ticker is ticker and ticker.is_alive()
    before = runs(ticker)
    time.sleep(1.5)  # past SHOW_AFTER of the last wait: at most one look, then asleep
    assert runs(ticker) - before <= 2


def test_quick_waits_in_a_row_wake_the_ticker_once():
    """A check of three single commands (a modem that refuses concatenated
    lines): the ticker, already due to wake by the first one's show-time,
    is not woken again by the second and third."""
    waits = Waits()
    with waits.waiting("waiting for the modem to answer AT"):
        pass
    ticker = waits._ticker
    time.sleep(1.3)  # past the first wait's show-time: asleep until notified
    before = runs(ticker)
    for _ in range(6):
        with waits.waiting("waiting for the modem to answer AT"):
            time.sleep(0.02)  # the modem answering
        time.sleep(0.01)  # each starts with none other under way, as a check's commands do
    time.sleep(1.3)  # past SHOW_AFTER of the first: one look, then asleep
    # Woken at the first start and at its show-time (2; a run cut short by
    # another thread counts twice); woken at every start, it ran 7 or more.
    assert runs(ticker) - before <= 4


class _Clock:
    """time for mtcd.gatekeeper: a select() that lets its whole timeout pass."""

    def __init__(self):
        self.now, self.timeouts = 1000.0, []

    def monotonic(self):
        return self.now

    def select(self, timeout=None):
        self.timeouts.append(timeout)
        self.now += timeout
        return []


class _Store:
    """A keystore that counts the loop's looks at it; `written_at` is when
    another process replaces it (the loop's next look reloads it)."""

    def __init__(self, clock, written_at=None):
        self.clock, self.written_at, self.looks, self.reloads = clock, written_at, 0, 0

    def __len__(self):
        self.looks += 1
        if self.written_at is not None and self.clock.now >= self.written_at:
            self.reloads, self.written_at = 1, None
        return 1


def _idle_loop(gateway, monkeypatch, clock, store):
    from types import SimpleNamespace

    from mtcd import gatekeeper
    from mtcd.config import load_config
    from mtcd.events import EventLog

    gateway.configure(str(gateway.root / "no-modem"))
    gk = gatekeeper.Gatekeeper(gateway.config, load_config(gateway.config), notifier=gatekeeper.Notifier({}),
                               events=EventLog(journal=False))
    monkeypatch.setattr(gatekeeper, "time", SimpleNamespace(monotonic=clock.monotonic))
    monkeypatch.setattr(gk, "_selector", clock)
    gk.gateway = SimpleNamespace(keystore=store)
    return gk


def test_the_keystore_look_rides_on_the_check_tick(gateway, monkeypatch):
    """Between two checks 2 s apart the loop sleeps once: the look for
    another process's keystore write has no wake-up of its own (it had one
    a second, a third of the loop's runs on a modem refusing concatenated
    lines), and a write is still taken at the tick that follows it."""
    clock = _Clock()
    store = _Store(clock, written_at=clock.now + 0.5)
    gk = _idle_loop(gateway, monkeypatch, clock, store)
    gk._sleep(2.0, watch_store=True)
    assert clock.timeouts == [2.0]  # one wait; with a look a second it was [1.0, 1.0]
    assert store.looks == 2 and gk._store_dirty  # at the start, and at the tick, which takes the write


def test_a_long_wait_still_looks_at_the_keystore_every_two_seconds(gateway, monkeypatch):
    """With SIM-state URCs the check is 30 s apart: the wait is cut into
    even parts of at most 2 s, so a `pin set` is still seen within 2 s."""
    clock = _Clock()
    store = _Store(clock, written_at=clock.now + 7.0)
    gk = _idle_loop(gateway, monkeypatch, clock, store)
    start = clock.now
    gk._sleep(30.0, watch_store=True)
    assert gk._store_dirty and clock.now - start == 8.0  # seen at the first look after 7 s, and the wait ended
    assert clock.timeouts == [2.0] * 4
    store, clock.timeouts = _Store(clock), []
    gk.gateway.keystore, gk._store_dirty = store, False
    gk._sleep(3.0, watch_store=True)
    assert clock.timeouts == [1.5, 1.5] and store.looks == 3


def test_commands_answered_at_once_wake_no_progress_thread():
    """The session's port says what it waits for (mtcd.progress) only for
    an answer that is slow: the waiting thread nudges the ticker after a
    second.  Every idle check's commands are answered in milliseconds, and
    before, each check woke the ticker twice (at the first command's start
    and at its show-time), a fifth of the idle service's wake-ups on a
    modem that refuses concatenated lines."""
    from mtcd.service import _WaitingTransport

    said = []
    waits = Waits(on_start=said.append, announce_after=1.0)
    with sim_modem() as (modem, port), _WaitingTransport(port, timeout=5) as transport:
        transport.waits = waits
        for _ in range(6):
            assert transport.execute(AtCommand("AT+CPIN?", prefixes=("+CPIN:",))).result.ok
        assert waits._ticker is None and said == []  # no thread, so nothing to wake
        modem.latency = 1.6  # a slow answer is still said, once it has lasted a second
        assert transport.execute(AtCommand("AT+CPIN?", prefixes=("+CPIN:",))).result.ok
    assert said == ["waiting for the modem to answer AT+CPIN? (up to 5 s)"]
