"""The one exception tree of mtcd, with the exit code each kind maps to.

Exit codes follow sysexits(3) so that device-management agents can act on
them without parsing text:

    0   paired / success          64  usage error (EX_USAGE)
    1   refused (pairing failed)  65  damaged data on disk (EX_DATAERR)
    69  modem unavailable         70  internal error (EX_SOFTWARE)
    74  I/O error (EX_IOERR)      75  the card's answer to a PIN change was
                                      lost; settled at the next pairing (EX_TEMPFAIL)
    77  not permitted (EX_NOPERM)
    78  configuration error (EX_CONFIG)

Each kind also has a stable `code`: the "error" of the JSON object a
`--json` command prints when it fails (mtcd/cli/jsonout.py).

No message built by this module or its callers may contain a PIN or PUK:
secrets are `mtcd.secret.Secret` objects, which refuse to print themselves.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 64
EXIT_DATAERR = 65
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_IOERR = 74
EXIT_TEMPFAIL = 75
EXIT_NOPERM = 77
EXIT_CONFIG = 78


class MtcdError(Exception):
    """Base of every error mtcd raises on purpose; anything else is a bug."""

    exit_code = EXIT_SOFTWARE
    code = "internal"


class UsageError(MtcdError):
    """The command line is wrong: unknown subcommand, missing argument."""

    exit_code = EXIT_USAGE
    code = "usage"


class ConfigError(MtcdError):
    """The configuration file is missing, unreadable or invalid.

    Example: ``policy.min_retries must be an integer from 1 to 3``.
    """

    exit_code = EXIT_CONFIG
    code = "config"


class ModemUnavailable(MtcdError):
    """The modem cannot be used: the port is missing, it does not answer,
    or it answers with something that is not AT."""

    exit_code = EXIT_UNAVAILABLE
    code = "modem-unavailable"


class ModemProtocolError(ModemUnavailable):
    """The modem sent a reply we cannot make sense of ("remote" error).

    Example: ``+CPINR: SIM PIN,x,3`` where a number was expected.
    """

    code = "modem-protocol"


class CommandFailed(MtcdError):
    """A command ended with ERROR, +CME ERROR or +CMS ERROR.

    ``cme`` is the numeric +CME ERROR code when the modem gave one (verbose
    texts are mapped to their numbers), else None.  ``command`` is the
    loggable form of the command, never its secret arguments.
    """

    exit_code = EXIT_UNAVAILABLE
    code = "modem-command-failed"

    def __init__(self, command: str, result: str, cme: int | None = None):
        self.command = command
        self.result = result
        self.cme = cme
        super().__init__(f"{command}: {result}")


class KeystoreError(MtcdError):
    """The sealed PIN store cannot be read or written safely.

    Example: the file was truncated or altered (authentication failed), or
    the key file has loose permissions.
    """

    exit_code = EXIT_DATAERR
    code = "keystore-damaged"


class StateError(MtcdError):
    """A file under the state directory (journal, lock) is damaged or cannot
    be written."""

    exit_code = EXIT_IOERR
    code = "state-io"


class NotPermitted(MtcdError):
    """This user may not do it: root's state directory, the service's socket."""

    exit_code = EXIT_NOPERM
    code = "not-permitted"


class OutputFailed(MtcdError):
    """Standard output cannot be written (a full disk, a dead terminal)."""

    exit_code = EXIT_IOERR
    code = "output-failed"
