"""Command-line conventions shared by mtcd and mtcctl, through the real
commands: $MTCD_CONFIG names the configuration when --config does not,
global options go before or after the subcommand, and drop-ins count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simfixtures import TEST_PIN, make_iccid

ICCID = make_iccid(7)


def run(gateway, module: str, *args: str, env: dict | None = None, stdin: str = ""):
    return subprocess.run([sys.executable, "-m", module, *args], input=stdin, capture_output=True, text=True,
                          timeout=60, env={**gateway.env, **(env or {})})


def mtcctl(gateway, *args, **kw):
    return run(gateway, "mtcd.cli.ctl", *args, **kw)


def mtcd(gateway, *args, **kw):
    return run(gateway, "mtcd.cli.daemon", *args, **kw)


def listed(done) -> list[str]:
    assert done.returncode == 0, done.stderr
    return [entry["iccid"] for entry in json.loads(done.stdout)["pins"]]


@pytest.fixture
def stored(gateway):
    """A gateway with one stored PIN, its config at gateway.config."""
    gateway.configure("/dev/null")
    gateway.store_pin(ICCID)
    return gateway


@pytest.mark.parametrize("args", [
    ("--json", "pin", "list"),
    ("pin", "list", "--json"),
    ("-v", "pin", "list", "--json", "-v"),
])
def test_global_options_before_or_after_the_subcommand(stored, args):
    assert listed(mtcctl(stored, "--config", str(stored.config), *args)) == [ICCID]


def test_config_after_the_subcommand(stored):
    assert listed(mtcctl(stored, "pin", "list", "--config", str(stored.config), "--json")) == [ICCID]
    assert listed(mtcctl(stored, "--json", "pin", "list", "--config", str(stored.config))) == [ICCID]


def test_config_after_the_subcommand_wins_over_one_before(stored, tmp_path):
    done = mtcctl(stored, "--config", str(tmp_path / "absent.toml"), "pin", "list", "--json",
                  "--config", str(stored.config))
    assert listed(done) == [ICCID]


def test_json_where_the_command_has_no_json_form_is_a_usage_error(stored):
    # `pin forget` has a JSON form now (issue 9); `mtcd run` has none.
    for args in (("--json", "run"), ("run", "--json")):
        done = mtcd(stored, "--config", str(stored.config), *args)
        assert done.returncode == 64, done.stderr
        message = "--json: 'run' has no JSON output (see mtcd --help)"
        assert done.stderr.strip().splitlines() == [f"mtcd: {message}"]
        assert json.loads(done.stdout) == {"ok": False, "error": "usage", "message": message, "exit": 64}
    assert listed(mtcctl(stored, "--config", str(stored.config), "pin", "list", "--json")) == [ICCID]


def test_mtcctl_reads_mtcd_config_from_the_environment(stored):
    assert listed(mtcctl(stored, "pin", "list", "--json", env={"MTCD_CONFIG": str(stored.config)})) == [ICCID]


def test_config_option_wins_over_the_environment(stored, tmp_path):
    absent = tmp_path / "absent.toml"
    done = mtcctl(stored, "--config", str(stored.config), "pin", "list", "--json", env={"MTCD_CONFIG": str(absent)})
    assert listed(done) == [ICCID]
    # and the environment is really read: alone it names the absent file
    done = mtcctl(stored, "pin", "list", env={"MTCD_CONFIG": str(absent)})
    assert done.returncode == 78
    assert done.stderr.strip() == f"mtcctl: {absent}: no such file"


def test_mtcd_reads_mtcd_config_from_the_environment(gateway):
    gateway.config.write_text('[modem]\nport = "/dev/null"\n[policy]\nmin_retry = 2\n')
    done = mtcd(gateway, "once", "--json", env={"MTCD_CONFIG": str(gateway.config)})
    assert done.returncode == 78
    assert done.stderr.strip() == f"mtcd: {gateway.config}: unknown key 'policy.min_retry'"


def test_mtcd_once_pairs_with_the_port_from_a_drop_in(gateway, sim):
    modem, port = sim
    gateway.configure("/dev/ttyNOWHERE")
    drop_ins = Path(f"{gateway.config}.d")
    drop_ins.mkdir()
    (drop_ins / "10-port.toml").write_text(f'[modem]\nport = "{port}"\n')
    gateway.store_pin(modem.card.iccid.value, TEST_PIN)
    done = mtcd(gateway, "once", "--json", env={"MTCD_CONFIG": str(gateway.config)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["state"] == "paired"


def test_broken_drop_in_is_one_line_and_78_for_both_commands(gateway):
    gateway.configure("/dev/null")
    drop_ins = Path(f"{gateway.config}.d")
    drop_ins.mkdir()
    fifo = drop_ins / "10-fifo.toml"
    os.mkfifo(fifo)
    for done, prog in ((mtcd(gateway, "--config", str(gateway.config), "once"), "mtcd"),
                       (mtcctl(gateway, "status", "--config", str(gateway.config)), "mtcctl")):
        assert done.returncode == 78
        assert done.stderr.strip() == f"{prog}: {fifo}: not a regular file"


def test_subcommand_help_lists_the_global_options(gateway):
    done = mtcctl(gateway, "pin", "list", "--help")
    assert done.returncode == 0
    for option in ("--config", "--verbose", "--json", "MTCD_CONFIG"):
        assert option in done.stdout
