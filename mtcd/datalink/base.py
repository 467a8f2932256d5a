"""The data link's frame and the backends that need nothing outside the
modem and a configured command: "none", "at" and "command".

`up()` takes the `Paired` decision itself: there is no way to bring a link
up without one (guarantee 3).  Every backend switches the radio on as part
of `up()` and off as part of `down()`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from ..at import commands
from ..errors import EXIT_UNAVAILABLE, CommandFailed, MtcdError
from ..modem import Modem, SimChangedMidway
from ..policy import Paired

log = logging.getLogger("mtcd.datalink")


class DatalinkFailed(MtcdError):
    """The SIM is paired but the data link could not be brought up."""

    exit_code = EXIT_UNAVAILABLE


class Datalink:
    """Backend "none": the radio only; others add their own bring-up."""

    name = "none"

    def __init__(self, modem: Modem):
        self.modem = modem

    def up(self, proof: Paired) -> None:
        if not isinstance(proof, Paired):
            raise TypeError("a data link comes up only for a paired SIM")
        try:
            self.modem.switch_radio_on()
            self._bring_up()
        except CommandFailed as exc:
            self._close_after_failure()
            raise DatalinkFailed(f"radio on failed: {exc}") from None
        except MtcdError:
            # Half up is not up (a failed command, a timeout): leave nothing
            # on the air we do not manage.
            self._close_after_failure()
            raise

    def down(self) -> None:
        self._take_down()
        self.modem.switch_radio_off()

    def prepare(self) -> None:
        """At session start, radio off, before any pairing: undo what the
        modem would do by itself (a vendor auto-connect).  Reads and
        switches off only; never starts anything."""

    def hold(self) -> None:
        """At session start, before the radio is switched off: stop what
        outside the modem would switch it on again (NetworkManager's WWAN).
        Never raises; prepare() meets any failure again, radio off."""

    def _bring_up(self) -> None:
        pass

    def _take_down(self) -> None:
        pass

    def release_without_modem(self) -> None:
        """Undo what the backend may have left outside the modem (the
        command backend's link) when the modem itself is gone."""

    def _close_after_failure(self) -> None:
        try:
            self.down()
        except MtcdError as exc:
            log.warning("closing the half-open link: %s", exc)


class AtDatalink(Datalink):
    """PDP context through the modem itself (TS 27.007 §10.1)."""

    name = "at"

    def __init__(self, modem: Modem, apn: str, pdp_type: str = "IP", cid: int = 1):
        super().__init__(modem)
        self.apn, self.pdp_type, self.cid = apn, pdp_type, cid

    def _bring_up(self) -> None:
        try:
            self.modem.run_together([commands.define_pdp_context(self.cid, self.pdp_type, self.apn),
                                     commands.activate_pdp_context(self.cid, True)])
        except (CommandFailed, SimChangedMidway) as exc:
            raise DatalinkFailed(f"PDP context activation failed: {exc}") from None

    def _take_down(self) -> None:
        try:
            self.modem.run(commands.activate_pdp_context(self.cid, False))
        except CommandFailed as exc:
            log.info("PDP deactivation: %s (the radio goes off anyway)", exc)


class CommandDatalink(Datalink):
    """Runs configured commands (pppd, qmicli, a systemd unit...) around the radio."""

    name = "command"

    def __init__(self, modem: Modem, up_argv: Sequence[str], down_argv: Sequence[str], timeout: float = 120.0):
        super().__init__(modem)
        self.up_argv, self.down_argv, self.timeout = list(up_argv), list(down_argv), timeout

    def _bring_up(self) -> None:
        self._run(self.up_argv, "up")

    def release_without_modem(self) -> None:
        self._take_down()

    def _take_down(self) -> None:
        if self.down_argv:
            try:
                self._run(self.down_argv, "down")
            except DatalinkFailed as exc:
                log.warning("%s", exc)

    def _run(self, argv: list[str], what: str) -> None:
        import subprocess  # not at start-up: only a backend that runs programs needs it

        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DatalinkFailed(f"datalink {what} command {argv[0]!r} failed: {_why(exc)}") from None
        if done.returncode != 0:
            said = _last_line(done.stderr)
            raise DatalinkFailed(f"datalink {what} command {argv[0]!r} exited with {done.returncode}"
                                 + (f": {said}" if said else ""))


# The command's own last word on stderr (pppd, qmicli...), as one bounded
# line: it goes into a one-line error, the journal and the status.
MAX_STDERR_SHOWN = 200


def _last_line(stderr: bytes) -> str:
    for line in reversed(stderr[-16384:].decode("utf-8", "replace").splitlines()):
        text = "".join(c if c.isprintable() else " " for c in line).strip()
        if text:
            return text if len(text) <= MAX_STDERR_SHOWN else text[: MAX_STDERR_SHOWN - 3] + "..."
    return ""


def _why(exc: BaseException) -> str:
    subprocess = sys.modules.get("subprocess")  # loaded by whoever ran the program
    if subprocess is not None and isinstance(exc, subprocess.TimeoutExpired):
        return f"no exit within {exc.timeout:g} s"
    return getattr(exc, "strerror", None) or type(exc).__name__
