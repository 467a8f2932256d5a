"""The control socket between mtcctl and `mtcd run`: real AF_UNIX sockets,
real peer credentials (child processes that drop to `nobody`), no mocks.

What must hold: one-line answers with mtcd's exit codes; the server
survives any client; no PIN or PUK in anything it logs or answers
(guarantee 4); a peer that is neither root nor in the admin group is
refused before its request is read, and the handler never runs for it."""

from __future__ import annotations

import grp
import json
import logging
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from simfixtures import make_iccid

from mtcd.control import (
    EX_NOPERM,
    MAX_REQUEST,
    AdminGroup,
    BadRequest,
    ControlClient,
    ControlError,
    ControlPermissionDenied,
    ControlServer,
    ControlTimeout,
    ControlUnavailable,
    PeerCredentials,
    Request,
    ServiceAlreadyRunning,
    ServiceError,
    decode_response,
    encode_request,
    parse_request,
    redacted,
    refusal,
)
from mtcd.errors import ConfigError, ModemUnavailable, MtcdError
from mtcd.identity import Iccid
from mtcd.lifecycle import LifecycleRefused
from mtcd.secret import Pin, Puk

LEAK_PIN = "90817263"  # digits that appear nowhere else
LEAK_PUK = "64537281"
ICCID = make_iccid(14)
NOBODY = 65534
ROOT_PEER = PeerCredentials(pid=1, uid=0, gid=0)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another uid needs root")


# -- fixtures and helpers ---------------------------------------------------------

@pytest.fixture
def sockdir():
    """A socket directory every user can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="mtcd-control-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def secrets_logged(caplog):
    caplog.set_level(logging.DEBUG, logger="mtcd")
    return caplog


@pytest.fixture
def admin_group():
    """An existing system group that `nobody` is not in."""
    for name in ("dialout", "uucp", "users"):
        try:
            group = grp.getgrnam(name)
        except KeyError:
            continue
        if group.gr_gid != NOBODY and "nobody" not in group.gr_mem:
            return AdminGroup(name, group.gr_gid)
    pytest.skip("no system group to play the admin group")


class Recorder:
    """A handler that records what it was given and answers per command."""

    def __init__(self, answer=None, delay: float = 0.0):
        self.requests: list[Request] = []
        self.answer = answer or (lambda request: {"state": "paired", "command": request.command})
        self.delay = delay
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, request: Request):
        with self._lock:
            self.requests.append(request)
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self.delay:
                time.sleep(self.delay)
            return self.answer(request)
        finally:
            with self._lock:
                self.running -= 1


@contextmanager
def serving(path: Path, handler=None, admin_group: str = "", **kw):
    handler = handler if handler is not None else Recorder()
    server = ControlServer(path, handler, admin_group, **kw)
    try:
        yield server, handler
    finally:
        server.close()


def exchange(path: Path, data: bytes, *, byte_by_byte: bool = False, then_eof: bool = False) -> tuple[dict, str]:
    """Send raw bytes, read the whole answer; it must be exactly one line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        try:
            if byte_by_byte:
                for i in range(len(data)):
                    sock.send(data[i:i + 1])
                    time.sleep(0.001)
            else:
                sock.sendall(data)
            if then_eof:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8")
    assert text.endswith("\n") and text.count("\n") == 1, text
    return json.loads(text), text


