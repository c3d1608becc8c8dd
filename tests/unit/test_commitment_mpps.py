"""The storage commitment and MPPS data sets (dcmtool.dicom.commitment, dcmtool.dicom.mpps):
built and checked without sockets."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dcmtool.dicom import commitment, mpps
from dcmtool.dicom.commitment import Reference
from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN

CT = "1.2.840.10008.5.1.4.1.1.2"
SR = "1.2.840.10008.5.1.4.1.1.88.11"
NOW = datetime(2026, 3, 4, 10, 20, 30)


# -- storage commitment ------------------------------------------------------------------------


def test_an_action_request_round_trips() -> None:
    refs = [Reference(CT, "1.2.3.1"), Reference(SR, "1.2.3.2")]
    ds = commitment.action_request("1.2.3.9", refs)
    assert ds.TransactionUID == "1.2.3.9"
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID)
            for i in ds.ReferencedSOPSequence] == [(CT, "1.2.3.1"), (SR, "1.2.3.2")]
    assert commitment.parse_action(ds) == ("1.2.3.9", refs)


@pytest.mark.parametrize(("transaction", "refs", "message"), [
    ("1.2.3", [], "a storage commitment request needs at least one instance"),
    ("1.2..3", [Reference(CT, "1.2.3")], "Transaction UID '1.2..3' is not a valid UID"),
    ("1.2.3", [Reference(CT, "x")], "Referenced SOP Instance UID 'x' is not a valid UID"),
])
def test_an_action_request_refuses_what_it_cannot_send(transaction: str, refs: list[Reference],
                                                       message: str) -> None:
    with pytest.raises(ValueError, match=message):
        commitment.action_request(transaction, refs)


def test_an_event_report_says_all_committed_or_some_failed() -> None:
    ok = Reference(CT, "1.2.3.1")
    missing = Reference(CT, "1.2.3.2", 0x0112)
    unknown = Reference(CT, "1.2.3.3")  # no reason known: processing failure
    event_type, ds = commitment.event_report("1.2.3.9", [ok], [], retrieve_ae_title="ARCHIVE")
    assert event_type == commitment.ALL_COMMITTED == 1
    assert ds.RetrieveAETitle == "ARCHIVE" and "FailedSOPSequence" not in ds
    event_type, ds = commitment.event_report("1.2.3.9", [], [missing, unknown])
    assert event_type == commitment.SOME_FAILED == 2
    assert "ReferencedSOPSequence" not in ds  # J.3.3.1.1: only when some were committed
    assert [i.FailureReason for i in ds.FailedSOPSequence] == [0x0112, 0x0110]
    assert commitment.parse_event_report(event_type, ds) == (
        "1.2.3.9", [], [missing, Reference(CT, "1.2.3.3", 0x0110)])


def test_a_report_that_cannot_be_read_says_why() -> None:
    ds = Dataset()
    with pytest.raises(ValueError, match="Event Type ID 3 is not a storage commitment"):
        commitment.parse_event_report(3, ds)
    with pytest.raises(ValueError, match=r"no Transaction UID \(0008,1195\)"):
        commitment.parse_event_report(1, ds)
    ds.TransactionUID = "1.2.3"
    with pytest.raises(ValueError, match="without a Failed SOP Sequence"):
        commitment.parse_event_report(2, ds)
    item = Dataset()
    item.ReferencedSOPClassUID = CT
    ds.FailedSOPSequence = DicomSequence([item])
    with pytest.raises(ValueError, match="Failed SOP Sequence item 1: no Referenced SOP "
                                         "Instance UID"):
        commitment.parse_event_report(2, ds)


SYNTAXES = [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN]


def pydicom_bytes(ds: Dataset, syntax: str) -> bytes:
    """What pynetdicom sends: pydicom's writer (sequences and items of undefined length)."""
    from pynetdicom.dsutils import encode

    data = encode(ds, syntax == IMPLICIT_VR_LITTLE_ENDIAN, True)
    assert data is not None
    return data


def pydicom_read(data: bytes, syntax: str) -> Dataset:
    from io import BytesIO

    from pynetdicom.dsutils import decode

    return decode(BytesIO(data), syntax == IMPLICIT_VR_LITTLE_ENDIAN, True)


