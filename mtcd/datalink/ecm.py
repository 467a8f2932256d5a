"""Backend "ecm": a modem in ECM/RNDIS/NCM mode gives the host a USB
network interface (usb0, eth1, wwan0...); the data call behind it is
started the vendor's way (Quectel +QNETDEVCTL, SIMCom $QCRMCALL, else the
PDP context, +CGACT) and systemd-networkd or a DHCP client gives the
interface its address.

Such modems often dial by themselves once the SIM is unlocked.  The radio
stays off (CFUN=4) until pairing, and `prepare()` switches off a stored
vendor auto-connect at every session start, so the modem does not dial on
its own while mtcd is not running either (at boot, after a stop).
"""

from __future__ import annotations

import logging

from ..at import commands
from ..errors import CommandFailed
from ..modem import Modem
from .base import AtDatalink, DatalinkFailed, _last_line

log = logging.getLogger("mtcd.datalink")

# USB network modes that give the host an Ethernet-like interface.
_ETHERNET_MODES = ("ecm", "rndis", "ncm")
NETWORKCTL_TIMEOUT = 30.0


class EcmDatalink(AtDatalink):
    name = "ecm"

    def __init__(self, modem: Modem, apn: str, pdp_type: str = "IP", cid: int = 1, *,
                 interface: str = "usb0", networkctl: bool = True):
        super().__init__(modem, apn, pdp_type, cid)
        self.interface, self.networkctl = interface, networkctl

    def prepare(self) -> None:
        dialect = self.modem.dialect
        mode = self.modem.first_answer(dialect.usbnet_queries())
        if mode is not None and not mode.startswith(_ETHERNET_MODES):
            log.warning("the modem's USB network mode is %s, not ECM/RNDIS/NCM: %s will not come up "
                        "(see the hardware guide, /usr/share/doc/mtcd/hardware.md)", mode, self.interface)
        if self.modem.first_answer(dialect.autoconnect_queries(self.cid)):
            log.warning("the modem's own auto-connect (%s) is on: switching it off, so that it never "
                        "dials before pairing", dialect.name)
            try:
                for command in dialect.autoconnect_off(self.cid):
                    self.modem.run(command)
            except CommandFailed as exc:
                # The radio stays off until pairing all the same; only a
                # modem running without mtcd could still dial by itself.
                log.error("the modem's auto-connect could not be switched off: %s", exc)

    def _bring_up(self) -> None:
        try:
            self.modem.run(commands.define_pdp_context(self.cid, self.pdp_type, self.apn))
            for command in self.modem.dialect.data_call(self.cid, True):
                self.modem.run(command)
        except CommandFailed as exc:
            raise DatalinkFailed(f"data call on {self.interface} failed: {exc}") from None
        self._networkctl("up")
        self._networkctl("reconfigure")

    def _take_down(self) -> None:
        self._networkctl("down")
        try:
            for command in self.modem.dialect.data_call(self.cid, False):
                self.modem.run(command)
        except CommandFailed as exc:
            log.info("stopping the data call: %s (the radio goes off anyway)", exc)

    def release_without_modem(self) -> None:
        self._networkctl("down")

    def _networkctl(self, verb: str) -> None:
        networkctl(verb, self.interface, self.networkctl)


def networkctl(verb: str, interface: str, enabled: bool = True) -> None:
    """`networkctl <verb> IFACE` when enabled and installed; a failure is a
    warning: networkd may not manage the interface (ifupdown, a DHCP client
    of its own) and the data call stands without it."""
    if not enabled:
        return
    import shutil  # not at start-up (with zlib, bz2, lzma): only when a link goes up or down
    import subprocess

    program = shutil.which("networkctl")
    if program is None:
        return
    argv = [program, verb, interface]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=NETWORKCTL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("networkctl %s %s: %s", verb, interface, type(exc).__name__)
        return
    if done.returncode != 0:
        said = _last_line(done.stderr)
        log.warning("networkctl %s %s exited with %d%s", verb, interface, done.returncode,
                    f": {said}" if said else "")
