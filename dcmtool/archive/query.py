"""C-FIND matching over the archive's SQLite index (PS3.4 C.2.2.2 and C.6).

An identifier becomes one SQL query at its Query/Retrieve level: each key with a value is a
condition on the column named by its keyword (single value, wildcard, range, UID list), empty
keys are return keys. Counts (Number of ... Related ...) and Modalities/SOP Classes in Study
are computed, and Available Transfer Syntax UID (IMAGE level) is the stored file's; they are
returned only when asked for. Keys the index does not carry are returned
empty (zero length), as PS3.4 C.2.2.1.2 allows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dcmtool.archive.index import INSTANCE_KEYS, PATIENT_KEYS, SERIES_KEYS, STUDY_KEYS, Index
from dcmtool.dicom.commands import error_comment
from dcmtool.dicom.sopclasses import (
    PATIENT_ROOT_FIND,
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    PATIENT_STUDY_ONLY_FIND,
    PATIENT_STUDY_ONLY_GET,
    PATIENT_STUDY_ONLY_MOVE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
)

LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
#: Levels each information model allows (PS3.4 C.6).
MODEL_LEVELS = {
    "patient": LEVELS,
    "study": LEVELS[1:],
    "patient-study": LEVELS[:2],
}
MODEL_OF = {
    PATIENT_ROOT_FIND: "patient", PATIENT_ROOT_MOVE: "patient", PATIENT_ROOT_GET: "patient",
    STUDY_ROOT_FIND: "study", STUDY_ROOT_MOVE: "study", STUDY_ROOT_GET: "study",
    PATIENT_STUDY_ONLY_FIND: "patient-study", PATIENT_STUDY_ONLY_MOVE: "patient-study",
    PATIENT_STUDY_ONLY_GET: "patient-study",
}

_TABLE = {"PATIENT": "p", "STUDY": "s", "SERIES": "se", "IMAGE": "i"}
_KEYS = {"PATIENT": PATIENT_KEYS, "STUDY": STUDY_KEYS, "SERIES": SERIES_KEYS,
         "IMAGE": INSTANCE_KEYS}
_COLUMN: dict[str, str] = {key: f'{_TABLE[level]}."{key}"'
                           for level, keys in _KEYS.items() for key in keys}
_LEVEL_OF = {key: level for level, keys in _KEYS.items() for key in keys}
_FROM = {
    "PATIENT": "patients p",
    "STUDY": "patients p JOIN studies s ON s.patient = p.id",
    "SERIES": "patients p JOIN studies s ON s.patient = p.id "
              "JOIN series se ON se.StudyInstanceUID = s.StudyInstanceUID",
    "IMAGE": "patients p JOIN studies s ON s.patient = p.id "
             "JOIN series se ON se.StudyInstanceUID = s.StudyInstanceUID "
             "JOIN instances i ON i.SeriesInstanceUID = se.SeriesInstanceUID",
}
#: Computed return keys: (lowest level they apply to, SQL over the current row).
_COMPUTED = {
    "NumberOfPatientRelatedStudies": (
        "PATIENT", "(SELECT COUNT(*) FROM studies x WHERE x.patient = p.id)"),
    "NumberOfPatientRelatedSeries": (
        "PATIENT", "(SELECT COUNT(*) FROM studies x JOIN series y ON y.StudyInstanceUID = "
                   "x.StudyInstanceUID WHERE x.patient = p.id)"),
    "NumberOfPatientRelatedInstances": (
        "PATIENT", "(SELECT COUNT(*) FROM studies x JOIN series y ON y.StudyInstanceUID = "
                   "x.StudyInstanceUID JOIN instances z ON z.SeriesInstanceUID = "
                   "y.SeriesInstanceUID WHERE x.patient = p.id)"),
    "NumberOfStudyRelatedSeries": (
        "STUDY", "(SELECT COUNT(*) FROM series y WHERE y.StudyInstanceUID = s.StudyInstanceUID)"),
    "NumberOfStudyRelatedInstances": (
        "STUDY", "(SELECT COUNT(*) FROM series y JOIN instances z ON z.SeriesInstanceUID = "
                 "y.SeriesInstanceUID WHERE y.StudyInstanceUID = s.StudyInstanceUID)"),
    "ModalitiesInStudy": (
        "STUDY", "(SELECT group_concat(DISTINCT y.Modality) FROM series y "
                 "WHERE y.StudyInstanceUID = s.StudyInstanceUID)"),
    "SOPClassesInStudy": (
        "STUDY", "(SELECT group_concat(DISTINCT z.SOPClassUID) FROM series y JOIN instances z "
                 "ON z.SeriesInstanceUID = y.SeriesInstanceUID "
                 "WHERE y.StudyInstanceUID = s.StudyInstanceUID)"),
    "NumberOfSeriesRelatedInstances": (
        "SERIES", "(SELECT COUNT(*) FROM instances z "
                  "WHERE z.SeriesInstanceUID = se.SeriesInstanceUID)"),
    # What a C-GET requester proposes a context for, to receive the file as it is stored.
    "AvailableTransferSyntaxUID": ("IMAGE", "i.transfer_syntax"),
}
#: The return keys computed at query time (not stored).
COMPUTED_KEYS = tuple(_COMPUTED)
_NO_WILDCARD_VRS = {"UI", "DA", "TM", "DT", "SQ"}
_RANGE_VRS = {"DA", "TM", "DT"}


class QueryError(Exception):
    """An identifier the SCP cannot process: answered with ``status`` and ``comment``."""

    def __init__(self, comment: str, status: int = 0xA900) -> None:
        super().__init__(comment)
        self.comment = error_comment(comment)
        self.status = status


@dataclass(frozen=True)
class QueryOptions:
    case_insensitive_names: bool = False
    utf8: bool = False  # answer in ISO_IR 192 whatever the stored character set
    retrieve_ae_title: str | None = None


@dataclass
class _Plan:
    level: str
    sql: str
    params: list[Any]
    return_keys: list[str]
    sequence_filters: list[tuple[str, Any]]


def level_of(identifier: Any, model: str) -> str:
    """The identifier's Query/Retrieve level, checked against the model; QueryError if bad."""
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if not level:
        raise QueryError("Query/Retrieve Level (0008,0052) is missing")
    if level not in MODEL_LEVELS[model]:
        raise QueryError(f"level {level} is not valid for this information model")
    return level


