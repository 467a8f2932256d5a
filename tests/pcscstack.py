"""The private pcscd + vpcd + virtual USIM stack (mtcd.sim.pcscstack)."""

import pytest

from mtcd.sim.pcscstack import READER, PcscStack, missing  # noqa: F401


# The card channels the APDU tests run on: AT+CSIM through the simulated modem,
# and PC/SC through a private pcscd with vpcd's virtual reader.
APDU_BACKENDS = ("csim", "pcsc")


def apdu_backend(request) -> str:
    """The body of the tests' `backend` fixture (params=APDU_BACKENDS): the
    PC/SC one fails, never skips, without its stack (`make deps` installs it)."""
    if request.param == "pcsc" and (why := missing()):
        pytest.fail(f"the PC/SC stack is not available: {why}")
    return request.param

