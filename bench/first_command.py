"""Start to first AT command: how long the real `mtcd once` and `mtcd run`
take from their start to the first command reaching the modem.

Method.  The simulator serves a modem on a pty in this process
(mtcd.sim.pty.PtyModemServer).  Its server thread reads the pty's master
side and hands each command line to `_serve_line` as soon as the line's
carriage return has arrived; this script wraps that method to take
time.monotonic() at its entry.  mtcd writes a command in one write(), so
the first byte and the carriage return arrive together (one read).  The
start is time.monotonic() taken just before subprocess.Popen, so the time
includes fork and exec of the interpreter (a few ms), Python's own start
and every import and file read mtcd does before it talks to the modem.
Both clocks are this process's monotonic clock.

Bytecode: a gateway runs mtcd from an installed package, compiled when it
was installed; a development shell may say PYTHONDONTWRITEBYTECODE=1, and
then every start compiles every module from source (about 60 % more CPU
before the first command here).  So the children run with bytecode kept
in a temporary PYTHONPYCACHEPREFIX, after one warm-up run that is not
counted (`--no-bytecode`: as the environment says).

The CPU time the process used until that moment (all threads, from
/proc/PID/task/*/schedstat, read before the simulator answers) is printed
too: on a loaded machine the wall time also holds the time spent waiting
for a core, which the CPU time does not.

Each run starts a fresh process with a stored PIN for the simulator's card
(as a gateway boots), and stops it once the first command has arrived
(`mtcd run` by SIGTERM; `mtcd once` is let finish).  Prints the median,
the spread (min-max) and the load average; asserts nothing (machines are
shared and noisy).

`--imports` also prints the modules mtcd has imported when it sends its
first command: a run with `-X importtime` is stopped (SIGSTOP) as the
simulator sees that command, and the import lines written until then are
read.

    .venv/bin/python bench/first_command.py [--runs 15] [--imports]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from simfixtures import TEST_PIN, make_card  # noqa: E402

from mtcd.sim.modem import SimulatedModem  # noqa: E402
from mtcd.sim.pty import PtyModemServer  # noqa: E402


class TimedServer(PtyModemServer):
    """The simulator's pty server, noting when the first command line arrived."""

    def __init__(self, modem: SimulatedModem):
        super().__init__(modem)
        self.first_line_at: float | None = None
        self.arrived = threading.Event()
        self.freeze: int | None = None  # a PID to stop (SIGSTOP) as the first line arrives
        self.pid: int | None = None  # the process whose CPU time is read then
        self.cpu_before: float | None = None

    def _serve_line(self, raw: bytes) -> None:
        if self.first_line_at is None and raw.strip(b"\r\n \t"):
            self.first_line_at = time.monotonic()
            if self.pid is not None:
                # The client waits for this answer, which is not sent yet.
                self.cpu_before = cpu_of(self.pid)
            if self.freeze is not None:
                os.kill(self.freeze, signal.SIGSTOP)
            self.arrived.set()
        super()._serve_line(raw)


def child_env(bytecode: Path | None) -> dict:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    if bytecode is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(bytecode)
    return env


def cpu_of(pid: int) -> float:
    """CPU seconds the process has used so far (all its threads), from
    /proc/PID/task/TID/schedstat: nanoseconds, unlike the ticks of /proc/PID/stat."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int(Path(task, "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            pass
    return total / 1e9


def one_run(command: str, root: Path, base_env: dict, importtime: bool = False) -> tuple[float, float, str]:
    """Seconds from the start of `mtcd <command>` to its first AT command,
    the CPU seconds it used until then, and with `importtime`, its stderr
    up to that moment."""
    card = make_card()
    with TimedServer(SimulatedModem(card)) as server:
        config = root / "mtcd.toml"
        config.write_text(
            f'state_dir = "{root / "state"}"\n[modem]\nport = "{server.port}"\n[datalink]\nbackend = "at"\n'
            f'[service]\ncontrol_socket = "{root / "control.sock"}"\n'
        )
        env = {**base_env, "SYSTEMD_CREDENTIAL_SECRET": str(root / "host.secret")}
        subprocess.run([sys.executable, "-m", "mtcd.cli.ctl", "--config", str(config), "pin", "set",
                        str(card.iccid)], input=TEST_PIN + "\n", text=True, check=True, capture_output=True, env=env)
        python = [sys.executable, "-X", "importtime"] if importtime else [sys.executable]
        stderr = open(root / "stderr", "w+")
        start = time.monotonic()
        proc = subprocess.Popen([*python, "-m", "mtcd.cli.daemon", "--config", str(config), command],
                                stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        server.pid = proc.pid
        if importtime:
            server.freeze = proc.pid  # what it imported until then, nothing after
        try:
            if not server.arrived.wait(30):
                raise SystemExit(f"mtcd {command} sent no command within 30 s")
            seen, cpu = server.first_line_at - start, server.cpu_before
            upto = ""
            if importtime:
                upto = Path(root / "stderr").read_text()  # written as each import ends
                os.kill(proc.pid, signal.SIGCONT)
        finally:
            if command == "run":
                proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            stderr.close()
    return seen, cpu, upto


def imported_before(importtime_log: str) -> list[str]:
    """Top-level modules (and their cumulative import time) from -X importtime."""
    rows = []
    for line in importtime_log.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if not name.startswith("  "):  # nested imports are indented further
            rows.append((int(cumulative), name.strip()))
    return [f"{us / 1000:7.1f} ms  {name}" for us, name in sorted(rows, reverse=True)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (default 15)")
    parser.add_argument("--imports", action="store_true",
                        help="also list the modules imported before the first command, with their import time")
    parser.add_argument("--no-bytecode", action="store_true",
                        help="run as the environment says (PYTHONDONTWRITEBYTECODE), not with compiled modules")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        return measure(args, child_env(None if args.no_bytecode else Path(cache)))


def measure(args, env: dict) -> int:
    kept = "compiled modules kept" if "PYTHONPYCACHEPREFIX" in env else "as the environment says"
    print(f"load average {os.getloadavg()[0]:.2f} at the start; {args.runs} runs each; bytecode: {kept}")
    with tempfile.TemporaryDirectory() as tmp:
        one_run("run", Path(tmp), env)  # warm-up: compiles what a run imports
    for command in ("once", "run"):
        times, cpus = [], []
        for _ in range(args.runs):
            with tempfile.TemporaryDirectory() as tmp:
                seen, cpu, _ = one_run(command, Path(tmp), env)
            times.append(seen)
            cpus.append(cpu)
        times.sort()
        cpus.sort()
        print(f"mtcd {command:<5} start to first AT command: median {statistics.median(times) * 1000:.0f} ms "
              f"(min {times[0] * 1000:.0f}, max {times[-1] * 1000:.0f}); its CPU time until then: median "
              f"{statistics.median(cpus) * 1000:.0f} ms (min {cpus[0] * 1000:.0f}, max {cpus[-1] * 1000:.0f})")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if args.imports:
        with tempfile.TemporaryDirectory() as tmp:
            _, _, log = one_run("once", Path(tmp), env, importtime=True)
        lines = log.splitlines()
        names = {line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:")}
        print(f"modules imported before the first command of `mtcd once`: {len(names)}; "
              "the top-level imports by cumulative time (with -X importtime's own cost):")
        print("\n".join(imported_before(log)[:25]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
