"""`mtcctl datalink release`: give NetworkManager back what mtcd took.

With `[datalink] backend = "networkmanager"` mtcd switches off the
profile's autoconnect and NetworkManager's WWAN switch, and records the
values it found (mtcd.datalink.networkmanager).  This puts them back and
forgets the record; the package's prerm runs it on removal.  Not while
mtcd runs: NetworkManager would then bring the link up behind the gate.
"""

from __future__ import annotations

from ..errors import EXIT_OK, EXIT_REFUSED, MtcdError
from .common import print_json


class ServiceRunning(MtcdError):
    exit_code = EXIT_REFUSED  # error code "refused"


def add_parser(sub) -> None:
    datalink = sub.add_parser("datalink", help="the data link's hold on NetworkManager")
    actions = datalink.add_subparsers(dest="datalink_command", metavar="ACTION", required=True)
    release = actions.add_parser(
        "release", help="restore the autoconnect and WWAN values mtcd switched off in NetworkManager "
                        "(only while mtcd is stopped)")
    release.add_argument("--json", action="store_true", help='print {"ok": true, "released": [...]}')


def release(config, args, running_service) -> int:
    from ..datalink.networkmanager import release as release_networkmanager

    if running_service(config) is not None:
        raise ServiceRunning("mtcd is running: stop it first (systemctl stop mtcd), or NetworkManager could "
                             "bring the link up behind the pairing gate")
    done = release_networkmanager(config.state_dir)
    if args.json:
        print_json({"released": done})
    elif done:
        for line in done:
            print(f"restored: {line}")
    else:
        print("nothing to release: mtcd changed nothing in NetworkManager")
    return EXIT_OK
