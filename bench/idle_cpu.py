"""Idle CPU of `mtcd run` while paired, over 300 s (or --seconds).

Starts the simulator on a pty and the real `mtcd run` in its own process,
waits until it is paired with the link up, then reads the service's CPU
time at the start and end of the idle window, two ways:

- utime + stime from /proc/PID/stat, counted in clock ticks (10 ms here):
  over 300 s one tick is 0.003 % of a core, so 0.05 % is about 15 ticks;
- the run time in /proc/PID/task/TID/schedstat, in nanoseconds, for each
  thread, with the number of times the thread was scheduled: a thread that
  wakes without need shows there as many short runs.  Only threads alive
  at both ends are in it; a thread that started and ended in the window
  (one per command, say) is counted in the first figure only, so a gap
  between the two points at such threads.

The main thread is told apart by its TID; the others are listed by TID
(Python 3.11 does not give the kernel its thread names).  The simulator runs in this process, so its
own CPU is not counted.  Also prints the load average at the start and the
end.  Asserts nothing (machines are shared and noisy).

    .venv/bin/python bench/idle_cpu.py [--seconds 300] [--check-interval 2] [--no-concatenation]
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
    """utime + stime of the whole process, in seconds (tick resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def thread_runs(pid: int) -> dict[int, tuple[int, int]]:
    """{TID: (nanoseconds on a CPU, times scheduled)} of every live thread."""
    runs = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            on_cpu, _waited, slices = Path(task, "schedstat").read_text().split()
        except (OSError, ValueError):
            continue  # the thread ended between the listing and the read
        runs[int(task.name)] = (int(on_cpu), int(slices))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="length of the idle window (default 300)")
    parser.add_argument("--check-interval", type=float, default=2.0, help="service.check_interval (default 2)")
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
            time.sleep(5.0)  # let start-up settle (the card's record, the first checks)
            load_before = os.getloadavg()
            commands_before, lines_before = len(modem.commands), len(modem.lines)
            runs_before = thread_runs(proc.pid)
            cpu_before, wall_before = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(args.seconds)
            cpu_used, wall = cpu_seconds(proc.pid) - cpu_before, time.monotonic() - wall_before
            runs_after = thread_runs(proc.pid)
            load_after = os.getloadavg()
            commands = len(modem.commands) - commands_before
            lines = len(modem.lines) - lines_before
            sample = modem.lines[-1] if lines else "none"
            alive = proc.poll() is None
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    if not alive:
        print("the service ended during the idle window", file=sys.stderr)
        return 1
    print(f"idle window            {wall:.1f} s, paired, link up, check every {args.check_interval:g} s")
    print(f"load average           {load_before[0]:.2f} at the start, {load_after[0]:.2f} at the end")
    print(f"service CPU (ticks)    {cpu_used * 1000:.0f} ms  ({100 * cpu_used / wall:.3f} % of one core)")
    total_ns, total_slices = 0, 0
    rows = []
    for tid, (ns_after, slices_after) in sorted(runs_after.items()):
        ns_before, slices_before = runs_before.get(tid, (0, 0))
        ns, slices = ns_after - ns_before, slices_after - slices_before
        total_ns, total_slices = total_ns + ns, total_slices + slices
        name = "main" if tid == proc.pid else f"thread {tid}"
        rows.append(f"  {name:<20} {ns / 1e6:8.1f} ms  {slices / wall:6.1f} runs/s")
    print(f"service CPU (schedstat) {total_ns / 1e6:.1f} ms  ({100 * total_ns / 1e9 / wall:.4f} % of one core), "
          f"{total_slices / wall:.1f} runs/s; per thread:")
    print("\n".join(rows))
    print(f"AT command lines sent  {lines} ({lines / wall * 60:.0f} per minute), e.g. {sample}")
    print(f"AT commands in them    {commands} ({commands / wall * 60:.0f} per minute)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
