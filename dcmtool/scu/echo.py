"""C-ECHO: verify a peer, time it, and probe which storage contexts it accepts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from dcmtool.config import Peer
from dcmtool.dicom.sopclasses import VERIFICATION, storage_sop_classes
from dcmtool.dicom.syntaxes import (
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    TRANSFER_SYNTAXES,
)
from dcmtool.errors import DcmtoolError, DimseFailure, DimseTimeout
from dcmtool.net.association import Negotiation, open_association
from dcmtool.net.contexts import MAX_CONTEXTS, ContextRequest

_ECHO_SYNTAXES = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)


@dataclass(frozen=True)
class EchoAttempt:
    sequence: int
    status: int | None  # None: no response (timeout or abort)
    rtt_ms: float | None

    @property
    def ok(self) -> bool:
        return self.status == 0x0000


@dataclass
class EchoResult:
    peer: Peer
    negotiation: Negotiation | None = None
    attempts: list[EchoAttempt] = field(default_factory=list)
    error: DcmtoolError | None = None

    @property
    def sent(self) -> int:
        return len(self.attempts)

    @property
    def ok(self) -> int:
        return sum(1 for a in self.attempts if a.ok)

    def _rtts(self) -> list[float]:
        return [a.rtt_ms for a in self.attempts if a.ok and a.rtt_ms is not None]

    @property
    def rtt_min(self) -> float | None:
        return min(self._rtts(), default=None)

    @property
    def rtt_max(self) -> float | None:
        return max(self._rtts(), default=None)

    @property
    def rtt_avg(self) -> float | None:
        rtts = self._rtts()
        return sum(rtts) / len(rtts) if rtts else None

    @property
    def succeeded(self) -> bool:
        return self.error is None and self.sent > 0 and self.ok == self.sent


def echo(
    peer: Peer,
    *,
    count: int = 1,
    interval: float = 1.0,
    on_attempt: Callable[[Peer, EchoAttempt], None] | None = None,
    on_associated: Callable[[Peer, Negotiation], None] | None = None,
    stop: threading.Event | None = None,
) -> EchoResult:
    """Send ``count`` C-ECHO requests over one association, ``interval`` seconds apart.

    Never raises ``DcmtoolError``: failures land in ``EchoResult.error`` so that a summary can
    still be shown, as ping does.
    """
    result = EchoResult(peer)
    stop = stop or threading.Event()
    try:
        with open_association(peer, [ContextRequest(VERIFICATION, _ECHO_SYNTAXES)]) as session:
            result.negotiation = session.negotiation
            if on_associated:
                on_associated(peer, session.negotiation)
            for sequence in range(1, count + 1):
                if sequence > 1 and stop.wait(interval):
                    break
                started = time.perf_counter()
                status_ds = session.assoc.send_c_echo(msg_id=sequence)
                rtt = (time.perf_counter() - started) * 1000
                status = getattr(status_ds, "Status", None)
                attempt = EchoAttempt(sequence, status, rtt if status is not None else None)
                result.attempts.append(attempt)
                if on_attempt:
                    on_attempt(peer, attempt)
                if status is None:
                    dimse = peer.timeouts.dimse
                    if dimse is None or rtt < dimse * 900:
                        # No answer long before the DIMSE timeout: the peer aborted or closed.
                        raise session.lost(f"C-ECHO {sequence}")
                    raise DimseTimeout.waiting(peer.label, f"C-ECHO {sequence}", dimse)
        failed = [a for a in result.attempts if not a.ok]
        if failed:
            result.error = DimseFailure(
                f"{peer.label} answered C-ECHO with status 0x{failed[0].status:04X}",
                status=failed[0].status or 0,
            )
    except DcmtoolError as exc:
        result.error = exc
    return result


def echo_many(
    peers: Sequence[Peer],
    *,
    count: int = 1,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    on_attempt: Callable[[Peer, EchoAttempt], None] | None = None,
) -> list[EchoResult]:
    """Echo several peers concurrently; results in the order given."""
    if not peers:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(peers))) as pool:
        futures = [
            pool.submit(echo, p, count=count, interval=interval, stop=stop, on_attempt=on_attempt)
            for p in peers
        ]
        return [f.result() for f in futures]


# ---------------------------------------------------------------------------------------------
# Probe


@dataclass
class ProbeResult:
    peer: Peer
    proposed: int = 0
    associations: int = 0
    #: SOP class UID -> accepted transfer syntax UIDs (only classes with at least one)
    accepted: dict[str, list[str]] = field(default_factory=dict)
    #: SOP class UID -> the reason given for rejecting it, when every syntax was rejected
    rejected: dict[str, str] = field(default_factory=dict)
    negotiation: Negotiation | None = None


def probe(
    peer: Peer,
    *,
    sop_classes: Sequence[str] | None = None,
    transfer_syntaxes: Sequence[str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ProbeResult:
    """Find out which (storage SOP class, transfer syntax) pairs ``peer`` accepts.

    Each pair is proposed as its own presentation context, so the peer's answer to each is
    visible; pairs are spread over as many associations of at most 128 contexts as needed.
    """
    classes = list(sop_classes or [s.uid for s in storage_sop_classes()])
    syntax_uids = list(transfer_syntaxes or [ts.uid for ts in TRANSFER_SYNTAXES])
    pairs = [(c, t) for c in classes for t in syntax_uids]
    result = ProbeResult(peer, proposed=len(pairs))
    reasons: dict[str, set[str]] = {}
    batches = [pairs[i : i + MAX_CONTEXTS] for i in range(0, len(pairs), MAX_CONTEXTS)]
    for index, batch in enumerate(batches):
        requests = [ContextRequest(c, (t,)) for c, t in batch]
        with open_association(peer, requests, require_accepted=False) as session:
            result.associations += 1
            result.negotiation = result.negotiation or session.negotiation
            for cx in session.negotiation.contexts:
                if cx.accepted:
                    result.accepted.setdefault(cx.abstract_syntax, []).append(
                        cx.transfer_syntaxes[0]
                    )
                else:
                    reasons.setdefault(cx.abstract_syntax, set()).add(cx.reason)
        if on_progress:
            on_progress(index + 1, len(batches))
    for uid, why in reasons.items():
        if uid not in result.accepted:
            result.rejected[uid] = ", ".join(sorted(why))
    order = {t: i for i, t in enumerate(syntax_uids)}
    for uid in result.accepted:
        result.accepted[uid].sort(key=lambda t: order.get(t, len(order)))
    return result
