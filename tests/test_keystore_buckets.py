"""The bucketed keystore (mtcd/keystore_buckets.py): an older copy of one
bucket or of the manifest put back, a power cut at every step of a write and
of the migration from the single file, a reader racing a writer, and the
bytes one decision reads and writes at 10,000 SIMs, counted at the store's
own I/O edge.  The single-file tests of test_keystore.py that speak only
through the API run here again on a bucketed store."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

import mtcd.keystore as keystore_module
import test_keystore
import test_keystore_rollback
from mtcd import keystore_buckets
from mtcd.errors import KeystoreError, StateError
from mtcd.keystore import Keystore, RolledBack
from mtcd.secret import Pin
from test_keystore import ICCID_A, ICCID_B, PIN_A, PIN_B, PowerCut, filled, iccid, state  # noqa: F401

MANIFEST = "mtcd-keystore/3"


@pytest.fixture(autouse=True)
def bucketed(monkeypatch, tmp_path, request):
    """Every store written here is bucketed, whatever its size; and every
    test that left a store here (but for the migration's own) really left
    a bucketed one."""
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 0)
    yield
    store = tmp_path / "state" / "keystore.json"
    if "single_file" in request.fixturenames or not store.exists():
        return
    try:
        doc = json.loads(store.read_text())
    except ValueError:
        return  # a test that damaged it on purpose
    assert doc["format"] == MANIFEST and "entries" not in doc


# --- what test_keystore.py checks through the API, on the bucketed layout ---

_AGAIN = [
    "test_missing_state_dir_is_an_empty_store_and_creates_nothing",
    "test_round_trip",
    "test_entry_lifecycle_and_latch_survive_reopen",
    "test_mutating_an_unknown_iccid_is_a_keystore_error",
    "test_repr_hides_pins",
    "test_truncated_file",
    "test_binary_garbage",
    "test_entries_without_their_key_are_refused",
    "test_another_key_fails_authentication",
    "test_empty_store_without_key_is_fine",
    "test_other_sealers_plug_in",
    "test_failed_fsync_leaves_the_old_store_and_no_temp",
    "test_two_holders_never_overwrite_each_other",
    "test_set_pins_is_one_write_and_lookups_unseal_only_what_is_asked",
    "test_a_rejection_never_latches_a_pin_stored_meanwhile",
    "test_older_copy_of_the_whole_store_put_back_is_refused",
    "test_a_holder_notices_an_older_copy_put_back",
    "test_the_generation_is_authenticated",
    "test_a_removed_witness_is_refused",
    "test_a_witness_from_elsewhere_is_refused",
    "test_recovery_from_a_rollback_as_the_message_says",
    "test_power_cut_between_the_store_and_its_witness",
    "test_first_write_cut_before_its_witness_opens",
    "test_a_witness_appearing_between_two_reads_is_no_rollback",
    "test_a_rotation_never_replaces_a_pending_pin",
    "test_an_ota_staging_never_replaces_a_rotations_pending_pin",
]
for _name in _AGAIN:
    globals()[f"test_bucketed_{_name[5:]}"] = getattr(test_keystore, _name)

# With a TPM2 sealer its NV counter vouches for the manifest (swtpm; skipped without it).
tpm = test_keystore_rollback.tpm
test_bucketed_whole_state_dir_restored_is_caught_by_the_tpm_counter = \
    test_keystore_rollback.test_whole_state_dir_restored_is_caught_by_the_tpm_counter
test_bucketed_power_cut_before_the_tpm_counter_advances = \
    test_keystore_rollback.test_power_cut_before_the_tpm_counter_advances


# --- helpers ---

def manifest(state: Path) -> dict:
    return json.loads((state / "keystore.json").read_text())


def bucket_index(state: Path, iccid_) -> int:
    key = (state / "keystore.key").read_bytes()
    return keystore_buckets.bucket_of(keystore_buckets.bucket_key(key), iccid_.value, keystore_buckets.FANOUT)


def bucket_file(state: Path, iccid_) -> Path:
    """The file the manifest names for `iccid_`'s bucket."""
    index = bucket_index(state, iccid_)
    generation, count, digest = manifest(state)["buckets"][f"{index:02x}"]
    ref = keystore_buckets.BucketRef(generation, count, base64.b64decode(digest))
    return state / "keystore.d" / ref.name(index)


def named_files(state: Path) -> set[str]:
    doc = manifest(state)
    return {keystore_buckets.BucketRef(g, c, base64.b64decode(d)).name(int(i, 16))
            for i, (g, c, d) in doc["buckets"].items()}


def bucket_names(state: Path) -> set[str]:
    return {p.name for p in (state / "keystore.d").iterdir()}


def apart(state: Path, near) -> object:
    """An ICCID whose bucket is not `near`'s (the keyed hash decides)."""
    for n in range(3, 400):
        candidate = iccid(f"8949100000000{n:05d}")
        if bucket_index(state, candidate) != bucket_index(state, near):
            return candidate
    raise AssertionError("no ICCID in another bucket")


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- layout ---

def test_the_layout_is_a_manifest_and_private_bucket_files_without_a_pin_in_clear(filled):
    doc = manifest(filled)
    assert doc["format"] == MANIFEST and doc["fanout"] == 256 and "entries" not in doc
    assert bucket_names(filled) == named_files(filled)
    assert sum(c for _, c, _ in doc["buckets"].values()) == 2
    assert mode_of(filled / "keystore.d") == 0o700
    for path in (filled / "keystore.d").iterdir():
        assert mode_of(path) == 0o600
        for pin in (PIN_A, PIN_B):
            assert pin.encode() not in path.read_bytes()
            assert base64.b64encode(pin.encode()).rstrip(b"=") not in path.read_bytes()
    assert len(Keystore.open(filled)) == 2


def test_a_change_writes_its_bucket_then_the_manifest_then_the_witness(filled, monkeypatch):
    writes = []
    real = keystore_module.atomic_write
    monkeypatch.setattr(keystore_module, "atomic_write", lambda p, *a: (writes.append(Path(p)), real(p, *a)))
    old = bucket_file(filled, ICCID_A)
    Keystore.open(filled).begin_attempt(ICCID_A)
    new = bucket_file(filled, ICCID_A)
    assert writes == [new, filled / "keystore.json", filled / "keystore.witness"]
    assert new != old and not old.exists()  # the old bucket goes once the manifest names the new one
    assert bucket_names(filled) == named_files(filled)
    writes.clear()
    ks = Keystore.open(filled)
    ks.forget(ICCID_A)
    ks.forget(ICCID_B)
    # The last entry of a bucket leaves with its file: only the manifest and witness are written.
    assert writes == [filled / "keystore.json", filled / "keystore.witness"] * 2
    assert bucket_names(filled) == set() and manifest(filled)["buckets"] == {}
    assert len(Keystore.open(filled)) == 0


def test_forget_and_set_many(filled):
    many = [(iccid(f"8949100000001{n:05d}"), Pin(f"{n:04d}")) for n in range(300)]
    ks = Keystore.open(filled)
    ks.set_pins(many)
    assert len(Keystore.open(filled)) == 302
    assert ks.forget(many[7][0]) is True and ks.forget(many[7][0]) is False
    again = Keystore.open(filled)
    assert len(again) == 301 and many[7][0] not in again and many[8][0] in again
    assert again.get(many[299][0]).pin.reveal() == "0299"
    assert [e.iccid for e in again.entries()] == sorted([ICCID_A, ICCID_B] + [i for i, _ in many if i != many[7][0]],
                                                        key=str)
    assert again.mark_compromised() == 301
    assert all(e.compromised for e in Keystore.open(filled).entries())
    assert bucket_names(filled) == named_files(filled)


# --- rollback: one bucket, the manifest ---

def test_an_older_copy_of_one_bucket_put_back_is_refused(filled):
    """The latch lives in A's bucket: restoring that file alone would lift it."""
    other = apart(filled, ICCID_A)
    Keystore.open(filled).set_pin(other, Pin(PIN_B))
    before = bucket_file(filled, ICCID_A).read_bytes()
    Keystore.open(filled).record_rejected(ICCID_A)
    bucket_file(filled, ICCID_A).write_bytes(before)
    for read in (lambda: Keystore.open(filled).get(ICCID_A), lambda: Keystore.open(filled).begin_attempt(ICCID_A),
                 lambda: ICCID_A in Keystore.open(filled)):
        with pytest.raises(RolledBack, match="older copy put back .*generation") as exc:
            read()
        test_keystore.assert_one_line(exc)
        assert str(filled / "keystore.json") in str(exc.value) and "mtcctl pin set" in str(exc.value)
    # Another bucket is not touched by that file: its SIM still pairs.
    assert Keystore.open(filled).get(other).pin.reveal() == PIN_B


def test_an_older_bucket_file_left_beside_the_new_one_is_ignored_and_swept(filled):
    old = bucket_file(filled, ICCID_A)
    before = old.read_bytes()
    Keystore.open(filled).record_rejected(ICCID_A)
    old.write_bytes(before)  # put back under its own name: no manifest names it
    assert Keystore.open(filled).get(ICCID_A).rejected
    Keystore.open(filled).note_paired(ICCID_B, "490154203237518")
    assert not old.exists() and bucket_names(filled) == named_files(filled)


def test_a_holder_notices_an_older_bucket_put_back(filled):
    service = Keystore.open(filled)
    before = bucket_file(filled, ICCID_A).read_bytes()
    Keystore.open(filled).record_rejected(ICCID_A)
    bucket_file(filled, ICCID_A).write_bytes(before)
    with pytest.raises(RolledBack, match="older copy put back"):
        service.get(ICCID_A)


@pytest.mark.parametrize("position", [0, 40, -30, -2])
def test_a_damaged_bucket_is_refused(filled, position):
    path = bucket_file(filled, ICCID_A)
    data = bytearray(path.read_bytes())
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(KeystoreError, match="is damaged: it fails authentication") as exc:
        Keystore.open(filled).get(ICCID_A)
    test_keystore.assert_one_line(exc)


def test_a_missing_bucket_is_refused(filled):
    bucket_file(filled, ICCID_A).unlink()
    with pytest.raises(KeystoreError, match="is damaged: its bucket file .* is missing") as exc:
        Keystore.open(filled).get(ICCID_A)
    test_keystore.assert_one_line(exc)


def test_an_older_manifest_put_back_is_refused_before_any_bucket_is_read(filled):
    before = (filled / "keystore.json").read_bytes()
    Keystore.open(filled).record_rejected(ICCID_A)
    (filled / "keystore.json").write_bytes(before)
    with pytest.raises(RolledBack, match="keystore.json is an older copy put back .*generation") as exc:
        Keystore.open(filled)
    assert "move it aside" in str(exc.value)


def test_an_older_manifest_and_its_buckets_put_back_together_are_refused(filled, tmp_path):
    """A backup of the whole store (manifest and keystore.d) without its witness."""
    shutil.copy2(filled / "keystore.json", tmp_path / "manifest")
    shutil.copytree(filled / "keystore.d", tmp_path / "buckets")
    Keystore.open(filled).record_rejected(ICCID_A)
    shutil.rmtree(filled / "keystore.d")
    shutil.copytree(tmp_path / "buckets", filled / "keystore.d")
    shutil.copy2(tmp_path / "manifest", filled / "keystore.json")
    with pytest.raises(RolledBack, match="older copy put back"):
        Keystore.open(filled)


@pytest.mark.parametrize("tamper", ["drop a bucket", "another digest", "another count", "another fanout"])
def test_the_manifest_is_authenticated(filled, tamper):
    doc = manifest(filled)
    index = f"{bucket_index(filled, ICCID_A):02x}"
    if tamper == "drop a bucket":
        del doc["buckets"][index]
    elif tamper == "another digest":
        doc["buckets"][index][2] = base64.b64encode(bytes(32)).decode()
    elif tamper == "another count":
        doc["buckets"][index][1] += 1
    else:
        doc["fanout"] = 128 if all(int(i, 16) < 128 for i in doc["buckets"]) else 512
    (filled / "keystore.json").write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="the file fails authentication"):
        Keystore.open(filled)


