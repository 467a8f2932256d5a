"""The sealed PIN store and the atomic file helper beneath it."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mtcd import fsutil
from mtcd.errors import KeystoreError, StateError
from mtcd.fsutil import atomic_write, ensure_private_dir
from mtcd.identity import Iccid, luhn_check_digit
from mtcd.keystore import FileSealer, Keystore, PinEntry
from mtcd.secret import Pin


def iccid(body: str = "894910000000000001") -> Iccid:
    return Iccid(body + str(luhn_check_digit(body)))


ICCID_A = iccid("894910000000000001")
ICCID_B = iccid("894910000000000002")
PIN_A = "73914826"
PIN_B = "50627"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def store_doc(state: Path) -> dict:
    return json.loads((state / "keystore.json").read_text())


def write_doc(state: Path, doc: dict) -> None:
    (state / "keystore.json").write_text(json.dumps(doc))


# --- round trip and API ---

def test_missing_state_dir_is_an_empty_store_and_creates_nothing(state):
    ks = Keystore.open(state)
    assert len(ks) == 0
    assert ks.get(ICCID_A) is None
    assert ks.entries() == []
    assert not state.exists()


def test_round_trip(state):
    ks = Keystore.open(state)
    entry = ks.set_pin(ICCID_A, Pin(PIN_A))
    ks.set_pin(ICCID_B, Pin(PIN_B))
    assert entry.pin == Pin(PIN_A) and entry.state == "active"

    again = Keystore.open(state)
    assert len(again) == 2
    a = again.get(ICCID_A)
    assert a.pin.reveal() == PIN_A
    assert a.pending_pin is None
    assert a.state == "active"
    assert a.attempt_started is False
    assert a.last_imei is None
    assert a.created == entry.created and a.updated == entry.updated
    assert again.get(ICCID_B).pin.reveal() == PIN_B
    assert [e.iccid for e in again.entries()] == sorted([ICCID_A, ICCID_B], key=str)


def test_entry_lifecycle_and_latch_survive_reopen(state):
    ks = Keystore.open(state)
    ks.set_pin(ICCID_A, Pin(PIN_A))

    ks.begin_attempt(ICCID_A)
    assert Keystore.open(state).get(ICCID_A).attempt_started is True

    ks.record_accepted(ICCID_A, "490154203237518")
    e = Keystore.open(state).get(ICCID_A)
    assert (e.attempt_started, e.state, e.last_imei) == (False, "active", "490154203237518")

    ks.begin_attempt(ICCID_A)
    ks.record_rejected(ICCID_A)
    e = Keystore.open(state).get(ICCID_A)
    assert e.state == "rejected" and e.rejected and e.attempt_started is False
    assert e.last_imei == "490154203237518"

    # The latch: a rejected PIN is not presented again...
    with pytest.raises(KeystoreError, match="rejected"):
        Keystore.open(state).begin_attempt(ICCID_A)
    # ...until someone sets a new one, which clears it and keeps the history.
    new = Keystore.open(state).set_pin(ICCID_A, Pin(PIN_B))
    assert new.state == "active" and new.attempt_started is False
    # Re-provisioning accepts the SIM anew: a recorded IMEI no longer counts.
    assert new.created == e.created and new.last_imei is None
    assert Keystore.open(state).get(ICCID_A).pin.reveal() == PIN_B


def test_forget(state):
    ks = Keystore.open(state)
    ks.set_pin(ICCID_A, Pin(PIN_A))
    ks.set_pin(ICCID_B, Pin(PIN_B))
    assert ks.forget(ICCID_A) is True
    assert ks.forget(ICCID_A) is False
    again = Keystore.open(state)
    assert again.get(ICCID_A) is None and len(again) == 1
    assert list(store_doc(state)["entries"]) == [ICCID_B.value]


def test_mutating_an_unknown_iccid_is_a_keystore_error(state):
    ks = Keystore.open(state)
    for call in (ks.begin_attempt, ks.record_rejected, lambda i: ks.record_accepted(i, None)):
        with pytest.raises(KeystoreError, match=ICCID_A.value):
            call(ICCID_A)
    assert not (state / "keystore.json").exists()


def test_set_pin_wants_a_pin_object(state):
    with pytest.raises(TypeError):
        Keystore.open(state).set_pin(ICCID_A, PIN_A)


def test_repr_hides_pins(state):
    ks = Keystore.open(state)
    entry = ks.set_pin(ICCID_A, Pin(PIN_A))
    ks.set_pin(ICCID_B, Pin(PIN_B))
    text = repr(entry) + str(entry) + repr(ks) + repr(ks.entries())
    assert PIN_A not in text and PIN_B not in text
    assert "****" in repr(entry)


def test_one_file_write_per_mutation(state, monkeypatch):
    ks = Keystore.open(state)
    ks.set_pin(ICCID_A, Pin(PIN_A))  # creates the key too
    writes = []
    real = fsutil.atomic_write
    monkeypatch.setattr("mtcd.keystore.atomic_write", lambda p, *a: (writes.append(p), real(p, *a)))
    ks.begin_attempt(ICCID_A)
    ks.record_accepted(ICCID_A, None)
    ks.record_rejected(ICCID_A)
    ks.set_pin(ICCID_A, Pin(PIN_B))
    ks.forget(ICCID_A)
    # Each mutation: the store once, then its rollback witness.
    assert writes == [state / "keystore.json", state / "keystore.witness"] * 5


# --- nothing in clear at rest ---

def test_no_pin_in_clear_in_any_file(state):
    ks = Keystore.open(state)
    ks.set_pin(ICCID_A, Pin(PIN_A))
    ks.set_pin(ICCID_B, Pin(PIN_B))
    ks.begin_attempt(ICCID_A)
    ks.record_accepted(ICCID_A, "490154203237518")
    ks.record_rejected(ICCID_B)
    files = [p for p in state.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"keystore.json", "keystore.key", "keystore.lock", "keystore.witness"}
    assert (state / "keystore.lock").read_bytes() == b""  # only ever locked, never written
    for pin in (PIN_A, PIN_B):
        forms = [
            pin.encode(),
            pin.encode().hex().encode(),
            pin.encode().hex().upper().encode(),
            base64.b64encode(pin.encode()).rstrip(b"="),
            base64.b64encode(f'"pin": "{pin}"'.encode()).rstrip(b"="),
            base64.urlsafe_b64encode(pin.encode()).rstrip(b"="),
        ]
        for path in files:
            data = path.read_bytes()
            for form in forms:
                assert form not in data, f"{form!r} found in {path.name}"


def test_file_modes(state):
    Keystore.open(state).set_pin(ICCID_A, Pin(PIN_A))
    assert mode_of(state / "keystore.key") == 0o600
    assert mode_of(state / "keystore.json") == 0o600
    assert mode_of(state) == 0o700
    assert len((state / "keystore.key").read_bytes()) == 32


def test_modes_hold_under_a_permissive_umask(state):
    old = os.umask(0)
    try:
        Keystore.open(state).set_pin(ICCID_A, Pin(PIN_A))
    finally:
        os.umask(old)
    assert mode_of(state / "keystore.key") == 0o600
    assert mode_of(state / "keystore.json") == 0o600
    assert mode_of(state) == 0o700


def test_nonce_is_fresh_on_every_write(state):
    ks = Keystore.open(state)
    ks.set_pin(ICCID_A, Pin(PIN_A))
    first = store_doc(state)["entries"][ICCID_A.value]
    ks.set_pin(ICCID_A, Pin(PIN_A))
    second = store_doc(state)["entries"][ICCID_A.value]
    assert first["nonce"] != second["nonce"]
    assert first["sealed"] != second["sealed"]


# --- damaged, tampered, foreign ---

@pytest.fixture
def filled(state):
    ks = Keystore.open(state)
    ks.set_pin(ICCID_A, Pin(PIN_A))
    ks.set_pin(ICCID_B, Pin(PIN_B))
    return state


def assert_one_line(exc: pytest.ExceptionInfo):
    message = str(exc.value)
    assert "\n" not in message
    assert "Traceback" not in message
    # No foreign exception chained in (json, cryptography, OSError).
    assert exc.value.__cause__ is None
    assert exc.value.__context__ is None or exc.value.__suppress_context__
    for pin in (PIN_A, PIN_B):
        assert pin not in message


@pytest.mark.parametrize("position", [0, 5, 16, -17, -1])
def test_one_flipped_bit_in_a_sealed_blob_fails_authentication(filled, position):
    doc = store_doc(filled)
    blob = bytearray(base64.b64decode(doc["entries"][ICCID_A.value]["sealed"]))
    blob[position] ^= 0x01
    doc["entries"][ICCID_A.value]["sealed"] = base64.b64encode(bytes(blob)).decode()
    write_doc(filled, doc)
    with pytest.raises(KeystoreError, match=f"entry {ICCID_A.value} fails authentication") as exc:
        Keystore.open(filled)
    assert_one_line(exc)
    assert "keystore.json is damaged" in str(exc.value)


def test_tampered_nonce_fails_authentication(filled):
    doc = store_doc(filled)
    nonce = bytearray(base64.b64decode(doc["entries"][ICCID_B.value]["nonce"]))
    nonce[0] ^= 0x80
    doc["entries"][ICCID_B.value]["nonce"] = base64.b64encode(bytes(nonce)).decode()
    write_doc(filled, doc)
    with pytest.raises(KeystoreError, match=f"entry {ICCID_B.value} fails authentication"):
        Keystore.open(filled)


def test_entry_moved_to_another_iccid_fails_authentication(filled):
    doc = store_doc(filled)
    entries = doc["entries"]
    # The record sealed for A now sits under B: A's PIN must not reach B's card.
    entries[ICCID_B.value] = entries.pop(ICCID_A.value)
    write_doc(filled, doc)
    with pytest.raises(KeystoreError, match=f"entry {ICCID_B.value} fails authentication"):
        Keystore.open(filled)


def test_entry_swap_between_iccids_fails_authentication(filled):
    doc = store_doc(filled)
    e = doc["entries"]
    e[ICCID_A.value], e[ICCID_B.value] = e[ICCID_B.value], e[ICCID_A.value]
    write_doc(filled, doc)
    with pytest.raises(KeystoreError, match="fails authentication"):
        Keystore.open(filled)


@pytest.mark.parametrize("keep", [0, 1, 20, 100, -2])
def test_truncated_file(filled, keep):
    path = filled / "keystore.json"
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    with pytest.raises(KeystoreError, match="keystore.json is damaged: it is not valid JSON") as exc:
        Keystore.open(filled)
    assert_one_line(exc)


@pytest.mark.parametrize(
    "doc, complaint",
    [
        ({"format": "mtcd-keystore/9", "entries": {}}, "unknown format"),
        ({"entries": {}}, "unknown format"),
        ([1, 2, 3], "unknown format"),
        ({"format": "mtcd-keystore/1"}, "unexpected layout"),
        ({"format": "mtcd-keystore/1", "entries": []}, "unexpected layout"),
        ({"format": "mtcd-keystore/1", "entries": {}}, "unexpected layout"),
        ({"format": "mtcd-keystore/1", "entries": {}, "mac": "!!"}, "unexpected layout"),
        ({"format": "mtcd-keystore/1", "mac": "", "entries": {"12345": {}}}, "is not an ICCID"),
        ({"format": "mtcd-keystore/1", "mac": "", "entries": {ICCID_A.value: {}}}, "malformed"),
        ({"format": "mtcd-keystore/1", "mac": "", "entries": {ICCID_A.value: "x"}}, "malformed"),
        ({"format": "mtcd-keystore/1", "mac": "",
          "entries": {ICCID_A.value: {"nonce": "!!", "sealed": "AAAA"}}}, "malformed"),
        ({"format": "mtcd-keystore/1", "mac": "",
          "entries": {ICCID_A.value: {"nonce": "AAAA", "sealed": "AAAA"}}}, "malformed"),
        ({"format": "mtcd-keystore/1", "mac": "",
          "entries": {ICCID_A.value: {"nonce": 5, "sealed": "AAAA"}}}, "malformed"),
    ],
)
def test_foreign_or_malformed_file(filled, doc, complaint):
    write_doc(filled, doc)
    with pytest.raises(KeystoreError, match=complaint) as exc:
        Keystore.open(filled)
    assert_one_line(exc)


def test_removed_entry_fails_the_file_mac(filled):
    doc = store_doc(filled)
    del doc["entries"][ICCID_B.value]
    write_doc(filled, doc)
    with pytest.raises(KeystoreError, match="the file fails authentication") as exc:
        Keystore.open(filled)
    assert_one_line(exc)


def test_older_copy_of_an_entry_put_back_fails_the_file_mac(filled):
    old = store_doc(filled)
    ks = Keystore.open(filled)
    ks.record_rejected(ICCID_A)  # the latch is set...
    doc = store_doc(filled)
    # ...and someone restores the entry from before, to lift it.
    doc["entries"][ICCID_A.value] = old["entries"][ICCID_A.value]
    write_doc(filled, doc)
    with pytest.raises(KeystoreError, match="the file fails authentication"):
        Keystore.open(filled)


def test_binary_garbage(filled):
    (filled / "keystore.json").write_bytes(os.urandom(64) + b"\xff")
    with pytest.raises(KeystoreError, match="not valid JSON"):
        Keystore.open(filled)


def test_entries_without_their_key_are_refused(filled):
    (filled / "keystore.key").unlink()
    with pytest.raises(KeystoreError, match="key is missing"):
        Keystore.open(filled)


def test_another_key_fails_authentication(filled):
    (filled / "keystore.key").unlink()
    FileSealer(filled).create_key()
    with pytest.raises(KeystoreError, match="fails authentication"):
        Keystore.open(filled)


def test_empty_store_without_key_is_fine(state):
    ks = Keystore.open(state)
    ks.set_pin(ICCID_A, Pin(PIN_A))
    ks.forget(ICCID_A)
    (state / "keystore.key").unlink()
    ks = Keystore.open(state)
    assert len(ks) == 0
    ks.set_pin(ICCID_B, Pin(PIN_B))  # a new key is made
    assert Keystore.open(state).get(ICCID_B).pin.reveal() == PIN_B


# --- the key file ---

@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o700, 0o660])
def test_key_file_with_loose_mode_is_refused(filled, mode):
    key = filled / "keystore.key"
    os.chmod(key, mode)
    with pytest.raises(KeystoreError) as exc:
        Keystore.open(filled)
    assert str(key) in str(exc.value)
    assert f"{mode:04o}" in str(exc.value)
    assert_one_line(exc)


def test_read_only_key_file_is_fine(filled):
    os.chmod(filled / "keystore.key", 0o400)
    assert Keystore.open(filled).get(ICCID_A).pin.reveal() == PIN_A


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64])
def test_key_file_of_wrong_length_is_refused(filled, length):
    key = filled / "keystore.key"
    key.write_bytes(b"k" * length)
    with pytest.raises(KeystoreError, match="must be 32 bytes"):
        Keystore.open(filled)


def test_key_path_that_is_not_a_file(state):
    ensure_private_dir(state)
    (state / "keystore.key").mkdir()
    with pytest.raises(KeystoreError, match="keystore.key"):
        Keystore.open(state)


def test_create_key_never_replaces_a_key(filled):
    before = (filled / "keystore.key").read_bytes()
    with pytest.raises(KeystoreError, match="already exists"):
        FileSealer(filled).create_key()
    assert (filled / "keystore.key").read_bytes() == before


def test_other_sealers_plug_in(state):
    class MemorySealer:
        key = None

        def load_key(self):
            return self.key

        def create_key(self):
            self.key = os.urandom(32)
            return self.key

    sealer = MemorySealer()
    Keystore.open(state, sealer).set_pin(ICCID_A, Pin(PIN_A))
    assert not (state / "keystore.key").exists()
    assert Keystore.open(state, sealer).get(ICCID_A).pin.reveal() == PIN_A
    with pytest.raises(KeystoreError, match="key is missing"):
        Keystore.open(state)


# --- state directory ---

def test_group_writable_state_dir_is_refused(filled):
    os.chmod(filled, 0o770)
    with pytest.raises(StateError, match="writable by group or others"):
        Keystore.open(filled)


def test_ensure_private_dir(tmp_path):
    d = ensure_private_dir(tmp_path / "a" / "b")
    assert d.is_dir() and mode_of(d) == 0o700
    os.chmod(d, 0o755)  # readable by others: tolerated
    ensure_private_dir(d)
    os.chmod(d, 0o757)
    with pytest.raises(StateError, match="0757"):
        ensure_private_dir(d)
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(StateError, match="not a directory"):
        ensure_private_dir(f)


# --- crash safety ---

def leftovers(state: Path) -> list[str]:
    return sorted(p.name for p in state.iterdir() if ".tmp-" in p.name)


def test_failed_rename_leaves_the_old_store_and_no_temp(filled, monkeypatch):
    before = (filled / "keystore.json").read_bytes()
    ks = Keystore.open(filled)

    def power_cut(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(StateError, match="cannot write .*keystore.json: Input/output error"):
        ks.record_rejected(ICCID_A)
    monkeypatch.undo()

    assert (filled / "keystore.json").read_bytes() == before
    assert leftovers(filled) == []
    # Memory did not run ahead of the disk.
    assert ks.get(ICCID_A).state == "active"
    assert Keystore.open(filled).get(ICCID_A).state == "active"


def test_failed_fsync_leaves_the_old_store_and_no_temp(filled, monkeypatch):
    before = (filled / "keystore.json").read_bytes()
    ks = Keystore.open(filled)

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(StateError, match="No space left"):
        ks.set_pin(ICCID_A, Pin(PIN_B))
    monkeypatch.undo()
    assert (filled / "keystore.json").read_bytes() == before
    assert leftovers(filled) == []
    assert Keystore.open(filled).get(ICCID_A).pin.reveal() == PIN_A


def test_failed_key_creation_leaves_nothing(state, monkeypatch):
    monkeypatch.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(OSError(5, "I/O")))
    with pytest.raises(StateError):
        Keystore.open(state).set_pin(ICCID_A, Pin(PIN_A))
    monkeypatch.undo()
    assert [p.name for p in state.iterdir()] == ["keystore.lock"]
    assert (state / "keystore.lock").read_bytes() == b""


def test_two_holders_never_overwrite_each_other(state):
    """The service and mtcctl both hold a Keystore: each write starts from
    the newest file, and reads notice the other's writes."""
    service = Keystore.open(state)
    service.set_pin(ICCID_A, Pin(PIN_A))
    technician = Keystore.open(state)
    technician.set_pin(ICCID_B, Pin(PIN_B))
    service.record_rejected(ICCID_A)  # service's copy predates B: must not drop it
    assert {e.iccid for e in Keystore.open(state).entries()} == {ICCID_A, ICCID_B}
    technician.set_pin(ICCID_A, Pin(PIN_B))  # a person replaces the rejected PIN
    assert service.get(ICCID_A).pin.reveal() == PIN_B and not service.get(ICCID_A).rejected


