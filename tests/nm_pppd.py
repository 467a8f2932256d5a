"""Stands in for pppd inside the NetworkManager test stack (tests/nmstack.py).

NetworkManager runs pppd on the modem's port once ModemManager's bearer has
dialled (ATD*99***1# to the simulator) and waits for pppd's plugin to report
the interface and its address over D-Bus.  The test machine has no PPP in
its kernel (no ppp_generic, no /dev/ppp), and the simulator does not speak
PPP, so this program does only the plugin's part: a tun interface named
ppp0 in NetworkManager's private network namespace, and the plugin's three
calls (SetState running, SetIfindex, SetIp4Config).  SIGTERM (NetworkManager
deactivating) removes the interface.  Everything before (NetworkManager,
ModemManager, the simulator's AT dialogue) is real.
"""

import os
import signal
import socket
import struct
import subprocess
import sys

from jeepney import DBusAddress, new_method_call
from jeepney.io.blocking import open_dbus_connection

PPP_STATUS_RUNNING = 9  # NMPPPStatus
INTERFACE = "ppp0"


def _ipv4(text: str) -> int:
    return struct.unpack("=I", socket.inet_aton(text))[0]


def main(argv: list[str]) -> int:
    ipparam = argv[argv.index("ipparam") + 1]
    log = open(os.environ.get("NM_PPPD_LOG", os.devnull), "a")
    print("pppd", " ".join(argv), file=log, flush=True)
    subprocess.run(["ip", "tuntap", "add", INTERFACE, "mode", "tun"], check=True)
    subprocess.run(["ip", "link", "set", INTERFACE, "up"], check=True)

    def stop(*_):
        subprocess.run(["ip", "link", "del", INTERFACE], check=False)
        print("pppd stopped", file=log, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    conn = open_dbus_connection(bus="SYSTEM")
    address = DBusAddress(ipparam, bus_name="org.freedesktop.NetworkManager",
                          interface="org.freedesktop.NetworkManager.PPP")
    for method, signature, body in (
            ("SetState", "u", (PPP_STATUS_RUNNING,)),
            ("SetIfindex", "i", (socket.if_nametoindex(INTERFACE),)),
            ("SetIp4Config", "a{sv}", ({"address": ("u", _ipv4("10.64.0.2")), "prefix": ("u", 32),
                                        "gateway": ("u", _ipv4("10.64.0.1"))},))):
        reply = conn.send_and_get_reply(new_method_call(address, method, signature, body), timeout=10)
        print(method, reply.header.message_type.name, file=log, flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