def test_an_entry_moved_into_another_bucket_is_refused(filled):
    """Bucket files are named by digest, so this needs the manifest forged
    too; the entry's own seal still refuses it (bound to its ICCID)."""
    path = bucket_file(filled, ICCID_A)
    doc = json.loads(path.read_text())
    doc["entries"][ICCID_B.value] = doc["entries"].pop(ICCID_A.value)
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="fails authentication"):
        Keystore.open(filled).get(ICCID_A)


@pytest.mark.parametrize("failing", ["bucket", "manifest"])
def test_a_failed_write_leaves_the_old_store_and_no_temp(filled, monkeypatch, failing):
    before = {p.relative_to(filled): p.read_bytes() for p in filled.rglob("*") if p.is_file()}
    ks = Keystore.open(filled)
    real = os.replace

    def replace(src, dst):
        if (failing == "bucket") == ("keystore.d" in str(dst)):
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StateError, match="cannot write .*: Input/output error"):
        ks.record_rejected(ICCID_A)
    monkeypatch.undo()
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 0)
    after = {p.relative_to(filled): p.read_bytes() for p in filled.rglob("*") if p.is_file()}
    assert not [p for p in after if ".tmp-" in p.name]
    assert {p: b for p, b in after.items() if p in before} == before  # nothing named changed
    assert not ks.get(ICCID_A).rejected and not Keystore.open(filled).get(ICCID_A).rejected
    ks.record_rejected(ICCID_A)  # the same holder writes again: the bucket the failure left is swept
    assert bucket_names(filled) == named_files(filled) and Keystore.open(filled).get(ICCID_A).rejected