def as_user(uid: int, gid: int, groups: list[int], action):
    """Run `action()` in a forked child that has dropped to uid/gid/groups;
    return what it returned, or what it raised, as JSON."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            try:
                os.setgroups(groups)
                os.setgid(gid)
                os.setuid(uid)
                outcome = {"returned": action()}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                outcome = {"raised": type(exc).__name__, "exit_code": getattr(exc, "exit_code", None),
                           "message": str(exc)}
            os.write(write_end, json.dumps(outcome).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)


def status_as(path: Path, uid: int, gid: int, groups: list[int]):
    def action():
        client = ControlClient(path, timeout=10)
        return {"available": client.available(), "result": client.call("status"),
                "ids": [os.getuid(), os.getgid(), sorted(os.getgroups())]}
    return as_user(uid, gid, groups, action)


def no_secret_in(*texts: str) -> None:
    for text in texts:
        assert LEAK_PIN not in text
        assert LEAK_PUK not in text


# -- the wire format (pure) ---------------------------------------------------------

def parse(obj) -> Request:
    return parse_request(json.dumps(obj).encode(), ROOT_PEER)


def test_each_command_parses_to_clean_args():
    assert dict(parse({"command": "status"}).args) == {}
    assert dict(parse({"command": "rotate"}).args) == {"length": None}
    assert dict(parse({"command": "rotate", "length": 6}).args) == {"length": 6}
    assert dict(parse({"command": "rotate", "length": None}).args) == {"length": None}
    adopt = parse({"command": "adopt", "transport_pin": LEAK_PIN}).args
    assert isinstance(adopt["transport_pin"], Pin) and adopt["transport_pin"].reveal() == LEAK_PIN
    stage = parse({"command": "stage", "iccid": ICCID, "pin": LEAK_PIN}).args
    assert stage["iccid"] == Iccid(ICCID) and stage["pin"] == Pin(LEAK_PIN)
    unblock = parse({"command": "unblock", "puk": LEAK_PUK, "new_pin": LEAK_PIN}).args
    assert isinstance(unblock["puk"], Puk) and unblock["puk"].reveal() == LEAK_PUK
    assert isinstance(unblock["new_pin"], Pin) and unblock["allow_last_attempt"] is False
    unblock = parse({"command": "unblock", "puk": LEAK_PUK, "new_pin": LEAK_PIN, "allow_last_attempt": True}).args
    assert unblock["allow_last_attempt"] is True
    for command in ("compromise", "reload"):
        assert dict(parse({"command": command}).args) == {}


def test_parsed_request_is_read_only_and_hides_its_secrets():
    request = parse({"command": "stage", "iccid": ICCID, "pin": LEAK_PIN})
    with pytest.raises(TypeError):
        request.args["pin"] = Pin("1234")  # type: ignore[index]
    no_secret_in(repr(request), str(request))
    assert request.peer == ROOT_PEER


BAD_REQUESTS = [
    # (request, exit code, words the message must contain)
    ({"command": "frobnicate"}, 64, ["unknown command", "frobnicate", "status"]),
    ({"command": "9081"}, 64, ["unknown command", "not a plain name"]),
    ({}, 64, ['"command"']),
    ({"command": 7}, 64, ['"command"']),
    ({"command": "status", "extra": 1}, 64, ["unexpected field", "extra"]),
    ({"command": "status", LEAK_PIN: 1}, 64, ["unexpected field", "not a plain name"]),
    ({"command": "adopt"}, 64, ["missing field transport_pin"]),
    ({"command": "adopt", "transport_pin": 90817263}, 64, ["transport_pin", "string"]),
    ({"command": "adopt", "transport_pin": "12a4"}, 65, ["transport_pin", "digits only"]),
    ({"command": "stage", "iccid": ICCID, "pin": "12a4"}, 65, ["pin", "digits only"]),
    ({"command": "stage", "iccid": ICCID, "pin": "123"}, 65, ["pin", "4 to 8 digits"]),
    ({"command": "stage", "iccid": ICCID}, 64, ["missing field pin"]),
    ({"command": "stage", "iccid": ICCID[:-1] + str((int(ICCID[-1]) + 1) % 10), "pin": LEAK_PIN}, 65,
     ["iccid", "check digit"]),
    ({"command": "stage", "iccid": 8949, "pin": LEAK_PIN}, 64, ["iccid", "string"]),
    ({"command": "unblock", "puk": LEAK_PUK[:7], "new_pin": LEAK_PIN}, 65, ["puk", "8 digits"]),
    ({"command": "unblock", "puk": LEAK_PUK, "new_pin": "9081726x"}, 65, ["new_pin", "digits only"]),
    ({"command": "unblock", "puk": LEAK_PUK, "new_pin": LEAK_PIN, "allow_last_attempt": "yes"}, 64,
     ["allow_last_attempt", "true or false"]),
    ({"command": "rotate", "length": 9}, 64, ["length", "4 to 8"]),
    ({"command": "rotate", "length": 3}, 64, ["length", "4 to 8"]),
    ({"command": "rotate", "length": True}, 64, ["length", "4 to 8"]),
    ({"command": "rotate", "length": "8"}, 64, ["length", "4 to 8"]),
]


@pytest.mark.parametrize("obj, code, words", BAD_REQUESTS)
def test_bad_request_names_field_and_rule_never_the_value(obj, code, words):
    with pytest.raises(BadRequest) as caught:
        parse(obj)
    message = str(caught.value)
    assert caught.value.exit_code == code
    for word in words:
        assert word in message
    assert "\n" not in message
    no_secret_in(message, repr(caught.value))
    assert "12a4" not in message and "9081726x" not in message and LEAK_PUK[:7] not in message


@pytest.mark.parametrize("line, words", [
    (b"not json at all", "not valid JSON"),
    (b'{"command": "status"', "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "JSON object"),
    (b'"status"', "JSON object"),
    (b"[" * 50000, "not valid JSON"),
    (b"1" * 5000, "not valid JSON"),
])
def test_malformed_lines_are_usage_errors(line, words):
    with pytest.raises(BadRequest) as caught:
        parse_request(line, ROOT_PEER)
    assert caught.value.exit_code == 64
    assert words in str(caught.value)


def test_encode_request_reveals_only_pin_objects_in_secret_fields():
    line = encode_request("stage", iccid=Iccid(ICCID), pin=Pin(LEAK_PIN))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {"command": "stage", "iccid": ICCID, "pin": LEAK_PIN}
    with pytest.raises(TypeError, match="pin must be given as a Pin"):
        encode_request("stage", iccid=ICCID, pin=LEAK_PIN)
    with pytest.raises(TypeError, match="puk must be given as a Puk"):
        encode_request("unblock", puk=Pin(LEAK_PIN[:8]), new_pin=Pin(LEAK_PIN))
    with pytest.raises(TypeError, match="not a secret field") as caught:
        encode_request("stage", iccid=Pin(LEAK_PIN))
    no_secret_in(str(caught.value))


def test_decode_response_shapes():
    assert decode_response(b'{"ok": true, "result": {"a": 1}}') == {"a": 1}
    with pytest.raises(ServiceError) as caught:
        decode_response(b'{"ok": false, "error": "refused: no SIM", "exit_code": 1}')
    assert caught.value.exit_code == 1 and str(caught.value) == "refused: no SIM"
    for garbage in (b"", b"nonsense", b"[]", b'{"ok": true}', b'{"ok": false, "error": "x", "exit_code": 0}',
                    b'{"ok": false, "error": "x", "exit_code": true}', b'{"ok": false, "exit_code": 64}'):
        with pytest.raises(ControlError) as caught:
            decode_response(garbage)
        assert caught.value.exit_code == 69


def test_redacted_hides_secret_fields_by_name_and_type():
    shown = redacted({"pin": LEAK_PIN, "nested": {"new_pin": LEAK_PIN, "puk": LEAK_PUK, "n": 3},
                      "list": [{"transport_pin": LEAK_PIN}], "other": Pin(LEAK_PIN), "iccid": Iccid(ICCID)})
    no_secret_in(json.dumps(shown))
    assert shown["nested"]["n"] == 3 and shown["iccid"] == ICCID


@pytest.mark.parametrize("peer, admin, service_uid, allowed", [
    (PeerCredentials(10, 0, 0), None, 0, True),  # root
    (PeerCredentials(10, 1000, 1000), None, 0, False),  # no admin group: root only
    (PeerCredentials(10, 1000, 1000), None, 1000, True),  # the service's own user
    (PeerCredentials(10, 1000, 20), AdminGroup("dialout", 20), 0, True),  # primary group
    (PeerCredentials(10, 1000, 1000, (5, 20)), AdminGroup("dialout", 20), 0, True),  # supplementary
    (PeerCredentials(10, 1000, 1000, (5, 21)), AdminGroup("dialout", 20), 0, False),
])
def test_refusal_rules(peer, admin, service_uid, allowed):
    why = refusal(peer, admin, service_uid)
    assert (why is None) is allowed
    if not allowed:
        assert why.startswith("permission denied: uid 1000")
        assert (admin is None) == ("admin_group is not set" in why)


# -- round trips over a real socket ------------------------------------------------------

def test_status_round_trip(sockdir):
    with serving(sockdir / "control.sock") as (server, handler):
        client = ControlClient(server.path)
        assert client.available()
        assert client.call("status") == {"state": "paired", "command": "status"}
    [request] = handler.requests
    assert request.command == "status" and dict(request.args) == {}
    # The kernel's word on who called: this very process.
    assert (request.peer.pid, request.peer.uid, request.peer.gid) == (os.getpid(), os.geteuid(), os.getegid())


def test_available_probe_does_not_reach_the_handler(sockdir):
    with serving(sockdir / "control.sock") as (server, handler):
        assert ControlClient(server.path).available()
        assert ControlClient(server.path).available()
    assert handler.requests == []


def test_unknown_command_is_64_and_handler_not_called(sockdir):
    with serving(sockdir / "control.sock") as (server, handler):
        with pytest.raises(ServiceError) as caught:
            ControlClient(server.path).call("frobnicate")
    assert caught.value.exit_code == 64
    assert "unknown command 'frobnicate'" in str(caught.value)
    assert handler.requests == []


@pytest.mark.parametrize("data, words", [
    (b"this is not json\n", "not valid JSON"),
    (b"[1, 2, 3]\n", "JSON object"),
    (b"\xc3\x28\n", "not UTF-8"),
    (b'{"command": "status"} ' + b"x" * MAX_REQUEST + b"\n", f"longer than {MAX_REQUEST} bytes"),
    (b"a" * (MAX_REQUEST + 10), f"longer than {MAX_REQUEST} bytes"),
    (b'{"command": "stage", "iccid": "' + ICCID.encode() + b'", "pin": "12a4"}\n', "pin PIN must be digits only"),
])
def test_bad_input_gets_one_line_and_the_server_serves_the_next_client(sockdir, data, words):
    with serving(sockdir / "control.sock") as (server, handler):
        answer, text = exchange(server.path, data)
        assert answer["ok"] is False and answer["exit_code"] in (64, 65)
        assert words in answer["error"]
        assert "12a4" not in text
        assert ControlClient(server.path).call("status")["state"] == "paired"
    assert [r.command for r in handler.requests] == ["status"]


def test_request_in_pieces_and_with_trailing_bytes(sockdir):
    with serving(sockdir / "control.sock") as (server, handler):
        answer, _ = exchange(server.path, b'{"command": "status"}\n', byte_by_byte=True)
        assert answer == {"ok": True, "result": {"state": "paired", "command": "status"}}
        # One request per connection: whatever follows the line is ignored.
        answer, _ = exchange(server.path, b'{"command": "status"}\n{"command": "reload"}\n')
        assert answer["ok"] is True
        # A request ended by EOF instead of a newline is still one request.
        answer, _ = exchange(server.path, b'{"command": "reload"}', then_eof=True)
        assert answer["ok"] is True
    assert [r.command for r in handler.requests] == ["status", "status", "reload"]


def test_silent_client_is_dropped_after_the_request_timeout(sockdir):
    with serving(sockdir / "control.sock", request_timeout=0.2) as (server, handler):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(server.path))
            answer = json.loads(sock.recv(4096))
        assert answer["exit_code"] == 64 and "no request within 0.2 s" in answer["error"]
        assert ControlClient(server.path).call("status")["state"] == "paired"


class SimRefused(MtcdError):
    exit_code = 1


@pytest.mark.parametrize("error, code", [
    (LifecycleRefused("the SIM 8949 is not blocked (it reports READY)"), 1),
    (ModemUnavailable("/dev/ttyUSB2: the modem does not answer"), 69),
    (ConfigError("policy.min_retries must be 2"), 78),
    (SimRefused("refused: no-sim\nsecond line"), 1),
])
def test_handler_mtcd_error_keeps_its_exit_code_and_message(sockdir, error, code):
    def fail(request):
        raise error

    with serving(sockdir / "control.sock", fail) as (server, _):
        with pytest.raises(ServiceError) as caught:
            ControlClient(server.path).call("status")
    assert caught.value.exit_code == code
    assert str(caught.value) == " ".join(str(error).split())


def test_handler_bug_is_70_without_its_text_and_the_server_stays_up(sockdir, secrets_logged):
    calls = []

    def buggy(request):
        calls.append(request)
        if len(calls) == 1:
            int(request.args["pin"].reveal() + "x")  # ValueError whose text holds the PIN
        return {"outcome": "staged"}

    with serving(sockdir / "control.sock", buggy) as (server, _):
        client = ControlClient(server.path)
        with pytest.raises(ServiceError) as caught:
            client.call("stage", iccid=Iccid(ICCID), pin=Pin(LEAK_PIN))
        assert caught.value.exit_code == 70
        message = str(caught.value)
        assert message == "internal error while running stage (see the service's log)"
        assert client.call("stage", iccid=Iccid(ICCID), pin=Pin(LEAK_PIN)) == {"outcome": "staged"}
    assert "ValueError" in secrets_logged.text and "test_control.py" in secrets_logged.text
    assert "Traceback" not in secrets_logged.text and "invalid literal" not in secrets_logged.text
    no_secret_in(message, secrets_logged.text)


@pytest.mark.parametrize("answer", [
    lambda request: {"pin": request.args["pin"]},  # a Pin object cannot be sent
    lambda request: ["not", "a", "mapping"],
    lambda request: {"when": object()},
])
def test_handler_answer_that_is_not_plain_json_is_70(sockdir, secrets_logged, answer):
    with serving(sockdir / "control.sock", Recorder(answer)) as (server, _):
        with pytest.raises(ServiceError) as caught:
            ControlClient(server.path).call("stage", iccid=Iccid(ICCID), pin=Pin(LEAK_PIN))
    assert caught.value.exit_code == 70
    no_secret_in(str(caught.value), secrets_logged.text)


def test_handler_error_that_would_show_a_secret_is_withheld(sockdir, secrets_logged):
    def careless(request):
        raise LifecycleRefused(f"the card said no to {request.args['new_pin'].reveal()}")

    with serving(sockdir / "control.sock", careless) as (server, _):
        with pytest.raises(ServiceError) as caught:
            ControlClient(server.path).call("unblock", puk=Puk(LEAK_PUK), new_pin=Pin(LEAK_PIN))
    assert caught.value.exit_code == 1
    assert "withheld" in str(caught.value)
    no_secret_in(str(caught.value), secrets_logged.text)


# -- secrets ---------------------------------------------------------------------------

def test_secrets_arrive_as_pin_and_puk_and_are_never_logged_or_answered(sockdir, secrets_logged):
    def answer(request):
        return {"command": request.command, "args": sorted(request.args), "iccid": str(request.args.get("iccid"))}

    handler = Recorder(answer)
    with serving(sockdir / "control.sock", handler) as (server, _):
        client = ControlClient(server.path)
        answers = [
            client.call("stage", iccid=Iccid(ICCID), pin=Pin(LEAK_PIN)),
            client.call("adopt", transport_pin=Pin(LEAK_PIN)),
            client.call("unblock", puk=Puk(LEAK_PUK), new_pin=Pin(LEAK_PIN), allow_last_attempt=True),
        ]
    stage, adopt, unblock = (r.args for r in handler.requests)
    assert type(stage["pin"]) is Pin and stage["pin"].reveal() == LEAK_PIN
    assert type(stage["iccid"]) is Iccid and str(stage["iccid"]) == ICCID
    assert type(adopt["transport_pin"]) is Pin and adopt["transport_pin"].reveal() == LEAK_PIN
    assert type(unblock["puk"]) is Puk and unblock["puk"].reveal() == LEAK_PUK
    assert type(unblock["new_pin"]) is Pin and unblock["allow_last_attempt"] is True
    assert answers[0] == {"command": "stage", "args": ["iccid", "pin"], "iccid": ICCID}
    # The log did see the requests, with their field names: just not the values.
    assert "stage fields" in secrets_logged.text and "<redacted>" in secrets_logged.text
    no_secret_in(json.dumps(answers), secrets_logged.text)


def test_invalid_pin_on_the_wire_is_65_naming_the_rule_not_the_value(sockdir, secrets_logged):
    bad_pins = ["12a4", "908", "908172634", " 90817263", "\uff19\uff10\uff18\uff11"]
    with serving(sockdir / "control.sock") as (server, handler):
        for bad in bad_pins:
            request = json.dumps({"command": "adopt", "transport_pin": bad}).encode() + b"\n"
            answer, text = exchange(server.path, request)
            assert answer["exit_code"] == 65, answer
            assert answer["error"].startswith("adopt: transport_pin PIN must be")
            assert bad not in text and bad.strip() not in text
        as_number = json.dumps({"command": "adopt", "transport_pin": int(LEAK_PIN)}).encode() + b"\n"
        answer, _ = exchange(server.path, as_number)
        assert answer["exit_code"] == 64
    assert handler.requests == []
    assert "bad request" in secrets_logged.text
    for bad in bad_pins:
        assert bad.strip() not in secrets_logged.text
    no_secret_in(secrets_logged.text)


# -- peer credentials, for real -----------------------------------------------------------

@needs_root
def test_nobody_is_refused_with_77_even_when_the_socket_is_open_to_all(sockdir):
    with serving(sockdir / "control.sock") as (server, handler):
        os.chmod(server.path, 0o666)  # only the credential check stands in the way now
        outcome = status_as(server.path, NOBODY, NOBODY, [])
    assert outcome["raised"] == ServiceError.__name__ and outcome["exit_code"] == EX_NOPERM == 77
    assert outcome["message"] == "permission denied: uid 65534 is not root (service.admin_group is not set)"
    assert handler.requests == []


@needs_root
def test_nobody_outside_the_admin_group_is_refused(sockdir, admin_group):
    with serving(sockdir / "control.sock", admin_group=admin_group.name) as (server, handler):
        os.chmod(server.path, 0o666)
        other = grp.getgrnam("users").gr_gid if admin_group.name != "users" else 10
        outcome = status_as(server.path, NOBODY, NOBODY, [other])
    assert outcome["exit_code"] == 77
    assert outcome["message"] == f"permission denied: uid 65534 is neither root nor in group {admin_group.name}"
    assert handler.requests == []


@needs_root
def test_nobody_is_kept_out_by_the_socket_mode_first(sockdir, admin_group):
    def action():
        client = ControlClient(sockdir / "control.sock", timeout=10)
        return {"available": client.available(), "result": client.call("status")}

    with serving(sockdir / "control.sock", admin_group=admin_group.name) as (server, handler):
        outcome = as_user(NOBODY, NOBODY, [], action)
        # available() says a service is there, so mtcctl does not reach for the modem.
        available = as_user(NOBODY, NOBODY, [], lambda: ControlClient(sockdir / "control.sock").available())
    assert outcome["raised"] == ControlPermissionDenied.__name__ and outcome["exit_code"] == 77
    assert outcome["message"].startswith("permission denied:")
    assert available == {"returned": True}
    assert handler.requests == []


@needs_root
def test_nobody_with_the_admin_group_as_supplementary_group_is_allowed(sockdir, admin_group):
    with serving(sockdir / "control.sock", admin_group=admin_group.name) as (server, handler):
        outcome = status_as(server.path, NOBODY, NOBODY, [admin_group.gid])
    assert outcome["returned"]["result"] == {"state": "paired", "command": "status"}
    assert outcome["returned"]["ids"] == [NOBODY, NOBODY, [admin_group.gid]]
    [request] = handler.requests
    assert request.peer.uid == NOBODY and request.peer.gid == NOBODY
    assert admin_group.gid in request.peer.groups


@needs_root
def test_nobody_with_the_admin_group_as_primary_group_is_allowed(sockdir, admin_group):
    with serving(sockdir / "control.sock", admin_group=admin_group.name) as (server, handler):
        outcome = status_as(server.path, NOBODY, admin_group.gid, [])
    assert outcome["returned"]["result"]["state"] == "paired"
    [request] = handler.requests
    assert (request.peer.uid, request.peer.gid) == (NOBODY, admin_group.gid)


@needs_root
def test_root_is_allowed_whatever_the_admin_group(sockdir, admin_group):
    with serving(sockdir / "control.sock", admin_group=admin_group.name) as (server, handler):
        outcome = status_as(server.path, 0, 0, [])
    assert outcome["returned"]["result"]["state"] == "paired"
    assert handler.requests[0].peer.uid == 0


# -- the socket file -----------------------------------------------------------------------

def test_socket_is_0600_without_admin_group(sockdir):
    with serving(sockdir / "control.sock") as (server, _):
        st = os.stat(server.path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.geteuid()


@needs_root
def test_socket_is_0660_with_the_admin_group(sockdir, admin_group):
    with serving(sockdir / "control.sock", admin_group=admin_group.name) as (server, _):
        st = os.stat(server.path)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == admin_group.gid


def test_unknown_admin_group_is_a_config_error_and_leaves_no_file(sockdir):
    with pytest.raises(ConfigError) as caught:
        ControlServer(sockdir / "control.sock", Recorder(), "mtcd-no-such-group")
    assert caught.value.exit_code == 78
    assert "service.admin_group" in str(caught.value) and "mtcd-no-such-group" in str(caught.value)
    assert not (sockdir / "control.sock").exists()


def test_stale_socket_file_is_replaced(sockdir):
    path = sockdir / "control.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nothing listens: a crashed service
    assert path.exists()
    client = ControlClient(path)
    assert not client.available()
    with pytest.raises(ControlUnavailable):
        client.call("status")
    with serving(path) as (server, _):
        assert client.call("status")["state"] == "paired"


def test_second_server_on_the_same_path_is_refused(sockdir):
    path = sockdir / "control.sock"
    with serving(path) as (server, handler):
        inode = os.stat(path).st_ino
        with pytest.raises(ServiceAlreadyRunning) as caught:
            ControlServer(path, Recorder())
        assert caught.value.exit_code == 69
        assert "another mtcd is running" in str(caught.value)
        assert os.stat(path).st_ino == inode
        assert ControlClient(path).call("status")["state"] == "paired"
    assert [r.command for r in handler.requests] == ["status"]


def test_something_else_at_the_path_is_left_alone(sockdir):
    path = sockdir / "control.sock"
    path.write_text("not a socket\n")
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        ControlServer(path, Recorder())
    assert path.read_text() == "not a socket\n"


def test_missing_directory_is_created(sockdir):
    with serving(sockdir / "run" / "mtcd" / "control.sock") as (server, _):
        assert ControlClient(server.path).call("status")["state"] == "paired"


def test_close_removes_the_socket_and_can_be_repeated(sockdir):
    path = sockdir / "control.sock"
    server = ControlServer(path, Recorder())
    assert path.exists()
    server.close()
    assert not path.exists()
    server.close()
    assert not ControlClient(path).available()


def test_close_waits_for_the_request_being_answered(sockdir):
    handler = Recorder(delay=0.5)
    server = ControlServer(sockdir / "control.sock", handler)
    answers = []
    caller = threading.Thread(target=lambda: answers.append(ControlClient(server.path).call("rotate", length=8)))
    caller.start()
    while not handler.requests:
        time.sleep(0.01)
    server.close()
    caller.join(5)
    assert answers == [{"state": "paired", "command": "rotate"}]
    assert not server.path.exists()


# -- serialisation and timeouts ---------------------------------------------------------------

def test_handler_calls_are_serialised(sockdir):
    handler = Recorder(delay=0.1)
    with serving(sockdir / "control.sock", handler) as (server, _):
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(ControlClient(server.path).call("status")))
                   for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(answers) == 5 and len(handler.requests) == 5
    assert handler.most_at_once == 1


def test_handler_runs_under_the_lock_it_was_given(sockdir):
    shared = threading.Lock()
    with serving(sockdir / "control.sock", lock=shared) as (server, handler):
        assert server.lock is shared
        with shared:  # the modem's owner is busy with the modem
            with pytest.raises(ControlTimeout):
                ControlClient(server.path, timeout=0.3).call("status")
            assert handler.requests == []
        deadline = time.monotonic() + 5
        while not handler.requests and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [r.command for r in handler.requests] == ["status"]


def test_client_timeout_and_the_server_carries_on(sockdir, secrets_logged):
    handler = Recorder(delay=0.6)
    with serving(sockdir / "control.sock", handler) as (server, _):
        with pytest.raises(ControlTimeout) as caught:
            ControlClient(server.path, timeout=0.2).call("rotate", length=None)
        assert caught.value.exit_code == 69
        assert "rotate may still complete" in str(caught.value)
        handler.delay = 0
        assert ControlClient(server.path).call("status")["state"] == "paired"
    assert [r.command for r in handler.requests] == ["rotate", "status"]
    assert "left before the answer to rotate" in secrets_logged.text


# -- client without a service ----------------------------------------------------------------

def test_client_without_a_service(sockdir):
    for path in (sockdir / "control.sock", sockdir / "missing-dir" / "control.sock"):
        client = ControlClient(path)
        assert client.available() is False
        with pytest.raises(ControlUnavailable) as caught:
            client.call("status")
        assert caught.value.exit_code == 69
        assert str(path) in str(caught.value)


# -- hardening: ambiguous requests, idle peers, clients that leave ---------------------------

@pytest.mark.parametrize("line", [
    b'{"command":"status","command":"compromise"}',
    b'{"command":"compromise","command":"status"}',
    b'{"command":"rotate","length":8,"length":4}',
    b'{"command":"stage","iccid":"%s","pin":"1234","pin":"5678"}' % ICCID.encode(),
])
def test_duplicate_keys_are_refused(line):
    # json.loads keeps the last of two equal keys: a reader (a log, a proxy,
    # a person) that takes the first would see another request than the one run.
    with pytest.raises(BadRequest) as caught:
        parse_request(line, ROOT_PEER)
    assert caught.value.exit_code == 64
    assert "appears twice" in str(caught.value) and "\n" not in str(caught.value)
    assert "1234" not in str(caught.value) and "5678" not in str(caught.value)


def test_duplicate_keys_never_reach_the_handler(sockdir):
    with serving(sockdir / "control.sock") as (server, handler):
        answer, _ = exchange(server.path, b'{"command":"status","command":"compromise"}\n')
        assert answer["ok"] is False and answer["exit_code"] == 64
        assert answer["error"] == "malformed request: object key 'command' appears twice"
    assert handler.requests == []


def test_idle_connections_from_one_process_cannot_lock_others_out(sockdir):
    from mtcd.control import MAX_CONNECTIONS

    with serving(sockdir / "control.sock") as (server, handler):
        idle = []
        try:
            for _ in range(MAX_CONNECTIONS):  # every slot there is, from this one process
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(server.path))
                idle.append(sock)
            time.sleep(0.3)
            # Another process (a real client elsewhere) is still served, at once.
            child = _in_child(lambda: ControlClient(server.path, timeout=5).call("status")["state"])
            assert child == "paired"
        finally:
            for sock in idle:
                sock.close()


def test_a_silent_connection_is_closed_within_a_few_seconds(sockdir):
    from mtcd.control import REQUEST_TIMEOUT

    assert REQUEST_TIMEOUT <= 5
    with serving(sockdir / "control.sock") as (server, handler):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(str(server.path))
            start = time.monotonic()
            answer = json.loads(sock.recv(4096))
            assert time.monotonic() - start < REQUEST_TIMEOUT + 2
        assert answer["exit_code"] == 64 and "no request within" in answer["error"]


def test_the_handler_can_tell_that_its_client_left(sockdir):
    seen = []

    def handler(request):
        # The client that left must be seen within 5 s; the one that stays,
        # watched for a second, must not be taken for gone.
        deadline = time.monotonic() + (5 if request.command == "rotate" else 1)
        while not request.client_left() and time.monotonic() < deadline:
            time.sleep(0.02)
        seen.append(request.client_left())
        return {}

    with serving(sockdir / "control.sock", handler) as (server, _):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(server.path))
            sock.sendall(b'{"command":"rotate"}\n')
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
        # A client that only ends its request with EOF still waits: not gone.
        answer, _ = exchange(server.path, b'{"command":"reload"}', then_eof=True)
    assert seen[0] is True
    assert answer["ok"] is True and seen[1] is False


def _in_child(work):
    """Run `work()` in a forked child (another pid); return its result."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            with os.fdopen(write_end, "w") as out:
                out.write(json.dumps(work()))
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, text
    return json.loads(text)
