"""`make demo`: the pairing gate on a simulated modem, as a person would
drive it.  Starts `mtcd-sim`, provisions a PIN with `mtcctl`, pairs a SIM
with `mtcd once`, then shows a foreign SIM and a wrong PIN refused with the
radio off.  Everything runs as separate processes through a real pty.

Writes only under ./demo-state (recreated each time).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from .at import commands, parsers
from .identity import luhn_check_digit
from .transport import SerialTransport

ROOT = Path("demo-state").resolve()
BIN = Path(sys.executable).parent


def _iccid(n: int) -> str:
    body = f"8949020000{n:08d}"
    return body + str(luhn_check_digit(body))


def _tool(name: str) -> list[str]:
    exe = BIN / name
    if exe.exists():
        return [str(exe)]
    module = {"mtcd": "mtcd.cli.daemon", "mtcctl": "mtcd.cli.ctl", "mtcd-sim": "mtcd.sim.cli"}[name]
    return [sys.executable, "-m", module]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


# The demo's own "host" secret for systemd-creds, so it never creates or
# uses this machine's /var/lib/systemd/credential.secret.
ENV = {**os.environ, "SYSTEMD_CREDENTIAL_SECRET": str(ROOT / "host-credential.secret")}


def show(argv: list[str], stdin: str | None = None, hidden_input: bool = False) -> subprocess.CompletedProcess:
    shown = " ".join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))
    if stdin is not None:
        shown = f"echo {'********' if hidden_input else stdin.strip()} | {shown}"
    print(f"$ {shown}", flush=True)
    done = subprocess.run(argv, input=stdin or "", capture_output=True, text=True, env=ENV)
    for line in (done.stdout + done.stderr).strip().splitlines():
        print(f"  {line}")
    print(f"  (exit {done.returncode})")
    return done


class Simulator:
    def __init__(self, card_state: Path):
        self.card_state = card_state
        self.proc = None
        self.link = ROOT / "ttyMODEM"

    def __enter__(self):
        self.proc = subprocess.Popen(
            [*_tool("mtcd-sim"), "serve", "--state", str(self.card_state), "--link", str(self.link)],
            stdout=subprocess.PIPE, text=True,
        )
        port = self.proc.stdout.readline().strip()
        print(f"  simulated modem on {port} (linked as {self.link.name}), card {self.card_state.stem}")
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)


def radio_state(port: Path) -> str:
    with SerialTransport(str(port), timeout=5) as t:
        level = parsers.parse_cfun(t.execute(commands.functionality_query()).lines)
    return {0: "minimum (0)", 1: "ON (1)", 4: "OFF (4)"}.get(level, str(level))


def make_card(name: str, iccid: str, pin: str, *options: str) -> Path:
    path = ROOT / f"{name}.json"
    subprocess.run(
        [*_tool("mtcd-sim"), "card", "--state", str(path), "--iccid", iccid, "--imsi", "262019876543210", *options],
        input=f"{pin}\n", text=True, check=True, capture_output=True, env=ENV,
    )
    return path


_INS = {"A4": "SELECT", "C0": "GET RESPONSE", "B0": "READ BINARY", "B2": "READ RECORD", "20": "VERIFY",
        "2C": "UNBLOCK PIN", "24": "CHANGE PIN", "28": "ENABLE PIN"}


def over_pcsc(config: Path, card_pin: str) -> None:
    """The card in a PC/SC reader: a private pcscd with vpcd's virtual
    reader and the virtual USIM (mtcd.sim.pcscstack), when this machine has
    them; the modem still gives the IMEI and carries the link."""
    from .sim.card import SimCard
    from .sim.pcscstack import PcscStack, missing

    why = missing()
    if why:
        print(f"  not shown here: {why}")
        return
    reader_iccid = _iccid(4)
    card = SimCard.load(make_card("reader-sim", reader_iccid, card_pin))
    pcsc_config = ROOT / "mtcd-pcsc.toml"
    pcsc_config.write_text(config.read_text() + '[uicc]\nbackend = "pcsc"\n')
    mtcd = [*_tool("mtcd"), "--config", str(pcsc_config)]
    mtcctl = [*_tool("mtcctl"), "--config", str(pcsc_config)]
    show([*mtcctl, "pin", "set", reader_iccid], stdin=card_pin + "\n", hidden_input=True)
    # The card keeps its own pairing record (EF-IPS), read back in APDUs after the pairing.
    from .identity import Imei
    from .pairing_record import Verdict, encode_ipd_record, encode_ips_record
    from .sim.modem import DEFAULT_IMEI

    record = {"service": True, "ips": [encode_ips_record(Verdict.OK, 1).hex()],
              "ipd": [encode_ipd_record(Imei(DEFAULT_IMEI)).hex()], "unreadable": ["6FF2"]}
    with PcscStack(ROOT / "pcsc", card, files={"pairing": record}) as stack, \
            Simulator(make_card("modem-sim", _iccid(5), "0000", "--pin-disabled")):
        ENV["PCSCLITE_CSOCK_NAME"] = str(stack.socket)
        print(f"  pcscd (own /run/pcscd, own network namespace) with a virtual USIM in {stack.reader_name()}")
        show([*mtcd, "once", "--json"])
        entries = stack.entries()
        seen = [f"{_INS.get(e['ins'], e['ins'])}{' (with data, not logged)' if e['ins'] in ('20', '2C', '24', '28') and e['lc'] else ''}"
                for e in entries if "ins" in e and e["ins"] != "C0"]
        print("  what the card was sent: " + ", ".join(seen))
        show([*mtcctl, "sim", "pairing-status"])
        kinds = sorted({_INS.get(e["ins"], e["ins"]) for e in stack.entries()[len(entries):] if "ins" in e})
        print("  the card's own record, read in APDUs with " + ", ".join(kinds) + " only")
        log = stack.log.read_text() + stack.pcscd_log.read_text()
        print(f"  the PIN in the card's or pcscd's logs: {'YES' if card_pin in log else 'no'}")


def main() -> int:
    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(mode=0o700)
    config = ROOT / "mtcd.toml"
    config.write_text(
        f'state_dir = "{ROOT / "state"}"\n[modem]\nport = "{ROOT / "ttyMODEM"}"\n'
        '[datalink]\nbackend = "at"\napn = "iot.example"\n'
    )
    mtcd = [*_tool("mtcd"), "--config", str(config)]
    mtcctl = [*_tool("mtcctl"), "--config", str(config)]
    ours, foreign, third = _iccid(1), _iccid(2), _iccid(3)
    card_pin = "48151623"  # the simulated card's own PIN

    say("1. Our SIM: the gateway stores its PIN (sealed), then pairs")
    ours_card = make_card("our-sim", ours, card_pin)
    show([*mtcctl, "pin", "set", ours], stdin=card_pin + "\n", hidden_input=True)
    with Simulator(ours_card) as sim:
        show([*mtcd, "once", "--json"])
        print(f"  radio: {radio_state(sim.link)}")
    print("  The keystore holds no PIN in clear:")
    for p in sorted((ROOT / "state").iterdir()):  # noqa: B007
        print(f"    {p.name:<16} {p.stat().st_mode & 0o777:04o}  {'contains the PIN!' if card_pin.encode() in p.read_bytes() else 'no PIN in clear'}")

    say("2. A foreign SIM in the gateway: refused, radio off, no PIN sent")
    with Simulator(make_card("foreign-sim", foreign, "1234")) as sim:
        show([*mtcd, "once", "--json"])
        print(f"  radio: {radio_state(sim.link)}")

    say("3. A SIM whose stored PIN is wrong: one attempt spent, then never again")
    third_card = make_card("third-sim", third, "55667788")
    show([*mtcctl, "pin", "set", third], stdin="11112222\n", hidden_input=True)
    with Simulator(third_card) as sim:
        show([*mtcd, "once", "--json"])
        show([*mtcd, "once", "--json"])
        print(f"  radio: {radio_state(sim.link)}")
    card = json.loads(third_card.read_text())
    left = card.get("pin_attempts")
    print(f"  PIN attempts left on that card: {left} of 3 (the gateway will not spend another)")

    say("4. The SIM in a PC/SC reader ([uicc] backend = \"pcsc\"): asked in APDUs, same rules")
    over_pcsc(config, card_pin)

    say("5. What the gateway remembers")
    show([*mtcctl, "pin", "list"])
    show([*mtcctl, "status"])
    show([*mtcctl, "history"])
    print(f"\nDemo files are in {ROOT}.  Configuration reference: config/mtcd.toml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
