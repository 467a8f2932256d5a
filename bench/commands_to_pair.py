"""How many AT command lines (and how long) `mtcd once` needs to pair a SIM
and bring the link up on a plain 27.007 modem, and on other personalities.

Runs the real `mtcd once` in a separate process against the simulator on a
pty, counting the command lines that reached the modem: those up to the one
that activated the PDP context ("to link up"), and those of the whole run
(the card's pairing record is read after the link is up).  A concatenated
line (`ATE0+CMEE=1`) is one round trip and counts once.

`--latency 0.05` has the simulator take 50 ms before it answers each line
(the reference modem of issue 11).  Times are taken in this process with
time.monotonic(): from just before the process is started to the moment
the simulator has answered the link's activation line, and to the end of
the process.  The modem's own share is lines x latency; the rest is mtcd's
own overhead (interpreter start, imports, parsing, file writes), compared
with the floor of 10 exchanges a pairing cannot do without.  `--show`
lists the plain modem's lines with mtcd's own time before each: from its
start to the first line, then from the simulator's answer to one line to
the arrival of the next.  mtcd runs
with its modules compiled, as from an installed package (bytecode kept in
a temporary PYTHONPYCACHEPREFIX after a warm-up run; `--no-bytecode`: as
the environment says, which in a development shell may be
PYTHONDONTWRITEBYTECODE=1, every module compiled at every start).  Prints
a table; asserts nothing about time (shared machines are noisy).

    .venv/bin/python bench/commands_to_pair.py [--runs N] [--latency S] [--show]
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
FLOOR_EXCHANGES = 10  # radio off, identity, lock, ICCID, counter, PIN, confirmation, radio on, context, activation


def child_env(bytecode: Path | None) -> dict:
    env = dict(os.environ)
    if bytecode is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(bytecode)
    return env


def one_run(options: dict, root: Path, latency: float, base_env: dict) -> dict:
    card = make_card()
    with sim_modem(card, latency=latency, **options) as (modem, port):
        config = root / "mtcd.toml"
        state = root / "state"
        config.write_text(f'state_dir = "{state}"\n[modem]\nport = "{port}"\n[datalink]\nbackend = "at"\n')
        env = {**base_env, "SYSTEMD_CREDENTIAL_SECRET": str(root / "host.secret")}
        cli = [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(config), "pin", "set", str(card.iccid)]
        subprocess.run(cli, input=TEST_PIN + "\n", text=True, check=True, capture_output=True, env=env)
        answered: list[tuple[float, str]] = []
        arrived: list[float] = []
        handle = modem.handle

        def timed(line: str) -> list[str]:
            arrived.append(time.monotonic() - modem.latency)  # the server waited `latency` before calling
            reply = handle(line)
            answered.append((time.monotonic(), line))
            return reply

        modem.handle = timed  # the pty server calls it for each line, after the latency
        first = len(modem.lines)
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "mtcd.cli.daemon", "--config", str(config), "once", "--json"],
            capture_output=True, text=True, env=env,
        )
        elapsed = time.monotonic() - start
        lines = list(modem.lines[first:])
    state_word = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr.strip()
    activation = next((i for i, line in enumerate(lines) if "+CGACT=1" in line), None)
    link_time = next((t for t, line in answered if "+CGACT=1" in line), None)
    # mtcd's own time before each line: from its start, or from the answer
    # to the line before (the simulator answers as soon as it has handled it).
    gaps = [arrived[0] - start] + [arrived[i] - answered[i - 1][0] for i in range(1, len(arrived))] if arrived else []
    return {
        "lines": lines,
        "gaps": list(zip(gaps, (line for _, line in answered))),
        "to_link": activation + 1 if activation is not None else None,
        "link_time": link_time - start if link_time is not None else None,
        "elapsed": elapsed,
        "outcome": state_word,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs for each modem (default 3)")
    parser.add_argument("--latency", type=float, default=0.0,
                        help="seconds the simulator takes before answering each line (default 0)")
    parser.add_argument("--show", action="store_true",
                        help="print the command lines of the first personality, with mtcd's own time before each")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="run as the environment says (PYTHONDONTWRITEBYTECODE), not with compiled modules")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        return measure(args, child_env(None if args.no_bytecode else Path(cache)))


def measure(args, env: dict) -> int:
    kept = "compiled modules kept" if "PYTHONPYCACHEPREFIX" in env else "as the environment says"
    print(f"load average {os.getloadavg()[0]:.2f}; simulator latency {args.latency * 1000:g} ms a line; "
          f"{args.runs} runs each, medians; bytecode: {kept}")
    with tempfile.TemporaryDirectory() as tmp:
        one_run({}, Path(tmp), 0.0, env)  # warm-up: compiles what a run imports
    print(f"{'modem':<26} {'lines to link up':>16} {'in all':>7} {'to link up':>11} {'whole run':>10}  outcome")
    for name, options in PERSONALITIES:
        runs = []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(one_run(options, Path(tmp), args.latency, env))
        last = runs[-1]
        paired = '"paired"' in last["outcome"] and '"up"' in last["outcome"]
        to_link = max(r["to_link"] or 0 for r in runs)
        link_times = [r["link_time"] for r in runs if r["link_time"] is not None]
        link_time = f"{statistics.median(link_times):.3f}s" if link_times else "-"
        print(f"{name:<26} {to_link:>16} {max(len(r['lines']) for r in runs):>7} {link_time:>11} "
              f"{statistics.median(r['elapsed'] for r in runs):>9.3f}s  "
              f"{'paired, link up' if paired else last['outcome']}")
        if args.latency and link_times:
            modem_share = to_link * args.latency
            floor = FLOOR_EXCHANGES * args.latency
            own = statistics.median(link_times) - modem_share
            print(f"{'':<26} to link up: modem {modem_share:.3f}s + mtcd's own {own:.3f}s "
                  f"({100 * own / floor:.0f} % of the floor {floor:.2f}s); "
                  f"link up at {statistics.median(link_times) / floor:.2f}x the floor")
        if args.show and name == PERSONALITIES[0][0]:
            # Median over the runs of mtcd's own time before each line.
            for i, line in enumerate(last["lines"]):
                gap = statistics.median(r["gaps"][i][0] for r in runs if len(r["gaps"]) > i)
                print(f"    {i + 1:2}. {line:<45} mtcd's own time before it: {gap * 1000:6.1f} ms")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
