"""One call run in a thread of its own while this one talks to the modem.

A session's first commands (radio off, the dialect, the identities) each
wait for the modem; opening the keystore (its data key may take a
systemd-creds run or the TPM) and loading AES-GCM's bindings need nothing
from the modem, so they happen during those waits instead of after them.

The caller imports every module the call needs before starting it: two
threads importing modules at the same time can meet in CPython's
per-module import locks.  `result()` returns what the call returned or
raises what it raised, in the caller's thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Background(Generic[T]):
    def __init__(self, call: Callable[[], T], name: str):
        self._call = call
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

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
