"""Hostile review of the bucketed keystore: what a file put in keystore.d,
or keystore.d itself, can make a holder of the store do, and rollback,
power cuts and real processes racing around the layout."""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mtcd.keystore as keystore_module
import test_keystore
from mtcd import keystore_buckets
from mtcd.errors import KeystoreError, StateError
from mtcd.keystore import Keystore, RolledBack
from mtcd.secret import Pin
from test_keystore import ICCID_A, ICCID_B, PIN_A, PIN_B, PowerCut, filled, iccid, state  # noqa: F401
from test_keystore_buckets import Steps, apart, bucket_file, bucket_index, bucket_names, manifest, named_files

TESTS = Path(__file__).parent


@pytest.fixture(autouse=True)
def bucketed(monkeypatch):
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 0)


# --- keystore.d itself, and what is in it ---

def test_a_keystore_d_that_is_a_symlink_is_refused_and_nothing_it_points_at_is_deleted(filled, tmp_path):
    """Whoever can write the state directory (the sandboxed service) must
    not make an unsandboxed `mtcctl` delete or create files elsewhere: the
    sweep of leftovers deletes every name the manifest does not hold."""
    elsewhere = tmp_path / "elsewhere"
    shutil.move(filled / "keystore.d", elsewhere)
    (elsewhere / "precious.conf").write_text("not the keystore's\n")
    os.symlink(elsewhere, filled / "keystore.d")
    before = sorted(p.name for p in elsewhere.iterdir())
    with pytest.raises(StateError, match="keystore.d is not a directory") as exc:
        Keystore.open(filled).record_rejected(ICCID_A)
    test_keystore.assert_one_line(exc)
    assert sorted(p.name for p in elsewhere.iterdir()) == before
    assert (elsewhere / "precious.conf").read_text() == "not the keystore's\n"


def test_a_keystore_d_symlink_planted_before_migration_is_refused(state, tmp_path, monkeypatch):
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 64)
    Keystore.open(state).set_pin(ICCID_A, Pin(PIN_A))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (elsewhere / "precious.conf").write_text("x\n")
    os.symlink(elsewhere, state / "keystore.d")
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 1)
    with pytest.raises(StateError, match="keystore.d is not a directory"):
        Keystore.open(state).set_pin(ICCID_B, Pin(PIN_B))
    assert [p.name for p in elsewhere.iterdir()] == ["precious.conf"]
    # Nothing was committed: the single file, whole.
    ks = Keystore.open(state)
    assert len(ks) == 1 and ks.get(ICCID_A).pin.reveal() == PIN_A


def test_a_symlink_left_in_keystore_d_is_swept_not_followed(filled, tmp_path):
    target = tmp_path / "target"
    target.write_text("kept\n")
    os.symlink(target, filled / "keystore.d" / "ff-0.json")
    Keystore.open(filled).record_rejected(ICCID_A)
    assert target.read_text() == "kept\n"
    assert bucket_names(filled) == named_files(filled)


def test_a_symlink_under_a_bucket_name_is_refused_in_one_line(filled):
    path = bucket_file(filled, ICCID_A)
    copy = path.with_name("copy")
    shutil.copy2(path, copy)
    path.unlink()
    os.symlink(copy, path)  # the right bytes, but not the file the manifest names
    with pytest.raises(StateError, match="cannot read") as exc:
        Keystore.open(filled).get(ICCID_A)
    test_keystore.assert_one_line(exc)


_OPEN_FIFO = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from mtcd import keystore_buckets
keystore_buckets.INLINE_MAX = 0
from mtcd.errors import MtcdError
from mtcd.keystore import Keystore
from test_keystore import ICCID_A
try:
    Keystore.open(Path(sys.argv[1])).get(ICCID_A)
