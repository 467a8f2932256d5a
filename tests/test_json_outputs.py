"""Issue 9 items 3 and 4: one JSON object on stdout for every outcome of a
`--json` command (errors included, with a stable code and the exit code),
the schemas in docs/json/ and the checker that holds every output of the
suite to them (tests/jsoncheck.py, wired in conftest.py), and output for
people: no "None", help for every option, usage errors that name the
subcommand that was used.

Real processes against the simulator; the schema check runs on each of
them through the conftest hook as well as explicitly here."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import pytest

import jsoncheck
from simfixtures import TEST_PIN, TEST_PUK, make_card, make_iccid, sim_modem

ICCID = make_iccid(1)
FOREIGN = make_iccid(2)


def error_object(run, code: str, exit_code: int, *, as_on_stderr: bool = True) -> dict:
    """The run's stdout is exactly one error object with this code and exit."""
    lines = run.stdout.splitlines()
    assert len(lines) == 1, run.stdout
    obj = json.loads(lines[0])
    assert jsoncheck.validate(obj, jsoncheck.schema("error")) == []
    assert (obj["ok"], obj["error"], obj["exit"], run.returncode) == (False, code, exit_code, exit_code), obj
    if as_on_stderr:  # the same one line as the error on stderr
        assert run.stderr.strip().splitlines()[-1].endswith(obj["message"]), (run.stderr, obj)
    return obj


# --- mtcd once ------------------------------------------------------------------

def test_once_json_on_a_missing_config_is_an_error_object_78(gateway, tmp_path):
    run = gateway.mtcd("--config", str(tmp_path / "absent.toml"), "once", "--json")
    obj = error_object(run, "config", 78)
    assert "absent.toml" in obj["message"]


def test_once_json_without_a_modem_is_an_error_object_69(gateway, tmp_path):
    gateway.configure(str(tmp_path / "no-such-port"))
    obj = error_object(gateway.mtcd("once", "--json"), "modem-unavailable", 69)
    assert "no-such-port" in obj["message"]


def test_once_json_refusal_names_reason_and_iccid(gateway):
    with sim_modem(make_card()) as (_, port):
        gateway.configure(port)
        gateway.store_pin(FOREIGN)
        run = gateway.mtcd("once", "--json")
    obj = error_object(run, "refused", 1, as_on_stderr=False)  # a decision, not an error: no error line
    # Today's fields are kept beside the error's.
    assert (obj["state"], obj["reason"], obj["iccid"], obj["link"]) == ("refused", "unknown-sim", ICCID, "down")
    assert obj["message"].startswith("refused: unknown-sim")
    assert TEST_PIN not in run.stdout + run.stderr


def test_once_json_success_carries_ok(gateway):
    with sim_modem(make_card()) as (_, port):
        gateway.configure(port)
        gateway.store_pin(ICCID)
        run = gateway.mtcd("once", "--json")
    assert run.returncode == 0, run.stderr
    obj = json.loads(run.stdout)
    assert obj["ok"] is True and obj["state"] == "paired" and obj["iccid"] == ICCID
    assert jsoncheck.validate(obj, jsoncheck.schema("mtcd-once")) == []


# --- mtcctl: the failures that printed nothing ----------------------------------

def test_pair_json_failure_is_an_error_object_without_the_pin(gateway):
    with sim_modem(make_card()) as (_, port):
        gateway.configure(port)
        run = gateway.mtcctl("pair", "--json", stdin="9753\n")  # not the card's PIN
    obj = error_object(run, "refused", 1)
    assert (obj["reason"], obj["iccid"]) == ("pin-rejected", ICCID)
    assert "9753" not in run.stdout + run.stderr and TEST_PIN not in run.stdout


