"""JSON on every outcome of a `--json` command: one object on stdout, with
`"ok": true` when the command exits 0, else `"ok": false` and a stable
error code, the one-line message that also goes to stderr, and the exit
code.  The shapes are described by docs/json/*.schema.json.

Error codes are part of the interface (agents switch on them): a class's
`code` attribute (mtcd/errors.py), else this module's table for classes
defined elsewhere, else the code of the exit status.
"""

from __future__ import annotations

import json

from ..errors import (
    EXIT_CONFIG, EXIT_DATAERR, EXIT_IOERR, EXIT_NOPERM, EXIT_REFUSED, EXIT_SOFTWARE, EXIT_TEMPFAIL,
    EXIT_UNAVAILABLE, EXIT_USAGE, MtcdError,
)

# What an exit status means when nothing more precise is known.
_BY_EXIT = {
    EXIT_REFUSED: "refused",
    EXIT_USAGE: "usage",
    EXIT_DATAERR: "bad-input",
    EXIT_UNAVAILABLE: "modem-unavailable",
    EXIT_SOFTWARE: "internal",
    EXIT_IOERR: "io",
    EXIT_TEMPFAIL: "change-lost",
    EXIT_NOPERM: "not-permitted",
    EXIT_CONFIG: "config",
    130: "interrupted",
}


def _table() -> dict[type, str]:
    # Imported late: these modules import much of mtcd.
    from ..control import BadRequest, ControlError, ControlPermissionDenied, ControlTimeout, ServiceAlreadyRunning
    from ..datalink.base import DatalinkFailed
    from ..lifecycle import ChangeLost, LifecycleRefused
    from ..uicc import PresentationRefused

    return {
        LifecycleRefused: "refused",
        ChangeLost: "change-lost",
        DatalinkFailed: "datalink-failed",
        PresentationRefused: "internal",
        ControlError: "service-unavailable",
        ControlPermissionDenied: "not-permitted",
        ControlTimeout: "service-timeout",
        ServiceAlreadyRunning: "service-already-running",
        BadRequest: "",  # its exit code says which: usage (64) or bad input (65)
    }


def error_code(exc: BaseException, exit_code: int) -> str:
    """The stable code of an error: set on the instance (a service's answer
    carries the service's code), on its class, or taken from the exit code."""
    code = vars(exc).get("code") if hasattr(exc, "__dict__") else None
    if isinstance(code, str) and code:
        return code
    table = _table()
    for cls in type(exc).__mro__:
        if cls is MtcdError:
            break  # its "internal" is for errors whose exit code says no more
        if cls in table:
            return table[cls] or _BY_EXIT.get(exit_code, "internal")
        own = vars(cls).get("code")
        if isinstance(own, str) and own:
            return own
    return _BY_EXIT.get(exit_code, "internal")


def error_fields(exc: BaseException) -> dict:
    """What an error says beyond its message: a refusal's reason and ICCID."""
    details = getattr(exc, "details", None)
    return {k: v for k, v in details.items() if v is not None} if isinstance(details, dict) else {}


def outcome(obj: dict, exit_code: int, *, error: str | None = None, message: str | None = None) -> dict:
    """A command's result as printed: `ok` first, then the error fields when
    it did not exit 0, then the result's own fields (kept as they were)."""
    head: dict = {"ok": exit_code == 0}
    if exit_code != 0:
        head["error"] = error or _BY_EXIT.get(exit_code, "internal")
        head["message"] = message or str(obj.get("detail") or head["error"])
        head["exit"] = exit_code
    return {**head, **{k: v for k, v in obj.items() if k not in head}}


def failure(code: str, message: str, exit_code: int, **fields) -> dict:
    return {"ok": False, "error": code, "message": message, "exit": exit_code,
            **{k: v for k, v in fields.items() if v is not None}}


def wants_json(argv: list[str]) -> bool:
    """Whether --json is on the command line, read before argparse (which
    may be what fails).  Nothing after `--` is an option."""
    for word in argv:
        if word == "--":
            return False
        if word == "--json":
            return True
    return False


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=False)


__all__ = ["dumps", "error_code", "error_fields", "failure", "outcome", "wants_json"]
