"""Keystore at maintenance-gateway scale: 10,000 SIMs.

Measures, with the file sealer (other sealers add one unseal of the data
key per open: a systemd-creds or TPM call):
- open: read keystore.json and check its MAC (no entry is unsealed);
- first lookup of one SIM (its bucket read, one AES-GCM unseal) and a
  repeated one;
- one rotation's two writes (seal pending, promote): each writes the SIM's
  bucket and the manifest, re-sealing only the changed entry;
- a transaction that changes nothing (lock, read keystore.json, compare
  its bytes with the ones last loaded) and one after another process wrote
  (the same plus parsing and authenticating the new manifest);
- a decision's store work (open, lookup, attempt mark, outcome);
- the migration of a single-file store of that size by its first write;
- the files' sizes.
For each, the bytes read and written through the store's own I/O edge
(`_read_store`, `atomic_write`), per run.  Prints a table; asserts nothing
about time (machines are shared).

    .venv/bin/python bench/keystore_scale.py [--sims 10000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mtcd.keystore as keystore_module  # noqa: E402
from mtcd import keystore_buckets  # noqa: E402
from mtcd.identity import Iccid, luhn_check_digit  # noqa: E402
from mtcd.keystore import ROTATION, STAGED, Keystore  # noqa: E402
from mtcd.secret import Pin  # noqa: E402


def iccid(n: int) -> Iccid:
    body = f"89490200{n:010d}"
    return Iccid(body + str(luhn_check_digit(body)))


IO = {"read": 0, "written": 0}
_real_read, _real_write = keystore_module._read_store, keystore_module.atomic_write


def _read(path):
    raw, held = _real_read(path)
    IO["read"] += len(raw or b"")
    return raw, held


def _write(path, data, *args, **kwargs):
    IO["written"] += len(data)
    return _real_write(path, data, *args, **kwargs)


keystore_module._read_store, keystore_module.atomic_write = _read, _write


def median_time(fn, repeat: int = 7) -> tuple[float, int, int]:
    """Median seconds, and bytes read and written per run."""
    samples = []
    IO.update(read=0, written=0)
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples), IO["read"] // repeat, IO["written"] // repeat


def once(fn) -> tuple[float, int, int]:
    return median_time(fn, repeat=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=10_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        pins = [(iccid(n), Pin.generate()) for n in range(args.sims)]
        rows.append(("store %d SIMs (one write)" % args.sims, once(lambda: Keystore.open(state).set_pins(pins))))
        rows.append(("open (the manifest's MAC)", median_time(lambda: Keystore.open(state))))
        target = iccid(args.sims // 2)

        def first_lookup():
            Keystore.open(state).get(target)

        rows.append(("open + first lookup (one bucket)", median_time(first_lookup)))
        ks = Keystore.open(state)
        ks.get(target)
        rows.append(("repeated lookup", median_time(lambda: ks.get(target), repeat=1001)))

        def rotation_writes():
            ks.stage_pending(target, Pin.generate(), ROTATION)
            ks.promote_pending(target)

        rows.append(("rotation: seal pending + promote", median_time(rotation_writes)))
        ks.note_paired(target, "490154203237518")
        rows.append(("transaction, file unchanged", median_time(lambda: ks.note_paired(target, "490154203237518"))))
        other = Keystore.open(state)

        def after_another_writer():
            other.stage_pending(target, Pin.generate(), STAGED)  # an over-the-air change
            ks.note_paired(target, "490154203237518")  # reloads, writes nothing

        rows.append(("other's write + transaction (reload)", median_time(after_another_writer)))

        def decision():
            store = Keystore.open(state)
            entry = store.get(target)
            store.begin_attempt(target, attempts_before=3, presenting=entry.pin)
            store.record_accepted(target, "490154203237518")

        rows.append(("decision: open, lookup, mark, outcome", median_time(decision)))
        manifest = (state / "keystore.json").stat().st_size
        buckets = sorted(p.stat().st_size for p in (state / "keystore.d").iterdir())
        # The same SIMs in one file, as an earlier release left them, and its first write.
        single = Path(tmp) / "single"
        inline_max = keystore_buckets.INLINE_MAX
        keystore_buckets.INLINE_MAX = args.sims
        Keystore.open(single).set_pins(pins)
        keystore_buckets.INLINE_MAX = inline_max
        single_size = (single / "keystore.json").stat().st_size
        rows.append(("migration: single file's first write", once(lambda: Keystore.open(single).note_paired(
            target, "490154203237518"))))
    print(f"{'keystore, ' + str(args.sims) + ' SIMs':<38} {'median':>11} {'read':>10} {'written':>10}")
    for name, (seconds, read, written) in rows:
        print(f"{name:<38} {seconds * 1000:>8.3f} ms {read / 1e3:>7.1f} kB {written / 1e3:>7.1f} kB")
    print(f"{'manifest (keystore.json)':<38} {manifest / 1e3:>8.1f} kB")
    print(f"{'buckets: %d files, median, largest' % len(buckets):<38} {statistics.median(buckets) / 1e3:>8.1f} kB "
          f"{buckets[-1] / 1e3:>7.1f} kB")
    print(f"{'all buckets':<38} {sum(buckets) / 1e6:>8.2f} MB")
    print(f"{'the same SIMs as one file':<38} {single_size / 1e6:>8.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
