"""mtcd.background: a call run in a thread, its value or its exception
handed back to the thread that asks for it."""

from __future__ import annotations

import threading

import pytest

from mtcd.background import Background
from mtcd.errors import KeystoreError


def test_the_value_comes_back_from_another_thread():
    ran_in = []
    call = Background(lambda: ran_in.append(threading.current_thread().name) or 42, name="mtcd-test-call")
    assert call.result() == 42
    assert ran_in == ["mtcd-test-call"]


def test_the_exception_is_raised_to_the_caller():
    def fail():
        raise KeystoreError("keystore.json is damaged")

    call = Background(fail, name="mtcd-test-call")
    with pytest.raises(KeystoreError, match="damaged"):
        call.result()


def test_a_session_opens_the_keystore_in_the_background(tmp_path, monkeypatch):
    """The Gateway's helper: the store and its sealer, opened in a thread
    named for it; a damaged store raises when the session asks for it."""
    from mtcd import service
    from mtcd.config import load_config

    config_path = tmp_path / "mtcd.toml"
    config_path.write_text(f'state_dir = "{tmp_path / "state"}"\n[modem]\nport = "/dev/null"\n'
                           '[keystore]\nsealer = "file"\n')
    config = load_config(config_path)
    keystore, sealer = service._open_keystore_meanwhile(config).result()
    assert len(keystore) == 0 and sealer.kind == "file"
    (tmp_path / "state").mkdir(mode=0o700, exist_ok=True)
    (tmp_path / "state" / "keystore.json").write_text("{not json")
    with pytest.raises(KeystoreError):
        service._open_keystore_meanwhile(config).result()


def test_an_exit_before_the_result_waits_for_the_call(tmp_path):
    """A session that fails before asking for the keystore exits while the
    call may still run inside cryptography's Rust bindings; a daemon thread
    ended by the interpreter's finalization there aborts the process
    (SIGABRT instead of the command's exit status, about one exit in a
    hundred when the two meet).  The exit waits for the call instead: here
    the call outlives the main thread and still finishes."""
    import subprocess
    import sys

    done = tmp_path / "done"
    script = (
        "import sys, time\n"
        "from mtcd.background import Background\n"
        "def call():\n"
        "    time.sleep(0.3)\n"
        f"    open({str(done)!r}, 'w').write('finished')\n"
        "Background(call, name='mtcd-test-call')\n"
        "sys.exit(3)\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert ran.returncode == 3, ran.stderr
    assert done.exists(), "the process exited with the call cut off half way"
