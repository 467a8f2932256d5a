"""NetworkManager GSM profiles that would send a PIN behind the gate: found
in keyfile text, read from NetworkManager's directories, and refused by the
modemmanager driver before anything is decided."""

from __future__ import annotations

import json

import pytest

from mtcd.errors import ConfigError
from mtcd.mm import nm

GSM = "[connection]\nid={id}\nuuid=0b4f8f46-6d2a-4a63-9d55-5d6c3c1f0f6a\ntype=gsm\n\n[gsm]\napn=iot.example\n{gsm}\n"


def profile(gsm: str = "", id: str = "cellular") -> str:
    return GSM.format(id=id, gsm=gsm)


@pytest.mark.parametrize("gsm, why", [
    ("pin=1234", "stores a PIN (gsm.pin)"),
    ("pin=1234\npin-flags=0", "stores a PIN (gsm.pin)"),
    ("pin-flags=1", "lets a secret agent supply a PIN"),
    ("pin-flags=2", "lets a secret agent supply a PIN"),
    ("pin-flags=x", "not a number"),
])
def test_modemmanager_nm_profile_that_sends_a_pin(gsm, why):
    name, reason = nm.pin_source(profile(gsm))
    assert name == "cellular" and why in reason


@pytest.mark.parametrize("text", [
    profile(""),  # no PIN, NetworkManager has none to send
    profile("pin-flags=4"),  # not required: never kept, never asked for
    profile("pin=1234\npin-flags=4"),
    "[connection]\nid=wired\ntype=ethernet\n\n[ethernet]\n",
    "[connection]\nid=wlan\ntype=wifi\n\n[wifi-security]\npsk=secret\n",
])
def test_modemmanager_nm_profile_without_a_pin(text):
    assert nm.pin_source(text) is None


def test_modemmanager_nm_reader_names_the_profile_and_the_fix(tmp_path):
    etc, run = tmp_path / "etc", tmp_path / "run"
    etc.mkdir()
    (etc / "wired.nmconnection").write_text("[connection]\nid=wired\ntype=ethernet\n")
    (etc / "lte.nmconnection").write_text(profile("pin=1234", id="Telekom LTE"))
    found = nm.profiles_holding_a_pin((etc, run))  # a missing directory is no error
    assert [p.name for p in found] == ["Telekom LTE"]
    with pytest.raises(ConfigError) as refused:
        nm.refuse_pin_profiles((etc, run))
    message = str(refused.value)
    assert "'Telekom LTE'" in message and str(etc / "lte.nmconnection") in message
    assert "nmcli connection modify 'Telekom LTE' gsm.pin '' gsm.pin-flags not-required" in message
    assert "1234" not in message and "\n" not in message
    assert refused.value.exit_code == 78
    nm.refuse_pin_profiles((run,))  # nothing there: no refusal


def test_modemmanager_nm_profile_quotes_a_name_for_the_shell():
    assert nm.PinProfile("it's", "/f", "x").remedy.startswith("nmcli connection modify 'it'\\''s'")


# -- the networkmanager backend's pure parts ------------------------------------

def settings(id="lte", uuid="u-1", type="gsm", **more):
    connection = {"id": id, "uuid": uuid, "type": type}
    gsm = {"apn": "iot.example"}
    for key, value in more.items():
        (connection if key in ("autoconnect", "interface-name") else gsm)[key.replace("_", "-")] = value
    return {"connection": connection, "gsm": gsm}


def test_modemmanager_nm_profile_defaults_to_autoconnect_on():
    """NetworkManager leaves out keys at their default: no autoconnect key
    means it is on, and such a profile is a rival."""
    profile = nm.profile_from_settings("/p/1", settings())
    assert profile.autoconnect is True and profile.interface_name == "" and profile.pin_flags == 0
    assert nm.profile_from_settings("/p/1", settings(autoconnect=False)).autoconnect is False


@pytest.mark.parametrize("flags, stored, why", [
    (0, True, "stores a PIN (gsm.pin)"),
    (1, False, "lets a secret agent supply a PIN (gsm.pin-flags)"),
    (2, False, "lets a secret agent supply a PIN (gsm.pin-flags)"),
    (0, False, None),
    (4, True, None),  # not required: NetworkManager neither keeps nor sends one
    (0, None, "could not be checked for a stored PIN"),  # GetSecrets failed: nobody vouches for it
])
def test_modemmanager_nm_pin_source_from_dbus_settings(flags, stored, why):
    profile = nm.profile_from_settings("/p/1", settings(pin_flags=flags))
    said = nm.pin_source_of(profile, stored)
    assert said == why if why is None else said.startswith(why)


def test_modemmanager_nm_pin_refusal_names_profile_and_fix_never_the_pin():
    profile = nm.profile_from_settings("/org/freedesktop/NetworkManager/Settings/3", settings(id="it's"))
    refused = nm.refusal_for_pin(profile, "stores a PIN (gsm.pin)")
    assert refused.exit_code == 78 and "\n" not in str(refused)
    assert "NetworkManager profile 'it's'" in str(refused)
    assert "nmcli connection modify 'it'\\''s' gsm.pin '' gsm.pin-flags not-required" in str(refused)


