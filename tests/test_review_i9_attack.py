"""Hostile review of the recovery paths (`mtcctl pin try`, `mtcctl repair`,
`mtcd once --dry-run`): each test here broke a guarantee on the code as it
landed, through the real CLIs against the simulator where it can."""

from __future__ import annotations

import json

from conftest import pin_presentations, puk_commands
from simfixtures import make_card, sim_modem

WRONG_PIN = "11112222"
OTHER_WRONG_PIN = "33334444"
NO_COUNTERS = {"has_cpinr": False, "has_csim": False}


def _try(gateway, *flags):
    return gateway.mtcctl("pin", "try", *flags, timeout=60)


def _stage(gateway, iccid: str, pin: str) -> None:
    run = gateway.mtcctl("pin", "stage", iccid, stdin=pin + "\n")
    assert run.returncode == 0, run.stderr


def test_unsettled_attempts_on_both_candidates_never_reach_the_third_attempt(gateway):
    """A modem without counters, a card holding neither stored PIN, and the
    answers to the PIN lost twice: the first try leaves the current PIN
    unsettled, the second the pending one.  The third `pin try` must not
    present the current PIN again (that would be the card's third wrong
    PIN: PUK-blocked); only a PIN a person types (`pin set`) may go out."""
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        iccid = str(card.iccid)
        gateway.store_pin(iccid, WRONG_PIN)
        _stage(gateway, iccid, OTHER_WRONG_PIN)
        modem.fail_after("AT+CPIN=", "drop", times=3)
        for _ in range(3):
            run = _try(gateway, "--below-guard", "--last-attempt", "--yes")
            modem.power_loss()
        assert card.pin_attempts >= 1, "PUK-blocked by the third try"
        assert len(pin_presentations(modem.commands)) == 2
        assert run.returncode == 1 and f"`mtcctl pin set {iccid}`" in run.stderr, run.stderr
        # Nor does the automatic path present either of them.
        once = gateway.mtcd("once", "--json")
        assert once.returncode == 1 and once.last_json["reason"] == "retry-guard", once.stdout
        assert len(pin_presentations(modem.commands)) == 2 and card.pin_attempts == 1
        assert puk_commands(modem.commands) == []


def test_after_a_lost_answer_and_a_rejection_the_automatic_path_presents_nothing(gateway):
    """The current PIN's answer lost (no counter), then the pending PIN
    rejected by the card: the card has spent two attempts.  The rejection
    must not erase what is known of the current PIN's attempt, or the next
    automatic pass presents it: the third wrong PIN, PUK-blocked."""
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        iccid = str(card.iccid)
        gateway.store_pin(iccid, WRONG_PIN)
        _stage(gateway, iccid, OTHER_WRONG_PIN)
        modem.fail_after("AT+CPIN=", "drop")
        first = _try(gateway, "--below-guard", "--yes", "--json")
        assert first.returncode == 75 and json.loads(first.stdout)["pin"] == "current", first.stdout
        modem.power_loss()
        second = _try(gateway, "--below-guard", "--yes", "--json")
        answer = json.loads(second.stdout)
        assert second.returncode == 1 and answer["pin"] == "pending" and answer["outcome"] == "rejected"
        assert card.pin_attempts == 1
        assert f"`mtcctl pin set {iccid}`" in answer["detail"], answer["detail"]
        modem.power_loss()
        once = gateway.mtcd("once", "--json")
        assert once.returncode == 1 and once.last_json["reason"] == "retry-guard", once.stdout
        assert f"`mtcctl pin set {iccid}`" in once.last_json["message"]
        dry = gateway.mtcd("once", "--dry-run", "--json")
        assert dry.last_json["state"] == "would-refuse", dry.stdout
        third = _try(gateway, "--below-guard", "--last-attempt", "--yes")
        assert third.returncode == 1 and f"`mtcctl pin set {iccid}`" in third.stderr, third.stderr
        assert len(pin_presentations(modem.commands)) == 2 and card.pin_attempts == 1
        # The person types the right PIN: it is presented, and settles everything.
        gateway.store_pin(iccid)
        ok = _try(gateway, "--below-guard", "--last-attempt", "--yes")
        assert ok.returncode == 0, ok.stderr
        entry = gateway.keystore().get(card.iccid)
        assert card.verified and not entry.attempt_started and not entry.unsettled
        assert puk_commands(modem.commands) == []


