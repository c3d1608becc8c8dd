"""A scripted Storage Commitment SCP on pynetdicom, for the SCU tests (``dcmtool commit``).

``CommitmentScript`` says how the SCP behaves: which N-ACTION status it answers, whether it
reports and where (on the same association after its N-ACTION response, on it before that
response, or on a new association it opens to the SCU's port with the SCP role proposed, as
PS3.4 J.3.3.1.2 says), which instances fail with which Failure Reason, or that it aborts.
Its ``handlers()`` go to the ``pynetdicom_scp`` fixture with ``contexts=CONTEXTS``. The Event
Information is built here with pydicom, not with dcmtool's encoder: the tests check the wire
format against an independent writer. Every request is kept in ``requests`` (Transaction UID,
references); every report's answer status in ``answers``. Nothing sleeps: a report after the
response is sent when the PDU carrying the response has left (``EVT_PDU_SENT``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pynetdicom import AE, evt
from pynetdicom.presentation import build_role

STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
CONTEXTS = [(STORAGE_COMMITMENT, [EXPLICIT, IMPLICIT])]


@dataclass
class CommitmentRequest:
    transaction_uid: str
    references: list[tuple[str, str]]  # (SOP class, SOP instance)
    action_type: int
    calling_ae_title: str


@dataclass
class CommitmentScript:
    #: "same": report on the association after the N-ACTION response; "before": on it, before
    #: the response; "new": on a new association to ``report_port``; "never": no report.
    mode: str = "same"
    #: SOP Instance UID -> Failure Reason (the rest are committed).
    failures: dict[str, int] = field(default_factory=dict)
    #: The N-ACTION status (a failure status: nothing is reported).
    status: int = 0x0000
    #: Abort the association when the N-ACTION arrives, instead of answering.
    abort: bool = False
    #: Where a report on a new association goes (the SCU's [local] port).
    report_port: int | None = None
    report_host: str = "127.0.0.1"
    #: The AE title the SCP calls itself on a new association.
    ae_title: str = "COMMIT-SCP"
    #: Propose the SCP role on a new association (J.3.3.1.2); False: propose no roles.
    propose_role: bool = True
    #: Change the Transaction UID reported (a report for a transaction the SCU never asked).
    wrong_transaction: bool = False
    requests: list[CommitmentRequest] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)
    reported: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)
    _after_response: dict[int, CommitmentRequest] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        return [(evt.EVT_N_ACTION, self._on_action), (evt.EVT_DIMSE_SENT, self._on_dimse_sent),
                (evt.EVT_PDU_SENT, self._on_pdu_sent)]

    # -- what the SCP sends ---------------------------------------------------------------------

    def event_information(self, request: CommitmentRequest) -> tuple[int, Dataset]:
        ds = Dataset()
        ds.TransactionUID = ("1.2.3.999." + request.transaction_uid[-20:].lstrip(".")
                             if self.wrong_transaction else request.transaction_uid)
        committed, failed = [], []
        for sop_class, sop_instance in request.references:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_instance
            if sop_instance in self.failures:
                item.FailureReason = self.failures[sop_instance]
                failed.append(item)
            else:
                committed.append(item)
        if committed:
            ds.ReferencedSOPSequence = DicomSequence(committed)
        if failed:
            ds.FailedSOPSequence = DicomSequence(failed)
        return (2 if failed else 1), ds

    def _report_on(self, assoc: Any, request: CommitmentRequest) -> None:
        event_type, ds = self.event_information(request)
        try:
            answer, _reply = assoc.send_n_event_report(ds, event_type, STORAGE_COMMITMENT,
                                                      STORAGE_COMMITMENT_INSTANCE)
            code = getattr(answer, "Status", None)
            with self._lock:
                self.answers.append(-1 if code is None else int(code))
        except Exception as exc:  # the test reads it
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.reported.set()

    def _report_on_new_association(self, request: CommitmentRequest) -> None:
        ae = AE(ae_title=self.ae_title)
        ext_neg = []
        if self.propose_role:
            ext_neg.append(build_role(STORAGE_COMMITMENT, scu_role=False, scp_role=True))
        ae.add_requested_context(STORAGE_COMMITMENT, [IMPLICIT, EXPLICIT])
        assert self.report_port is not None
        assoc = ae.associate(self.report_host, self.report_port,
                             ae_title=request.calling_ae_title, ext_neg=ext_neg or None)
        if not assoc.is_established:
            self.errors.append("the SCU did not accept the report's association")
            self.reported.set()
            return
        self._report_on(assoc, request)
        assoc.release()

    # -- pynetdicom handlers --------------------------------------------------------------------

    def _on_action(self, event: Any) -> tuple[int, None]:
        if self.abort:
            event.assoc.abort()
            return 0x0110, None
        ds = event.action_information
        request = CommitmentRequest(
            str(ds.TransactionUID),
            [(str(i.ReferencedSOPClassUID), str(i.ReferencedSOPInstanceUID))
             for i in ds.ReferencedSOPSequence],
            int(event.request.ActionTypeID),
            str(event.assoc.requestor.ae_title).strip())
        with self._lock:
            self.requests.append(request)
        if self.status != 0x0000 or self.mode == "never":
            return self.status, None
        if self.mode == "before":
            self._report_on(event.assoc, request)
        elif self.mode in ("same", "new"):
            with self._lock:
                self._after_response[id(event.assoc)] = request
        return 0x0000, None

    def _on_dimse_sent(self, event: Any) -> None:
        if type(event.message).__name__ != "N_ACTION_RSP":
            return
        with self._lock:  # the response is queued: its PDU is the next one sent
            request = self._after_response.pop(id(event.assoc), None)
            if request is not None:
                self._after_response[-id(event.assoc)] = request

    def _on_pdu_sent(self, event: Any) -> None:
        if type(event.pdu).__name__ != "P_DATA_TF":
            return
        with self._lock:
            request = self._after_response.pop(-id(event.assoc), None)
        if request is None:
            return
        def report() -> None:
            if self.mode == "same":
                self._report_on(event.assoc, request)
            else:
                self._report_on_new_association(request)

        threading.Thread(target=report, name="commitment-report", daemon=True).start()