except MtcdError as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize("which", ["bucket", "manifest"])
def test_a_fifo_in_place_of_a_store_file_is_refused_not_waited_on(filled, which):
    """Opening a FIFO for reading blocks until someone writes to it: a
    reader (the service, or `mtcctl`) must refuse it, not hang."""
    path = bucket_file(filled, ICCID_A) if which == "bucket" else filled / "keystore.json"
    path.unlink()
    os.mkfifo(path, 0o600)
    try:
        done = subprocess.run([sys.executable, "-c", _OPEN_FIFO, str(filled), str(TESTS)],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a reader still waits on the FIFO at {path.name}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("KeystoreError") and "not a regular file" in done.stdout
    assert done.stdout.count("\n") == 1


def test_keystore_d_gone_is_refused_and_a_write_elsewhere_does_not_hide_it(filled):
    # A bucket that had no file to lose: the store's random key decides
    # which buckets the filled store uses, so look for an empty one.
    used = set(manifest(filled)["buckets"])
    other = next((c for c in (iccid(f"8949100000000{n:05d}") for n in range(3, 2000))
                  if f"{bucket_index(filled, c):02x}" not in used), None)
    assert other is not None, "no ICCID in an unused bucket"
    shutil.rmtree(filled / "keystore.d")
    with pytest.raises(KeystoreError, match="bucket file .* is missing") as exc:
        Keystore.open(filled).get(ICCID_A)
    test_keystore.assert_one_line(exc)
    Keystore.open(filled).set_pin(other, Pin("2468"))  # another bucket: the store is still damaged for A
    with pytest.raises(KeystoreError, match="bucket file .* is missing"):
        Keystore.open(filled).get(ICCID_A)
    with pytest.raises(KeystoreError, match="bucket file .* is missing"):
        Keystore.open(filled).record_rejected(ICCID_A)


def test_a_huge_bucket_file_is_refused_in_one_line(filled):
    path = bucket_file(filled, ICCID_A)
    with open(path, "r+b") as f:
        f.truncate(65 * 1024 * 1024)  # sparse: no disk used
    with pytest.raises(KeystoreError, match="far too large") as exc:
        Keystore.open(filled).get(ICCID_A)
    test_keystore.assert_one_line(exc)


@pytest.mark.parametrize("name", ["../01", "01/..", "/etc/x", "1", "+1", "0x1", "-01"])
def test_a_manifest_naming_anything_but_an_index_is_damaged(filled, name):
    doc = manifest(filled)
    doc["buckets"][name] = next(iter(doc["buckets"].values()))
    (filled / "keystore.json").write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="damaged: unexpected layout") as exc:
        Keystore.open(filled)
    test_keystore.assert_one_line(exc)


# --- rollback and substitution ---

def test_a_manifest_from_a_store_under_another_key_is_refused(filled, tmp_path):
    other = tmp_path / "other"
    ks = Keystore.open(other)
    for n in range(5):
        ks.set_pin(ICCID_A, Pin(PIN_B))  # a higher generation than ours
    shutil.copy2(other / "keystore.json", filled / "keystore.json")
    with pytest.raises(KeystoreError, match="fails authentication"):
        Keystore.open(filled)


def test_a_bucket_from_another_store_under_the_same_key_is_refused(filled, tmp_path):
    """Two gateways cloned from one image share a key: a bucket of the
    other's, for the same ICCID and index, under the name ours holds."""
    other = tmp_path / "other"
    shutil.copytree(filled, other)
    Keystore.open(other).set_pin(ICCID_A, Pin("11111"))
    Keystore.open(filled).record_rejected(ICCID_A)
    theirs = bucket_file(other, ICCID_A).read_bytes()
    bucket_file(filled, ICCID_A).write_bytes(theirs)
    with pytest.raises(KeystoreError, match="fails authentication|older copy"):
        Keystore.open(filled).get(ICCID_A)


def test_buckets_swapped_between_indices_are_refused(filled):
    other = apart(filled, ICCID_A)
    Keystore.open(filled).set_pin(other, Pin("2468"))
    a, o = bucket_file(filled, ICCID_A), bucket_file(filled, other)
    a_bytes, o_bytes = a.read_bytes(), o.read_bytes()
    a.write_bytes(o_bytes)
    o.write_bytes(a_bytes)
    for which in (ICCID_A, other):
        with pytest.raises(KeystoreError, match="damaged"):
            Keystore.open(filled).get(which)


