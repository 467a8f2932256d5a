"""sd_notify(3) with the standard library only.

A Type=notify unit that never hears READY=1 is killed at its start timeout
and restarted, again and again: the notification must not depend on
python3-systemd being importable.  The protocol is one datagram of
KEY=VALUE lines to the AF_UNIX socket named by $NOTIFY_SOCKET; a name
starting with '@' is in the abstract namespace (a NUL byte in its place).
"""

from __future__ import annotations

import errno
import os
import socket

# A notify socket nobody drains (a hung manager, a test's receiver) fills
# up, and a blocking send would then stop the gate's loop for good: wait
# this long, then fail like any other send (the caller carries on).
SEND_TIMEOUT = 2.0


def notify_address(value: str) -> str | bytes:
    """The socket address of a NOTIFY_SOCKET value; OSError when it is not
    one we can reach (vsock: and relative paths are not for us)."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    raise OSError(errno.EAFNOSUPPORT, f"unsupported NOTIFY_SOCKET {value!r}")


def sd_notify(text: str, environ=os.environ) -> bool:
    """Send `text` (KEY=VALUE lines); False when there is no NOTIFY_SOCKET.
    Raises OSError when the socket is there but the send fails."""
    value = environ.get("NOTIFY_SOCKET")
    if not value:
        return False
    address = notify_address(value)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(SEND_TIMEOUT)
        # sendto is retried by Python itself after a signal (PEP 475).
        sock.sendto(text.encode(), address)
    return True