@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined-lengths"])
@pytest.mark.parametrize("syntax", SYNTAXES)
def test_the_fast_reader_reads_what_pydicom_writes(syntax: str, undefined: bool) -> None:
    refs = [Reference(CT, f"1.2.3.{n}") for n in range(1, 200)]
    ds = commitment.action_request("1.2.3.9", refs)
    ds.StorageMediaFileSetID = "DISC1"  # elements the reader skips
    ds.ReferencedSOPSequence[0].StorageMediaFileSetUID = "1.2.3.4"
    nested = Dataset()
    nested.CodeValue = "X"
    ds.ReferencedSOPSequence[1].PurposeOfReferenceCodeSequence = DicomSequence([nested])
    if undefined:  # sequences and items closed by delimiters, nested ones too
        ds["ReferencedSOPSequence"].is_undefined_length = True
        ds.ReferencedSOPSequence[1]["PurposeOfReferenceCodeSequence"].is_undefined_length = True
        for item in [*ds.ReferencedSOPSequence, nested]:
            item.is_undefined_length_sequence_item = True
    data = pydicom_bytes(ds, syntax)
    assert (b"\xfe\xff\xdd\xe0" in data) == undefined
    assert commitment.parse_action_data(data, syntax) == commitment.parse_action(ds) == (
        "1.2.3.9", refs)


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_the_fast_writer_writes_what_pydicom_reads(syntax: str) -> None:
    committed = [Reference(CT, "1.2.3.1")]
    failed = [Reference(CT, "1.2.3.2", 0x0112), Reference(SR, "1.2.3.3")]
    data = commitment.encode_event_information("1.2.3.9", committed, failed, "ARCHIVE", syntax)
    assert data is not None
    read = pydicom_read(data, syntax)
    assert read.RetrieveAETitle == "ARCHIVE"
    expected = ("1.2.3.9", committed, [failed[0], Reference(SR, "1.2.3.3", 0x0110)])
    assert commitment.parse_event_report(2, read) == expected
    assert commitment.parse_event_report_data(2, data, syntax) == expected
    _event_type, ds = commitment.event_report("1.2.3.9", committed, failed, "ARCHIVE")
    assert pydicom_bytes(ds, syntax) != b""  # the two writers agree on content, not bytes
    assert commitment.parse_event_report(2, ds) == expected


def test_the_fast_reader_leaves_the_unusual_to_pydicom() -> None:
    data = pydicom_bytes(commitment.action_request("1.2.3.9", [Reference(CT, "1.2.3.1")]),
                         EXPLICIT_VR_LITTLE_ENDIAN)
    assert commitment.parse_action_data(data, "1.2.840.10008.1.2.2") is None  # big endian
    assert commitment.parse_action_data(data[:-6], EXPLICIT_VR_LITTLE_ENDIAN) \
        is None  # truncated
    assert commitment.encode_event_information("1.2.3.9", [Reference(CT, "1.2.3.1")], [],
                                                None, "1.2.840.10008.1.2.1.99") is None


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_the_fast_reader_refuses_what_parse_action_refuses(syntax: str) -> None:
    empty = Dataset()
    empty.TransactionUID = "1.2.3.9"
    empty.ReferencedSOPSequence = DicomSequence([])
    no_uid = commitment.action_request("1.2.3.9", [Reference(CT, "1.2.3.1")])
    del no_uid.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    for ds, message in ((empty, "is empty"), (no_uid, "no Referenced SOP Instance UID")):
        data = pydicom_bytes(ds, syntax)
        with pytest.raises(ValueError, match=message):
            commitment.parse_action_data(data, syntax)
        with pytest.raises(ValueError, match=message):
            commitment.parse_action(ds)


def test_failure_reasons_are_in_words() -> None:
    assert commitment.describe_failure(0x0112) == "0x0112 (no such object instance)"
    assert commitment.describe_failure(0x0119) == "0x0119 (class/instance conflict)"
    assert commitment.describe_failure(0x0131) == "0x0131 (duplicate transaction UID)"
    assert commitment.describe_failure(0xA700) == "0xA700 (out of resources)"


# -- MPPS --------------------------------------------------------------------------------------


def worklist_item() -> Dataset:
    item = Dataset()
    item.SpecificCharacterSet = "ISO_IR 100"
    item.PatientName = "Doe^Jane"
    item.PatientID = "PAT42"
    item.PatientSex = "F"
    item.StudyInstanceUID = "1.2.3.100"
    item.AccessionNumber = "ACC42"
    item.RequestedProcedureID = "RP42"
    item.RequestedProcedureDescription = "CT chest"
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledProcedureStepID = "SPS42"
    step.ScheduledProcedureStepDescription = "CT chest w/o"
    step.ScheduledStationName = "CT-ROOM-1"
    item.ScheduledProcedureStepSequence = DicomSequence([step])
    return item


def test_create_request_from_a_worklist_item_has_seed_002s_attributes() -> None:
    ds = mpps.create_request(worklist_item=worklist_item(), keys=["PerformedLocation=Room 1"],
                             station_ae="CT01", now=NOW)
    # seed 002's N-CREATE list, every one present
    for keyword in ("PatientID", "PatientBirthDate", "PatientSex", "StudyID",
                    "PerformedStationAETitle", "PerformedStationName", "PerformedLocation",
                    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
                    "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime",
                    "PerformedProcedureStepStatus", "PerformedProcedureStepID",
                    "PerformedProcedureStepDescription", "PerformedProtocolCodeSequence"):
        assert keyword in ds, keyword
    for keyword in mpps.CREATE_TYPE2:  # Type 2: present, empty when unknown
        assert keyword in ds, keyword
    assert mpps.check_create(ds) == []
    assert (ds.PatientID, ds.PatientSex, ds.PatientBirthDate) == ("PAT42", "F", "")
    assert ds.PerformedStationAETitle == "CT01"
    assert ds.PerformedStationName == "CT-ROOM-1"
    assert ds.PerformedLocation == "Room 1"
    assert (ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime) == (
        "20260304", "102030")
    assert ds.PerformedProcedureStepStatus == "IN PROGRESS"
    assert ds.PerformedProcedureStepDescription == "CT chest w/o"
    assert ds.Modality == "CT"
    assert len(ds.PerformedProcedureStepID) <= 16
    (scheduled,) = ds.ScheduledStepAttributesSequence
    assert (scheduled.StudyInstanceUID, scheduled.AccessionNumber,
            scheduled.ScheduledProcedureStepID) == ("1.2.3.100", "ACC42", "SPS42")
    assert ds.SpecificCharacterSet == "ISO_IR 100"
    assert "SOPInstanceUID" not in ds  # the N-CREATE carries it


