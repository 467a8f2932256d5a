"""Many writers at once on a 10,000-SIM store: no write that succeeded is lost.

Every writer is its own process, as on a gateway: `mtcctl pin set / stage /
forget` as real CLI processes with the PIN on stdin, and processes doing what
the service and a rotation do through the Python API (recording a rejection,
sealing a pending PIN and promoting it).  Afterwards every write whose
process exited 0 must be in the store (guarantees 1 and 5: a lost rejection
latch re-presents a refused PIN, a lost pending PIN leaves the card holding a
PIN nobody has).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import Gateway
from mtcd.identity import Iccid
from mtcd.secret import Pin
from simfixtures import make_iccid

PREFILLED = 10_000
# Writers of each kind, each on SIMs of its own.
CLI_KINDS = ("set", "stage", "forget")
API_KINDS = ("reject", "rotate", "rotation-cut")
PER_KIND = 8

# One process doing what the service (a rejection) or a rotation (seal the
# pending PIN before the card is asked; promote it once the card took it)
# does to the keystore.
API_WRITER = r"""
import sys
from mtcd.config import load_config
from mtcd.identity import Iccid
from mtcd.keystore import ROTATION
from mtcd.sealers import open_keystore
from mtcd.secret import Pin

config = load_config(sys.argv[1])
kind, iccid = sys.argv[2], Iccid(sys.argv[3])
keystore = open_keystore(config.state_dir, config.keystore.sealer)[0]
if kind == "reject":
    keystore.record_rejected(iccid, presented=keystore.get(iccid).pin)
else:
    keystore.stage_pending(iccid, Pin(sys.stdin.readline().strip()), ROTATION)
    if kind == "rotate":
        keystore.promote_pending(iccid)
"""


def prefilled_iccid(n: int) -> Iccid:
    return Iccid(make_iccid(n + 1))


@pytest.fixture(scope="module")
def big_store(tmp_path_factory) -> Gateway:
    """10,000 SIMs, built once for the module (one write)."""
    gateway = Gateway(tmp_path_factory.mktemp("big"))
    configure(gateway)
    pins = [(prefilled_iccid(n), Pin(f"{n % 10000:04d}")) for n in range(PREFILLED)]
    gateway.keystore().set_pins(pins)
    return gateway


@pytest.fixture
def gateway(big_store, tmp_path) -> Gateway:
    """A copy of the big store (and its host secret) for one test."""
    gateway = Gateway(tmp_path)
    shutil.copytree(big_store.state_dir, gateway.state_dir)
    configure(gateway)
    return gateway


def configure(gateway: Gateway) -> None:
    # No modem is needed.  The file sealer: the race is in the store, and a
    # systemd-creds call per process would only slow every writer down.
    gateway.configure("/dev/null")
    with gateway.config.open("a") as config:
        config.write('[keystore]\nsealer = "file"\n')


def start(gateway: Gateway, kind: str, iccid: Iccid, pin: str | None) -> subprocess.Popen:
    if kind in CLI_KINDS:
        argv = [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(gateway.config), "pin", kind, str(iccid)]
    else:
        argv = [sys.executable, "-c", API_WRITER, str(gateway.config), kind, str(iccid)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=gateway.env)
    proc.stdin.write((pin + "\n") if pin else "")  # on stdin, never argv
    proc.stdin.close()
    return proc


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return proc.wait(timeout=120), stdout, stderr


def test_parallel_writers_of_every_kind_lose_nothing(gateway):
    plan = []  # (kind, iccid, pin)
    serial = 0
    for kind in CLI_KINDS + API_KINDS:
        for k in range(PER_KIND):
            if kind == "set":
                iccid = Iccid(make_iccid(900_000 + k))  # new SIMs
            else:
                iccid = prefilled_iccid(serial)
                serial += 1
            pin = None if kind in ("forget", "reject") else f"{5_000_000 + serial * 100 + k:08d}"
            plan.append((kind, iccid, pin))

    # One writer alone first: how long a writer takes on this machine now.
    calibration = Iccid(make_iccid(999_999))
    t0 = time.monotonic()
    gateway.store_pin(str(calibration), "1234")
    alone = time.monotonic() - t0

    # Writers two at a time, kinds mixed, the second started a little later
    # each round (0 to one writer's run): in some rounds the first one's write
    # lands while the second is reading the store, the moment when a copy
    # read just before a write could be taken for the current one.
    plan = random.Random(7).sample(plan, len(plan))
    rounds = len(plan) // 2
    started = time.monotonic()
    results = []
    for r in range(rounds):
        first = start(gateway, *plan[2 * r])
        time.sleep(alone * r / rounds)
        second = start(gateway, *plan[2 * r + 1])
        results += [finish(first), finish(second)]
    elapsed = time.monotonic() - started

    failed = [(kind, str(iccid), rc, err.strip()[-300:]) for (kind, iccid, _), (rc, _, err) in zip(plan, results) if rc != 0]
    assert failed == [], f"writers that did not exit 0: {failed}"

    keystore = gateway.keystore()
    lost = []
    for kind, iccid, pin in plan:
        entry = keystore.get(iccid)
        if kind == "set":
            ok = entry is not None and entry.pin == Pin(pin) and entry.state == "active"
        elif kind == "stage":
            ok = entry is not None and entry.pending_pin == Pin(pin) and entry.pending_origin == "staged"
        elif kind == "forget":
            ok = entry is None
        elif kind == "reject":
            ok = entry is not None and entry.rejected
        elif kind == "rotate":
            ok = entry is not None and entry.pin == Pin(pin) and entry.pending_pin is None
        else:  # rotation-cut: the sealed pending PIN is what the card may hold now
            ok = entry is not None and entry.pending_pin == Pin(pin) and entry.pending_origin == "rotation"
        if not ok:
            lost.append((kind, str(iccid)))
    assert lost == [], f"writes that exited 0 but are missing ({len(lost)} of {len(plan)}, {elapsed:.0f} s): {lost}"

    # Nobody else's SIM was touched or dropped.
    assert keystore.get(calibration).pin == Pin("1234")
    assert len(keystore) == PREFILLED + PER_KIND - PER_KIND + 1
    untouched = prefilled_iccid(PREFILLED - 1)
    assert keystore.get(untouched).pin == Pin(f"{(PREFILLED - 1) % 10000:04d}")
    assert not keystore.get(untouched).rejected and keystore.get(untouched).pending_pin is None