def plan(identifier: Any, model: str, options: QueryOptions) -> _Plan:
    """Translate the identifier into SQL at its level."""
    level = level_of(identifier, model)
    depth = LEVELS.index(level)
    visible = set(LEVELS[: depth + 1])
    conditions: list[str] = []
    params: list[Any] = []
    return_keys: list[str] = []
    sequence_filters: list[tuple[str, Any]] = []
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
            continue
        if element.tag.group == 0x0002 or element.tag.is_private:
            continue
        return_keys.append(keyword)
        if keyword in _COMPUTED:
            value = _text(element)
            if keyword in _MATCHED_IN_STUDY and value and depth >= LEVELS.index("STUDY"):
                # Optional in PS3.4 C.6.1.1.2 but what people ask ("CT studies"): a study
                # matches when one of its series (instances) has one of the values.
                condition = _in_study(keyword, value)
                if condition:
                    conditions.append(condition[0])
                    params.extend(condition[1])
            continue
        key_level = _LEVEL_OF.get(keyword)
        if key_level is None or key_level not in visible:
            continue  # not indexed, or below the level: returned empty, never matched
        if element.VR == "SQ":
            if element.value and any(len(item) for item in element.value):
                sequence_filters.append((keyword, element.value[0]))
            continue
        value = _text(element)
        if value is None:
            continue
        condition = _condition(_COLUMN[keyword], element.VR, value, options)
        if condition:
            conditions.append(condition[0])
            params.extend(condition[1])
    columns = [f'{_TABLE[lvl]}."{key}" AS "{key}"' for lvl in LEVELS[: depth + 1]
               for key in _KEYS[lvl]]
    # Values come from several rows, each in its own character set (decoded to text here).
    for lvl in LEVELS[: depth + 1]:
        columns.append(f'{_TABLE[lvl]}.SpecificCharacterSet AS "_charset_{_TABLE[lvl]}"')
    for keyword in return_keys:
        if keyword in _COMPUTED and LEVELS.index(_COMPUTED[keyword][0]) <= depth:
            columns.append(f'{_COMPUTED[keyword][1]} AS "{keyword}"')
    order = {"PATIENT": 'p."PatientID"', "STUDY": 's."StudyDate", s."StudyTime"',
             "SERIES": 'CAST(se."SeriesNumber" AS INTEGER)',
             "IMAGE": 'CAST(i."InstanceNumber" AS INTEGER)'}[level]
    sql = f"SELECT {', '.join(columns)} FROM {_FROM[level]}"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    sql += f" ORDER BY {order}"
    return _Plan(level, sql, params, return_keys, sequence_filters)


