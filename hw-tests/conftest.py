"""Hardware-in-the-loop tests: a real modem with a real SIM on the bench.

    make hw-test MODEM=/dev/ttyUSB2 [VENDOR=quectel]
    .venv/bin/python -m pytest hw-tests --modem=/dev/ttyUSB2 --vendor=auto

Without --modem every test is skipped with the reason.  These tests only
read: they never present a PIN or PUK and never change the SIM, except
test_pairing.py, which needs --state-dir with a PIN stored by mtcctl for the
SIM inserted (and then presents it at most once, under the usual guard).
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--modem", default="", help="AT port of the modem under test")
    parser.addoption("--vendor", default="auto", help="dialect (default: auto from AT+CGMI)")
    parser.addoption("--baudrate", type=int, default=115200)
    parser.addoption("--state-dir", default="", help="mtcd state dir with the PIN of the inserted SIM (pairing test)")


@pytest.fixture(scope="session")
def modem_port(request) -> str:
    port = request.config.getoption("--modem")
    if not port:
        pytest.skip("no modem given (use --modem=/dev/ttyUSBn or make hw-test MODEM=...)")
    return port


@pytest.fixture
def modem(request, modem_port):
    from mtcd.modem import Modem
    from mtcd.transport import SerialTransport

    transport = SerialTransport(modem_port, request.config.getoption("--baudrate"))
    with transport:
        m = Modem(transport)
        m.initialise()
        m.choose_dialect(request.config.getoption("--vendor"))
        yield m
