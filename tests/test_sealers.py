"""Sealers of the keystore's data key: systemd-creds (host secret, TPM2, both),
TPM2 through tpm2-pytss, and the plain file; and the choice between them.

The TPM is a software TPM (swtpm) each test starts on a free loopback port.
systemd-creds never sees this machine's host secret: it runs in a private
mount namespace with a tmpfs over /var/lib/systemd, and
SYSTEMD_CREDENTIAL_SECRET (honoured by systemd 252, checked below) points it
at a secret in the test's own directory. A module-wide check proves the
machine's /var/lib/systemd/credential.secret is left exactly as it was.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mtcd import sealers
from mtcd.errors import KeystoreError
from mtcd.identity import Iccid, luhn_check_digit
from mtcd.keystore import KEY_BYTES, Keystore
from mtcd.sealers import (
    CRED_FILE, TPM2_FILE, FileSealer, SystemdCredsSealer, Tpm2Sealer, choose_sealer,
    sealed_key_files,
)
from mtcd.secret import Pin

MACHINE_HOST_SECRET = Path("/var/lib/systemd/credential.secret")
ICCID = Iccid("894910000000000001" + str(luhn_check_digit("894910000000000001")))
PIN = "73914826"

# systemd-creds inside its own mount namespace: whatever it does to
# /var/lib/systemd lands on a tmpfs that vanishes with the process.
PRIVATE_VAR_LIB_SYSTEMD = (
    "unshare", "--mount", "--propagation", "private", "sh", "-c",
    'mount -t tmpfs -o mode=0700 mtcd-test /var/lib/systemd && exec "$@"', "sh",
)


def _fingerprint(path: Path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino,
            hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.fixture(scope="module", autouse=True)
def machine_host_secret_untouched():
    before = _fingerprint(MACHINE_HOST_SECRET)
    yield
    assert _fingerprint(MACHINE_HOST_SECRET) == before, \
        "a test touched the machine's own systemd credential host secret"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    return d


# --- systemd-creds: a host secret of the test's own ---

@pytest.fixture(scope="module")
def creds_runner():
    if shutil.which("systemd-creds") is None:
        pytest.skip("systemd-creds is not installed (Debian: systemd >= 250)")
    if os.geteuid() != 0:
        pytest.skip("systemd-creds and a private mount namespace need root")
    probe = subprocess.run([*PRIVATE_VAR_LIB_SYSTEMD, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot make a private mount namespace here: "
                    + probe.stderr.decode(errors="replace").strip()[:120])
    return PRIVATE_VAR_LIB_SYSTEMD


@pytest.fixture
def host_secret(tmp_path: Path, monkeypatch, creds_runner) -> Path:
    """Point systemd-creds at a host secret under tmp_path (it creates the
    file on first encrypt). Returns the path."""
    return use_host_secret(tmp_path / "host-a", monkeypatch)


def use_host_secret(directory: Path, monkeypatch) -> Path:
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / "credential.secret"
    monkeypatch.setenv("SYSTEMD_CREDENTIAL_SECRET", str(path))
    return path


def creds_sealer(state: Path, runner, with_key="host", **kw) -> SystemdCredsSealer:
    return SystemdCredsSealer(state, with_key, runner=runner, **kw)


def test_systemd_honours_the_host_secret_variable(state, host_secret, creds_runner):
    # The isolation rests on this: systemd 252 reads SYSTEMD_CREDENTIAL_SECRET.
    assert not host_secret.exists()
    creds_sealer(state, creds_runner).create_key()
    assert host_secret.is_file()


def test_systemd_creds_round_trip(state, host_secret, creds_runner):
    sealer = creds_sealer(state, creds_runner)
    assert sealer.load_key() is None
    key = sealer.create_key()
    assert len(key) == KEY_BYTES
    cred = state / CRED_FILE
    assert mode_of(cred) == 0o600
    assert key not in cred.read_bytes() and key not in base64.b64decode(cred.read_bytes())
    assert creds_sealer(state, creds_runner).load_key() == key
    assert sealer.describe() == "systemd-creds (host)"


def test_systemd_creds_never_replaces_a_key(state, host_secret, creds_runner):
    sealer = creds_sealer(state, creds_runner)
    key = sealer.create_key()
    with pytest.raises(KeystoreError, match="refusing to replace"):
        sealer.create_key()
    assert sealer.load_key() == key


def test_the_key_goes_through_pipes_never_argv(state, host_secret, creds_runner, tmp_path):
    log = tmp_path / "argv.log"
    recorder = ("sh", "-c", f'printf "%s\\n" "$@" >> {log}; exec "$@"', "sh")
    sealer = creds_sealer(state, (*creds_runner, *recorder))
    sealer.load_key()
    key = sealer.create_key()
    assert sealer.load_key() == key
    calls = log.read_text().split("systemd-creds\n")[1:]
    assert [c.split("\n")[:-1] for c in calls] == [
        ["encrypt", "--name=mtcd-keystore", "--with-key=host", "-", "-"],
        ["decrypt", "--name=mtcd-keystore", "-", "-"],
    ]


def test_keystore_over_systemd_creds(state, host_secret, creds_runner):
    Keystore.open(state, creds_sealer(state, creds_runner)).set_pin(ICCID, Pin(PIN))
    assert not (state / "keystore.key").exists()
    entry = Keystore.open(state, creds_sealer(state, creds_runner)).get(ICCID)
    assert entry.pin == Pin(PIN)


def test_copied_state_dir_fails_under_another_host_secret(
        state, host_secret, creds_runner, tmp_path, monkeypatch):
    Keystore.open(state, creds_sealer(state, creds_runner)).set_pin(ICCID, Pin(PIN))
    copy = tmp_path / "other-gateway"
    shutil.copytree(state, copy)
    # Another installation: its own host secret, created by its own first use.
    use_host_secret(tmp_path / "host-b", monkeypatch)
    scratch = tmp_path / "scratch"
    scratch.mkdir(mode=0o700)
    creds_sealer(scratch, creds_runner).create_key()
    assert (tmp_path / "host-b" / "credential.secret").is_file()
    with pytest.raises(KeystoreError) as caught:
        Keystore.open(copy, creds_sealer(copy, creds_runner))
    message = str(caught.value)
    assert "systemd-creds decrypt failed" in message and "\n" not in message


def test_missing_host_secret_is_a_one_line_error(state, host_secret, creds_runner, tmp_path,
                                                 monkeypatch):
    creds_sealer(state, creds_runner).create_key()
    use_host_secret(tmp_path / "empty", monkeypatch)
    with pytest.raises(KeystoreError) as caught:
        creds_sealer(state, creds_runner).load_key()
    assert str(caught.value).count("\n") == 0
    assert "No such file" in str(caught.value)
    assert not (tmp_path / "empty" / "credential.secret").exists()  # decrypt creates nothing


def test_a_credential_under_another_name_is_refused(state, host_secret, creds_runner):
    # Sealed by systemd-creds for some other purpose and dropped in our place.
    other = subprocess.run(
        [*creds_runner, "systemd-creds", "encrypt", "--name=other", "--with-key=host", "-", "-"],
        input=bytes(KEY_BYTES), capture_output=True, check=True,
    ).stdout
    (state / CRED_FILE).write_bytes(other)
    with pytest.raises(KeystoreError, match="does not match"):
        creds_sealer(state, creds_runner).load_key()


def test_explicit_key_kind_is_enforced_on_load(state, host_secret, creds_runner):
    creds_sealer(state, creds_runner, "host").create_key()
    with pytest.raises(KeystoreError, match="sealed with the host key, not host\\+tpm2"):
        creds_sealer(state, creds_runner, "host+tpm2").load_key()
    assert len(creds_sealer(state, creds_runner, "auto").load_key()) == KEY_BYTES


@pytest.mark.parametrize("content, reason", [
    (b"not base64 at all!", "not a systemd credential"),
    (base64.b64encode(bytes(64)) + b"\n", "not sealed with the host secret or a TPM2"),
])
def test_damaged_or_foreign_credential(state, content, reason):
    (state / CRED_FILE).write_bytes(content)
    os.chmod(state / CRED_FILE, 0o600)
    # Refused from its header alone, before systemd-creds is run.
    with pytest.raises(KeystoreError, match=reason):
        SystemdCredsSealer(state, "auto", runner=("false",)).load_key()


def test_credential_behind_a_symlink_is_refused(state, tmp_path):
    (tmp_path / "elsewhere").write_bytes(b"x")
    (state / CRED_FILE).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(KeystoreError, match="cannot read"):
        SystemdCredsSealer(state, runner=("false",)).load_key()


def test_unknown_with_key_is_refused(state):
    with pytest.raises(KeystoreError, match="must be one of"):
        SystemdCredsSealer(state, "null")


def test_systemd_creds_not_installed(state):
    with pytest.raises(KeystoreError, match="not installed"):
        SystemdCredsSealer(state, runner=("/nonexistent/mtcd-test-runner",)).create_key()
    assert not (state / CRED_FILE).exists()


# --- a software TPM per test ---

class Swtpm:
    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir(mode=0o700)
        self.port = _free_port_pair()
        self.process = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", f"dir={directory}",
             "--server", f"type=tcp,port={self.port},bindaddr=127.0.0.1",
             "--ctrl", f"type=tcp,port={self.port + 1},bindaddr=127.0.0.1",
             "--flags", "not-need-init,startup-clear"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._wait_listening()

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.port}"

    @property
    def creds_device(self) -> str:
        return f"swtpm:port={self.port}"

    def _wait_listening(self) -> None:
        for _ in range(200):
            if self.process.poll() is not None:
                raise RuntimeError(self.process.stderr.read().decode(errors="replace").strip())
            try:
                # Both: swtpm may listen on its control port a moment
                # before its TPM port, and the TCTI connects to the latter.
                for port in (self.port + 1, self.port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                try:
                    self.process.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    pass
        self.stop()
        raise RuntimeError("swtpm did not start listening")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()


def _free_port_pair() -> int:
    """A port P with P and P+1 free on loopback (the swtpm TCTI uses P+1 for control)."""
    for _ in range(100):
        port = random.randrange(20000, 60000, 2)
        sockets = []
        try:
            for p in (port, port + 1):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free port pair on 127.0.0.1")


@pytest.fixture
def swtpm(tmp_path: Path):
    """Start software TPMs on demand (`swtpm()`, each with a fresh state);
    all are stopped when the test ends."""
    if shutil.which("swtpm") is None:
        pytest.skip("swtpm is not installed (Debian: swtpm swtpm-tools; `make deps`)")
    started: list[Swtpm] = []

    def start() -> Swtpm:
        try:
            tpm = Swtpm(tmp_path / f"swtpm-{len(started)}")
        except RuntimeError as exc:
            pytest.skip(f"swtpm cannot be started here: {exc}")
        started.append(tpm)
        return tpm

    yield start
    for tpm in started:
        tpm.stop()


@pytest.fixture
def tpm2_pytss():
    if not sealers.tpm2_pytss_available():
        pytest.skip("tpm2-pytss is not installed (pip install 'mtcd[tpm2]'; needs libtss2-dev)")


# --- Tpm2Sealer ---

def test_tpm2_round_trip(state, swtpm, tpm2_pytss):
    tpm = swtpm()
    sealer = Tpm2Sealer(state, tpm.tcti)
    assert sealer.load_key() is None
    key = sealer.create_key()
    assert len(key) == KEY_BYTES
    path = state / TPM2_FILE
    assert mode_of(path) == 0o600
    doc = json.loads(path.read_text())
    assert set(doc) == {"format", "parent", "public", "private"}
    assert key not in base64.b64decode(doc["private"]) + base64.b64decode(doc["public"])
    assert Tpm2Sealer(state, tpm.tcti).load_key() == key
    assert sealer.describe() == f"tpm2 ({tpm.tcti})"


def test_tpm2_never_replaces_a_key(state, swtpm, tpm2_pytss):
    sealer = Tpm2Sealer(state, swtpm().tcti)
    key = sealer.create_key()
    with pytest.raises(KeystoreError, match="refusing to replace"):
        sealer.create_key()
    assert sealer.load_key() == key


def test_keystore_over_tpm2(state, swtpm, tpm2_pytss):
    tpm = swtpm()
    Keystore.open(state, Tpm2Sealer(state, tpm.tcti)).set_pin(ICCID, Pin(PIN))
    assert Keystore.open(state, Tpm2Sealer(state, tpm.tcti)).get(ICCID).pin == Pin(PIN)


def test_copied_state_dir_fails_on_another_tpm(state, swtpm, tpm2_pytss, tmp_path):
    first, second = swtpm(), swtpm()
    Keystore.open(state, Tpm2Sealer(state, first.tcti)).set_pin(ICCID, Pin(PIN))
    copy = tmp_path / "other-gateway"
    shutil.copytree(state, copy)
    with pytest.raises(KeystoreError, match="sealed by another TPM"):
        Keystore.open(copy, Tpm2Sealer(copy, second.tcti))


def test_another_tpm_cannot_unseal_even_past_our_check(state, swtpm, tpm2_pytss, tmp_path):
    # The parent-name check is only for a clear message; the TPM itself
    # refuses blobs made under another owner seed.
    first, second = swtpm(), swtpm()
    Tpm2Sealer(state, first.tcti).create_key()
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    Tpm2Sealer(other, second.tcti).create_key()
    doc = json.loads((state / TPM2_FILE).read_text())
    doc["parent"] = json.loads((other / TPM2_FILE).read_text())["parent"]
    (state / TPM2_FILE).write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="cannot unseal the key") as caught:
        Tpm2Sealer(state, second.tcti).load_key()
    assert "\n" not in str(caught.value)


def test_tpm2_damaged_file(state, swtpm, tpm2_pytss):
    (state / TPM2_FILE).write_text('{"format": "mtcd-tpm2-seal/1"}')
    with pytest.raises(KeystoreError, match="is damaged"):
        Tpm2Sealer(state, swtpm().tcti).load_key()


def test_tpm2_unreachable_is_a_one_line_error(state, swtpm, tpm2_pytss):
    tpm = swtpm()
    tcti = tpm.tcti
    tpm.stop()
    with pytest.raises(KeystoreError, match="cannot open TPM2") as caught:
        Tpm2Sealer(state, tcti).create_key()
    assert "\n" not in str(caught.value)
    assert not (state / TPM2_FILE).exists()


def test_tpm2_without_tpm2_pytss(state, monkeypatch):
    monkeypatch.setitem(sys.modules, "tpm2_pytss", None)  # import fails
    with pytest.raises(KeystoreError, match="needs tpm2-pytss"):
        Tpm2Sealer(state).create_key()


# --- systemd-creds with a TPM ---

@pytest.mark.parametrize("with_key", ["tpm2", "host+tpm2"])
def test_systemd_creds_with_tpm2(state, host_secret, creds_runner, swtpm, with_key):
    tpm = swtpm()
    sealer = creds_sealer(state, creds_runner, with_key, tpm2_device=tpm.creds_device)
    key = sealer.create_key()
    assert sealer.load_key() == key
    assert sealer.describe() == f"systemd-creds ({with_key})"


@pytest.mark.parametrize("with_key", ["tpm2", "host+tpm2"])
def test_copied_credential_fails_on_another_tpm(state, host_secret, creds_runner, swtpm,
                                                tmp_path, with_key):
    first, second = swtpm(), swtpm()
    Keystore.open(state, creds_sealer(state, creds_runner, with_key,
                                      tpm2_device=first.creds_device)).set_pin(ICCID, Pin(PIN))
    copy = tmp_path / "other-gateway"
    shutil.copytree(state, copy)
    # Same host secret, other TPM: the TPM half alone already stops it.
    with pytest.raises(KeystoreError, match="systemd-creds decrypt failed"):
        Keystore.open(copy, creds_sealer(copy, creds_runner, with_key,
                                         tpm2_device=second.creds_device))


# --- choosing ---

def test_file_sealer_describes_itself(state):
    assert FileSealer(state).describe() == "file (0600, not sealed)"


def test_unknown_sealer_kind(state):
    with pytest.raises(KeystoreError, match="sealer must be one of"):
        choose_sealer("vault", state)


def test_auto_on_a_new_store_takes_the_strongest(state, tmp_path, creds_runner):
    no_tpm = tmp_path / "no-tpmrm0"
    chosen = choose_sealer("auto", state, tpm_device=no_tpm)
    assert isinstance(chosen, SystemdCredsSealer) and chosen.with_key == "host"
    a_tpm = tmp_path / "tpmrm0"
    a_tpm.touch()
    chosen = choose_sealer("auto", state, tpm_device=a_tpm)
    assert isinstance(chosen, SystemdCredsSealer) and chosen.with_key == "host+tpm2"
    assert chosen.tpm2_device == str(a_tpm)
    assert chosen.describe() == "systemd-creds (host+tpm2, no key yet)"
    assert sealed_key_files(state) == {}  # choosing creates nothing


def test_auto_keeps_the_file_sealer_of_an_existing_store(state, tmp_path):
    Keystore.open(state, FileSealer(state)).set_pin(ICCID, Pin(PIN))
    chosen = choose_sealer("auto", state, tpm_device=tmp_path / "no-tpmrm0")
    assert isinstance(chosen, FileSealer)
    store = Keystore.open(state, chosen)
    assert store.get(ICCID).pin == Pin(PIN)
    store.set_pin(ICCID, Pin("1234"))
    assert set(sealed_key_files(state)) == {"file"}  # no second key


def test_auto_keeps_systemd_creds_and_its_key_kind(state, host_secret, creds_runner, tmp_path):
    Keystore.open(state, creds_sealer(state, creds_runner, "host")).set_pin(ICCID, Pin(PIN))
    a_tpm = tmp_path / "tpmrm0"
    a_tpm.touch()  # a TPM appeared since: the store still keeps its host-only key
    chosen = choose_sealer("auto", state, tpm_device=a_tpm, runner=creds_runner)
    assert isinstance(chosen, SystemdCredsSealer) and chosen.with_key == "host"
    assert chosen.describe() == "systemd-creds (host)"
    assert Keystore.open(state, chosen).get(ICCID).pin == Pin(PIN)
    explicit = choose_sealer("systemd-creds", state, tpm_device=a_tpm, runner=creds_runner)
    assert explicit.with_key == "host"


def test_auto_keeps_tpm2(state):
    (state / TPM2_FILE).write_text("{}")
    assert isinstance(choose_sealer("auto", state), Tpm2Sealer)


def test_auto_refuses_a_store_with_two_keys(state):
    (state / "keystore.key").write_bytes(bytes(KEY_BYTES))
    (state / TPM2_FILE).write_text("{}")
    with pytest.raises(KeystoreError, match="several data keys"):
        choose_sealer("auto", state)


def test_explicit_sealer_refuses_a_store_keyed_by_another(state):
    Keystore.open(state, FileSealer(state)).set_pin(ICCID, Pin(PIN))
    for kind in ("systemd-creds", "tpm2"):
        with pytest.raises(KeystoreError, match=f"another sealer \\(keystore.key\\).*set to {kind}"):
            choose_sealer(kind, state)
    assert isinstance(choose_sealer("file", state), FileSealer)


def test_explicit_sealers_on_a_new_store(state, tmp_path):
    no_tpm = tmp_path / "no-tpmrm0"
    assert isinstance(choose_sealer("file", state), FileSealer)
    assert isinstance(choose_sealer("tpm2", state, tpm_device=no_tpm), Tpm2Sealer)
    assert choose_sealer("systemd-creds", state, tpm_device=no_tpm).with_key == "host"
