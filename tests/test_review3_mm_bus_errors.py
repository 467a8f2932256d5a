"""review3: ModemManager that stops answering in the middle of a call is
"the modem is unavailable" (exit 69, a new session in `mtcd run`), not an
uncaught BusError ("internal error", exit 70, the service down).

The bus daemon answers a call whose recipient left the bus without replying
(ModemManager restarted or crashed during it) with the error
org.freedesktop.DBus.Error.NoReply.  It reached the property reads of the
pairing walk (Modem.State, Sim, UnlockRetries) as a BusError, which nothing
above them catches."""

from __future__ import annotations

import pytest
from jeepney import MessageType
from jeepney.low_level import HeaderFields

from mtcd.errors import ModemUnavailable
from mtcd.mm.bus import BusError, ModemManagerBus
from mtcd.mm.gateway import MmModem, MmSession


class _Header:
    def __init__(self, name):
        self.message_type = MessageType.error
        self.fields = {HeaderFields.error_name: name}


class _Reply:
    def __init__(self, name, text):
        self.header = _Header(name)
        self.body = (text,)


class _Conn:
    def __init__(self, name, text=""):
        self.reply = _Reply(name, text)

    def send_and_get_reply(self, message, timeout=None):
        return self.reply

    def close(self):
        pass


def _modem(name, text="") -> MmModem:
    bus = ModemManagerBus()
    bus._conn = _Conn(name, text)
    session = MmSession("/dev/ttyUSB2", 5, bus=bus)
    session.path = "/org/freedesktop/ModemManager1/Modem/0"
    return MmModem(session)


@pytest.mark.parametrize("name", ["org.freedesktop.DBus.Error.NoReply", "org.freedesktop.DBus.Error.Timeout",
                                  "org.freedesktop.DBus.Error.TimedOut"])
def test_no_reply_from_modemmanager_is_the_modem_unavailable(name):
    modem = _modem(name, "Message recipient disconnected from message bus without replying")
    with pytest.raises(ModemUnavailable) as gone:
        modem.state()
    assert "\n" not in str(gone.value)


def test_an_error_modemmanager_itself_answers_stays_a_bus_error():
    """The check that can fail: ModemManager's own error names still reach
    the callers that read them (a PIN's outcome, a refused Enable)."""
    modem = _modem("org.freedesktop.ModemManager1.Error.MobileEquipment.IncorrectPassword")
    with pytest.raises(BusError):
        modem.state()
