"""R5 (review of issue 7, guarantee 5): a failed adoption forgets the entry
it created when no pending PIN is left — but the pending PIN is also gone
once the change succeeded and was promoted.  If anything after the
promotion fails (the `pin-rotated` journal line on a full disk: StateError),
`Lifecycle.adopt`'s clean-up forgets the entry although the card now holds
the new PIN, which nobody else has."""

from __future__ import annotations

from simfixtures import make_card, sim_modem

from mtcd.config import load_config
from mtcd.errors import StateError
from mtcd.journal import PairingJournal
from mtcd.service import Gateway

TRANSPORT_PIN = "1234"


def test_R5_a_journal_failure_after_the_change_keeps_the_cards_pin(gateway, monkeypatch):
    card = make_card(pin=TRANSPORT_PIN)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        monkeypatch.setenv("SYSTEMD_CREDENTIAL_SECRET", gateway.env["SYSTEMD_CREDENTIAL_SECRET"])
        from mtcd.secret import Pin

        real = PairingJournal.append

        def full_disk_at_rotated(self, event, **fields):
            if event == "pin-rotated":
                raise StateError(f"cannot write {self.path}: No space left on device")
            return real(self, event, **fields)

        monkeypatch.setattr(PairingJournal, "append", full_disk_at_rotated)
        with Gateway(load_config(gateway.config)) as g:
            g.start()
            try:
                g.lifecycle().adopt(Pin(TRANSPORT_PIN), g.pair)
            except StateError as exc:
                print("adopt raised:", exc)
        monkeypatch.undo()
        assert card.pin != TRANSPORT_PIN  # the card took the new PIN
        entry = gateway.keystore().get(card.iccid)
        assert entry is not None and card.pin in {entry.pin.reveal()}, "the only copy of the card's PIN was forgotten"


def test_R5_real_process_file_size_limit(gateway, tmp_path):
    """The same through the real `mtcctl pair`, with the journal unable to
    grow past the `pin-rotation-started` line (RLIMIT_FSIZE standing in for
    a full disk: a write past it fails with EFBIG; Python ignores SIGXFSZ)."""
    import json
    import resource
    import subprocess
    import sys

    from conftest import Gateway

    # Learn the journal's line lengths from the same adoption on another gateway.
    probe = Gateway(tmp_path / "probe")
    (tmp_path / "probe").mkdir()
    card = make_card(pin=TRANSPORT_PIN)
    with sim_modem(card) as (modem, port):
        probe.configure(port)
        assert probe.mtcctl("pair", stdin=TRANSPORT_PIN + "\n").returncode == 0
    lines = (probe.state_dir / "journal.jsonl").read_bytes().splitlines(keepends=True)
    events = [json.loads(x)["event"] for x in lines]
    upto = sum(len(x) for x in lines[: events.index("pin-rotated")])

    card = make_card(pin=TRANSPORT_PIN)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.state_dir.mkdir(mode=0o700)
        pad = (json.dumps({"time": "2026-11-01T00:00:00.000+00:00", "event": "note", "n": "x" * 200}) + "\n").encode()
        (gateway.state_dir / "journal.jsonl").write_bytes(pad * 100)  # the journal is far larger than the store
        os_limit = len(pad) * 100 + upto + 20
        run = subprocess.run(
            [sys.executable, "-m", "mtcd.cli.ctl", "--config", str(gateway.config), "pair"],
            input=TRANSPORT_PIN + "\n", capture_output=True, text=True, env=gateway.env, timeout=60,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (os_limit, os_limit)),
        )
        print("pair:", run.returncode, run.stderr.strip())
        assert card.pin != TRANSPORT_PIN  # the card took the new PIN
        entry = gateway.keystore().get(card.iccid)
        assert entry is not None and entry.pin.reveal() == card.pin, "the only copy of the card's PIN was forgotten"
