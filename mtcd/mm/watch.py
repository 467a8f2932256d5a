"""ModemManager's signals, heard on a connection of their own.

`mtcd run` with `[modem] driver = "modemmanager"` learns of a SIM swap, a
lock change and the modem's disappearance from ModemManager's signals
(ObjectManager's InterfacesAdded/InterfacesRemoved, the Modem's and SIM's
PropertiesChanged, the service leaving the bus) within a moment, instead of
at its next periodic check.  This thread only classifies a signal
(mtcd.mm.states.modem_signal) and wakes the main loop: the main loop reads
ModemManager again and decides, as it does after a SIM-state URC over
serial.  The periodic check stays as the safety net for a lost signal.
"""

from __future__ import annotations

import logging
import threading

from ..simlock import SimEvent
from . import states

log = logging.getLogger("mtcd.mm")

# How long a receive waits before looking whether it should stop.
RECEIVE_SLICE = 0.5

_EVENTS = {
    states.MODEM_REMOVED: SimEvent.REMOVED,
    states.MODEM_ADDED: SimEvent.INSERTED,
    states.SIM_CHANGED: SimEvent.LOCKED,
    states.SERVICE_GONE: SimEvent.REMOVED,
}


def match_rules() -> list:
    """The signals this watcher asks the bus for."""
    from jeepney import MatchRule

    return [
        MatchRule(type="signal", sender=states.SERVICE, interface=states.OBJECT_MANAGER, path=states.ROOT),
        MatchRule(type="signal", sender=states.SERVICE, interface=states.PROPERTIES,
                  member="PropertiesChanged", path_namespace=states.ROOT),
        MatchRule(type="signal", sender="org.freedesktop.DBus", interface="org.freedesktop.DBus",
                  member="NameOwnerChanged", path="/org/freedesktop/DBus"),
    ]


class ModemWatcher:
    """A daemon thread that calls `on_signal(meaning)` (from the watcher's
    thread) for each signal that matters to `modem_path()`.  `removed` is
    set when the modem object went away (the main loop clears it once it
    has followed the modem or given it up)."""

    def __init__(self, modem_path, on_signal, bus: str = "SYSTEM"):
        self._modem_path = modem_path
        self._on_signal = on_signal
        self._bus = bus
        self._stop = threading.Event()
        self.removed = threading.Event()
        self._conn = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Subscribe and start listening; False (logged) when the bus
        cannot be subscribed to: the periodic check then works alone."""
        try:
            from jeepney.bus_messages import message_bus
            from jeepney.io.blocking import open_dbus_connection

            self._conn = open_dbus_connection(bus=self._bus)
            for rule in match_rules():
                self._conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=10)
        except (ImportError, OSError, ValueError, TimeoutError) as exc:
            log.warning("ModemManager's signals not available (%s); checking periodically", exc)
            self._close()
            return False
        self._thread = threading.Thread(target=self._listen, name="mtcd-mm-signals", daemon=True)
        self._thread.start()
        return True

    def stop(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2 * RECEIVE_SLICE + 1)
        self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def _listen(self) -> None:
        from jeepney.low_level import HeaderFields, MessageType

        conn = self._conn
        while not self._stop.is_set():
            try:
                message = conn.receive(timeout=RECEIVE_SLICE)
            except TimeoutError:
                continue
            except (OSError, EOFError, ValueError) as exc:
                if not self._stop.is_set():
                    # The bus itself went away: the main loop's next call says so.
                    log.warning("ModemManager's signals lost (%s); checking periodically", exc)
                    self._on_signal(states.SERVICE_GONE)
                return
            if message.header.message_type is not MessageType.signal:
                continue
            fields = message.header.fields
            try:
                meaning = states.modem_signal(fields.get(HeaderFields.interface, ""),
                                              fields.get(HeaderFields.member, ""),
                                              fields.get(HeaderFields.path, ""), tuple(message.body),
                                              self._modem_path())
            except (TypeError, ValueError):
                continue  # a signal of an unexpected shape says nothing we can act on
            if meaning is None:
                continue
            log.debug("ModemManager signal: %s", meaning)
            if meaning == states.MODEM_REMOVED:
                self.removed.set()
            self._on_signal(meaning)


def sim_event(meaning: str) -> SimEvent:
    """The SimEvent the main loop is woken with for a signal's meaning."""
    return _EVENTS[meaning]
