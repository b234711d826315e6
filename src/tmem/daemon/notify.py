"""systemd's readiness protocol: a datagram to ``$NOTIFY_SOCKET`` (``sd_notify``).

With ``Type=notify`` systemd waits for ``READY=1`` before it counts the
service as started; the daemon sends it once its sockets listen and its
state directory was restored, and ``STOPPING=1`` when it stops.  Without
``$NOTIFY_SOCKET`` (not under systemd) nothing is sent.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send ``state`` (``"READY=1"``...) to systemd; whether there was anyone to tell."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), address)
        except OSError:
            return False
    return True
