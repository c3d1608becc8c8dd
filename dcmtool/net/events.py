"""Sending N-EVENT-REPORTs as an SCP: on the association a request came on, or on a new one.

A Storage Commitment SCP reports its result with an N-EVENT-REPORT (PS3.4 J.3.3): on the
association of the N-ACTION when the requester keeps it open, else on an association it opens
itself to the requester, proposing the SOP class with SCP/SCU Role Selection so that it acts as
the SCP of the class while being the association requester (J.3.3, PS3.7 D.3.3.4). The SCP code
(``scp.commitment``) calls these functions and never touches pynetdicom itself.
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from dcmtool.net import acceptor
from dcmtool.net.links import link
from dcmtool.net.patches.connect_errors import CONNECT_ERRORS
from dcmtool.net.wire import next_message_id


@dataclass(frozen=True)
class Delivery:
    """What became of an N-EVENT-REPORT: the peer's status, or why it was not delivered."""

    status: int | None
    comment: str | None = None
    #: "the same association" or "a new association"
    how: str = ""

    @property
    def delivered(self) -> bool:
        return self.status is not None


#: One N-EVENT-REPORT at a time per association: each waits for its own response.
_SENDING: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_sending_guard = threading.Lock()


def after_response(assoc: Any, message_id: int) -> threading.Event:
    """An Event set once our response to request ``message_id`` on ``assoc`` is queued to go
    (``patches.response_hooks``). Call it in the request's handler, before returning."""
    queued = threading.Event()
    link(assoc).after_response[message_id] = queued.set
    return queued


def forget_response(assoc: Any, message_id: int) -> None:
    """Drop an ``after_response`` registration whose response will never be sent."""
    link(assoc).after_response.pop(message_id, None)


def is_open(assoc: Any) -> bool:
    """The association is established and not being released or aborted."""
    return bool(assoc.is_established) and not bool(getattr(assoc, "_sent_release", False))


def _lock_for(assoc: Any) -> threading.Lock:
    with _sending_guard:
        lock = _SENDING.get(assoc)
        if lock is None:
            lock = _SENDING[assoc] = threading.Lock()
        return lock


def release_requested(assoc: Any) -> bool:
    """The peer asked to release ``assoc`` (its A-RELEASE-RQ is queued, not yet answered);
    pynetdicom's ``acse.is_release_requested()`` would take it off the queue."""
    from pynetdicom.pdu_primitives import A_RELEASE

    primitive = assoc.dul.peek_next_pdu()
    return isinstance(primitive, A_RELEASE) and primitive.result is None


def _pause_reactor(assoc: Any) -> bool:
    """Pause the association's reactor as pynetdicom's ``send_*()`` do; ``False`` when it
    ended instead."""
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        if not assoc.is_alive():
            return False
        time.sleep(0.0001)
    return True


def _await_response(assoc: Any, message_id: int, timeout: float | None) -> tuple[Any, str]:
    """The N-EVENT-REPORT-RSP to ``message_id``, or (None, why not). Unlike pynetdicom's
    blocking wait, it also stops when the peer asks to release (a requester that released
    right after the N-ACTION-RSP never answers a report crossing its A-RELEASE-RQ) and leaves
    any other message where the reactor finds it."""
    from pynetdicom.dimse_primitives import N_EVENT_REPORT

    queue_ = assoc.dimse.msg_queue
    deadline = None if timeout is None else time.monotonic() + timeout
    others: list[Any] = []
    try:
        while True:
            if release_requested(assoc):
                return None, "the requester released the association instead of answering"
            # While we hold the reactor, it cannot notice an abort: look for it ourselves.
            if not assoc.is_established or assoc.acse.is_aborted() or \
                    not assoc.dul.is_alive():
                return None, "the association was aborted before the answer"
            if deadline is not None and time.monotonic() >= deadline:
                link(assoc).dimse_timeout_fired = float(timeout or 0)
                assoc.abort()
                return None, f"no answer within {timeout:g} s (DIMSE timeout)"
            try:
                item = queue_.get(timeout=_POLL)
            except queue.Empty:
                continue
            _context_id, message = item
            if message is None:  # the state machine's wake-up after an abort
                others.append(item)
                return None, "the association was aborted before the answer"
            if isinstance(message, N_EVENT_REPORT) and \
                    message.MessageIDBeingRespondedTo == message_id:
                return message, ""
            others.append(item)  # a request of the peer's: the reactor's to serve
    finally:
        if others:
            with queue_.mutex:
                queue_.queue.extendleft(reversed(others))
                queue_.unfinished_tasks += len(others)
                queue_.not_empty.notify()


