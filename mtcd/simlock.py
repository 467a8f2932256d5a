"""What the SIM is waiting for, and how many tries it has left.

These are the facts the pairing policy reasons about; the AT parsers and the
APDU codec produce them, the policy consumes them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SimLock(enum.Enum):
    """The `+CPIN` code (TS 27.007 §8.3), plus the states modems add."""

    READY = "READY"
    SIM_PIN = "SIM PIN"
    SIM_PUK = "SIM PUK"
    SIM_PIN2 = "SIM PIN2"
    SIM_PUK2 = "SIM PUK2"
    PH_SIM_PIN = "PH-SIM PIN"
    PH_FSIM_PIN = "PH-FSIM PIN"
    PH_FSIM_PUK = "PH-FSIM PUK"
    PH_NET_PIN = "PH-NET PIN"
    PH_NET_PUK = "PH-NET PUK"
    PH_NETSUB_PIN = "PH-NETSUB PIN"
    PH_NETSUB_PUK = "PH-NETSUB PUK"
    PH_SP_PIN = "PH-SP PIN"
    PH_SP_PUK = "PH-SP PUK"
    PH_CORP_PIN = "PH-CORP PIN"
    PH_CORP_PUK = "PH-CORP PUK"
    # Not in 27.007 but reported by modems (or derived from +CME ERROR 10/13/14).
    NOT_INSERTED = "NOT INSERTED"
    NOT_READY = "NOT READY"
    BUSY = "BUSY"
    FAILURE = "FAILURE"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True)
class PinAttempts:
    """Remaining verification attempts as the card or modem reported them.

    None means "not reported" (the command exists but left the field out);
    that is different from 0.
    """

    pin1: int | None = None
    puk1: int | None = None
    source: str = ""  # which command reported it, for the journal

    def __post_init__(self):
        for name in ("pin1", "puk1"):
            v = getattr(self, name)
            if v is not None and not (0 <= v <= 15):
                raise ValueError(f"{name} attempts out of range: {v}")


class SimEvent(enum.Enum):
    """What a SIM-state unsolicited result code says happened to the card."""

    REMOVED = "removed"
    INSERTED = "inserted"
    READY = "ready"  # unlocked / initialised
    LOCKED = "locked"  # asks for a PIN again (e.g. after a card reset)
