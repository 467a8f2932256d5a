"""Idle CPU of `mtcd run` while paired, over 60 s (or --seconds).

Starts the simulator on a pty and the real `mtcd run` in its own process,
waits until it is paired with the link up, then reads the service's CPU
time (utime + stime from /proc/PID/stat) at the start and end of the idle
window.  The simulator runs in this process, so its own CPU is not counted.
Prints the result; asserts nothing (machines are shared and noisy).

    .venv/bin/python bench/idle_cpu.py [--seconds 60] [--check-interval 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from simfixtures import TEST_PIN, make_card, sim_modem  # noqa: E402


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--check-interval", type=float, default=2.0)
    parser.add_argument("--no-concatenation", action="store_true",
                        help="a modem that refuses several commands on one line")
    args = parser.parse_args()
    card = make_card()
    with tempfile.TemporaryDirectory() as tmp, sim_modem(card, concatenation=not args.no_concatenation) as (modem, port):
        root = Path(tmp)
        config = root / "mtcd.toml"
        config.write_text(
            f'state_dir = "{root / "state"}"\n[modem]\nport = "{port}"\n'
            f'[service]\ncheck_interval = {args.check_interval}\ncontrol_socket = "{root / "control.sock"}"\n'
        )
        env = {**os.environ, "SYSTEMD_CREDENTIAL_SECRET": str(root / "host.secret")}
        subprocess.run([sys.executable, "-m", "mtcd.cli.ctl", "--config", str(config), "pin", "set", str(card.iccid)],
                       input=TEST_PIN + "\n", text=True, check=True, capture_output=True, env=env)
        proc = subprocess.Popen([sys.executable, "-m", "mtcd.cli.daemon", "--config", str(config), "run"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            deadline = time.monotonic() + 60
            while not modem.pdp_active:
                if time.monotonic() > deadline or proc.poll() is not None:
                    print("the service did not pair", file=sys.stderr)
                    return 1
                time.sleep(0.1)
            time.sleep(1.0)  # let start-up settle
            commands_before, lines_before = len(modem.commands), len(modem.lines)
            cpu_before, wall_before = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.seconds)
            cpu_used, wall = cpu_seconds(proc.pid) - cpu_before, time.monotonic() - wall_before
            commands = len(modem.commands) - commands_before
            lines = len(modem.lines) - lines_before
            sample = modem.lines[-1] if lines else "none"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    print(f"idle window            {wall:.1f} s, paired, link up, check every {args.check_interval:g} s")
    print(f"service CPU time       {cpu_used * 1000:.0f} ms  ({100 * cpu_used / wall:.2f} % of one core)")
    print(f"AT command lines sent  {lines} ({lines / wall * 60:.0f} per minute), e.g. {sample}")
    print(f"AT commands in them    {commands} ({commands / wall * 60:.0f} per minute)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