def test_unblock_json_on_a_sim_that_is_not_blocked(gateway):
    with sim_modem(make_card()) as (modem, port):
        gateway.configure(port)
        run = gateway.mtcctl("sim", "unblock", "--json", stdin=f"{TEST_PUK}\n{TEST_PIN}\n")
        assert not any("," in c for c in modem.commands if c.upper().startswith("AT+CPIN="))
    obj = error_object(run, "refused", 1)
    assert TEST_PUK not in run.stdout + run.stderr and TEST_PIN not in run.stdout + run.stderr
    assert "not blocked" in obj["message"]


def test_rotate_json_refusal_from_the_gate_names_reason_and_iccid(gateway):
    with sim_modem(make_card()) as (_, port):
        gateway.configure(port)
        gateway.store_pin(FOREIGN)  # nothing for the inserted SIM: the gate refuses
        run = gateway.mtcctl("pin", "rotate", "--json")
    obj = error_object(run, "refused", 1)
    assert (obj["reason"], obj["iccid"]) == ("unknown-sim", ICCID)
    assert f"SIM {ICCID} is not paired" in obj["message"]


def test_a_refusal_through_the_service_keeps_its_code_reason_and_iccid(gateway, tmp_path):
    """`mtcd run` holds the modem: the refusal comes back over the control socket."""
    with sim_modem(make_card()) as (_, port):
        gateway.configure(port)
        gateway.store_pin(FOREIGN)
        service = subprocess.Popen([sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "run"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=gateway.env)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                status = gateway.mtcctl("status", "--json")
                live = json.loads(status.stdout).get("service") if status.returncode == 0 else None
                if live and live.get("reason") == "unknown-sim":
                    break
                time.sleep(0.2)
            else:
                pytest.fail("the service never refused the SIM")
            run = gateway.mtcctl("pin", "rotate", "--json")
        finally:
            service.terminate()
            service.wait(timeout=30)
    obj = error_object(run, "refused", 1)
    assert (obj["reason"], obj["iccid"]) == ("unknown-sim", ICCID)


def test_pin_set_and_forget_have_a_json_form(gateway):
    gateway.configure("/dev/null")
    stored = gateway.mtcctl("pin", "set", ICCID, "--json", stdin=TEST_PIN + "\n")
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout) == {"ok": True, "iccid": ICCID, "outcome": "stored", "replaced": False,
                                         "transport": False, "detail": f"stored the PIN for {ICCID}"}
    assert TEST_PIN not in stored.stdout
    again = json.loads(gateway.mtcctl("--json", "pin", "set", ICCID, "--transport", stdin=TEST_PIN + "\n").stdout)
    assert (again["replaced"], again["transport"]) == (True, True)
    forgot = json.loads(gateway.mtcctl("pin", "forget", ICCID, "--json").stdout)
    assert (forgot["ok"], forgot["outcome"]) == (True, "forgotten")
    assert json.loads(gateway.mtcctl("pin", "forget", ICCID, "--json").stdout)["outcome"] == "not-stored"


@pytest.mark.parametrize("iccid, stdin, what", [("12", TEST_PIN + "\n", "invalid ICCID"),
                                                (ICCID, "\n", "no PIN given"),
                                                (ICCID, "12ab\n", "invalid PIN")])
def test_pin_set_json_bad_input_is_65(gateway, iccid, stdin, what):
    gateway.configure("/dev/null")
    obj = error_object(gateway.mtcctl("pin", "set", iccid, "--json", stdin=stdin), "bad-input", 65)
    assert what in obj["message"] and "12ab" not in obj["message"]


def test_a_damaged_keystore_is_an_error_object_65(gateway):
    gateway.configure("/dev/null")
    gateway.store_pin(ICCID)
    (gateway.state_dir / "keystore.json").write_text("{")
    error_object(gateway.mtcctl("pin", "list", "--json"), "keystore-damaged", 65)


def test_usage_errors_are_json_when_json_was_asked_for(gateway):
    gateway.configure("/dev/null")
    obj = error_object(gateway.mtcctl("pin", "list", "--json", "--bogus"), "usage", 64)
    assert obj["message"] == "unrecognized arguments: --bogus (see mtcctl pin list --help)"
    error_object(gateway.mtcctl("--json", "no-such-command"), "usage", 64)
    error_object(gateway.mtcd("once", "--json", "--bogus"), "usage", 64)
    # Without --json, stdout stays empty.
    plain = gateway.mtcctl("pin", "list", "--bogus")
    assert (plain.returncode, plain.stdout) == (64, "")