def test_an_old_bucket_under_its_old_name_with_the_new_manifest_changes_nothing(filled):
    old = bucket_file(filled, ICCID_A)
    old_bytes = old.read_bytes()
    Keystore.open(filled).record_rejected(ICCID_A)
    new = bucket_file(filled, ICCID_A)
    new.unlink()
    old.write_bytes(old_bytes)  # the latch's bucket gone, the one before it back
    with pytest.raises(KeystoreError, match="missing"):
        Keystore.open(filled).get(ICCID_A)
    with pytest.raises(KeystoreError, match="missing"):
        Keystore.open(filled).begin_attempt(ICCID_A)


# --- power cuts: the store shrinking (forget) ---

@pytest.mark.parametrize("cut", [1, 2, 3])
def test_a_power_cut_at_each_step_of_forgetting_a_buckets_last_entry(filled, monkeypatch, cut):
    """A's bucket empties: the manifest stops naming it, then its file goes."""
    assert len(manifest(filled)["buckets"]) == 2
    steps = Steps(monkeypatch, cut)
    with pytest.raises(PowerCut):
        Keystore.open(filled).forget(ICCID_A)
    monkeypatch.undo()
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 0)
    assert steps.seen[0] == "rename keystore.json"  # no bucket file to write: it empties
    ks = Keystore.open(filled)
    gone = cut >= 2
    assert (ICCID_A in ks) is not gone and len(ks) == (1 if gone else 2)
    assert ks.get(ICCID_B).pin.reveal() == PIN_B
    ks.note_paired(ICCID_B, "490154203237518")
    assert bucket_names(filled) == named_files(filled)


def test_forgetting_every_entry_keeps_a_bucketed_store_that_works(filled, monkeypatch):
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 64)
    ks = Keystore.open(filled)
    assert ks.forget(ICCID_A) and ks.forget(ICCID_B)
    doc = manifest(filled)
    assert doc["format"] == "mtcd-keystore/3" and doc["buckets"] == {}
    assert bucket_names(filled) == set()
    ks = Keystore.open(filled)
    assert len(ks) == 0 and ks.get(ICCID_A) is None
    ks.set_pin(ICCID_A, Pin(PIN_A))
    assert Keystore.open(filled).get(ICCID_A).pin.reveal() == PIN_A


# --- real processes writing and reading at once, across the migration ---

def _writer(state: str, me: int, rounds: int, inline_max: int, ready, errors) -> None:
    keystore_buckets.INLINE_MAX = inline_max
    ready.wait()
    try:
        for n in range(rounds):
            sim = iccid(f"8949100{me:02d}0000{n:04d}")
            ks = Keystore.open(Path(state))
            ks.set_pin(sim, Pin(f"{me:02d}{n:04d}"))
            if n % 3 == 0:
                ks.record_rejected(sim)  # the latch that must not be lost
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the test
        errors.put(f"writer {me}: {type(exc).__name__}: {exc}")


def _reader(state: str, inline_max: int, ready, stop, errors) -> None:
    keystore_buckets.INLINE_MAX = inline_max
    ready.wait()
    ks = Keystore.open(Path(state))
    latched, seen = set(), 0
    try:
        while not stop.is_set():
            entries = ks.entries()
            if len(entries) < seen:
                errors.put(f"reader: {seen} entries, then {len(entries)}")
            seen = len(entries)
            for entry in entries:
                if entry.rejected:
                    latched.add(entry.iccid)
                elif entry.iccid in latched:
                    errors.put(f"reader: the latch on {entry.iccid} was lost")
            ks.get(ICCID_A)
    except Exception as exc:  # noqa: BLE001
        errors.put(f"reader: {type(exc).__name__}: {exc}")


