"""When the modem will not switch its radio off, the real `mtcd once` (and
an `mtcctl` command that opens the modem itself) says so in those words,
with the modem's answers, as its one error line at error priority."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from conftest import network_commands, pin_presentations
from simfixtures import make_card, sim_modem

RADIO = re.compile(r"the radio could not be switched off \(the modem: "
                   r"AT\+CFUN=4 answered ERROR; AT\+CFUN=0 answered ERROR\)")


def test_once_says_the_radio_could_not_be_switched_off(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CFUN=", mode="error", times=100)
        run = gateway.mtcd("once", "--json")
        sent = list(modem.commands)
    assert run.returncode == 69, run.stderr
    # --json: the same line as the error object, for an agent.
    assert run.last_json["error"] == "modem-unavailable" and RADIO.fullmatch(run.last_json["message"])
    assert len(run.stderr.splitlines()) == 1, run.stderr
    assert RADIO.fullmatch(run.stderr.removeprefix("mtcd: ").strip()), run.stderr
    # Nothing more is done with a modem whose radio may be on.
    assert pin_presentations(sent) == [] and network_commands(sent) == []


def test_the_line_has_error_priority_in_the_journal(gateway, tmp_path):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        modem.fail_after("AT+CFUN=", mode="error", times=100)
        with open(tmp_path / "stderr", "w+") as err:
            st = os.fstat(err.fileno())
            env = {**gateway.env, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
            done = subprocess.run([sys.executable, "-m", "mtcd.cli.daemon", "--config", str(gateway.config), "once"],
                                  stdout=subprocess.DEVNULL, stderr=err, env=env, timeout=60)
    assert done.returncode == 69
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("<3>"), lines
    assert RADIO.fullmatch(lines[0].removeprefix("<3>")), lines


def test_cfun0_alone_failing_is_fine(gateway):
    """CFUN=4 accepted: the fallback is never needed and nothing is said."""
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CFUN=0", mode="error", times=100)
        run = gateway.mtcd("once")
    assert run.returncode == 0, run.stderr
    assert "radio" not in run.stderr


def test_mtcctl_opening_the_modem_itself_says_the_same(gateway):
    card = make_card()
    with sim_modem(card) as (modem, port):
        gateway.configure(port)
        gateway.store_pin(str(card.iccid))
        modem.fail_after("AT+CFUN=", mode="error", times=100)
        run = gateway.mtcctl("pin", "rotate")
    assert run.returncode == 69, run.stderr
    assert len(run.stderr.splitlines()) == 1
    assert RADIO.fullmatch(run.stderr.removeprefix("mtcctl: ").strip()), run.stderr
