"""Fix 1: TCP_NODELAY on every association socket.

Without it, DIMSE messages split over several PDUs wait on Nagle's algorithm and delayed ACKs
(~40 ms each on Linux loopback).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from dcmtool.net.patches._replace import replace


def set_nodelay(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def apply() -> None:
    from pynetdicom import transport

    original: Any = None

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        set_nodelay(self.socket)  # requestor: before connect; acceptor: the accepted socket

    original = replace(transport.AssociationSocket, "__init__", __init__, fix="TCP_NODELAY",
                       params=("self", "assoc", "client_socket", "address"))
