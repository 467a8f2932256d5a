"""The work one pairing decision and the one-SIM mtcctl paths do on a big
store and a big journal, counted rather than timed (bench/scale_decision.py
has the times): entries unsealed, bytes of the journal read, whole-store
writes.  The real `mtcd once` and `mtcctl` run against the simulator, with
counters wrapped around the keystore's unseal and write and around every
read of a journal file, and the bytes the store reads and writes counted at
its own I/O edge (`_read_store`, `atomic_write`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mtcd.identity import Iccid, luhn_check_digit
from mtcd.secret import Pin
from simfixtures import TEST_PIN, make_card, sim_modem

OTHER_SIMS = 300
JOURNAL_BYTES = 6_000_000
BOUND = 512 * 1024  # a few of the journal's 64 KiB chunks, whatever its size (6 MB here)
# The manifest (at most about 70 bytes for each of 256 buckets) three times
# and one bucket read; both written twice: whatever the number of SIMs.
STORE_BOUND = 64 * 1024

COUNTING = """
import json, os, sys
import mtcd.keystore as keystore

work = {"unsealed": [], "store_writes": 0, "journal_read": 0, "store_read": 0, "store_written": 0}
real_unseal, real_write, real_pread, real_read = keystore._unseal, keystore.atomic_write, os.pread, os.read
real_read_store = keystore._read_store

def unseal(path, key, iccid, sealed):
    work["unsealed"].append(iccid.value)
    return real_unseal(path, key, iccid, sealed)

def atomic_write(path, data, *args, **kwargs):
    work["store_writes"] += str(path).endswith(keystore.STORE_NAME)
    work["store_written"] += len(data)
    return real_write(path, data, *args, **kwargs)

def read_store(path):
    raw, held = real_read_store(path)
    work["store_read"] += len(raw or b"")
    return raw, held

def journal_bytes(fd, data):
    try:
        if "journal.jsonl" in os.readlink(f"/proc/self/fd/{fd}"):
            work["journal_read"] += len(data)
    except OSError:
        pass
    return data

keystore._unseal, keystore.atomic_write, keystore._read_store = unseal, atomic_write, read_store
os.pread = lambda fd, n, offset: journal_bytes(fd, real_pread(fd, n, offset))
os.read = lambda fd, n: journal_bytes(fd, real_read(fd, n))
module, *argv = sys.argv[1:]
main = __import__(module, fromlist=["main"]).main
try:
    code = main(argv)
except SystemExit as exc:
    code = exc.code
sys.__stderr__.write("\\nWORK " + json.dumps(work) + "\\n")
sys.exit(code)
"""


def counted(gateway, module: str, *args: str, stdin: str | None = None) -> tuple[int, str, dict]:
    done = subprocess.run([sys.executable, "-c", COUNTING, module, "--config", str(gateway.config), *args],
                          input=stdin, capture_output=True, text=True, timeout=120, env=gateway.env)
    work = json.loads(done.stderr.rpartition("\nWORK ")[2])
    assert "WORK " in done.stderr, done.stderr[-2000:]
    return done.returncode, done.stdout + done.stderr.rpartition("\nWORK ")[0], work


def other(n: int) -> Iccid:
    body = f"89490299{n:010d}"
    return Iccid(body + str(luhn_check_digit(body)))


def legacy_journal(path, size: int, iccid: str) -> None:
    """Events as a version without rotation left them, a paired decision
    every few lines (the last one near the end)."""
    with open(path, "wb") as f:
        n = 0
        while f.tell() < size:
            record = {"time": "2026-01-01T00:00:00.000+00:00", "event": "pin-revealed", "iccid": iccid}
            if n % 4 == 3:
                record = {"time": "2026-01-01T00:00:00.000+00:00", "event": "decision", "outcome": "paired",
                          "reason": None, "iccid": iccid, "imei": "359999010000015"}
            f.write((json.dumps(record) + "\n").encode())
            n += 1
    path.chmod(0o600)


@pytest.fixture
def big_gateway(gateway):
    """A gateway whose store holds the test card's PIN among OTHER_SIMS
    others, with a JOURNAL_BYTES journal left by a version without rotation."""
    card_iccid = make_card().iccid
    gateway.configure("/dev/null")
    gateway.store_pin(str(card_iccid))  # through mtcctl: the sealer's key made as the commands make it
    gateway.keystore().set_pins([(other(n), Pin.generate()) for n in range(OTHER_SIMS)])
    assert (gateway.state_dir / "keystore.d").is_dir()  # past keystore_buckets.INLINE_MAX
    legacy_journal(gateway.state_dir / "journal.jsonl", JOURNAL_BYTES, str(card_iccid))
    return gateway, str(card_iccid)


def decide(gateway) -> tuple[int, str, dict]:
    """One `mtcd once` on a freshly powered modem: the SIM asks for its PIN."""
    with sim_modem(make_card()) as (modem, port):
        gateway.configure(port)
        return counted(gateway, "mtcd.cli.daemon", "once", "--json")


def test_a_decision_unseals_one_entry_and_reads_a_bounded_part_of_the_journal(big_gateway):
    gateway, iccid = big_gateway
    for _ in ("first, the summary rebuilt from the legacy journal", "then with the summary"):
        code, out, work = decide(gateway)
        assert code == 0 and "\"paired\"" in out, out[-1500:]
        assert set(work["unsealed"]) == {iccid}
        assert work["journal_read"] < BOUND
        # The attempt mark before AT+CPIN, the outcome after: each writes
        # the SIM's bucket and the manifest, never more often.
        assert 1 <= work["store_writes"] <= 2
        assert work["store_read"] < STORE_BOUND and work["store_written"] < STORE_BOUND, work
    assert (gateway.state_dir / "journal.jsonl.1").stat().st_size >= JOURNAL_BYTES  # the legacy file, kept


def test_one_sim_mtcctl_paths_unseal_at_most_that_sim(big_gateway):
    gateway, iccid = big_gateway
    code, out, work = counted(gateway, "mtcd.cli.ctl", "status")
    assert code == 0 and str(OTHER_SIMS + 1) in out
    assert work["unsealed"] == [] and work["store_writes"] == 0 and work["journal_read"] < BOUND
    assert work["store_read"] < STORE_BOUND, work  # the manifest: its counts give the number of PINs
    code, out, work = counted(gateway, "mtcd.cli.ctl", "history", "--limit", "10", "--json")
    assert code == 0 and len(out.splitlines()) == 10
    assert work["unsealed"] == [] and work["journal_read"] < BOUND
    code, out, work = counted(gateway, "mtcd.cli.ctl", "pin", "set", iccid, stdin=TEST_PIN + "\n")
    assert code == 0 and "replaced" in out
    assert set(work["unsealed"]) <= {iccid} and work["store_writes"] == 1 and work["journal_read"] < BOUND
    assert work["store_read"] < STORE_BOUND and work["store_written"] < STORE_BOUND, work
