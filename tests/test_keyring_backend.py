"""The keyring backend over the PIN store, through keyring's own API and CLI.

The stores here are created with the file sealer first, so the backend's
"auto" sealer keeps that one and never reaches for the machine's systemd
host secret.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import keyring
import keyring.errors
import pytest

from mtcd.identity import Iccid, luhn_check_digit
from mtcd.keyring_backend import PIN_REVEALED, MtcdKeyring, NotOurService, use_directly
from mtcd.keystore import Keystore
from mtcd.sealers import FileSealer, sealed_key_files
from mtcd.secret import Pin

ICCID = Iccid("894910000000000001" + str(luhn_check_digit("894910000000000001")))
OTHER_ICCID = Iccid("894910000000000002" + str(luhn_check_digit("894910000000000002")))
PIN = "73914826"
MACHINE_HOST_SECRET = Path("/var/lib/systemd/credential.secret")


def _fingerprint(path: Path):
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest(), os.lstat(path).st_mtime_ns
    except FileNotFoundError:
        return None


@pytest.fixture(scope="module", autouse=True)
def machine_host_secret_untouched():
    before = _fingerprint(MACHINE_HOST_SECRET)
    yield
    assert _fingerprint(MACHINE_HOST_SECRET) == before


@pytest.fixture
def gateway(tmp_path: Path, monkeypatch) -> Path:
    """A configuration whose state directory already holds a file-sealed store."""
    state = tmp_path / "state"
    config = tmp_path / "mtcd.toml"
    config.write_text(f'state_dir = "{state}"\n[modem]\nport = "/dev/ttyUSB2"\n')
    Keystore.open(state, FileSealer(state)).set_pin(OTHER_ICCID, Pin("1111"))
    monkeypatch.setenv("MTCD_CONFIG", str(config))
    # Should anything reach systemd-creds, it must not be the machine's secret.
    monkeypatch.setenv("SYSTEMD_CREDENTIAL_SECRET", str(tmp_path / "no-such-dir" / "secret"))
    return config


@pytest.fixture
def ring(gateway) -> MtcdKeyring:
    previous = keyring.get_keyring()
    backend = use_directly()
    yield backend
    keyring.set_keyring(previous)


def state_of(config: Path) -> Path:
    return config.parent / "state"


def journal(config: Path) -> list[dict]:
    path = state_of(config) / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


BACKEND_NAME = "mtcd.keyring_backend.MtcdKeyring"


def keyring_cli(config: Path, *args: str, stdin: str = "", named: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MTCD", "PYTHON_KEYRING", "KEYRING_"))}
    env["MTCD_CONFIG"] = str(config)
    env["SYSTEMD_CREDENTIAL_SECRET"] = str(config.parent / "no-such-dir" / "secret")
    # keyring's own configuration file could name another backend: keep it out.
    env["XDG_CONFIG_HOME"] = str(config.parent / "xdg")
    if named:  # discovery never picks it: root names it to use it
        args = ("-b", BACKEND_NAME, *args)
    return subprocess.run([sys.executable, "-m", "keyring", *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


# --- through keyring's CLI, with discovery through the entry point ---

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the backend is for root only")


@needs_root
def test_cli_get_reads_the_pin_through_the_entry_point(gateway):
    Keystore.open(state_of(gateway)).set_pin(ICCID, Pin(PIN))
    done = keyring_cli(gateway, "get", "mtcd", str(ICCID))
    assert done.returncode == 0, done.stderr
    assert done.stdout == PIN + "\n"


@needs_root
def test_cli_lists_the_backend_below_every_default(gateway):
    done = keyring_cli(gateway, "--list-backends", named=False)
    assert done.returncode == 0, done.stderr
    assert f"{BACKEND_NAME} (priority: -1)" in done.stdout


@needs_root
def test_discovery_never_chooses_it_even_where_it_is_viable(gateway):
    """keyring's default for root (and the chainer behind it) must not be
    the PIN store: another program's secrets must never land there, and
    `keyring get mtcd ICCID` must not reveal a PIN unless the backend is named."""
    Keystore.open(state_of(gateway)).set_pin(ICCID, Pin(PIN))
    probe = ("import keyring, keyring.backend\n"
             "ring = keyring.get_keyring()\n"
             "chained = getattr(type(ring), 'backends', [])\n"
             "names = [type(ring).__module__] + [type(b).__module__ for b in chained]\n"
             "print(' '.join(names))\n"
             "print(any(type(b).__name__ == 'MtcdKeyring' for b in keyring.backend.get_all_keyring()))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTCD", "PYTHON_KEYRING", "KEYRING_"))}
    env.update(MTCD_CONFIG=str(gateway), XDG_CONFIG_HOME=str(gateway.parent / "xdg"))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    chosen, discovered = done.stdout.splitlines()
    assert discovered == "True"  # installed and viable here...
    assert "mtcd" not in chosen  # ...and still never chosen or chained
    revealed = keyring_cli(gateway, "get", "mtcd", str(ICCID), named=False)
    assert PIN not in revealed.stdout + revealed.stderr
    keyring_cli(gateway, "set", "example-service", "alice", stdin="hunter2\n", named=False)
    assert "hunter2" not in (state_of(gateway) / "keystore.json").read_text()
    assert not any(e["event"] == PIN_REVEALED for e in journal(gateway))


@needs_root
def test_named_through_the_environment(gateway):
    Keystore.open(state_of(gateway)).set_pin(ICCID, Pin(PIN))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MTCD", "PYTHON_KEYRING", "KEYRING_"))}
    env.update(MTCD_CONFIG=str(gateway), XDG_CONFIG_HOME=str(gateway.parent / "xdg"),
               PYTHON_KEYRING_BACKEND=BACKEND_NAME)
    done = subprocess.run([sys.executable, "-m", "keyring", "get", "mtcd", str(ICCID)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert (done.returncode, done.stdout) == (0, PIN + "\n"), done.stderr
    assert [e["event"] for e in journal(gateway)][-1] == PIN_REVEALED


def test_only_keyring_api_that_bookworms_keyring_has():
    """Debian bookworm ships keyring 23.9, which has no keyring.compat
    (its helper lived in keyring._compat, later jaraco.classes): the backend
    may import only what 23.9 and today's keyring both have."""
    import ast

    import mtcd.keyring_backend as module

    tree = ast.parse(Path(module.__file__).read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "keyring":
            used |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            used |= {alias.name for alias in node.names if alias.name.split(".")[0] == "keyring"}
    assert used <= {"keyring", "keyring.backend", "keyring.errors"}, used


@needs_root
def test_cli_set_and_del(gateway):
    done = keyring_cli(gateway, "set", "mtcd", str(ICCID), stdin=PIN + "\n")
    assert done.returncode == 0, done.stderr
    assert Keystore.open(state_of(gateway)).get(ICCID).pin == Pin(PIN)
    done = keyring_cli(gateway, "del", "mtcd", str(ICCID))
    assert done.returncode == 0, done.stderr
    assert Keystore.open(state_of(gateway)).get(ICCID) is None


@needs_root
def test_cli_refuses_a_bad_pin_without_echoing_it(gateway):
    bad = "12345678901"
    done = keyring_cli(gateway, "set", "mtcd", str(ICCID), stdin=bad + "\n")
    assert done.returncode != 0
    assert "password is not a PIN: PIN must be 4 to 8 digits" in done.stderr
    assert bad not in done.stdout + done.stderr
    assert Keystore.open(state_of(gateway)).get(ICCID) is None


@needs_root
def test_cli_get_of_an_unknown_iccid_finds_nothing(gateway):
    done = keyring_cli(gateway, "get", "mtcd", str(ICCID))
    assert (done.returncode, done.stdout) == (1, "")


def test_not_viable_without_a_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv("MTCD_CONFIG", str(tmp_path / "absent.toml"))
    assert not MtcdKeyring.viable
    with pytest.raises(RuntimeError):
        MtcdKeyring.priority  # noqa: B018


@needs_root
def test_viable_for_root_with_a_configuration_but_below_keyrings_fail_backend(gateway):
    import keyring.backends.fail

    assert MtcdKeyring.viable
    assert MtcdKeyring.priority == -1 < keyring.backends.fail.Keyring.priority


# --- through keyring's API ---

def test_set_get_delete(ring, gateway):
    keyring.set_password("mtcd", str(ICCID), PIN)
    assert keyring.get_password("mtcd", str(ICCID)) == PIN
    assert keyring.get_credential("mtcd", str(ICCID)).password == PIN
    keyring.delete_password("mtcd", str(ICCID))
    assert keyring.get_password("mtcd", str(ICCID)) is None
    assert keyring.get_password("mtcd", str(OTHER_ICCID)) == "1111"
    assert set(sealed_key_files(state_of(gateway))) == {"file"}  # the store kept its key


def test_every_change_and_every_reveal_is_journaled_without_the_pin(ring, gateway):
    keyring.set_password("mtcd", str(ICCID), PIN)
    keyring.get_password("mtcd", str(ICCID))
    keyring.delete_password("mtcd", str(ICCID))
    events = journal(gateway)
    assert [(e["event"], e["iccid"], e["via"]) for e in events] == [
        ("pin-set", str(ICCID), "keyring"),
        ("pin-revealed", str(ICCID), "keyring"),
        ("pin-forgotten", str(ICCID), "keyring"),
    ]
    assert events[0]["replaced"] is False
    assert PIN not in (state_of(gateway) / "journal.jsonl").read_text()


def test_a_rejected_pin_is_not_handed_out(ring, gateway):
    store = Keystore.open(state_of(gateway))
    store.set_pin(ICCID, Pin(PIN))
    store.record_rejected(ICCID)
    assert keyring.get_password("mtcd", str(ICCID)) is None
    assert not any(e["event"] == "pin-revealed" for e in journal(gateway))


@pytest.mark.parametrize("username, password, complaint", [
    ("8949100000000000012", PIN, "username is not an ICCID: ICCID check digit is wrong"),
    ("not-an-iccid", PIN, "username is not an ICCID: ICCID must be digits only"),
    (str(ICCID), "123", "password is not a PIN: PIN must be 4 to 8 digits"),
    (str(ICCID), "12a4", "password is not a PIN: PIN must be digits only"),
    (str(ICCID), "123456789", "password is not a PIN: PIN must be 4 to 8 digits"),
])
def test_set_validates_without_revealing(ring, username, password, complaint):
    with pytest.raises(keyring.errors.PasswordSetError) as caught:
        keyring.set_password("mtcd", username, password)
    assert str(caught.value) == complaint
    assert password not in str(caught.value)


def test_other_services_are_not_ours(ring):
    assert keyring.get_password("pypi", str(ICCID)) is None
    with pytest.raises(keyring.errors.PasswordSetError) as caught:
        keyring.set_password("pypi", "alice", "hunter2")
    # NotImplementedError too, so keyring's chainer tries root's other keyrings.
    assert isinstance(caught.value, NotImplementedError)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(NotOurService):
        keyring.delete_password("pypi", "alice")


def test_get_of_a_name_that_is_not_an_iccid(ring):
    assert keyring.get_password("mtcd", "alice") is None


def test_delete_of_nothing(ring):
    with pytest.raises(keyring.errors.PasswordDeleteError, match="no PIN is stored"):
        keyring.delete_password("mtcd", str(ICCID))


def test_a_damaged_store_is_one_line(ring, gateway):
    (state_of(gateway) / "keystore.json").write_text("{")
    with pytest.raises(keyring.errors.KeyringError) as caught:
        keyring.get_password("mtcd", str(OTHER_ICCID))
    assert str(caught.value).startswith("mtcd keystore: ")
    assert "\n" not in str(caught.value)
    with pytest.raises(keyring.errors.PasswordSetError, match="is damaged"):
        keyring.set_password("mtcd", str(ICCID), PIN)


def test_a_bad_configuration_is_one_line(ring, gateway):
    gateway.write_text("state_dir = 7\n[modem]\nport = \"/dev/ttyUSB2\"\n")
    with pytest.raises(keyring.errors.PasswordSetError, match="state_dir must be") as caught:
        keyring.set_password("mtcd", str(ICCID), PIN)
    assert PIN not in str(caught.value)


def test_an_explicit_configuration_path(gateway, tmp_path, monkeypatch):
    monkeypatch.setenv("MTCD_CONFIG", str(tmp_path / "elsewhere.toml"))
    backend = MtcdKeyring(gateway, sealer="file")
    backend.set_password("mtcd", str(ICCID), PIN)
    assert backend.get_password("mtcd", str(ICCID)) == PIN
