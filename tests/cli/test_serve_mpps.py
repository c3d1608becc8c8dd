"""dcmtool serve as Modality Performed Procedure Step SCP (PS3.4 F.7), over real associations.

The MPPS SCU is pynetdicom; the steps must be in the archive's files and index, survive a
restart, and follow F.7.2's rules.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from support.archive import ServedArchive

from dcmtool.dicom.mpps import PerformedSeries, create_request, set_request

ServeFactory = Callable[..., ServedArchive]
MPPS = "1.2.840.10008.3.1.2.3.3"
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
CT = "1.2.840.10008.5.1.4.1.1.2"
SR = "1.2.840.10008.5.1.4.1.1.88.11"
NOW = datetime(2026, 3, 4, 10, 20, 30)
LATER = datetime(2026, 3, 4, 10, 50, 0)


@contextmanager
def modality(served: ServedArchive, calling: str = "MODALITY1",
             syntaxes: tuple[str, ...] = (EXPLICIT, IMPLICIT)) -> Iterator[Any]:
    ae = AE(calling)
    ae.add_requested_context(MPPS, list(syntaxes))
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def scheduled() -> Dataset:
    """A worklist item as ``dcmtool mwl --json`` would give it."""
    item = Dataset()
    item.PatientName = "Doe^Jane"
    item.PatientID = "PAT42"
    item.PatientBirthDate = "19800101"
    item.PatientSex = "F"
    item.StudyInstanceUID = generate_uid()
    item.AccessionNumber = "ACC42"
    item.RequestedProcedureID = "RP42"
    item.RequestedProcedureDescription = "CT chest"
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = "MODALITY1"
    step.ScheduledProcedureStepID = "SPS42"
    step.ScheduledProcedureStepDescription = "CT chest without contrast"
    item.ScheduledProcedureStepSequence = DicomSequence([step])
    return item


def create(assoc: Any, attributes: Dataset, uid: str | None = None) -> Dataset:
    status: Dataset = assoc.send_n_create(attributes, MPPS, uid)[0]
    return status


def update(assoc: Any, uid: str, change: Dataset) -> Dataset:
    status: Dataset = assoc.send_n_set(change, MPPS, uid)[0]
    return status


def stored_step(served: ServedArchive, uid: str) -> Dataset:
    return dcmread(served.root / "mpps" / f"{uid}.dcm")


def index_row(served: ServedArchive, uid: str) -> dict[str, Any]:
    rows = list(served.archive.index.rows(
        'SELECT uid, status, patient_id, modality, start, "end", path FROM mpps WHERE uid = ?',
        (uid,)))
    assert len(rows) == 1
    return dict(rows[0])


def audit(served: ServedArchive) -> list[dict[str, Any]]:
    return [json.loads(line) for line in
            (served.root / "audit.jsonl").read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", [EXPLICIT, IMPLICIT], ids=["explicit", "implicit"])
def test_a_step_is_created_then_completed_and_kept(
        serve_archive: ServeFactory, caplog: pytest.LogCaptureFixture, syntax: str) -> None:
    served = serve_archive()
    uid = generate_uid()
    series = PerformedSeries(generate_uid(), "CT", "Chest", [(CT, generate_uid()),
                                                           (SR, generate_uid())])
    with caplog.at_level(logging.INFO, logger="dcmtool.serve"), \
            modality(served, syntaxes=(syntax,)) as assoc:
        attributes = create_request(worklist_item=scheduled(), keys=[], station_ae="MODALITY1",
                                    now=NOW)
        assert create(assoc, attributes, uid).Status == 0x0000
        assert index_row(served, uid)["status"] == "IN PROGRESS"
        assert update(assoc, uid, set_request("COMPLETED", performed_series=[series],
                                              now=LATER)).Status == 0x0000
    step = stored_step(served, uid)
    assert step.file_meta.MediaStorageSOPClassUID == MPPS
    assert step.file_meta.MediaStorageSOPInstanceUID == uid
    assert step.file_meta.SourceApplicationEntityTitle == "MODALITY1"
    assert (step.SOPClassUID, step.SOPInstanceUID) == (MPPS, uid)
    assert step.PerformedProcedureStepStatus == "COMPLETED"
    assert step.PatientID == "PAT42"
    assert step.ScheduledStepAttributesSequence[0].AccessionNumber == "ACC42"
    assert (step.PerformedProcedureStepStartDate, step.PerformedProcedureStepStartTime) == (
        "20260304", "102030")
    assert (step.PerformedProcedureStepEndDate, step.PerformedProcedureStepEndTime) == (
        "20260304", "105000")
    (performed,) = step.PerformedSeriesSequence
    assert performed.SeriesInstanceUID == series.series_uid
    assert performed.ProtocolName == "Chest"
    assert [r.ReferencedSOPInstanceUID for r in performed.ReferencedImageSequence] == [
        series.instances[0][1]]
    assert [r.ReferencedSOPInstanceUID for r in
            performed.ReferencedNonImageCompositeSOPInstanceSequence] == [series.instances[1][1]]
    assert index_row(served, uid) == {
        "uid": uid, "status": "COMPLETED", "patient_id": "PAT42", "modality": "CT",
        "start": "20260304 102030", "end": "20260304 105000", "path": f"mpps/{uid}.dcm"}
    events = [r for r in audit(served) if r["event"].startswith("mpps")]
    assert [(r["event"], r["status"]) for r in events] == [
        ("mpps-created", "IN PROGRESS"), ("mpps-updated", "COMPLETED")]
    assert events[0]["patient_id"] == "PAT42" and events[1]["instances"] == 2
    assert f"MPPS {uid} created by MODALITY1: IN PROGRESS, patient PAT42, CT" in caplog.text
    assert f"MPPS {uid} set by MODALITY1: COMPLETED, 1 series, 2 instances" in caplog.text
    assert served.files() == []  # a step is not an instance
    assert served.archive.index.counts()["instances"] == 0


def test_seed_002s_attribute_lists_are_accepted(serve_archive: ServeFactory) -> None:
    """Seed 002's MPPS SCU: the N-CREATE attributes it lists (with the Type 1 ones PS3.4
    requires), then an N-SET of end date, status, description and performed protocol codes
    only (no end time, no performed series)."""
    served = serve_archive()
    attributes = Dataset()
    attributes.PatientID = "PAT7"
    attributes.PatientBirthDate = "19700101"
    attributes.PatientSex = "M"
    attributes.StudyID = "S7"
    attributes.PerformedStationAETitle = "IMPORTER"
    attributes.PerformedStationName = "Import"
    attributes.PerformedLocation = "Radiology"
    attributes.PerformedProcedureStepStartDate = "20260304"
    attributes.PerformedProcedureStepStartTime = "080000"
    attributes.PerformedProcedureStepEndDate = ""
    attributes.PerformedProcedureStepEndTime = ""
    attributes.PerformedProcedureStepStatus = "IN PROGRESS"
    attributes.PerformedProcedureStepID = "PPS7"
    attributes.PerformedProcedureStepDescription = "Import"
    attributes.PerformedProtocolCodeSequence = DicomSequence([])
    step = Dataset()
    step.StudyInstanceUID = generate_uid()
    attributes.ScheduledStepAttributesSequence = DicomSequence([step])
    attributes.Modality = "OT"
    change = Dataset()
    change.PerformedProcedureStepEndDate = "20260304"
    change.PerformedProcedureStepStatus = "COMPLETED"
    change.PerformedProcedureStepDescription = "Import done"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "P1", "99LOCAL", "Import"
    change.PerformedProtocolCodeSequence = DicomSequence([code])
    uid = generate_uid()
    with modality(served, "IMPORTER") as assoc:
        assert create(assoc, attributes, uid).Status == 0x0000
        assert update(assoc, uid, change).Status == 0x0000
    kept = stored_step(served, uid)
    assert kept.PerformedProcedureStepStatus == "COMPLETED"
    assert kept.PerformedProcedureStepDescription == "Import done"
    assert kept.PerformedProtocolCodeSequence[0].CodeValue == "P1"


def test_a_step_is_discontinued_with_its_reason(serve_archive: ServeFactory) -> None:
    served = serve_archive()
    uid = generate_uid()
    with modality(served) as assoc:
        assert create(assoc, create_request(worklist_item=None, keys=["Modality=MR",
                                                                      "PatientID=P1"],
                                            station_ae="MODALITY1", now=NOW),
                      uid).Status == 0x0000
        assert update(assoc, uid, set_request("DISCONTINUED", reason_code="110501",
                                              now=LATER)).Status == 0x0000
    step = stored_step(served, uid)
    assert step.PerformedProcedureStepStatus == "DISCONTINUED"
    (reason,) = step.PerformedProcedureStepDiscontinuationReasonCodeSequence
    assert (reason.CodeValue, reason.CodingSchemeDesignator, reason.CodeMeaning) == (
        "110501", "DCM", "Equipment failure")
    assert index_row(served, uid)["modality"] == "MR"


@pytest.mark.parametrize("final", ["COMPLETED", "DISCONTINUED"])
def test_a_finished_step_may_no_longer_be_updated(serve_archive: ServeFactory,
                                                  final: str) -> None:
    served = serve_archive()
    uid = generate_uid()
    with modality(served) as assoc:
        create(assoc, create_request(worklist_item=scheduled(), keys=[], station_ae="M1",
                                     now=NOW), uid)
        assert update(assoc, uid, set_request(final, now=LATER)).Status == 0x0000
        again = update(assoc, uid, set_request("IN PROGRESS", now=LATER))
        assert again.Status == 0x0110
        assert again.ErrorID == 0xA710
        assert again.ErrorComment == f"performed procedure step already {final}"
        description = Dataset()
        description.PerformedProcedureStepDescription = "changed afterwards"
        assert update(assoc, uid, description).Status == 0x0110
    assert stored_step(served, uid).PerformedProcedureStepStatus == final
    refused = [r for r in audit(served) if r["event"] == "mpps-set-refused"]
    assert len(refused) == 2 and refused[0]["status"] == "0x0110"


def test_an_n_set_for_an_unknown_step_is_no_such_object_instance(
        serve_archive: ServeFactory) -> None:
    served = serve_archive()
    unknown = generate_uid()
    with modality(served) as assoc:
        status = update(assoc, unknown, set_request("COMPLETED", now=LATER))
        assert status.Status == 0x0112
        assert status.ErrorComment == "no such performed procedure step"
        # Not even a UID: the same answer, and no file anywhere.
        assert update(assoc, "../../etc", set_request("COMPLETED", now=LATER)).Status == 0x0112
    assert not (served.root / "mpps").exists()


def test_an_n_create_for_an_existing_step_is_a_duplicate(serve_archive: ServeFactory) -> None:
    served = serve_archive()
    uid = generate_uid()
    attributes = create_request(worklist_item=scheduled(), keys=[], station_ae="M1", now=NOW)
    with modality(served) as assoc:
        assert create(assoc, attributes, uid).Status == 0x0000
        other = create_request(worklist_item=None, keys=["Modality=US", "PatientID=OTHER"],
                               station_ae="M1", now=LATER)
        status = create(assoc, other, uid)
        assert status.Status == 0x0111
        assert status.ErrorComment == "the performed procedure step already exists"
    assert stored_step(served, uid).PatientID == "PAT42"  # the first one is kept


@pytest.mark.parametrize(("remove", "status", "comment"), [
    ("PerformedProcedureStepID", 0x0120, "PerformedProcedureStepID is missing"),
    ("Modality", 0x0121, "Modality is empty"),
    ("ScheduledStepAttributesSequence", 0x0120, "ScheduledStepAttributesSequence is missing"),
    ("status", 0x0106, "a step is created IN PROGRESS, not 'COMPLETED'"),
])
def test_an_n_create_without_what_f_7_2_1_requires_is_refused(
        serve_archive: ServeFactory, remove: str, status: int, comment: str) -> None:
    served = serve_archive()
    attributes = create_request(worklist_item=scheduled(), keys=[], station_ae="M1", now=NOW)
    if remove == "Modality":
        attributes.Modality = ""
    elif remove == "status":
        attributes.PerformedProcedureStepStatus = "COMPLETED"
    else:
        delattr(attributes, remove)
    uid = generate_uid()
    with modality(served) as assoc:
        answer = create(assoc, attributes, uid)
        assert answer.Status == status
        assert answer.ErrorComment.startswith(comment)
        assert update(assoc, uid, set_request("COMPLETED", now=LATER)).Status == 0x0112
    assert not (served.root / "mpps" / f"{uid}.dcm").exists()
    assert [r["status"] for r in audit(served) if r["event"] == "mpps-create-refused"] == [
        f"0x{status:04X}"]


def test_an_n_set_may_not_change_what_n_create_set(serve_archive: ServeFactory) -> None:
    served = serve_archive()
    uid = generate_uid()
    with modality(served) as assoc:
        create(assoc, create_request(worklist_item=scheduled(), keys=[], station_ae="M1",
                                     now=NOW), uid)
        change = Dataset()
        change.PatientID = "SOMEONE-ELSE"
        status = update(assoc, uid, change)
        assert status.Status == 0x0106
        assert status.ErrorComment == "an N-SET may not change PatientID"
        same = Dataset()  # sent again unchanged: no change, accepted
        same.PatientID = "PAT42"
        same.PerformedProcedureStepDescription = "still going"
        assert update(assoc, uid, same).Status == 0x0000
        unknown_state = Dataset()
        unknown_state.PerformedProcedureStepStatus = "PAUSED"
        assert update(assoc, uid, unknown_state).Status == 0x0106
        no_end = Dataset()
        no_end.PerformedProcedureStepStatus = "COMPLETED"
        status = update(assoc, uid, no_end)
        assert status.Status == 0x0110
        assert status.ErrorComment == "a step COMPLETED needs PerformedProcedureStepEndDate"
    step = stored_step(served, uid)
    assert (step.PatientID, step.PerformedProcedureStepStatus) == ("PAT42", "IN PROGRESS")
    assert step.PerformedProcedureStepDescription == "still going"


def test_the_scp_assigns_the_uid_when_the_scu_gives_none(serve_archive: ServeFactory) -> None:
    served = serve_archive()
    assigned: list[str] = []

    def on_receive(event: Any) -> None:
        command = event.message.command_set
        if command.CommandField == 0x8140:  # N-CREATE-RSP
            assigned.append(str(command.AffectedSOPInstanceUID))

    ae = AE("MODALITY1")
    ae.add_requested_context(MPPS, [EXPLICIT])
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title,
                         evt_handlers=[(evt.EVT_DIMSE_RECV, on_receive)])
    try:
        assert create(assoc, create_request(worklist_item=scheduled(), keys=[],
                                            station_ae="M1", now=NOW)).Status == 0x0000
        (uid,) = assigned
        assert update(assoc, uid, set_request("COMPLETED", now=LATER)).Status == 0x0000
    finally:
        assoc.release()
    assert stored_step(served, uid).PerformedProcedureStepStatus == "COMPLETED"


def test_steps_survive_a_restart_and_a_lost_index(serve_archive: ServeFactory,
                                                  tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "archive"
    served = serve_archive(root=root)
    done, running = generate_uid(), generate_uid()
    with modality(served) as assoc:
        for uid in (done, running):
            assert create(assoc, create_request(worklist_item=scheduled(), keys=[],
                                                station_ae="M1", now=NOW), uid).Status == 0
        assert update(assoc, done, set_request("COMPLETED", now=LATER)).Status == 0
    served.stop()

    with caplog.at_level(logging.INFO, logger="dcmtool.serve"):
        again = serve_archive(root=root)  # a restart: both steps are there, with their states
    assert f"2 performed procedure steps kept in {root.resolve() / 'mpps'} (1 in progress)" \
        in caplog.text
    assert index_row(again, done)["status"] == "COMPLETED"
    with modality(again) as assoc:
        assert update(assoc, done, set_request("IN PROGRESS", now=LATER)).Status == 0x0110
        assert update(assoc, running, set_request("DISCONTINUED", now=LATER)).Status == 0
    assert again.files() == []  # ROOT/mpps is not taken for instances
    again.stop()

    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (root / name).unlink(missing_ok=True)
    (root / "mpps" / f".{done}.1.2.tmp").write_bytes(b"half a step")  # an interrupted write
    rebuilt = serve_archive(root=root)
    assert {r["uid"]: r["status"] for r in rebuilt.archive.index.rows(
        "SELECT uid, status FROM mpps")} == {done: "COMPLETED", running: "DISCONTINUED"}
    assert sorted(p.name for p in (root / "mpps").iterdir()) == sorted(
        [f"{done}.dcm", f"{running}.dcm"])
    assert rebuilt.archive.index.counts()["instances"] == 0


def test_an_index_of_the_previous_schema_opens_and_gains_the_steps_table(
        tmp_path: Path) -> None:
    import sqlite3

    from dcmtool.archive.index import SCHEMA_VERSION, Index

    path = tmp_path / "index.sqlite"
    old = sqlite3.connect(path)
    old.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);"
                      "INSERT INTO meta VALUES ('schema', '1');")
    old.close()
    index = Index(path)
    try:
        (count,) = index.rows("SELECT COUNT(*) FROM mpps")
        assert count[0] == 0
        (schema,) = index.rows("SELECT value FROM meta WHERE key = 'schema'")
        assert schema[0] == str(SCHEMA_VERSION)
    finally:
        index.close()
