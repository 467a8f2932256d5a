"""Pairing journal at scale: `mtcctl status` and `mtcctl history` on a 50 MB journal.

Runs the real `mtcctl` (a fresh process per measurement) and prints its peak
memory (max RSS) and wall time:
- on a journal.jsonl of --size-mb written by a version without rotation and
  without a summary file (the first commands after an upgrade);
- after one more decision is journaled (rotation and the summary file, when
  the mtcd measured has them).
`--source DIR` measures another copy of the package (e.g. an older one
extracted with `git archive <commit> mtcd | tar -x -C DIR`). Asserts nothing
about time (machines are shared).

    .venv/bin/python bench/journal_scale.py [--size-mb 50] [--source DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

ICCID = "8949020000000000014"
IMEI = "359999010000015"


def decision(n: int, paired_first_only: bool = False) -> dict:
    paired = n == 1 if paired_first_only else n % 3
    return {"time": f"2026-01-01T00:00:{n % 60:02d}.000+00:00", "event": "decision",
            "outcome": "paired" if paired else "refused", "reason": None if paired else "no-sim",
            "detail": None, "imei": IMEI, "imeisv": "3599990100000101", "iccid": ICCID,
            "imsi": "26201**********", "pin_retries": None}


def write_journal(path: Path, size: int, paired_first_only: bool = False) -> int:
    """Decisions between other events; with `paired_first_only` the one
    paired decision is the first, so finding it means reading everything."""
    lines = 0
    with open(path, "wb") as f:
        while f.tell() < size:
            record = decision(lines, paired_first_only) if lines % 2 else {
                "time": "2026-01-01T00:00:00.000+00:00", "event": "pin-revealed", "iccid": ICCID, "via": "keyring"}
            f.write((json.dumps(record) + "\n").encode())
            lines += 1
    os.chmod(path, 0o600)
    return lines


def measure(argv: list[str], env: dict) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit status) of one run."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=env["PYTHONPATH"])
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, took, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=50)
    parser.add_argument("--source", type=Path, default=REPO, help="directory holding the mtcd package to measure")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(args.source.resolve()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        state = root / "state"
        state.mkdir(mode=0o700)
        config = root / "mtcd.toml"
        config.write_text(
            f'state_dir = "{state}"\n[modem]\nport = "/dev/null"\n[keystore]\nsealer = "file"\n'
            f'[service]\ncontrol_socket = "{root / "control.sock"}"\n'
        )
        lines = write_journal(state / "journal.jsonl", int(args.size_mb * 1e6))
        ctl = [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(config)]
        help_text = subprocess.run(ctl + ["history", "--help"], capture_output=True, text=True, env=env,
                                   cwd=env["PYTHONPATH"]).stdout
        history = ["history", "--limit", "50"] if "--limit" in help_text else ["history"]
        append = (
            "import sys; from mtcd.journal import PairingJournal; "
            "PairingJournal(sys.argv[1]).append('decision', outcome='paired', imei=sys.argv[2], iccid=sys.argv[3])"
        )
        rows = []
        for when in ("legacy journal, no summary", "after one more decision", "worst: paired only at start"):
            if when.startswith("worst"):
                for old in state.glob("journal*"):
                    old.unlink()
                write_journal(state / "journal.jsonl", int(args.size_mb * 1e6), paired_first_only=True)
            if when.startswith("after"):
                subprocess.run([sys.executable, "-c", append, str(state), IMEI, ICCID], check=True, env=env, cwd=env["PYTHONPATH"])
            for command in (["status"], history):
                rss, took, code = measure(ctl + command, env)
                rows.append((when, " ".join(command), rss, took, code))
        files = sorted(p.name for p in state.glob("journal*"))
    print(f"journal: {args.size_mb:g} MB, {lines} lines; mtcd from {args.source}")
    print(f"{'':<28} {'command':<20} {'max RSS':>10} {'time':>9}  exit")
    for when, command, rss, took, code in rows:
        print(f"{when:<28} {command:<20} {rss:>7.1f} MB {took:>7.2f} s  {code}")
    print("files at the end:", ", ".join(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