# -- the keystore keeps every unsettled candidate (pure, no modem) -------------

def _store(tmp_path):
    from mtcd.identity import Iccid, luhn_check_digit
    from mtcd.keystore import Keystore
    from mtcd.secret import Pin

    body = "894910000000000001"
    iccid = Iccid(body + str(luhn_check_digit(body)))
    store = Keystore.open(tmp_path / "state")
    store.set_pin(iccid, Pin(WRONG_PIN))
    store.stage_pending(iccid, Pin(OTHER_WRONG_PIN), "staged")
    return store, iccid


def test_a_second_open_attempt_keeps_the_first_unsettled_across_reopen(tmp_path):
    import pytest

    from mtcd.errors import KeystoreError
    from mtcd.keystore import Keystore
    from mtcd.secret import Pin

    store, iccid = _store(tmp_path)
    store.begin_attempt(iccid, attempts_before=None, which="current")
    store.begin_attempt(iccid, attempts_before=None, which="pending")
    store.record_rejected(iccid, "pending")
    entry = Keystore.open(tmp_path / "state").get(iccid)
    assert entry.unsettled == ("current",) and entry.pending_rejected and not entry.attempt_started
    with pytest.raises(KeystoreError, match="never settled"):
        store.begin_attempt(iccid, attempts_before=None, which="current")
    store.set_pin(iccid, Pin(WRONG_PIN))  # a person typed it: everything lifted
    assert Keystore.open(tmp_path / "state").get(iccid).unsettled == ()


def test_an_attempt_the_counter_shows_unspent_is_not_kept(tmp_path):
    store, iccid = _store(tmp_path)
    store.begin_attempt(iccid, attempts_before=3, which="current")
    store.begin_attempt(iccid, attempts_before=3, which="pending")
    assert store.get(iccid).unsettled == ()
    store.begin_attempt(iccid, attempts_before=None, which="current")  # no counter now
    assert store.get(iccid).unsettled == ("pending",)


def test_an_entry_without_unsettled_is_written_as_before(tmp_path):
    """Only an entry with an unsettled candidate carries the new field, so a
    store written without one still opens with a release that predates it."""
    import json

    from mtcd.keystore import KEY_NAME, _associated_data
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    import base64

    store, iccid = _store(tmp_path)
    state = tmp_path / "state"

    def record():
        key = (state / KEY_NAME).read_bytes()
        item = json.loads((state / "keystore.json").read_text())["entries"][iccid.value]
        plain = AESGCM(key).decrypt(base64.b64decode(item["nonce"]), base64.b64decode(item["sealed"]),
                                    _associated_data(iccid))
        return json.loads(plain)

    assert "unsettled" not in record()
    store.begin_attempt(iccid, attempts_before=None, which="current")
    store.begin_attempt(iccid, attempts_before=None, which="pending")
    assert record()["unsettled"] == ["current"]


# -- a SIM-state URC landing between the checks and the PIN --------------------

def _urc_lands_after_the_marker(monkeypatch, modem, gateway_of):
    """Make a `+CPIN:` URC arrive once, right after the attempt marker is
    written and before AT+CPIN= goes out (where a reader thread may deliver
    it at any moment), and wait until the session has taken it."""
    import time

    from mtcd.keystore import Keystore

    original = Keystore.begin_attempt
    fired = {"n": 1}

    def begin_attempt(self, *args, **kwargs):
        marked = original(self, *args, **kwargs)
        if fired["n"]:
            fired["n"] = 0
            uicc = gateway_of().uicc
            modem._urcs.append("+CPIN: SIM PIN")
            modem._notify()
            deadline = time.monotonic() + 5
            while uicc._lock is not None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert uicc._lock is None, "the URC never reached the session"
        return marked

    monkeypatch.setattr(Keystore, "begin_attempt", begin_attempt)


def test_a_urc_after_the_marker_is_a_reread_not_an_exception(gateway, monkeypatch):
    """Was flaky in test_failure_paths: PresentationRefused escaped pair_once
    and left an "attempt started" marker for a PIN never sent (which on a
    modem without counters closes the gate with retry-guard for good)."""
    import os

    from mtcd.config import load_config
    from mtcd.service import Gateway

    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port, datalink='backend = "none"')
        gateway.store_pin(str(card.iccid))
        os.environ["SYSTEMD_CREDENTIAL_SECRET"] = gateway.env["SYSTEMD_CREDENTIAL_SECRET"]
        with Gateway(load_config(gateway.config)) as gw:
            _urc_lands_after_the_marker(monkeypatch, modem, lambda: gw)
            report = gw.pair_once()
        assert report.state == "paired"
        assert len(pin_presentations(modem.commands)) == 1 and card.pin_attempts == 3
        entry = gateway.keystore().get(card.iccid)
        assert entry.attempt is None and entry.unsettled == ()


