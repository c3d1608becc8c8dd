"""Query results on stdout: a table on a terminal, tab-separated values in a pipe, DICOM JSON
(--json), JSON lines (--jsonl) or CSV.

The table is for reading: short titles, fitted to the terminal, UIDs on one line so they can
be copied. The tab-separated values are for the next command: a header of the real keywords
and no padding, so ``dcmtool find PACS | dcmtool move PACS --from -`` works.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import sys
from typing import Any

from dcmtool.cli import console
from dcmtool.cli.groups import OutputOptions

#: Table titles for the usual keys (any other key is titled with its DICOM name).
TITLES = {
    "PatientName": "Patient",
    "PatientID": "Patient ID",
    "IssuerOfPatientID": "Issuer",
    "PatientBirthDate": "Born",
    "PatientSex": "Sex",
    "StudyDate": "Date",
    "StudyTime": "Time",
    "AccessionNumber": "Accession",
    "StudyID": "Study ID",
    "StudyDescription": "Description",
    "ModalitiesInStudy": "Modalities",
    "ReferringPhysicianName": "Referrer",
    "NumberOfPatientRelatedStudies": "Studies",
    "NumberOfPatientRelatedSeries": "Series",
    "NumberOfPatientRelatedInstances": "Images",
    "NumberOfStudyRelatedSeries": "Series",
    "NumberOfStudyRelatedInstances": "Images",
    "NumberOfSeriesRelatedInstances": "Images",
    "StudyInstanceUID": "Study UID",
    "SeriesInstanceUID": "Series UID",
    "SOPInstanceUID": "Instance UID",
    "SOPClassUID": "SOP Class UID",
    "SeriesNumber": "Series #",
    "SeriesDate": "Date",
    "SeriesTime": "Time",
    "SeriesDescription": "Description",
    "BodyPartExamined": "Body part",
    "InstanceNumber": "Number",
    "RequestedProcedureID": "Procedure ID",
    "RequestedProcedureDescription": "Procedure",
    "ScheduledStationAETitle": "Station",
    "ScheduledProcedureStepStartDate": "Date",
    "ScheduledProcedureStepStartTime": "Time",
    "ScheduledProcedureStepID": "Step ID",
    "ScheduledProcedureStepDescription": "Step",
    "ScheduledPerformingPhysicianName": "Performer",
}

#: What a narrow terminal keeps longest (higher first); other keys rank 50. The unique key of
#: the query's level is never left out.
RANKS = {
    "PatientName": 95, "AccessionNumber": 90, "StudyDate": 85, "SeriesNumber": 85,
    "InstanceNumber": 85, "ScheduledProcedureStepStartDate": 85, "PatientID": 80,
    "Modality": 75, "ModalitiesInStudy": 75, "ScheduledProcedureStepStartTime": 70,
    "StudyDescription": 65, "SeriesDescription": 65, "ScheduledProcedureStepDescription": 65,
    "RequestedProcedureDescription": 60, "ScheduledStationAETitle": 55,
    "StudyInstanceUID": 45, "SeriesInstanceUID": 45,
    "NumberOfStudyRelatedInstances": 40, "NumberOfSeriesRelatedInstances": 40,
    "NumberOfPatientRelatedStudies": 40, "NumberOfStudyRelatedSeries": 35,
    "StudyTime": 30, "SeriesTime": 30, "PatientBirthDate": 30, "ScheduledProcedureStepID": 30,
    "RequestedProcedureID": 30, "ScheduledPerformingPhysicianName": 25, "PatientSex": 20,
    "SOPClassUID": 15,
}

_NUMBERS = ("IS", "DS", "US", "UL", "SS", "SL", "UV", "SV", "FL", "FD")


def columns_for(identifier: Any) -> list[str]:
    """Column names in the identifier's order (sequence keys as Seq[0].Key)."""
    from dcmtool.scu.find import flatten

    return [name for name in flatten(identifier) if name != "QueryRetrieveLevel"]


def render(matches: list[Any], identifier: Any, output: OutputOptions) -> None:
    from dcmtool.scu.find import flatten

    if output.json_output:
        console.out(json.dumps([_json(m) for m in matches], indent=2, ensure_ascii=False))
        return
    if output.jsonl:
        for match in matches:
            console.out(json.dumps(_json(match), ensure_ascii=False))
        return
    columns = columns_for(identifier)
    rows = [flatten(m) for m in matches]
    for row in rows:  # keys the peer sent without being asked still show
        for name in row:
            if name not in columns and name != "QueryRetrieveLevel":
                columns.append(name)
    if output.as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[row.get(c, "") for c in columns] for row in rows])
        sys.stdout.flush()
        return
    cells = [[row.get(c, "") for c in columns] for row in rows]
    if not sys.stdout.isatty():
        _tsv(columns, cells)
        return
    specs = table_columns(columns, identifier.get("QueryRetrieveLevel"))
    for index, spec in enumerate(specs):  # a key no match has a value for goes first
        if spec.rank is not None and not any(row[index] for row in cells):
            specs[index] = dataclasses.replace(spec, rank=0)
    dropped = console.print_table(specs, cells)
    from dcmtool.cli.state import settings

    if dropped and not settings.quiet:
        console.err(f"dcmtool: left out to fit the terminal: {', '.join(dropped)} "
                    "(--csv or --json show every key)")


def table_columns(names: list[str], level: str | None) -> list[console.Column]:
    """Short titles, whole UIDs, right-aligned numbers, and what gives way first."""
    from pydicom.datadict import dictionary_description, dictionary_VR

    from dcmtool.scu.find import UNIQUE_KEYS

    unique = UNIQUE_KEYS.get(level or "")
    keywords = [name.rsplit(".", 1)[-1] for name in names]
    titles = [TITLES.get(k, k) for k in keywords]
    columns = []
    for name, keyword, title in zip(names, keywords, titles, strict=True):
        try:
            vr = dictionary_VR(keyword)
            if titles.count(title) > 1 or title == keyword:  # two "Date"s, or not in TITLES
                title = dictionary_description(keyword)
        except KeyError:
            vr = ""
        columns.append(console.Column(
            title, justify="right" if vr in _NUMBERS else "left", whole=vr == "UI",
            rank=None if name == unique else RANKS.get(name, RANKS.get(keyword, 50))))
    return columns


def _tsv(columns: list[str], rows: list[list[str]]) -> None:
    """A header of keywords, then one line per match; a tab or newline in a value (which no
    DICOM text VR allows) becomes a space."""
    def clean(value: str) -> str:
        return value.replace("\t", " ").replace("\r", " ").replace("\n", " ")

    lines = ["\t".join(columns)] + ["\t".join(clean(v) for v in row) for row in rows]
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    sys.stdout.flush()


def _json(ds: Any) -> dict[str, Any]:
    """The DICOM JSON model of one response; values that break their VR are left out."""
    return dict(ds.to_json_dict(suppress_invalid_tags=True))
