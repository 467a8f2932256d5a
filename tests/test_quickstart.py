"""The README's quick start on a fresh checkout, and the LICENSE the
package metadata names."""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from pcscstack import missing

REPO = Path(__file__).resolve().parent.parent


def test_license_file_matches_pyproject():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert declared == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def _fresh_checkout(dest: Path) -> None:
    """The repository's files as a clone would have them (tracked and new,
    not .venv, build/ or demo-state/)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


@pytest.mark.skipif(not shutil.which("make") or not (REPO / ".git").exists(),
                    reason="needs make and a git checkout")
def test_make_demo_on_a_fresh_checkout(tmp_path):
    """`make demo` alone: builds a venv with the runtime dependencies only
    (no test tools), says what it is doing while it builds, and runs the
    demo to the end.  About 15 s with pip's cache warm (`make test` has
    filled it); the first run on a new machine compiles systemd-python."""
    checkout = tmp_path / "mtcd"
    checkout.mkdir()
    _fresh_checkout(checkout)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH") and not k.startswith("MTCD")}
    done = subprocess.run(["make", "demo"], cwd=checkout, capture_output=True, text=True, timeout=900, env=env)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    # Progress before the long, otherwise silent, build.
    creating, installing, running = (out.find(f"== {step}") for step in ("creating", "installing", "running the demo"))
    assert 0 <= creating < installing < running, out[:2000]
    assert "Successfully installed" in out
    # The demo ran to its end: paired, then the refusals.
    assert '"state": "paired"' in out and "unknown-sim" in out and "pin-rejected" in out
    assert "Demo files are in" in out
    # The PC/SC path, where this machine has pcscd and vpcd (`make deps` installs them; never skipped then).
    if missing() is None:
        pcsc = out[out.index("4. The SIM in a PC/SC reader"):]
        assert "not shown here" not in pcsc[:500] and '"state": "paired"' in pcsc, pcsc[:3000]
        assert "read:                 from the card in the PC/SC reader" in pcsc and "latest OK" in pcsc, pcsc[:3000]
        assert "read in APDUs with GET RESPONSE, READ BINARY, READ RECORD, SELECT only" in pcsc
        assert "the PIN in the card's or pcscd's logs: no" in pcsc
    # Runtime dependencies only: no test tools in the demo's venv.
    python = checkout / ".venv" / "bin" / "python"
    for module in ("mtcd", "serial", "cryptography"):
        assert subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0, module
    for module in ("pytest", "hypothesis"):
        assert subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode != 0, module