#: Computed study keys that also match: (table, column, how a row joins the study).
_MATCHED_IN_STUDY = {
    "ModalitiesInStudy": ("series y", "y.Modality", "y.StudyInstanceUID = s.StudyInstanceUID"),
    "SOPClassesInStudy": ("series y JOIN instances z ON z.SeriesInstanceUID = "
                          "y.SeriesInstanceUID", "z.SOPClassUID",
                          "y.StudyInstanceUID = s.StudyInstanceUID"),
}


def _in_study(keyword: str, value: str) -> tuple[str, list[Any]] | None:
    """EXISTS a series (or instance) of the study with one of the values (* and ? as in
    single value matching); None for universal matching."""
    values = [v.strip() for v in value.split("\\") if v.strip()]
    if not values or any(v.strip("*") == "" for v in values):
        return None
    table, column, join = _MATCHED_IN_STUDY[keyword]
    tests = [f"{column} GLOB ?" if ("*" in v or "?" in v) else f"{column} = ?" for v in values]
    params = [v.replace("[", "[[]") if ("*" in v or "?" in v) else v for v in values]
    return (f"EXISTS (SELECT 1 FROM {table} WHERE {join} AND ({' OR '.join(tests)}))",
            params)


def _text(element: Any) -> str | None:
    value = element.value
    if value is None or value == "":
        return None
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value)


def _condition(column: str, vr: str, value: str, options: QueryOptions
               ) -> tuple[str, list[Any]] | None:
    """One key's SQL condition per PS3.4 C.2.2.2 (universal keys give None)."""
    if value.strip("*") == "" and (value == "*" or vr not in _NO_WILDCARD_VRS):
        return None  # universal
    if vr == "UI" and "\\" in value:
        uids = [u.strip() for u in value.split("\\") if u.strip()]
        return f"{column} IN ({', '.join('?' * len(uids))})", uids
    if vr in _RANGE_VRS and "-" in value:
        low, _, high = value.partition("-")
        low, high = low.strip(), high.strip()
        parts: list[str] = []
        params: list[Any] = []
        if low:
            parts.append(f"{column} >= ?")
            params.append(low)
        if high:
            parts.append(f"{column} <= ?")
            params.append(high + ("\uffff" if vr != "DA" else ""))
        return (" AND ".join(parts), params) if parts else None
    insensitive = vr == "PN" and options.case_insensitive_names
    if vr not in _NO_WILDCARD_VRS and ("*" in value or "?" in value):
        if insensitive:
            return f"dicom_glob_ci(?, {column})", [value]
        pattern = value.replace("[", "[[]")
        return f"{column} GLOB ?", [pattern]
    if "\\" in value and vr not in ("PN",):
        values = value.split("\\")
        return f"{column} IN ({', '.join('?' * len(values))})", values
    if insensitive:
        return f"lower({column}) = lower(?)", [value]
    if vr == "PN":
        # A name with trailing empty components matches the stored one without them.
        return f"({column} = ? OR {column} = ?)", [value, value.rstrip("^=")]
    return f"{column} = ?", [value]


@dataclass
class Match:
    """One C-FIND match: its values as index text, before any Dataset is built."""

    level: str
    charset: str | None  # the response's Specific Character Set ('\\'-joined if several)
    values: list[tuple[str, str, Any]]  # (keyword, VR, text or None), identifier order
    retrieve_ae_title: str | None = None

    def encoded(self, *, implicit: bool) -> bytes | None:
        """The response identifier packed with struct, or ``None`` where pydicom must do it
        (sequences, ISO 2022 code extensions, values outside their character set)."""
        from dcmtool.dicom.elements import CODECS, encode, tag_of, value_bytes

        codec = CODECS.get(self.charset or "")
        if codec is None:
            return None
        elements: list[tuple[int, str, bytes]] = []
        if self.charset:
            elements.append((0x00080005, "CS", value_bytes("CS", self.charset, "ascii") or b""))
        elements.append((0x00080052, "CS", value_bytes("CS", self.level, "ascii") or b""))
        if self.retrieve_ae_title:
            elements.append((0x00080054, "AE", value_bytes("AE", self.retrieve_ae_title,
                                                           "ascii") or b""))
        for keyword, vr, value in self.values:
            tag = tag_of(keyword)
            if keyword in ("ModalitiesInStudy", "SOPClassesInStudy") and value:
                value = str(value).replace(",", "\\")
            raw = value_bytes(vr, None if value is None else str(value), codec)
            if tag is None or raw is None:
                return None
            elements.append((tag, vr, raw))
        return encode(elements, implicit=implicit)

    def dataset(self) -> Any:
        """The response identifier as a pydicom Dataset (the general, slower path)."""
        from pydicom.dataset import Dataset

        response = Dataset()
        if self.charset:
            response.SpecificCharacterSet = (self.charset.split("\\") if "\\" in self.charset
                                             else self.charset)
        response.QueryRetrieveLevel = self.level
        for keyword, vr, value in self.values:
            _set(response, keyword, vr, value)
        if self.retrieve_ae_title:
            response.RetrieveAETitle = self.retrieve_ae_title
        return response


