"""Dialect detection on the real modem: what `vendor = auto` picks from
AT+CGMI, that it agrees with --vendor when one is given, and that the
dialect's own queries answer on this modem."""

from __future__ import annotations

import pytest

from mtcd.at import commands, parsers
from mtcd.vendors import DIALECTS


def test_auto_detection_picks_a_dialect(request, modem):
    manufacturer = parsers.parse_cgmi(modem.run(commands.manufacturer()).lines)
    chosen = modem.choose_dialect("auto")
    assert chosen.name in DIALECTS
    given = request.config.getoption("--vendor")
    if given != "auto":
        assert chosen.name == given, f"AT+CGMI says {manufacturer!r}: auto picks {chosen.name}, not {given}"


def test_the_dialects_queries_answer(bench, modem):
    if bench.start.iccid is None:
        pytest.skip("no SIM in the modem's slot (a PC/SC session: the test SIM is in the reader)")
    assert modem.first_answer(modem.dialect.iccid_queries()) is not None, "no ICCID query of the dialect answered"
    counters = modem.first_answer(modem.dialect.attempts_queries())
    assert counters is not None, "no attempt-counter query of the dialect answered"
