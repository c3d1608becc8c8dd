"""Storage Commitment Push Model SCU (PS3.4 J.3): ask a peer to commit to keeping instances.

One N-ACTION per transaction (one for everything, or one per study), each with a Transaction
UID of ours; the peer answers at once and reports later with an N-EVENT-REPORT, on the same
association while we keep it open, or on a new association it opens to our port (J.3.3.1.2:
"the SCU is free to release at any time the Association on which it sent the N-ACTION").
Both are awaited together, for ``wait`` seconds after the last request: the association
stays open that long and an acceptor listens on the ``[local]`` port meanwhile.

Every instance ends committed, failed (with the peer's Failure Reason, in words), not
reported (the wait ran out: the outcome is unknown) or not requested (the request never
reached the peer, or it refused it). Nothing here raises for a peer that misbehaves after
the association opened: ``check`` turns the result into the error whose exit code says how
it went, after the caller has printed and recorded it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dcmtool.config import LocalAE, Peer
from dcmtool.dicom import status
from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from dcmtool.errors import (
    CommitmentTimeout,
    DcmtoolError,
    DimseFailure,
    DimseTimeout,
    PartialFailure,
    UsageError,
)
from dcmtool.net import reports as events
from dcmtool.net.association import open_association
from dcmtool.net.contexts import ContextRequest

LOG = logging.getLogger("dcmtool.scu.commit")

COMMITTED = "committed"
FAILED = "failed"
NOT_REPORTED = "not reported"
NOT_REQUESTED = "not requested"

SAME_ASSOCIATION = "same association"
NEW_ASSOCIATION = "new association"


class Referenced(Protocol):
    """Anything that names an instance: a scanned file (``scu.store.Instance``), a C-FIND
    match turned into ``Requested``."""

    @property
    def sop_class_uid(self) -> str: ...

    @property
    def sop_instance_uid(self) -> str: ...

    @property
    def study_instance_uid(self) -> str: ...


@dataclass(frozen=True)
class Requested:
    """An instance to commit, and where it was named (a path, a report, a C-FIND)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str = ""
    source: str = ""

    @classmethod
    def of(cls, item: Referenced) -> Requested:
        if isinstance(item, Requested):
            return item
        path = getattr(item, "path", None)
        return cls(str(item.sop_class_uid), str(item.sop_instance_uid),
                   str(item.study_instance_uid or ""), str(path) if path is not None else "")


@dataclass(frozen=True)
class InstanceResult:
    """What became of one instance."""

    item: Requested
    transaction_uid: str
    state: str  # COMMITTED, FAILED, NOT_REPORTED, NOT_REQUESTED
    failure_reason: int | None = None
    message: str = ""  # the reason in words; empty when committed

    @property
    def committed(self) -> bool:
        return self.state == COMMITTED


@dataclass
class Transaction:
    """One N-ACTION and its report."""

    uid: str
    items: list[Requested]
    study_instance_uid: str | None = None  # --per-study
    #: The N-ACTION response status; ``None`` until answered (or never sent).
    status: int | None = None
    comment: str = ""
    #: Why it was never requested or answered (the association failed).
    error: str = ""
    requested_at: float | None = None  # time.monotonic() at the N-ACTION
    reported_at: float | None = None
    via: str | None = None  # SAME_ASSOCIATION / NEW_ASSOCIATION
    reporter: str = ""  # the AE title that reported
    #: Reported per SOP Instance UID: committed, or the failure reason (None: none given).
    committed: set[str] = field(default_factory=set)
    failed: dict[str, int | None] = field(default_factory=dict)
    #: The Action Information, built (and checked) before the association opens.
    action: Any = field(default=None, repr=False)

    @property
    def accepted(self) -> bool:
        return self.status is not None and status.completed(self.status)

    @property
    def reported(self) -> bool:
        return self.reported_at is not None

    @property
    def seconds(self) -> float | None:
        """From the N-ACTION to its report."""
        if self.requested_at is None or self.reported_at is None:
            return None
        return self.reported_at - self.requested_at

    def results(self) -> list[InstanceResult]:
        from dcmtool.dicom.commitment import describe_failure

        out = []
        for item in self.items:
            uid = item.sop_instance_uid
            if self.reported:  # even a request whose answer was lost may be reported
                if uid in self.failed:
                    reason = self.failed[uid]
                    words = describe_failure(reason) if reason is not None else \
                        "failed, no reason given"
                    out.append(InstanceResult(item, self.uid, FAILED, reason, words))
                elif uid in self.committed:
                    out.append(InstanceResult(item, self.uid, COMMITTED))
                else:
                    out.append(InstanceResult(item, self.uid, FAILED, None,
                                              "not in the peer's report"))
            elif self.accepted:
                out.append(InstanceResult(item, self.uid, NOT_REPORTED, None,
                                          "no report within the wait"))
            else:
                out.append(InstanceResult(item, self.uid, NOT_REQUESTED, None, self.why_not()))
        return out

    def why_not(self) -> str:
        """Why a transaction was never accepted: refused, or the association failed."""
        if self.status is not None:
            comment = f": {self.comment}" if self.comment else ""
            return f"the peer refused the request: {status.describe(self.status)}{comment}"
        return self.error or "not requested"


