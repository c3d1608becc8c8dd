"""Fix: a server does not stop every thread for a full garbage collection every 60 polls.

pynetdicom's ``AssociationServer.service_actions`` (run by ``serve_forever`` after each poll
and each accepted connection) calls ``gc.collect()`` on every 60th call, to free finished
associations' reference cycles. With the 50 ms poll of fix "server poll" that is a full
collection every 3 s or less, holding the GIL the whole time: while four associations were
storing, it was a fifth of the time any thread held the GIL. Python's own collector already
frees those cycles; the fix does nothing in its place.
"""

from __future__ import annotations

from dcmtool.net.patches._replace import replace


def apply() -> None:
    from pynetdicom.transport import AssociationServer

    def service_actions(self: object) -> None:
        return None

    replace(AssociationServer, "service_actions", service_actions, fix="server gc",
            params=("self",))
