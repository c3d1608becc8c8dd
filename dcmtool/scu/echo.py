"""C-ECHO: verify a peer, time it, and probe which storage contexts it accepts.

A plain C-ECHO goes through the plain-TCP client (``net.lean``), which imports neither
pynetdicom nor pydicom: for ``dcmtool echo`` they would cost more than the whole exchange.
pynetdicom's PDU log (``-d``) and ``probe`` take pynetdicom's client, imported then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from dcmtool.config import Peer
from dcmtool.dicom.sopclasses import VERIFICATION
from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from dcmtool.errors import DcmtoolError, DimseFailure, DimseTimeout
from dcmtool.net.contexts import MAX_CONTEXTS, ContextRequest
from dcmtool.net.lean import client as lean_client
from dcmtool.net.outcomes import Negotiation

if TYPE_CHECKING:
    from dcmtool.net.association import Association

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


class _EchoSession(Protocol):
    """An established association that sends C-ECHOs, whichever client opened it."""

    negotiation: Negotiation

    def send_c_echo(self, message_id: int) -> int | None:
        """The response's Status; ``None`` when none came."""

    def lost(self, during: str) -> DcmtoolError:
        """Why no response came to the request ``during``."""


def uses_pynetdicom(peer: Peer) -> bool:
    """Whether ``echo`` talks to ``peer`` through pynetdicom: when its PDU log is read
    (``-d``); otherwise dcmtool's own client does (plain TCP or TLS), without importing it."""
    return not lean_client.usable(peer)


@contextmanager
def _verification(peer: Peer, lean: bool) -> Iterator[_EchoSession]:
    contexts = [ContextRequest(VERIFICATION, _ECHO_SYNTAXES)]
    if lean and lean_client.usable(peer):
        with lean_client.open_association(peer, contexts) as session:
            yield session
        return
    from dcmtool.net.association import open_association

    with open_association(peer, contexts) as association:
        yield _PynetdicomEcho(association)


class _PynetdicomEcho:
    def __init__(self, association: Association) -> None:
        self.association = association
        self.negotiation = association.negotiation

    def send_c_echo(self, message_id: int) -> int | None:
        status_ds = self.association.assoc.send_c_echo(msg_id=message_id)
        status: int | None = getattr(status_ds, "Status", None)
        return status

    def lost(self, during: str) -> DcmtoolError:
        return self.association.lost(during)


def echo(
    peer: Peer,
    *,
    count: int = 1,
    interval: float = 1.0,
    on_attempt: Callable[[Peer, EchoAttempt], None] | None = None,
    on_associated: Callable[[Peer, Negotiation], None] | None = None,
    stop: threading.Event | None = None,
    lean: bool = True,
) -> EchoResult:
    """Send ``count`` C-ECHO requests over one association, ``interval`` seconds apart.

    Never raises ``DcmtoolError``: failures land in ``EchoResult.error`` so that a summary can
    still be shown, as ping does. ``lean=False`` takes pynetdicom's client even where the
    plain-TCP one would do (tests of pynetdicom's fixes use C-ECHO).
    """
    result = EchoResult(peer)
    stop = stop or threading.Event()
    try:
        with _verification(peer, lean) as session:
            result.negotiation = session.negotiation
            if on_associated:
                on_associated(peer, session.negotiation)
            for sequence in range(1, count + 1):
                if sequence > 1 and stop.wait(interval):
                    break
                started = time.perf_counter()
                status = session.send_c_echo(sequence)
                rtt = (time.perf_counter() - started) * 1000
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
    from concurrent.futures import ThreadPoolExecutor  # not for a single peer: start-up time

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
    from dcmtool.dicom.sopclasses import storage_sop_classes
    from dcmtool.dicom.syntaxes import TRANSFER_SYNTAXES
    from dcmtool.net.association import open_association

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
