"""Modality Performed Procedure Step (PS3.4 F.7): the N-CREATE and N-SET data sets and rules.

Both sides use this module: the SCU (``dcmtool mpps``) builds requests with ``create_request``
and ``set_request``, the SCP (``dcmtool serve``) checks them with ``create_refusal`` and
``check_set``. Nothing here touches the network.

The rules, from PS3.4 F.7.2.1 (N-CREATE, Table F.7.2-1) and F.7.2.2 (N-SET):

- N-CREATE carries every Type 1 attribute with a value, and the Type 2 ones, empty when
  unknown; the step starts IN PROGRESS.
- N-SET may change only the attributes ``SET_ALLOWED`` names (status, description, end date
  and time, codes, performed series, ...): the patient, the scheduled step, the step's ID,
  station, start and modality stay as created. A value sent again unchanged is no change.
- IN PROGRESS may become COMPLETED or DISCONTINUED; after that the step may no longer be
  updated (status 0x0110, Error ID 0xA710).
- The final state needs an end date. PS3.4 also asks the SCU for the end time and, when
  COMPLETED, the performed series; seed 002's SCU (a real one) sets the end date, the status,
  the description and the performed protocol codes only, so those are not refused here.

The SCP is lenient about Type 2 attributes an SCU leaves out (many do) and strict about Type 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dcmtool.dicom.uids import uid_problem

MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"

IN_PROGRESS = "IN PROGRESS"
COMPLETED = "COMPLETED"
DISCONTINUED = "DISCONTINUED"
STATES = (IN_PROGRESS, COMPLETED, DISCONTINUED)
#: No N-SET is accepted in these (F.7.2.2).
FINAL_STATES = (COMPLETED, DISCONTINUED)

#: N-SET/N-CREATE statuses used here (PS3.7 C.5, PS3.4 F.7.2).
PROCESSING_FAILURE = 0x0110
DUPLICATE_SOP_INSTANCE = 0x0111
NO_SUCH_OBJECT_INSTANCE = 0x0112
INVALID_ATTRIBUTE_VALUE = 0x0106
MISSING_ATTRIBUTE = 0x0120
MISSING_ATTRIBUTE_VALUE = 0x0121
#: Error ID (0000,0903) sent with 0x0110: "Performed Procedure Step object may no longer be
#: updated" (F.7.2.2).
NO_LONGER_UPDATABLE = 0xA710

#: N-CREATE, Table F.7.2-1: Type 1 (present with a value) at the top level.
CREATE_TYPE1 = (
    "ScheduledStepAttributesSequence", "PerformedProcedureStepID", "PerformedStationAETitle",
    "PerformedProcedureStepStartDate", "PerformedProcedureStepStartTime",
    "PerformedProcedureStepStatus", "Modality",
)
#: N-CREATE Type 2 (present, empty when unknown) at the top level.
CREATE_TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "ReferencedPatientSequence",
    "PerformedStationName", "PerformedLocation", "PerformedProcedureStepEndDate",
    "PerformedProcedureStepEndTime", "PerformedProcedureStepDescription",
    "PerformedProcedureTypeDescription", "ProcedureCodeSequence", "StudyID",
    "PerformedProtocolCodeSequence", "PerformedSeriesSequence",
)
#: In each Scheduled Step Attributes Sequence item: Type 1, then Type 2.
SCHEDULED_STEP_TYPE1 = ("StudyInstanceUID",)
SCHEDULED_STEP_TYPE2 = (
    "ReferencedStudySequence", "AccessionNumber", "RequestedProcedureID",
    "RequestedProcedureDescription", "ScheduledProcedureStepID",
    "ScheduledProcedureStepDescription", "ScheduledProtocolCodeSequence",
)
#: In each Performed Series Sequence item (N-CREATE and N-SET): Type 1, then Type 2.
PERFORMED_SERIES_TYPE1 = ("SeriesInstanceUID", "ProtocolName")
PERFORMED_SERIES_TYPE2 = (
    "PerformingPhysicianName", "OperatorsName", "SeriesDescription", "RetrieveAETitle",
    "ReferencedImageSequence", "ReferencedNonImageCompositeSOPInstanceSequence",
)
#: What an N-SET may change (F.7.2.2, Table F.7.2-2: "3/1", "3/3" and "1C" rows).
SET_ALLOWED = frozenset({
    "SpecificCharacterSet", "PerformedProcedureStepStatus",
    "PerformedProcedureStepDescription", "PerformedProcedureTypeDescription",
    "ProcedureCodeSequence", "PerformedProcedureStepEndDate", "PerformedProcedureStepEndTime",
    "CommentsOnThePerformedProcedureStep",
    "PerformedProcedureStepDiscontinuationReasonCodeSequence",
    "PerformedProtocolCodeSequence", "PerformedSeriesSequence",
    # Radiation dose and billing attributes (Type 3 in both requests)
    "TotalTimeOfFluoroscopy", "TotalNumberOfExposures", "DistanceSourceToDetector",
    "DistanceSourceToEntrance", "EntranceDose", "EntranceDoseInmGy", "ExposedArea",
    "ImageAndFluoroscopyAreaDoseProduct", "CommentsOnRadiationDose",
    "ExposureDoseSequence", "BillingProcedureStepSequence", "FilmConsumptionSequence",
    "BillingSuppliesAndDevicesSequence",
})
#: Attributes the N-CREATE sets and an N-SET must leave as they are.
SET_NOT_ALLOWED = frozenset(CREATE_TYPE1 + CREATE_TYPE2) - SET_ALLOWED

#: Discontinuation reasons (CID 9300, scheme DCM) for ``set_request(reason_code=...)``.
DISCONTINUATION_REASONS: dict[str, str] = {
    "110500": "Doctor canceled procedure",
    "110501": "Equipment failure",
    "110502": "Incorrect procedure ordered",
    "110503": "Patient allergic to media/contrast",
    "110504": "Patient died",
    "110505": "Patient refused to continue procedure",
    "110506": "Patient taken for treatment or surgery",
    "110507": "Patient did not arrive",
    "110508": "Patient pregnant",
    "110509": "Change of procedure for correct charging",
    "110510": "Duplicate order",
    "110511": "Nursing unit cancel",
    "110512": "Incorrect side ordered",
    "110513": "Discontinued for unspecified reason",
    "110514": "Incorrect worklist entry selected",
    "110515": "Patient condition prevented continuing",
    "110516": "Equipment change",
}


@dataclass(frozen=True)
class PerformedSeries:
    """One series of a step, for the Performed Series Sequence.

    ``instances`` are (SOP Class UID, SOP Instance UID) pairs; image classes go in the
    Referenced Image Sequence, the others in the Referenced Non-Image Composite SOP Instance
    Sequence. ``modality`` is informative (an N-SET cannot change the step's Modality);
    ``protocol`` is the Protocol Name (Type 1; "UNKNOWN" when not known).
    """

    series_uid: str
    modality: str | None = None
    protocol: str | None = None
    instances: list[tuple[str, str]] = field(default_factory=list)
    description: str | None = None


# -- building requests (the SCU) ---------------------------------------------------------------


def _date_time(now: datetime) -> tuple[str, str]:
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S")


def _apply_keys(ds: Dataset, keys: Sequence[str]) -> None:
    """``Keyword=Value`` pairs onto ``ds`` (top-level keywords; ``Keyword=`` empties one)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    for text in keys:
        keyword, sep, value = text.partition("=")
        keyword = keyword.strip()
        tag = tag_for_keyword(keyword)
        if not sep or tag is None:
            raise ValueError(f"{text!r}: expected Keyword=Value with a DICOM keyword")
        vr = dictionary_VR(tag)
        if vr == "SQ":
            if value:
                raise ValueError(f"{text!r}: {keyword} is a sequence and takes no value")
            setattr(ds, keyword, DicomSequence([]))
            continue
        setattr(ds, keyword, value.split("\\") if "\\" in value else value)


def _copy(source: Dataset | None, target: Dataset, keywords: Sequence[str]) -> None:
    """Copy ``keywords`` from ``source`` when present, else add them empty (Type 2)."""
    for keyword in keywords:
        value = source.get(keyword) if source is not None else None
        if value is None:
            from pydicom.datadict import dictionary_VR, tag_for_keyword

            tag = tag_for_keyword(keyword)
            empty: Any = DicomSequence([]) if tag and dictionary_VR(tag) == "SQ" else ""
            setattr(target, keyword, empty)
        else:
            setattr(target, keyword, value)


def create_request(*, worklist_item: Dataset | None, keys: Sequence[str], station_ae: str,
                   now: datetime) -> Dataset:
    """The N-CREATE Attribute List of a step that starts IN PROGRESS at ``now``.

    From a worklist item (a Modality Worklist C-FIND answer: its patient, requested
    procedure and first Scheduled Procedure Step) or, unscheduled, from ``keys`` alone
    (``Keyword=Value``, applied last, so they override the item). The seed 002 attributes are
    all there: Patient ID, birth date and sex, Study ID, Performed Station AE Title, Name and
    Location, start date and time, end date and time (empty), status, PPS ID, description
    and the Performed Protocol Code Sequence. Raises ``ValueError`` when no Modality can be
    found or a key is malformed. The SOP Instance UID is not in it (the N-CREATE carries it).
    """
    item = worklist_item
    step: Dataset | None = None
    if item is not None:
        steps = item.get("ScheduledProcedureStepSequence")
        step = steps[0] if steps else None
    ds = Dataset()
    if item is not None and item.get("SpecificCharacterSet"):
        ds.SpecificCharacterSet = item.SpecificCharacterSet
    scheduled = Dataset()
    study_uid = item.get("StudyInstanceUID") if item is not None else None
    if study_uid:
        scheduled.StudyInstanceUID = study_uid
    else:
        from pydicom.uid import generate_uid

        scheduled.StudyInstanceUID = generate_uid()
    _copy(item, scheduled, ("ReferencedStudySequence", "AccessionNumber",
                            "RequestedProcedureID", "RequestedProcedureDescription"))
    _copy(step, scheduled, ("ScheduledProcedureStepID", "ScheduledProcedureStepDescription",
                            "ScheduledProtocolCodeSequence"))
    ds.ScheduledStepAttributesSequence = DicomSequence([scheduled])
    _copy(item, ds, ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                     "ReferencedPatientSequence"))
    start_date, start_time = _date_time(now)
    ds.PerformedProcedureStepID = now.strftime("%y%m%d%H%M%S%f")[:16]
    ds.PerformedStationAETitle = station_ae
    ds.PerformedStationName = (step.get("ScheduledStationName") if step is not None
                               else None) or ""
    ds.PerformedLocation = (step.get("ScheduledProcedureStepLocation") if step is not None
                            else None) or ""
    ds.PerformedProcedureStepStartDate = start_date
    ds.PerformedProcedureStepStartTime = start_time
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.PerformedProcedureStepStatus = IN_PROGRESS
    description = None
    if step is not None:
        description = step.get("ScheduledProcedureStepDescription")
    if not description and item is not None:
        description = item.get("RequestedProcedureDescription")
    ds.PerformedProcedureStepDescription = description or ""
    ds.PerformedProcedureTypeDescription = ""
    codes = item.get("RequestedProcedureCodeSequence") if item is not None else None
    ds.ProcedureCodeSequence = DicomSequence(list(codes or []))
    ds.Modality = (step.get("Modality") if step is not None else None) or ""
    ds.StudyID = ""
    protocol = step.get("ScheduledProtocolCodeSequence") if step is not None else None
    ds.PerformedProtocolCodeSequence = DicomSequence(list(protocol or []))
    ds.PerformedSeriesSequence = DicomSequence([])
    _apply_keys(ds, keys)
    if not ds.get("Modality"):
        raise ValueError("no Modality for the performed procedure step: the worklist item "
                         "has none; give it as a key (Modality=CT)")
    return ds


