"""`--record DIR`: every AT dialogue of a bench run, written in the dialogue
format (docs/dialogue-format.md), so that it can be replayed as a
regression test.

A `DialogueProxy` sits between the tests (and the mtcd/mtcctl processes
they start) and the real modem: it opens the modem's port, offers a
pseudo-terminal in its place, copies bytes both ways and writes what
passed, one file per test.  Secrets never reach a file: a command that
carries a PIN or PUK is written with each secret field replaced by
`<pin>`, `<puk>` or `<newpin>`, the secrets it carried are remembered, and
every later modem line has them replaced too (the card file's PIN and PUK
from the start).  When the modem's port vanishes (a reset), the
pseudo-terminal is closed as well, so the client sees the port go away as
it would, and a new one appears behind the same link when the modem is
back.
"""

from __future__ import annotations

import os
import re
import select
import threading
import time
import tty
from pathlib import Path

from mtcd.sim.modem import raw_fields

FINAL = re.compile(r"^(OK|ERROR|\+CME ERROR:.*|\+CMS ERROR:.*|CONNECT.*|NO CARRIER|BUSY|NO ANSWER|NO DIALTONE)$")
SILENCE = 0.5  # a pause at least this long is written as `@ seconds`

# PIN commands of TS 102 221 (VERIFY, CHANGE, DISABLE, ENABLE, UNBLOCK) and
# the placeholders of their 8-byte blocks, in order.
_CSIM_BLOCKS = {0x20: ("<pin>",), 0x24: ("<pin>", "<newpin>"), 0x26: ("<pin>",), 0x28: ("<pin>",),
                0x2C: ("<puk>", "<newpin>")}


def _placeholder(field: str, name: str, found: list[tuple[str, str]]) -> str:
    value = field.strip()
    quoted = len(value) >= 2 and value[0] == value[-1] == '"'
    if quoted:
        value = value[1:-1]
    if value:
        found.append((value, name))
    return f'"{name}"' if quoted else name


def redact_command(line: str) -> tuple[str, list[tuple[str, str]]]:
    """(the line as the dialogue file shows it, the secrets it carried with
    their placeholders)."""
    head, sep, args = line.partition("=")
    name = head.strip().upper()
    found: list[tuple[str, str]] = []
    if not sep or args.strip() == "?" or not name.startswith("AT"):
        return line, found
    fields = raw_fields(args)
    if name in ("AT+CPIN", "AT^CPIN"):
        if fields is None:
            return f"{head}=<pin>", found
        names = ("<pin>",) if len(fields) == 1 else ("<puk>", "<newpin>")
        fields = [_placeholder(f, n, found) for f, n in zip(fields, names)] + \
                 [_placeholder(f, "<pin>", found) for f in fields[len(names):]]
        return f"{head}={','.join(fields)}", found
    if name == "AT+CPWD" and fields is not None and len(fields) >= 3:
        fields[1] = _placeholder(fields[1], "<pin>", found)
        fields[2] = _placeholder(fields[2], "<newpin>", found)
        return f"{head}={','.join(fields)}", found
    if name == "AT+CLCK" and fields is not None and len(fields) >= 3:
        fields[2] = _placeholder(fields[2], "<pin>", found)
        return f"{head}={','.join(fields)}", found
    if name == "AT+CSIM" and fields is not None and len(fields) == 2:
        return _redact_csim(head, fields, found)
    return line, found