def matches(index: Index, identifier: Any, model: str, options: QueryOptions | None = None
            ) -> Iterator[Match]:
    """Yield one Match per index row that satisfies the identifier, in index order."""
    options = options or QueryOptions()
    query = plan(identifier, model, options)
    requested = {element.keyword: element for element in identifier if element.keyword}
    retrieve_ae = options.retrieve_ae_title if "RetrieveAETitle" in requested else None
    levels = LEVELS[: LEVELS.index(query.level) + 1]
    wanted = [(keyword, requested[keyword].VR) for keyword in query.return_keys
              if keyword != "RetrieveAETitle" or not retrieve_ae]
    for row in index.rows(query.sql, tuple(query.params)):
        keys = row.keys()
        if query.sequence_filters and not _sequences_match(row, query.sequence_filters):
            continue
        charsets = {row[f"_charset_{_TABLE[lvl]}"] or None for lvl in levels}
        # One stored character set answers in it; rows that differ answer in UTF-8, which
        # holds every value.
        charset = "ISO_IR 192" if options.utf8 or len(charsets) > 1 else charsets.pop()
        yield Match(query.level, charset,
                    [(keyword, vr, row[keyword] if keyword in keys else None)
                     for keyword, vr in wanted], retrieve_ae)


def _sequences_match(row: Any, filters: list[tuple[str, Any]]) -> bool:
    keys = row.keys()
    for keyword, wanted in filters:
        stored = row[keyword] if keyword in keys else None
        if not stored:
            return False
        items = json.loads(stored)
        if not any(_item_matches(item, wanted) for item in items):
            return False
    return True


def _item_matches(item: dict[str, Any], wanted: Any) -> bool:
    from fnmatch import fnmatchcase

    for element in wanted:
        value = _text(element)
        if value is None:
            continue
        tag = f"{element.tag.group:04X}{element.tag.element:04X}"
        stored = item.get(tag, {}).get("Value", [])
        texts = [v.get("Alphabetic", "") if isinstance(v, dict) else str(v) for v in stored]
        if not any(fnmatchcase(t, value.replace("[", "[[]")) for t in texts):
            return False
    return True


def _set(ds: Any, keyword: str, vr: str, value: Any) -> None:
    """Put an index value (text) into the response under its keyword."""
    from pydicom.dataset import Dataset

    if value is None or value == "":
        setattr(ds, keyword, [] if vr == "SQ" else None)
        if vr != "SQ":
            ds[keyword].value = ""
        return
    if vr == "SQ":
        try:
            setattr(ds, keyword, [Dataset.from_json(item) for item in json.loads(value)])
        except (ValueError, TypeError):
            setattr(ds, keyword, [])
        return
    if keyword in ("ModalitiesInStudy", "SOPClassesInStudy"):
        setattr(ds, keyword, str(value).split(","))
        return
    text = str(value)
    setattr(ds, keyword, text.split("\\") if "\\" in text else text)


def instances_for(index: Index, identifier: Any, model: str
                  ) -> list[tuple[str, str, str, str]]:
    """(path, SOP Class, SOP Instance, transfer syntax) of each instance a retrieval selects.

    The identifier's unique keys at and above its level select; other keys are ignored, as
    PS3.4 C.4.2.1.4 asks.
    """
    level = level_of(identifier, model)
    unique = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID",
              "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
    conditions: list[str] = []
    params: list[Any] = []
    for lvl in LEVELS[: LEVELS.index(level) + 1]:
        keyword = unique[lvl]
        value = _text(identifier[keyword]) if keyword in identifier else None
        if value is None:
            if lvl == level:
                raise QueryError(f"the unique key {keyword} is missing")
            continue
        values = [v.strip() for v in value.split("\\") if v.strip()]
        conditions.append(f"{_COLUMN[keyword]} IN ({', '.join('?' * len(values))})")
        params.extend(values)
    sql = (f"SELECT i.path, i.SOPClassUID, i.SOPInstanceUID, i.transfer_syntax "
           f"FROM {_FROM['IMAGE']} "
           f"WHERE {' AND '.join(conditions)} ORDER BY se.SeriesInstanceUID, "
           f"CAST(i.InstanceNumber AS INTEGER)")
    return [(row[0], row[1], row[2], row[3]) for row in index.rows(sql, tuple(params))]
