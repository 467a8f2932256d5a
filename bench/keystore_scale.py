"""Keystore at maintenance-gateway scale: 10,000 SIMs.

Measures, with the file sealer (other sealers add one unseal of the data
key per open: a systemd-creds or TPM call):
- open: read the file and check its MAC (no entry is unsealed);
- first lookup of one SIM (one AES-GCM unseal) and a repeated one;
- one rotation's two writes (seal pending, promote): each rewrites the
  store once, re-sealing only the changed entry;
- a transaction that changes nothing (lock, read the file, compare its
  bytes with the ones last loaded) and one after another process wrote
  (the same plus parsing and authenticating the new file);
- the file's size.
Prints a table; asserts nothing about time (machines are shared).

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

from mtcd.identity import Iccid, luhn_check_digit  # noqa: E402
from mtcd.keystore import ROTATION, STAGED, Keystore  # noqa: E402
from mtcd.secret import Pin  # noqa: E402


def iccid(n: int) -> Iccid:
    body = f"89490200{n:010d}"
    return Iccid(body + str(luhn_check_digit(body)))


def median_time(fn, repeat: int = 7) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=10_000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        start = time.perf_counter()
        Keystore.open(state).set_pins([(iccid(n), Pin.generate()) for n in range(args.sims)])
        rows.append(("store %d SIMs (one write)" % args.sims, time.perf_counter() - start))
        rows.append(("open (MAC over every entry)", median_time(lambda: Keystore.open(state))))
        target = iccid(args.sims // 2)

        def first_lookup():
            Keystore.open(state).get(target)

        rows.append(("open + first lookup", median_time(first_lookup)))
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
        size = (state / "keystore.json").stat().st_size
    print(f"{'keystore, ' + str(args.sims) + ' SIMs':<36} {'median':>10}")
    for name, seconds in rows:
        print(f"{name:<36} {seconds * 1000:>8.3f} ms")
    print(f"{'file size':<36} {size / 1e6:>8.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
