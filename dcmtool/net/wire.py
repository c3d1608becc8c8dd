"""C-STORE of a file's bytes straight onto an established association's socket.

pynetdicom's chunked send re-reads the File Meta with pydicom, builds a DIMSE primitive, and
hands every PDU to its DUL thread through a queue; for small instances that costs more than
the transfer. Here the command set is packed with struct, the data set is framed into P-DATA-TF
PDUs straight from the file (never decoded), and the PDUs are written by the calling thread.
The response still arrives through pynetdicom's reactor and DIMSE queue, so the association's
state machine, timeouts and abort handling stay pynetdicom's. Over TLS too: see ``_exclusive``.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcmtool.dicom import commands
from dcmtool.dicom.part10 import dataset_offset
from dcmtool.net import framing
from dcmtool.net.framing import framed, p_data_tf, read_small, send_buffers
from dcmtool.net.links import link

if TYPE_CHECKING:
    from dcmtool.net.owned import OwnedReader

def _chunk(assoc: Any) -> int:
    """Data bytes per PDU: what the *peer* said it receives (the other side's maximum)."""
    peer = assoc.requestor if assoc.is_acceptor else assoc.acceptor
    return framing.chunk_for(peer.maximum_length)


@contextlib.contextmanager
def _exclusive(assoc: Any, timeout: float = 10.0) -> Iterator[None]:
    """Own the socket for one whole message.

    pynetdicom queues PDUs for its DUL thread (a C-GET's pending responses are queued by the
    same thread that then sends the next sub-operation here): wait until the DUL has taken
    them all, then hold its write lock, so no PDU of ours lands inside one of its messages.
    Over TLS its read lock too: no two threads may use an SSL object at once, so every SSL
    call is made under these locks (``OwnedReader._recv_tls``, fixes ``send_lock``, ``tls_close``).
    """
    queued = assoc.dul.to_provider_queue
    deadline = time.monotonic() + timeout
    while queued.qsize() and assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.0002)
    if isinstance(getattr(assoc.dul.socket, "socket", None), ssl.SSLSocket):
        with link(assoc).read_lock, link(assoc).send_lock:
            yield
    else:
        with link(assoc).send_lock:
            yield


def socket_of(assoc: Any) -> Any:
    """The association's socket; ``ConnectionError`` once pynetdicom has closed it."""
    sock = getattr(assoc.dul.socket, "socket", None)
    if sock is None:
        raise ConnectionError("the association's connection is closed")
    return sock


def usable(assoc: Any) -> bool:
    """Whether send_file may write to this association's socket itself: not with PDU debug
    logging, which only pynetdicom's path produces. (On a C-GET association pynetdicom's DUL
    thread writes pending responses meanwhile: see ``_exclusive``.)"""
    return bool(assoc.is_established) and \
        not logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)


def accepted_syntaxes(assoc: Any) -> dict[str, dict[str, int]]:
    """SOP class -> {transfer syntax: context ID} of the contexts we may send on as SCU;
    built once per association (pynetdicom rebuilds its list on every access)."""
    state = link(assoc)
    cached = state.accepted
    if cached is None:
        cached = {}
        for cx in assoc.accepted_contexts:
            if cx.as_scu:
                cached.setdefault(str(cx.abstract_syntax), {}).setdefault(
                    str(cx.transfer_syntax[0]), int(cx.context_id))
        state.accepted = cached
    return cached


def send_path(assoc: Any, path: Path, sop_class: str, syntax: str, sop_instance: str, *,
              offset: int | None = None, message_id: int | None = None,
              move_originator: tuple[str, int] | None = None) -> Any | None:
    """C-STORE a file's bytes by the fast path; ``None`` when it cannot be used here (PDU
    debug logging, no context in the file's syntax, no File Meta group length)."""
    if not usable(assoc):
        return None
    context_id = accepted_syntaxes(assoc).get(sop_class, {}).get(syntax)
    if offset is None:
        offset = dataset_offset(path)
    if context_id is None or offset is None:
        return None
    return send_file(assoc, context_id, path, offset, sop_class, sop_instance,
                     message_id=message_id, move_originator=move_originator)


def next_message_id(assoc: Any) -> int:
    """A Message ID for our next request on ``assoc`` (1..65535, wrapping)."""
    state = link(assoc)
    state.message_id = state.message_id % 65535 + 1
    return state.message_id


def send_request(assoc: Any, context_id: int, dataset: memoryview, sop_class: str,
                 sop_instance: str, message_id: int, *,
                 move_originator: tuple[str, int] | None = None,
                 before: bytes = b"", pause_reactor: bool = True) -> None:
    """Write one C-STORE-RQ (after ``before``, whole PDUs of our own, e.g. a C-GET's pending
    response) in one gathered write; ``await_response`` then reads the answer.

    Raises ``OSError`` when the connection broke: the association is aborted by then.
    """
    # With the checkpoint clear, the reactor hands our response back to the DIMSE queue
    # (dcmtool's #875 fix), so there is no need to wait for it to pause. (An owned reader
    # takes the response itself: the reactor never sees it.)
    if pause_reactor:
        assoc._reactor_checkpoint.clear()
    command = commands.store_request(sop_class, sop_instance, message_id,
                                      move_originator=move_originator)
    buffers: list[Any] = [before] if before else []
    buffers += [p_data_tf(context_id, 0x03, command),
                *framed(context_id, dataset, _chunk(assoc), last=True)]
    try:
        with _exclusive(assoc):
            send_buffers(socket_of(assoc), buffers)
    except OSError:  # the connection broke mid-message: nothing more can go on it
        assoc._reactor_checkpoint.set()
        assoc.abort()
        raise


