"""Backend "qmi": a modem in QMI mode (/dev/cdc-wdm0 and a raw-IP wwan0),
its data call started and stopped by mtcd with qmicli (Debian
libqmi-utils) after pairing; systemd-networkd or a DHCP client gives the
interface its address (`networkctl up`/`reconfigure` when installed).

qmicli runs from an argv list, never a shell, and only ever with the APN:
the SIM is unlocked by mtcd over AT before, and no PIN option
(`--uim-verify-pin` and kin) is ever built here.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from ..modem import Modem
from . import ecm
from .base import AtDatalink, DatalinkFailed, _last_line, _why

log = logging.getLogger("mtcd.datalink")

# Where interfaces show up; tests point it elsewhere.
SYS_CLASS_NET = Path("/sys/class/net")

_HANDLE = re.compile(rb"Packet data handle:\s*'(\d{1,10})'")
_CID = re.compile(rb"CID:\s*'(\d{1,3})'")
_IP_TYPES = {"IP": "4", "IPV6": "6", "IPV4V6": "4"}  # qmicli starts one family per call


class QmiDatalink(AtDatalink):
    name = "qmi"

    def __init__(self, modem: Modem, apn: str, pdp_type: str = "IP", cid: int = 1, *,
                 device: str = "/dev/cdc-wdm0", interface: str = "wwan0", qmicli: str = "/usr/bin/qmicli",
                 networkctl: bool = True, timeout: float = 60.0):
        super().__init__(modem, apn, pdp_type, cid)
        self.device, self.interface, self.qmicli = device, interface, qmicli
        self.networkctl, self.timeout = networkctl, timeout
        self.session: tuple[str, str] | None = None  # (packet data handle, WDS client id)

    def _qmicli(self, *args: str) -> bytes:
        import subprocess  # not at start-up: only when qmicli is run

        argv = [self.qmicli, f"--device={self.device}", "--device-open-proxy", *args]
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DatalinkFailed(f"qmicli {args[0]} failed: {_why(exc)}") from None
        if done.returncode != 0:
            said = _last_line(done.stderr) or _last_line(done.stdout)
            raise DatalinkFailed(f"qmicli {args[0]} exited with {done.returncode}" + (f": {said}" if said else ""))
        return done.stdout

    def _bring_up(self) -> None:
        self._raw_ip()
        out = self._qmicli(f"--wds-start-network=apn={self.apn},ip-type={_IP_TYPES[self.pdp_type]}",
                           "--client-no-release-cid")
        handle, client = _HANDLE.search(out), _CID.search(out)
        if handle is None or client is None:
            raise DatalinkFailed("qmicli --wds-start-network: no packet data handle in its output")
        self.session = (handle[1].decode(), client[1].decode())
        self._networkctl("up")
        self._networkctl("reconfigure")

    def _raw_ip(self) -> None:
        """Raw IP framing on the interface, as today's modems expect (the
        kernel's qmi_wwan switch; only while the interface is down)."""
        switch = SYS_CLASS_NET / self.interface / "qmi" / "raw_ip"
        try:
            if switch.read_text().strip() == "Y":
                return
            self._networkctl("down")
            switch.write_text("Y\n")
        except OSError as exc:
            log.warning("%s: raw IP not set (%s); qmi_wwan may frame packets as Ethernet",
                        self.interface, exc.strerror or type(exc).__name__)

    def _take_down(self) -> None:
        self._networkctl("down")
        self._stop_call()

    def release_without_modem(self) -> None:
        self._take_down()

    def _stop_call(self) -> None:
        session, self.session = self.session, None
        if session is None:
            return
        handle, client = session
        try:
            self._qmicli(f"--wds-stop-network={handle}", f"--client-cid={client}")
        except DatalinkFailed as exc:
            log.info("%s (the radio goes off anyway)", exc)

    def _networkctl(self, verb: str) -> None:
        ecm.networkctl(verb, self.interface, self.networkctl)