def _code_item(reason_code: str) -> Dataset:
    """A CID 9300 code value, or ``VALUE^SCHEME^MEANING``."""
    parts = reason_code.split("^")
    if len(parts) == 3 and all(parts):
        value, scheme, meaning = parts
    elif reason_code in DISCONTINUATION_REASONS:
        value, scheme, meaning = reason_code, "DCM", DISCONTINUATION_REASONS[reason_code]
    else:
        known = ", ".join(f"{code} ({words})" for code, words in DISCONTINUATION_REASONS.items())
        raise ValueError(f"unknown discontinuation reason {reason_code!r}: use one of {known}, "
                         "or VALUE^SCHEME^MEANING")
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _image_class(sop_class_uid: str) -> bool:
    from pydicom.uid import UID

    return "Image" in UID(sop_class_uid).name


def _series_item(series: PerformedSeries) -> Dataset:
    item = Dataset()
    item.SeriesInstanceUID = series.series_uid
    item.ProtocolName = series.protocol or "UNKNOWN"
    item.SeriesDescription = series.description or ""
    item.PerformingPhysicianName = ""
    item.OperatorsName = ""
    item.RetrieveAETitle = ""
    images: list[Dataset] = []
    others: list[Dataset] = []
    for sop_class, sop_instance in series.instances:
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = sop_instance
        (images if _image_class(sop_class) else others).append(ref)
    item.ReferencedImageSequence = DicomSequence(images)
    item.ReferencedNonImageCompositeSOPInstanceSequence = DicomSequence(others)
    return item


