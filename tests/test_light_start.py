"""`--help`, usage errors and configuration errors load only what they need.

On a 512 MB gateway a technician's typo should not pay for the whole stack
(keystore, sealers, cryptography, the modem).  This checks which modules
were imported, not how long it took: timing lives in bench/start_cost.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("mtcd.service", "mtcd.gatekeeper", "mtcd.keystore", "mtcd.sealers", "mtcd.uicc", "mtcd.datalink",
         "cryptography", "serial")

PROBE = """
import json, sys
from mtcd.cli.{module} import main
try:
    main({argv!r})
except SystemExit:
    pass
sys.__stdout__.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def imported(module: str, argv: list[str]) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE.format(module=module, argv=argv)],
                          capture_output=True, text=True, timeout=60)
    line = next(l for l in done.stdout.splitlines() if l.startswith("MODULES "))
    return set(json.loads(line[len("MODULES "):]))


@pytest.mark.parametrize("argv", [["--help"], ["once", "--help"], ["once", "--bogus"],
                                  ["--config", "/nonexistent/mtcd.toml", "once"], ["--version"]])
def test_mtcd_help_usage_and_config_errors_stay_light(argv):
    loaded = imported("daemon", argv)
    assert "mtcd.cli.common" in loaded  # the probe did run the CLI
    heavy = sorted(m for m in loaded if m.startswith(HEAVY))
    assert heavy == []


@pytest.mark.parametrize("argv", [["--help"], ["pin", "--help"], ["pin", "--bogus"], ["pin", "set"],
                                  ["--config", "/nonexistent/mtcd.toml", "pin", "list"], ["--version"]])
def test_mtcctl_help_usage_and_config_errors_stay_light(argv):
    loaded = imported("ctl", argv)
    assert "mtcd.cli.common" in loaded
    heavy = sorted(m for m in loaded if m.startswith((*HEAVY, "mtcd.control", "mtcd.journal", "mtcd.lifecycle",
                                                      "_hashlib")))
    assert heavy == []
