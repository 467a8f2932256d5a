"""What both commands share: argument errors as exit 64, one-line errors,
logging to stderr, and the config file."""

from __future__ import annotations

import argparse
import json
import re
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from ..config import DEFAULT_CONFIG_PATH, Config, load_config
from ..errors import EXIT_SOFTWARE, EXIT_USAGE, MtcdError, UsageError


# A mistyped command line may carry a PIN or PUK (4 to 8 digits) where it
# does not belong; argparse would echo it back in its error message.
_SECRET_LOOKING = re.compile(r"(?<![0-9])[0-9]{4,8}(?![0-9])")


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error raises instead of exiting with 2, and
    never repeats anything that looks like a PIN or PUK."""

    def error(self, message: str):
        if message.startswith("unrecognized arguments"):
            message = "unexpected extra arguments (PINs and PUKs are read from standard input, never from the command line)"
        message = _SECRET_LOOKING.sub("<redacted>", message)
        raise UsageError(f"{message} (see {self.prog} --help)")


def add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG_PATH, metavar="PATH",
        help=f"configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeat for AT traces)")


def setup_logging(prog: str, verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format=f"{prog}: %(levelname)s: %(message)s")


def config_from(args) -> Config:
    return load_config(args.config)


def print_json(obj) -> None:
    print(json.dumps(obj, sort_keys=False), flush=True)


def run_main(prog: str, body: Callable[[list[str]], int], argv: list[str] | None) -> int:
    """Run a command body; turn every expected error into one line on stderr
    and its documented exit code.  Anything else is a bug: still one line
    (no traceback, which could carry local values), exit 70."""
    try:
        return body(sys.argv[1:] if argv is None else argv)
    except MtcdError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        print(f"{prog}: internal error: {type(exc).__name__} (please report)", file=sys.stderr)
        return EXIT_SOFTWARE


__all__ = ["ArgumentParser", "EXIT_USAGE", "add_config_option", "config_from", "print_json", "run_main", "setup_logging"]
