"""Fix 8: socket reads, bounded; and the bytes an owned reader hands back (fix 11).

pynetdicom reads a PDU 4 KiB per ``recv()`` into a growing bytearray (128 calls and copies
for a 512 KB CT image); here ``recv_into`` one buffer that grows as the bytes arrive (the PDU
length is the peer's claim: never allocated up front).

pynetdicom's reads also wait forever: half an A-ASSOCIATE-RQ, or a P-DATA declaring 2 GiB
sent one byte every few seconds, held a connection and its slot for as long as the peer kept
the socket open. Every PDU must now arrive whole within the ACSE timeout before the
association is established and the network timeout after it, and no PDU may be longer than
``MAX_PDU_BYTES`` (or our maximum PDU length, when that is larger): otherwise the read stops
short, which pynetdicom takes as a closed connection.
"""

from __future__ import annotations

import logging
import select
import time
from typing import Any

from dcmtool.net.links import link
from dcmtool.net.patches._replace import replace

#: Receive buffer allocated before any byte of a PDU has arrived.
RECV_CHUNK = 1 << 20
#: The longest PDU read when our maximum PDU length is smaller (an A-ASSOCIATE-RQ with many
#: contexts is the largest non-data PDU; P-DATA is bounded by the maximum we announce).
MAX_PDU_BYTES = 4 << 20

LOG = logging.getLogger("dcmtool.net")

_RELEASING = {"Sta7", "Sta8", "Sta9", "Sta10", "Sta11", "Sta12"}


def _limits(transport: Any) -> tuple[float | None, int]:
    """(seconds a whole PDU may take, its largest length) on this association now."""
    assoc = transport.assoc
    timeout = assoc.network_timeout if assoc.is_established else assoc.acse_timeout
    ours = assoc.acceptor if assoc.is_acceptor else assoc.requestor
    announced = int(ours.maximum_length or 0)  # what we said we receive; 0: no limit
    return timeout, max(MAX_PDU_BYTES, announced) if announced else 1 << 32


def apply() -> None:
    from pynetdicom import transport

    def recv(self: Any, nr_bytes: int) -> bytearray:
        state = link(self.assoc)
        if state.pushback:  # bytes an owned reader took but left to pynetdicom
            head, state.pushback = state.pushback[:nr_bytes], state.pushback[nr_bytes:]
            return bytearray(head)
        timeout, longest = _limits(self)
        if nr_bytes > longest:
            LOG.warning("%s announced a PDU of %d bytes (the limit is %d): closing",
                        _peer(self), nr_bytes, longest)
            return bytearray()
        deadline = None if not timeout else time.monotonic() + timeout
        poller = select.poll()
        poller.register(self.socket, select.POLLIN)
        buffer = bytearray(min(nr_bytes, RECV_CHUNK))
        received = 0
        while received < nr_bytes:
            if received == len(buffer):
                buffer.extend(bytes(min(nr_bytes - received, len(buffer))))
            if deadline is not None and not _readable(self.socket, poller, deadline):
                LOG.warning("%s sent %d of %d bytes of a PDU in %g s: closing", _peer(self),
                            received, nr_bytes, timeout)
                del buffer[received:]
                return buffer
            with memoryview(buffer) as view, view[received:] as free:
                try:
                    count = self.socket.recv_into(free)
                except OSError as exc:  # reset: as closed, without a traceback from pynetdicom
                    _log_reset(self, exc)
                    count = 0
            if not count:  # connection closed: return what arrived, as pynetdicom does
                del buffer[received:]
                return buffer
            received += count
        return buffer

    replace(transport.AssociationSocket, "recv", recv, fix="socket reads",
            params=("self", "nr_bytes"))


def _log_reset(transport: Any, exc: OSError) -> None:
    """A reset is a closed connection. After a release it is how some peers close (a
    socket closed with the A-RELEASE-RP unread sends a reset): nothing went wrong, so a debug
    line, never pynetdicom's error and traceback."""
    assoc = transport.assoc
    state = getattr(getattr(assoc.dul, "state_machine", None), "current_state", None)
    # Sta7-12: a release was requested (PS3.8 9.2); Sta13: our A-RELEASE-RP (or A-ABORT) is
    # out and the connection is expected to close.
    if assoc.is_released or (state == "Sta13" and not assoc.is_aborted
                             and not getattr(assoc, "_sent_abort", False)):
        when = " after the release"
    elif state in _RELEASING:
        when = " during the release"
    else:
        when = ""
    LOG.debug("%s closed the connection with a reset%s (%s)", _peer(transport), when,
              exc.strerror or exc)


def _readable(sock: Any, poller: Any, deadline: float) -> bool:
    """Wait until ``sock`` has bytes (TLS: decrypted ones count) or ``deadline`` passes."""
    pending = getattr(sock, "pending", None)
    if pending is not None and pending():
        return True
    wait = deadline - time.monotonic()
    return wait > 0 and bool(poller.poll(wait * 1000))


def _peer(transport: Any) -> str:
    assoc = transport.assoc
    peer = assoc.requestor if assoc.is_acceptor else assoc.acceptor
    return f"{peer.address}:{peer.port}"
