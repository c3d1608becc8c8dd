"""C-FIND SCU: identifiers from ``-k`` keys or files, default return keys, results, cancel.

Keys are written as DCMTK users know them: ``PatientName=Doe*``, ``(0010,0010)=``, a bare
``PatientID`` (an empty return key), nested ``ScheduledProcedureStepSequence[0].Modality=MR``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcmtool.config import Peer
from dcmtool.dicom import status
from dcmtool.dicom.sopclasses import (
    MODALITY_WORKLIST_FIND,
    PATIENT_ROOT_FIND,
    PATIENT_STUDY_ONLY_FIND,
    STUDY_ROOT_FIND,
)
from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from dcmtool.errors import UsageError
from dcmtool.net.association import open_association
from dcmtool.net.contexts import ContextRequest

MODELS = {"patient": PATIENT_ROOT_FIND, "study": STUDY_ROOT_FIND,
          "patient-study": PATIENT_STUDY_ONLY_FIND, "worklist": MODALITY_WORKLIST_FIND}

#: Return keys asked for when the user names none at that level (what a PACS browser shows).
DEFAULT_KEYS: dict[str, tuple[str, ...]] = {
    "PATIENT": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                "NumberOfPatientRelatedStudies"),
    "STUDY": ("PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber",
              "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances", "StudyInstanceUID"),
    "SERIES": ("StudyInstanceUID", "SeriesNumber", "Modality", "SeriesDescription",
               "NumberOfSeriesRelatedInstances", "SeriesInstanceUID"),
    "IMAGE": ("StudyInstanceUID", "SeriesInstanceUID", "InstanceNumber", "SOPClassUID",
              "SOPInstanceUID"),
    "WORKLIST": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex",
                 "AccessionNumber", "RequestedProcedureID", "RequestedProcedureDescription",
                 "StudyInstanceUID",
                 "ScheduledProcedureStepSequence[0].Modality",
                 "ScheduledProcedureStepSequence[0].ScheduledStationAETitle",
                 "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate",
                 "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartTime",
                 "ScheduledProcedureStepSequence[0].ScheduledProcedureStepID",
                 "ScheduledProcedureStepSequence[0].ScheduledProcedureStepDescription",
                 "ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName"),
}
#: The unique key of each level, always asked for (it is what a retrieval needs).
UNIQUE_KEYS = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
               "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}

_PART = re.compile(r"^(?P<name>\(?[0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)?|[0-9A-Fa-f]{8}|[A-Za-z]\w*)"
                   r"(?:\[(?P<index>\d+)\])?$")
_NUMERIC_VRS = {"US": int, "UL": int, "SS": int, "SL": int, "UV": int, "SV": int,
                "FL": float, "FD": float}


@dataclass
class FindResult:
    """Everything a C-FIND brought back."""

    matches: list[Any] = field(default_factory=list)  # response identifiers (Datasets)
    status: int | None = None  # the final status
    comment: str = ""
    cancelled: bool = False  # we sent C-CANCEL (--limit)
    seconds: float = 0.0


def parse_key(text: str) -> tuple[list[tuple[int, int | None]], str | None]:
    """``Seq[0].Key=value`` -> ([(seq tag, 0), (key tag, None)], value); no ``=``: ``None``."""
    from pydicom.datadict import tag_for_keyword

    path_text, sep, value = text.partition("=")
    parts: list[tuple[int, int | None]] = []
    for part in path_text.strip().split("."):
        match = _PART.match(part.strip())
        if not match:
            raise UsageError(f"{text!r}: expected Keyword=Value, (gggg,eeee)=Value, "
                             "gggg,eeee=Value or Sequence[0].Keyword=Value", setting="key")
        name = match.group("name")
        if "," in name:  # (0010,0010) or, as findscu takes it, 0010,0010
            digits = name.strip("()")
            tag = int(digits[:4] + digits[5:9], 16)
        elif re.fullmatch(r"[0-9A-Fa-f]{8}", name) and tag_for_keyword(name) is None:
            tag = int(name, 16)
        else:
            found = tag_for_keyword(name)
            if found is None:
                raise UsageError(f"{text!r}: {name} is not a DICOM keyword"
                                 f"{did_you_mean_keyword(name)}", setting="key")
            tag = int(found)
        index = match.group("index")
        parts.append((tag, None if index is None else int(index)))
    return parts, (value if sep else None)


def did_you_mean_keyword(name: str) -> str:
    """'; did you mean PatientName?' for a near miss of a DICOM keyword, else ''."""
    from difflib import get_close_matches

    from pydicom.datadict import keyword_dict

    lowered = {keyword.lower(): keyword for keyword in keyword_dict}
    if name.lower() in lowered:
        return f"; did you mean {lowered[name.lower()]}?"
    close = get_close_matches(name, list(keyword_dict), n=1, cutoff=0.8)
    return f"; did you mean {close[0]}?" if close else ""


def set_key(ds: Any, text: str) -> None:
    """Apply one ``-k`` key to the identifier ``ds`` (creating sequence items as needed)."""
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    parts, value = parse_key(text)
    target = ds
    for tag, index in parts[:-1]:
        if tag not in target or target[tag].VR != "SQ":
            target.add(DataElement(tag, "SQ", DicomSequence([])))
        items = target[tag].value
        position = index or 0
        while len(items) <= position:
            items.append(Dataset())
        target = items[position]
    tag, index = parts[-1]
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        vr = "UN"
    if vr == "SQ":
        if tag not in target:
            target.add(DataElement(tag, "SQ", DicomSequence([])))
        if value:
            raise UsageError(f"{text!r}: a sequence takes items (Seq[0].Key=...), not a "
                             "value", setting="key")
        return
    vr = vr.split(" or ")[0]
    if value and vr not in _NUMERIC_VRS:
        from dcmtool.dicom.matching import MatchingValueError, matching_value

        try:
            value = matching_value(vr, value)
        except MatchingValueError as exc:
            raise UsageError(f"{text!r}: {exc}", setting="key") from None
    converted: Any = value or None
    if value and vr in _NUMERIC_VRS and "-" not in value[1:] and "\\" not in value:
        try:
            converted = _NUMERIC_VRS[vr](value)
        except ValueError:
            raise UsageError(f"{text!r}: {vr} needs a number", setting="key") from None
    elif value and "\\" in value and vr not in ("UI",):
        converted = value.split("\\")
    target.add(DataElement(tag, vr, converted))


def read_query_file(path: Path) -> Any:
    """An identifier from a DICOM file or a DICOM JSON file."""
    from pydicom import dcmread
    from pydicom.dataset import Dataset
    from pydicom.errors import InvalidDicomError

    try:
        if path.suffix.lower() == ".json":
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, list):
                if len(data) != 1:
                    raise UsageError(f"{path}: expected one DICOM JSON object, got "
                                     f"{len(data)}", setting="from")
                data = data[0]
            return Dataset.from_json(data)
        ds = dcmread(path, force=True)
        if hasattr(ds, "file_meta"):
            del ds.file_meta
        return ds
    except (OSError, ValueError, InvalidDicomError, TypeError) as exc:
        raise UsageError(f"{path}: cannot read a query from it ({exc})",
                         setting="from") from None


def build_identifier(keys: Sequence[str], *, level: str | None, base: Any = None,
                     defaults: bool = True, charset: str | None = None) -> Any:
    """The C-FIND identifier: ``base`` (``--from``) or the default return keys, then ``-k``."""
    from pydicom.dataset import Dataset

    ds = base if base is not None else Dataset()
    if level is not None:
        ds.QueryRetrieveLevel = level
    if charset:
        ds.SpecificCharacterSet = charset
    if defaults and base is None:
        # Defaults first: a -k naming the same key replaces it.
        for key in DEFAULT_KEYS["WORKLIST" if level is None else level]:
            set_key(ds, key)
    if level is not None and UNIQUE_KEYS[level] not in ds:
        set_key(ds, UNIQUE_KEYS[level])
    for key in keys:
        set_key(ds, key)
    return ds


def find(peer: Peer, identifier: Any, model: str, *, limit: int | None = None,
         on_match: Callable[[Any], None] | None = None) -> FindResult:
    """Send one C-FIND; C-CANCEL after ``limit`` matches. Raises typed errors."""
    result = FindResult()
    started = time.perf_counter()
    with open_association(peer, [ContextRequest(model, (EXPLICIT_VR_LITTLE_ENDIAN,
                                                        IMPLICIT_VR_LITTLE_ENDIAN))]) as session:
        assoc = session.assoc
        context_id = next(cx.context_id for cx in assoc.accepted_contexts
                          if cx.abstract_syntax == model)
        for response, match in assoc.send_c_find(identifier, model, msg_id=1):
            code = getattr(response, "Status", None)
            if code is None:
                raise session.lost("the C-FIND")
            if status.is_pending(code):
                if match is not None:
                    result.matches.append(match)
                    if on_match:
                        on_match(match)
                if limit is not None and len(result.matches) >= limit and not result.cancelled:
                    assoc.send_c_cancel(1, context_id)
                    result.cancelled = True
                continue
            result.status = int(code)
            result.comment = str(getattr(response, "ErrorComment", "") or "")
    result.seconds = time.perf_counter() - started
    if result.cancelled and limit is not None:
        del result.matches[limit:]
    return result


def check(result: FindResult) -> None:
    """Raise DimseFailure unless the final status was success, a warning or our cancel."""
    status.raise_for_final(
        result.status, "C-FIND", comment=result.comment, cancelled_by_us=result.cancelled,
        hint="check the keys and level (-L), and the model (-P/-S/-O)"
        if result.status == status.IDENTIFIER_DOES_NOT_MATCH else None)


def flatten(ds: Any, prefix: str = "") -> dict[str, str]:
    """Column name -> text for one response (sequences as ``Seq[0].Key``), for tables/CSV."""
    row: dict[str, str] = {}
    for element in ds:
        if element.tag.group == 0x0002 or element.keyword in ("", "SpecificCharacterSet"):
            continue
        name = f"{prefix}{element.keyword}"
        if element.VR == "SQ":
            for index, item in enumerate(element.value):
                row.update(flatten(item, f"{name}[{index}]."))
            continue
        value = element.value
        if value is None:
            row[name] = ""
        elif isinstance(value, bytes):
            row[name] = f"<{len(value)} bytes>"
        elif type(value).__name__ == "MultiValue" or isinstance(value, list):
            row[name] = "\\".join(str(v) for v in value)
        else:
            row[name] = str(value)
    return row
