"""Fix: an accepted connection frees its slot as soon as it cannot become an association.

pynetdicom's acceptor thread waits for the A-ASSOCIATE-RQ for the whole ACSE timeout, even
when the peer has closed the connection or sent something else (about 100 port probes in
30 s exhausted serve's 100 slots), and an exception while negotiating (a presentation
context without transfer syntaxes) killed the thread and hung the connection. Now the wait
ends when the state machine leaves the states where a request can still come, and any
failure in the acceptor's thread aborts the association with one log line.
"""

from __future__ import annotations

import contextlib
from typing import Any

from dcmtool.net.patches._replace import replace
from dcmtool.net.patches.state_machine_guard import INVALID_PDU_PARAMETER, abort_broken

#: States from which no A-ASSOCIATE-RQ can come any more (PS3.8 9.2): idle, or awaiting
#: the close after an abort.
_NO_REQUEST_STATES = {"Sta1", "Sta13"}


def apply() -> None:
    from pynetdicom import association, fsm

    originals: dict[str, Any] = {}

    def transition(self: Any, state: str) -> None:
        originals["transition"](self, state)
        assoc = self.dul.assoc
        if state in _NO_REQUEST_STATES and assoc.is_acceptor and \
                assoc.requestor.primitive is None and not getattr(assoc, "_kill", False):
            with contextlib.suppress(Exception):
                self.dul.to_user_queue.put(None)  # the acceptor's wait returns: no request

    def run_reactor(self: Any) -> None:
        try:
            originals["run_reactor"](self)
        except Exception as exc:
            if self.is_acceptor:
                abort_broken(self.dul, INVALID_PDU_PARAMETER,
                             f"the association request cannot be handled: "
                             f"{type(exc).__name__}: {exc}")
            else:
                raise
            with contextlib.suppress(Exception):
                self.kill()

    fix = "acceptor guard"
    originals["transition"] = replace(fsm.StateMachine, "transition", transition, fix=fix,
                                      params=("self", "state"))
    originals["run_reactor"] = replace(association.Association, "run_reactor", run_reactor,
                                       fix=fix, params=("self",))
