"""Structured events for the systemd journal.

The pairing journal (`mtcd.journal`) is mtcd's own durable record; these are
the same moments told to journald, so that an operator can follow them with
`journalctl MESSAGE_ID=...` or `journalctl MTCD_EVENT=refused` and a
monitoring agent can match them without parsing text.  Each event has a
fixed MESSAGE_ID (the unit's catalog file explains them under the same IDs).

Fields sent (absent when not known):

    MESSAGE, MESSAGE_ID, PRIORITY, SYSLOG_IDENTIFIER=mtcd, MTCD_EVENT,
    MTCD_STATE, MTCD_REASON, MTCD_ICCID, MTCD_IMEI, MTCD_IMSI

MTCD_IMSI is masked (MCC+MNC kept, subscriber digits hidden) unless the
configuration says `show_imsi = true`.  A PIN or PUK is never a field: a
`Secret` anywhere is refused with TypeError (guarantee 4).

Without journald (no socket, systemd-python missing, or the send fails) an
event is one line on stderr instead, never a traceback:

    mtcd: SIM refused [state=refused reason=unknown-sim iccid=8949...]

and when that stderr is itself the journal's stream (JOURNAL_STREAM), the
line starts with the event's priority, `<4>mtcd: SIM refused [...]`.
"""

from __future__ import annotations

import enum
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from .identity import Imsi
from .logsetup import stderr_is_journal, with_priority
from .secret import Secret

JOURNAL_SOCKET = "/run/systemd/journal/socket"
SYSLOG_IDENTIFIER = "mtcd"

# syslog(3) levels, as journald's PRIORITY field takes them.
LOG_ERR = 3
LOG_WARNING = 4
LOG_NOTICE = 5
LOG_INFO = 6


class Event(enum.Enum):
    """What happened; the value is the MESSAGE_ID (128-bit, hex)."""

    PAIRED = "1e1d3c77c59a4159bc0320b54e28266c"
    REFUSED = "1c1b8bdce6ed421da101b696fe888a81"
    ASSOCIATION_CHANGED = "e9f85833818d420f84af777d8984e0df"  # TS 22.368 §7.2.8
    SIM_REMOVED = "84ca2d8ea7ab4e9d9f41fe098dd5b067"
    PIN_ROTATED = "7475ffcf40634f4bbf0ac8c53ad6859b"
    RETRY_GUARD = "09490d20745d44f8aa41f1717be81df8"
    MODEM_LOST = "f59341c35e8a48a89c0c5b2b831d8f2e"
    PIN_REJECTED = "065e2eb1d11349eca2ad2896441aefcb"

    @property
    def message_id(self) -> str:
        return self.value

    @property
    def label(self) -> str:
        """The MTCD_EVENT value: 'retry-guard', 'association-changed', ..."""
        return self.name.lower().replace("_", "-")

    @property
    def priority(self) -> int:
        return _PRIORITY[self]


# Errors are the events a person has to act on (the gateway stays offline
# until they do); warnings are refusals and changes worth a look.
_PRIORITY = {
    Event.PAIRED: LOG_INFO,
    Event.PIN_ROTATED: LOG_NOTICE,
    Event.SIM_REMOVED: LOG_WARNING,
    Event.REFUSED: LOG_WARNING,
    Event.ASSOCIATION_CHANGED: LOG_WARNING,
    Event.RETRY_GUARD: LOG_ERR,
    Event.PIN_REJECTED: LOG_ERR,
    Event.MODEM_LOST: LOG_ERR,
}

# Order of the fields in the stderr line, and their journal names.
_DETAIL_FIELDS = (
    ("state", "MTCD_STATE"),
    ("reason", "MTCD_REASON"),
    ("iccid", "MTCD_ICCID"),
    ("imei", "MTCD_IMEI"),
    ("imsi", "MTCD_IMSI"),
)


def masked_imsi(imsi: Any) -> str:
    """An IMSI as it may be logged: Imsi.masked(), or every digit hidden when
    the value is not a valid IMSI (it may still be one with a typo)."""
    try:
        value = imsi if isinstance(imsi, Imsi) else Imsi(str(imsi))
    except ValueError:
        return "*" * len(str(imsi))
    return value.masked()


