"""The private pcscd + vpcd + virtual USIM stack (mtcd.sim.pcscstack)."""

from mtcd.sim.pcscstack import READER, PcscStack, missing  # noqa: F401