def set_request(status: str, *, performed_series: Sequence[PerformedSeries] = (),
                reason_code: str | None = None, now: datetime,
                description: str | None = None) -> Dataset:
    """The N-SET Modification List moving a step to ``status`` at ``now``.

    COMPLETED or DISCONTINUED set the end date and time; ``performed_series`` fill the
    Performed Series Sequence, ``reason_code`` (DISCONTINUED only: a CID 9300 code such as
    ``110513``, or ``VALUE^SCHEME^MEANING``) the discontinuation reason. Raises
    ``ValueError`` for an unknown status or reason, or a reason for another status.
    """
    if status not in STATES:
        raise ValueError(f"unknown performed procedure step status {status!r}: expected "
                         + ", ".join(STATES))
    if reason_code is not None and status != DISCONTINUED:
        raise ValueError("a discontinuation reason goes with DISCONTINUED only")
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    if status in FINAL_STATES:
        ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime = _date_time(now)
    if description is not None:
        ds.PerformedProcedureStepDescription = description
    if performed_series:
        ds.PerformedSeriesSequence = DicomSequence([_series_item(s) for s in performed_series])
    if reason_code is not None:
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = DicomSequence(
            [_code_item(reason_code)])
    return ds


# -- checking requests (the SCP) ---------------------------------------------------------------


