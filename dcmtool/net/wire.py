"""C-STORE of a file's bytes straight onto an established association's socket.

pynetdicom's chunked send re-reads the File Meta with pydicom, builds a DIMSE primitive, and
hands every PDU to its DUL thread through a queue; for small instances that costs more than
the transfer. Here the command set is packed with struct, the data set is framed into P-DATA-TF
PDUs straight from the file (never decoded), and the PDUs are written by the calling thread.
The response still arrives through pynetdicom's reactor and DIMSE queue, so the association's
state machine, timeouts and abort handling stay pynetdicom's.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import select
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dcmtool.dicom import commands
from dcmtool.dicom.commands import parse_command, text, us
from dcmtool.dicom.part10 import dataset_offset
from dcmtool.net.links import link

#: Data set bytes per PDU when the peer sets no limit (maximum length 0).
UNLIMITED_CHUNK = 1 << 20
#: Data sets up to this size are read whole and sent with one gathered write.
STREAM_ABOVE = 32 << 20


def _framed(context_id: int, data: memoryview, chunk: int, *, last: bool) -> list[Any]:
    """P-DATA-TF headers and data slices (no copies) for ``data``, ``chunk`` bytes a PDU."""
    buffers: list[Any] = []
    total = len(data)
    for start in range(0, max(total, 1), chunk):
        piece = data[start:start + chunk]
        final = last and start + chunk >= total
        buffers.append(struct.pack(">BBIIBB", 0x04, 0x00, len(piece) + 6, len(piece) + 2,
                                   context_id, 0x02 if final else 0x00))
        buffers.append(piece)
    return buffers


def _send_buffers(sock: Any, buffers: list[Any]) -> None:
    """Write every buffer, in order: gathered writes where the socket has them (not TLS)."""
    if not hasattr(sock, "sendmsg") or hasattr(sock, "cipher"):
        sock.sendall(b"".join(buffers))
        return
    views = [memoryview(b) for b in buffers]
    while views:
        sent = sock.sendmsg(views[:512])  # IOV_MAX is 1024 on Linux
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


def _pdu(context_id: int, control: int, data: bytes | memoryview) -> bytes:
    """One P-DATA-TF PDU holding one PDV (PS3.8 9.3.5)."""
    pdv_length = len(data) + 2
    return struct.pack(">BBIIBB", 0x04, 0x00, pdv_length + 4, pdv_length, context_id,
                       control) + bytes(data)


def _chunk(assoc: Any) -> int:
    """Data bytes per PDU: what the *peer* said it receives (the other side's maximum)."""
    peer = assoc.requestor if assoc.is_acceptor else assoc.acceptor
    limit = int(peer.maximum_length or 0)
    return (limit - 6) if limit > 6 else UNLIMITED_CHUNK


@contextlib.contextmanager
def _exclusive(assoc: Any, timeout: float = 10.0) -> Iterator[None]:
    """Own the socket for one whole message.

    pynetdicom queues PDUs for its DUL thread (a C-GET's pending responses are queued by the
    same thread that then sends the next sub-operation here): wait until the DUL has taken
    them all, then hold its write lock, so no PDU of ours lands inside one of its messages.
    """
    queued = assoc.dul.to_provider_queue
    deadline = time.monotonic() + timeout
    while queued.qsize() and assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.0002)
    with link(assoc).send_lock:
        yield


def _socket(assoc: Any) -> Any:
    """The association's socket; ``ConnectionError`` once pynetdicom has closed it."""
    sock = getattr(assoc.dul.socket, "socket", None)
    if sock is None:
        raise ConnectionError("the association's connection is closed")
    return sock


def usable(assoc: Any) -> bool:
    """Whether send_file may write to this association's socket itself: not over TLS, and
    not with PDU debug logging, which only pynetdicom's path produces. (On a C-GET
    association pynetdicom's DUL thread writes pending responses meanwhile: see
    ``_exclusive``.)"""
    return bool(assoc.is_established) and _plain(assoc) and \
        not logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)