@dataclass
class CommitResult:
    transactions: list[Transaction] = field(default_factory=list)
    seconds: float = 0.0
    wait: float = 0.0
    #: Why nothing could be requested at all (no association, or it failed at once).
    error: DcmtoolError | None = None
    #: Why the association ended before every transaction was requested.
    aborted_by: DcmtoolError | None = None
    #: Our port for reports on a new association (``None``: not listening).
    port: int | None = None

    def results(self) -> list[InstanceResult]:
        return [r for t in self.transactions for r in t.results()]

    def count(self, state: str) -> int:
        return sum(1 for r in self.results() if r.state == state)


#: Called when a transaction was requested (or refused) and when it was reported.
Progress = Callable[[Transaction], None]


def plan(items: Sequence[Requested], per_study: bool) -> list[Transaction]:
    """One transaction for everything, or one per study (in the order studies appear)."""
    from pydicom.uid import generate_uid

    if not per_study:
        return [Transaction(str(generate_uid()), list(items))]
    studies: dict[str, list[Requested]] = {}
    for item in items:
        studies.setdefault(item.study_instance_uid, []).append(item)
    return [Transaction(str(generate_uid()), group, study or None)
            for study, group in studies.items()]


class _Reports:
    """The transactions awaiting a report, and the report handler both paths call."""

    def __init__(self, transactions: Sequence[Transaction], on_progress: Progress | None
                 ) -> None:
        self.by_uid = {t.uid: t for t in transactions}
        self.on_progress = on_progress
        self.changed = threading.Condition()

    def pending(self) -> list[Transaction]:
        return [t for t in self.by_uid.values()
                if not t.reported and (t.accepted or (t.status is None and not t.error))]

    def receive(self, report: events.EventReport) -> int:
        from dcmtool.dicom.commitment import STORAGE_COMMITMENT_PUSH, parse_event_report

        if report.sop_class_uid != STORAGE_COMMITMENT_PUSH:
            LOG.warning("an N-EVENT-REPORT of SOP class %s from %s: not storage commitment",
                        report.sop_class_uid, report.reporter)
            return events.PROCESSING_FAILURE
        if report.information is None:
            LOG.warning("an N-EVENT-REPORT without Event Information from %s",
                        report.reporter)
            return events.PROCESSING_FAILURE
        try:
            uid, committed, failed = parse_event_report(report.event_type, report.information)
        except ValueError as exc:
            LOG.warning("a malformed storage commitment report from %s: %s (answered 0x0110)",
                        report.reporter, exc)
            return events.PROCESSING_FAILURE
        with self.changed:
            transaction = self.by_uid.get(uid)
            if transaction is None:
                LOG.warning("a storage commitment report from %s for transaction %s, which is "
                            "not one of ours: answered 0x0110", report.reporter, uid)
                return events.PROCESSING_FAILURE
            if transaction.reported:
                LOG.info("transaction %s reported again by %s: the first report stands", uid,
                         report.reporter)
                return events.SUCCESS
            requested = {i.sop_instance_uid for i in transaction.items}
            transaction.committed = {r.sop_instance_uid for r in committed
                                     if r.sop_instance_uid in requested}
            transaction.failed = {r.sop_instance_uid: r.failure_reason for r in failed
                                  if r.sop_instance_uid in requested}
            extra = len(committed) + len(failed) - len(transaction.committed) - \
                len(transaction.failed)
            if extra:
                LOG.warning("the report of transaction %s names %d instance(s) that were not "
                            "requested: ignored", uid, extra)
            transaction.reported_at = time.monotonic()
            transaction.via = SAME_ASSOCIATION if report.same_association else NEW_ASSOCIATION
            transaction.reporter = report.reporter
            self.changed.notify_all()
        if self.on_progress:
            self.on_progress(transaction)
        return events.SUCCESS

    def wake(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def wait(self, deadline: float, while_true: Callable[[], bool] = lambda: True) -> bool:
        """Block until every transaction is reported (True), the deadline passes, or
        ``while_true()`` turns false (False)."""
        with self.changed:
            while self.pending():
                left = deadline - time.monotonic()
                if left <= 0 or not while_true():
                    return False
                self.changed.wait(left)
            return True


def commit(peer: Peer, references: Iterable[Referenced], *, wait: float,
           per_study: bool = False, local: LocalAE, on_progress: Progress | None = None,
           listen: bool = True, keep_open: bool = True) -> CommitResult:
    """Request storage commitment of ``references`` from ``peer`` and await the reports.

    Parameters
    ----------
    peer
        The Storage Commitment SCP.
    references
        The instances (SOP Class, SOP Instance and, for ``per_study``, Study Instance UIDs).
        Duplicates are requested once.
    wait
        Seconds to wait for the reports after the last N-ACTION was answered.
    per_study
        One transaction per study instead of one for everything.
    local
        Our ``[local]`` port and bind address: where a report on a new association comes
        (the peer must know our AE title, ``peer.calling_ae_title``, at this host and port).
    on_progress
        Called with each transaction when it is requested and when it is reported.
    listen
        Run the acceptor on the local port (``False``: reports on the same association only).
    keep_open
        Keep the association open for the reports (``False``: release it once the requests
        are answered; the peer must report on a new association).

    Returns
    -------
    CommitResult
        Every transaction with its UID, N-ACTION status and report; ``check`` raises the
        error that fits it.

    Raises
    ------
    UsageError
        Nothing to commit, or a UID that is not one. Everything else (the local port taken,
        the peer unreachable) is ``result.error``, raised by ``check``.
    """
    from dcmtool.dicom.commitment import STORAGE_COMMITMENT_PUSH

    items = list({i.sop_instance_uid: i for i in map(Requested.of, references)}.values())
    if not items:
        raise UsageError("no instance to commit")
    result = CommitResult(plan(items, per_study), wait=wait)
    for transaction in result.transactions:
        transaction.action = _action(transaction)
    reports = _Reports(result.transactions, on_progress)
    started = time.monotonic()
    listener = None
    if not (listen or keep_open):
        raise UsageError("with the association released and no port to listen on, no "
                         "report could arrive")
    if listen:
        try:
            listener = events.listen_for_reports(
                [STORAGE_COMMITMENT_PUSH], reports.receive, ae_title=peer.calling_ae_title,
                bind=local.bind, port=local.port, max_pdu=peer.max_pdu,
                acse_timeout=peer.timeouts.acse, network_timeout=peer.timeouts.network)
        except DcmtoolError as exc:  # nothing is requested that could not be reported
            for transaction in result.transactions:
                transaction.error = f"not requested: {exc.message}"
            result.error = exc
            return result
        result.port = listener.port
    try:
        deadline = _request_all(peer, result, reports, on_progress, keep_open)
        if deadline is not None and listener is not None:
            reports.wait(deadline)  # on our port, after the association ended
    finally:
        if listener is not None:
            listener.stop()
    result.seconds = time.monotonic() - started
    return result


def await_reports(transactions: Sequence[Transaction], *, wait: float, local: LocalAE,
                  ae_title: str, on_progress: Progress | None = None) -> CommitResult:
    """Listen on our port for the reports of ``transactions`` requested earlier (a late
    report: ``pending_transactions`` reads them from a commit report), for ``wait`` seconds.

    Raises ``DcmtoolError`` when the local port cannot be bound.
    """
    from dcmtool.dicom.commitment import STORAGE_COMMITMENT_PUSH

    result = CommitResult(list(transactions), wait=wait)
    reports = _Reports(result.transactions, on_progress)
    started = time.monotonic()
    listener = events.listen_for_reports(
        [STORAGE_COMMITMENT_PUSH], reports.receive, ae_title=ae_title, bind=local.bind,
        port=local.port)
    result.port = listener.port
    try:
        reports.wait(started + wait)
    finally:
        listener.stop()
    result.seconds = time.monotonic() - started
    return result


def _request_all(peer: Peer, result: CommitResult, reports: _Reports,
                 on_progress: Progress | None, keep_open: bool = True) -> float | None:
    """Send every N-ACTION and wait on the association; the deadline of the wait, or
    ``None`` when nothing was requested."""
    from dcmtool.dicom.commitment import STORAGE_COMMITMENT_PUSH

    context = ContextRequest(STORAGE_COMMITMENT_PUSH,
                             (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN))
    deadline: float | None = None
    current: Transaction | None = None
    try:
        with open_association(peer, [context],
                              handlers=events.report_handlers(reports.receive, reports.wake)
                              ) as session:
            for number, transaction in enumerate(result.transactions, start=1):
                current = transaction
                _request(session, transaction, number)
                current = None
                if on_progress:
                    on_progress(transaction)
            if not reports.pending():
                return None
            if keep_open:  # else released on leaving: the report comes to our port
                deadline = time.monotonic() + result.wait
                events.keep_open(session.assoc, result.wait + 5)
                reports.wait(deadline, lambda: events.is_open(session.assoc))
                if reports.pending() and not events.is_open(session.assoc):
                    LOG.info("%s closed the association before reporting: waiting for the "
                             "report on a new association", peer.label)
    except DcmtoolError as exc:  # connection, rejection, abort: said per transaction
        for transaction in result.transactions:
            if transaction.status is None and not transaction.reported:
                sent = transaction is current
                transaction.error = (f"no answer: {exc.message}" if sent else
                                     f"not requested: {exc.message}")
        if not any(t.accepted for t in result.transactions):
            result.error = exc
            return None
        result.aborted_by = exc
    if deadline is None:  # the wait starts now
        deadline = time.monotonic() + result.wait
    return deadline if reports.pending() else None


def _action(transaction: Transaction) -> Any:
    """The N-ACTION's Action Information; ``UsageError`` for a UID that is not one."""
    from dcmtool.dicom.commitment import Reference, action_request

    try:
        return action_request(transaction.uid, [Reference(i.sop_class_uid, i.sop_instance_uid)
                                                for i in transaction.items])
    except ValueError as exc:
        raise UsageError(f"cannot ask for storage commitment: {exc}") from None


def _request(session: Any, transaction: Transaction, message_id: int) -> None:
    """One N-ACTION (Request Storage Commitment, PS3.4 J.3.2); its status on ``transaction``.
    Raises the association's error when no answer came."""
    from dcmtool.dicom.commitment import (
        REQUEST_COMMITMENT,
        STORAGE_COMMITMENT_INSTANCE,
        STORAGE_COMMITMENT_PUSH,
    )

    transaction.requested_at = time.monotonic()
    response, _reply = session.assoc.send_n_action(
        transaction.action, REQUEST_COMMITMENT, STORAGE_COMMITMENT_PUSH,
        STORAGE_COMMITMENT_INSTANCE, msg_id=message_id)
    code = getattr(response, "Status", None)
    if code is None:
        lost = session.lost("the N-ACTION (storage commitment request)")
        if not isinstance(lost, DimseTimeout):
            # Orthanc aborts a request from an AE it has no DicomModalities entry for.
            lost.hint = (f"the peer's log says why; a storage commitment SCP may abort a "
                         f"request from an AE title it does not know: it must know "
                         f"{session.peer.calling_ae_title} at this host and port to report to")
        raise lost
    transaction.status = int(code)
    transaction.comment = str(getattr(response, "ErrorComment", "") or "")


def check(result: CommitResult) -> None:
    """Raise the error whose exit code says how it went: nothing requested (the association's
    error), reports missing (``CommitmentTimeout``), some failed (partial), all failed."""
    if result.error is not None:
        raise result.error
    results = result.results()
    waiting = [t for t in result.transactions if t.accepted and not t.reported]
    if waiting:
        unknown = sum(len(t.items) for t in waiting)
        where = f" (or on a new association to our port {result.port})" \
            if result.port is not None else ""
        raise CommitmentTimeout(
            f"no storage commitment report within {result.wait:g} s for {len(waiting)} of "
            f"{len(result.transactions)} transaction(s) ({unknown} instance(s)): their outcome "
            "is unknown",
            pending=[t.uid for t in waiting],
            hint=f"the peer reports on the same association{where}; it must know our AE title "
                 "at this host and port. A longer --wait, or ask the peer's operator",
            setting="wait")
    failed = [r for r in results if not r.committed]
    if not failed:
        return
    total = len(results)
    if len(failed) < total:
        raise PartialFailure(f"{len(failed)} of {total} instances not committed")
    refused = [t for t in result.transactions if t.status is not None and not t.accepted]
    if refused and len(refused) == len(result.transactions):
        first = refused[0]
        raise DimseFailure(f"the peer refused the storage commitment request: "
                           f"{status.describe(first.status or 0)}"
                           + (f": {first.comment}" if first.comment else ""),
                           status=first.status or 0)
    if result.aborted_by is not None and not any(t.reported for t in result.transactions):
        raise result.aborted_by
    reasons = [r.failure_reason for r in failed if r.failure_reason is not None]
    raise DimseFailure(f"no instance was committed (first: {failed[0].message})",
                       status=reasons[0] if reasons else 0x0110)


def check_after_store(result: CommitResult, *, not_stored: int) -> None:
    """``check`` for ``store --commit``: a partial result also counts the files that were
    not stored (the caller's store check follows when everything stored was committed)."""
    try:
        check(result)
    except PartialFailure as exc:
        if not_stored:
            raise PartialFailure(f"{not_stored} file(s) not stored; {exc.message}") from None
        raise
