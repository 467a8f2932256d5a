"""Replay of a recorded modem: the dialogue file format (docs/dialogue-format.md)
read into events, and a script that answers each command the way the
recorded modem did.  Pure: no I/O here; the pty edge is mtcd.sim.replay_pty.

How `<` lines are framed on the wire: as a modem with ATV1 frames every
line, "\\r\\n<line>\\r\\n".  Anything else (an echo ending in a bare CR, a
doubled CR, a missing line end) is written as `<~` raw bytes.

A command that does not match the next `>` line, or comes after the last
one, is a mismatch: it is answered `ERROR` and kept in `mismatches` as one
line naming the file's line number and both commands, so that a test (or
the person replaying) sees exactly where the client left the recording.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from .modem import redacted, split_command_line

# Placeholders of the secrets a recording never holds (any value matches).
PLACEHOLDERS = ("<pin>", "<puk>", "<newpin>")
REQUIRED_HEADERS = ("source", "vendor")
MAX_PAUSE = 60.0  # seconds; a longer silence is a typo, not a modem


class DialogueError(ValueError):
    """The file is not a valid dialogue: names the file and line."""


@dataclass(frozen=True)
class Sent:
    """`>`: the host sent this command line."""
    text: str
    lineno: int
    pattern: re.Pattern = field(compare=False, repr=False)

    def matches(self, command: str) -> bool:
        return self.pattern.fullmatch(command.strip()) is not None


@dataclass(frozen=True)
class Output:
    """`<` or `<~`: bytes the modem wrote."""
    data: bytes


@dataclass(frozen=True)
class Pause:
    """`@`: seconds of silence before the modem's next output."""
    seconds: float


@dataclass(frozen=True)
class Unsolicited:
    """`!`: a line the modem sent while no command was pending."""
    data: bytes


Event = Sent | Output | Pause | Unsolicited


@dataclass(frozen=True)
class Dialogue:
    name: str
    headers: dict[str, str]
    events: tuple[Event, ...]

    @property
    def commands(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, Sent)]


def framed(text: str) -> bytes:
    return b"\r\n" + text.encode("latin-1") + b"\r\n"


def _command_pattern(text: str) -> re.Pattern:
    parts = re.split("(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + ")", text)
    seen: set[str] = set()
    out = []
    for part in parts:
        if part in PLACEHOLDERS:
            name = part.strip("<>")
            # The same placeholder twice must carry the same value.
            out.append(f"(?P={name})" if name in seen else f"(?P<{name}>.+?)")
            seen.add(name)
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


def _raw(text: str, where: str) -> bytes:
    """Python-style escapes to bytes (\\r, \\n, \\xNN...), never code."""
    try:
        value = ast.literal_eval('b"' + text.replace('"', '\\"') + '"')
    except (SyntaxError, ValueError):
        raise DialogueError(f"{where}: raw bytes {text!r} are not valid escapes") from None
    return value


def parse_dialogue(text: str, name: str = "<dialogue>") -> Dialogue:
    headers: dict[str, str] = {}
    events: list[Event] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{lineno}"
        if line.startswith("#:"):
            if events:
                raise DialogueError(f"{where}: header after the first event")
            key, sep, value = line[2:].partition(":")
            if not sep or not key.strip():
                raise DialogueError(f"{where}: a header is '#: key: value'")
            headers[key.strip().lower()] = value.strip()
        elif not line.strip() or line.startswith("#"):
            continue
        elif line.startswith("<~"):
            events.append(Output(_raw(line[2:].lstrip(" "), where)))
        elif line.startswith("<"):
            events.append(Output(framed(line[2:] if line.startswith("< ") else line[1:])))
        elif line.startswith(">"):
            command = line[1:].strip()
            if not command:
                raise DialogueError(f"{where}: empty command")
            events.append(Sent(command, lineno, _command_pattern(command)))
        elif line.startswith("@"):
            try:
                seconds = float(line[1:].strip())
            except ValueError:
                raise DialogueError(f"{where}: '@' needs seconds, got {line[1:].strip()!r}") from None
            if not 0 <= seconds <= MAX_PAUSE:
                raise DialogueError(f"{where}: a pause is 0 to {MAX_PAUSE:g} seconds")
            events.append(Pause(seconds))
        elif line.startswith("!"):
            events.append(Unsolicited(framed(line[1:].strip())))
        else:
            raise DialogueError(f"{where}: unknown event {line[:1]!r} (expected #, >, <, <~, @ or !)")
    missing = [h for h in REQUIRED_HEADERS if not headers.get(h)]
    if missing:
        raise DialogueError(f"{name}: missing header {', '.join(missing)}")
    if not any(isinstance(e, Sent) for e in events):
        raise DialogueError(f"{name}: no command in the dialogue")
    return Dialogue(name, headers, tuple(events))