# --- power cuts: every step of a write ---

class Steps:
    """Counts the durable steps of a write (renames into place, deletions)
    and cuts the power before the `cut`-th: the renamed file stays as it was
    (its temporary copy lost with the page cache), nothing after happens."""

    def __init__(self, monkeypatch, cut: int | None = None):
        self.seen: list[str] = []
        self.cut = cut
        real_replace, real_unlink = os.replace, os.unlink

        def replace(src, dst):
            self.step(f"rename {Path(dst).name}", lambda: os.unlink(src))
            return real_replace(src, dst)

        def unlink(path, *a, **k):
            if "keystore.d" in str(path) and ".tmp-" not in str(path):
                self.step(f"delete {Path(path).name}", lambda: None)
            return real_unlink(path, *a, **k)

        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(os, "unlink", unlink)

    def step(self, what: str, lose) -> None:
        self.seen.append(what)
        if self.cut is not None and len(self.seen) == self.cut:
            lose()
            raise PowerCut


def steps_of(monkeypatch, action) -> list[str]:
    steps = Steps(monkeypatch)
    action()
    monkeypatch.undo()
    return steps.seen


def test_a_bucketed_write_has_these_steps(filled, monkeypatch):
    seen = steps_of(monkeypatch, lambda: Keystore.open(filled).record_rejected(ICCID_A))
    assert [s.split()[0] + " " + s.split()[1][:2] for s in seen] == [
        f"rename {bucket_index(filled, ICCID_A):02x}", "rename ke", "rename ke", f"delete {bucket_index(filled, ICCID_A):02x}"]
    assert seen[1:3] == ["rename keystore.json", "rename keystore.witness"]


