"""Fix 11: the DUL leaves a socket alone while another thread owns its reading.

While ``owned.OwnedReader`` reads an association's socket itself, pynetdicom's DUL thread
neither polls nor reads it; a PDU that reader does not handle is pushed back
(``Link.pushback``) and read by the DUL as if it had just arrived (``socket_reads``).

Over TLS this also keeps the SSL object to one thread at a time: the DUL's ``ready`` check,
which asks the SSL object for decrypted bytes, runs under the read lock and only while nobody
owns the socket; the owner's reads and every write are made under the send lock.
"""

from __future__ import annotations

from typing import Any

from dcmtool.net.links import link
from dcmtool.net.patches._replace import replace


def apply() -> None:
    from pynetdicom import dul, transport

    original_event: Any = None
    original_ready: Any = None  # a property

    def _is_transport_event(self: Any) -> bool:
        state = link(self.assoc)
        with state.read_lock:
            if state.owned:
                return False
            return bool(original_event(self))

    def ready(self: Any) -> bool:
        return bool(link(self.assoc).pushback) or bool(original_ready.fget(self))

    fix = "owned reading"
    original_event = replace(dul.DULServiceProvider, "_is_transport_event", _is_transport_event,
                             fix=fix, params=("self",))
    original_ready = replace(transport.AssociationSocket, "ready", property(ready), fix=fix,
                             params=("self",))
