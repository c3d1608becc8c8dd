"""Reading an association's socket on the thread that handles its messages.

See ``OwnedReader``. Writing stays in ``wire`` (the same thread writes while it owns the
socket, which is what makes the fast paths safe over TLS too).
"""

from __future__ import annotations

import collections
import logging
import select
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any

from dcmtool.dicom.commands import parse_command, text, us
from dcmtool.net.links import link
from dcmtool.net.wire import socket_of, usable


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
        self.sock = socket_of(assoc)
        self.tls = isinstance(self.sock, ssl.SSLSocket)
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
        the fast path is off (PDU logging)."""
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
            if self.tls:
                data = self._recv_tls(min(needed, 1 << 20), deadline)
            else:
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

    def _recv_tls(self, size: int, deadline: float | None) -> bytes:
        """Up to ``size`` bytes (a TLS record at most), ``b""`` when closed, broken or out of time,
        under the send lock (no DUL write meanwhile); ``pending()`` first: poll misses those."""
        lock, sock, size = self.link.send_lock, self.sock, min(size, 1 << 16)
        try:
            with lock:
                if sock.pending():
                    return bytes(sock.recv(size))
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self.poller.poll(None if wait is None else wait * 1000):
                return b""
            with lock:  # readable, but maybe part of a record: bound the wait for the rest
                sock.settimeout(None if wait is None else max(0.001, wait))
                try:
                    return bytes(sock.recv(size))
                finally:
                    sock.settimeout(None)
        except (OSError, ValueError):  # reset, timed out, or closed under us (ValueError)
            return b""

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
