"""Fix: malformed input never kills a thread; the peer is told.

pynetdicom's DUL thread dies on an exception in its state machine (an event invalid for the
state, a command set without Command Field, a bad presentation context ID), with a traceback
and the peer told nothing: in a fuzz run here 410 of 3,000 malformed PDUs killed it. The
state machine's step is guarded: on any failure the peer gets an A-ABORT (service provider,
"unexpected PDU" or "invalid PDU parameter"), the connection is closed, one log line says
what happened, and the association's threads end, freeing its slot.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from dcmtool.net.links import link
from dcmtool.net.patches._replace import replace

LOG = logging.getLogger("dcmtool.net")

#: A-ABORT reasons from the service provider (PS3.8 9.3.8).
UNEXPECTED_PDU, INVALID_PDU_PARAMETER = 0x02, 0x06


def abort_broken(dul: Any, reason: int, what: str) -> None:
    """Send an A-ABORT (if the connection is open), close it, stop both threads."""
    from pynetdicom.pdu import A_ABORT_RQ

    assoc = dul.assoc
    peer = assoc.requestor if assoc.is_acceptor else assoc.acceptor
    LOG.warning("%s:%s: %s: aborting the association", peer.address, peer.port, what)
    transport = dul.socket
    sock = getattr(transport, "socket", None)
    if sock is not None:
        abort = A_ABORT_RQ()
        abort.source = 0x02
        abort.reason_diagnostic = reason
        lock = link(assoc).send_lock  # not inside a PDU another thread is writing
        if lock.acquire(timeout=2.0):
            try:
                with contextlib.suppress(Exception):
                    sock.sendall(abort.encode())
            finally:
                lock.release()
        with contextlib.suppress(Exception):
            transport.close()
    assoc.is_aborted = True
    assoc.is_established = False
    with contextlib.suppress(Exception):
        dul.kill_dul()
    assoc._kill = True
    with contextlib.suppress(Exception):
        dul.to_user_queue.put(None)  # an acceptor waiting for its A-ASSOCIATE-RQ stops


def apply() -> None:
    from pynetdicom import fsm

    def do_action(self: Any, event: str) -> None:
        if (event, self.current_state) not in fsm.TRANSITION_TABLE:
            if self.current_state == "Sta1":
                return  # no connection any more: nothing left to answer
            abort_broken(self.dul, UNEXPECTED_PDU,
                         f"event {event} is invalid in state {self.current_state}")
            self.current_state = "Sta1"
            return
        action_name = fsm.TRANSITION_TABLE[(event, self.current_state)]
        action = fsm.ACTIONS[action_name]
        try:
            next_state = action[1](self.dul)
        except Exception as exc:  # a message that does not decode, a bad parameter
            abort_broken(self.dul, INVALID_PDU_PARAMETER,
                         f"{action_name} failed: {type(exc).__name__}: {exc}")
            self.current_state = "Sta1"
            return
        from pynetdicom import evt

        evt.trigger(self.dul.assoc, evt.EVT_FSM_TRANSITION, {
            "action": action_name, "current_state": self.current_state, "fsm_event": event,
            "next_state": next_state})
        self.transition(next_state)

    replace(fsm.StateMachine, "do_action", do_action, fix="state machine guard",
            params=("self", "event"))
