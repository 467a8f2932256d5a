"""The control socket: how `mtcctl` reaches a running `mtcd run`, which holds
the modem port exclusively.

Protocol, over AF_UNIX SOCK_STREAM, one request per connection:

    client -> service   one JSON object on one UTF-8 line (at most 64 KiB):
                        {"command": "<name>", "<field>": <value>, ...}
    service -> client   one JSON object on one line, then the service closes:
                        {"ok": true, "result": {...}}
                        {"ok": false, "error": "<one line>", "exit_code": <int>}

Exit codes are mtcd's (mtcd.errors) plus 77 (EX_NOPERM) for a peer that is
neither root nor in `service.admin_group`.

Who may talk: the kernel's record of the connecting process (SO_PEERCRED
for uid and gid, SO_PEERGROUPS for the supplementary groups, both captured
at connect() so they cannot be swapped afterwards).  The socket file's mode
(0600, or 0660 with the admin group) is a first fence; the credential check
is the one that counts, and a refused peer's request is never read.

Secrets (PIN, PUK) travel as plain JSON strings inside the socket, never in
argv or the environment.  On both sides they are mtcd.secret.Pin/Puk from
the moment they are parsed; validation errors name the field and the rule,
never the value, and request/response logging redacts the fields in
SECRET_FIELDS.  The raw request line is never logged.

The wire format (parse_request, encode_request, encode_result, encode_error,
decode_response) is pure; ControlServer and ControlClient are the thin
socket edges around it.
"""

from __future__ import annotations

import errno
import grp
import json
import logging
import os
import pwd
import re
import select
import selectors
import socket
import stat
import struct
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import (
    EXIT_DATAERR,
    EXIT_SOFTWARE,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    ConfigError,
    MtcdError,
)
from .progress import stderr_waits
from .identity import Iccid
from .logsetup import LEVEL_NAMES, RESET
from .secret import Pin, Puk, Secret

log = logging.getLogger("mtcd.control")

# sysexits(3) EX_NOPERM: the peer is not allowed to use the service.
EX_NOPERM = 77

MAX_REQUEST = 64 * 1024  # bytes in a request line, newline included
MAX_RESPONSE = 1024 * 1024  # bytes in an answer (status and lists stay far below)
DEFAULT_TIMEOUT = 120.0  # seconds a client waits: long enough for a PIN rotation
# Seconds the service waits for a connected client's request line.  mtcctl
# sends it right after connect(), so a connection that stays silent this long
# is idle or hostile and must not hold a slot others need.
REQUEST_TIMEOUT = 3.0
MAX_CONNECTIONS = 16  # served at once; more are told the service is busy
# Per peer, so that one process (or one user) opening idle connections
# cannot take every slot: a real mtcctl from elsewhere still gets one.
MAX_PER_PROCESS = 8
MAX_PER_USER = 12

# Fields that carry a secret, and the type it becomes on either side.
SECRET_FIELDS: Mapping[str, type[Secret]] = MappingProxyType(
    {"pin": Pin, "puk": Puk, "new_pin": Pin, "transport_pin": Pin}
)
REDACTED = "<redacted>"

# Linux value on every architecture mtcd targets (arm, arm64, x86); Python
# 3.11's socket module does not name it.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)


# -- errors -----------------------------------------------------------------

class ControlError(MtcdError):
    """The control socket cannot be used: the answer was garbled, the
    connection dropped, the socket path is unusable."""

    exit_code = EXIT_UNAVAILABLE


class ControlUnavailable(ControlError):
    """No service is listening: the socket file is missing or stale.
    mtcctl falls back to opening the modem itself."""


class ControlPermissionDenied(ControlError):
    """The socket file's permissions keep this user out (connect: EACCES)."""

    exit_code = EX_NOPERM


class ControlTimeout(ControlError):
    """The service did not answer in time.  The command may still complete
    there (a rotation, say): the journal tells."""


class ServiceAlreadyRunning(ControlError):
    """Another mtcd answers on the control socket's path."""


class BadRequest(MtcdError):
    """A request the service will not run: unknown command (64), a field of
    the wrong shape (64), a PIN, PUK or ICCID that is not valid (65).
    The message names the field and the rule, never the value."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE):
        super().__init__(message)
        self.exit_code = exit_code


class ServiceError(MtcdError):
    """The service answered with an error; `exit_code` and the one-line
    message are the service's, for mtcctl to print and exit with."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


