"""Data link backends, chosen by `[datalink] backend`.

`up()` takes the `Paired` decision itself: there is no way to bring a link
up without one (guarantee 3).  Every backend switches the radio on as part
of `up()` and off as part of `down()`.  One module per backend that needs
more than the modem: `ecm` (a USB network interface), `qmi` (qmicli), `ppp`
(pppd).
"""

from __future__ import annotations

from ..config import DatalinkConfig
from ..modem import Modem
from .base import AtDatalink, CommandDatalink, Datalink, DatalinkFailed
from .ecm import EcmDatalink
from .ppp import PppDatalink
from .qmi import QmiDatalink

__all__ = ["AtDatalink", "CommandDatalink", "Datalink", "DatalinkFailed", "EcmDatalink", "PppDatalink",
           "QmiDatalink", "datalink_for"]


def datalink_for(config: DatalinkConfig, modem: Modem) -> Datalink:
    if config.backend == "at":
        return AtDatalink(modem, config.apn, config.pdp_type, config.cid)
    if config.backend == "command":
        return CommandDatalink(modem, config.up, config.down)
    if config.backend == "ecm":
        return EcmDatalink(modem, config.apn, config.pdp_type, config.cid,
                           interface=config.interface or "usb0", networkctl=config.networkctl)
    if config.backend == "qmi":
        return QmiDatalink(modem, config.apn, config.pdp_type, config.cid, device=config.qmi_device,
                           interface=config.interface or "wwan0", qmicli=config.qmicli,
                           networkctl=config.networkctl, timeout=config.up_timeout)
    if config.backend == "ppp":
        return PppDatalink(modem, config.apn, config.pdp_type, config.cid,
                           port=config.ppp_port, interface=config.interface or "ppp0",
                           pppd=config.pppd, run_dir=config.run_dir, timeout=config.up_timeout)
    return Datalink(modem)
