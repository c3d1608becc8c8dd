"""Receiving C-STOREs straight off the socket: a C-GET's sub-operations (``send_c_get``), and
the C-STOREs that follow the first one on an association to a retrieving client's storage SCP
(``receive_more``, for ``dcmtool move -o``).

Through pynetdicom every PDU of every instance goes through its DUL thread, state machine and
DIMSE assembly, and every C-STORE response through its encoder and a queue: about 1.6 ms per
instance here, more than the archive's own work. Here one thread owns the socket
(``owned.OwnedReader``): it writes each data set's fragments to a file in the archive's
incoming folder as they arrive, has the archive store it, and answers with a struct-packed
C-STORE response. Anything else the peer sends goes back to pynetdicom.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from dcmtool.dicom import commands, status
from dcmtool.net import links, owned, space, wire

C_STORE_RQ, C_GET_RSP = 0x0001, 0x8010

@dataclass(frozen=True)
class Refusal:
    """A data set that could not be received whole into a file (e.g. the disk is full)."""

    status: int
    message: str


#: (association, received file or refusal, SOP Class, SOP Instance, transfer syntax, the
#: file's bytes when they were kept in memory) -> the status to answer, a Dataset or an int
#: (the SCP's ``Handlers.store_file``).
StoreFile = Callable[[Any, "Path | Refusal", str, str, str, "bytes | bytearray | None"], Any]

#: Largest received file kept in memory as well as written (per association at a time).
_BUFFERED = 1 << 20


def send_c_get(assoc: Any, identifier: Any, model: str, *, store: StoreFile,
               incoming: Path) -> Iterator[tuple[Any, Any]]:
    """C-GET ``identifier``: yields (status Dataset, identifier Dataset or None) for every
    C-GET response, as pynetdicom's ``send_c_get``; an empty status Dataset when the
    association was lost. Received instances are handed to ``store``."""
    from pydicom.dataset import Dataset
    from pynetdicom.dsutils import encode

    context = next((cx for cx in assoc.accepted_contexts
                    if cx.abstract_syntax == model and cx.as_scu), None)
    if context is None:  # pynetdicom says what is missing
        yield from assoc.send_c_get(identifier, model)
        return
    syntax = context.transfer_syntax[0]
    encoded = encode(identifier, syntax.is_implicit_VR, syntax.is_little_endian,
                     syntax.is_deflated)
    if encoded is None:
        raise ValueError("the identifier cannot be encoded")
    message_id = wire.next_message_id(assoc)
    reader = owned.OwnedReader(assoc)
    reader.take()
    try:
        try:
            wire.send_command(assoc, int(context.context_id),
                                  commands.get_request(model, message_id), encoded)
        except OSError:
            yield Dataset(), None  # the connection broke: pynetdicom notices the rest
            return
        receiving = _Receiving(assoc, reader, store, incoming)
        while True:
            message = reader.command()
            if message is None:
                yield Dataset(), None
                return
            context_id, fields = message
            field = commands.us(fields, 0x0100)
            if field == C_STORE_RQ:
                if not receiving.store(context_id, fields):
                    yield Dataset(), None
                    return
            elif field == C_GET_RSP and commands.us(fields, 0x0120) == message_id:
                response = _response(reader, fields, syntax)
                if response is None:
                    yield Dataset(), None
                    return
                yield response
                if not status.is_pending(response[0].Status):
                    return
            else:
                reader.protocol_error(f"an unexpected message (command 0x{field or 0:04X})")
                yield Dataset(), None
                return
    finally:
        reader.release()


def receive_more(assoc: Any, store: StoreFile, incoming: Path,
                 answer_first: Callable[[], None]) -> None:
    """On ``assoc`` (we are the acceptor), let pynetdicom handle and answer the C-STORE it has
    received (``answer_first``), then read the C-STOREs that follow off the socket until
    another message or PDU comes, which goes back to pynetdicom with the reading. Waits for
    the next message up to the network timeout.

    The reading is taken before the first answer goes out: a fast peer sends its next
    request at once, and pynetdicom's DUL must not start reading it.
    """
    if not wire.usable(assoc):
        answer_first()
        return
    reader = owned.OwnedReader(assoc, timeout=assoc.network_timeout)
    reader.take()
    try:
        answer_first()
        if assoc.dimse.message is not None or not assoc.dimse.msg_queue.empty() or \
                not assoc.is_established:
            return  # pynetdicom already holds (part of) a message: it goes on reading
        receiving = _Receiving(assoc, reader, store, incoming)
        while True:
            message = reader.command_of(_STORE_ONLY)
            if message is None or not receiving.store(*message):
                return
    finally:
        reader.release()


_STORE_ONLY = frozenset({C_STORE_RQ})


def _response(reader: owned.OwnedReader, fields: dict[int, bytes],
              syntax: Any) -> tuple[Any, Any] | None:
    """A C-GET-RSP as (status Dataset, identifier Dataset or None)."""
    from pydicom.dataset import Dataset
    from pynetdicom.dsutils import decode

    status = Dataset()
    code = commands.us(fields, 0x0900)
    if code is None:
        reader.protocol_error("a C-GET response without a status")
        return None
    status.Status = code
    for element, keyword in ((0x1020, "NumberOfRemainingSuboperations"),
                             (0x1021, "NumberOfCompletedSuboperations"),
                             (0x1022, "NumberOfFailedSuboperations"),
                             (0x1023, "NumberOfWarningSuboperations")):
        value = commands.us(fields, element)
        if value is not None:
            setattr(status, keyword, value)
    comment = commands.text(fields, 0x0902)
    if comment:
        status.ErrorComment = comment
    if commands.us(fields, 0x0800) == 0x0101:
        return status, None
    data = bytearray()
    if not reader.data_set(data.extend):
        return None
    try:
        identifier = decode(BytesIO(bytes(data)), syntax.is_implicit_VR,
                            syntax.is_little_endian, syntax.is_deflated)
    except Exception:  # the counts and status still say what happened
        identifier = None
    return status, identifier


class _Receiving:
    """C-STORE sub-operations arriving on the C-GET association."""

    def __init__(self, assoc: Any, reader: owned.OwnedReader, store: StoreFile,
                 incoming: Path) -> None:
        from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name

        self.assoc = assoc
        self.reader = reader
        self.store_file = store
        self.incoming = incoming
        hooks = links.ae_hooks(assoc.ae)
        self.min_free = 0 if hooks is None else hooks.min_free_bytes
        self.syntaxes = {int(cx.context_id): str(cx.transfer_syntax[0])
                         for cx in assoc.accepted_contexts}
        self.implementation = (IMPLEMENTATION_CLASS_UID, implementation_version_name())
        peer, ours = (assoc.requestor, assoc.acceptor) if assoc.is_acceptor \
            else (assoc.acceptor, assoc.requestor)
        self.peer_ae = str(peer.ae_title).strip() or None
        self.our_ae = str(ours.ae_title).strip() or None

    def store(self, context_id: int, fields: dict[int, bytes]) -> bool:
        """Receive one instance and answer it; ``False`` when the association was lost."""
        from dcmtool.dicom.part10 import FileMeta

        sop_class, sop_instance = commands.text(fields, 0x0002), commands.text(fields, 0x1000)
        message_id = commands.us(fields, 0x0110) or 0
        if commands.us(fields, 0x0800) == 0x0101:  # no data set follows
            return self._answer(context_id, sop_class, sop_instance, message_id,
                                status.CANNOT_UNDERSTAND,
                                "the C-STORE request has no data set")
        syntax = self.syntaxes.get(context_id, "")
        meta = FileMeta(sop_class, sop_instance, syntax, *self.implementation,
                        self.peer_ae, self.our_ae)
        received: Any
        fd, name = _new_file(self.incoming)
        failure: OSError | None = None
        # A data set up to _BUFFERED is kept and written in one call, and the archive checks
        # it from memory instead of reading the file back; a larger one streams to the file.
        kept: bytearray | None = bytearray(meta.file_header())
        unchecked = 0
        try:
            def sink(data: memoryview) -> None:
                nonlocal failure, kept, unchecked
                if kept is not None:
                    if len(kept) + len(data) <= _BUFFERED:
                        kept += data
                        return
                    failure, kept = _write(fd, kept, failure), None
                failure = _write(fd, data, failure)
                unchecked += len(data)
                if self.min_free and unchecked >= space.CHECK_EVERY and failure is None:
                    unchecked = 0  # a large data set must not fill the disk on its way
                    failure = space.below_minimum(str(self.incoming), self.min_free)

            whole = self.reader.data_set(sink)
            if whole and kept is not None:
                failure = _write(fd, kept, failure)
        finally:
            os.close(fd)
        if not whole:
            os.unlink(name)
            return False
        if failure is not None:  # e.g. the disk is full: refuse this one, keep going
            os.unlink(name)
            received = Refusal(status.OUT_OF_RESOURCES,
                               f"cannot write: {failure.strerror or failure}")
        else:
            received = Path(name)
        answer = self.store_file(self.assoc, received, sop_class, sop_instance, syntax, kept)
        if isinstance(answer, int):  # the SCP's success
            return self._answer(context_id, sop_class, sop_instance, message_id, answer, "")
        return self._answer(context_id, sop_class, sop_instance, message_id,
                            int(getattr(answer, "Status", status.CANNOT_UNDERSTAND)),
                            str(getattr(answer, "ErrorComment", "") or ""))

    def _answer(self, context_id: int, sop_class: str, sop_instance: str, message_id: int,
                status: int, comment: str) -> bool:
        """Send the C-STORE response; ``False`` when the connection is gone."""
        try:
            wire.write_exclusive(self.assoc, wire.command_pdu(
                context_id, commands.store_response_command(sop_class, sop_instance,
                                                            message_id, status, comment)))
        except OSError:
            return False
        return True


_names = itertools.count()


def _new_file(folder: Path) -> tuple[int, str]:
    """A new file for one data set, 0600 like mkstemp's; named by process and a counter
    (mkstemp's random names cost more than the rest of opening it)."""
    while True:
        name = os.path.join(folder, f"rx-{os.getpid()}-{next(_names)}")
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), name
        except FileExistsError:  # left by an earlier process with the same PID
            continue


def _write(fd: int, data: bytes | bytearray | memoryview,
           failure: OSError | None) -> OSError | None:
    """Write all of ``data`` unless an earlier write failed; the first failure."""
    if failure is not None:
        return failure
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view)
            view = view[written:]
    except OSError as exc:
        return exc
    return None