def _redact_csim(head: str, fields: list[str], found: list) -> tuple[str, list]:
    text = fields[1].strip().strip('"')
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return f"{head}=<pin>", found  # not hex: hide it all rather than guess
    if len(raw) <= 5 or raw[1] not in _CSIM_BLOCKS:
        return f"{head}={fields[0]},{fields[1]}", found
    names = _CSIM_BLOCKS[raw[1]]
    data = raw[5:]
    for n, i in enumerate(range(0, len(data), 8)):
        block = data[i:i + 8]
        name = names[min(n, len(names) - 1)]
        digits = block.rstrip(b"\xff").decode("latin-1")
        if digits:
            found.append((digits, name))
        found.append((block.hex().upper(), name))
    shown = raw[:5].hex().upper() + "".join(names[: max(1, (len(data) + 7) // 8)])
    return f'{head}={fields[0]},"{shown}"', found


def scrub(line: str, secrets: dict[str, str]) -> str:
    """`line` with every known secret replaced by its placeholder: digits
    only where they stand alone (not inside an IMEI or ICCID), a hex PIN
    block anywhere."""
    for value, name in sorted(secrets.items(), key=lambda kv: -len(kv[0])):
        if not value:
            continue
        if value.isdigit():
            line = re.sub(rf"(?<![0-9]){re.escape(value)}(?![0-9])", name, line)
        else:
            line = re.sub(re.escape(value), name, line, flags=re.IGNORECASE)
    return line


def escape(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


class DialogueWriter:
    """The events of one dialogue file, secrets already taken out."""

    def __init__(self, path: Path, headers: dict[str, str]):
        self.path = path
        self.headers = headers  # written at save(): known better by then
        self.lines: list[str] = []
        self.pending = False  # a command is waiting for its final result
        self.last = time.monotonic()

    def command(self, text: str) -> None:
        self.pending = True
        self.last = time.monotonic()
        self.lines.append(f"> {text}")

    def modem_line(self, text: str) -> None:
        now = time.monotonic()
        if now - self.last >= SILENCE:
            self.lines.append(f"@ {now - self.last:.2f}")
        self.last = now
        if not self.pending:
            self.lines.append(f"! {text}" if text else "!")
            return
        self.lines.append(f"< {text}" if text else "<")
        if FINAL.match(text):
            self.pending = False

    def note(self, text: str) -> None:
        self.lines.append(f"# {text}")

    def save(self) -> None:
        if any(not line.startswith("#") for line in self.lines):
            head = [f"#: {key}: {value}" for key, value in self.headers.items() if value]
            self.path.write_text("\n".join(head + self.lines) + "\n", encoding="utf-8")


class DialogueProxy:
    """Relays bytes between the real port and a pseudo-terminal reached
    through `link`, writing dialogues into `directory`."""

    def __init__(self, port: str, baudrate: int, directory: Path, link: Path, secrets: dict[str, str],
                 headers: dict[str, str] | None = None, reopen_wait: float = 60.0):
        self.port, self.baudrate = port, baudrate
        self.directory, self.link = Path(directory), Path(link)
        self.secrets = dict(secrets)  # value -> placeholder
        self.headers = dict(headers or {})
        self.reopen_wait = reopen_wait
        self.writer: DialogueWriter | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._serial = None
        self._master: int | None = None
        self._host_buffer = b""
        self._modem_buffer = b""
        self._thread: threading.Thread | None = None

    # -- the files --
    def set_headers(self, headers: dict[str, str]) -> None:
        with self._lock:
            self.headers.update(headers)
            if self.writer is not None:
                self.writer.headers.update(headers)

    def start(self, name: str, notes: str = "") -> None:
        with self._lock:
            self._save()
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "dialogue"
            headers = {**self.headers, "notes": notes or self.headers.get("notes", "")}
            self.writer = DialogueWriter(self.directory / f"{safe}.dialogue", headers)

    def _save(self) -> None:
        if self.writer is not None:
            self.writer.save()
            self.writer = None

    # -- the relay --
    def open(self) -> "DialogueProxy":
        self.directory.mkdir(parents=True, exist_ok=True)
        self._open_modem()
        self._new_pty()
        self._thread = threading.Thread(target=self._relay, name="dialogue-proxy", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=3)
        with self._lock:
            self._flush_modem_partial()
            self._save()
        self._close_pty()
        if self._serial is not None:
            self._serial.close()

    def _open_modem(self) -> None:
        import serial

        self._serial = serial.Serial(self.port, self.baudrate, timeout=0, exclusive=True)

    def _new_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        name = os.ttyname(slave)
        os.close(slave)  # the client opens it by name
        self._master = master
        tmp = self.link.with_name(self.link.name + ".new")
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(name)
        os.replace(tmp, self.link)

    def _close_pty(self) -> None:
        if self._master is not None:
            os.close(self._master)
            self._master = None
        if self.link.is_symlink():
            self.link.unlink()

    def _relay(self) -> None:
        while not self._stop.is_set():
            try:
                fds = [self._master, self._serial.fileno()]
                ready, _, _ = select.select(fds, [], [], 0.1)
                if self._master in ready:
                    try:
                        data = os.read(self._master, 4096)
                    except OSError:
                        data = b""  # no client has the slave open yet
                    if data:
                        self._serial.write(data)
                        self._from_host(data)
                if self._serial.fileno() in ready:
                    data = self._serial.read(4096)
                    if data:
                        os.write(self._master, data)
                        self._from_modem(data)
            except (OSError, ValueError, TypeError) + _serial_errors():
                if self._stop.is_set():
                    return
                self._modem_vanished()

    def _modem_vanished(self) -> None:
        """The port went away (a reset): the client's port goes too, and
        comes back behind the same link once the modem is back."""
        with self._lock:
            if self.writer is not None:
                self.writer.note("the modem's port vanished")
        self._close_pty()
        try:
            self._serial.close()
        except Exception:  # noqa: BLE001 - it is gone already
            pass
        deadline = time.monotonic() + self.reopen_wait
        while not self._stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                self._open_modem()
            except Exception:  # noqa: BLE001 - not back yet
                continue
            self._new_pty()
            with self._lock:
                if self.writer is not None:
                    self.writer.note("the modem's port is back")
            return
        self._stop.set()

    def _from_host(self, data: bytes) -> None:
        with self._lock:
            self._host_buffer += data
            while b"\r" in self._host_buffer:
                raw, self._host_buffer = self._host_buffer.split(b"\r", 1)
                line = raw.decode("latin-1").strip("\n")
                if not line:
                    continue
                shown, found = redact_command(line)
                for value, placeholder in found:
                    self.secrets.setdefault(value, placeholder)
                if self.writer is not None:
                    self.writer.command(scrub(shown, self.secrets))

    def _from_modem(self, data: bytes) -> None:
        with self._lock:
            self._modem_buffer += data
            while True:
                match = re.search(rb"[\r\n]", self._modem_buffer)
                if match is None:
                    break
                raw = self._modem_buffer[: match.start()]
                self._modem_buffer = self._modem_buffer[match.end():]
                line = raw.decode("latin-1")
                if line and self.writer is not None:
                    self.writer.modem_line(escape(scrub(line, self.secrets)))

    def _flush_modem_partial(self) -> None:
        if self._modem_buffer and self.writer is not None:
            self.writer.modem_line(escape(scrub(self._modem_buffer.decode("latin-1"), self.secrets)))
        self._modem_buffer = b""


def _serial_errors() -> tuple:
    try:
        import serial

        return (serial.SerialException,)
    except ImportError:  # pragma: no cover
        return ()