# -- what the handler receives ------------------------------------------------

@dataclass(frozen=True)
class PeerCredentials:
    """The connecting process as the kernel recorded it at connect()."""

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] = ()


@dataclass(frozen=True)
class Request:
    """One validated request: `args` holds Iccid, Pin and Puk objects, never
    the raw strings, and is read-only."""

    command: str
    args: Mapping[str, Any]
    peer: PeerCredentials
    # Whether the client has hung up (set by the server): a request whose
    # client left is dropped, never run later.
    client_left: Callable[[], bool] = field(default=lambda: False, compare=False, repr=False)


# -- the commands and their fields (data, not code) ---------------------------

class _Bad(Exception):
    """One field's complaint; parse_request adds the command and field name."""

    def __init__(self, rule: str, exit_code: int = EXIT_USAGE):
        super().__init__(rule)
        self.exit_code = exit_code


def _secret(kind: type[Secret]) -> Callable[[Any], Secret]:
    def read(value):
        if not isinstance(value, str):
            raise _Bad("must be a string of digits")
        try:
            return kind(value)
        except ValueError as exc:  # Secret's messages state the rule, never the value
            raise _Bad(str(exc), EXIT_DATAERR) from None
    return read


def _iccid(value) -> Iccid:
    if not isinstance(value, str):
        raise _Bad("must be a string of digits")
    try:
        return Iccid(value)
    except ValueError as exc:
        raise _Bad(str(exc), EXIT_DATAERR) from None


def _pin_length(value) -> int | None:
    # JSON true would pass as 1 in Python: refuse bools first.
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not Pin.min_digits <= value <= Pin.max_digits:
        raise _Bad(f"must be an integer from {Pin.min_digits} to {Pin.max_digits}, or null")
    return value


def _flag(value) -> bool:
    if not isinstance(value, bool):
        raise _Bad("must be true or false")
    return value


def _log_level(value) -> str:
    if not isinstance(value, str) or value not in (*LEVEL_NAMES, RESET):
        raise _Bad(f"must be one of {', '.join((*LEVEL_NAMES, RESET))}")
    return value


@dataclass(frozen=True)
class Field:
    name: str
    read: Callable[[Any], Any]
    required: bool = True
    default: Any = None


COMMANDS: Mapping[str, tuple[Field, ...]] = MappingProxyType({
    "status": (),
    "rotate": (Field("length", _pin_length, required=False),),
    "adopt": (Field("transport_pin", _secret(Pin)),),
    "stage": (Field("iccid", _iccid), Field("pin", _secret(Pin))),
    "compromise": (),
    "unblock": (
        Field("puk", _secret(Puk)),
        Field("new_pin", _secret(Pin)),
        Field("allow_last_attempt", _flag, required=False, default=False),
        Field("iccid", _iccid, required=False),  # the SIM the person named (mtcctl sim unblock --iccid)
    ),
    "reload": (),
    # A person's explicit, single presentation of the stored PIN (mtcctl pin try).
    "pin-try": (
        Field("below_guard", _flag, required=False, default=False),
        Field("last_attempt", _flag, required=False, default=False),
        Field("confirmed", _flag, required=False, default=False),
        Field("iccid", _iccid, required=False),
        Field("unsettled", _flag, required=False, default=False),
    ),
    "repair": (),  # take a pairing decision now (mtcctl repair)
    "doctor": (),  # read-only: what the service's modem session sees (mtcctl doctor)
    "log-level": (Field("level", _log_level),),
})

# A name is repeated in an error only when it cannot be a misplaced PIN or PUK.
_SAFE_NAME = re.compile(r"[A-Za-z_-]{1,32}")


def _named(name: str, what: str) -> str:
    return f"{what} {name!r}" if _SAFE_NAME.fullmatch(name) else f"an {what} that is not a plain name"


# -- the wire format (pure) ------------------------------------------------------