def test_a_urc_after_the_marker_refuses_a_pin_try_and_leaves_no_marker(gateway, monkeypatch):
    import os

    import pytest

    from mtcd.config import load_config
    from mtcd.recovery import TryRefused, TryRequest, try_pin
    from mtcd.service import Gateway, policy_settings

    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        os.environ["SYSTEMD_CREDENTIAL_SECRET"] = gateway.env["SYSTEMD_CREDENTIAL_SECRET"]
        config = load_config(gateway.config)
        with Gateway(config) as gw:
            gw.start()
            _urc_lands_after_the_marker(monkeypatch, modem, lambda: gw)
            with pytest.raises(TryRefused, match="run `mtcctl pin try` again"):
                try_pin(gw.uicc, gw.keystore, gw.journal, policy_settings(config), gw.imei,
                        TryRequest(below_guard=True, confirmed=True))
        assert pin_presentations(modem.commands) == [] and card.pin_attempts == 3
        assert gateway.keystore().get(card.iccid).attempt is None
        # Nothing false left behind: the next try presents it.
        monkeypatch.undo()
        ok = _try(gateway, "--below-guard", "--yes")
        assert ok.returncode == 0, ok.stderr
        assert card.verified


def test_a_urc_after_the_marker_leaves_a_rotation_undone_and_nothing_marked(gateway, monkeypatch):
    """The same crossing on a PIN change: nothing was sent, so neither the
    attempt marker nor the staged new PIN may stay behind (on a modem
    without counters the marker alone closes the gate for good)."""
    import os

    import pytest

    from mtcd.config import load_config
    from mtcd.lifecycle import LifecycleRefused
    from mtcd.service import Gateway
    from simfixtures import TEST_PIN

    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port, datalink='backend = "none"')
        gateway.store_pin(str(card.iccid))
        os.environ["SYSTEMD_CREDENTIAL_SECRET"] = gateway.env["SYSTEMD_CREDENTIAL_SECRET"]
        with Gateway(load_config(gateway.config)) as gw:
            assert gw.pair_once().state == "paired"
            _urc_lands_after_the_marker(monkeypatch, modem, lambda: gw)
            with pytest.raises(LifecycleRefused, match="run the command again"):
                gw.lifecycle().rotate("requested")
        assert not [c for c in modem.commands if c.upper().startswith("AT+CPWD")]
        entry = gateway.keystore().get(card.iccid)
        assert entry.attempt is None and entry.pending_pin is None and card.pin == TEST_PIN
        monkeypatch.undo()
        modem.power_loss()
        assert gateway.mtcd("once").returncode == 0  # not retry-guard: nothing false was left


# -- bad files on disk through the recovery commands ---------------------------

