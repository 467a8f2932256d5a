"""review3: the card's pairing record is read after link-up and the ICCID
read again after it.  When that read shows another SIM in the slot, the
gate belongs to a card that is gone: it closes (link down, radio off), and
`mtcd once` does not report the new card's session as paired.

Before, the record line said "not read: the SIM changed" and `mtcd once`
exited 0 with the link up and the radio on for a SIM no decision was taken
on (here one without a PIN, which a modem attaches with at once)."""

from __future__ import annotations

from conftest import network_commands, pin_presentations
from simfixtures import make_card, sim_modem
from test_pairing_record import _with_pairing


def _swap_after_link_up(modem, other, announced: bool = True):
    """`announced=False`: a slot without a card-detect switch, the modem
    tells nothing of the swap (no URC)."""
    handle = modem.handle

    def swapping(line: str) -> list[str]:
        reply = handle(line)
        if "+CGACT=1" in line:
            if announced:
                modem.insert_card(other)
            else:
                other.power_cycle()
                modem.card = other
        return reply

    modem.handle = swapping


def test_once_closes_the_gate_when_the_sim_changed_after_link_up(gateway):
    paired = make_card()
    other = _with_pairing(make_card(serial_number=7, pin_enabled=False), ipd_readable=True)
    with sim_modem(paired) as (modem, port):
        _swap_after_link_up(modem, other)
        gateway.configure(port)
        gateway.store_pin(str(paired.iccid))
        run = gateway.mtcd("once", "--json")
        sent, radio, pdp = list(modem.commands), modem.radio, modem.pdp_active
    record = [e for e in gateway.history() if e["event"] == "card-record"][-1]
    assert record["card_record"] == "not read: the SIM changed"
    assert radio in (0, 4), f"the radio is left at CFUN={radio} for a SIM no decision was taken on"
    assert not pdp
    assert run.last_json["link"] == "down" and run.returncode != 0, run.stdout
    assert run.last_json["state"] == "refused" and run.last_json["reason"] == "sim-error"
    assert len(pin_presentations(sent)) == 1  # only the paired card's PIN, once
    assert len([c for c in network_commands(sent) if "+CGACT=1" in c]) == 1


def test_the_record_of_the_same_card_leaves_the_link_up(gateway):
    """The check that cannot pass by accident: the same card, no swap."""
    card = _with_pairing(make_card(), ipd_readable=True)
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        run = gateway.mtcd("once", "--json")
        radio = modem.radio
    assert run.returncode == 0 and run.last_json["link"] == "up" and radio == 1, run.stderr


def test_the_service_pairs_again_at_once_when_the_record_read_finds_another_sim(gateway):
    """`mtcd run` on a modem that announces no swap: the record's ICCID read
    is the first to see the new card, and the gate closes then, not at the
    next periodic check (60 s here)."""
    import signal
    import subprocess
    import sys

    from simfixtures import wait_until

    from simfixtures import TEST_PIN

    paired = make_card()
    # Unlocked before the service starts: no PIN goes out, so no "+CPIN:
    # READY" after it wakes the service's loop for a check by chance.
    assert paired.verify(TEST_PIN) == 0x9000
    other = _with_pairing(make_card(serial_number=7, pin_enabled=False), ipd_readable=True)
    with sim_modem(paired) as (modem, port):
        _swap_after_link_up(modem, other, announced=False)
        gateway.configure(port, service="check_interval = 60")
        gateway.store_pin(str(paired.iccid))
        proc = subprocess.Popen([sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "run"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=gateway.env)
        try:
            journal = gateway.state_dir / "journal.jsonl"
            wait_until(lambda: journal.exists() and b"the SIM changed" in journal.read_bytes(), 30,
                       "the card-record line of the swap")
            # Decided again for the new card: no PIN stored for it, refused.
            wait_until(lambda: [e["outcome"] for e in gateway.history() if e["event"] == "decision"]
                       == ["paired", "refused"], 15, "a second decision, for the new SIM")
            radio = modem.radio
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert radio in (0, 4), err
    assert len([c for c in network_commands(modem.commands) if "+CGACT=1" in c]) == 1
