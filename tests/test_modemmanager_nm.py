"""NetworkManager GSM profiles that would send a PIN behind the gate: found
in keyfile text, read from NetworkManager's directories, and refused by the
modemmanager driver before anything is decided."""

from __future__ import annotations

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