def _damage_store(gateway, how: str) -> None:
    store = gateway.state_dir / "keystore.json"
    raw = store.read_bytes()
    if how == "truncated":
        store.write_bytes(raw[: len(raw) // 2])
    elif how == "entry-flipped":
        doc = json.loads(raw)
        item = next(iter(doc["entries"].values()))
        sealed = bytearray(__import__("base64").b64decode(item["sealed"]))
        sealed[-1] ^= 1  # the sealed record (with its attempt marker) altered
        item["sealed"] = __import__("base64").b64encode(bytes(sealed)).decode()
        store.write_text(json.dumps(doc))
    else:
        (gateway.state_dir / "keystore.witness").write_text("{")


def test_a_damaged_keystore_through_the_recovery_commands(gateway):
    """Each new command meets a damaged keystore with one line naming the
    file, exit 65, no traceback, nothing presented and the radio off."""
    import pytest  # noqa: F401

    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        for how in ("truncated", "entry-flipped", "witness"):
            gateway.store_pin(str(card.iccid))  # a sound store again (a new generation)
            _damage_store(gateway, how)
            before = gateway.every_state_file()
            for argv in (("mtcctl", "pin", "try", "--below-guard", "--last-attempt", "--yes"),
                         ("mtcctl", "repair"), ("mtcd", "once", "--dry-run")):
                for json_flag in ((), ("--json",)):
                    run = getattr(gateway, argv[0])(*argv[1:], *json_flag)
                    shown = f"{how} {argv} {json_flag}: {run.returncode} {run.stdout!r} {run.stderr!r}"
                    assert run.returncode == 65, shown
                    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, shown
                    assert "keystore" in run.stderr, shown
                    if json_flag:
                        assert json.loads(run.stdout)["error"] == "keystore-damaged", shown
            assert gateway.every_state_file() == before, how  # nothing half-written over it
            assert pin_presentations(modem.commands) == [] and modem.radio != 1
            (gateway.state_dir / "keystore.json").unlink(missing_ok=True)
            (gateway.state_dir / "keystore.witness").unlink(missing_ok=True)


# -- kill -9 in the middle of a pin try ------------------------------------------

def _killed_mid_try(gateway, modem, card_rejects: bool):
    """`mtcctl pin try` killed (SIGKILL) after AT+CPIN= went out and before
    the card's answer was recorded (the answer is held back)."""
    import subprocess
    import sys
    import time

    modem.fail_after("AT+CPIN=", "drop")
    proc = subprocess.Popen([sys.executable, "-m", "mtcd.cli.ctl", "--config", str(gateway.config),
                             "pin", "try", "--below-guard", "--yes"], env=gateway.env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not pin_presentations(modem.commands) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert pin_presentations(modem.commands), "the PIN never went out"
    proc.kill()
    out, err = proc.communicate(timeout=10)
    for text in (out, err):
        assert b"27182818" not in text and WRONG_PIN.encode() not in text


def test_kill_9_mid_try_on_a_counterless_modem_presents_nothing_more(gateway):
    """The card refused the PIN, the process died before hearing it: the
    marker written before AT+CPIN= stays, and neither the automatic pass
    nor another `pin try` presents that PIN again; both name `pin set`."""
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port, modem="pin_timeout = 20")
        iccid = str(card.iccid)
        gateway.store_pin(iccid, WRONG_PIN)
        _killed_mid_try(gateway, modem, card_rejects=True)
        assert card.pin_attempts == 2
        assert gateway.keystore().get(card.iccid).attempt == "current"
        once = gateway.mtcd("once", "--json")
        assert once.returncode == 1 and once.last_json["reason"] == "retry-guard", once.stdout
        assert f"`mtcctl pin set {iccid}`" in once.last_json["message"]
        again = _try(gateway, "--below-guard", "--last-attempt", "--yes")
        assert again.returncode == 1 and f"`mtcctl pin set {iccid}`" in again.stderr, again.stderr
        assert len(pin_presentations(modem.commands)) == 1 and card.pin_attempts == 2
        assert modem.radio != 1 and not modem.pdp_active


def test_kill_9_mid_try_with_a_counter_is_settled_by_the_next_pass(gateway):
    """With a counter, the next automatic pass settles the lost attempt:
    latched as rejected (the counter fell), never presented again."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, modem="pin_timeout = 20")
        iccid = str(card.iccid)
        gateway.store_pin(iccid, WRONG_PIN)
        _killed_mid_try(gateway, modem, card_rejects=True)
        once = gateway.mtcd("once", "--json")
        assert once.returncode == 1 and once.last_json["reason"] == "pin-rejected", once.stdout
        entry = gateway.keystore().get(card.iccid)
        assert entry.rejected and not entry.attempt_started
        assert len(pin_presentations(modem.commands)) == 1 and card.pin_attempts == 2
        assert any(e["event"] == "pin-attempt-rejected" and e.get("settled") == "by counter"
                   for e in gateway.history())


# -- mtcd once --dry-run on every SIM state: nothing presented, nothing written --

def _dry_states():
    return ["empty-slot", "puk-blocked", "pin-disabled", "lost-attempt-counter-fell",
            "unsettled-no-counter", "unknown-sim", "current-rejected-pending-left"]


def _prepare(state, gateway, card, modem):
    from mtcd.secret import Pin

    iccid = str(card.iccid) if card is not None else None
    if state in ("empty-slot", "unknown-sim", "pin-disabled"):
        if state == "pin-disabled":
            gateway.store_pin(iccid)
        return
    gateway.store_pin(iccid, WRONG_PIN if state != "puk-blocked" else "27182818")
    store = gateway.keystore()
    if state == "lost-attempt-counter-fell":
        store.begin_attempt(card.iccid, attempts_before=3, which="current")
        assert card.verify(WRONG_PIN) != 0x9000
    elif state == "unsettled-no-counter":
        store.begin_attempt(card.iccid, attempts_before=None, which="current")
    elif state == "current-rejected-pending-left":
        store.stage_pending(card.iccid, Pin("27182818"), "staged")
        store.record_rejected(card.iccid, "current")


def test_dry_run_on_every_sim_state_presents_and_writes_nothing(gateway):
    import pytest  # noqa: F401

    from test_recovery_cli import _forbidden

    expected = {
        "empty-slot": ("would-refuse", "no-sim"),
        "puk-blocked": ("would-refuse", "sim-blocked"),
        "pin-disabled": ("would-refuse", "pin-disabled"),
        "lost-attempt-counter-fell": ("would-latch", None),
        "unsettled-no-counter": ("would-refuse", "retry-guard"),
        "unknown-sim": ("would-refuse", "unknown-sim"),
        "current-rejected-pending-left": ("would-present", None),
    }
    for state in _dry_states():
        card = None if state == "empty-slot" else make_card(
            pin_attempts=0 if state == "puk-blocked" else 3, pin_enabled=state != "pin-disabled")
        options = NO_COUNTERS if state == "unsettled-no-counter" else {}
        gateway.root.joinpath("state").exists() and __import__("shutil").rmtree(gateway.state_dir)
        with sim_modem(card, **options) as (modem, port):
            gateway.configure(port)
            _prepare(state, gateway, card, modem)
            before = gateway.every_state_file()
            sent = len(modem.commands)
            for flags in ((), ("--json",)):
                run = gateway.mtcd("once", "--dry-run", *flags)
                assert "Traceback" not in run.stderr, (state, run.stderr)
                if flags:
                    got = (run.last_json["state"], run.last_json.get("reason"))
                    assert got == expected[state], (state, run.stdout)
                    assert run.returncode == (0 if got[0] == "would-present" else 1), (state, run.stdout)
                else:
                    assert run.stdout.strip() and "None" not in run.stdout, (state, run.stdout)
            commands = modem.commands[sent:]
            assert _forbidden(commands) == [] and pin_presentations(commands) == [], (state, commands)
            assert puk_commands(commands) == [] and modem.radio != 1 and not modem.pdp_active, state
            assert gateway.every_state_file() == before, state
            if card is not None:
                assert card.pin_attempts == (0 if state == "puk-blocked" else
                                             2 if state == "lost-attempt-counter-fell" else 3), state


# -- no PIN anywhere: outputs, service log, unsealed files, argv, environment ----

def test_no_pin_leaks_through_the_recovery_paths(gateway, notify_socket):
    from test_service import service
    from simfixtures import wait_until

    right, wrong = "27182818", "90817263"
    card = make_card(pin=right)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        iccid = str(card.iccid)
        outputs = []

        def run(tool, *argv, stdin=None):
            done = getattr(gateway, tool)(*argv, **({"stdin": stdin} if stdin is not None else {}))
            outputs.append(done.stdout + done.stderr)
            return done

        run("mtcctl", "pin", "set", iccid, "--yes", stdin=wrong + "\n")
        run("mtcctl", "pin", "stage", iccid, stdin=right + "\n")
        run("mtcd", "once", "--dry-run", "--json")
        run("mtcctl", "pin", "try", "--json")  # the current one: rejected, 2 left
        with service(gateway, notify_socket) as proc:
            notify_socket.wait_for("READY", "1")
            environ = open(f"/proc/{proc.pid}/environ", "rb").read()
            cmdline = open(f"/proc/{proc.pid}/cmdline", "rb").read()
            wait_until(lambda: modem.pdp_active, 20, f"paired with the pending PIN: {outputs}")
            run("mtcctl", "pin", "try", "--below-guard", "--yes", "--json")  # unlocked already
            # Every AT exchange traced from now on, and a presentation to trace.
            assert run("mtcctl", "log-level", "debug").returncode == 0
            presented = len(pin_presentations(modem.commands))
            modem.power_loss()
            wait_until(lambda: len(pin_presentations(modem.commands)) > presented and modem.pdp_active, 30,
                       "paired again after the modem's power loss")
            run("mtcctl", "repair", "--json")
            run("mtcctl", "status", "--json")
            run("mtcctl", "history", "--json")
        outputs.append(proc.stderr_text)
        assert card.verified
        for text in outputs:
            assert right not in text and wrong not in text, text
        for secret in (right, wrong):
            assert secret.encode() not in environ + cmdline
        for path, data in gateway.every_state_file().items():
            if not path.endswith(("keystore.json", "keystore.key", "keystore.witness")):
                assert right.encode() not in data and wrong.encode() not in data, path
        assert "AT+CPIN=" in proc.stderr_text  # the trace was on: the test looked at something


def test_a_marker_the_counter_shows_unspent_does_not_block_the_named_try(gateway):
    """A power cut between the marker and AT+CPIN= (nothing reached the
    card) on a modem with a counter at 1: the gate refuses with retry-guard
    and names `mtcctl pin try --below-guard --last-attempt`.  The counter
    settles that marker (it has not fallen), so the named command must
    present the PIN, not refuse it as unsettled."""
    card = make_card(pin_attempts=1)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        iccid = str(card.iccid)
        gateway.store_pin(iccid)
        gateway.keystore().begin_attempt(card.iccid, attempts_before=1, which="current")
        once = gateway.mtcd("once", "--json")
        assert once.returncode == 1 and once.last_json["reason"] == "retry-guard", once.stdout
        named = "mtcctl pin try --below-guard --last-attempt"
        assert f"`{named}`" in once.last_json["message"]
        run = _try(gateway, *named.split()[3:], "--yes")
        assert run.returncode == 0, run.stderr
        assert card.verified and card.pin_attempts == 3
        assert not gateway.keystore().get(card.iccid).attempt_started


def test_a_pin_stored_by_a_person_mid_presentation_is_never_latched_unseen(gateway, monkeypatch):
    """`mtcctl pin set` lands between the gate's look-up and its attempt
    marker: the marker went onto the person's new PIN while the old one was
    sent; the card refused the old one, the counter fell, and the next pass
    latched the person's PIN as rejected without ever presenting it."""
    import os

    from mtcd.config import load_config
    from mtcd.keystore import Keystore
    from mtcd.secret import Pin
    from mtcd.service import Gateway
    from simfixtures import TEST_PIN

    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port, datalink='backend = "none"')
        gateway.store_pin(str(card.iccid), WRONG_PIN)
        os.environ["SYSTEMD_CREDENTIAL_SECRET"] = gateway.env["SYSTEMD_CREDENTIAL_SECRET"]
        original = Keystore.begin_attempt
        person = {"n": 1}

        def begin_attempt(self, *args, **kwargs):
            if person["n"]:
                person["n"] = 0
                gateway.keystore().set_pin(card.iccid, Pin(TEST_PIN))  # another process
            return original(self, *args, **kwargs)

        monkeypatch.setattr(Keystore, "begin_attempt", begin_attempt)
        with Gateway(load_config(gateway.config)) as gw:
            gw.pair_once()
        monkeypatch.undo()
        modem.power_loss()
        once = gateway.mtcd("once", "--json")
        assert once.returncode == 0, once.stdout
        entry = gateway.keystore().get(card.iccid)
        assert not entry.rejected and entry.pin.reveal() == TEST_PIN and card.verified
        assert card.pin_attempts == 3


def test_an_unconfirmed_try_through_the_service_is_refused_even_if_the_journal_is_not_writable(
        gateway, notify_socket):
    """Through the service, the refusal off a terminal without --yes was
    written to the journal by mtcctl itself; a person who may use the
    socket but not write the state directory got a journal error (exit 74)
    instead of the refusal naming --yes."""
    from test_service import service

    card = make_card(pin_attempts=1)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("STATUS", "refused: retry-guard")
            journal = gateway.state_dir / "journal.jsonl"
            saved = journal.read_bytes()
            journal.unlink()
            journal.mkdir()  # unwritable for mtcctl, as root's 0700 directory is for an admin
            try:
                run = _try(gateway, "--below-guard", "--last-attempt", "--json")
            finally:
                journal.rmdir()
                journal.write_bytes(saved)
            assert run.returncode == 1, run.stdout + run.stderr
            answer = json.loads(run.stdout)
            assert answer["reason"] == "not-confirmed" and "--yes" in answer["message"], answer
            assert pin_presentations(modem.commands) == [] and card.pin_attempts == 1


def test_a_confirmation_typed_at_a_terminal_through_the_service(gateway, notify_socket):
    """The confirmed second request carries the ICCID the person confirmed
    across the control socket; a wrong answer presents nothing."""
    from test_recovery_cli import on_tty
    from test_service import service
    from simfixtures import wait_until

    card = make_card(pin_attempts=1)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        with service(gateway, notify_socket):
            notify_socket.wait_for("STATUS", "refused: retry-guard")
            argv = ["pin", "try", "--below-guard", "--last-attempt"]
            code, out, err = on_tty(gateway, argv, [("to go on", "0000")])
            assert code == 1 and "not confirmed" in err and pin_presentations(modem.commands) == [], err
            code, out, err = on_tty(gateway, argv, [("to go on", str(card.iccid)[-4:])])
            assert code == 0, err
            wait_until(lambda: modem.pdp_active, 15, "paired after the confirmed try")
        assert len(pin_presentations(modem.commands)) == 1 and card.verified


def test_doctor_shows_an_unsettled_candidate(gateway):
    """After a lost answer and a rejection, no attempt is in flight any
    more, but the current PIN's attempt is still unsettled: doctor says so."""
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        iccid = str(card.iccid)
        gateway.store_pin(iccid, WRONG_PIN)
        _stage(gateway, iccid, OTHER_WRONG_PIN)
        store = gateway.keystore()
        store.begin_attempt(card.iccid, attempts_before=None, which="current")
        store.begin_attempt(card.iccid, attempts_before=None, which="pending")
        store.record_rejected(card.iccid, "pending")
        run = gateway.mtcctl("doctor", "--json", timeout=60)
        entry = json.loads(run.stdout)["keystore"]["entry"]
        assert entry["attempt_in_flight"] is True, entry


def test_a_pin_this_gateway_set_has_a_way_out_after_an_interrupted_rotation(gateway):
    """Guarantee 5 with the rule above: the current PIN is one this gateway
    generated (nobody can type it), its second change is cut short before
    reaching the card on a modem without counters, and the card rejects the
    pending PIN.  `pin set` is no way out here; `--unsettled` is, on a
    person's explicit word, and only with both guard flags."""
    card = make_card()
    with sim_modem(card, **NO_COUNTERS) as (modem, port):
        gateway.configure(port)
        iccid = str(card.iccid)
        gateway.store_pin(iccid)
        assert gateway.mtcd("once").returncode == 0
        assert gateway.mtcctl("pin", "rotate", timeout=60).returncode == 0
        generated = card.pin
        modem.power_loss()
        assert gateway.mtcd("once").returncode == 0
        modem.fail_after("AT+CPWD", "before")
        assert gateway.mtcctl("pin", "rotate", timeout=60).returncode == 75
        assert card.pin == generated
        modem.power_loss()
        first = _try(gateway, "--below-guard", "--yes", "--json")
        assert json.loads(first.stdout)["outcome"] == "rejected" and card.pin_attempts == 2, first.stdout
        refused = _try(gateway, "--below-guard", "--last-attempt", "--yes")
        override = "mtcctl pin try --unsettled --below-guard --last-attempt"
        assert refused.returncode == 1 and f"`{override}`" in refused.stderr, refused.stderr
        once = gateway.mtcd("once")
        assert once.returncode == 1 and f"`{override}`" in once.stdout, once.stdout
        # Not with fewer flags, nor without a confirmation off a terminal.
        for flags in (("--unsettled", "--yes"), ("--unsettled", "--below-guard", "--yes"),
                      ("--unsettled", "--below-guard", "--last-attempt")):
            partial = _try(gateway, *flags)
            assert partial.returncode == 1, partial.stderr
        assert card.pin_attempts == 2
        done = _try(gateway, *override.split()[3:], "--yes", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        answer = json.loads(done.stdout)
        assert answer["pin"] == "current" and answer["outcome"] == "accepted"
        entry = gateway.keystore().get(card.iccid)
        assert entry.pin.reveal() == generated and entry.pending_pin is None
        assert not entry.attempt_started and entry.unsettled == () and card.pin_attempts == 3
        assert [e for e in gateway.history() if e["event"] == "pin-try"][-1].get("unsettled") is True
        modem.power_loss()
        assert gateway.mtcd("once").returncode == 0
        assert puk_commands(modem.commands) == []
