"""How an association attempt went, in dcmtool's words: what was negotiated, and the typed
error for each way it fails.

Shared by both clients, pynetdicom's (``net.association``) and the plain-TCP one
(``net.lean.client``), so that a peer gets the same message, hint and exit code whichever
client talked to it. Pure: no pynetdicom, no pydicom, no sockets opened here.
"""

from __future__ import annotations

import errno
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from dcmtool.config import Peer
from dcmtool.errors import (
    AssociationAborted,
    AssociationRejected,
    AssociationTimeout,
    ConnectionFailed,
    NoAcceptableContext,
)

#: Presentation context results (PS3.8 9.3.3.2).
CONTEXT_RESULTS = {
    0: "accepted",
    1: "user rejection",
    2: "no reason given",
    3: "abstract syntax not supported",
    4: "transfer syntaxes not supported",
}


@dataclass(frozen=True)
class ContextResult:
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]  # accepted: the one chosen; rejected: those proposed
    result: int

    @property
    def accepted(self) -> bool:
        return self.result == 0

    @property
    def reason(self) -> str:
        return CONTEXT_RESULTS.get(self.result, f"result {self.result}")


@dataclass(frozen=True)
class Negotiation:
    """What the peer told us while associating, for ``-v`` output and ``--probe``."""

    associate_ms: float
    peer_implementation_class_uid: str | None
    peer_implementation_version_name: str | None
    peer_max_pdu: int | None
    contexts: tuple[ContextResult, ...] = field(default_factory=tuple)

    @property
    def accepted(self) -> tuple[ContextResult, ...]:
        return tuple(cx for cx in self.contexts if cx.accepted)


# ---------------------------------------------------------------------------------------------
# A-ASSOCIATE-RJ (PS3.8 9.3.4): the texts are pynetdicom's (``A_ASSOCIATE.source_str`` and
# ``reason_str``), which the messages quoted before this client existed.

REJECT_SOURCES = {
    1: "Service User",
    2: "Service Provider (ACSE)",
    3: "Service Provider (Presentation)",
}
REJECT_REASONS = {
    1: {1: "No reason given", 2: "Application context name not supported",
        3: "Calling AE title not recognised", 7: "Called AE title not recognised"},
    2: {1: "No reason given", 2: "Protocol version not supported"},
    3: {1: "Temporary congestion", 2: "Local limit exceeded", 3: "Reserved", 7: "Reserved"},
}
#: What cannot be told otherwise: "(no value available)", as pynetdicom says.
_UNKNOWN = "(no value available)"


def rejection_problem(result: int, source: int, reason: int) -> str | None:
    """Why an A-ASSOCIATE-RJ's values are not ones PS3.8 defines, or ``None``; worded as
    pynetdicom words it, so that both clients report a malformed rejection alike."""
    if result not in (1, 2):
        return "Unknown A_ASSOCIATE.result value"
    if source not in REJECT_SOURCES:
        return "Unknown A_ASSOCIATE.result_source value"
    if reason not in (1, 2, 3, 7):
        return "Unknown A_ASSOCIATE.diagnostic value"
    return None


def rejection_lines(result: int, source: int, reason: int) -> list[str]:
    """The rejection as pynetdicom logs it (three lines, shown with ``-v``)."""
    kind = {1: "Rejected Permanent", 2: "Rejected Transient"}.get(result, _UNKNOWN)
    return ["Association Rejected",
            f"Result: {kind}, Source: {REJECT_SOURCES.get(source, _UNKNOWN)}",
            f"Reason: {REJECT_REASONS.get(source, {}).get(reason, _UNKNOWN)}"]


def rejection(peer: Peer, result: int, source: int, reason: int) -> AssociationRejected:
    """The error for an A-ASSOCIATE-RJ, with a hint for the reasons a user can act on."""
    reason_text = REJECT_REASONS.get(source, {}).get(reason, _UNKNOWN).lower()
    kind = "permanently" if result == 1 else "transiently"
    hints = {
        (1, 3): f"the peer does not know calling AE title {peer.calling_ae_title!r}: "
        "register it on the peer or use a calling AE title it knows",
        (1, 7): f"the peer is not called {peer.called_ae_title!r}: check the called AE title",
        (3, 1): "the peer is busy or at its association limit: try again later",
        (3, 2): "the peer is at its association limit: try again later",
    }
    settings = {(1, 3): "calling_ae_title", (1, 7): "called_ae_title"}
    return AssociationRejected(
        f"association rejected {kind} by {peer.label}: {reason_text} "
        f"(source: {REJECT_SOURCES.get(source, _UNKNOWN).lower()})",
        result=result,
        source=source,
        reason=reason,
        hint=hints.get((source, reason)),
        setting=settings.get((source, reason)),
    )


