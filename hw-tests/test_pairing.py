"""One real pairing decision with `mtcd once` against the bench modem."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_mtcd_once_on_the_bench(request, modem_port, tmp_path):
    state_dir = request.config.getoption("--state-dir")
    if not state_dir:
        pytest.skip("pairing needs --state-dir holding the inserted SIM's PIN (mtcctl pin set)")
    config = tmp_path / "mtcd.toml"
    config.write_text(
        f'state_dir = "{state_dir}"\n[modem]\nport = "{modem_port}"\n'
        f'vendor = "{request.config.getoption("--vendor")}"\n[datalink]\nbackend = "none"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "mtcd.cli.daemon", "--config", str(config), "once", "--json"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["state"] in ("paired", "refused")
    assert (report["state"] == "paired") == (done.returncode == 0)
    if report["state"] == "refused":
        assert report["link"] == "down"