class _DuplicateField(ValueError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    # json.loads keeps the last of two equal keys: {"command":"status",
    # "command":"compromise"} would look like a status request to a reader
    # that keeps the first, and run compromise.  Ambiguity is refused.
    obj: dict = {}
    for name, value in pairs:
        if name in obj:
            raise _DuplicateField(name)
        obj[name] = value
    return obj


def parse_request(line: bytes, peer: PeerCredentials) -> Request:
    """One request line -> a validated Request, or BadRequest."""
    try:
        obj = json.loads(line.decode("utf-8"), object_pairs_hook=_refuse_duplicates)
    except UnicodeDecodeError:
        raise BadRequest("malformed request: not UTF-8") from None
    except _DuplicateField as dup:
        raise BadRequest(f"malformed request: {_named(dup.name, 'object key')} appears twice") from None
    except (ValueError, RecursionError):
        raise BadRequest("malformed request: not valid JSON") from None
    if not isinstance(obj, dict):
        raise BadRequest("malformed request: must be a JSON object")
    command = obj.pop("command", None)
    if not isinstance(command, str):
        raise BadRequest('malformed request: no "command" string')
    fields = COMMANDS.get(command)
    if fields is None:
        raise BadRequest(f"{_named(command, 'unknown command')} (known: {', '.join(sorted(COMMANDS))})")
    args: dict[str, Any] = {}
    for spec in fields:
        if spec.name not in obj:
            if spec.required:
                raise BadRequest(f"{command}: missing field {spec.name}")
            args[spec.name] = spec.default
            continue
        try:
            args[spec.name] = spec.read(obj.pop(spec.name))
        except _Bad as bad:
            raise BadRequest(f"{command}: {spec.name} {bad}", bad.exit_code) from None
    if obj:
        extra = sorted(obj)[0]
        raise BadRequest(f"{command}: {_named(extra, 'unexpected field')}")
    return Request(command, MappingProxyType(args), peer)


def _wire_value(name: str, value: Any) -> Any:
    expected = SECRET_FIELDS.get(name)
    if expected is not None:
        if not isinstance(value, expected):
            raise TypeError(f"{name} must be given as a {expected.__name__} object")
        # The one place a client puts a secret into the request.
        return value.reveal()
    if isinstance(value, Secret):
        raise TypeError(f"{name} is not a secret field; refusing to send a {value.kind}")
    if isinstance(value, Iccid):
        return value.value
    return value


def encode_request(command: str, **fields: Any) -> bytes:
    """A request line.  Secret fields must be Pin/Puk objects (a plain
    string there is a bug and raises TypeError)."""
    wire = {"command": command}
    for name, value in fields.items():
        wire[name] = _wire_value(name, value)
    line = json.dumps(wire, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii") + b"\n"
    if len(line) > MAX_REQUEST:
        raise BadRequest(f"{command}: request longer than {MAX_REQUEST} bytes")
    return line


def encode_result(result: Mapping[str, Any] | None) -> bytes:
    """The success answer.  Raises TypeError when the result is not a JSON
    object of plain values (a Pin in it, say): a bug, answered as 70."""
    if result is None:
        result = {}
    if not isinstance(result, Mapping):
        raise TypeError(f"the handler returned {type(result).__name__}, not a mapping")
    return json.dumps({"ok": True, "result": dict(result)}, allow_nan=False).encode("utf-8") + b"\n"


def one_line(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encode_error(message: str, exit_code: int, code: str | None = None, details: dict | None = None) -> bytes:
    """`code` and `details` (a refusal's reason and ICCID) are passed on to
    mtcctl's --json output; a client that does not know them ignores them."""
    answer = {"ok": False, "error": one_line(message), "exit_code": exit_code}
    if code:
        answer["code"] = code
    if details:
        answer["details"] = {k: v for k, v in details.items() if isinstance(v, str)}
    return json.dumps(answer).encode("utf-8") + b"\n"


def decode_response(line: bytes) -> dict:
    """The answer line -> the result, or ServiceError with the service's
    exit code and message; ControlError when it is not an answer at all."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        raise ControlError("the service sent an unreadable answer") from None
    if isinstance(obj, dict) and obj.get("ok") is True and isinstance(obj.get("result"), dict):
        return obj["result"]
    if isinstance(obj, dict) and obj.get("ok") is False:
        code, message = obj.get("exit_code"), obj.get("error")
        if isinstance(code, int) and not isinstance(code, bool) and 0 < code < 256 and isinstance(message, str):
            error = ServiceError(one_line(message) or "the service refused", code)
            if isinstance(obj.get("code"), str) and re.fullmatch(r"[a-z][a-z0-9-]{0,40}", obj["code"]):
                error.code = obj["code"]
            if isinstance(obj.get("details"), dict):
                error.details = {k: v for k, v in obj["details"].items()
                                 if k in ("reason", "iccid") and isinstance(v, str) and len(v) <= 64}
            raise error
    raise ControlError("the service sent an answer of the wrong shape")


def redacted(obj: Any) -> Any:
    """A copy for logging: secret fields by name, and Secret objects, hidden."""
    if isinstance(obj, Mapping):
        return {k: REDACTED if k in SECRET_FIELDS else redacted(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redacted(v) for v in obj]
    if isinstance(obj, Secret):
        return REDACTED
    if isinstance(obj, Iccid):
        return obj.value
    return obj


def _withhold_secrets(message: str, request: Request) -> str:
    """Defence in depth for guarantee 4: an error text that happens to show
    one of the request's secrets is not sent or logged at all."""
    for value in request.args.values():
        if isinstance(value, Secret) and value.reveal() in message:
            return f"{request.command} failed (its message was withheld because it would have shown a secret)"
    return message


# -- who may talk ----------------------------------------------------------------

def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """The connecting process's pid, uid, gid and supplementary groups."""
    fmt = "iII"  # struct ucred: pid_t, uid_t, gid_t
    pid, uid, gid = struct.unpack(fmt, sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(fmt)))
    return PeerCredentials(pid, uid, gid, _peer_groups(sock, uid, gid))


def _peer_groups(sock: socket.socket, uid: int, gid: int) -> tuple[int, ...]:
    # SO_PEERGROUPS (Linux >= 4.13) is taken from the same credentials as
    # SO_PEERCRED at connect(): no race.  /proc/<pid>/status would be read
    # later, from whatever process then has that pid.
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)  # Python caps the buffer at 1024 bytes
        return struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4])
    except OSError:
        pass
    # Older kernel, or more than 256 groups: the groups configured for the
    # user in the group database (not those of the process itself).
    try:
        return tuple(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except (KeyError, OSError):
        return ()


@dataclass(frozen=True)
class AdminGroup:
    name: str
    gid: int

    @classmethod
    def named(cls, name: str) -> "AdminGroup":
        try:
            return cls(name, grp.getgrnam(name).gr_gid)
        except KeyError:
            raise ConfigError(f"service.admin_group: there is no group named {name!r}") from None


def refusal(peer: PeerCredentials, admin: AdminGroup | None, service_uid: int) -> str | None:
    """Why this peer may not use the service, or None when it may: root,
    the service's own user, and members of the admin group (primary or
    supplementary) may."""
    if peer.uid in (0, service_uid):
        return None
    if admin is None:
        return f"permission denied: uid {peer.uid} is not root (service.admin_group is not set)"
    if peer.gid == admin.gid or admin.gid in peer.groups:
        return None
    return f"permission denied: uid {peer.uid} is neither root nor in group {admin.name}"


# -- socket edges ------------------------------------------------------------------

class _TooLong(Exception):
    pass


def _read_line(sock: socket.socket, limit: int, deadline: float | None = None) -> bytes:
    """Bytes up to the first newline (or EOF); _TooLong past `limit`."""
    buf = bytearray()
    while True:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
        chunk = sock.recv(min(65536, limit + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        end = buf.find(b"\n")
        if end >= 0:
            return bytes(buf[:end])
        if len(buf) > limit - 1:
            raise _TooLong


def _hung_up(sock: socket.socket) -> bool:
    """Has the client closed its end?  POLLHUP on a Unix stream socket means
    the peer is gone for good (a client that only shut down its writing
    side still waits for the answer and is not "gone")."""
    poller = select.poll()
    try:
        poller.register(sock, 0)  # no events asked: hang-up and error are always reported
        return any(flags & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, flags in poller.poll(0))
    except (OSError, ValueError):
        return True


def _send(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data, socket.MSG_NOSIGNAL)


def _new_socket() -> socket.socket:
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)


def _claim(path: Path) -> socket.socket:
    """Bind the control socket, replacing a stale file only if nothing answers on it."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise ConfigError(f"service.control_socket {path}: {exc.strerror}") from None
    if st is not None:
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f"service.control_socket {path} exists and is not a socket")
        probe = _new_socket()
        probe.settimeout(2.0)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            log.info("removing the stale control socket %s", path)
            try:
                os.unlink(path)
            except OSError as exc:
                raise ConfigError(
                    f"service.control_socket {path}: cannot remove the stale socket: {exc.strerror}"
                ) from None
        except FileNotFoundError:
            pass
        except (TimeoutError, BlockingIOError):  # a listener with a full backlog is alive
            raise ServiceAlreadyRunning(f"another mtcd is running (its control socket {path} is busy)") from None
        except OSError as exc:
            raise ControlError(f"control socket {path}: {exc.strerror}") from None
        else:
            raise ServiceAlreadyRunning(f"another mtcd is running (its control socket {path} answers)")
        finally:
            probe.close()
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"service.control_socket {path}: cannot create its directory: {exc.strerror}") from None
    sock = _new_socket()
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServiceAlreadyRunning(f"another mtcd is running (it took {path} just now)") from None
        raise ConfigError(f"service.control_socket {path}: {exc.strerror or exc}") from None
    return sock


class ControlServer:
    """Serves the control socket in background threads until close().

    `handler(request) -> dict` runs under `self.lock` (one request at a time;
    pass the lock the modem's owner holds, if it is shared).  It answers
    with a JSON-able dict, or raises an MtcdError whose exit_code and
    message go to the client; any other exception is answered as 70 with
    a generic message (its text could show a value).

    The socket is 0600 root-only, or 0660 with group `admin_group`.
    Raises ServiceAlreadyRunning when another service answers on `path`,
    ConfigError for an unknown group or an unusable path.
    """

    def __init__(self, path: Path, handler: Callable[[Request], Mapping[str, Any] | None], admin_group: str = "",
                 *, lock=None, request_timeout: float = REQUEST_TIMEOUT):
        self.path = Path(path)
        self.handler = handler
        self.admin = AdminGroup.named(admin_group) if admin_group else None
        self.lock = lock if lock is not None else threading.Lock()
        self.request_timeout = request_timeout
        self._service_uid = os.geteuid()
        self._closed = False
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._conversations: set[threading.Thread] = set()
        self._conversations_lock = threading.Lock()
        self._per_pid: dict[int, int] = {}
        self._per_uid: dict[int, int] = {}
        self._listener = _claim(self.path)
        try:
            self._inode = os.stat(self.path).st_ino
            if self.admin is not None:
                os.chown(self.path, -1, self.admin.gid)
            # Before listen(): until then nobody can connect, whatever the mode was.
            os.chmod(self.path, 0o660 if self.admin is not None else 0o600)
            self._listener.listen(MAX_CONNECTIONS)
        except OSError as exc:
            self._listener.close()
            self._unlink_if_ours(getattr(self, "_inode", None))
            raise ConfigError(
                f"service.control_socket {self.path}: cannot set its owner group or mode: {exc.strerror}"
            ) from None
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._accept_loop, name="mtcd-control", daemon=True)
        self._thread.start()
        log.info("control socket %s ready (%s)", self.path,
                 f"root and group {self.admin.name}" if self.admin else "root only")

    def __enter__(self) -> "ControlServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, timeout: float = 30.0) -> None:
        """Stop accepting, remove the socket file, and give requests already
        being answered up to `timeout` seconds to finish."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        self._listener.close()
        self._unlink_if_ours(self._inode)
        deadline = time.monotonic() + timeout
        with self._conversations_lock:
            running = list(self._conversations)
        for thread in running:
            thread.join(max(0.0, deadline - time.monotonic()))
        os.close(self._wake_r)
        os.close(self._wake_w)
        log.info("control socket %s closed", self.path)

    def _unlink_if_ours(self, inode: int | None) -> None:
        # Only the file this server bound: never one that replaced it.
        try:
            if inode is not None and os.lstat(self.path).st_ino == inode:
                os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closed:
                for key, _ in selector.select():
                    if key.fileobj is not self._listener or self._closed:
                        continue
                    try:
                        conn, _ = self._listener.accept()
                    except OSError:
                        continue  # the client gave up before we got to it
                    self._admit(conn)

    def _admit(self, conn: socket.socket) -> None:
        """A slot for this connection, or a busy answer: at most
        MAX_PER_PROCESS from one process and MAX_PER_USER from one uid, so
        idle connections from one peer cannot lock the others out."""
        try:
            peer = peer_credentials(conn)
        except OSError as exc:
            log.warning("control: cannot read the peer's credentials (%s); connection dropped", exc.strerror)
            conn.close()
            return
        with self._conversations_lock:
            crowded = None
            if self._per_pid.get(peer.pid, 0) >= MAX_PER_PROCESS:
                crowded = f"pid {peer.pid} has {MAX_PER_PROCESS} control connections open already"
            elif self._per_uid.get(peer.uid, 0) >= MAX_PER_USER:
                crowded = f"uid {peer.uid} has {MAX_PER_USER} control connections open already"
            elif not self._slots.acquire(blocking=False):
                crowded = "too many control connections"
            if crowded is None:
                self._per_pid[peer.pid] = self._per_pid.get(peer.pid, 0) + 1
                self._per_uid[peer.uid] = self._per_uid.get(peer.uid, 0) + 1
        if crowded is not None:
            log.info("control: turned pid %d uid %d away: %s", peer.pid, peer.uid, crowded)
            self._turn_away(conn, crowded)
            return
        thread = threading.Thread(target=self._converse, args=(conn, peer), name="mtcd-control-request", daemon=True)
        with self._conversations_lock:
            self._conversations.add(thread)
        thread.start()

    def _turn_away(self, conn: socket.socket, why: str) -> None:
        try:
            conn.settimeout(1.0)
            _send(conn, encode_error(f"the service is busy ({why}); try again", EXIT_UNAVAILABLE))
        except OSError:
            pass
        finally:
            conn.close()

    def _converse(self, conn: socket.socket, peer: PeerCredentials) -> None:
        """One connection: check the peer, read one request, answer, close."""
        try:
            with conn:
                self._answer_connection(conn, peer)
        except Exception as exc:  # noqa: BLE001 - no traceback: its text could show a request's value
            log.error("control: connection failed with %s", type(exc).__name__)
        finally:
            self._slots.release()
            with self._conversations_lock:
                self._conversations.discard(threading.current_thread())
                for counts, key in ((self._per_pid, peer.pid), (self._per_uid, peer.uid)):
                    counts[key] -= 1
                    if counts[key] <= 0:
                        del counts[key]

    def _answer_connection(self, conn: socket.socket, peer: PeerCredentials) -> None:
        why = refusal(peer, self.admin, self._service_uid)
        if why is not None:
            # Refused before a byte of the request is read.
            log.warning("control: refused pid %d uid %d: %s", peer.pid, peer.uid, why)
            self._reply(conn, encode_error(why, EX_NOPERM), peer, "refused")
            return
        try:
            line = _read_line(conn, MAX_REQUEST, time.monotonic() + self.request_timeout)
        except _TooLong:
            self._bad(conn, peer, BadRequest(f"malformed request: longer than {MAX_REQUEST} bytes"))
            return
        except TimeoutError:
            self._bad(conn, peer, BadRequest(f"no request within {self.request_timeout:g} s"))
            return
        except OSError as exc:
            log.debug("control: pid %d went away before its request (%s)", peer.pid, exc.strerror)
            return
        if not line.strip():
            log.debug("control: pid %d connected and left without a request", peer.pid)
            return
        try:
            request = parse_request(line, peer)
        except BadRequest as exc:
            self._bad(conn, peer, exc)
            return
        del line  # the raw bytes may hold a PIN; only the Request goes on
        request = replace(request, client_left=lambda: _hung_up(conn))
        self._reply(conn, self._run(request), peer, request.command)

    def _bad(self, conn: socket.socket, peer: PeerCredentials, exc: BadRequest) -> None:
        log.info("control: bad request from pid %d uid %d: %s (exit %d)", peer.pid, peer.uid, exc, exc.exit_code)
        self._reply(conn, encode_error(str(exc), exc.exit_code), peer, "bad request")

    def _run(self, request: Request) -> bytes:
        peer = request.peer
        log.info("control: %s from pid %d uid %d", request.command, peer.pid, peer.uid)
        log.debug("control: %s fields %s", request.command, redacted(request.args))
        try:
            with self.lock:
                result = self.handler(request)
            answer = encode_result(result)
        except MtcdError as exc:
            code = exc.exit_code if isinstance(exc.exit_code, int) and 0 < exc.exit_code < 256 else EXIT_SOFTWARE
            message = _withhold_secrets(one_line(str(exc)) or type(exc).__name__, request)
            log.info("control: %s answered exit %d: %s", request.command, code, message)
            from .cli.jsonout import error_code, error_fields

            return encode_error(message, code, error_code(exc, code), error_fields(exc))
        except BaseException as exc:  # noqa: BLE001 - a bug in the handler; the service stays up
            # Type and place only: an exception's text may carry a value.
            frames = traceback.extract_tb(exc.__traceback__)
            where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
            log.error("control: %s failed with %s%s", request.command, type(exc).__name__, where)
            return encode_error(f"internal error while running {request.command} (see the service's log)",
                                EXIT_SOFTWARE)
        log.debug("control: %s answered %s", request.command, redacted(result or {}))
        return answer

    def _reply(self, conn: socket.socket, answer: bytes, peer: PeerCredentials, what: str) -> None:
        try:
            conn.settimeout(self.request_timeout)
            _send(conn, answer)
        except OSError as exc:
            # Worth a warning: a rotation may have been done for a client that gave up.
            log.warning("control: pid %d left before the answer to %s (%s)", peer.pid, what,
                        exc.strerror or type(exc).__name__)


class ControlClient:
    """mtcctl's side.  `call()` returns the service's result, or raises
    ServiceError (the service's exit code and message), ControlUnavailable
    (no service: fall back to the modem), ControlPermissionDenied (77),
    ControlTimeout or ControlError (69)."""

    def __init__(self, path: Path, timeout: float = DEFAULT_TIMEOUT):
        self.path = Path(path)
        self.timeout = timeout

    def available(self) -> bool:
        """Is a service there?  True also when one is there but this user may
        not reach it: call() then says so, rather than falling back to a
        modem port the service holds."""
        try:
            self._connect().close()
        except ControlUnavailable:
            return False
        except ControlError:
            return True
        return True

    def call(self, command: str, /, **fields: Any) -> dict:
        request = encode_request(command, **fields)
        log.debug("control: calling %s with %s", command, redacted(fields))
        deadline = time.monotonic() + self.timeout
        sock = self._connect()
        try:
            try:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                _send(sock, request)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the service may have answered (refused) without reading: read it
            # A busy service (a pairing, a slow modem) may take a while: say so on a terminal.
            with stderr_waits().waiting(f"waiting for the service to answer {command}", self.timeout):
                line = _read_line(sock, MAX_RESPONSE, deadline)
        except TimeoutError:
            raise ControlTimeout(
                f"no answer from the service within {self.timeout:g} s; {command} may still complete "
                "(see mtcctl history)"
            ) from None
        except _TooLong:
            raise ControlError(f"the service's answer is longer than {MAX_RESPONSE} bytes") from None
        except OSError as exc:
            raise ControlError(f"lost the connection to the service: {exc.strerror or type(exc).__name__}") from None
        finally:
            sock.close()
        if not line:
            raise ControlError("the service closed the connection without an answer")
        return decode_response(line)

    def _connect(self) -> socket.socket:
        sock = _new_socket()
        sock.settimeout(min(self.timeout, 10.0))
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            sock.close()
            raise ControlUnavailable(f"no mtcd service is listening on {self.path}") from None
        except PermissionError:
            sock.close()
            raise ControlPermissionDenied(
                f"permission denied: {self.path} (run as root or as a member of service.admin_group)"
            ) from None
        except TimeoutError:
            sock.close()
            raise ControlTimeout(f"the service on {self.path} does not take connections (busy)") from None
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot reach the service on {self.path}: {exc.strerror or exc}") from None
        return sock


__all__ = [
    "COMMANDS", "DEFAULT_TIMEOUT", "EX_NOPERM", "MAX_REQUEST", "SECRET_FIELDS",
    "AdminGroup", "BadRequest", "ControlClient", "ControlError", "ControlPermissionDenied", "ControlServer",
    "ControlTimeout", "ControlUnavailable", "PeerCredentials", "Request", "ServiceAlreadyRunning", "ServiceError",
    "decode_response", "encode_error", "encode_request", "encode_result", "parse_request", "peer_credentials",
    "redacted", "refusal",
]
