"""dcmtool serve as Storage Commitment Push Model SCP (PS3.4 J), over real associations.

The requester is a pynetdicom SCU; when it does not wait on its association, the report goes to
a pynetdicom AE acting as the requester's SCP for N-EVENT-REPORT (the configured node of the
calling AE). Nothing sleeps: every wait is on an Event or a condition with a deadline.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid
from pynetdicom import AE, build_context, evt
from support.archive import ServedArchive
from support.datasets import make_dataset
from support.scp import PynetdicomSCP

ServeFactory = Callable[..., ServedArchive]
COMMITMENT = "1.2.840.10008.1.20.1"
COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
REQUESTER = "MODALITY1"


@dataclass
class Reports:
    """N-EVENT-REPORTs a requester received: (event type, Event Information, association)."""

    received: list[tuple[int, Dataset, Any]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def handler(self, event: Any) -> tuple[int, None]:
        self.received.append((int(event.request.EventTypeID), event.event_information,
                              event.assoc))
        self.arrived.set()
        return 0x0000, None

    def one(self, timeout: float = 10.0) -> tuple[int, Dataset, Any]:
        assert self.arrived.wait(timeout), "no N-EVENT-REPORT arrived"
        assert len(self.received) == 1
        return self.received[0]


def store(served: ServedArchive, *datasets: Dataset) -> None:
    ae = AE("STORER")
    for ds in datasets:
        ae.add_requested_context(str(ds.SOPClassUID), [EXPLICIT])
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title)
    assert assoc.is_established
    try:
        for ds in datasets:
            assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()


def action_information(transaction_uid: str | None,
                       references: list[tuple[str, str]] | None) -> Dataset:
    """Built with pydicom here (not with dcmtool's encoder): the wire format is checked
    against an independent writer."""
    ds = Dataset()
    if transaction_uid is not None:
        ds.TransactionUID = transaction_uid
    if references is not None:
        items = []
        for sop_class, sop_instance in references:
            item = Dataset()
            item.ReferencedSOPClassUID = sop_class
            item.ReferencedSOPInstanceUID = sop_instance
            items.append(item)
        ds.ReferencedSOPSequence = DicomSequence(items)
    return ds


@contextmanager
def requester(served: ServedArchive, reports: Reports | None = None,
              calling: str = REQUESTER, syntaxes: list[str] | None = None) -> Iterator[Any]:
    ae = AE(calling)
    ae.add_requested_context(COMMITMENT, syntaxes or [EXPLICIT, IMPLICIT])
    ae.add_requested_context("1.2.840.10008.1.1")
    handlers: list[Any] = [(evt.EVT_N_EVENT_REPORT, reports.handler)] if reports else []
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title,
                         evt_handlers=handlers)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def request(assoc: Any, information: Dataset | None) -> Dataset:
    status: Dataset = assoc.send_n_action(information, 1, COMMITMENT, COMMITMENT_INSTANCE)[0]
    return status


def audit(served: ServedArchive) -> list[dict[str, Any]]:
    return [json.loads(line) for line in
            (served.root / "audit.jsonl").read_text(encoding="utf-8").splitlines()]


def wait_for_audit(served: ServedArchive, event: str, timeout: float = 10.0
                   ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in audit(served) if r["event"] == event]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no {event} in the audit trail"
        time.sleep(0.02)


def referenced(ds: Dataset, keyword: str) -> dict[str, int | None]:
    return {str(item.ReferencedSOPInstanceUID): item.get("FailureReason")
            for item in ds.get(keyword, [])}


def report_context() -> Any:
    """The requester's SCP for N-EVENT-REPORT accepts the association requestor (serve) as
    SCP of Storage Commitment only (Role Selection, PS3.7 D.3.3.4)."""
    cx = build_context(COMMITMENT, [IMPLICIT, EXPLICIT])
    cx.scu_role, cx.scp_role = False, True
    return cx


def node(port: int, ae_title: str = REQUESTER) -> tuple[tuple[str, str, int], ...]:
    return ((ae_title, "127.0.0.1", port),)


# ---------------------------------------------------------------------------------------------


def test_the_report_comes_on_the_same_association_when_the_requester_waits(
        serve_archive: ServeFactory, closed_port: int) -> None:
    # The node's port refuses connections: the report can only come on the association.
    served = serve_archive(destinations=node(closed_port))
    first, second = make_dataset(), make_dataset(Modality="MR", sop_class=MR)
    store(served, first, second)
    reports = Reports()
    transaction = generate_uid()
    with requester(served, reports) as assoc:
        status = request(assoc, action_information(transaction, [
            (CT, first.SOPInstanceUID), (MR, second.SOPInstanceUID)]))
        assert status.Status == 0x0000
        event_type, info, on = reports.one()
        assert on is assoc
    assert event_type == 1
    assert info.TransactionUID == transaction
    assert info.RetrieveAETitle == served.ae_title
    assert referenced(info, "ReferencedSOPSequence") == {
        first.SOPInstanceUID: None, second.SOPInstanceUID: None}
    assert "FailedSOPSequence" not in info
    record = wait_for_audit(served, "commitment-reported")
    assert record["transaction_uid"] == transaction
    assert (record["committed"], record["failed"]) == (2, 0)
    assert record["delivered_on"] == "the same association"
    assert record["calling_aet"] == REQUESTER
    requested = wait_for_audit(served, "commitment-requested")
    assert requested["instances"] == 2


def test_the_report_goes_to_the_node_on_a_new_association_with_the_scp_role(
        serve_archive: ServeFactory, pynetdicom_scp: Callable[..., PynetdicomSCP]) -> None:
    reports = Reports()
    roles: list[tuple[bool, bool]] = []

    def on_report(event: Any) -> tuple[int, None]:
        cx = next(c for c in event.assoc.accepted_contexts if c.abstract_syntax == COMMITMENT)
        roles.append((cx.as_scu, cx.as_scp))  # the acceptor's roles
        return reports.handler(event)

    listener = pynetdicom_scp([(evt.EVT_N_EVENT_REPORT, on_report)], ae_title=REQUESTER,
                              contexts=[report_context()])
    served = serve_archive(ae_title="ARCHIVE", destinations=node(listener.port))
    ds = make_dataset()
    store(served, ds)
    transaction = generate_uid()
    with requester(served) as assoc:  # no handler: it releases right after the response
        assert request(assoc, action_information(
            transaction, [(CT, ds.SOPInstanceUID)])).Status == 0x0000
    event_type, info, _assoc = reports.one()
    assert (event_type, info.TransactionUID) == (1, transaction)
    assert referenced(info, "ReferencedSOPSequence") == {ds.SOPInstanceUID: None}
    assert roles == [(True, False)]  # serve (the requestor) is the SCP of the class
    (association,) = listener.wait_closed()
    assert (association.calling_ae_title, association.called_ae_title) == ("ARCHIVE", REQUESTER)
    assert association.abstract_syntaxes == [COMMITMENT]
    record = wait_for_audit(served, "commitment-reported")
    assert record["delivered_on"] == "a new association"


def test_a_requester_that_aborts_instead_of_answering_gets_the_report_at_its_node(
        serve_archive: ServeFactory, pynetdicom_scp: Callable[..., PynetdicomSCP]) -> None:
    """serve holds the association's reactor while it waits for the answer: it must notice
    the abort itself (not wait out the 60 s DIMSE timeout) and go to the node."""
    reports = Reports()
    listener = pynetdicom_scp([(evt.EVT_N_EVENT_REPORT, reports.handler)], ae_title=REQUESTER,
                              contexts=[report_context()])
    served = serve_archive(destinations=node(listener.port), dimse_timeout=60.0)
    ds = make_dataset()
    store(served, ds)
    aborting = Reports()

    def abort_instead(event: Any) -> tuple[int, None]:
        aborting.arrived.set()
        event.assoc.abort()
        return 0x0000, None  # never sent

    ae = AE(REQUESTER)
    ae.add_requested_context(COMMITMENT, [EXPLICIT])
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title,
                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, abort_instead)])
    assert request(assoc, action_information(generate_uid(),
                                             [(CT, ds.SOPInstanceUID)])).Status == 0x0000
    assert aborting.arrived.wait(10)
    event_type, _info, _assoc = reports.one(timeout=10)
    assert event_type == 1
    assert wait_for_audit(served, "commitment-reported")["delivered_on"] == "a new association"


def test_instances_not_kept_fail_with_their_reasons(
        serve_archive: ServeFactory, closed_port: int) -> None:
    served = serve_archive(destinations=node(closed_port))
    kept, deleted, truncated, wrong_class = (make_dataset() for _ in range(4))
    store(served, kept, deleted, truncated, wrong_class)
    files = {p.stem: p for p in served.files()}
    files[deleted.SOPInstanceUID].unlink()
    damaged = files[truncated.SOPInstanceUID]
    damaged.write_bytes(damaged.read_bytes()[:200])
    never_sent = generate_uid()
    reports = Reports()
    with requester(served, reports) as assoc:
        assert request(assoc, action_information(generate_uid(), [
            (CT, kept.SOPInstanceUID), (CT, never_sent), (CT, deleted.SOPInstanceUID),
            (CT, truncated.SOPInstanceUID), (MR, wrong_class.SOPInstanceUID),
        ])).Status == 0x0000
        event_type, info, _assoc = reports.one()
    assert event_type == 2
    assert referenced(info, "ReferencedSOPSequence") == {kept.SOPInstanceUID: None}
    assert referenced(info, "FailedSOPSequence") == {
        never_sent: 0x0112,  # no such object instance
        deleted.SOPInstanceUID: 0x0112,  # the file is gone
        truncated.SOPInstanceUID: 0x0112,  # the file is not what was stored
        wrong_class.SOPInstanceUID: 0x0119,  # class/instance conflict
    }
    failed = {str(i.ReferencedSOPInstanceUID): str(i.ReferencedSOPClassUID)
              for i in info.FailedSOPSequence}
    assert failed[wrong_class.SOPInstanceUID] == MR  # as requested
    record = wait_for_audit(served, "commitment-reported")
    assert (record["committed"], record["failed"]) == (1, 4)
    assert {f["sop_instance_uid"]: f["reason"] for f in record["failures"]}[
        wrong_class.SOPInstanceUID] == "0x0119"


def test_an_unknown_calling_ae_is_refused_with_what_to_configure(
        serve_archive: ServeFactory, caplog: pytest.LogCaptureFixture) -> None:
    served = serve_archive()  # no nodes at all
    ds = make_dataset()
    store(served, ds)
    reports = Reports()
    with caplog.at_level(logging.WARNING, logger="dcmtool.serve"), \
            requester(served, reports, calling="STRANGER") as assoc:
        status = request(assoc, action_information(generate_uid(),
                                                   [(CT, ds.SOPInstanceUID)]))
        assert status.Status == 0x0110
        assert status.ErrorComment.startswith("unknown AE STRANGER: add it as a node")
        assert assoc.send_c_echo().Status == 0x0000  # the association and serve go on
    assert not reports.received
    assert "unknown AE STRANGER: add it as a node (dcmtool config add NAME " \
        "STRANGER@HOST:PORT) so that the report can reach it" in caplog.text
    record = wait_for_audit(served, "commitment-refused")
    assert (record["calling_aet"], record["status"]) == ("STRANGER", "0x0110")


@pytest.mark.parametrize(("information", "comment"), [
    (action_information("1.2.3.4", []), "the Referenced SOP Sequence (0008,1199) is empty"),
    (action_information("1.2.3.4", None), "no Referenced SOP Sequence (0008,1199)"),
    (action_information(None, [(CT, "1.2.3.4.5")]), "no Transaction UID (0008,1195)"),
    (action_information("1.2.3.4", [(CT, "")]),
     "Referenced SOP Sequence item 1: no Referenced SOP Instance UID"),
    (action_information("1.2.3.4", [("", "1.2.3")]),
     "Referenced SOP Sequence item 1: no Referenced SOP Class UID"),
    (action_information("1.2.3.4", [(CT, "1.2.x")]),
     "Referenced SOP Sequence item 1: Referenced SOP Instance UID"),
    (action_information("1.2.3..4", [(CT, "1.2.3")]), "Transaction UID '1.2.3..4' is not a"),
    (None, "no Action Information"),
], ids=["empty-sequence", "no-sequence", "no-transaction", "no-instance-uid", "no-class-uid",
        "bad-uid", "bad-transaction-uid", "no-information"])
def test_a_malformed_request_gets_a_clear_failure_and_serve_stays_up(
        serve_archive: ServeFactory, closed_port: int, information: Dataset | None,
        comment: str) -> None:
    served = serve_archive(destinations=node(closed_port))
    ds = make_dataset()
    store(served, ds)
    reports = Reports()
    with requester(served, reports) as assoc:
        status = request(assoc, information)
        assert status.Status == 0x0110
        assert str(status.ErrorComment).startswith(comment)
        # The same association still works: a good request gets its report.
        assert request(assoc, action_information(
            generate_uid(), [(CT, ds.SOPInstanceUID)])).Status == 0x0000
        event_type, _info, _assoc = reports.one()
    assert event_type == 1
    assert wait_for_audit(served, "commitment-refused")["status"] == "0x0110"


@pytest.mark.parametrize(("syntax", "comment"), [
    (EXPLICIT, "the Referenced SOP Sequence is not a sequence"),
    (IMPLICIT, "Referenced SOP Sequence item 1: no Referenced SOP Class UID"),
], ids=["explicit-vr-lo", "implicit-garbage"])
def test_a_sequence_that_is_no_sequence_is_refused(
        serve_archive: ServeFactory, closed_port: int, syntax: str, comment: str) -> None:
    """(0008,1199) sent as text: in explicit VR it decodes as LO, in implicit VR its bytes
    are taken for an item holding nothing of what an item needs."""
    from pydicom.dataelem import DataElement

    served = serve_archive(destinations=node(closed_port))
    information = Dataset()
    information.TransactionUID = "1.2.3.4"
    information.add(DataElement(0x00081199, "LO", "garbage in place of items"))
    with requester(served, syntaxes=[syntax]) as assoc:
        status = request(assoc, information)
        assert status.Status == 0x0110
        assert str(status.ErrorComment).startswith(comment)
        assert assoc.send_c_echo().Status == 0x0000


def test_a_report_nobody_can_receive_is_logged_and_audited(
        serve_archive: ServeFactory, closed_port: int,
        caplog: pytest.LogCaptureFixture) -> None:
    served = serve_archive(destinations=node(closed_port))
    ds = make_dataset()
    store(served, ds)
    transaction = generate_uid()
    with caplog.at_level(logging.INFO, logger="dcmtool.serve"):
        with requester(served) as assoc:  # leaves at once; its node refuses connections
            assert request(assoc, action_information(
                transaction, [(CT, ds.SOPInstanceUID)])).Status == 0x0000
        record = wait_for_audit(served, "commitment-undelivered")
    assert record["transaction_uid"] == transaction
    assert f"{REQUESTER} at 127.0.0.1:{closed_port} cannot be reached (Connection refused)" \
        in record["reason"]
    assert f"storage commitment {transaction} from {REQUESTER}: 1 committed, 0 failed; the " \
        "report could not be delivered" in caplog.text


def test_serve_stops_after_the_reports_it_owes(serve_archive: ServeFactory,
                                               pynetdicom_scp: Callable[..., PynetdicomSCP]
                                               ) -> None:
    reports = Reports()
    listener = pynetdicom_scp([(evt.EVT_N_EVENT_REPORT, reports.handler)], ae_title=REQUESTER,
                              contexts=[report_context()])
    served = serve_archive(destinations=node(listener.port))
    ds = make_dataset()
    store(served, ds)
    with requester(served) as assoc:
        assert request(assoc, action_information(
            generate_uid(), [(CT, ds.SOPInstanceUID)])).Status == 0x0000
    served.stop()  # waits for the report still owed
    assert reports.arrived.is_set()


def test_the_archive_folder_holds_no_commitment_state(serve_archive: ServeFactory,
                                                     closed_port: int) -> None:
    served = serve_archive(destinations=node(closed_port))
    ds = make_dataset()
    store(served, ds)
    before = sorted(p.relative_to(served.root) for p in served.root.rglob("*"))
    reports = Reports()
    with requester(served, reports) as assoc:
        request(assoc, action_information(generate_uid(), [(CT, ds.SOPInstanceUID)]))
        reports.one()
    after = sorted(p.relative_to(served.root) for p in served.root.rglob("*"))
    assert after == before
    assert [Path(p).name for p in served.files()] == [f"{ds.SOPInstanceUID}.dcm"]
