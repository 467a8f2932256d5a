"""One pairing decision, and the mtcctl paths, on a 10,000-SIM store and a large journal.

Runs the real `mtcd once` (a stored PIN, the SIM asking for it, the link
brought up with the `at` backend) against the simulator on a pty, and the
real `mtcctl` commands, each in a fresh process, in three state directories:

- empty: the store holds only the inserted SIM's PIN, no journal;
- at scale, first decision: 10,000 other SIMs in the store and a
  --journal-mb journal.jsonl left by a version without rotation or summary
  file (the first start after an upgrade);
- at scale, steady: the same after that first decision (the journal rotated,
  its summary file written).

For each it prints wall time, peak memory (max RSS, through bench/rusage.py's
small launcher) and the bytes the process read and wrote through system
calls (/proc/PID/io rchar and wchar:
files, the pty and the interpreter's own module files alike, so compare
rows rather than read them alone).  Work that grows with the store or the
journal shows up there, whatever the machine's speed.  Asserts nothing:
tests/test_scale_work.py counts the work per decision.

    .venv/bin/python bench/scale_decision.py [--sims 10000] [--journal-mb 50] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rusage import measure as run  # noqa: E402
from simfixtures import TEST_PIN, make_card, sim_modem  # noqa: E402

from mtcd.identity import Iccid, luhn_check_digit  # noqa: E402
from mtcd.keystore import Keystore  # noqa: E402
from mtcd.secret import Pin  # noqa: E402


def other_iccid(n: int) -> Iccid:
    body = f"89490299{n:010d}"
    return Iccid(body + str(luhn_check_digit(body)))


def write_legacy_journal(path: Path, size: int, iccid: str) -> None:
    """Decisions between other events, as a version without rotation left them."""
    with open(path, "wb") as f:
        n = 0
        while f.tell() < size:
            if n % 2:
                record = {"time": "2026-01-01T00:00:00.000+00:00", "event": "decision",
                          "outcome": "paired" if n % 3 else "refused", "reason": None if n % 3 else "no-sim",
                          "imei": "359999010000015", "iccid": iccid, "imsi": "26201**********"}
            else:
                record = {"time": "2026-01-01T00:00:00.000+00:00", "event": "pin-revealed", "iccid": iccid,
                          "via": "keyring"}
            f.write((json.dumps(record) + "\n").encode())
            n += 1
    os.chmod(path, 0o600)


def configure(config: Path, state: Path, port: str) -> None:
    config.write_text(
        f'state_dir = "{state}"\n[modem]\nport = "{port}"\n[keystore]\nsealer = "file"\n'
        f'[datalink]\nbackend = "at"\n[service]\ncontrol_socket = "{config.parent / "control.sock"}"\n')


def decide(config: Path, state: Path, env: dict) -> dict:
    """One `mtcd once` on a freshly powered modem: the SIM asks for its PIN,
    so the decision presents it (the keystore's attempt mark and outcome
    written) and journals itself."""
    with sim_modem(make_card()) as (modem, port):
        configure(config, state, port)
        return run([sys.executable, "-m", "mtcd.cli.daemon", "--config", str(config), "once", "--json"], env)


def median(runs: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in runs) if k != "code" else max(r[k] for r in runs) for k in runs[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=10_000, help="other SIMs in the store (default 10000)")
    parser.add_argument("--journal-mb", type=float, default=50, help="legacy journal size (default 50)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each steady measurement (default 3)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    rows = []
    iccid = str(make_card().iccid)
    with tempfile.TemporaryDirectory() as tmp:
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")  # as an installed package: bytecode compiled once
        for scale in ("empty", "at scale"):
            root = Path(tmp) / scale.replace(" ", "-")
            state = root / "state"
            config = root / "mtcd.toml"
            root.mkdir()
            configure(config, state, "/dev/null")
            store = Keystore.open(state)
            pins = [(Iccid(iccid), Pin(TEST_PIN))]
            if scale == "at scale":
                pins += [(other_iccid(n), Pin.generate()) for n in range(args.sims)]
            store.set_pins(pins)
            if scale == "at scale":
                write_legacy_journal(state / "journal.jsonl", int(args.journal_mb * 1e6), iccid)
            ctl = [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(config)]
            run(ctl + ["--help"], env)  # fills the bytecode cache
            rows.append((scale, "mtcd once (first decision)", decide(config, state, env)))
            rows.append((scale, "mtcd once", median([decide(config, state, env) for _ in range(args.runs)])))
            steady = [("mtcctl status", ctl + ["status"], None),
                      ("mtcctl history --limit 10", ctl + ["history", "--limit", "10"], None),
                      ("mtcctl pin set ICCID (one SIM)", ctl + ["pin", "set", iccid], TEST_PIN + "\n"),
                      ("mtcctl pin list (every SIM)", ctl + ["pin", "list"], None)]
            for name, argv, stdin in steady:
                rows.append((scale, name, median([run(argv, env, stdin) for _ in range(args.runs)])))
            size = (state / "keystore.json").stat().st_size
            buckets = sum(p.stat().st_size for p in state.glob("keystore.d/*"))
            journal = sum(p.stat().st_size for p in state.glob("journal.jsonl*"))
            rows.append((scale, f"(keystore.json {size / 1e6:.3f} MB, keystore.d {buckets / 1e6:.2f} MB, "
                                f"journal files {journal / 1e6:.1f} MB)", None))
    load = os.getloadavg()
    print(f"{args.sims} other SIMs, {args.journal_mb:g} MB legacy journal; load average {load[0]:.1f} {load[1]:.1f}")
    print(f"{'state':<9} {'command':<32} {'wall':>8} {'max RSS':>10} {'read':>10} {'written':>10}  exit")
    for scale, name, r in rows:
        if r is None:
            print(f"{scale:<9} {name}")
            continue
        print(f"{scale:<9} {name:<32} {r['wall']:>6.2f} s {r['rss']:>6.1f} MiB {r['read'] / 1e6:>7.2f} MB "
              f"{r['written'] / 1e6:>7.2f} MB  {r['code']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