def _has_value(ds: Dataset, keyword: str) -> bool:
    value = ds.get(keyword)
    if value is None:
        return False
    if isinstance(value, DicomSequence):
        return len(value) > 0
    return str(value).strip() != ""


def _create_problems(ds: Dataset) -> list[tuple[int, str]]:
    problems: list[tuple[int, str]] = []
    for keyword in CREATE_TYPE1:
        if keyword not in ds:
            problems.append((MISSING_ATTRIBUTE, f"{keyword} is missing"))
        elif not _has_value(ds, keyword):
            problems.append((MISSING_ATTRIBUTE_VALUE, f"{keyword} is empty"))
    status = str(ds.get("PerformedProcedureStepStatus") or "").strip()
    if status and status != IN_PROGRESS:
        problems.append((INVALID_ATTRIBUTE_VALUE,
                         f"a step is created IN PROGRESS, not {status[:16]!r}"))
    for number, item in enumerate(ds.get("ScheduledStepAttributesSequence") or [], 1):
        for keyword in SCHEDULED_STEP_TYPE1:
            if not _has_value(item, keyword):
                problems.append((MISSING_ATTRIBUTE_VALUE, f"ScheduledStepAttributesSequence "
                                 f"item {number} has no {keyword}"))
        study = item.get("StudyInstanceUID")
        if study and uid_problem(study):
            problems.append((INVALID_ATTRIBUTE_VALUE,
                             f"StudyInstanceUID {str(study)[:80]!r} {uid_problem(study)}"))
    problems += _series_problems(ds)
    return problems


