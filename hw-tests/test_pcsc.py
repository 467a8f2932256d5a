"""The PC/SC path (a reader holding the test SIM).  A placeholder: it only
skips, with the reason, until the bench test of mtcd's PC/SC backend is
written against a reader."""

from __future__ import annotations

import pytest


def test_pcsc_reader(request):
    reader = request.config.getoption("--reader")
    if not reader:
        pytest.skip("the PC/SC path needs --reader=NAME (make hw-test READER=...)")
    pytest.skip("placeholder: the bench test of the PC/SC backend is not written yet")
