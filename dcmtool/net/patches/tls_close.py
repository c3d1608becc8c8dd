"""Fix: a TLS connection is not closed under a thread that is inside an SSL call on it.

pynetdicom's DUL thread closes the connection (after an abort once the ARTIM timer runs out,
after a failed write) while another thread may be reading or writing it: dcmtool's owned
reader and its writers (``net.wire``), which make every SSL call under the association's
send lock. Closing frees the descriptor the SSL object still uses (a new connection may get
its number), and an SSL object must not be used by two threads at once. The close of an SSL
connection now waits for that lock first, briefly: a thread stuck writing to a peer that
reads nothing must not keep the DUL from closing. Plain TCP connections close as before.
"""

from __future__ import annotations

import ssl
from typing import Any

from dcmtool.net.links import link
from dcmtool.net.patches._replace import replace

#: The longest a close waits for another thread's SSL call (seconds).
CLOSE_WAIT = 2.0


def apply() -> None:
    from pynetdicom import transport

    original: Any = None

    def close(self: Any) -> None:
        if not isinstance(self.socket, ssl.SSLSocket):
            original(self)
            return
        lock = link(self.assoc).send_lock
        acquired = lock.acquire(timeout=CLOSE_WAIT)
        try:
            original(self)
        finally:
            if acquired:
                lock.release()

    original = replace(transport.AssociationSocket, "close", close, fix="TLS close",
                       params=("self",))