@pytest.mark.parametrize("cut", [1, 2, 3, 4])
def test_a_power_cut_at_each_step_of_a_write(filled, monkeypatch, cut):
    """Before the manifest's rename: the old state, whole.  After: the new.
    Never a mix, and what a cut leaves behind is swept by the next write."""
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 0)
    Steps(monkeypatch, cut)
    with pytest.raises(PowerCut):
        Keystore.open(filled).record_rejected(ICCID_A)
    monkeypatch.undo()
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 0)
    ks = Keystore.open(filled)
    assert ks.get(ICCID_A).rejected is (cut >= 3)
    assert ks.get(ICCID_B).pin.reveal() == PIN_B and len(ks) == 2
    ks.note_paired(ICCID_B, "490154203237518")  # the next write
    assert bucket_names(filled) == named_files(filled)
    assert Keystore.open(filled).get(ICCID_A).rejected is (cut >= 3)


# --- migration from the single file: every step ---

def make_single_file(state: Path, monkeypatch) -> Path:
    """A store of two SIMs (B's PIN latched) in the single-file format, as a
    release before buckets, or any small store, leaves it; then a threshold
    of two, so the next SIM stored migrates it."""
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 64)
    ks = Keystore.open(state)
    ks.set_pins([(ICCID_A, Pin(PIN_A)), (ICCID_B, Pin(PIN_B))])
    ks.record_rejected(ICCID_B)
    assert "entries" in json.loads((state / "keystore.json").read_text())
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 2)
    return state


@pytest.fixture
def single_file(state, monkeypatch):
    return make_single_file(state, monkeypatch)


THIRD = iccid("894910000000000003")


def test_migration_happens_on_the_write_that_passes_the_threshold(single_file):
    Keystore.open(single_file).set_pin(THIRD, Pin("2468"))
    doc = manifest(single_file)
    assert doc["format"] == MANIFEST and doc["generation"] == 3
    assert json.loads((single_file / "keystore.witness").read_text())["generation"] == 3
    ks = Keystore.open(single_file)
    assert len(ks) == 3 and ks.get(ICCID_B).rejected and ks.get(ICCID_A).pin.reveal() == PIN_A
    assert ks.get(THIRD).pin.reveal() == "2468"
    assert bucket_names(single_file) == named_files(single_file)