def test_real_processes_writing_and_reading_across_the_migration_lose_nothing(state):
    """Four writers (the service and `mtcctl` alike) and two readers, the
    store crossing the threshold while they run: every PIN set and every
    latch written is there at the end, and no one saw an error."""
    inline_max, writers, rounds = 12, 4, 12
    keystore_buckets.INLINE_MAX = 64
    Keystore.open(state).set_pin(ICCID_A, Pin(PIN_A))
    ctx = multiprocessing.get_context("fork")
    ready, stop, errors = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(state), me, rounds, inline_max, ready, errors))
             for me in range(writers)]
    readers = [ctx.Process(target=_reader, args=(str(state), inline_max, ready, stop, errors)) for _ in range(2)]
    for p in procs + readers:
        p.start()
    ready.set()
    for p in procs:
        p.join(300)
    stop.set()
    for p in readers:
        p.join(60)
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not found
    assert all(p.exitcode == 0 for p in procs + readers)
    keystore_buckets.INLINE_MAX = inline_max
    ks = Keystore.open(state)
    assert manifest(state)["format"] == "mtcd-keystore/3"
    assert len(ks) == 1 + writers * rounds
    for me in range(writers):
        for n in range(rounds):
            entry = ks.get(iccid(f"8949100{me:02d}0000{n:04d}"))
            assert entry.pin.reveal() == f"{me:02d}{n:04d}" and entry.rejected is (n % 3 == 0)
    assert bucket_names(state) == named_files(state)


def test_a_manifest_whose_count_lies_under_a_valid_mac_is_caught_at_the_bucket(filled):
    """Even a manifest MACed with the store's own key (a writer's bug, not
    an outsider) cannot make a bucket hold more or fewer entries than it has."""
    key = (filled / "keystore.key").read_bytes()
    doc = manifest(filled)
    index = f"{bucket_index(filled, ICCID_A):02x}"
    doc["buckets"][index][1] += 1
    refs = {int(i, 16): keystore_buckets.BucketRef(g, c, base64.b64decode(d)) for i, (g, c, d) in doc["buckets"].items()}
    forged = keystore_buckets.Manifest(doc["fanout"], refs)
    mac_key = keystore_module._mac_key(key)
    mac = keystore_buckets.manifest_mac(mac_key, forged, doc["generation"], doc.get("counter"))
    (filled / "keystore.json").write_bytes(
        keystore_buckets.encode_manifest(forged, doc["generation"], doc.get("counter"), mac))
    with pytest.raises(KeystoreError, match="damaged: unexpected layout") as exc:
        Keystore.open(filled).get(ICCID_A)
    test_keystore.assert_one_line(exc)


def test_a_latch_written_by_another_process_reaches_a_holder_that_cached_the_entry(filled):
    """Guarantee 1 through the holder's cache: the service read A (entry
    and bucket cached), mtcctl latched A's PIN; the service's next attempt
    is refused, its next lookup sees the latch."""
    service = Keystore.open(filled)
    assert not service.get(ICCID_A).rejected
    other = subprocess.run([sys.executable, "-c", _LATCH, str(filled), str(TESTS)], capture_output=True, text=True,
                           timeout=120)
    assert other.returncode == 0, other.stderr
    with pytest.raises(KeystoreError, match="rejected by the card"):
        service.begin_attempt(ICCID_A)
    assert service.get(ICCID_A).rejected


