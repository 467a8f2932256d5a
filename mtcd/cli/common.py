"""What both commands share: argument errors as exit 64, one-line errors,
logging to stderr, standard output that fails politely, and the config file."""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from .. import logsetup
from . import jsonout
from ..config import DEFAULT_CONFIG_PATH, Config, load_config
from ..errors import (
    EXIT_SOFTWARE, EXIT_USAGE, KeystoreError, MtcdError, NotPermitted, OutputFailed, StateError, UsageError,
)

# A reader that went away (`mtcctl history | head -1`): what a shell reports
# for a command killed by SIGPIPE, and no message, as cat or ls would do.
EXIT_READER_GONE = 128 + 13

# A mistyped command line may carry a PIN or PUK (4 to 8 digits) where it
# does not belong; argparse would echo it back in its error message.
_SECRET_LOOKING = re.compile(r"(?<![0-9])[0-9]{4,8}(?![0-9])")


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS when a positive number,
    else standard output's terminal, else 80."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error raises instead of exiting with 2, and
    never repeats anything that looks like a PIN or PUK."""

    def error(self, message: str):
        extra = re.fullmatch(r"unrecognized arguments: (.*)", message, re.S)
        if extra and any(_SECRET_LOOKING.fullmatch(a) for a in extra[1].split()):
            # Name the mistyped options, never a value that may be a secret.
            shown = " ".join("<redacted>" if _SECRET_LOOKING.search(a) else a for a in extra[1].split())
            message = (f"unrecognized arguments: {shown} (PINs and PUKs are read from standard input, "
                       "never from the command line)")
        message = _SECRET_LOOKING.sub("<redacted>", " ".join(message.split()))
        raise UsageError(f"{message} (see {self.prog} --help)")

    def _get_formatter(self):
        # What argparse does (the terminal's width less 2), without asking
        # shutil for it: shutil brings zlib, bz2 and lzma (0.4 MiB), and a
        # formatter is made for every option added, so even a command that
        # prints no help (`mtcctl status`) paid for them.
        return self.formatter_class(prog=self.prog, width=terminal_columns() - 2)

    def parse_args(self, args=None, namespace=None):
        # Only the top parser's parse_args runs: subcommands are parsed with
        # parse_known_args.  So here the global options join every
        # subcommand, and what was said before and after is combined.
        _share_global_options(self)
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            # Said by the subcommand that was used, so that its own --help is named.
            _used_parser(self, parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        if hasattr(parsed, "verbose"):
            _settle_global_options(self, parsed)
        return parsed


def add_version_option(parser: argparse.ArgumentParser) -> None:
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


# Names the configuration file for every command (mtcd, mtcctl, the keyring
# backend) when --config does not.
CONFIG_ENV = "MTCD_CONFIG"
_CONFIG_HELP = f"configuration file (default ${CONFIG_ENV}, else {DEFAULT_CONFIG_PATH}; drop-ins in PATH.d/*.toml)"
_VERBOSE_HELP = "more log output (repeat for AT traces)"
_JSON_HELP = "print the result as JSON (commands that have a JSON form)"


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """The global options --config, -v and --json.  Accepted before the
    subcommand and after it (`mtcctl --json pin list`, `mtcctl pin list
    --json`); the subcommands get their copies when the top parser parses."""
    parser.add_argument("--config", type=Path, default=None, metavar="PATH", help=_CONFIG_HELP)
    parser.add_argument("-v", "--verbose", action="count", default=0, help=_VERBOSE_HELP)
    parser.add_argument("--json", action="store_true", help=_JSON_HELP)


def _leaves(parser: argparse.ArgumentParser):
    """(command words, parser) of every subcommand that takes no further subcommand."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield (), parser
    for action in subs:
        for name, child in action.choices.items():
            for words, leaf in _leaves(child):
                yield (name, *words), leaf