def test_a_pin_among_unknown_options_is_redacted_in_the_json_too(gateway):
    gateway.configure("/dev/null")
    run = gateway.mtcctl("pin", "set", ICCID, "--json", "--tranport", TEST_PIN)
    obj = error_object(run, "usage", 64)
    assert TEST_PIN not in run.stdout + run.stderr
    assert obj["message"].startswith("unrecognized arguments: --tranport <redacted>")
    assert "PINs and PUKs are read from standard input" in obj["message"]
    assert obj["message"].endswith("(see mtcctl pin set --help)")


def test_every_command_json_form_is_listed_in_the_readme():
    readme = (jsoncheck.SCHEMA_DIR.parent.parent / "README.md").read_text()
    for path in sorted(jsoncheck.SCHEMA_DIR.glob("*.schema.json")):
        assert f"docs/json/{path.name}" in readme, path.name
        json.loads(path.read_text())


# --- the checker itself must be able to fail ------------------------------------

def test_the_checker_rejects_what_the_schemas_exclude():
    ok = {"ok": True, "iccid": ICCID, "outcome": "stored", "replaced": False, "transport": False, "detail": "x"}
    assert jsoncheck.check("mtcctl", ["pin", "set", ICCID, "--json"], json.dumps(ok), 0) == []
    assert jsoncheck.check("mtcctl", ["pin", "set", ICCID, "--json"], json.dumps({**ok, "pin": "1"}), 0)
    assert jsoncheck.check("mtcctl", ["pin", "set", ICCID, "--json"], json.dumps({**ok, "replaced": None}), 0)
    assert jsoncheck.check("mtcctl", ["pin", "set", ICCID, "--json"], "", 0)  # nothing printed
    assert jsoncheck.check("mtcctl", ["pin", "set", ICCID, "--json"], "", 69)  # an error with no object
    error = {"ok": False, "error": "modem-unavailable", "message": "m", "exit": 69}
    assert jsoncheck.check("mtcctl", ["status", "--json"], json.dumps(error), 69) == []
    assert jsoncheck.check("mtcctl", ["status", "--json"], json.dumps(error), 78)  # exit differs
    assert jsoncheck.check("mtcctl", ["status", "--json"], json.dumps({**error, "error": "Bad Code"}), 69)
    assert jsoncheck.check("mtcctl", ["status"], "not json", 0) == []  # no --json: nothing promised
    events = "\n".join(json.dumps({"time": "2026-01-01T00:00:00+00:00", "event": e}) for e in ("pin-set", "decision"))
    assert jsoncheck.check("mtcctl", ["history", "--json"], events, 0) == []
    assert jsoncheck.check("mtcctl", ["history", "--json"], events + "\n[1]", 0)


def test_a_command_without_a_schema_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(jsoncheck, "SCHEMA_DIR", tmp_path)
    problems = jsoncheck.check("mtcctl", ["pin", "list", "--json"], '{"ok": true, "pins": []}', 0)
    assert problems and "add docs/json/mtcctl-pin-list.schema.json" in problems[0]


def test_the_hook_sees_real_runs(gateway, monkeypatch, tmp_path):
    """The conftest hook checks a real process's output: with a schema that
    wants a field nobody prints, a run is reported."""
    strict = tmp_path / "schemas"
    strict.mkdir()
    for path in jsoncheck.SCHEMA_DIR.glob("*.schema.json"):
        (strict / path.name).write_text(path.read_text())
    shape = json.loads((strict / "mtcctl-pin-list.schema.json").read_text())
    shape["required"].append("never-printed")
    (strict / "mtcctl-pin-list.schema.json").write_text(json.dumps(shape))
    gateway.configure("/dev/null")
    problems = jsoncheck.watch(monkeypatch, strict)
    gateway.mtcctl("pin", "list", "--json")
    assert problems and "'never-printed' is missing" in problems[0]


