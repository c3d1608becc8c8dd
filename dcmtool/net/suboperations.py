"""C-MOVE and C-GET sub-operations: dcmtool's loop in place of pynetdicom's service class.

pynetdicom's loop reads each file when its turn comes, sends every pending response through
its DUL thread and formats log lines for each. This loop reads the next file while the peer
stores the current one, writes each C-STORE straight onto the socket (``wire``) and packs
pending responses with struct; on a C-GET a pending response goes out in the same write as the
next C-STORE request. Final responses go through pynetdicom: they may carry a Failed SOP
Instance UID List, encoded in the request's transfer syntax.

Whatever happens, the requester gets a status: nothing here raises into pynetdicom.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from dcmtool.dicom import commands
from dcmtool.dicom.part10 import offset_in
from dcmtool.dicom.status import (
    PENDING,
    SOME_SUBOPERATIONS_FAILED,
    SUBOPERATIONS_FAILED,
    SUCCESS,
    is_warning,
)
from dcmtool.net import framing, owned, wire
from dcmtool.net.contexts import build_contexts, plan_storage

LOG = logging.getLogger("dcmtool.serve")

MOVE_RESPONSE, GET_RESPONSE = 0x8021, 0x8010


@dataclass(frozen=True)
class StoredFile:
    """An archive file a retrieval sends."""

    path: Path
    sop_class: str
    sop_instance: str
    syntax: str


@dataclass
class Tally:
    """Sub-operation counts, as the responses report them."""

    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)
    #: Why sub-operations failed, with how many failed so: the final response says it.
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, status: int | None, sop_instance: str, reason: str | None = None) -> None:
        """Count one finished sub-operation (``None``: no response came)."""
        self.remaining -= 1
        if status == SUCCESS:
            self.completed += 1
        elif is_warning(status):
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(sop_instance)
            if reason is None:
                reason = "no answer from the storage SCP" if status is None \
                    else f"the storage SCP answered 0x{status:04X}"
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    @property
    def reason(self) -> str | None:
        """The commonest reason sub-operations failed (for the final response's comment)."""
        if not self.reasons:
            return None
        return max(self.reasons, key=lambda text: self.reasons[text])

    def fail_rest(self, rest: Sequence[StoredFile]) -> None:
        for item in rest:
            self.add(None, item.sop_instance)

    @property
    def final_status(self) -> int:
        if not (self.failed or self.warning):
            return SUCCESS
        if self.failed and not (self.completed or self.warning):
            return SUBOPERATIONS_FAILED
        return SOME_SUBOPERATIONS_FAILED


def sub_batches(items: Sequence[StoredFile]) -> list[tuple[list[Any], list[StoredFile]]]:
    """A C-MOVE's sub-associations: (pynetdicom presentation contexts, the files sent on it),
    as many as the 128-context limit needs (``contexts.plan_storage``)."""
    return [(build_contexts(requests), files) for requests, files in
            plan_storage(items, lambda i: i.sop_class, lambda i: i.syntax)]


class Responder:
    """Answers the requester of one C-MOVE or C-GET.

    Pending responses are packed with struct and written straight to its socket (over TLS
    too: ``wire`` keeps the SSL object to one thread at a time); with PDU logging on they go
    through pynetdicom's DIMSE path instead.
    """

    def __init__(self, service: Any, request: Any, context: Any, command_field: int) -> None:
        self.service = service
        self.assoc = service.assoc
        self.context_id = int(context.context_id)
        self.syntax = context.transfer_syntax[0]
        self.sop_class = str(request.AffectedSOPClassUID)
        self.message_id = int(request.MessageID)
        self.command_field = command_field
        self.direct = wire.usable(self.assoc)
        self.gone = False

    @property
    def present(self) -> bool:
        """Whether the requester is still there to answer."""
        return not self.gone and bool(self.assoc.is_established)

    def cancelled(self) -> bool:
        return bool(self.service.is_cancelled(self.message_id))

    def pending_pdu(self, tally: Tally) -> bytes:
        return wire.command_pdu(self.context_id, commands.retrieve_response_command(
            self.sop_class, self.command_field, self.message_id, PENDING, tally.remaining,
            tally.completed, tally.failed, tally.warning))

    def pending(self, tally: Tally) -> None:
        if not self.present:
            return
        if not self.direct:
            self.service.dimse.send_msg(self._primitive(PENDING, tally), self.context_id)
            return
        try:
            wire.write_exclusive(self.assoc, self.pending_pdu(tally))
        except OSError:
            self.gone = True

    def final(self, status: int, tally: Tally | None = None, comment: str | None = None) -> None:
        """The last response: the counts, and the Failed SOP Instance UID List whenever
        something did not complete."""
        if not self.present:
            return
        response = self._primitive(status, tally)
        if not comment and tally is not None and status not in (SUCCESS, PENDING):
            comment = tally.reason  # the requester learns why, not only how many
        if comment:
            response.ErrorComment = commands.error_comment(comment)
        if tally is not None and status not in (SUCCESS, PENDING):
            from pydicom.dataset import Dataset
            from pynetdicom.dsutils import encode

            failed = Dataset()
            failed.FailedSOPInstanceUIDList = tally.failed_uids
            encoded = encode(failed, self.syntax.is_implicit_VR, self.syntax.is_little_endian,
                             self.syntax.is_deflated)
            if encoded is not None:
                response.Identifier = BytesIO(encoded)
        self.service.dimse.send_msg(response, self.context_id)

    def _primitive(self, status: int, tally: Tally | None) -> Any:
        from pynetdicom.dimse_primitives import C_GET, C_MOVE

        response = C_MOVE() if self.command_field == MOVE_RESPONSE else C_GET()
        response.MessageIDBeingRespondedTo = self.message_id
        response.AffectedSOPClassUID = self.sop_class
        response.Status = status
        if tally is not None:  # PS3.7 9.1.4.1.7: Remaining may be in any response
            response.NumberOfRemainingSuboperations = min(tally.remaining, 0xFFFF)
            response.NumberOfCompletedSuboperations = min(tally.completed, 0xFFFF)
            response.NumberOfFailedSuboperations = min(tally.failed, 0xFFFF)
            response.NumberOfWarningSuboperations = min(tally.warning, 0xFFFF)
        return response


def perform(sender: Any, items: Sequence[StoredFile], responder: Responder, *,
            originator: tuple[str, int] | None = None,
            tally: Tally | None = None) -> tuple[Tally, bool]:
    """Send ``items`` on ``sender`` (the destination's association for a C-MOVE, the
    requester's own for a C-GET), one C-STORE at a time, answering the requester as it goes.

    What the fast path cannot send (a conversion, PDU logging) goes through pynetdicom
    (``_send_through_pynetdicom``). Returns the counts and whether the requester cancelled. A
    requester that leaves does not stop a C-MOVE (seed 004); a C-GET has nowhere left to send.
    """
    tally = tally or Tally(len(items))
    # Read the responses here (see OwnedReader): the peer sends nothing else meanwhile.
    reader = owned.OwnedReader(sender) if wire.usable(sender) else None
    if reader is not None:
        reader.take()
    try:
        _run(sender, items, responder, tally, reader, originator)
    except _Cancelled:
        return tally, True
    finally:
        if reader is not None:
            reader.release()
    return tally, False


class _Cancelled(Exception):
    pass


def _run(sender: Any, items: Sequence[StoredFile], responder: Responder, tally: Tally,
         reader: owned.OwnedReader | None, originator: tuple[str, int] | None) -> None:
    same_association = sender is responder.assoc
    fast = wire.usable(sender)
    before = b""  # a C-GET's pending response, sent with the next C-STORE request
    ahead = _load(sender, items[0]) if items and fast else None
    for index, item in enumerate(items):
        if responder.present and responder.cancelled():
            raise _Cancelled
        if not sender.is_established:
            tally.fail_rest(items[index:])
            break
        loaded, ahead = ahead, None
        following = items[index + 1] if index + 1 < len(items) else None
        message_id = wire.next_message_id(sender)
        owned = reader is not None and reader.active
        status: int | None
        reason: str | None = None
        if loaded is not None:
            data, context_id, offset = loaded
            try:
                wire.send_request(sender, context_id, memoryview(data)[offset:],
                                      item.sop_class, item.sop_instance, message_id,
                                      move_originator=originator, before=before,
                                      pause_reactor=not owned)
                before = b""
            except OSError:
                status = None
            else:
                del data, loaded  # the next file's bytes take their place
                if following is not None and fast:  # read while the peer stores this one
                    ahead = _load(sender, following)
                if owned:
                    assert reader is not None
                    status = reader.status(message_id)
                else:
                    status = wire.await_response(sender).get("Status")
        else:
            if before:
                _flush(responder, before)
                before = b""
            if reader is not None:
                reader.release()  # pynetdicom's send_c_store reads through its DUL
            status, reason = _send_through_pynetdicom(sender, item, message_id, originator)
            if following is not None and fast:
                ahead = _load(sender, following)
        tally.add(status, item.sop_instance, reason)
        if tally.remaining and responder.present:
            if same_association and responder.direct:
                before = responder.pending_pdu(tally)
            else:
                responder.pending(tally)
    if before:
        _flush(responder, before)


def _flush(responder: Responder, data: bytes) -> None:
    try:
        wire.write_exclusive(responder.assoc, data)
    except OSError:
        responder.gone = True


def _load(sender: Any, item: StoredFile) -> tuple[bytes, int, int] | None:
    """(file bytes, context ID, data set offset) when ``item`` can take the fast path (the
    caller checked ``wire.usable``)."""
    context_id = wire.accepted_syntaxes(sender).get(item.sop_class, {}).get(item.syntax)
    if context_id is None:
        return None
    try:
        data = framing.read_small(item.path)
    except OSError:
        return None  # the fallback reports it
    offset = None if data is None else offset_in(data)
    if data is None or offset is None:
        return None
    return data, context_id, offset


def _send_through_pynetdicom(sender: Any, item: StoredFile, message_id: int,
                             originator: tuple[str, int] | None
                             ) -> tuple[int | None, str | None]:
    """One file through pynetdicom's ``send_c_store``: as it is when the peer accepted its
    syntax (with PDU logging, a file without a File Meta group length), else
    converted; the status (``None`` when it could not be sent) and why it was not sent."""
    extra: dict[str, Any] = {} if originator is None else {
        "originator_aet": originator[0], "originator_id": originator[1]}
    try:
        accepted = wire.accepted_syntaxes(sender).get(item.sop_class, {})
        what = item.path if item.syntax in accepted else _converted(item, list(accepted))
        status = sender.send_c_store(what, msg_id=message_id, **extra)
    except Exception as exc:  # unreadable file, no context, conversion refused
        LOG.warning("sub-operation for %s failed: %s", item.sop_instance, exc)
        return None, str(exc)
    return (int(status.Status) if "Status" in status else None), None


def _converted(item: StoredFile, accepted: list[str]) -> Any:
    """The file as a data set in a syntax the peer accepted: never lossy on the archive's
    initiative (uncompressed first, then the lossless ones), same SOP Instance UID."""
    from pydicom import dcmread

    from dcmtool.dicom.syntaxes import conversion_target
    from dcmtool.dicom.transcode import EncodeOptions, transcode

    on_wire = conversion_target(accepted)
    if on_wire is None:
        from dcmtool.dicom.sopclasses import sop_class_name as class_name

        if not accepted:
            raise ValueError(f"no presentation context accepted for {class_name(item.sop_class)}")
        raise ValueError(f"{class_name(item.sop_class)} accepted only in lossy or unknown syntaxes")
    try:
        return transcode(dcmread(item.path), on_wire, EncodeOptions(keep_uid=True))
    except Exception as exc:
        raise ValueError(f"cannot convert the stored file: {exc}") from None