def malformed_rejection(peer: Peer, problem: str) -> AssociationAborted:
    return AssociationAborted(f"{peer.label} answered with a malformed A-ASSOCIATE-RJ "
                              f"({problem})")


# ---------------------------------------------------------------------------------------------
# No connection, no answer, no usable context


def connection_failed(peer: Peer, exc: OSError | None) -> ConnectionFailed:
    """The error for a TCP connection (or TLS handshake) that failed with ``exc``."""
    where = f"{peer.host}:{peer.port}"
    ssl = sys.modules.get("ssl")  # not imported: then it cannot be a TLS error
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return ConnectionFailed(f"TLS handshake with {where} failed: {exc.reason or exc}",
                                hint="check the certificates and that the peer speaks TLS")
    if isinstance(exc, socket.timeout | TimeoutError):
        return ConnectionFailed(f"connection to {where} timed out",
                                hint="check the host, the port and any firewall in between")
    code = getattr(exc, "errno", None)
    if code == errno.ECONNREFUSED:
        return ConnectionFailed(f"connection to {where} refused",
                                hint="is the DICOM service running and listening on that port?")
    if exc is not None and code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return ConnectionFailed(f"host {peer.host} unreachable ({exc.strerror})",
                                hint="check the address and the network route")
    if isinstance(exc, socket.gaierror):
        return ConnectionFailed(f"cannot resolve host {peer.host!r}: {exc.strerror}")
    detail = "unknown error" if exc is None else (exc.strerror or str(exc))
    return ConnectionFailed(f"cannot connect to {where}: {detail}")


def association_timeout(peer: Peer, acse: float) -> AssociationTimeout:
    return AssociationTimeout(
        f"{peer.label} ({peer.host}:{peer.port}) did not answer the association request "
        f"within {acse:g} s",
        hint="is it a DICOM port? raise the ACSE timeout for slow peers",
        setting="acse_timeout",
    )


def closed_before_answer(peer: Peer) -> AssociationAborted:
    return AssociationAborted(
        f"{peer.label} closed the connection without answering the association request",
        hint="is it a DICOM port, and does it expect TLS (or not)?",
    )


def aborted_request(peer: Peer) -> AssociationAborted:
    return AssociationAborted(
        f"{peer.label} aborted the association request",
        hint="the peer's log says why; some peers abort instead of rejecting unknown AEs",
    )


def released_while_associating(peer: Peer) -> AssociationAborted:
    return AssociationAborted(f"{peer.label} released the connection while associating")


def closed_while_associating(peer: Peer) -> AssociationAborted:
    return AssociationAborted(f"{peer.label} closed the connection while associating")


def aborted_during(peer: Peer, during: str) -> AssociationAborted:
    """A request sent and never answered because the peer aborted (or closed)."""
    return AssociationAborted(
        f"{peer.label} aborted the association during {during}",
        hint="the peer's log says why; it may have refused the data or hit a limit",
    )


def no_acceptable_context(peer: Peer, contexts: Sequence[ContextResult]) -> NoAcceptableContext:
    """The peer accepted the association but none of ``contexts`` (all that were proposed)."""
    reasons = sorted({cx.reason for cx in contexts})
    return NoAcceptableContext(
        f"{peer.label} accepted none of the {len(contexts)} proposed presentation "
        f"contexts ({', '.join(reasons)})",
        **_no_context_hint(cx.abstract_syntax for cx in contexts))


def _no_context_hint(abstract_syntaxes: Iterable[str]) -> dict[str, str]:
    """What to try when nothing was accepted: the storage probe shows storage classes only,
    so it is suggested for storage; a query/retrieve class refused means the peer does not
    offer that service (a storage-only SCP, or another information model)."""
    from dcmtool.dicom.sopclasses import MODALITY_WORKLIST_FIND, QR_MODELS, sop_class_name

    classes = list(dict.fromkeys(abstract_syntaxes))
    query = [uid for uid in classes if uid in (*QR_MODELS, MODALITY_WORKLIST_FIND)]
    if not query:
        return {"hint": "the peer does not support this SOP class or transfer syntax; "
                "a storage probe shows what it accepts", "setting": "probe"}
    names = ", ".join(sop_class_name(uid) for uid in query)
    return {"hint": f"the peer does not offer {names}: it may be a storage-only SCP, or "
            "offer another information model (-P Patient Root, -S Study Root); its "
            "conformance statement lists what it offers"}