#: How often a wait for a report's answer looks at the association's state.
_POLL = 0.01


def _send(assoc: Any, sop_class: str, sop_instance: str, event_type: int, information: Any,
          how: str) -> Delivery:
    from pynetdicom.dimse_primitives import N_EVENT_REPORT
    from pynetdicom.dsutils import encode

    with _lock_for(assoc):
        if not is_open(assoc) or release_requested(assoc):
            return Delivery(None, "the requester released the association", how)
        try:
            context = assoc._get_valid_context(sop_class, "", None)
        except ValueError as exc:
            return Delivery(None, str(exc), how)
        syntax = context.transfer_syntax[0]
        if callable(information):  # encodes itself for the context's syntax, or hands back
            information = information(str(syntax))  # a Dataset for pynetdicom to encode
        encoded = information if isinstance(information, bytes) else encode(
            information, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
        if encoded is None:
            return Delivery(None, "the Event Information cannot be encoded", how)
        request = N_EVENT_REPORT()
        request.MessageID = next_message_id(assoc)
        request.AffectedSOPClassUID = sop_class
        request.AffectedSOPInstanceUID = sop_instance
        request.EventTypeID = event_type
        request.EventInformation = BytesIO(encoded)
        if not _pause_reactor(assoc):
            return Delivery(None, "the association ended before the report", how)
        try:
            assoc.dimse.send_msg(request, context.context_id)
            response, why = _await_response(assoc, request.MessageID, assoc.dimse_timeout)
        finally:
            assoc._reactor_checkpoint.set()
    if response is None:
        return Delivery(None, why, how)
    comment = getattr(response, "ErrorComment", None)
    return Delivery(int(response.Status), str(comment) if comment else None, how)


def report_on(assoc: Any, sop_class: str, sop_instance: str, event_type: int,
              information: Any) -> Delivery:
    """Send an N-EVENT-REPORT on ``assoc``, an association the peer requested (any
    presentation context for ``sop_class`` will do: N-EVENT-REPORT ignores the roles).

    ``information``: the Event Information as a Dataset, or a function of the context's
    transfer syntax UID returning its encoding (bytes) or a Dataset."""
    return _send(assoc, sop_class, sop_instance, event_type, information,
                 "the same association")


def report_to(ae: Any, address: tuple[str, int], called_aet: str, sop_class: str,
              sop_instance: str, event_type: int, information: Any) -> Delivery:
    """Open an association from ``ae`` to ``called_aet`` at ``address``, proposing
    ``sop_class`` with the SCP role for us (Role Selection), send the N-EVENT-REPORT, release.
    """
    from pynetdicom import build_context, build_role

    how = "a new association"
    host, port = address
    contexts = [build_context(sop_class, [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN])]
    role = build_role(sop_class, scu_role=False, scp_role=True)
    try:
        assoc = ae.associate(host, port, ae_title=called_aet, contexts=contexts,
                             ext_neg=[role])
    except (OSError, RuntimeError, ValueError) as exc:
        return Delivery(None, f"cannot associate with {called_aet} at {host}:{port}: {exc}",
                        how)
    if not assoc.is_established:
        acceptor.close_connection(assoc)
        refused = CONNECT_ERRORS.pop(assoc, None)
        if refused is not None:
            why = f"cannot be reached ({refused.strerror or refused})"
        elif assoc.is_rejected:
            why = "rejected the association"
        elif getattr(assoc, "is_aborted", False):
            why = "aborted the association"
        else:
            why = "did not answer"
        return Delivery(None, f"{called_aet} at {host}:{port} {why}", how)
    try:
        if not any(cx.abstract_syntax == sop_class for cx in assoc.accepted_contexts):
            return Delivery(None, f"{called_aet} at {host}:{port} accepted no presentation "
                            "context for Storage Commitment Push Model", how)
        return _send(assoc, sop_class, sop_instance, event_type, information, how)
    finally:
        if assoc.is_established:
            assoc.release()