_LATCH = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from mtcd import keystore_buckets
keystore_buckets.INLINE_MAX = 0
from mtcd.keystore import Keystore
from test_keystore import ICCID_A
Keystore.open(Path(sys.argv[1])).record_rejected(ICCID_A)
"""


def test_the_sweep_deletes_nothing_while_the_manifest_it_keeps_may_not_be_durable(filled, monkeypatch):
    """The manifest was renamed into place but the state directory could not
    be synced: after a power cut the manifest before it may be the one on
    disk, so the buckets that one names must stay until the new one is
    durable; a retry's sweep must not delete them first."""
    import mtcd.fsutil as fsutil
    old = bucket_file(filled, ICCID_A)
    real = fsutil.fsync_dir

    def fsync_dir(directory):
        if Path(directory) == filled:
            raise StateError(f"cannot sync directory {directory}: Input/output error")
        return real(directory)

    monkeypatch.setattr(fsutil, "fsync_dir", fsync_dir)
    monkeypatch.setattr(keystore_module, "fsync_dir", fsync_dir)
    service = Keystore.open(filled)
    with pytest.raises(StateError, match="Input/output error"):
        service.record_rejected(ICCID_A)
    assert bucket_file(filled, ICCID_A) != old and old.exists()
    with pytest.raises(StateError, match="Input/output error"):
        service.note_paired(ICCID_B, "490154203237518")  # the retry, the directory still failing
    assert old.exists()
    monkeypatch.setattr(fsutil, "fsync_dir", real)
    monkeypatch.setattr(keystore_module, "fsync_dir", real)
    service.note_paired(ICCID_B, "490154203237518")  # synced at last: now the sweep may go
    assert not old.exists() and bucket_names(filled) == named_files(filled)
    assert Keystore.open(filled).get(ICCID_A).rejected


# --- power cuts and killed processes: a write of several buckets ---

def test_a_power_cut_at_every_step_of_a_write_of_two_buckets(filled, tmp_path, monkeypatch):
    """mark_compromised on two SIMs in two buckets: two bucket files, the
    manifest, the witness, two deletions.  Before the manifest: neither
    SIM is marked; after: both; never one of them."""
    other = apart(filled, ICCID_A)
    Keystore.open(filled).set_pin(other, Pin("2468"))
    template = tmp_path / "template"
    shutil.copytree(filled, template)
    learn = Path(shutil.copytree(template, tmp_path / "learn"))
    steps = Steps(monkeypatch)
    Keystore.open(learn).mark_compromised([ICCID_A, other])
    monkeypatch.undo()
    monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 0)
    seen = steps.seen
    assert len(seen) == 6 and seen[2:4] == ["rename keystore.json", "rename keystore.witness"]
    for cut in range(1, len(seen) + 1):
        state = Path(shutil.copytree(template, tmp_path / f"cut{cut}"))
        Steps(monkeypatch, cut)
        with pytest.raises(PowerCut):
            Keystore.open(state).mark_compromised([ICCID_A, other])
        monkeypatch.undo()
        monkeypatch.setattr(keystore_buckets, "INLINE_MAX", 0)
        ks = Keystore.open(state)
        marked = [ks.get(i).compromised for i in (ICCID_A, other)]
        assert marked == [cut >= 4] * 2, cut
        ks.note_paired(ICCID_B, "490154203237518")
        assert bucket_names(state) == named_files(state), cut
        assert [Keystore.open(state).get(i).compromised for i in (ICCID_A, other)] == [cut >= 4] * 2


_WRITE_FOREVER = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from mtcd import keystore_buckets
keystore_buckets.INLINE_MAX = 0
from mtcd.keystore import Keystore
from mtcd.secret import Pin
from test_keystore import iccid
ks = Keystore.open(Path(sys.argv[1]))
print("ready", flush=True)
n = 0
while True:
    n += 1
    ks.set_pin(iccid(f"89491009900000{n % 40:03d}"), Pin(f"{n % 10000:04d}"))
"""


def test_a_writer_killed_at_random_moments_never_leaves_a_store_that_fails(filled):
    """SIGKILL between any two system calls of a write (and of the sweep):
    the store opens, every SIM stored before is there, and the next write
    leaves exactly the bucket files the manifest names."""
    import random
    import signal
    import time
    rng = random.Random(4)
    for round_ in range(8):
        writer = subprocess.Popen([sys.executable, "-c", _WRITE_FOREVER, str(filled), str(TESTS)],
                                  stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.3))  # the test's own pacing: when to pull the plug
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        ks = Keystore.open(filled)
        assert ks.get(ICCID_A).pin.reveal() == PIN_A and ks.get(ICCID_B).pin.reveal() == PIN_B, round_
        ks.set_pin(ICCID_B, Pin(PIN_B))  # always a write (a new nonce): its sweep runs
        assert bucket_names(filled) == named_files(filled), round_
        for entry in ks.entries():
            assert entry.pin is not None
