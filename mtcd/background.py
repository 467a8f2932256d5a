"""One call run in a thread of its own while this one talks to the modem.

A session's first commands (radio off, the dialect, the identities) each
wait for the modem; opening the keystore (its data key may take a
systemd-creds run or the TPM) and loading AES-GCM's bindings need nothing
from the modem, so they happen during those waits instead of after them.

The caller imports every module the call needs before starting it: two
threads importing modules at the same time can meet in CPython's
per-module import locks.  `result()` returns what the call returned or
raises what it raised, in the caller's thread.

A session that fails before it asks for the result still exits while the
call may be inside an extension module (cryptography's Rust bindings load
in it).  CPython ends a daemon thread that wakes during finalization by
unwinding its stack, and an unwind through those frames aborts the whole
process (SIGABRT, "FATAL: exception not rethrown") instead of exiting with
the command's own status: so the exit waits for the call, boundedly.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

# How long an exit waits for a call still running: opening the keystore
# takes milliseconds, or a systemd-creds run / TPM round trip.
EXIT_WAIT = 10.0


class Background(Generic[T]):
    def __init__(self, call: Callable[[], T], name: str):
        self._call = call
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        atexit.register(self._thread.join, EXIT_WAIT)

    def _run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to result()'s caller, raised there
            self._error = exc

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._value