def _series_problems(ds: Dataset) -> list[tuple[int, str]]:
    problems: list[tuple[int, str]] = []
    for number, item in enumerate(ds.get("PerformedSeriesSequence") or [], 1):
        uid = item.get("SeriesInstanceUID")
        if not uid:
            problems.append((MISSING_ATTRIBUTE_VALUE,
                             f"PerformedSeriesSequence item {number} has no SeriesInstanceUID"))
        elif uid_problem(uid):
            problems.append((INVALID_ATTRIBUTE_VALUE,
                             f"SeriesInstanceUID {str(uid)[:80]!r} {uid_problem(uid)}"))
    return problems


def check_create(ds: Dataset) -> list[str]:
    """What is wrong with an N-CREATE Attribute List (F.7.2.1): missing or empty Type 1
    attributes, a status other than IN PROGRESS, invalid UIDs; ``[]`` when it is fine."""
    return [message for _status, message in _create_problems(ds)]


def create_refusal(ds: Dataset) -> tuple[int, str] | None:
    """The status and comment to refuse an N-CREATE with (the first problem's status:
    0x0120 missing attribute, 0x0121 missing value, 0x0106 invalid value), or ``None``."""
    problems = _create_problems(ds)
    if not problems:
        return None
    return problems[0][0], "; ".join(message for _status, message in problems)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, DicomSequence) or isinstance(b, DicomSequence):
        return list(a or []) == list(b or [])
    return str("" if a is None else a).strip() == str("" if b is None else b).strip()


def check_set(current: Dataset, change: Dataset) -> tuple[int, str] | None:
    """The status and comment to refuse an N-SET with, or ``None`` when it may be applied.

    ``current`` is the step as stored, ``change`` the Modification List. Refused: any change
    to a step already COMPLETED or DISCONTINUED (0x0110; the SCP adds Error ID 0xA710), a
    change to an attribute only N-CREATE sets (0x0106), an unknown status (0x0106), a final
    state without an end date (0x0110), a performed series without its UID (0x0121).
    """
    state = str(current.get("PerformedProcedureStepStatus") or "").strip()
    if state in FINAL_STATES:
        return PROCESSING_FAILURE, f"performed procedure step already {state}"
    for element in change:
        keyword = element.keyword
        if keyword in SET_NOT_ALLOWED and not _same(current.get(keyword), element.value):
            return INVALID_ATTRIBUTE_VALUE, f"an N-SET may not change {keyword}"
    status = change.get("PerformedProcedureStepStatus")
    if status is not None:
        status = str(status).strip()
        if status not in STATES:
            return INVALID_ATTRIBUTE_VALUE, (f"unknown status {status[:16]!r}: "
                                             + ", ".join(STATES))
    else:
        status = state
    problems = _series_problems(change)
    if problems:
        return problems[0]
    if status in FINAL_STATES:
        end = change.get("PerformedProcedureStepEndDate",
                         current.get("PerformedProcedureStepEndDate"))
        if not str(end or "").strip():
            return PROCESSING_FAILURE, (f"a step {status} needs PerformedProcedureStepEndDate")
    return None