def load_dialogue(path) -> Dialogue:
    with open(path, encoding="utf-8") as f:
        return parse_dialogue(f.read(), str(path))


def _usim_file_read(command: str) -> bool:
    """A read-only AT+CRSM (READ BINARY 176, READ RECORD 178, GET RESPONSE
    192) of a file under ADF.USIM, addressed by its path 3F007FFF."""
    text = command.strip().upper()
    return text.startswith(("AT+CRSM=176,", "AT+CRSM=178,", "AT+CRSM=192,")) and text.endswith(',"3F007FFF"')


def _concatenated(command: str) -> bool:
    text = command.strip()
    parts = split_command_line(text[2:]) if text[:2].upper() == "AT" else None
    return parts is not None and len(parts) > 1


class Script:
    """Walks a dialogue: `opening()` is what the modem says before any
    command, `answer(command)` what it says to the next one, as a list of
    bytes (to write) and floats (seconds to stay silent)."""

    def __init__(self, dialogue: Dialogue):
        self.dialogue = dialogue
        self._at = 0
        self.commands: list[str] = []  # as received, every PIN and PUK redacted
        self.mismatches: list[str] = []

    @property
    def finished(self) -> bool:
        """Every recorded command has been asked."""
        return not any(isinstance(e, Sent) for e in self.dialogue.events[self._at:])

    def opening(self) -> list[bytes | float]:
        return self._until_next_command()

    def answer(self, command: str) -> list[bytes | float]:
        events = self.dialogue.events
        expected = events[self._at] if self._at < len(events) else None
        shown = redacted(command)  # a secret never reaches a list or a message
        self.commands.append(shown)
        if not (isinstance(expected, Sent) and expected.matches(command)) and _usim_file_read(command):
            # The card's pairing record (EF-UST, EF-IPS, EF-IPD by path from
            # ADF.USIM): no public recording has these reads, so the card is
            # played as one whose modem refuses them; mtcd journals that.
            return [framed("ERROR")]
        if not isinstance(expected, Sent):
            self.mismatches.append(f"{self.dialogue.name}: {shown!r} after the end of the dialogue")
            return [framed("ERROR")]
        if not expected.matches(command) and _concatenated(command):
            # A recording of single commands stands for a modem that refuses
            # several on one line: ERROR, and the host goes on one by one.
            return [framed("ERROR")]
        if not expected.matches(command):
            self.mismatches.append(
                f"{self.dialogue.name}:{expected.lineno}: expected {expected.text!r}, got {shown!r}")
            return [framed("ERROR")]
        self._at += 1
        # An echo recorded with a placeholder carries the secret the host
        # sent, as the real modem's would: the client must hide it.
        values = expected.pattern.fullmatch(command.strip()).groupdict()
        return [self._fill(item, values) for item in self._until_next_command()]

    @staticmethod
    def _fill(item: bytes | float, values: dict[str, str]) -> bytes | float:
        if isinstance(item, bytes):
            for name, value in values.items():
                item = item.replace(f"<{name}>".encode(), value.encode("latin-1"))
        return item

    def _until_next_command(self) -> list[bytes | float]:
        out: list[bytes | float] = []
        events = self.dialogue.events
        while self._at < len(events) and not isinstance(events[self._at], Sent):
            event = events[self._at]
            out.append(event.seconds if isinstance(event, Pause) else event.data)
            self._at += 1
        return out