def await_response(assoc: Any) -> Any:
    """The status Dataset answering ``send_request``; an empty Dataset (no ``Status``) when
    none came (aborted, or the DIMSE timeout, after which the association is aborted as
    pynetdicom's ``send_c_store`` does)."""
    from pydicom.dataset import Dataset

    try:
        _, response = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    if response is None:
        if assoc.is_established:
            assoc.abort()
        return Dataset()
    return assoc._check_received_status(response)


def send_file(assoc: Any, context_id: int, path: Path, offset: int, sop_class: str,
              sop_instance: str, *, message_id: int | None = None,
              move_originator: tuple[str, int] | None = None) -> Any:
    """Send one C-STORE-RQ with the file's data set; return the response status Dataset.

    Returns an empty Dataset (no ``Status``) when no response came: the association was
    aborted or timed out, as pynetdicom's ``send_c_store`` does.
    """
    from pydicom.dataset import Dataset

    if message_id is None:
        message_id = next_message_id(assoc)
    data = read_small(path)  # an unreadable file fails here, before anything is sent
    reader: OwnedReader | None = link(assoc).reader
    owned = reader is not None and reader.active
    try:
        if data is not None:
            send_request(assoc, context_id, memoryview(data)[offset:], sop_class,
                         sop_instance, message_id, move_originator=move_originator,
                         pause_reactor=not owned)
        else:
            _stream(assoc, context_id, path, offset, sop_class, sop_instance, message_id,
                    move_originator, pause_reactor=not owned)
    except OSError:
        return Dataset()
    if not owned:
        return await_response(assoc)
    assert reader is not None
    answer = reader.response(message_id)
    status = Dataset()
    if answer is not None:
        status.Status = answer[0]
        if answer[1]:
            status.ErrorComment = answer[1]
    return status


def release_responses(assoc: Any) -> None:
    """Give the reading of ``assoc`` back to pynetdicom (before any pynetdicom request)."""
    reader: OwnedReader | None = link(assoc).reader
    if reader is not None:
        reader.release()


def _stream(assoc: Any, context_id: int, path: Path, offset: int, sop_class: str,
            sop_instance: str, message_id: int,
            move_originator: tuple[str, int] | None, *, pause_reactor: bool = True) -> None:
    """A large data set: a block at a time, never all in memory."""
    chunk = _chunk(assoc)
    command = commands.store_request(sop_class, sop_instance, message_id,
                                      move_originator=move_originator)
    sock = socket_of(assoc)
    if pause_reactor:
        assoc._reactor_checkpoint.clear()
    try:
        with _exclusive(assoc):
            send_buffers(sock, [p_data_tf(context_id, 0x03, command)])
            for data, last in framing.blocks(path, offset):
                send_buffers(sock, framed(context_id, memoryview(data), chunk, last=last))
    except OSError:
        assoc._reactor_checkpoint.set()
        assoc.abort()
        raise


def command_pdu(context_id: int, command_set: bytes) -> bytes:
    """A whole command-only message in one P-DATA-TF PDU (command sets are tiny)."""
    return p_data_tf(context_id, 0x03, command_set)


def send_command(assoc: Any, context_id: int, command_set: bytes, dataset: bytes) -> None:
    """Write a request with its data set (e.g. a C-GET's identifier) as whole PDUs."""
    with _exclusive(assoc):
        send_buffers(socket_of(assoc), [p_data_tf(context_id, 0x03, command_set),
                                       *framed(context_id, memoryview(dataset),
                                                _chunk(assoc), last=True)])


def write_exclusive(assoc: Any, data: bytes) -> None:
    """Write whole PDUs of ours between pynetdicom's (raises ``OSError``)."""
    with _exclusive(assoc):
        socket_of(assoc).sendall(data)


class PendingWriter:
    """Writes C-FIND pending responses straight to the socket, a batch per write.

    Used from the handler thread while pynetdicom's DUL has nothing queued (the handler has
    not yielded yet), so nothing else writes meanwhile; the final response still goes through
    pynetdicom, after these.
    """

    BATCH_BYTES = 65536
    BATCH_COUNT = 16

    def __init__(self, assoc: Any, context_id: int, sop_class: str, message_id: int) -> None:
        self.assoc = assoc
        self.sock = assoc.dul.socket.socket
        self.chunk = _chunk(assoc)
        self.context_id = context_id
        self.command = p_data_tf(context_id, 0x03,
                                 commands.find_response_command(sop_class, message_id))
        self.buffer: list[bytes] = []
        self.size = 0

    @classmethod
    def for_event(cls, event: Any) -> PendingWriter | None:
        """A writer for this C-FIND, or None: the handler runs before pynetdicom has sent
        anything for this request, and the requester waits for the previous request's final
        response before sending this one, so the socket is ours until the handler yields."""
        assoc = event.assoc
        if not assoc.is_established or assoc.dul.to_provider_queue.qsize() or \
                logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
            return None
        return cls(assoc, int(event.context.context_id),
                   str(event.request.AffectedSOPClassUID), int(event.request.MessageID))

    def send(self, identifier: bytes) -> None:
        parts = [self.command]
        view = memoryview(identifier)
        for start in range(0, max(len(view), 1), self.chunk):
            last = start + self.chunk >= len(view)
            parts.append(p_data_tf(self.context_id, 0x02 if last else 0x00,
                              view[start:start + self.chunk]))
        self.buffer.extend(parts)
        self.size += sum(len(p) for p in parts)
        if self.size >= self.BATCH_BYTES or len(self.buffer) >= self.BATCH_COUNT * 2:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            with _exclusive(self.assoc):
                self.sock.sendall(b"".join(self.buffer))
            self.buffer, self.size = [], 0
