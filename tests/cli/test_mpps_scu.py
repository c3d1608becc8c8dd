"""dcmtool mpps against an in-process pynetdicom MPPS SCP on loopback: a step created from a
worklist item (mwl --json output, a DICOM file) or from keys, completed with the series of a
folder or a store report, discontinued with a reason, changed with keys; refusals said with
their status and comment (exit 6), an abort (exit 5), bad input (exit 2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pynetdicom import evt
from support.datasets import SECONDARY_CAPTURE, write_instance
from support.peers import PynetdicomSCP, abort_handler, run_cli

from dcmtool.errors import ExitCode

MPPS = "1.2.840.10008.3.1.2.3.3"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
StartSCP = Callable[..., PynetdicomSCP]


@dataclass
class MppsPeer:
    """A stateful MPPS SCP: keeps each step, refuses changes after a final state (F.7.2.2)."""

    steps: dict[str, Dataset] = field(default_factory=dict)
    creates: list[tuple[str, Dataset]] = field(default_factory=list)
    sets: list[tuple[str, Dataset]] = field(default_factory=list)
    calling: list[str] = field(default_factory=list)

    def handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        return [(evt.EVT_N_CREATE, self.on_create), (evt.EVT_N_SET, self.on_set)]

    def on_create(self, event: Any) -> tuple[int, Dataset | None]:
        uid = str(event.request.AffectedSOPInstanceUID)
        ds = event.attribute_list
        self.creates.append((uid, ds))
        self.calling.append(str(event.assoc.requestor.ae_title).strip())
        if uid in self.steps:
            return 0x0111, None
        self.steps[uid] = ds
        return 0x0000, ds

    def on_set(self, event: Any) -> Any:
        uid = str(event.request.RequestedSOPInstanceUID)
        change = event.modification_list
        self.sets.append((uid, change))
        step = self.steps.get(uid)
        if step is None:
            return 0x0112, None
        if step.PerformedProcedureStepStatus in ("COMPLETED", "DISCONTINUED"):
            status = Dataset()
            status.Status = 0x0110
            status.ErrorID = 0xA710
            status.ErrorComment = f"step already {step.PerformedProcedureStepStatus}"
            return status, None
        for element in change:
            step[element.tag] = element
        return 0x0000, step


@pytest.fixture
def mpps_peer(pynetdicom_scp: StartSCP) -> tuple[MppsPeer, PynetdicomSCP]:
    peer = MppsPeer()
    return peer, pynetdicom_scp(peer.handlers(), contexts=[MPPS])


def worklist_item() -> Dataset:
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 100"
    item.PatientName = "Müller^Hans"
    item.PatientID = "PAT-7"
    item.PatientBirthDate = "19600512"
    item.PatientSex = "M"
    item.AccessionNumber = "A1001"
    item.RequestedProcedureID = "RP1"
    item.RequestedProcedureDescription = "CT chest"
    item.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.100"
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = "CT01"
    step.ScheduledProcedureStepStartDate = "20261124"
    step.ScheduledProcedureStepStartTime = "0800"
    step.ScheduledProcedureStepID = "SPS1"
    step.ScheduledProcedureStepDescription = "Chest without contrast"
    step.ScheduledStationName = "CT ROOM 1"
    item.ScheduledProcedureStepSequence = DicomSequence([step])
    return item


def create(scp: PynetdicomSCP, *args: Any) -> str:
    result = run_cli("mpps", scp.address, "create", "-aet", "CT01", *args,
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [uid] = result.stdout.split()
    return uid


def test_create_from_mwl_json_prints_the_step_uid(mpps_peer: tuple[MppsPeer, PynetdicomSCP],
                                                  tmp_path: Path) -> None:
    peer, scp = mpps_peer
    mwl_json = tmp_path / "item.json"  # what 'dcmtool mwl --json' prints: a list
    mwl_json.write_text(json.dumps([worklist_item().to_json_dict()]), encoding="utf-8")
    uid = create(scp, "--from-worklist", mwl_json)
    [(created, ds)] = peer.creates
    assert created == uid
    assert peer.calling == ["CT01"]
    assert ds.PerformedProcedureStepStatus == "IN PROGRESS"
    assert ds.PatientID == "PAT-7" and str(ds.PatientName) == "Müller^Hans"
    assert ds.PatientBirthDate == "19600512" and ds.PatientSex == "M"
    assert ds.Modality == "CT" and ds.PerformedStationAETitle == "CT01"
    assert ds.PerformedStationName == "CT ROOM 1"
    [scheduled] = ds.ScheduledStepAttributesSequence
    assert scheduled.StudyInstanceUID == "1.2.826.0.1.3680043.8.498.100"
    assert scheduled.AccessionNumber == "A1001"
    assert scheduled.ScheduledProcedureStepID == "SPS1"
    assert ds.PerformedProcedureStepStartDate and ds.PerformedProcedureStepStartTime
    assert ds.PerformedProcedureStepEndDate == "" and "PerformedSeriesSequence" in ds
    for keyword in ("StudyID", "PerformedLocation", "PerformedProcedureStepID",
                    "PerformedProcedureStepDescription", "PerformedProtocolCodeSequence",
                    "PerformedProcedureStepEndTime"):
        assert keyword in ds, keyword


def test_create_from_a_dicom_worklist_file_and_keys_override(
        mpps_peer: tuple[MppsPeer, PynetdicomSCP], tmp_path: Path) -> None:
    peer, scp = mpps_peer
    item = worklist_item()
    path = tmp_path / "item.wl"
    item.save_as(path, implicit_vr=False, little_endian=True)
    create(scp, "--from-worklist", path, "-k", "PerformedProcedureStepDescription=Redo")
    [(_, ds)] = peer.creates
    assert ds.PatientID == "PAT-7"
    assert ds.PerformedProcedureStepDescription == "Redo"


def test_several_items_need_item_n(mpps_peer: tuple[MppsPeer, PynetdicomSCP],
                                   tmp_path: Path) -> None:
    peer, scp = mpps_peer
    second = worklist_item()
    second.PatientID = "PAT-8"
    path = tmp_path / "items.json"
    path.write_text(json.dumps([worklist_item().to_json_dict(), second.to_json_dict()]),
                    encoding="utf-8")
    result = run_cli("mpps", scp.address, "create", "--from-worklist", path)
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.splitlines()[0] == (
        f"dcmtool: error: --from-worklist {path}: 2 worklist items; choose one with --item N "
        "(1 is the first)")
    assert peer.creates == []
    create(scp, "--from-worklist", path, "--item", "2")
    assert peer.creates[0][1].PatientID == "PAT-8"


def test_create_unscheduled_from_keys(mpps_peer: tuple[MppsPeer, PynetdicomSCP]) -> None:
    peer, scp = mpps_peer
    uid = create(scp, "-k", "Modality=MR", "-k", "PatientID=X1", "-k", "PatientName=DOE^J")
    [(created, ds)] = peer.creates
    assert created == uid and ds.Modality == "MR" and ds.PatientID == "X1"
    assert ds.ScheduledStepAttributesSequence[0].StudyInstanceUID  # a new one


def test_create_without_modality_is_a_usage_error(
        mpps_peer: tuple[MppsPeer, PynetdicomSCP]) -> None:
    peer, scp = mpps_peer
    result = run_cli("mpps", scp.address, "create", "-k", "PatientID=X1")
    assert result.exit_code == ExitCode.USAGE
    assert "no Modality" in result.stderr
    assert peer.creates == []


def test_complete_with_the_series_of_a_folder(mpps_peer: tuple[MppsPeer, PynetdicomSCP],
                                              tmp_path: Path) -> None:
    peer, scp = mpps_peer
    series = ["1.2.826.0.1.3680043.8.498.201", "1.2.826.0.1.3680043.8.498.202"]
    written = [write_instance(tmp_path / "exam" / f"{n}.dcm", SeriesInstanceUID=series[n % 2],
                              ProtocolName="Chest", SeriesDescription=f"S{n % 2}")
               for n in range(4)]
    capture = write_instance(tmp_path / "exam" / "sc.dcm", sop_class=SECONDARY_CAPTURE,
                             SeriesInstanceUID=series[0])
    (tmp_path / "exam" / "notes.txt").write_text("not DICOM", encoding="utf-8")
    uid = create(scp, "-k", "Modality=CT")
    result = run_cli("mpps", scp.address, "complete", uid, "--series-from", tmp_path / "exam",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == uid
    assert result.stderr.strip() == f"dcmtool: step {uid} COMPLETED: 2 series, 5 instance(s)"
    [(set_uid, change)] = peer.sets
    assert set_uid == uid
    assert change.PerformedProcedureStepStatus == "COMPLETED"
    assert change.PerformedProcedureStepEndDate and change.PerformedProcedureStepEndTime
    items = {str(i.SeriesInstanceUID): i for i in change.PerformedSeriesSequence}
    assert set(items) == set(series)
    first = items[series[0]]
    assert first.ProtocolName == "Chest" and first.SeriesDescription == "S0"
    assert {(str(r.ReferencedSOPClassUID), str(r.ReferencedSOPInstanceUID))
            for r in first.ReferencedImageSequence} == \
        {(CT_IMAGE, str(ds.SOPInstanceUID)) for ds in written[0::2]} | \
        {(SECONDARY_CAPTURE, str(capture.SOPInstanceUID))}
    assert peer.steps[uid].PerformedProcedureStepStatus == "COMPLETED"


def test_complete_from_a_store_report_uses_the_uids_sent(
        mpps_peer: tuple[MppsPeer, PynetdicomSCP], pynetdicom_scp: StartSCP,
        tmp_path: Path) -> None:
    peer, scp = mpps_peer
    for n in range(3):
        write_instance(tmp_path / "exam" / f"{n}.dcm")
    archive = pynetdicom_scp(storage=True)
    sent = tmp_path / "sent.csv"
    stored = run_cli("store", archive.address, tmp_path / "exam", "--new-uids", "--report",
                     sent, catch_exceptions=False)
    assert stored.exit_code == 0, stored.output
    uid = create(scp, "-k", "Modality=CT")
    result = run_cli("mpps", scp.address, "complete", uid, "--report", sent,
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [(_, change)] = peer.sets
    reported = {(str(i.SeriesInstanceUID), str(r.ReferencedSOPInstanceUID))
                for i in change.PerformedSeriesSequence for r in i.ReferencedImageSequence}
    assert reported == {(str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
                        for ds in archive.stored}


def test_discontinue_with_a_reason(mpps_peer: tuple[MppsPeer, PynetdicomSCP]) -> None:
    peer, scp = mpps_peer
    uid = create(scp, "-k", "Modality=CT")
    result = run_cli("mpps", scp.address, "discontinue", uid, "--reason", "110514",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [(_, change)] = peer.sets
    assert change.PerformedProcedureStepStatus == "DISCONTINUED"
    [code] = change.PerformedProcedureStepDiscontinuationReasonCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == \
        ("110514", "DCM", "Incorrect worklist entry selected")


def test_an_unknown_reason_is_a_usage_error(mpps_peer: tuple[MppsPeer, PynetdicomSCP]) -> None:
    peer, scp = mpps_peer
    result = run_cli("mpps", scp.address, "discontinue", "1.2.3.4", "--reason", "bored")
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith("dcmtool: error: --reason: unknown discontinuation reason")
    assert peer.sets == []


def test_set_changes_attributes(mpps_peer: tuple[MppsPeer, PynetdicomSCP]) -> None:
    peer, scp = mpps_peer
    uid = create(scp, "-k", "Modality=CT")
    result = run_cli("mpps", scp.address, "set", uid, "-k",
                     "PerformedProcedureStepDescription=Contrast added", "--json",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["operation"] == "N-SET" and doc["step_uid"] == uid and doc["status"] == "0x0000"
    assert peer.steps[uid].PerformedProcedureStepDescription == "Contrast added"


def test_a_change_after_completion_is_refused_with_the_comment(
        mpps_peer: tuple[MppsPeer, PynetdicomSCP]) -> None:
    peer, scp = mpps_peer
    uid = create(scp, "-k", "Modality=CT")
    assert run_cli("mpps", scp.address, "discontinue", uid).exit_code == 0
    assert peer.steps[uid].PerformedProcedureStepStatus == "DISCONTINUED"
    result = run_cli("mpps", scp.address, "discontinue", uid)
    assert result.exit_code == ExitCode.DIMSE_FAILURE
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"dcmtool: error: {scp.address} refused the N-SET of step {uid}: 0x0110 (processing "
        "failure): step already DISCONTINUED",
        "dcmtool: hint: a step COMPLETED or DISCONTINUED cannot be changed any more "
        "(PS3.4 F.7.2.2)",
    ]


def test_an_unknown_step_is_said(mpps_peer: tuple[MppsPeer, PynetdicomSCP]) -> None:
    _peer, scp = mpps_peer
    result = run_cli("mpps", scp.address, "set", "1.2.3.4", "-k",
                     "PerformedProcedureStepDescription=x")
    assert result.exit_code == ExitCode.DIMSE_FAILURE
    assert "0x0112 (no such SOP instance)" in result.stderr
    assert "knows no step 1.2.3.4" in result.stderr


def test_an_invalid_step_uid_is_a_usage_error(mpps_peer: tuple[MppsPeer, PynetdicomSCP]) -> None:
    peer, scp = mpps_peer
    result = run_cli("mpps", scp.address, "discontinue", "not-a-uid")
    assert result.exit_code == ExitCode.USAGE
    assert peer.sets == []


def test_an_abort_is_exit_5(pynetdicom_scp: StartSCP) -> None:
    scp = pynetdicom_scp([(evt.EVT_N_CREATE, abort_handler)], contexts=[MPPS])
    result = run_cli("mpps", scp.address, "create", "-k", "Modality=CT")
    assert result.exit_code == ExitCode.ASSOCIATION_ABORTED
    assert "aborted the association during the N-CREATE" in result.stderr


def test_a_peer_without_mpps_is_exit_5(pynetdicom_scp: StartSCP) -> None:
    scp = pynetdicom_scp()
    result = run_cli("mpps", scp.address, "create", "-k", "Modality=CT")
    assert result.exit_code == ExitCode.ASSOCIATION_ABORTED
    assert "accepted none of the 1 proposed presentation contexts" in result.stderr


def test_complete_needs_series(mpps_peer: tuple[MppsPeer, PynetdicomSCP]) -> None:
    _peer, scp = mpps_peer
    result = run_cli("mpps", scp.address, "complete", "1.2.3.4")
    assert result.exit_code == ExitCode.USAGE
    assert "--series-from DIR or --report" in result.stderr
