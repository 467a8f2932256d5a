"""A private PC/SC stack for the tests and the demo: pcscd with vpcd's
reader and the virtual USIM (mtcd.sim.vusim), isolated from any pcscd of
the machine.

pcscd and the card run in their own mount and network namespaces
(`unshare -m -n`): /run/pcscd there is a directory of the test, so the
machine's /run/pcscd is never touched, and vpcd's port is on a loopback
nobody else can reach.  Clients outside find the socket through
PCSCLITE_CSOCK_NAME.  pcscd runs in the foreground at its default log
level: never with APDU logging (-a), which would log PINs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_PORT = 35963  # inside the private network namespace: always free
READER = "mtcd virtual reader"


def missing() -> str | None:
    """Why the stack cannot run here, or None."""
    for tool in ("pcscd", "unshare", "ip"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} is not installed (make deps installs pcscd and vsmartcard-vpcd)"
    if not VPCD_DRIVER.exists():
        return "vpcd is not installed (Debian vsmartcard-vpcd; make deps installs it)"
    try:
        import smartcard.scard  # noqa: F401
    except ImportError:
        return "pyscard is not installed in this Python"
    if os.geteuid() != 0:
        return "the private pcscd needs root (mount and network namespaces)"
    return None


class PcscStack:
    def __init__(self, root: Path, card, *, files: dict | None = None, vusim_args: tuple[str, ...] = ()):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.card_file = self.root / "card.json"
        card.save(self.card_file)
        self.files = files
        self.vusim_args = vusim_args
        # Its own short directory: a Unix socket's path holds at most 107
        # bytes, which a test's (or the demo's) own directory may exceed.
        self.run_dir = Path(tempfile.mkdtemp(prefix="mtcd-pcscd-"))
        self.socket = self.run_dir / "pcscd.comm"
        self.log = self.root / "vusim.jsonl"
        self.pcscd_log = self.root / "pcscd.log"
        self.proc: subprocess.Popen | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"PCSCLITE_CSOCK_NAME": str(self.socket)}

    def __enter__(self) -> "PcscStack":
        conf = self.root / "reader.conf.d"
        conf.mkdir(exist_ok=True)
        self.run_dir.mkdir(exist_ok=True)
        (conf / "vusim").write_text(f'FRIENDLYNAME "{READER}"\nDEVICENAME /dev/null:{VPCD_PORT}\n'
                                    f"LIBPATH {VPCD_DRIVER}\n")
        args = [sys.executable, "-m", "mtcd.sim.vusim", "--card", str(self.card_file), "--port", str(VPCD_PORT),
                "--log", str(self.log), *self.vusim_args]
        if self.files is not None:
            (self.root / "files.json").write_text(json.dumps(self.files))
            args += ["--files", str(self.root / "files.json")]
        script = (
            "set -e; ip link set lo up; mount --make-rprivate /; mount -t tmpfs tmpfs /run; mkdir /run/pcscd; "
            f"mount --bind '{self.run_dir}' /run/pcscd; "
            f"pcscd --foreground --config '{conf}' >'{self.pcscd_log}' 2>&1 & echo $! >'{self.root / 'pcscd.pid'}'; "
            "exec " + " ".join(f"'{a}'" for a in args)
        )
        self.proc = subprocess.Popen(["unshare", "--mount", "--net", "sh", "-c", script],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "vusim.err", "w"))
        try:
            self.wait_for_card()
        except BaseException:
            self.__exit__()
            raise
        return self

    def card_present(self) -> bool:
        """Asked in a child: libpcsclite keeps the socket name it first saw."""
        code = ("from smartcard import scard as s\n"
                "r, c = s.SCardEstablishContext(s.SCARD_SCOPE_USER)\n"
                "assert r == 0\n"
                "r, st = s.SCardGetStatusChange(c, 0, [(s.SCardListReaders(c, [])[1][0], s.SCARD_STATE_UNAWARE)])\n"
                "raise SystemExit(0 if r == 0 and st[0][1] & s.SCARD_STATE_PRESENT else 1)\n")
        done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **self.env},
                              capture_output=True, timeout=10)
        return done.returncode == 0

    def wait_for_card(self, timeout: float = 30.0) -> None:
        # pcscd polls its readers about once a second; a loaded machine is slower.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the PC/SC stack ended: {(self.root / 'vusim.err').read_text()[-500:]}"
                                     f"{self.pcscd_log.read_text()[-500:] if self.pcscd_log.exists() else ''}")
            if self.socket.exists() and self.card_present():
                return
            time.sleep(0.2)
        raise AssertionError("the virtual USIM did not show up in pcscd")

    def pull_and_reinsert(self) -> None:
        """A power cycle of the card: what a modem reset does to its SIM."""
        before = len(self.entries())
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while not any(e.get("event") == "inserted" for e in self.entries()[before:]):
            assert time.monotonic() < deadline, "the card was not reinserted"
            time.sleep(0.05)
        self.wait_for_card()

    def reader_name(self) -> str:
        return f"{READER} 00 00"

    def entries(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def commands(self) -> list[str]:
        """INS of every command the card answered, in order (e.g. "20" VERIFY)."""
        return [e["ins"] for e in self.entries() if "ins" in e]

    def pin_commands(self) -> list[dict]:
        """PIN commands that carried data (a PIN or PUK went to the card)."""
        return [e for e in self.entries() if e.get("ins") in ("20", "24", "26", "28", "2C") and e.get("lc")]

    def state(self) -> dict:
        return json.loads(self.card_file.read_text())

    def __exit__(self, *exc) -> None:
        pid_file = self.root / "pcscd.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)
