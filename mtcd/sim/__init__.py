"""A simulated modem with a UICC behind it, served on a pseudo-terminal.

A real backend for the demo and the test suite, not a mock: clients talk
to it through pyserial like to any modem port.  `SimCard` is the card
(PIN1/PUK1 counting, EF.ICCID, EF.IMSI, APDUs), `SimulatedModem` the AT
interpreter (no I/O), `PtyModemServer` puts it on a pty.
"""

from .card import CardFileError, SimCard
from .modem import DEFAULT_IMEI, SimulatedModem, redacted
from .pty import PtyModemServer

__all__ = [
    "CardFileError",
    "DEFAULT_IMEI",
    "PtyModemServer",
    "SimCard",
    "SimulatedModem",
    "redacted",
]
