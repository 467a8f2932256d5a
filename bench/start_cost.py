"""What starting `mtcd` and `mtcctl` costs before any modem is opened: wall
time and peak memory (max RSS) of --help, a usage error, a configuration
error and offline `mtcctl` commands, each the median of several runs.

Measures, asserts nothing (shared machines are noisy); BENCHMARKS.md keeps
the figures.  The offline commands run on a store holding one PIN (file
sealer) and a journal holding one decision, so `pin list` unseals an entry
and `status` reads the summary.  By default the package's bytecode is
compiled once into a private cache first, as an installed package has it;
`--no-bytecode` compiles every module at every start instead (what a
checkout with PYTHONDONTWRITEBYTECODE=1 pays: more memory and time).  Which modules each path imports is checked by
tests/test_light_start.py.

    .venv/bin/python bench/start_cost.py [--runs N] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rusage  # noqa: E402

BIN = Path(sys.executable).parent


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, max RSS in MiB), started from bench/rusage.py's small launcher:
    from this script directly, a command's peak would include this script's
    own memory, which fork and exec carry over."""
    done = rusage.measure(argv, env)
    return done["wall"], done["rss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default 7)")
    parser.add_argument("--no-bytecode", action="store_true", help="no bytecode cache: compile at every start")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "mtcd.toml"
        config.write_text(f'state_dir = "{root / "state"}"\n[modem]\nport = "/dev/null"\n[keystore]\nsealer = "file"\n'
                          f'[service]\ncontrol_socket = "{root / "control.sock"}"\n')
        env = {**os.environ, "SYSTEMD_CREDENTIAL_SECRET": str(root / "host.secret")}
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        subprocess.run([str(BIN / "mtcctl"), "--config", str(config), "pin", "set", "8949020000000000014"],
                       input=b"1234\n", env=env, check=True, capture_output=True)
        subprocess.run([sys.executable, "-c", "import sys; from mtcd.journal import PairingJournal; "
                        "PairingJournal(sys.argv[1]).append('decision', outcome='paired', iccid='8949020000000000014')",
                        str(root / "state")], env=env, check=True)
        cases = [
            ("python -c pass (floor)", [sys.executable, "-c", "pass"]),
            ("mtcd --help", [str(BIN / "mtcd"), "--help"]),
            ("mtcd once --bogus (usage error)", [str(BIN / "mtcd"), "once", "--bogus"]),
            ("mtcd (missing config)", [str(BIN / "mtcd"), "--config", str(root / "none.toml"), "once"]),
            ("mtcctl --help", [str(BIN / "mtcctl"), "--help"]),
            ("mtcctl pin --bogus (usage error)", [str(BIN / "mtcctl"), "pin", "--bogus"]),
            ("mtcctl pin list (offline)", [str(BIN / "mtcctl"), "--config", str(config), "pin", "list"]),
            ("mtcctl status (offline)", [str(BIN / "mtcctl"), "--config", str(config), "status"]),
            ("mtcctl history (offline)", [str(BIN / "mtcctl"), "--config", str(config), "history"]),
        ]
        print(f"{'command':<34} {'wall (median)':>13} {'max RSS (median)':>17}")
        for name, argv in cases:
            measure(argv, env)  # fills the bytecode cache
            runs = [measure(argv, env) for _ in range(args.runs)]
            wall = statistics.median(r[0] for r in runs)
            rss = statistics.median(r[1] for r in runs)
            print(f"{name:<34} {wall * 1000:>10.0f} ms {rss:>13.1f} MiB")


if __name__ == "__main__":
    main()
