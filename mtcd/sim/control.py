"""Rehearsal control of a running simulator, from another process.

`mtcd-sim serve --control PATH` listens on a Unix socket (mode 0600) for
what happens to a gateway in the field: the SIM pulled, put back or swapped
for another card, the operator changing the PIN over the air, the modem
resetting.  `SimController` is the one place these events are played on the
modem and its slot (the signals of `serve` use it too); `request` is the
client the other `mtcd-sim` subcommands use.

Protocol: one JSON object per line each way.  A request is
{"op": "status" | "pull" | "insert" | "swap" | "ota-pin" | "reset", ...};
the answer {"ok": true, "status": {...}} or {"ok": false, "error": "..."}.
The OTA PIN is the only secret that crosses the socket; it is never echoed,
and a status never holds a PIN or PUK.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import threading
from pathlib import Path

from ..simlock import SimLock
from .card import PIN_TRIES, PUK_TRIES, CardFileError, SimCard
from .pty import PtyModemServer

MAX_RESET_DOWN = 60.0  # seconds a reset may keep the modem away
_MAX_REQUEST = 4096
_RADIO = {0: "minimum", 1: "on", 4: "off"}


class ControlError(Exception):
    """A control request that cannot be played (one line, for the person)."""


def open_card(path: str | os.PathLike) -> SimCard:
    """A card from its state file, saving every change back to that file."""
    path = Path(path)
    card = SimCard.load(path)

    def save(changed: SimCard) -> None:
        try:
            changed.save(path)
        except OSError as e:
            print(f"mtcd-sim: cannot save card state {path}: {e.strerror}", file=sys.stderr, flush=True)

    card.on_change = save
    return card


class SimController:
    """The slot, the card in it and the modem's power, played as a person
    or an operator would.  One event at a time (a lock)."""

    def __init__(self, server: PtyModemServer, card_path: str | os.PathLike | None = None):
        self.server = server
        self.modem = server.modem
        self.card_path = Path(card_path).absolute() if card_path is not None else None
        # The card taken out last: `insert` without a file puts it back.
        self._pulled: tuple[SimCard, Path | None] | None = None
        self._lock = threading.Lock()

    # --- events -------------------------------------------------------------

    def pull(self) -> dict:
        with self._lock:
            card = self.modem.card
            if card is None:
                raise ControlError("the slot is already empty")
            self.modem.remove_card()
            self._pulled, self.card_path = (card, self.card_path), None
            return self._status()

    def insert(self, path: str | os.PathLike | None = None) -> dict:
        with self._lock:
            if self.modem.card is not None:
                raise ControlError("a card is in the slot: pull it first, or use swap-sim")
            if path is not None:
                card, where = _load(path), Path(path).absolute()
            elif self._pulled is not None:
                card, where = self._pulled
            else:
                raise ControlError("no card to put back: name a card state file with --card")
            self.modem.insert_card(card)
            self._pulled, self.card_path = None, where
            return self._status()

    def swap(self, path: str | os.PathLike) -> dict:
        """Another card in the slot: pulled and inserted, with the URCs of both."""
        with self._lock:
            where = Path(path).absolute()
            if self.card_path is not None and where == self.card_path:
                raise ControlError(f"{path} is the card in the slot already")
            card = _load(path)
            old = self.modem.card
            if old is not None:
                self.modem.remove_card()
                self._pulled = (old, self.card_path)
            self.modem.insert_card(card)
            self.card_path = where
            return self._status()

    def ota_pin(self, pin: str, refresh: bool = True) -> dict:
        """The operator's OTA CHANGE PIN on the card in the slot; with
        `refresh`, the card then resets (a REFRESH) and asks for the new PIN."""
        with self._lock:
            card = self.modem.card
            if card is None:
                raise ControlError("no card in the slot")
            if card.dead:
                raise ControlError("the card in the slot is dead (no PUK attempts left)")
            try:
                card.set_pin_over_the_air(pin)
            except ValueError as e:  # names the rule, never the value
                raise ControlError(str(e)) from None
            if refresh:
                self.modem.insert_card(card)  # powered up again: verification lost, URCs sent
            return self._status()

    def reset(self, down: float = 1.0) -> dict:
        """The modem resets: its port vanishes for `down` seconds (as on a
        USB re-enumeration), then it boots with its power-on settings."""
        if not 0 <= down <= MAX_RESET_DOWN:
            raise ControlError(f"--down must be from 0 to {MAX_RESET_DOWN:g} seconds")
        with self._lock:
            # A stop during the downtime ends it, and the port stays away
            # (a reopen then would leave a pty and its thread behind).
            if not self.server.vanish_for(down, on_return=lambda: self.modem.power_loss(announce=False)):
                raise ControlError("the simulated modem was stopped during its reset")
            return self._status()

    def status(self) -> dict:
        with self._lock:
            return self._status()

    def _status(self) -> dict:
        modem, card = self.modem, self.modem.card
        out = {
            "sim": "inserted" if card is not None else "removed",
            "card_file": str(self.card_path) if card is not None and self.card_path else None,
            "port": self.server.port if self.server.is_open else None,
            "vendor": modem.vendor,
            "radio": _RADIO.get(modem.radio, str(modem.radio)),
            "cfun": modem.radio,
            "pdp": "active" if modem.pdp_active else "inactive",
            "attached": modem.attached,
            "data_call": modem.data_call,
        }
        out.update(card_status(card))
        return out


def card_status(card: SimCard | None) -> dict:
    """What a card shows of itself: never its PIN or PUK."""
    if card is None:
        return {"iccid": None, "imsi": None, "pin_state": None, "pin_enabled": None,
                "pin_attempts": None, "puk_attempts": None}
    lock = card.lock
    return {
        "iccid": card.iccid.value,
        "imsi": card.imsi.masked(),
        "pin_state": "dead" if lock is SimLock.FAILURE else lock.value,
        "pin_enabled": card.pin_enabled,
        "pin_attempts": card.pin_attempts,
        "pin_attempts_max": PIN_TRIES,
        "puk_attempts": card.puk_attempts,
        "puk_attempts_max": PUK_TRIES,
    }


def _load(path: str | os.PathLike) -> SimCard:
    try:
        return open_card(path)
    except CardFileError as e:
        raise ControlError(str(e)) from None


# --- the socket ------------------------------------------------------------------

class ControlServer:
    """Serves `controller` on a Unix socket at `path` until closed."""

    def __init__(self, controller: SimController, path: str | os.PathLike):
        self.controller = controller
        self.path = Path(path)
        _clear_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)  # the OTA PIN crosses it: the owner's only
        try:
            sock.bind(str(self.path))
        except OSError:
            sock.close()
            raise
        finally:
            os.umask(old)
        sock.listen(8)
        sock.settimeout(0.5)
        self._sock = sock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sim-control", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(MAX_RESET_DOWN + 5)
        self._sock.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "ControlServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    answer = self._answer(_read_line(conn))
                    conn.sendall(json.dumps(answer).encode() + b"\n")
                except OSError:
                    continue  # the client left: nothing to tell

    def _answer(self, raw: bytes) -> dict:
        try:
            request = json.loads(raw)
            if not isinstance(request, dict):
                raise ValueError
        except ValueError:
            return {"ok": False, "error": "the request is not a JSON object"}
        c = self.controller
        op = request.get("op")
        try:
            if op == "status":
                status = c.status()
            elif op == "pull":
                status = c.pull()
            elif op == "insert":
                status = c.insert(_optional_text(request, "card"))
            elif op == "swap":
                status = c.swap(_text(request, "card"))
            elif op == "ota-pin":
                status = c.ota_pin(_text(request, "pin"), bool(request.get("refresh", True)))
            elif op == "reset":
                down = request.get("down", 1.0)
                if isinstance(down, bool) or not isinstance(down, (int, float)):
                    raise ControlError("down must be a number of seconds")
                status = c.reset(float(down))
            else:
                raise ControlError(f"unknown operation {str(op)[:40]!r}")
        except ControlError as e:
            return {"ok": False, "error": str(e)}
        return {"ok": True, "status": status}


def _text(request: dict, key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise ControlError(f"{key} is missing")
    return value


def _optional_text(request: dict, key: str) -> str | None:
    return None if request.get(key) is None else _text(request, key)


def _read_line(conn: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data and len(data) <= _MAX_REQUEST:
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    return data.partition(b"\n")[0]


def _clear_stale(path: Path) -> None:
    """A socket left by a simulator that died is removed; a live one, or a
    file that is no socket, is not ours to replace."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise FileExistsError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise FileExistsError(f"another simulator listens on {path}")


class NoSimulator(Exception):
    """Nothing listens on the control socket."""


def request(path: str | os.PathLike, message: dict, timeout: float = MAX_RESET_DOWN + 10) -> dict:
    """One request to a running simulator; its answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise NoSimulator(f"no simulator listens on {path}") from None
        sock.sendall(json.dumps(message).encode() + b"\n")
        raw = b""
        while not raw.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            raw += chunk
    finally:
        sock.close()
    try:
        answer = json.loads(raw)
    except ValueError:
        raise NoSimulator(f"the simulator on {path} gave no answer") from None
    return answer