def test_atomic_write_replaces_and_sets_mode(tmp_path):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode_of(target) == 0o600
    atomic_write(target, b"public", mode=0o644)
    assert mode_of(target) == 0o644
    assert leftovers(tmp_path) == []


def test_atomic_write_temp_is_private_from_creation(tmp_path, monkeypatch):
    """The mode is set by open(2) itself, not fixed up afterwards."""
    seen = []
    real_open = os.open

    def spy(path, flags, mode=0o777, **kw):
        fd = real_open(path, flags, mode, **kw)
        if flags & os.O_CREAT:
            seen.append((flags, mode, stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    monkeypatch.setattr(os, "open", spy)
    atomic_write(tmp_path / "f", b"x")
    (flags, mode, actual), = seen
    assert flags & os.O_EXCL
    assert mode == 0o600 and actual & 0o077 == 0


def test_atomic_write_real_rename_failure_cleans_up(tmp_path):
    """No mocks: renaming a file over a non-empty directory fails in rename(2)
    itself, after the temporary file was written and synced."""
    target = tmp_path / "store"
    target.mkdir()
    (target / "inside").write_bytes(b"old")
    with pytest.raises(StateError, match="cannot write .*store"):
        atomic_write(target, b"new")
    assert (target / "inside").read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_atomic_write_into_a_missing_directory(tmp_path):
    with pytest.raises(StateError, match="No such file"):
        atomic_write(tmp_path / "nowhere" / "f", b"x")


def test_pin_entry_is_frozen(state):
    entry = Keystore.open(state).set_pin(ICCID_A, Pin(PIN_A))
    assert isinstance(entry, PinEntry)
    with pytest.raises(AttributeError):
        entry.state = "rejected"


# --- any PIN and ICCID round-trip, and never show up in clear ---


@st.composite
def iccids(draw):
    body = "89" + draw(st.text("0123456789", min_size=15, max_size=17))
    return Iccid(body + str(luhn_check_digit(body)))


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(iccid_=iccids(), digits=st.text("0123456789", min_size=4, max_size=8))
def test_any_pin_round_trips_sealed(tmp_path_factory, iccid_, digits):
    state = tmp_path_factory.mktemp("ks")
    Keystore.open(state).set_pin(iccid_, Pin(digits))
    assert Keystore.open(state).get(iccid_).pin.reveal() == digits
    # The ICCID is stored in clear as the entry's name; everything else is base64,
    # where runs of 6+ digits are vanishingly rare by chance.
    sealed_part = (state / "keystore.json").read_bytes().replace(iccid_.value.encode(), b"")
    if len(digits) >= 6:
        assert digits.encode() not in sealed_part


# --- scale: one write for many, lazy unseal ---

def test_set_pins_is_one_write_and_lookups_unseal_only_what_is_asked(state, monkeypatch):
    import mtcd.keystore as keystore_module

    many = [(iccid(f"8949100000000{n:05d}"), Pin(f"{n:04d}")) for n in range(200)]
    writes = []
    real_write = keystore_module.atomic_write
    monkeypatch.setattr(keystore_module, "atomic_write", lambda *a, **k: (writes.append(a[0]), real_write(*a, **k)))
    Keystore.open(state).set_pins(many)
    assert len([w for w in writes if str(w).endswith("keystore.json")]) == 1
    unsealed = []
    real_unseal = keystore_module._unseal
    monkeypatch.setattr(keystore_module, "_unseal", lambda *a: (unsealed.append(a[2]), real_unseal(*a))[1])
    ks = Keystore.open(state)
    assert len(ks) == 200 and unsealed == []
    assert ks.get(many[123][0]).pin.reveal() == "0123"
    assert ks.get(many[123][0]).pin.reveal() == "0123"
    assert unsealed == [many[123][0]]


def test_a_rejection_never_latches_a_pin_stored_meanwhile(state):
    """The service's card rejected PIN A while a person stored PIN B: B, which
    the card never saw, must not be latched."""
    service = Keystore.open(state)
    service.set_pin(ICCID_A, Pin(PIN_A))
    presented = service.get(ICCID_A).pin
    Keystore.open(state).set_pin(ICCID_A, Pin(PIN_B))  # the person, meanwhile
    service.record_rejected(ICCID_A, presented=presented)
    entry = Keystore.open(state).get(ICCID_A)
    assert entry.pin.reveal() == PIN_B and not entry.rejected
    service.record_rejected(ICCID_A, presented=Pin(PIN_B))
    assert Keystore.open(state).get(ICCID_A).rejected


# --- rollback: an older copy of the store put back ---

def test_older_copy_of_the_whole_store_put_back_is_refused(filled):
    """Restoring yesterday's keystore.json would lift the rejection latch:
    the card's refused PIN would be presented again."""
    store = filled / "keystore.json"
    before = store.read_bytes()
    Keystore.open(filled).record_rejected(ICCID_A)
    store.write_bytes(before)
    with pytest.raises(KeystoreError, match="older copy put back") as exc:
        Keystore.open(filled)
    assert_one_line(exc)
    assert "mtcctl pin set" in str(exc.value) and "move it aside" in str(exc.value)


def test_a_holder_notices_an_older_copy_put_back(filled):
    store = filled / "keystore.json"
    before = store.read_bytes()
    service = Keystore.open(filled)
    service.record_rejected(ICCID_A)
    store.write_bytes(before)
    for read in (lambda: service.get(ICCID_A), lambda: service.begin_attempt(ICCID_A)):
        with pytest.raises(KeystoreError, match="older copy put back"):
            read()


def test_the_generation_is_authenticated(filled):
    doc = store_doc(filled)
    doc["generation"] += 10
    write_doc(filled, doc)
    with pytest.raises(KeystoreError, match="the file fails authentication"):
        Keystore.open(filled)


def test_a_removed_witness_is_refused(filled):
    (filled / "keystore.witness").unlink()
    with pytest.raises(KeystoreError, match="keystore.witness.*is missing"):
        Keystore.open(filled)


def test_a_witness_from_elsewhere_is_refused(filled, tmp_path):
    other = tmp_path / "other"
    Keystore.open(other).set_pin(ICCID_A, Pin(PIN_A))
    (filled / "keystore.witness").write_bytes((other / "keystore.witness").read_bytes())
    with pytest.raises(KeystoreError, match="keystore.witness is damaged: it fails authentication"):
        Keystore.open(filled)


def test_recovery_from_a_rollback_as_the_message_says(filled):
    store = filled / "keystore.json"
    before = store.read_bytes()
    Keystore.open(filled).record_rejected(ICCID_A)
    store.write_bytes(before)
    with pytest.raises(KeystoreError):
        Keystore.open(filled)
    store.rename(filled / "keystore.json.rolled-back")  # "move it aside"
    ks = Keystore.open(filled)
    assert len(ks) == 0  # no PIN at all: nothing can be presented
    ks.set_pin(ICCID_A, Pin(PIN_B))  # "store each SIM's PIN again"
    assert Keystore.open(filled).get(ICCID_A).pin.reveal() == PIN_B
    # Numbering goes on from the witness, so the old copy stays refused.
    (filled / "keystore.json.rolled-back").rename(store)
    with pytest.raises(KeystoreError, match="older copy put back"):
        Keystore.open(filled)


def test_a_store_from_before_generations_opens_and_is_upgraded(filled):
    """mtcd-keystore/1 files (no generation, no witness) still open."""
    import mtcd.keystore as keystore_module

    key = (filled / "keystore.key").read_bytes()
    ks = Keystore.open(filled)
    doc = store_doc(filled)
    legacy = {"format": "mtcd-keystore/1", "entries": doc["entries"],
              "mac": base64.b64encode(keystore_module._file_mac(key, ks._sealed, None)).decode()}
    write_doc(filled, legacy)
    (filled / "keystore.witness").unlink()
    assert Keystore.open(filled).get(ICCID_A).pin.reveal() == PIN_A
    Keystore.open(filled).record_rejected(ICCID_B)
    doc = store_doc(filled)
    assert doc["format"] == "mtcd-keystore/2" and doc["generation"] == 1
    assert json.loads((filled / "keystore.witness").read_text())["generation"] == 1
    assert Keystore.open(filled).get(ICCID_B).rejected


class PowerCut(Exception):
    pass


def cut_before(name: str, monkeypatch):
    """The power fails as `name` is about to be renamed into place: the file
    is left as it was, its temporary copy gone with the page cache."""
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == name:
            os.unlink(src)
            raise PowerCut
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_power_cut_between_the_store_and_its_witness(filled, monkeypatch):
    """The store is new, the witness one generation behind: it opens, with
    the change, and the next write brings the witness up."""
    store = filled / "keystore.json"
    two_back = store.read_bytes()
    Keystore.open(filled).set_pin(ICCID_B, Pin(PIN_A))
    one_back = store.read_bytes()
    cut_before("keystore.witness", monkeypatch)
    with pytest.raises(PowerCut):
        Keystore.open(filled).record_rejected(ICCID_A)
    monkeypatch.undo()
    after_cut = store.read_bytes()
    witnessed = json.loads((filled / "keystore.witness").read_text())["generation"]
    assert store_doc(filled)["generation"] == witnessed + 1
    assert Keystore.open(filled).get(ICCID_A).rejected  # the new state, and it opens
    # Two generations back is still caught; one back is the gap a cut leaves.
    store.write_bytes(two_back)
    with pytest.raises(KeystoreError, match="older copy put back"):
        Keystore.open(filled)
    store.write_bytes(one_back)
    assert not Keystore.open(filled).get(ICCID_A).rejected
    # Back to the store the cut left; its next write catches the witness up.
    store.write_bytes(after_cut)
    Keystore.open(filled).set_pin(ICCID_B, Pin(PIN_B))
    assert json.loads((filled / "keystore.witness").read_text())["generation"] == store_doc(filled)["generation"]
    store.write_bytes(after_cut)
    with pytest.raises(KeystoreError, match="older copy put back"):
        Keystore.open(filled)


def test_power_cut_before_the_store_is_replaced(filled, monkeypatch):
    before = {p.name: p.read_bytes() for p in filled.iterdir()}
    cut_before("keystore.json", monkeypatch)
    with pytest.raises(PowerCut):
        Keystore.open(filled).record_rejected(ICCID_A)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in filled.iterdir()} == before
    assert not Keystore.open(filled).get(ICCID_A).rejected


def test_first_write_cut_before_its_witness_opens(state, monkeypatch):
    cut_before("keystore.witness", monkeypatch)
    with pytest.raises(PowerCut):
        Keystore.open(state).set_pin(ICCID_A, Pin(PIN_A))
    monkeypatch.undo()
    assert not (state / "keystore.witness").exists()
    assert Keystore.open(state).get(ICCID_A).pin.reveal() == PIN_A


def test_a_witness_appearing_between_two_reads_is_no_rollback(filled, monkeypatch):
    """Without the lock, a reader may read "no witness" and then a store two
    writes newer (the first ones of a new store landing in between): it must
    look again under the lock rather than refuse a good store."""
    import mtcd.keystore as keystore_module

    real = keystore_module._read_witness
    calls = []

    def first_read_before_the_witness_existed(path, key):
        calls.append(path)
        return None if len(calls) == 1 else real(path, key)

    monkeypatch.setattr(keystore_module, "_read_witness", first_read_before_the_witness_existed)
    assert store_doc(filled)["generation"] == 2
    assert Keystore.open(filled).get(ICCID_A).pin.reveal() == PIN_A
    assert len(calls) == 2


def test_a_rotation_never_replaces_a_pending_pin(filled):
    """The rotation looks for a pending PIN before it starts, outside the
    lock; a technician's stage landing meanwhile (the card is about to get
    that PIN over the air) must not be overwritten by the rotation's."""
    rotation = Keystore.open(filled)
    assert rotation.get(ICCID_A).pending_pin is None  # its check passes...
    Keystore.open(filled).stage_pending(ICCID_A, Pin(PIN_B), "staged")  # ...then this lands
    with pytest.raises(KeystoreError, match="not settled") as exc:
        rotation.stage_pending(ICCID_A, Pin("99887766"), "rotation")
    assert_one_line(exc)
    entry = Keystore.open(filled).get(ICCID_A)
    assert entry.pending_pin.reveal() == PIN_B and entry.pending_origin == "staged"


def test_an_ota_staging_never_replaces_a_rotations_pending_pin(filled):
    """The reverse race: `pin stage` checked for a rotation outside the lock,
    and a rotation staged its PIN meanwhile (the card may be changing to it
    right now)."""
    staging = Keystore.open(filled)
    assert staging.get(ICCID_A).pending_pin is None  # its check passes...
    Keystore.open(filled).stage_pending(ICCID_A, Pin("99887766"), "rotation")  # ...then this lands
    with pytest.raises(KeystoreError, match="not settled") as exc:
        staging.stage_pending(ICCID_A, Pin(PIN_B), "staged", over_rotation=False)
    assert_one_line(exc)
    entry = Keystore.open(filled).get(ICCID_A)
    assert entry.pending_pin.reveal() == "99887766" and entry.pending_origin == "rotation"
    # A person's unblock (the PUK decides) may still replace it.
    Keystore.open(filled).stage_pending(ICCID_A, Pin(PIN_B), "staged")
    assert Keystore.open(filled).get(ICCID_A).pending_origin == "staged"