def _share_global_options(top: argparse.ArgumentParser) -> None:
    """Give every subcommand --config, -v and --json.  Their defaults are
    SUPPRESS: argparse copies a subcommand's namespace over the top one, so
    a default there would undo `mtcctl --json pin list`.  A subcommand that
    declared --json itself has a JSON form; its flag is made to match."""
    if getattr(top, "_globals_shared", False) or not any(a.dest == "verbose" for a in top._actions):
        return
    top._globals_shared = True
    for words, leaf in _leaves(top):
        if leaf is top:
            continue
        own_json = [a for a in leaf._actions if "--json" in a.option_strings]
        for action in own_json:
            action.default = argparse.SUPPRESS
            action.help = action.help or "print the result as one JSON object, errors included (docs/json/)"
        leaf.set_defaults(_json_form=bool(own_json))
        leaf.add_argument("--config", type=Path, default=argparse.SUPPRESS, metavar="PATH", help=_CONFIG_HELP)
        leaf.add_argument("-v", "--verbose", dest="_verbose_after", action="count", default=argparse.SUPPRESS,
                          help=_VERBOSE_HELP)
        if not own_json:
            leaf.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _settle_global_options(top: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--config after the subcommand wins over one before it, either over
    $MTCD_CONFIG, that over the default; -v counts wherever it stands;
    --json on a subcommand without a JSON form is a usage error, not ignored."""
    args.verbose += vars(args).pop("_verbose_after", 0)
    if args.config is None:
        args.config = Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)
    if args.json and not vars(args).pop("_json_form", True):
        words = [getattr(args, a.dest) for a in _subcommand_actions(top, args)]
        top.error(f"--json: '{' '.join(words)}' has no JSON output")
    vars(args).pop("_json_form", None)


def _used_parser(top: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The innermost subcommand's parser that `args` came through."""
    used = top
    for action in _subcommand_actions(top, args):
        used = action.choices[getattr(args, action.dest)]
    return used


def _subcommand_actions(parser: argparse.ArgumentParser, args: argparse.Namespace):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and getattr(args, action.dest, None) in action.choices:
            yield action
            yield from _subcommand_actions(action.choices[getattr(args, action.dest)], args)


def setup_logging(prog: str, verbose: int) -> None:
    # With the journal on stderr each line carries its priority (mtcd.logsetup).
    logsetup.setup(prog, verbose)


def config_from(args) -> Config:
    config = load_config(args.config)
    check_state_dir_place(config.state_dir)
    return config


def check_state_dir_place(state_dir: Path) -> None:
    """A state directory that can never be created (a path through a regular
    file) is an I/O problem of this machine, said before anything opens it."""
    for place in (state_dir, *state_dir.parents):
        try:
            if place.is_dir():
                return
            if place.exists() or place.is_symlink():
                raise StateError(f"state directory {state_dir}: {place} is not a directory")
        except OSError as exc:
            raise StateError(f"state directory {state_dir}: {exc.strerror or exc}") from None


def print_json(obj, exit_code: int = 0, *, error: str | None = None, message: str | None = None) -> None:
    """A command's JSON result: an object gets `ok` (and, for an exit other
    than 0, the error fields) in front of its own fields (mtcd/cli/jsonout.py)."""
    if isinstance(obj, dict):
        obj = jsonout.outcome(obj, exit_code, error=error, message=message)
    print(json.dumps(obj, sort_keys=False), flush=True)


def _print_json_failure(stdout, failure: dict) -> None:
    """The error object of a --json command; stdout that cannot take it
    any more (a dead pipe, a full disk) is left alone: stderr said it."""
    if stdout is None:
        return
    try:
        stdout.write(jsonout.dumps(failure) + "\n")
        stdout.flush()
    except (OSError, ValueError, _ReaderGone, OutputFailed):
        _silence_stdout()


class _ReaderGone(Exception):
    """Standard output is a pipe nobody reads any more."""


def reader_gone() -> None:
    """End the command as a write to a pipe nobody reads would (exit 141)."""
    raise _ReaderGone()


class _GuardedOutput:
    """sys.stdout, turning a failed write into an error mtcd can name: a
    closed pipe ends the command quietly, anything else (ENOSPC on
    /dev/full) is one line and exit 74."""

    def __init__(self, stream):
        self._stream = stream

    def _guard(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise _ReaderGone() from None
        except OSError as exc:
            raise OutputFailed(f"cannot write standard output: {exc.strerror or exc}") from None

    def write(self, text):
        return self._guard(self._stream.write, text)

    def flush(self):
        return self._guard(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _silence_stdout() -> None:
    # Output still buffered for a dead pipe or a full disk would be retried,
    # and fail loudly, at interpreter exit.
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.__stdout__.fileno())
        os.close(null)
    except (OSError, AttributeError, ValueError):
        pass


def _not_permitted(exc: MtcdError) -> MtcdError:
    """Root's state directory read by another user: not damaged data (65)
    but a permission (77), with what to do about it."""
    if os.geteuid() != 0 and isinstance(exc, (KeystoreError, StateError)):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, PermissionError) or (isinstance(cause, OSError) and cause.errno == errno.EACCES):
            where = f" {cause.filename}" if cause.filename else ""
            return NotPermitted(f"permission denied on{where}: run as root or in service.admin_group")
    return exc


def run_main(prog: str, body: Callable[[list[str]], int], argv: list[str] | None) -> int:
    """Run a command body; turn every expected error into one line on stderr
    and its documented exit code.  Anything else is a bug: still one line
    (no traceback, which could carry local values), exit 70."""
    real_stdout = sys.stdout
    if real_stdout is not None:  # None: started with file descriptor 1 closed
        sys.stdout = _GuardedOutput(real_stdout)
    argv = sys.argv[1:] if argv is None else argv
    # Asked for JSON: every failure is also one JSON object on stdout.
    as_json = jsonout.wants_json(argv)
    try:
        try:
            code = body(argv)
        except SystemExit as done:  # --help, --version: argparse's own exit
            code = done.code if isinstance(done.code, int) else 0
        if sys.stdout is not None:
            sys.stdout.flush()
        return code
    except _ReaderGone:
        _silence_stdout()
        return EXIT_READER_GONE
    except MtcdError as exc:
        if isinstance(exc, OutputFailed):
            _silence_stdout()
        exc = _not_permitted(exc)
        text = " ".join(str(exc).split())
        print(logsetup.error_line(prog, text), file=sys.stderr)
        if as_json and not isinstance(exc, OutputFailed):
            _print_json_failure(sys.stdout, jsonout.failure(jsonout.error_code(exc, exc.exit_code), text,
                                                            exc.exit_code, **jsonout.error_fields(exc)))
        return exc.exit_code
    except KeyboardInterrupt:
        print(logsetup.error_line(prog, "interrupted"), file=sys.stderr)
        if as_json:
            _print_json_failure(sys.stdout, jsonout.failure("interrupted", "interrupted", 130))
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        text = f"internal error: {type(exc).__name__} (please report)"
        print(logsetup.error_line(prog, text), file=sys.stderr)
        if as_json:
            _print_json_failure(sys.stdout, jsonout.failure("internal", text, EXIT_SOFTWARE))
        return EXIT_SOFTWARE
    finally:
        sys.stdout = real_stdout


__all__ = ["ArgumentParser", "EXIT_READER_GONE", "EXIT_USAGE", "add_config_option", "check_state_dir_place",
           "config_from", "print_json", "run_main", "setup_logging"]
