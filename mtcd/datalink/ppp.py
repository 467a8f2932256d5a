"""Backend "ppp": pppd on the modem's data port (not the AT port mtcd
holds), started and stopped by mtcd.

At bring-up, after pairing, mtcd defines the PDP context on its AT port and
writes a pppd options file and a chat script under `run_dir` (a tmpfs,
/run): the chat script only dials the context (ATD*99***<cid>#) and never
carries or sends anything about the SIM (no AT+CPIN: the PIN never leaves
mtcd).  pppd runs in the foreground as mtcd's child (`nodetach`), its
output in `run_dir`/pppd.log; the link is up when its interface appears.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..at import commands
from ..errors import CommandFailed
from ..fsutil import atomic_write
from ..modem import Modem
from .base import AtDatalink, DatalinkFailed, _last_line

if TYPE_CHECKING:  # loaded when pppd is started, not at every start
    import subprocess

log = logging.getLogger("mtcd.datalink")

# Where interfaces show up; tests point it elsewhere.
SYS_CLASS_NET = Path("/sys/class/net")
STOP_GRACE = 10.0  # seconds pppd gets to hang up before it is killed
_POLL = 0.05


def chat_script(cid: int) -> str:
    """Dial the context only: the SIM is unlocked and the context defined
    by mtcd before pppd starts."""
    dial = "ATD*99#" if cid == 1 else f"ATD*99***{cid}#"
    return "".join(f"{line}\n" for line in (
        "# written by mtcd at every bring-up; edits are lost",
        "ABORT 'NO CARRIER'", "ABORT 'ERROR'", "ABORT 'BUSY'", "ABORT 'NO DIALTONE'",
        "TIMEOUT 30",
        "'' AT",
        f"OK {dial}",
        "CONNECT ''",
    ))


def peer_options(port: str, interface: str, chat: Path) -> str:
    return "".join(f"{line}\n" for line in (
        "# written by mtcd at every bring-up from [datalink]; edits are lost",
        port,
        "115200",
        "nodetach",          # mtcd's child: it stops it when the gate closes
        "noauth",
        f"ifname {interface}",
        "noipdefault",
        "defaultroute",
        "usepeerdns",
        "maxfail 1",         # mtcd decides about retries, not pppd
        "lcp-echo-interval 30",
        "lcp-echo-failure 4",
        f'connect "/usr/sbin/chat -v -f {chat}"',
    ))


class PppDatalink(AtDatalink):
    name = "ppp"

    def __init__(self, modem: Modem, apn: str, pdp_type: str = "IP", cid: int = 1, *,
                 port: str, interface: str = "ppp0", pppd: str = "/usr/sbin/pppd",
                 run_dir: Path = Path("/run/mtcd/ppp"), timeout: float = 60.0):
        super().__init__(modem, apn, pdp_type, cid)
        self.port, self.interface, self.pppd = port, interface, pppd
        self.run_dir, self.timeout = Path(run_dir), timeout
        self.process: subprocess.Popen | None = None

    def _bring_up(self) -> None:
        try:
            self.modem.run(commands.define_pdp_context(self.cid, self.pdp_type, self.apn))
        except CommandFailed as exc:
            raise DatalinkFailed(f"PDP context definition failed: {exc}") from None
        self._stop_pppd()  # never two
        chat, options, output = self._write_files()
        import subprocess

        try:
            with open(output, "wb") as log_file:
                self.process = subprocess.Popen(
                    [self.pppd, "file", str(options)], stdin=subprocess.DEVNULL,
                    stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            raise DatalinkFailed(f"pppd {self.pppd!r} could not start: {exc.strerror or exc}") from None
        deadline = time.monotonic() + self.timeout
        while not (SYS_CLASS_NET / self.interface).exists():
            code = self.process.poll()
            if code is not None:
                self.process = None
                said = _last_line(output.read_bytes())
                raise DatalinkFailed(f"pppd exited with {code}" + (f": {said}" if said else ""))
            if time.monotonic() > deadline:
                self._stop_pppd()
                raise DatalinkFailed(f"pppd: {self.interface} not up within {self.timeout:g} s")
            time.sleep(_POLL)
        log.info("pppd (pid %d) has %s up", self.process.pid, self.interface)

    def _write_files(self) -> tuple[Path, Path, Path]:
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        chat, options = self.run_dir / "chat", self.run_dir / "peer"
        atomic_write(chat, chat_script(self.cid).encode())
        atomic_write(options, peer_options(self.port, self.interface, chat).encode())
        return chat, options, self.run_dir / "pppd.log"

    def _take_down(self) -> None:
        self._stop_pppd()

    def release_without_modem(self) -> None:
        self._stop_pppd()

    def _stop_pppd(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        import subprocess  # loaded already: it started pppd

        process.terminate()  # pppd hangs up and takes the interface down
        try:
            process.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            log.warning("pppd (pid %d) did not stop within %g s; killing it", process.pid, STOP_GRACE)
            process.kill()
            process.wait()