def test_modemmanager_nm_autoconnect_rivals_are_gsm_profiles_that_may_take_this_modem():
    profiles = [nm.profile_from_settings(f"/p/{i}", s) for i, s in enumerate([
        settings(id="own", uuid="own"),                                # mtcd's own: never a rival
        settings(id="spare", uuid="a"),                                # any modem, autoconnect on
        settings(id="off", uuid="b", autoconnect=False),
        settings(id="other port", uuid="c", **{"interface-name": "ttyUSB5"}),
        settings(id="this port", uuid="d", **{"interface-name": "ttyUSB2"}),
        settings(id="other modem", uuid="e", device_id="0123"),
        settings(id="wired", uuid="f", type="802-3-ethernet"),
    ])]
    rivals = nm.autoconnect_rivals(profiles, "own", "ttyUSB2", "abcd")
    assert [p.id for p in rivals] == ["spare", "this port"]
    refused = nm.refusal_for_rival(rivals[0], "own")
    assert refused.exit_code == 78 and "nmcli connection modify 'spare' connection.autoconnect no" in str(refused)


@pytest.mark.parametrize("state, verdict", [
    (nm.ACTIVATED, "up"), (nm.ACTIVATING, "wait"), (nm.ACTIVE_UNKNOWN, "wait"),
    (nm.DEACTIVATING, "failed"), (nm.DEACTIVATED, "failed"), (None, "failed"),
])
def test_modemmanager_nm_activation_verdict(state, verdict):
    assert nm.activation_verdict(state) == verdict


def test_modemmanager_nm_takeover_record_keeps_the_first_values_seen():
    """A second session start must not record mtcd's own 'off' as what the
    person had set: release would then leave NetworkManager switched off."""
    first = nm.remember(nm.empty_takeover(), nm.profile_from_settings("/p", settings()), True)
    assert first["profiles"] == {"u-1": {"id": "lte", "autoconnect": True}} and first["wwan_enabled"] is True
    second = nm.remember(first, nm.profile_from_settings("/p", settings(autoconnect=False)), False)
    assert second == first
    assert nm.read_takeover(json.dumps(second).encode()) == second


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'{"version": 2, "profiles": {}}',
                                  b'{"version": 1, "profiles": {"u": {"id": "x", "autoconnect": "yes"}}}',
                                  b'{"version": 1, "profiles": {}, "wwan_enabled": 1}'])
def test_modemmanager_nm_damaged_takeover_record_is_named(data):
    with pytest.raises(ValueError):
        nm.read_takeover(data)


def test_modemmanager_nm_damaged_record_stops_release_with_one_line(tmp_path):
    from mtcd.datalink import networkmanager

    (tmp_path / "networkmanager.json").write_text("{")
    with pytest.raises(ConfigError) as refused:
        networkmanager.release(tmp_path)
    assert "networkmanager.json: damaged (not JSON)" in str(refused.value) and refused.value.exit_code == 78
    assert networkmanager.release(tmp_path / "nothing") == []  # no record: nothing to do, no bus needed


@pytest.mark.parametrize("body, message", [
    ('[modem]\nport = "/dev/ttyUSB2"\n[datalink]\nbackend = "networkmanager"\nconnection = "lte"\n',
     'datalink.backend is "networkmanager", which needs modem.driver = "modemmanager"'),
    ('[modem]\nport = "/dev/ttyUSB2"\ndriver = "modemmanager"\n[datalink]\nbackend = "networkmanager"\n',
     'datalink.connection is required when backend = "networkmanager"'),
    ('[modem]\nport = "/dev/ttyUSB2"\ndriver = "modemmanager"\n[datalink]\nbackend = "modemmanager"\n'
     'connection = "lte"\n',
     'datalink.connection is only used with backend = "networkmanager"'),
    ('[modem]\nport = "/dev/ttyUSB2"\ndriver = "modemmanager"\n[datalink]\nbackend = "networkmanager"\n'
     'connection = "a\\nb"\n',
     "datalink.connection must be a NetworkManager connection id"),
])
def test_modemmanager_nm_backend_configuration_errors(tmp_path, body, message):
    from mtcd.config import load_config

    path = tmp_path / "mtcd.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_modemmanager_nm_backend_configuration_accepted(tmp_path):
    from mtcd.config import load_config

    path = tmp_path / "mtcd.toml"
    path.write_text('[modem]\nport = "/dev/ttyUSB2"\ndriver = "modemmanager"\n'
                    '[datalink]\nbackend = "networkmanager"\nconnection = "Telekom LTE"\n')
    config = load_config(path)
    assert config.datalink.backend == "networkmanager" and config.datalink.connection == "Telekom LTE"
