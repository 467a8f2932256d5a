"""How often each way of reading a gsm profile's APN password from the real
NetworkManager (tests/nmstack.py) comes back empty while the password is
there: `nmcli -s -g gsm.password` against Settings.Connection.GetSecrets on
the bus (NMStack.secret), with the keyfile on disk checked at every read.

Two phases: the profile left alone (no mtcd at all), then autoconnect
switched back and forth by mtcd's own client (NetworkManagerClient,
keyfile re-read and Update2 to disk without secrets), every way read after
each switch.  Needs root, Debian's modemmanager and network-manager.
Prints a table; asserts nothing.

    .venv/bin/python bench/nm_secret_reads.py [--reads N] [--switches N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mmstack  # noqa: E402
import nmstack  # noqa: E402
from simfixtures import make_card, sim_modem  # noqa: E402

from mtcd.datalink.networkmanager import NetworkManagerBus, NetworkManagerClient  # noqa: E402

PASSWORD = "operator-pw"  # the profile's APN password, a test value


def reads(nm, keyfile: Path, count: int, switch=None) -> tuple[int, int, int]:
    """(nmcli empty, GetSecrets empty, keyfile without it) over `count` rounds."""
    nmcli_empty = bus_empty = disk_lost = 0
    for i in range(count):
        if switch is not None:
            switch(i)
        disk_lost += f"password={PASSWORD}" not in keyfile.read_text()
        bus_empty += nm.secret("lte", "gsm", "password") != PASSWORD
        shown = nm.nmcli("-s", "-g", "gsm.password", "connection", "show", "lte").stdout.strip()
        nmcli_empty += shown != PASSWORD
    return nmcli_empty, bus_empty, disk_lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1000, help="rounds with the profile left alone")
    parser.add_argument("--switches", type=int, default=300, help="rounds with an autoconnect switch each")
    args = parser.parse_args()
    why = nmstack.missing()
    if why is not None:
        raise SystemExit(f"nm_secret_reads: {why}")
    with tempfile.TemporaryDirectory() as tmp, sim_modem(make_card()) as (_, port):
        root = Path(tmp)
        with mmstack.modemmanager_stack(root / "mm", [port]) as mm:
            mm.wait_for_modem()
            with nmstack.networkmanager_stack(root / "nm", mm) as nm:
                nm.wait_for_device()
                nm.add_gsm("lte", "connection.autoconnect", "no")
                if nm.nmcli("connection", "modify", "lte", "gsm.password", PASSWORD).returncode != 0:
                    raise SystemExit("nm_secret_reads: nmcli could not set the password")
                keyfile = nm.profiles / "lte.nmconnection"
                client = NetworkManagerClient(NetworkManagerBus(mm.bus_address))

                def switch(i: int) -> None:
                    own, settings = client.profile("lte")
                    client.set_autoconnect(own, settings, i % 2 == 1)

                try:
                    alone = reads(nm, keyfile, args.reads)
                    switched = reads(nm, keyfile, args.switches, switch)
                finally:
                    client.bus.close()
    print(f"load average {os.getloadavg()[0]:.1f}")
    print("| phase | rounds | `nmcli -s` empty | GetSecrets empty | keyfile without it |")
    print("|---|---|---|---|---|")
    print(f"| profile left alone | {args.reads} | {alone[0]} | {alone[1]} | {alone[2]} |")
    print(f"| autoconnect switched each round | {args.switches} | {switched[0]} | {switched[1]} | {switched[2]} |")


if __name__ == "__main__":
    main()
