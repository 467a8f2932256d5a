"""The UICC reached by APDUs rather than through AT+CPIN: over the modem's
AT+CSIM, or over a PC/SC reader.  `uicc_for` picks the backend the
configuration names ([uicc] backend); "at" keeps mtcd.uicc.Uicc."""

from __future__ import annotations

BACKENDS = ("at", "csim", "pcsc")


def uicc_for(config, modem, *, settle_time: float | None = None, waits=None):
    """The UICC object the pairing policy talks to, for this configuration.
    Over PC/SC the modem still gives the IMEI and carries the data link."""
    from ..uicc import Uicc

    uicc_config = getattr(config, "uicc", None)
    backend = uicc_config.backend if uicc_config is not None else "at"
    settle = config.modem.sim_ready_timeout if settle_time is None else settle_time
    if backend == "at":
        return Uicc(modem, settle_time=settle, waits=waits)
    from .uicc import ApduUicc

    if backend == "csim":
        from .channel import CsimChannel

        return ApduUicc(CsimChannel(modem), settle_time=settle, waits=waits)
    from .pcsc import PcscChannel

    return ApduUicc(PcscChannel(uicc_config.reader), settle_time=settle, waits=waits)


def doctor_uicc(config, modem, current=None, *, settle_time: float = 3.0):
    """The UICC `mtcctl doctor` asks, or None for the AT path (doctor makes
    its own).  `current`: the service's; its card channel is shared, its
    cached readings are not."""
    uicc_config = getattr(config, "uicc", None)
    if uicc_config is None or uicc_config.backend == "at":
        return None
    channel = getattr(current, "channel", None)
    if channel is not None:
        from .uicc import ApduUicc

        return ApduUicc(channel, settle_time=settle_time)
    return uicc_for(config, modem, settle_time=settle_time)
