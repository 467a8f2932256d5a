"""The keystore's bucketed layout: what a decision reads and writes stops growing with the store.

Why: a store of n SIMs in one file under one MAC makes every decision read
and rewrite all n entries (5.2 MB at 10,000 SIMs, three reads and two
writes per PIN presentation).  Past `INLINE_MAX` entries the store is split:

- ``keystore.json`` becomes a *manifest* (``mtcd-keystore/3``): the
  generation, the rollback counter's value (TPM2), the fan-out, and for each
  non-empty bucket its generation, entry count and the SHA-256 of its file's
  bytes, all under one HMAC (the same derived key and the same witness and
  counter rules as the single file);
- ``keystore.d/<bb>-<digest>.json`` holds the entries whose ICCID falls in
  bucket ``bb`` (an HMAC of the ICCID under a key derived from the data key,
  modulo the fan-out of 256).  The file name carries the first 128 bits of
  its own digest, so a name is never reused for other bytes.

Each entry is sealed exactly as before (AES-GCM, the ICCID as associated
data): only where it is kept changes.

Per decision, with n entries and fan-out B: the manifest (about 70 bytes a
bucket: fixed) is read at open and at each transaction, and written once per
change; one bucket (n/B entries of about 500 bytes) is read once and written
once per change.  At n = 10,000 that is about 18 KB + 20 KB against 5.2 MB.
It still grows with n, with slope 1/B: O(B + n/B), constant for the fleets
this serves (20 KB a bucket at 10,000; 200 KB at 100,000).  A store of at
most INLINE_MAX entries stays a single ``mtcd-keystore/2`` file, because
there one file is cheaper than three (bucket, manifest, witness) and is the
format older releases read.

Rollback: the manifest is what the witness file and the TPM counter vouch
for, exactly as the single file was; each bucket is vouched for by the
digest the authenticated manifest holds for it.  An older copy of one bucket
put back no longer matches that digest (refused: an older copy put back when
its own generation is lower, damaged otherwise); an older manifest put back
is older than the witness or the counter (refused before any bucket is read).
A bucket is checked when it is first read, before any of its entries is
used; entries of other buckets are never read for a decision.

Crash safety: a change writes the new bucket files under new names (temp,
fsync, rename, fsync keystore.d), then the manifest (temp, fsync, rename,
fsync the state directory: the commit point), then the witness, then the
TPM counter, and only then deletes the bucket files the manifest no longer
names.  A cut before the manifest's rename leaves the old manifest naming the
old buckets, all still there: the old state.  A cut after it leaves the new
state.  Files no manifest names (left by a cut) are deleted under the lock by
the next write, once the state directory is synced (the manifest that no
longer names them durable), through a descriptor on keystore.d that is
never a symlink (the sweep would otherwise delete wherever it points).  Migration from the single file is the same commit: every
bucket written first, then ``keystore.json`` replaced by the manifest, so the
single file is kept, whole, until the bucketed store is complete.

Concurrency: unchanged, every change is a transaction under keystore.lock
that first compares the manifest's bytes with the ones last loaded.  A
reader outside the lock that finds a bucket file gone (another process
committed and deleted it meanwhile) looks again under the lock.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import KeystoreError
from .mac import hmac_sha256, sha256

MANIFEST_FORMAT = "mtcd-keystore/3"
BUCKET_FORMAT = "mtcd-keystore-bucket/1"
BUCKET_DIR = "keystore.d"
FANOUT = 256
# A store with at most this many entries stays one file (mtcd-keystore/2).
INLINE_MAX = 64
_NAME_DIGEST_HEX = 32  # 128 bits of the digest in each bucket file's name


@dataclass(frozen=True)
class BucketRef:
    """What the manifest says of one bucket file."""

    generation: int
    count: int
    digest: bytes  # SHA-256 of the file's bytes

    def name(self, index: int) -> str:
        return f"{index:02x}-{self.digest.hex()[:_NAME_DIGEST_HEX]}.json"


@dataclass(frozen=True)
class Manifest:
    fanout: int
    buckets: dict[int, BucketRef]

    @property
    def count(self) -> int:
        return sum(ref.count for ref in self.buckets.values())


def bucket_key(key: bytes) -> bytes:
    return hmac_sha256(key, [b"mtcd-keystore/3 bucket"])


def bucket_of(bkey: bytes, iccid_value: str, fanout: int) -> int:
    """Keyed, so no one choosing ICCIDs can pile them into one bucket."""
    digest = hmac_sha256(bkey, [iccid_value.encode()])
    return int.from_bytes(digest[:4], "big") % fanout


def manifest_mac(mac_key: bytes, manifest: Manifest, generation: int, counted: int | None) -> bytes:
    parts = [MANIFEST_FORMAT.encode(), generation.to_bytes(8, "big"),
             b"\0" if counted is None else b"\1" + counted.to_bytes(8, "big"),
             manifest.fanout.to_bytes(4, "big")]
    for index in sorted(manifest.buckets):
        ref = manifest.buckets[index]
        parts.append(index.to_bytes(4, "big") + ref.generation.to_bytes(8, "big")
                     + ref.count.to_bytes(8, "big") + ref.digest)
    return hmac_sha256(mac_key, parts)


def encode_manifest(manifest: Manifest, generation: int, counted: int | None, mac: bytes) -> bytes:
    doc = {
        "format": MANIFEST_FORMAT,
        "generation": generation,
        "fanout": manifest.fanout,
        "buckets": {f"{i:02x}": [ref.generation, ref.count, _b64(ref.digest)]
                    for i, ref in sorted(manifest.buckets.items())},
        "mac": _b64(mac),
    }
    if counted is not None:
        doc["counter"] = counted
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def parse_manifest(path: Path, doc: dict) -> tuple[Manifest, int, int | None, bytes]:
    """The manifest, generation, counter value and MAC of a parsed
    keystore.json in MANIFEST_FORMAT, checked for shape (not authenticity)."""
    damaged = KeystoreError(f"{path} is damaged: unexpected layout")
    if set(doc) - {"counter"} != {"format", "generation", "fanout", "buckets", "mac"}:
        raise damaged
    generation, fanout, counted = doc["generation"], doc["fanout"], doc.get("counter")
    if type(generation) is not int or not 0 < generation < 2**63:
        raise damaged
    if type(fanout) is not int or not 1 <= fanout <= 4096:
        raise damaged
    if "counter" in doc and (type(counted) is not int or not 0 <= counted < 2**64):
        raise damaged
    if not isinstance(doc["buckets"], dict):
        raise damaged
    buckets = {}
    try:
        mac = base64.b64decode(doc["mac"], validate=True)
        for name, item in doc["buckets"].items():
            index = int(name, 16)
            bucket_generation, count, digest = item
            digest = base64.b64decode(digest, validate=True)
            if not (0 <= index < fanout and name == f"{index:02x}" and type(bucket_generation) is int
                    and 0 < bucket_generation <= generation and type(count) is int and 0 < count < 2**32
                    and len(digest) == 32):
                raise ValueError
            buckets[index] = BucketRef(bucket_generation, count, digest)
    except (TypeError, ValueError, binascii.Error):
        raise damaged from None
    return Manifest(fanout, buckets), generation, counted, mac


def encode_bucket(index: int, generation: int, entries_doc: dict) -> bytes:
    doc = {"format": BUCKET_FORMAT, "bucket": index, "generation": generation, "entries": entries_doc}
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def bucket_doc(path: Path, raw: bytes) -> dict | None:
    """The bucket file's fields, or None when it is not one (only read once
    its digest was checked, or to say how old a mismatching copy is)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or set(doc) != {"format", "bucket", "generation", "entries"} \
            or doc["format"] != BUCKET_FORMAT or type(doc["generation"]) is not int \
            or type(doc["bucket"]) is not int or not isinstance(doc["entries"], dict):
        return None
    return doc


def digest(raw: bytes) -> bytes:
    return sha256(raw)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