def test_a_power_cut_at_every_step_of_the_migration(tmp_path, monkeypatch):
    """Each bucket file, then the manifest over the single file, then the
    witness: a cut before any of them leaves a store that opens with every
    record, and the next write completes the migration."""
    # The steps depend on how many buckets the three SIMs fall in (a hash
    # keyed by the store's key): every cut starts from a copy of one store,
    # so that every cut sees the same steps.
    template = make_single_file(tmp_path / "template", monkeypatch)
    cut, steps = 0, None
    while steps is None or cut < len(steps):
        cut += 1
        state = Path(shutil.copytree(template, tmp_path / f"cut{cut}"))
        before = (state / "keystore.json").read_bytes()
        if steps is None:
            steps = Steps(monkeypatch, cut)
        else:
            Steps(monkeypatch, cut)
        with pytest.raises(PowerCut):
            Keystore.open(state).set_pin(THIRD, Pin("2468"))
        monkeypatch.undo()
        monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 2)
        if cut == 1:
            steps = steps_of(monkeypatch, lambda: Keystore.open(copy_of(state)).set_pin(THIRD, Pin("2468")))
            monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 2)
            assert steps[-2:] == ["rename keystore.json", "rename keystore.witness"]
            assert all(s.startswith("rename ") and s.endswith(".json") for s in steps[:-2]) and 1 <= len(steps) - 2 <= 3
        ks = Keystore.open(state)
        if cut < len(steps):
            # The single file is kept, whole, until the bucketed store is complete.
            assert (state / "keystore.json").read_bytes() == before
            assert len(ks) == 2 and THIRD not in ks
        else:
            assert manifest(state)["format"] == MANIFEST
            assert len(ks) == 3 and ks.get(THIRD).pin.reveal() == "2468"
        assert ks.get(ICCID_A).pin.reveal() == PIN_A and ks.get(ICCID_B).rejected
        # The next write completes what was left, and sweeps the rest.
        Keystore.open(state).set_pin(THIRD, Pin("1357"))
        ks = Keystore.open(state)
        assert manifest(state)["format"] == MANIFEST
        assert len(ks) == 3 and ks.get(ICCID_B).rejected and ks.get(THIRD).pin.reveal() == "1357"
        assert bucket_names(state) == named_files(state), cut
    assert cut == len(steps) >= 3


def copy_of(state: Path) -> Path:
    """A copy of the single-file state as the cut left it (nothing changed
    when the first step was cut), to learn the steps on."""
    copy = state.parent / (state.name + "-steps")
    shutil.copytree(state, copy)
    return copy


def test_a_legacy_store_migrates(filled, monkeypatch):
    """mtcd-keystore/1 (no generation, no witness) straight to buckets."""
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 64)
    legacy = filled.parent / "legacy"
    Keystore.open(legacy).set_pins([(ICCID_A, Pin(PIN_A)), (ICCID_B, Pin(PIN_B))])
    key = (legacy / "keystore.key").read_bytes()
    doc = json.loads((legacy / "keystore.json").read_text())
    sealed = Keystore.open(legacy)._sealed
    (legacy / "keystore.json").write_text(json.dumps({
        "format": "mtcd-keystore/1", "entries": doc["entries"],
        "mac": base64.b64encode(keystore_module._file_mac(key, sealed, None)).decode()}))
    (legacy / "keystore.witness").unlink()
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 0)
    Keystore.open(legacy).record_rejected(ICCID_B)
    assert manifest(legacy)["format"] == MANIFEST and manifest(legacy)["generation"] == 1
    assert json.loads((legacy / "keystore.witness").read_text())["generation"] == 1
    ks = Keystore.open(legacy)
    assert ks.get(ICCID_B).rejected and ks.get(ICCID_A).pin.reveal() == PIN_A


def test_a_bucketed_store_stays_bucketed_below_the_threshold(filled, monkeypatch):
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 64)
    Keystore.open(filled).forget(ICCID_B)
    assert manifest(filled)["format"] == MANIFEST
    assert Keystore.open(filled).get(ICCID_A).pin.reveal() == PIN_A


