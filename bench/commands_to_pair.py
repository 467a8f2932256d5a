"""How many AT commands (and how long) `mtcd once` needs to pair a SIM and
bring the link up on a plain 27.007 modem, and on other personalities.

Runs the real `mtcd once` in a separate process against the simulator on a
pty, counting the command lines that reached the modem.  Prints a table;
asserts nothing about time (shared machines are noisy).

    .venv/bin/python bench/commands_to_pair.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from simfixtures import TEST_PIN, make_card, sim_modem  # noqa: E402

PERSONALITIES = [
    ("plain 27.007", {}),
    ("no +CPINR (CSIM counter)", {"has_cpinr": False}),
    ("Quectel", {"vendor": "quectel"}),
    ("Huawei, no +CPINR", {"vendor": "huawei", "has_cpinr": False}),
    ("plain, no concatenation", {"concatenation": False}),
]


def one_run(options: dict, root: Path) -> tuple[int, float, list[str], str]:
    card = make_card()
    with sim_modem(card, **options) as (modem, port):
        config = root / "mtcd.toml"
        state = root / "state"
        config.write_text(f'state_dir = "{state}"\n[modem]\nport = "{port}"\n[datalink]\nbackend = "at"\n')
        env = {**os.environ, "SYSTEMD_CREDENTIAL_SECRET": str(root / "host.secret")}
        cli = [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(config), "pin", "set", str(card.iccid)]
        subprocess.run(cli, input=TEST_PIN + "\n", text=True, check=True, capture_output=True, env=env)
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "mtcd.cli.daemon", "--config", str(config), "once", "--json"],
            capture_output=True, text=True, env=env,
        )
        elapsed = time.monotonic() - start
        state_word = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()
        # Command lines, one per round trip: a concatenated line (ATE0+CMEE=1)
        # counts once, though the simulator logs each of its commands.
        return len(modem.lines), elapsed, list(modem.lines), state_word


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--show", action="store_true", help="print the command lines of the first personality")
    args = parser.parse_args()
    print(f"{'modem':<28} {'AT lines':>11} {'wall time (median)':>20}  outcome")
    for name, options in PERSONALITIES:
        counts, times = [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                n, t, seq, outcome = one_run(options, Path(tmp))
            counts.append(n)
            times.append(t)
        paired = '"paired"' in outcome and '"up"' in outcome
        print(f"{name:<28} {max(counts):>11} {statistics.median(times):>19.2f}s  {'paired, link up' if paired else outcome}")
        if args.show and name == PERSONALITIES[0][0]:
            for i, c in enumerate(seq, 1):
                print(f"    {i:2}. {c}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