def _plain(assoc: Any) -> bool:
    """Not TLS: an SSL connection must not be written by one thread while pynetdicom's DUL
    thread reads it (OpenSSL objects are not safe for that)."""
    import ssl

    return not isinstance(getattr(assoc.dul.socket, "socket", None), ssl.SSLSocket)


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
    """C-STORE a file's bytes by the fast path; ``None`` when it cannot be used here (TLS,
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


def read_small(path: Path) -> bytes | None:
    """A whole file's bytes when it is small enough to send from memory, else ``None``.

    ``read()`` without a size makes one buffer of the file's size; ``read(STREAM_ABOVE)``
    would map and zero 32 MiB for every file (a third of the CPU a small sub-operation used).
    """
    with path.open("rb") as fh:
        if os.fstat(fh.fileno()).st_size > STREAM_ABOVE:
            return None
        return fh.read()


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
    buffers += [_pdu(context_id, 0x03, command),
                *_framed(context_id, dataset, _chunk(assoc), last=True)]
    try:
        with _exclusive(assoc):
            _send_buffers(_socket(assoc), buffers)
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
    sock = _socket(assoc)
    with path.open("rb") as fh:
        fh.seek(offset)
        data = fh.read(STREAM_ABOVE)
        if pause_reactor:
            assoc._reactor_checkpoint.clear()
        try:
            with _exclusive(assoc):
                _send_buffers(sock, [_pdu(context_id, 0x03, command)])
                while data:
                    following = fh.read(STREAM_ABOVE)
                    _send_buffers(sock, _framed(context_id, memoryview(data), chunk,
                                                last=not following))
                    data = following
        except OSError:
            assoc._reactor_checkpoint.set()
            assoc.abort()
            raise


def command_pdu(context_id: int, command_set: bytes) -> bytes:
    """A whole command-only message in one P-DATA-TF PDU (command sets are tiny)."""
    return _pdu(context_id, 0x03, command_set)


def send_command(assoc: Any, context_id: int, command_set: bytes, dataset: bytes) -> None:
    """Write a request with its data set (e.g. a C-GET's identifier) as whole PDUs."""
    with _exclusive(assoc):
        _send_buffers(_socket(assoc), [_pdu(context_id, 0x03, command_set),
                                       *_framed(context_id, memoryview(dataset),
                                                _chunk(assoc), last=True)])


def write_exclusive(assoc: Any, data: bytes) -> None:
    """Write whole PDUs of ours between pynetdicom's (raises ``OSError``)."""
    with _exclusive(assoc):
        _socket(assoc).sendall(data)


class OwnedReader:
    """Messages read from the socket by the thread that handles them, not pynetdicom's DUL.

    For an association whose peer, meanwhile, only answers our C-STOREs (a C-MOVE's
    sub-association; a C-GET requester, which may also cancel) or only sends C-STOREs (a
    retrieving client's). Through pynetdicom each message wakes its DUL thread, goes through
    its state machine, a pydicom decode of the command set and a queue to this thread: most of
    the turnaround between two sub-operations. While this reader owns the socket the DUL
    thread does not touch it (``patches.owned_reading``). Anything but a P-DATA-TF PDU
    (an A-ABORT, a release request) is pushed back for pynetdicom to read, and ownership
    returns to it; so is an unwanted message (``command_of``); other surprises abort.
    """

    def __init__(self, assoc: Any, timeout: float | bool | None = True) -> None:
        """``timeout``: the longest wait for a PDU; ``True`` for the DIMSE timeout."""
        self.assoc = assoc
        self.dul = assoc.dul
        self.link = link(assoc)
        self.sock = _socket(assoc)
        self.timeout = assoc.dimse_timeout if timeout is True else timeout
        self._dimse = timeout is True
        self.poller = select.poll()
        self.poller.register(self.sock, select.POLLIN)
        self.active = False
        self._pdvs: collections.deque[tuple[int, int, memoryview]] = collections.deque()
        self._raw: list[bytes] | None = None  # the PDUs read, while a command may go back

    @classmethod
    def attach(cls, assoc: Any) -> OwnedReader | None:
        """Own ``assoc``'s responses for ``send_file`` until ``release()``; ``None`` where
        the fast path is off (TLS, PDU logging)."""
        if not usable(assoc):
            return None
        reader = cls(assoc)
        reader.take()
        link(assoc).reader = reader
        return reader

    def take(self) -> None:
        with self.link.read_lock:  # not in the middle of one of the DUL's reads
            self.link.owned = True
        self.active = True
        self._wake_dul()  # it drops the socket from the poll it is sleeping in

    def release(self) -> None:
        if self.link.reader is self:
            self.link.reader = None  # the Link must not keep its association alive
        if self.active:
            self.link.owned = False
            self.active = False
            self._wake_dul()

    def _wake_dul(self) -> None:
        wake = self.link.wake_dul
        if wake is not None:
            wake()

    def status(self, message_id: int) -> int | None:
        """The Status of the C-STORE-RSP to ``message_id``; ``None`` when none came (the
        connection closed, the DIMSE timeout, or something else arrived). A C-CANCEL that
        arrives meanwhile (a C-GET requester's) is recorded where pynetdicom keeps them."""
        response = self.response(message_id)
        return None if response is None else response[0]

    def response(self, message_id: int) -> tuple[int, str] | None:
        """(Status, Error Comment) of the C-STORE-RSP to ``message_id``, as ``status``."""
        while True:
            message = self.command()
            if message is None:
                return None
            _, fields = message
            field, responding_to = us(fields, 0x0100), us(fields, 0x0120)
            if field == 0x0FFF and responding_to is not None:  # C-CANCEL-RQ
                self._cancel(responding_to)
                continue
            status = us(fields, 0x0900)
            if field != 0x8001 or responding_to != message_id or \
                    us(fields, 0x0800) != 0x0101 or status is None:
                self.protocol_error("a message that does not answer our C-STORE")
                return None
            return status, text(fields, 0x0902)

    def command(self) -> tuple[int, dict[int, bytes]] | None:
        """(presentation context ID, element values) of the next command set; ``None`` when
        none came (see ``status``)."""
        command = bytearray()
        while True:
            pdv = self._next_pdv()
            if pdv is None:
                return None
            context_id, control, data = pdv
            if not control & 0x01:
                self.protocol_error("a data set where a command was expected")
                return None
            command += data
            if control & 0x02:
                fields = parse_command(bytes(command))
                if fields is None:
                    self.protocol_error("a command set that does not parse")
                    return None
                return context_id, fields

    def command_of(self, wanted: frozenset[int]) -> tuple[int, dict[int, bytes]] | None:
        """The next command set if its Command Field is in ``wanted``; any other message goes
        back to pynetdicom whole, with the reading (``None``, as when none came)."""
        at_boundary = not self._pdvs  # the message starts a PDU: it can go back whole
        self._raw = []
        try:
            message = self.command()
        finally:
            raw, self._raw = self._raw, None
        if message is None or us(message[1], 0x0100) in wanted:
            return message
        if not at_boundary:
            self.protocol_error("a message starting inside a PDU after a data set")
            return None
        self._pdvs.clear()
        self.link.pushback = b"".join(raw)
        self.release()
        return None

    def data_set(self, sink: Callable[[memoryview], object]) -> bool:
        """Hand the fragments of the data set that follows a command to ``sink``; ``False``
        when it did not arrive whole."""
        while True:
            pdv = self._next_pdv()
            if pdv is None:
                return False
            _, control, data = pdv
            if control & 0x01:
                self.protocol_error("a command where a data set was expected")
                return False
            sink(data)
            if control & 0x02:
                return True

    def _next_pdv(self) -> tuple[int, int, memoryview] | None:
        """(context ID, message control header, data) of the next PDV, reading a PDU when
        the last one is used up; each PDU must come within the DIMSE timeout."""
        while not self._pdvs:
            deadline = None if self.timeout is None else \
                time.monotonic() + float(self.timeout)
            head = self._read(6, deadline)
            if head is None:
                self._lost(deadline)
                return None
            pdu_type, length = struct.unpack(">BxI", head)
            body = self._read(length, deadline)
            if body is None:
                self._lost(deadline)
                return None
            self.dul._idle_timer.restart()  # the network timeout counts from the last PDU
            if pdu_type != 0x04:
                self.link.pushback = b"".join([*(self._raw or ()), head, body])
                self._pdvs.clear()
                self.release()
                return None
            if self._raw is not None:
                self._raw += (head, body)
            view, offset = memoryview(body), 0
            while offset + 6 <= length:
                (item_length,) = struct.unpack(">I", view[offset:offset + 4])
                if item_length < 2 or offset + 4 + item_length > length:
                    self.protocol_error("a malformed P-DATA-TF PDU")
                    return None
                self._pdvs.append((view[offset + 4], view[offset + 5],
                                   view[offset + 6:offset + 4 + item_length]))
                offset += 4 + item_length
        return self._pdvs.popleft()

    def _cancel(self, message_id: int) -> None:
        from pynetdicom.dimse_primitives import C_CANCEL

        cancel = C_CANCEL()
        cancel.MessageIDBeingRespondedTo = message_id
        self.assoc.dimse.cancel_req[message_id] = cancel

    def _read(self, count: int, deadline: float | None) -> bytes | None:
        parts: list[bytes] = []
        needed = count
        while needed:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.poller.poll(None if wait is None else wait * 1000):
                return None
            try:
                data = self.sock.recv(min(needed, 1 << 20))
            except OSError:
                return None
            if not data:
                return None
            parts.append(data)
            needed -= len(data)
        return b"".join(parts)

    def _lost(self, deadline: float | None) -> None:
        """Closed, or the DIMSE timeout: pynetdicom takes over (it notices a closed
        connection on its own); after a timeout the association is aborted, as pynetdicom's
        send_c_store does."""
        self.release()
        if deadline is not None and time.monotonic() >= deadline and self.assoc.is_established:
            if self._dimse:
                self.link.dimse_timeout_fired = float(self.timeout)  # type: ignore[arg-type]
            self.assoc.abort()

    def protocol_error(self, what: str) -> None:
        peer = self.assoc.requestor if self.assoc.is_acceptor else self.assoc.acceptor
        logging.getLogger("dcmtool").warning("%s sent %s: aborting the association",
                                              str(peer.ae_title).strip(), what)
        self.release()
        self.assoc.abort()


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
        self.command = _pdu(context_id, 0x03, commands.find_response_command(sop_class, message_id))
        self.buffer: list[bytes] = []
        self.size = 0

    @classmethod
    def for_event(cls, event: Any) -> PendingWriter | None:
        """A writer for this C-FIND, or None: the handler runs before pynetdicom has sent
        anything for this request, and the requester waits for the previous request's final
        response before sending this one, so the socket is ours until the handler yields."""
        assoc = event.assoc
        if not assoc.is_established or assoc.dul.to_provider_queue.qsize() or \
                not _plain(assoc) or logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG):
            return None
        return cls(assoc, int(event.context.context_id),
                   str(event.request.AffectedSOPClassUID), int(event.request.MessageID))

    def send(self, identifier: bytes) -> None:
        parts = [self.command]
        view = memoryview(identifier)
        for start in range(0, max(len(view), 1), self.chunk):
            last = start + self.chunk >= len(view)
            parts.append(_pdu(self.context_id, 0x02 if last else 0x00,
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