def test_reading_never_migrates(single_file):
    before = {p.name: p.read_bytes() for p in single_file.iterdir() if p.is_file()}
    ks = Keystore.open(single_file)
    assert len(ks) == 2 and ks.get(ICCID_A).pin.reveal() == PIN_A
    assert {p.name: p.read_bytes() for p in single_file.iterdir() if p.is_file()} == before
    assert not (single_file / "keystore.d").exists()


# --- concurrency ---

def test_a_reader_whose_bucket_was_replaced_meanwhile_looks_again_under_the_lock(filled, monkeypatch):
    """The service read the manifest; before it reads A's bucket, mtcctl
    stores a new PIN for A (and deletes the bucket file the service was
    about to read)."""
    service = Keystore.open(filled)
    real = keystore_module._read_store
    raced = []

    def read(path):
        if "keystore.d" in str(path) and not raced:
            raced.append(path)
            Keystore.open(filled).set_pin(ICCID_A, Pin("97531"))
        return real(path)

    monkeypatch.setattr(keystore_module, "_read_store", read)
    monkeypatch.setattr(keystore_module.Keystore, "_refresh", lambda self: None)  # the race: after its check
    assert service.get(ICCID_A).pin.reveal() == "97531"
    assert raced and not raced[0].exists()


def test_a_holder_sees_another_process_change_one_bucket_and_keeps_the_others(filled):
    other = apart(filled, ICCID_A)
    Keystore.open(filled).set_pin(other, Pin(PIN_B))
    service = Keystore.open(filled)
    assert service.get(ICCID_A).pin.reveal() == PIN_A and service.get(other).pin.reveal() == PIN_B
    Keystore.open(filled).set_pin(ICCID_A, Pin("97531"))
    assert service.get(ICCID_A).pin.reveal() == "97531"
    assert service.get(other).pin.reveal() == PIN_B
    assert service.reloads == 1


# --- the work of one decision at 10,000 SIMs, counted at the store's I/O edge ---

SIMS = 10_000


class Work:
    def __init__(self, monkeypatch):
        self.read = self.written = self.files_written = 0
        self.unsealed = []
        real_read, real_write, real_unseal = keystore_module._read_store, keystore_module.atomic_write, \
            keystore_module._unseal

        def read(path):
            raw, held = real_read(path)
            self.read += len(raw or b"")
            return raw, held

        def write(path, data, *a, **k):
            self.written += len(data)
            self.files_written += 1
            return real_write(path, data, *a, **k)

        def unseal(path, key, iccid_, sealed):
            self.unsealed.append(iccid_)
            return real_unseal(path, key, iccid_, sealed)

        monkeypatch.setattr(keystore_module, "_read_store", read)
        monkeypatch.setattr(keystore_module, "atomic_write", write)
        monkeypatch.setattr(keystore_module, "_unseal", unseal)


def decision(state: Path, sim) -> None:
    """What `mtcd once` asks of the store when the SIM asks for its PIN:
    look it up, mark the attempt (durable before AT+CPIN), record the outcome."""
    ks = Keystore.open(state)
    entry = ks.get(sim)
    assert ks.begin_attempt(sim, attempts_before=3, presenting=entry.pin)
    ks.record_accepted(sim, "490154203237518")


def test_a_decision_on_10000_sims_reads_and_writes_a_bounded_amount(state, monkeypatch):
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 64)  # the default: bucketed by its size
    sims = [iccid(f"894910000{n:09d}") for n in range(SIMS)]
    Keystore.open(state).set_pins([(i, Pin(f"{n % 10000:04d}")) for n, i in enumerate(sims)])
    assert manifest(state)["format"] == MANIFEST
    whole = sum(p.stat().st_size for p in (state / "keystore.d").iterdir())
    assert whole > 4_000_000  # what the single file rewrote per change
    work = Work(monkeypatch)
    decision(state, sims[4321])
    assert work.unsealed == [sims[4321]]
    # The manifest three times (open, two transactions), one bucket once;
    # one bucket, the manifest and the witness written twice.
    manifest_bytes = (state / "keystore.json").stat().st_size
    bucket_bytes = bucket_file(state, sims[4321]).stat().st_size
    assert manifest_bytes < 20_000 and bucket_bytes < 40_000
    assert work.read <= 3 * manifest_bytes + bucket_bytes + 1000
    assert work.files_written == 6 and work.written <= 2 * (manifest_bytes + bucket_bytes + 200)
    assert work.read + work.written < 200_000 < whole // 20