def journal_fields(
    event: Event,
    message: str,
    *,
    iccid: Any = None,
    imei: Any = None,
    state: Any = None,
    reason: Any = None,
    imsi: Any = None,
    priority: int | None = None,
    show_imsi: bool = False,
) -> dict[str, str]:
    """The journal entry for one event, as field name -> text.  Pure.

    Identities may be given as mtcd's value types or as text; enums (e.g. a
    refusal reason) are given by their value.  A Secret anywhere raises
    TypeError naming the field, never showing the value.
    """
    if not isinstance(event, Event):
        raise TypeError(f"event must be an mtcd.events.Event (got {type(event).__name__})")
    _refuse_secret("message", message)
    if not isinstance(message, str) or not message:
        raise TypeError("an event needs a non-empty message text")
    if priority is None:
        priority = event.priority
    elif isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 7:
        raise ValueError(f"priority must be a syslog level from 0 to 7 (got {priority!r})")
    given = {"state": state, "reason": reason, "iccid": iccid, "imei": imei, "imsi": imsi}
    fields = {
        "MESSAGE": message,
        "MESSAGE_ID": event.message_id,
        "PRIORITY": str(priority),
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
        "MTCD_EVENT": event.label,
    }
    for name, field in _DETAIL_FIELDS:
        value = given[name]
        _refuse_secret(name, value)
        if value is None:
            continue
        if name == "imsi" and not show_imsi:
            fields[field] = masked_imsi(value)
        else:
            fields[field] = _text(value)
    return fields


def stderr_line(fields: dict[str, str]) -> str:
    """The one-line form of an entry, for when there is no journal."""
    details = " ".join(
        f"{name}={fields[field]}" for name, field in _DETAIL_FIELDS if field in fields
    )
    text = f"mtcd: {fields['MESSAGE']}"
    if details:
        text += f" [{details}]"
    # One event, one line, whatever the message held.
    return " ".join(text.splitlines())


def journal_available(socket_path: str = JOURNAL_SOCKET) -> bool:
    """Whether journald listens here and systemd-python can talk to it."""
    if not os.path.exists(socket_path):
        return False
    return _journal_send() is not None


class EventLog:
    """Sends events to journald, or to stderr when there is no journald.

    `journal`: True or False to choose, None (default) to detect it once
    now (`journal_available()`).  `stream`: where the fallback lines go
    (default: sys.stderr at the time of the event).
    """

    def __init__(self, *, show_imsi: bool = False, journal: bool | None = None,
                 stream: TextIO | None = None):
        self.show_imsi = show_imsi
        self.journal = journal_available() if journal is None else journal
        self._stream = stream
        self._send = _journal_send() if self.journal else None

    def emit(
        self,
        event: Event,
        message: str,
        *,
        iccid: Any = None,
        imei: Any = None,
        state: Any = None,
        reason: Any = None,
        imsi: Any = None,
        priority: int | None = None,
    ) -> dict[str, str]:
        """Send one event; returns the fields that were sent or printed.
        Raises only on our own misuse (TypeError for a Secret or a bad
        event, ValueError for a bad priority), never for a missing journal."""
        fields = journal_fields(
            event, message, iccid=iccid, imei=imei, state=state, reason=reason,
            imsi=imsi, priority=priority, show_imsi=self.show_imsi,
        )
        # libsystemd drops an entry silently when the socket is missing
        # (journald stopped since we started): look first, it is cheap.
        if self._send is not None and os.path.exists(JOURNAL_SOCKET):
            try:
                # CODE_* point at the code that emitted the event, not at us.
                caller = sys._getframe(1)
                self._send(**fields, CODE_FILE=caller.f_code.co_filename,
                           CODE_LINE=caller.f_lineno, CODE_FUNC=caller.f_code.co_name)
                return fields
            except (OSError, ValueError, TypeError):
                pass  # a stale socket nobody reads (ECONNREFUSED), a full queue
        line = stderr_line(fields)
        if self._stream is None and stderr_is_journal():
            # journald reads this line from our stderr: give it the event's
            # priority, not the stream's default (info).
            line = with_priority(int(fields["PRIORITY"]), line)
        self._print(line)
        return fields

    def _print(self, line: str) -> None:
        stream = self._stream if self._stream is not None else sys.stderr
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass  # stderr closed: nowhere left to tell, and not worth dying for


def _journal_send() -> Callable[..., None] | None:
    """systemd-python's journal.send, imported only when a journal is used."""
    try:
        from systemd import journal
    except ImportError:
        return None
    return journal.send


def _refuse_secret(name: str, value: Any) -> None:
    if isinstance(value, Secret):
        raise TypeError(f"event field {name!r} is a {value.kind}; secrets are never logged")


def _text(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    return str(value)
