"""review3: a damaged `networkmanager.json` never leaves NetworkManager's
WWAN switch on.

The record of what mtcd changed is read before the WWAN switch is turned
off.  When it could not be read (damaged by a fault of the storage, or a
person's edit), `hold()` only logged, `prepare()` raised, and the WWAN switch
stayed as found: on, NetworkManager enables every modem it manages, and a
card without a PIN attaches with no pairing decision (guarantee 3).  The
record stays as it is (the person restores the values by hand, as the error
says); switching WWAN off is the safe direction whatever it held.

NetworkManager here is a small fake of the client's calls; the real one runs
in tests/test_modemmanager_networkmanager.py."""

from __future__ import annotations

import pytest

from mtcd.datalink.networkmanager import TAKEOVER_FILE, NmDatalink
from mtcd.errors import MtcdError
from mtcd.mm import nm

OWN = nm.Profile(path="/org/freedesktop/NetworkManager/Settings/1", id="iot", uuid="u-1", type="gsm",
                 autoconnect=True, interface_name="", device_id="", pin_flags=0)


class Client:
    def __init__(self):
        self.wwan = True
        self.autoconnect = True

    def wwan_enabled(self):
        return self.wwan

    def set_wwan(self, enabled):
        self.wwan = enabled

    def profile(self, name):
        return OWN, {"connection": {}}

    def profiles(self):
        return [(OWN, {"connection": {}})]

    def set_autoconnect(self, profile, settings, value):
        self.autoconnect = value

    def modem_device(self, path):
        return None

    def active_for(self, path):
        return []

    def stores_a_pin(self, profile):
        return False


class Session:
    path = None
    timeout = 0.2

    def modem(self, name):
        return ""


class Modem:
    session = Session()

    def state(self):
        return 3  # disabled


@pytest.mark.parametrize("damage", [b"", b"{\"version\": 1, \"profi", b"\xff\xfe", b"[]"])
def test_a_damaged_record_still_switches_wwan_off(tmp_path, damage):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / TAKEOVER_FILE).write_bytes(damage)
    client = Client()
    link = NmDatalink(Modem(), "iot", state, client=client, profile_dirs=())
    link.hold()
    assert client.wwan is False, "WWAN left on: NetworkManager enables the modem behind the gate"
    with pytest.raises(MtcdError) as refused:
        link.prepare()
    assert "damaged" in str(refused.value) and "\n" not in str(refused.value)
    assert client.wwan is False
    assert (state / TAKEOVER_FILE).read_bytes() == damage  # kept for the person


def test_a_good_record_is_kept_and_wwan_goes_off(tmp_path):
    state = tmp_path / "state"
    client = Client()
    link = NmDatalink(Modem(), "iot", state, client=client, profile_dirs=())
    link.hold()
    link.prepare()
    assert client.wwan is False and client.autoconnect is False
    record = nm.read_takeover((state / TAKEOVER_FILE).read_bytes())
    assert record["wwan_enabled"] is True and record["profiles"]["u-1"]["autoconnect"] is True
