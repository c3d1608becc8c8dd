"""Opening associations: one function, typed errors for every way it can go wrong."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from pynetdicom import AE, evt
from pynetdicom.presentation import PresentationContext

from dcmtool.config import Peer
from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
from dcmtool.errors import AssociationAborted, AssociationRejected, DimseTimeout
from dcmtool.net import outcomes, patches, settings
from dcmtool.net.contexts import ContextRequest, build_contexts, role_selection
from dcmtool.net.links import link
from dcmtool.net.outcomes import ContextResult, Negotiation
from dcmtool.net.patches.connect_errors import CONNECT_ERRORS
from dcmtool.net.tls import tls_client_context

LOG = logging.getLogger("dcmtool.net.association")

__all__ = ["Association", "ContextResult", "Negotiation", "make_ae", "open_association",
           "tls_client_context"]


def _rejection(peer: Peer, primitive: Any) -> AssociationRejected:
    return outcomes.rejection(peer, primitive.result, primitive.result_source,
                              primitive.diagnostic)


def _context_results(
    assoc: Any, proposed: Sequence[PresentationContext]
) -> tuple[ContextResult, ...]:
    results: dict[int, ContextResult] = {}
    for cx in proposed:
        cx_id = int(cx.context_id or 0)
        results[cx_id] = ContextResult(
            cx_id, str(cx.abstract_syntax), tuple(str(t) for t in cx.transfer_syntax), 2
        )
    for cx in assoc.accepted_contexts:
        results[cx.context_id] = ContextResult(
            cx.context_id, str(cx.abstract_syntax), (str(cx.transfer_syntax[0]),), 0
        )
    for cx in assoc.rejected_contexts:
        if cx.context_id in results:
            prior = results[cx.context_id]
            results[cx.context_id] = ContextResult(
                prior.context_id, prior.abstract_syntax, prior.transfer_syntaxes, int(cx.result)
            )
    return tuple(results[k] for k in sorted(results))


def make_ae(peer: Peer) -> AE:
    patches.apply()
    settings.sync_pdu_logging()
    ae = AE(ae_title=peer.calling_ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = implementation_version_name()
    ae.connection_timeout = peer.timeouts.connect
    ae.acse_timeout = peer.timeouts.acse or 3600 * 24  # pynetdicom needs a number here
    ae.dimse_timeout = peer.timeouts.dimse
    ae.network_timeout = peer.timeouts.network
    ae.maximum_pdu_size = peer.max_pdu
    return ae


@dataclass
class Association:
    """An established association: the pynetdicom object and what was negotiated."""

    peer: Peer
    assoc: Any  # pynetdicom.association.Association
    negotiation: Negotiation

    def lost(self, during: str) -> AssociationAborted:
        """The error for a request sent and never answered: the association is going down.

        ``DimseTimeout`` when nothing came within the DIMSE timeout and dcmtool aborted the
        association itself; otherwise the peer aborted it (or the connection closed).
        pynetdicom wakes the requestor before its reactor has marked the association aborted;
        waiting for that thread lets the caller see a settled association afterwards.
        """
        self.assoc.join(2.0)
        waited = link(self.assoc).dimse_timeout_fired
        if waited is not None:
            return DimseTimeout.waiting(self.peer.label, during, waited)
        return outcomes.aborted_during(self.peer, during)


@contextmanager
def open_association(
    peer: Peer,
    contexts: Sequence[ContextRequest],
    *,
    require_accepted: bool = True,
    handlers: Sequence[tuple[Any, Callable[..., Any]]] = (),
    ae: AE | None = None,
) -> Iterator[Association]:
    """Associate with ``peer`` proposing ``contexts``; release (or abort) on exit.

    Parameters
    ----------
    peer
        The resolved peer (address, AE titles, timeouts, TLS).
    contexts
        At most 128 presentation contexts to propose.
    require_accepted
        Raise ``NoAcceptableContext`` when the peer accepts none. ``--probe`` turns this off
        and reads the rejections instead.
    handlers
        pynetdicom event handlers bound for the association's lifetime.
    ae
        An AE to use instead of a fresh one (a C-GET requestor adds SCP-role storage handlers).

    Raises
    ------
    ConnectionFailed, AssociationTimeout, AssociationRejected, AssociationAborted,
    NoAcceptableContext
    """
    ae = ae or make_ae(peer)
    proposed = build_contexts(contexts)
    received: list[str] = []

    connected: list[bool] = []

    rejections: list[Any] = []

    def on_pdu_recv(event: Any) -> None:
        received.append(type(event.pdu).__name__)
        if received[-1] == "A_ASSOCIATE_RJ":
            rejections.append(event.pdu)

    def on_conn_open(event: Any) -> None:
        connected.append(True)

    evt_handlers = [(evt.EVT_PDU_RECV, on_pdu_recv), (evt.EVT_CONN_OPEN, on_conn_open), *handlers]
    started = time.perf_counter()
    assoc = ae.associate(
        peer.host,
        peer.port,
        contexts=proposed,
        ae_title=peer.called_ae_title,
        max_pdu=peer.max_pdu,
        ext_neg=role_selection(contexts) or None,
        evt_handlers=cast(Any, evt_handlers),
        tls_args=cast(Any, tls_client_context(peer)),
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    for event, handler in ((evt.EVT_PDU_RECV, on_pdu_recv), (evt.EVT_CONN_OPEN, on_conn_open)):
        with contextlib.suppress(Exception):  # already gone with a dead association
            assoc.unbind(event, handler)

    if assoc.is_rejected:
        raise _rejection(peer, assoc.acceptor.primitive)
    if rejections and not assoc.is_established:
        # pynetdicom's requestor can lose a rejection: when the A-ASSOCIATE-RJ arrives and the
        # DUL closes the connection before the requesting thread checks that it is connected,
        # it aborts instead (1 in 10 against Orthanc on a busy machine). The PDU says it all.
        try:
            primitive = rejections[0].to_primitive()
        except ValueError as exc:  # a rejection with values PS3.8 does not define
            raise outcomes.malformed_rejection(peer, str(exc)) from None
        raise _rejection(peer, primitive)

    acceptor = assoc.acceptor
    accepted_pdu = acceptor.primitive is not None and acceptor.primitive.result == 0
    negotiation = Negotiation(
        associate_ms=elapsed_ms,
        peer_implementation_class_uid=str(acceptor.implementation_class_uid or "") or None
        if accepted_pdu else None,
        peer_implementation_version_name=(
            str(acceptor.implementation_version_name or "") or None if accepted_pdu else None
        ),
        peer_max_pdu=acceptor.maximum_length if accepted_pdu else None,
        contexts=_context_results(assoc, proposed) if accepted_pdu else (),
    )

    if not assoc.is_established:
        if accepted_pdu and not assoc.accepted_contexts:
            if not require_accepted:
                yield Association(peer, assoc, negotiation)
                return
            raise outcomes.no_acceptable_context(peer, negotiation.contexts)
        error = CONNECT_ERRORS.pop(assoc, None)
        if error is not None or not connected:
            raise outcomes.connection_failed(peer, error)
        if not received:
            acse = peer.timeouts.acse
            if acse and elapsed_ms >= acse * 1000 * 0.95:  # 0/None: no timeout
                raise outcomes.association_timeout(peer, acse)
            raise outcomes.closed_before_answer(peer)
        if "A_ABORT_RQ" in received:
            raise outcomes.aborted_request(peer)
        if "A_RELEASE_RQ" in received or "A_RELEASE_RP" in received:
            raise outcomes.released_while_associating(peer)
        raise outcomes.closed_while_associating(peer)

    LOG.debug("associated with %s in %.1f ms", peer.address, elapsed_ms)
    session = Association(peer, assoc, negotiation)
    try:
        yield session
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    else:
        if assoc.is_established:
            assoc.release()
            if not assoc.is_released and assoc.is_established:
                assoc.abort()
