"""A data set framed into P-DATA-TF PDUs straight from a file's bytes (PS3.8 9.3.5).

The one framing of a C-STORE's data set, for both clients: ``net.wire`` (over pynetdicom's
association) and ``net.lean`` (dcmtool's plain-TCP client). Standard library only: importing
this loads neither pynetdicom nor pydicom.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Data set bytes per PDU when the peer sets no limit (maximum length 0).
UNLIMITED_CHUNK = 1 << 20
#: Data sets up to this size are read whole and sent with one gathered write.
STREAM_ABOVE = 32 << 20
#: Bytes joined per TLS write (no gathered writes there): under malloc's mmap threshold.
TLS_WRITE_BYTES = 1 << 16


def chunk_for(peer_max_pdu: int | None) -> int:
    """Data bytes per PDU for a peer that receives PDUs of ``peer_max_pdu`` (0/None: any)."""
    limit = int(peer_max_pdu or 0)
    return (limit - 6) if limit > 6 else UNLIMITED_CHUNK


def p_data_tf(context_id: int, control: int, data: bytes | memoryview) -> bytes:
    """One P-DATA-TF PDU holding one PDV (PS3.8 9.3.5); ``control`` is the message control
    header (bit 0: command, bit 1: last fragment)."""
    return _pdv_header(context_id, control, len(data)) + bytes(data)


def framed(context_id: int, data: bytes | memoryview, chunk: int, *, last: bool,
           command: bool = False) -> list[Any]:
    """P-DATA-TF headers and data slices (no copies) for ``data``, ``chunk`` bytes a PDU: a
    data set's fragments, or a command's (``command``)."""
    view = memoryview(data)
    kind = 0x01 if command else 0x00
    buffers: list[Any] = []
    total = len(view)
    for start in range(0, max(total, 1), chunk):
        piece = view[start:start + chunk]
        final = last and start + chunk >= total
        buffers.append(_pdv_header(context_id, kind | (0x02 if final else 0x00), len(piece)))
        buffers.append(piece)
    return buffers


def _pdv_header(context_id: int, control: int, length: int) -> bytes:
    """A P-DATA-TF PDU's header and its one PDV's, for ``length`` bytes of data."""
    return struct.pack(">BBIIBB", 0x04, 0x00, length + 6, length + 2, context_id, control)


def send_buffers(sock: Any, buffers: list[Any]) -> None:
    """Write every buffer, in order: gathered writes, or joined in ``TLS_WRITE_BYTES`` runs."""
    if hasattr(sock, "cipher") or not hasattr(sock, "sendmsg"):  # TLS: no sendmsg
        run: list[Any] = []
        for index, buffer in enumerate(buffers):
            run.append(buffer)
            if sum(map(len, run)) >= TLS_WRITE_BYTES or index == len(buffers) - 1:
                sock.sendall(b"".join(run) if len(run) > 1 else run[0])
                run = []
        return
    views = [memoryview(b) for b in buffers]
    while views:
        sent = sock.sendmsg(views[:512])  # IOV_MAX is 1024 on Linux
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


def read_small(path: Path) -> bytes | None:
    """A whole file's bytes when it is small enough to send from memory, else ``None``.

    One buffer of the file's size (``read(STREAM_ABOVE)`` would map and zero 32 MiB for every
    file), read with os calls: a file object per file cost half of the read of a 9 KB file.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        if size > STREAM_ABOVE:
            return None
        data = os.read(fd, size)
        while len(data) < size:  # a short read (some file systems): the rest, to the end
            more = os.read(fd, size - len(data))
            if not more:
                break
            data += more
        return data
    finally:
        os.close(fd)


def blocks(path: Path, offset: int) -> Iterator[tuple[bytes, bool]]:
    """A large data set ``STREAM_ABOVE`` bytes at a time, never all in memory: (block, whether
    it is the last). An empty data set is one empty last block."""
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read(STREAM_ABOVE)
        while True:
            following = fh.read(STREAM_ABOVE) if data else b""
            yield data, not following
            if not following:
                return
            data = following
