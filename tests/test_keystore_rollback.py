"""An older copy of keystore.json put back (a restored backup, a copied SD
card image) must not bring back a PIN the card rejected (guarantee 1): the
real CLIs against the simulator."""

from __future__ import annotations

import shutil

import pytest

from conftest import network_commands, pin_presentations
from mtcd.errors import KeystoreError
from mtcd.keystore import Keystore
from mtcd.identity import Iccid
from mtcd.secret import Pin
from simfixtures import TEST_PIN, make_card, make_iccid, sim_modem

WRONG_PIN = "1111"
ICCID = Iccid(make_iccid(7))


def test_restored_store_never_re_presents_a_rejected_pin(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        store = gateway.state_dir / "keystore.json"
        backup = store.read_bytes()  # taken while the wrong PIN still looked fine

        first = gateway.mtcd("once")
        assert first.returncode != 0
        assert len(pin_presentations(modem.commands)) == 1  # the card refused it: latched
        store.write_bytes(backup)  # someone restores the backup

        seen = len(modem.commands)
        runs = (gateway.mtcd("once"), gateway.mtcctl("pin", "list"))
        assert pin_presentations(modem.commands[seen:]) == [], "the rejected PIN was presented again"
        for run in runs:
            assert run.returncode == 65, run.stderr
            lines = run.stderr.strip().splitlines()
            assert len(lines) == 1 and "older copy put back" in lines[0], run.stderr
            assert "mtcctl pin set" in lines[0] and "Traceback" not in run.stderr
        assert network_commands(modem.commands) == []
        assert modem.radio == 4

        # What the message says: move it aside, store the PIN again once checked.
        store.rename(store.with_name("keystore.json.restored"))
        gateway.store_pin(str(card.iccid), TEST_PIN)
        assert gateway.mtcd("once").returncode == 0
        assert card.pin_attempts == 3  # the right PIN, accepted


# --- with a TPM: its NV counter is a witness a restore cannot bring back ---

@pytest.fixture
def tpm(tmp_path):
    from mtcd import sealers

    if shutil.which("swtpm") is None:
        pytest.skip("swtpm is not installed (Debian: swtpm swtpm-tools; `make deps`)")
    if not sealers.tpm2_pytss_available():
        pytest.skip("tpm2-pytss is not installed (pip install 'mtcd[tpm2]')")
    from test_sealers import Swtpm

    try:
        tpm = Swtpm(tmp_path / "swtpm")
    except RuntimeError as exc:
        pytest.skip(f"swtpm cannot be started here: {exc}")
    yield tpm
    tpm.stop()


def test_whole_state_dir_restored_is_caught_by_the_tpm_counter(tmp_path, tpm):
    """Store, witness and sealed key restored together (an SD card image):
    only the TPM remembers that a newer store was written."""
    from mtcd.sealers import Tpm2Sealer

    state = tmp_path / "state"
    Keystore.open(state, Tpm2Sealer(state, tpm.tcti)).set_pin(ICCID, Pin(WRONG_PIN))
    image = tmp_path / "image"
    shutil.copytree(state, image)
    Keystore.open(state, Tpm2Sealer(state, tpm.tcti)).record_rejected(ICCID)
    shutil.rmtree(state)
    shutil.copytree(image, state)
    with pytest.raises(KeystoreError, match="older copy put back .*NV counter") as exc:
        Keystore.open(state, Tpm2Sealer(state, tpm.tcti))
    assert "\n" not in str(exc.value) and "mtcctl pin set" in str(exc.value)


def test_power_cut_before_the_tpm_counter_advances(tmp_path, tpm, monkeypatch):
    from mtcd.sealers import Tpm2Counter, Tpm2Sealer

    state = tmp_path / "state"
    ks = Keystore.open(state, Tpm2Sealer(state, tpm.tcti))
    ks.set_pin(ICCID, Pin(WRONG_PIN))
    two_back = (state / "keystore.json").read_bytes()
    ks.set_pin(ICCID, Pin(TEST_PIN))

    def power_cut(self):
        raise PowerCut

    monkeypatch.setattr(Tpm2Counter, "advance", power_cut)
    with pytest.raises(PowerCut):
        Keystore.open(state, Tpm2Sealer(state, tpm.tcti)).record_rejected(ICCID)
    monkeypatch.undo()
    assert Keystore.open(state, Tpm2Sealer(state, tpm.tcti)).get(ICCID).rejected  # opens, new state
    Keystore.open(state, Tpm2Sealer(state, tpm.tcti)).set_pin(ICCID, Pin(TEST_PIN))  # writes go on
    witness = (state / "keystore.witness").read_bytes()
    (state / "keystore.json").write_bytes(two_back)
    (state / "keystore.witness").unlink()  # even without its witness file
    with pytest.raises(KeystoreError, match="NV counter"):
        Keystore.open(state, Tpm2Sealer(state, tpm.tcti))
    (state / "keystore.witness").write_bytes(witness)


class PowerCut(Exception):
    pass
