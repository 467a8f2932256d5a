"""The D-Bus edge: ModemManager's objects read and called through jeepney.

python3-jeepney (pure Python, no GLib main loop, packaged by Debian) on the
system bus, or wherever DBUS_SYSTEM_BUS_ADDRESS points.  Every call has a
bound; D-Bus errors come back as `BusError` with their name, so
the layer above decides what a refusal means.  Nothing raw leaves here: a
D-Bus error reply is a BusError (a CommandFailed: exit 69, naming the
call), a bus or service that is gone is ModemUnavailable (exit 69).
"""

from __future__ import annotations

import logging

from ..errors import CommandFailed, ModemUnavailable
from . import states

log = logging.getLogger("mtcd.mm")

# Most ModemManager calls answer at once; SendPin, Enable and Connect wait on
# the modem, and ModemManager gives those its own timeouts (below these).
CALL_TIMEOUT = 30.0


# Error replies from the bus itself, not from ModemManager: nobody answered.
_NO_ANSWER = frozenset({"org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout",
                        "org.freedesktop.DBus.Error.TimedOut", "org.freedesktop.DBus.Error.Disconnected"})


class BusError(CommandFailed):
    """A D-Bus error reply: `name` is the error's name, `call` the method
    called (Sim.SendPin, Properties.Get(Modem.State)...).  Never carries a
    secret: ModemManager's messages name the command, not its arguments,
    and the call's arguments are never part of it."""

    def __init__(self, name: str, message: str = "", call: str = "a D-Bus call"):
        said = " ".join(message.split())[:200]  # one line, bounded
        super().__init__(f"ModemManager {call}", f"{name} ({said})" if said else name)
        self.name = name
        self.call = call


def call_name(interface: str, method: str, body=()) -> str:
    """How a call is named in an error: the interface's last part and the
    method, with the property asked for (a property name is no secret)."""
    def short(name: str) -> str:
        return "Manager" if name == states.SERVICE else name.rsplit(".", 1)[-1]

    if interface == states.PROPERTIES and body and isinstance(body[0], str):
        asked = short(body[0])
        if method == "Get" and len(body) > 1 and isinstance(body[1], str):
            asked += "." + body[1]
        return f"Properties.{method}({asked})"
    return f"{short(interface)}.{method}"


class ModemManagerBus:
    """One connection to the bus ModemManager is on."""

    def __init__(self, bus: str = "SYSTEM"):
        self._bus = bus
        self._conn = None

    def open(self) -> None:
        try:
            from jeepney.io.blocking import open_dbus_connection
        except ImportError:
            raise ModemUnavailable('modem.driver = "modemmanager" needs python3-jeepney (not installed)') from None
        try:
            self._conn = open_dbus_connection(bus=self._bus)
        except (OSError, ValueError) as exc:
            raise ModemUnavailable(f"cannot reach the system bus: {exc}") from None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    @property
    def alive(self) -> bool:
        return self._conn is not None

    @property
    def bus_name(self) -> str:
        """Which bus ("SYSTEM", or an address): a second connection (the
        signal watcher) goes to the same one."""
        return self._bus

    def call(self, path: str, interface: str, method: str, signature: str | None = None, body=(),
             timeout: float = CALL_TIMEOUT):
        """The method's return values (a tuple), or BusError; ModemUnavailable
        when ModemManager does not answer at all."""
        from jeepney import DBusAddress, MessageType, new_method_call
        from jeepney.low_level import HeaderFields

        if self._conn is None:
            raise ModemUnavailable("not connected to the system bus")
        message = new_method_call(DBusAddress(path, bus_name=states.SERVICE, interface=interface),
                                  method, signature, tuple(body))
        try:
            reply = self._conn.send_and_get_reply(message, timeout=timeout)
        except TimeoutError:
            raise ModemUnavailable(f"ModemManager did not answer {call_name(interface, method, body)} "
                                   f"within {timeout:g} s") from None
        except (OSError, EOFError, ValueError) as exc:  # ValueError: a message jeepney cannot read
            self.close()
            raise ModemUnavailable(f"the system bus connection failed during {call_name(interface, method, body)}: "
                                   f"{exc or type(exc).__name__}") from None
        if reply.header.message_type is MessageType.error:
            name = reply.header.fields.get(HeaderFields.error_name, "org.freedesktop.DBus.Error.Failed")
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            called = call_name(interface, method, body)
            if name in ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"):
                raise ModemUnavailable(f"ModemManager is not running on the system bus ({called})")
            if name == "org.freedesktop.DBus.Error.UnknownObject" or name == "org.freedesktop.DBus.Error.UnknownMethod":
                raise ModemUnavailable(f"the modem is gone from ModemManager ({called}: "
                                       f"{' '.join((text or name).split())})")
            if name in _NO_ANSWER:
                # ModemManager left the bus (restart, crash) or hung during
                # the call: no answer, as a TimeoutError above.
                raise ModemUnavailable(f"ModemManager gave no answer to {called} ({name.rsplit('.', 1)[-1]})")
            raise BusError(name, text, called)
        return tuple(reply.body)

    def get(self, path: str, interface: str, name: str):
        # A variant comes as (signature, value).
        return self.call(path, "org.freedesktop.DBus.Properties", "Get", "ss", (interface, name))[0][1]

    def get_all(self, path: str, interface: str) -> dict:
        values = self.call(path, "org.freedesktop.DBus.Properties", "GetAll", "s", (interface,))[0]
        return {key: value for key, (_, value) in values.items()}

    def modems(self) -> dict[str, dict]:
        """Modem object path -> its Modem interface's properties."""
        objects = self.call(states.ROOT, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")[0]
        return {path: {key: value for key, (_, value) in ifaces[states.MODEM].items()}
                for path, ifaces in objects.items() if states.MODEM in ifaces}
