"""Fix 8: socket reads, and the bytes an owned reader hands back (fix 11).

pynetdicom reads a PDU 4 KiB per ``recv()`` into a growing bytearray (128 calls and copies
for a 512 KB CT image); here ``recv_into`` one buffer that grows as the bytes arrive (the PDU
length is the peer's claim: never allocated up front).
"""

from __future__ import annotations

from typing import Any

from dcmtool.net.links import link
from dcmtool.net.patches._replace import replace

#: Receive buffer allocated before any byte of a PDU has arrived.
RECV_CHUNK = 1 << 20


def apply() -> None:
    from pynetdicom import transport

    def recv(self: Any, nr_bytes: int) -> bytearray:
        state = link(self.assoc)
        if state.pushback:  # bytes an owned reader took but left to pynetdicom
            head, state.pushback = state.pushback[:nr_bytes], state.pushback[nr_bytes:]
            return bytearray(head)
        buffer = bytearray(min(nr_bytes, RECV_CHUNK))
        received = 0
        while received < nr_bytes:
            if received == len(buffer):
                buffer.extend(bytes(min(nr_bytes - received, len(buffer))))
            with memoryview(buffer) as view, view[received:] as free:
                count = self.socket.recv_into(free)
            if not count:  # connection closed: return what arrived, as pynetdicom does
                del buffer[received:]
                return buffer
            received += count
        return buffer

    replace(transport.AssociationSocket, "recv", recv, fix="socket reads",
            params=("self", "nr_bytes"))
