"""Every JSON output the test suite sees, checked against docs/json/.

`watch()` wraps `subprocess.Popen.communicate` (which `subprocess.run`
uses too): whenever a test runs `mtcd` or `mtcctl` with `--json` and
captures its stdout, the output is checked against the schema of the
command that was run (docs/json/<prog>-<words>.schema.json) or, when
`ok` is false, docs/json/error.schema.json.  conftest.py fails the test
that produced a mismatch, naming it.

The validator knows the part of JSON Schema (2020-12) the files use:
type, const, enum, properties, required, additionalProperties, items,
pattern, minLength, minimum, maximum, not.  Anything else in a schema is
an error here, so that a keyword is never silently ignored.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "json"

_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
_ANNOTATIONS = {"$schema", "$id", "title", "description"}
_KNOWN = _ANNOTATIONS | {"type", "const", "enum", "properties", "required", "additionalProperties", "items",
                         "pattern", "minLength", "minimum", "maximum", "not", "maxItems"}


def _same(a, b) -> bool:
    # JSON equality: true is not 1.
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b


def validate(value, schema: dict, where: str = "$") -> list[str]:
    """What is wrong with `value` under `schema`: one line per problem."""
    unknown = set(schema) - _KNOWN
    if unknown:
        return [f"{where}: the schema uses {sorted(unknown)}, which this validator does not know"]
    problems: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return [f"{where}: {json.dumps(value)} is not of type {' or '.join(types)}"]
    if "const" in schema and not _same(value, schema["const"]):
        problems.append(f"{where}: {json.dumps(value)} is not {json.dumps(schema['const'])}")
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        problems.append(f"{where}: {json.dumps(value)} is not one of {json.dumps(schema['enum'])}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value):
            problems.append(f"{where}: {json.dumps(value)} does not match {schema['pattern']}")
        if len(value) < schema.get("minLength", 0):
            problems.append(f"{where}: {json.dumps(value)} is shorter than {schema['minLength']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            problems.append(f"{where}: {value} is below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            problems.append(f"{where}: {value} is above {schema['maximum']}")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                problems.append(f"{where}: {name!r} is missing")
        for name, item in value.items():
            if name in props:
                problems += validate(item, props[name], f"{where}.{name}")
            elif schema.get("additionalProperties", True) is False:
                problems.append(f"{where}: {name!r} is not in the schema")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += validate(item, schema["additionalProperties"], f"{where}.{name}")
    if isinstance(value, list) and len(value) > schema.get("maxItems", len(value)):
        problems.append(f"{where}: {len(value)} items, more than {schema['maxItems']}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            problems += validate(item, schema["items"], f"{where}[{i}]")
    if "not" in schema and not validate(value, schema["not"], where):
        problems.append(f"{where}: matches what the schema excludes ({json.dumps(schema['not'])})")
    return problems


def schema(name: str, schema_dir: Path | None = None) -> dict | None:
    path = (schema_dir or SCHEMA_DIR) / f"{name}.schema.json"
    return json.loads(path.read_text()) if path.exists() else None


def command_words(prog: str, argv: list[str]) -> list[str]:
    """The subcommand words of a command line, as the command's own parser reads them."""
    from mtcd.cli import common

    module = __import__(f"mtcd.cli.{'ctl' if prog == 'mtcctl' else 'daemon'}", fromlist=["_parser"])
    parser = module._parser()
    args = parser.parse_args(argv)
    return [getattr(args, a.dest) for a in common._subcommand_actions(parser, args)]


def _skipped(argv: list[str]) -> bool:
    options = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" not in options or any(o in options for o in ("-h", "--help", "--version"))


def check(prog: str, argv: list[str], stdout: str, returncode: int, schema_dir: Path | None = None) -> list[str]:
    """What is wrong with one run's JSON output; [] when it is right or
    when there was nothing to promise (killed by a signal, a reader gone)."""
    if _skipped(argv) or returncode < 0 or returncode == 141:
        return []
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        objects = [json.loads(line) for line in lines]
    except ValueError:
        return [f"stdout is not JSON lines: {stdout[:200]!r}"]
    failed = [o for o in objects if isinstance(o, dict) and o.get("ok") is False]
    if failed or returncode != 0:
        if not objects or objects[-1] not in failed:
            return [f"exit {returncode} without the error object as the last line of stdout: {stdout[:200]!r}"]
        error = objects[-1]
        problems = validate(error, schema("error", schema_dir))
        if error.get("exit") != returncode:
            problems.append(f"\"exit\" {error.get('exit')} but the command exited {returncode}")
        return problems
    try:
        words = command_words(prog, argv)
    except Exception as exc:  # noqa: BLE001 - a success whose command line does not parse
        return [f"exit 0, but the command line does not parse ({exc})"]
    name = "-".join([prog, *words])
    shape = schema(name, schema_dir)
    if shape is None:
        return [f"no schema for `{prog} {' '.join(words)} --json`: add docs/json/{name}.schema.json "
                "(and its line in README's table)"]
    if name == "mtcctl-history":  # JSON lines: one event each, none at all is fine
        return [p for i, o in enumerate(objects) for p in validate(o, shape, f"line {i + 1}")]
    if len(objects) != 1:
        return [f"{len(objects)} JSON lines on stdout, not one object"]
    return validate(objects[0], shape)


def _prog_and_argv(args) -> tuple[str, list[str]] | None:
    if not isinstance(args, (list, tuple)):
        return None
    args = [str(a) for a in args]
    for i, word in enumerate(args):
        if word == "-m" and i + 1 < len(args) and args[i + 1] in ("mtcd.cli.ctl", "mtcd.cli.daemon"):
            return ("mtcctl" if args[i + 1] == "mtcd.cli.ctl" else "mtcd"), args[i + 2:]
        if Path(word).name in ("mtcctl", "mtcd") and i == 0:
            return Path(word).name, args[1:]
    return None


def watch(monkeypatch, schema_dir: Path | None = None) -> list[str]:
    """Check every mtcd/mtcctl run's --json output from now on; the list
    returned fills with what is wrong."""
    problems: list[str] = []
    original = subprocess.Popen.communicate

    def communicate(self, *a, **kw):
        out, err = original(self, *a, **kw)
        run = _prog_and_argv(self.args)
        if run is not None and out is not None and self.returncode is not None:
            text = out.decode("utf-8", "replace") if isinstance(out, bytes) else out
            for problem in check(*run, text, self.returncode, schema_dir):
                problems.append(f"{run[0]} {' '.join(run[1])} (exit {self.returncode}): {problem}")
        return out, err

    monkeypatch.setattr(subprocess.Popen, "communicate", communicate)
    return problems
