"""Prometheus metrics as a textfile for node_exporter's textfile collector.

`[service] metrics_file` names the file, e.g.
/var/lib/prometheus/node-exporter/mtcd.prom.  The collector may read it at
any moment, so the file is written next to it under a name it ignores (not
ending in .prom) and renamed over it: it always sees a whole file.  Mode 0644,
so node_exporter, which does not run as root, can read it.  There is no
fsync: the values describe the running service and are all rewritten after
a restart, and sparing the SD card matters more.

Exposition format 0.0.4 (text).  Families:

    mtcd_up                              gauge   1 while the service runs; 0 once it stopped
    mtcd_paired                          gauge   1 while the SIM is paired
    mtcd_link_up                         gauge   1 while the data link is up
    mtcd_modem_up                        gauge   1 while the modem answers
    mtcd_sim_present                     gauge   1 while a SIM is inserted
    mtcd_pin_retries                     gauge   PIN attempts left as last read
    mtcd_decisions_total{outcome,reason} counter pairing decisions since start
    mtcd_last_decision_timestamp_seconds gauge   Unix time of the last decision

When the PIN attempts are unknown (not read, or after a successful unlock,
as in `mtcd once --json`) `mtcd_pin_retries` has no sample at all, rather
than NaN: an absent series is what Prometheus rules expect for "unknown"
(`mtcd_pin_retries < 2` must not fire, and NaN compares false anyway but
shows up as a value in dashboards).  The same for the timestamp before
the first decision.  A paired decision has `reason=""`, which Prometheus
treats as the label being absent.

node_exporter serves the last file it read for as long as it exists, so a
stopped service must not leave "paired, link up" behind: `mark_stopped()`
sets mtcd_up, mtcd_paired, mtcd_link_up and mtcd_modem_up to 0 and the
service writes that (atomically, like every write) on its way out.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from enum import Enum
from pathlib import Path

log = logging.getLogger("mtcd")

OUTCOMES = ("paired", "refused")

# name, type, help: in the order they are written.
_FAMILIES = (
    ("mtcd_up", "gauge", "Whether the mtcd service is running (1) or has stopped (0)."),
    ("mtcd_paired", "gauge", "Whether the inserted SIM is paired with this gateway (1) or not (0)."),
    ("mtcd_link_up", "gauge", "Whether the data link is up (1) or down (0)."),
    ("mtcd_modem_up", "gauge", "Whether the modem is open and answering (1) or not (0)."),
    ("mtcd_sim_present", "gauge", "Whether a SIM is inserted (1) or not (0)."),
    ("mtcd_pin_retries", "gauge", "PIN attempts left on the SIM as last read; absent when unknown."),
    ("mtcd_decisions_total", "counter", "Pairing decisions since the service started, by outcome and reason."),
    ("mtcd_last_decision_timestamp_seconds", "gauge", "Unix time of the last pairing decision."),
)


def escape_label_value(value: str) -> str:
    """A label value as the text format wants it: backslash, double quote
    and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Metrics:
    """The service's state as metrics.  Setters only change memory; `write()`
    puts the file out (the service calls it after each change it makes).
    Safe to use from the AT reader thread and the service loop at once."""

    def __init__(self, path: Path | None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._up = True
        self._paired = False
        self._link_up = False
        self._modem_up = False
        self._sim_present = False
        self._pin_retries: int | None = None
        self._decisions: dict[tuple[str, str], int] = {}
        self._last_decision: float | None = None
        self._failing = False  # a warning was logged; quiet until a write succeeds

    # --- state ------------------------------------------------------------

    def record_decision(self, outcome: str, reason: str | Enum | None = None,
                        pin_retries: int | None = None, *, when: float | None = None) -> None:
        """One pairing decision: `outcome` "paired" or "refused", the refusal
        reason (None when paired), the PIN attempts left (None: unknown)."""
        if outcome not in OUTCOMES:
            raise ValueError(f'outcome must be "paired" or "refused" (got {outcome!r})')
        if isinstance(reason, Enum):
            reason = reason.value
        key = (outcome, "" if reason is None else str(reason))
        with self._lock:
            self._decisions[key] = self._decisions.get(key, 0) + 1
            self._paired = outcome == "paired"
            self._pin_retries = _retries(pin_retries)
            self._last_decision = time.time() if when is None else float(when)

    def set_paired(self, paired: bool) -> None:
        """E.g. the SIM was removed after pairing: not paired any more,
        without a decision being taken."""
        with self._lock:
            self._paired = bool(paired)

    def set_link(self, up: bool) -> None:
        with self._lock:
            self._link_up = bool(up)

    def set_modem(self, up: bool) -> None:
        with self._lock:
            self._modem_up = bool(up)

    def set_sim_present(self, present: bool) -> None:
        with self._lock:
            self._sim_present = bool(present)

    def mark_stopped(self) -> None:
        """The service is going away: nothing it reported holds any more."""
        with self._lock:
            self._up = False
            self._paired = self._link_up = self._modem_up = False

    def set_pin_retries(self, retries: int | None) -> None:
        with self._lock:
            self._pin_retries = _retries(retries)

    # --- output -----------------------------------------------------------

    def render(self) -> str:
        """The whole file, in the text exposition format."""
        with self._lock:
            samples: dict[str, list[tuple[str, float]]] = {
                "mtcd_up": [("", self._up)],
                "mtcd_paired": [("", self._paired)],
                "mtcd_link_up": [("", self._link_up)],
                "mtcd_modem_up": [("", self._modem_up)],
                "mtcd_sim_present": [("", self._sim_present)],
                "mtcd_pin_retries": [] if self._pin_retries is None else [("", self._pin_retries)],
                "mtcd_decisions_total": [
                    (f'{{outcome="{escape_label_value(o)}",reason="{escape_label_value(r)}"}}', n)
                    for (o, r), n in sorted(self._decisions.items())
                ],
                "mtcd_last_decision_timestamp_seconds":
                    [] if self._last_decision is None else [("", self._last_decision)],
            }
        out = []
        for name, kind, help_text in _FAMILIES:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(f"{name}{labels} {format_value(v)}" for labels, v in samples[name])
        return "\n".join(out) + "\n"

    def write(self) -> bool:
        """Replace the file with the current values.  Never raises: a file
        that cannot be written is logged once (until a write succeeds again)
        and the service goes on.  Returns whether the file was written; with
        no path configured, does nothing and returns False."""
        if self.path is None:
            return False
        try:
            _replace(self.path, self.render().encode("utf-8"))
        except (OSError, ValueError) as exc:
            if not self._failing:
                self._failing = True
                why = exc.strerror.lower() if isinstance(exc, OSError) and exc.strerror else exc
                log.warning("cannot write metrics to %s: %s", self.path, why)
            return False
        if self._failing:
            self._failing = False
            log.info("metrics written to %s again", self.path)
        return True


def _retries(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"pin_retries must be a count >= 0 or None (got {value!r})")
    return value


def _replace(path: Path, data: bytes) -> None:
    # Not ending in .prom: the collector only reads *.prom, so it never sees
    # the temporary file even if a crash leaves one behind.  A unique name,
    # not a secret (os.urandom, not the `secrets` module and its libcrypto).
    tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        os.fchmod(fd, 0o644)  # whatever the umask (systemd units often set 0077)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