def test_an_unscheduled_create_needs_a_modality() -> None:
    with pytest.raises(ValueError, match=r"no Modality .*Modality=CT"):
        mpps.create_request(worklist_item=None, keys=["PatientID=X"], station_ae="A", now=NOW)
    ds = mpps.create_request(worklist_item=None, keys=["Modality=MR"], station_ae="A",
                             now=NOW)
    assert mpps.check_create(ds) == []
    assert ds.ScheduledStepAttributesSequence[0].StudyInstanceUID  # a new study
    with pytest.raises(ValueError, match="expected Keyword=Value"):
        mpps.create_request(worklist_item=None, keys=["NoSuchKeyword=1"], station_ae="A",
                            now=NOW)


def test_set_request_completes_with_series_or_discontinues_with_a_reason() -> None:
    series = mpps.PerformedSeries("1.2.3.7", "CT", None, [(CT, "1.2.3.8"), (SR, "1.2.3.9")])
    ds = mpps.set_request("COMPLETED", performed_series=[series], now=NOW)
    assert (ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime) == (
        "20260304", "102030")
    (item,) = ds.PerformedSeriesSequence
    assert item.ProtocolName == "UNKNOWN"  # Type 1
    assert [r.ReferencedSOPInstanceUID for r in item.ReferencedImageSequence] == ["1.2.3.8"]
    assert [r.ReferencedSOPInstanceUID for r in
            item.ReferencedNonImageCompositeSOPInstanceSequence] == ["1.2.3.9"]
    ds = mpps.set_request("DISCONTINUED", reason_code="110513", now=NOW)
    (code,) = ds.PerformedProcedureStepDiscontinuationReasonCodeSequence
    assert code.CodeMeaning == "Discontinued for unspecified reason"
    with pytest.raises(ValueError, match="unknown discontinuation reason"):
        mpps.set_request("DISCONTINUED", reason_code="999", now=NOW)
    with pytest.raises(ValueError, match="with DISCONTINUED only"):
        mpps.set_request("COMPLETED", reason_code="110513", now=NOW)
    with pytest.raises(ValueError, match="unknown performed procedure step status"):
        mpps.set_request("DONE", now=NOW)


def test_check_create_names_what_is_missing() -> None:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = "COMPLETED"
    problems = mpps.check_create(ds)
    assert "ScheduledStepAttributesSequence is missing" in problems
    assert "Modality is missing" in problems
    assert "a step is created IN PROGRESS, not 'COMPLETED'" in problems
    assert mpps.create_refusal(ds) is not None
    assert mpps.create_refusal(ds)[0] == 0x0120  # type: ignore[index]


@pytest.mark.parametrize(("current_status", "change", "refusal"), [
    ("COMPLETED", {"PerformedProcedureStepDescription": "x"},
     (0x0110, "performed procedure step already COMPLETED")),
    ("DISCONTINUED", {}, (0x0110, "performed procedure step already DISCONTINUED")),
    ("IN PROGRESS", {"Modality": "MR"}, (0x0106, "an N-SET may not change Modality")),
    ("IN PROGRESS", {"Modality": "CT"}, None),  # the same value: no change
    ("IN PROGRESS", {"PerformedProcedureStepStatus": "PAUSED"},
     (0x0106, "unknown status 'PAUSED': IN PROGRESS, COMPLETED, DISCONTINUED")),
    ("IN PROGRESS", {"PerformedProcedureStepStatus": "DISCONTINUED"},
     (0x0110, "a step DISCONTINUED needs PerformedProcedureStepEndDate")),
    ("IN PROGRESS", {"PerformedProcedureStepStatus": "COMPLETED",
                     "PerformedProcedureStepEndDate": "20260304"}, None),
    ("IN PROGRESS", {"PerformedProcedureStepDescription": "more"}, None),
])
def test_check_set_follows_f_7_2_2(current_status: str, change: dict[str, str],
                                   refusal: tuple[int, str] | None) -> None:
    current = mpps.create_request(worklist_item=worklist_item(), keys=[], station_ae="A",
                                  now=NOW)
    current.PerformedProcedureStepStatus = current_status
    modification = Dataset()
    for keyword, value in change.items():
        setattr(modification, keyword, value)
    assert mpps.check_set(current, modification) == refusal
