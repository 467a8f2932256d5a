"""What pairing through ModemManager costs next to the serial driver: AT
commands that reached the modem and the wall time of `mtcd once`, from the
moment mtcd starts to a link that is up (serial: `at` backend, PDP context
active; ModemManager: `modemmanager` backend, Simple.Connect done).

ModemManager's own probing before mtcd starts is counted separately: it
happens at every boot and modem appearance, whoever pairs.  Needs root and
Debian's modemmanager (tests/mmstack.py).  Prints a table; asserts nothing.

    .venv/bin/python bench/modemmanager_cost.py [--runs N]
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

import mmstack  # noqa: E402
from simfixtures import TEST_PIN, make_card, sim_modem  # noqa: E402


def pair(root: Path, port: str, iccid: str, env: dict, driver: str) -> float:
    config = root / "mtcd.toml"
    backend = "modemmanager" if driver == "modemmanager" else "at"
    config.write_text(f'state_dir = "{root / "state"}"\n[modem]\nport = "{port}"\ndriver = "{driver}"\n'
                      f'timeout = 30\n[datalink]\nbackend = "{backend}"\napn = "iot.example"\n'
                      f'[service]\ncontrol_socket = "{root / "c.sock"}"\n')
    env = {**env, "SYSTEMD_CREDENTIAL_SECRET": str(root / "host.secret")}
    base = [sys.executable, "-m"]
    subprocess.run(base + ["mtcd.cli.ctl", "--config", str(config), "pin", "set", iccid],
                   input=TEST_PIN + "\n", env=env, check=True, capture_output=True, text=True)
    start = time.monotonic()
    run = subprocess.run(base + ["mtcd.cli.daemon", "--config", str(config), "once", "--json"],
                         env=env, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - start
    if run.returncode != 0:
        raise SystemExit(f"mtcd once failed ({driver}): {run.stdout}{run.stderr}")
    return took


def serial_run(root: Path) -> tuple[int, float]:
    card = make_card()
    with sim_modem(card) as (modem, port):
        took = pair(root, port, card.iccid.value, dict(os.environ), "serial")
        return len(modem.commands), took


def mm_run(root: Path) -> tuple[int, int, float]:
    card = make_card()
    with sim_modem(card) as (modem, port):
        with mmstack.modemmanager_stack(root / "mm", [port]) as stack:
            stack.wait_for_modem()
            probing = len(modem.commands)
            took = pair(root, port, card.iccid.value, stack.env, "modemmanager")
            return probing, len(modem.commands) - probing, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    why = mmstack.missing()
    if why:
        raise SystemExit(f"cannot run ModemManager here: {why}")
    serial, mm = [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            serial.append(serial_run(Path(d)))
        with tempfile.TemporaryDirectory() as d:
            mm.append(mm_run(Path(d)))
    print("| driver | ModemManager's probe before mtcd | commands during `mtcd once` | `mtcd once` to link up (median s) |")
    print("|---|---|---|---|")
    print(f"| serial (`at` backend) | — | {serial[0][0]} | {statistics.median(t for _, t in serial):.2f} |")
    print(f"| modemmanager (`modemmanager` backend) | {mm[0][0]} | {mm[0][1]} | "
          f"{statistics.median(t for _, _, t in mm):.2f} |")


if __name__ == "__main__":
    main()