# --- help texts -------------------------------------------------------------------

def _walk(parser: argparse.ArgumentParser, words=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                yield (*words, name), "(the subcommand itself)", helped.get(name)
                yield from _walk(child, (*words, name))
        elif not isinstance(action, argparse._HelpAction):
            yield words, "/".join(action.option_strings) or action.dest, action.help


@pytest.mark.parametrize("module", ["mtcd.cli.ctl", "mtcd.cli.daemon"])
def test_every_subcommand_and_option_has_help(module):
    from mtcd.cli import common

    parser = __import__(module, fromlist=["_parser"])._parser()
    common._share_global_options(parser)  # as parse_args does: the options every subcommand gets
    missing = [f"{parser.prog} {' '.join(words)}: {what}" for words, what, text in _walk(parser)
               if not text or (text == argparse.SUPPRESS and what != "--json")]
    assert missing == []
    # And each subcommand's --help runs (its text builds without error).
    for words, what, _ in _walk(parser):
        if what == "(the subcommand itself)":
            done = subprocess.run([sys.executable, "-m", module, *words, "--help"], capture_output=True, text=True,
                                  timeout=30)
            assert done.returncode == 0 and "usage:" in done.stdout, (words, done.stderr)


# --- output for people: never "None" ----------------------------------------------

def test_no_none_for_people(gateway):
    with sim_modem(make_card()) as (_, port):
        gateway.configure(port)
        gateway.store_pin(FOREIGN)
        refused = gateway.mtcd("once")  # a refusal: no IMSI, no retries read
        gateway.store_pin(ICCID)
        paired = gateway.mtcd("once")
        outputs = [refused, paired, gateway.mtcctl("status"), gateway.mtcctl("history", "--limit", "0"),
                   gateway.mtcctl("pin", "list")]
    assert refused.returncode == 1 and f"ICCID {ICCID}" in refused.stdout
    assert paired.returncode == 0
    for run in outputs:
        assert "None" not in run.stdout + run.stderr, run.stdout + run.stderr
    status = outputs[2].stdout.splitlines()
    # Aligned: every value starts in the same column.
    assert len({len(line) - len(line.split(":", 1)[1].lstrip()) for line in status}) == 1, status
    assert status[-1].startswith("last decision:") and f"ICCID {ICCID}" in status[-1]


def test_status_with_a_decision_that_lacks_fields(gateway):
    """A decision journaled without ICCID or IMEI (no SIM) shows no "None"."""
    from mtcd.journal import PairingJournal

    gateway.configure("/dev/null")
    PairingJournal(gateway.state_dir).append("decision", outcome="refused", reason="no-sim", iccid=None, imei=None)
    run = gateway.mtcctl("status")
    assert run.returncode == 0, run.stderr
    assert "None" not in run.stdout and "refused (no-sim) at " in run.stdout
    assert "None" not in gateway.mtcctl("history").stdout


def test_the_schemas_are_valid_json_schema_where_jsonschema_is_installed():
    """tests/jsoncheck.py knows a subset; the full validator (Debian bookworm's
    python3-jsonschema 4.10 or later), where present, checks the files are
    schemas at all and agrees with the subset on an output."""
    jsonschema = pytest.importorskip("jsonschema")
    for path in sorted(jsoncheck.SCHEMA_DIR.glob("*.schema.json")):
        jsonschema.Draft202012Validator.check_schema(json.loads(path.read_text()))
    good = {"ok": True, "iccid": ICCID, "outcome": "forgotten", "detail": "d"}
    shape = jsoncheck.schema("mtcctl-pin-forget")
    for value in (good, {**good, "outcome": "gone"}, {**good, "pin": "1"}):
        assert jsonschema.Draft202012Validator(shape).is_valid(value) == (jsoncheck.validate(value, shape) == [])
