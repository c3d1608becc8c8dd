"""serve as Storage Commitment Push Model SCP (PS3.4 J): commit only what is really kept.

An N-ACTION "Request Storage Commitment" is answered at once: refused (0x0110 with an Error
Comment) when its Action Information is malformed or when the calling AE is not a node of the
config file (the report could not reach it otherwise), else success. Then, on a thread of its
own, each reference is checked: it is committed only when the instance is in the index, its
file is present, readable and still that instance, and its SOP class is the one requested;
otherwise it fails with 0x0112 (no such object instance: not stored, file gone or unreadable)
or 0x0119 (class/instance conflict). The result goes back in an N-EVENT-REPORT (J.3.3): on the
requester's association while it stays open, else on a new association to the calling AE's
node, where serve proposes the SCP role (``net.events``). Every request, result and delivery
is logged on ``dcmtool.serve`` and audited. Handlers never raise: every outcome is a status.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcmtool.archive.storage import Archive
from dcmtool.dicom.commands import status_dataset
from dcmtool.dicom.commitment import (
    ALL_COMMITTED,
    REQUEST_COMMITMENT,
    SOME_FAILED,
    STORAGE_COMMITMENT_INSTANCE,
    STORAGE_COMMITMENT_PUSH,
    Reference,
    describe_failure,
    encode_event_information,
    event_report,
    parse_action,
    parse_action_data,
)
from dcmtool.dicom.status import describe
from dcmtool.net import events
from dcmtool.scp.destinations import MoveDestinations
from dcmtool.scp.report import plural

LOG = logging.getLogger("dcmtool.serve")

NO_SUCH_OBJECT_INSTANCE = 0x0112
CLASS_INSTANCE_CONFLICT = 0x0119
DUPLICATE_TRANSACTION = 0x0131
PROCESSING_FAILURE = 0x0110

#: How long a report waits for the N-ACTION response to be on its way before giving up on the
#: requester's association (it was aborted before the response could be sent).
RESPONSE_WAIT = 30.0

#: (association) -> {"calling_aet", "called_aet", "peer"}
Who = Callable[[Any], dict[str, Any]]




@dataclass
class _Job:
    assoc: Any
    ae: Any
    response_queued: threading.Event
    message_id: int
    transaction_uid: str
    references: list[Reference]
    who: dict[str, Any]
    address: tuple[str, int]


def file_problem(path: Path, sop_instance_uid: str, size: int) -> str | None:
    """Why the stored file at ``path`` does not hold ``sop_instance_uid`` whole (gone,
    unreadable, another size than stored, another instance), or ``None`` when it does."""
    from dcmtool.dicom.part10 import header_of

    try:
        with open(path, "rb") as fh:
            found = os.fstat(fh.fileno()).st_size
            head = fh.read(8192)
    except OSError as exc:
        return f"its file cannot be read ({exc.strerror or exc})"
    if found != size:
        return f"its file is {found} bytes, {size} were stored"
    header = header_of(head)
    if header is not None:
        instance = header.meta_sop_instance_uid
    else:  # an unusual header: pydicom decides
        try:
            from pydicom.filereader import read_file_meta_info

            instance = str(read_file_meta_info(path).get("MediaStorageSOPInstanceUID", ""))
        except Exception as exc:
            return f"its file cannot be parsed ({exc})"
    if instance != sop_instance_uid:
        return "its file holds another instance"
    return None


class CommitmentSCP:
    """The N-ACTION handler of one server and the threads that report its results."""

    def __init__(self, archive: Archive, ae_title: str, destinations: MoveDestinations,
                 who: Who, session: Callable[[Any], Any]) -> None:
        self.archive = archive
        self.ae_title = ae_title
        self.destinations = destinations
        self._who = who
        self._session = session
        self._lock = threading.Lock()
        self._workers: set[threading.Thread] = set()
        self._transactions: set[str] = set()  # being checked or reported

    # -- the N-ACTION -----------------------------------------------------------------------

    def on_action(self, event: Any) -> tuple[Any, Any]:
        try:
            return self._action(event), None
        except Exception as exc:  # a bug costs this request, never the association
            LOG.exception("N-ACTION handler failed")
            return status_dataset(PROCESSING_FAILURE, f"internal error: {type(exc).__name__}"), None

    def _refuse(self, who: dict[str, Any], code: int, comment: str,
                transaction_uid: str | None = None) -> Any:
        LOG.warning("storage commitment request from %s refused with %s: %s",
                    who["calling_aet"] or "?", describe(code), comment)
        self.archive.audit.write("commitment-refused", transaction_uid=transaction_uid,
                                 status=f"0x{code:04X}", reason=comment, **who)
        return status_dataset(code, comment)

    def _action(self, event: Any) -> Any:
        who = self._who(event.assoc)
        self._session(event.assoc).request("N-ACTION")
        request = event.request
        if str(request.RequestedSOPClassUID) != STORAGE_COMMITMENT_PUSH:
            return self._refuse(who, 0x0118, f"SOP class {request.RequestedSOPClassUID} has "
                                "no N-ACTION here")
        if str(request.RequestedSOPInstanceUID) != STORAGE_COMMITMENT_INSTANCE:
            return self._refuse(who, NO_SUCH_OBJECT_INSTANCE, "the storage commitment "
                                f"instance is {STORAGE_COMMITMENT_INSTANCE}")
        if request.ActionTypeID != REQUEST_COMMITMENT:
            return self._refuse(who, 0x0123, f"no action type {request.ActionTypeID} "
                                f"(storage commitment is {REQUEST_COMMITMENT})")
        if self.archive.plain:
            return self._refuse(who, PROCESSING_FAILURE, "this storage SCP is no archive: "
                                "it commits nothing")
        raw = request.ActionInformation
        data = raw.getvalue() if raw is not None else b""
        if not data:
            return self._refuse(who, PROCESSING_FAILURE, "no Action Information")
        try:
            parsed = parse_action_data(data, str(event.context.transfer_syntax))
            if parsed is None:  # an encoding the fast reader leaves to pydicom
                try:
                    information = event.action_information
                except Exception as exc:
                    raise ValueError(f"the Action Information cannot be decoded: {exc}"
                                     ) from None
                parsed = parse_action(information)
        except ValueError as exc:
            return self._refuse(who, PROCESSING_FAILURE, str(exc))
        transaction_uid, references = parsed
        calling = who["calling_aet"]
        address = self.destinations.lookup(calling)
        if address is None:
            where = self.destinations.path or "the config file"
            return self._refuse(
                who, PROCESSING_FAILURE,
                f"unknown AE {calling}: add it as a node (dcmtool config add NAME "
                f"{calling}@HOST:PORT) so that the report can reach it; no node of {where} "
                "has that AE title",
                transaction_uid)
        message_id = int(request.MessageID)
        job = _Job(event.assoc, event.assoc.ae, events.after_response(event.assoc, message_id),
                   message_id, transaction_uid, references, who, address)
        self.archive.audit.write("commitment-requested", transaction_uid=transaction_uid,
                                 instances=len(references), **who)
        worker = threading.Thread(target=self._run, args=(job,), daemon=True,
                                  name=f"dcmtool-commit-{transaction_uid[-12:]}")
        with self._lock:
            self._workers.add(worker)
        worker.start()
        return status_dataset(0x0000)

    # -- checking and reporting, on the job's thread ----------------------------------------

    def _run(self, job: _Job) -> None:
        try:
            self._report(job)
        except Exception:
            LOG.exception("storage commitment %s failed", job.transaction_uid)
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    def check(self, references: Sequence[Reference]) -> tuple[list[Reference], list[Reference]]:
        """(committed, failed with their reasons) for ``references``, from the index and the
        files."""
        stored = self.archive.index.stored([r.sop_instance_uid for r in references])
        committed: list[Reference] = []
        failed: list[Reference] = []
        for ref in references:
            row = stored.get(ref.sop_instance_uid)
            if row is None:
                failed.append(Reference(ref.sop_class_uid, ref.sop_instance_uid,
                                        NO_SUCH_OBJECT_INSTANCE))
                continue
            sop_class, path, size = row
            if sop_class != ref.sop_class_uid:
                failed.append(Reference(ref.sop_class_uid, ref.sop_instance_uid,
                                        CLASS_INSTANCE_CONFLICT))
                continue
            problem = file_problem(self.archive.root / path, ref.sop_instance_uid, size)
            if problem is not None:
                LOG.warning("storage commitment: %s not committed: %s", ref.sop_instance_uid,
                            problem)
                failed.append(Reference(ref.sop_class_uid, ref.sop_instance_uid,
                                        NO_SUCH_OBJECT_INSTANCE))
                continue
            committed.append(ref)
        return committed, failed

    def _report(self, job: _Job) -> None:
        started = time.monotonic()
        with self._lock:
            duplicate = job.transaction_uid in self._transactions
            self._transactions.add(job.transaction_uid)
        try:
            if duplicate:  # J.3.3.1.1: the transaction UID is already in use
                committed: list[Reference] = []
                failed = [Reference(r.sop_class_uid, r.sop_instance_uid, DUPLICATE_TRANSACTION)
                          for r in job.references]
            else:
                committed, failed = self.check(job.references)
            event_type = SOME_FAILED if failed else ALL_COMMITTED

            def information(syntax: str) -> Any:
                encoded = encode_event_information(job.transaction_uid, committed, failed,
                                                   self.ae_title, syntax)
                if encoded is not None:
                    return encoded
                return event_report(job.transaction_uid, committed, failed,
                                    retrieve_ae_title=self.ae_title)[1]

            delivery = self._deliver(job, event_type, information)
        finally:
            if not duplicate:
                with self._lock:
                    self._transactions.discard(job.transaction_uid)
        calling = job.who["calling_aet"] or "?"
        outcome = f"{len(committed)} committed, {len(failed)} failed"
        if failed:
            outcome += f" (first: {failed[0].sop_instance_uid} " \
                       f"{describe_failure(failed[0].failure_reason or PROCESSING_FAILURE)})"
        audit = {"transaction_uid": job.transaction_uid, "committed": len(committed),
                 "failed": len(failed), "delivered_on": delivery.how,
                 "failures": [{"sop_instance_uid": r.sop_instance_uid,
                               "reason": f"0x{(r.failure_reason or 0):04X}"}
                              for r in failed[:100]], **job.who}
        seconds = time.monotonic() - started
        if delivery.status == 0x0000:
            LOG.info("storage commitment %s from %s: %s; reported on %s in %.2f s",
                     job.transaction_uid, calling, outcome, delivery.how, seconds)
            self.archive.audit.write("commitment-reported", **audit)
        elif delivery.delivered:
            status = describe(int(delivery.status or 0))
            LOG.warning("storage commitment %s from %s: %s; the report on %s was answered "
                        "with %s%s", job.transaction_uid, calling, outcome, delivery.how,
                        status, f": {delivery.comment}" if delivery.comment else "")
            self.archive.audit.write("commitment-reported", answer=f"0x{delivery.status:04X}",
                                     **audit)
        else:
            LOG.error("storage commitment %s from %s: %s; the report could not be "
                      "delivered: %s", job.transaction_uid, calling, outcome, delivery.comment)
            self.archive.audit.write("commitment-undelivered", reason=delivery.comment,
                                     **audit)

    def _deliver(self, job: _Job, event_type: int, information: Any) -> events.Delivery:
        """On the requester's association while it stays open, else on a new one."""
        deadline = time.monotonic() + RESPONSE_WAIT
        while not job.response_queued.wait(0.05):
            if not events.is_open(job.assoc) or time.monotonic() > deadline:
                break
        first: events.Delivery | None = None
        if job.response_queued.is_set() and events.is_open(job.assoc):
            first = events.report_on(job.assoc, STORAGE_COMMITMENT_PUSH,
                                     STORAGE_COMMITMENT_INSTANCE, event_type, information)
            if first.delivered:
                return first
        else:
            events.forget_response(job.assoc, job.message_id)
        address = self.destinations.lookup(job.who["calling_aet"]) or job.address
        second = events.report_to(job.ae, address, job.who["calling_aet"],
                                  STORAGE_COMMITMENT_PUSH, STORAGE_COMMITMENT_INSTANCE,
                                  event_type, information)
        if not second.delivered and first is not None:
            return events.Delivery(None, f"{first.comment}; then {second.comment}", second.how)
        return second

    def close(self, timeout: float = 30.0) -> None:
        """Wait up to ``timeout`` s for the reports still being checked or sent."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        if any(w.is_alive() for w in workers):
            LOG.warning("stopped with %s still to report",
                        plural(sum(w.is_alive() for w in workers), "storage commitment"))
