"""The index has the indexes the common C-FIND keys need: SQLite's query plans, read with
EXPLAIN QUERY PLAN, search (never scan a table) for an exact Patient ID, a name wildcard, a
date range, an Accession Number and the UIDs; an all-studies query walks the (StudyDate,
StudyTime) index in answer order, so its first match is sent before the last is read.

Plans are checked on a fresh index (the planner's defaults) and after ANALYZE on a
populated one (what ``PRAGMA optimize`` at close gives a real archive)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dcmtool.archive.index import Index, InstanceRecord
from dcmtool.archive.query import QueryOptions, plan

STUDY_RETURN_KEYS = ("PatientName", "PatientID", "StudyDate", "StudyTime", "AccessionNumber",
                     "StudyID", "StudyDescription", "StudyInstanceUID")


def identifier(level: str, **keys: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    if level == "STUDY":
        for keyword in STUDY_RETURN_KEYS:
            setattr(ds, keyword, "")
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


SELECTIVE = {
    "exact Patient ID": identifier("STUDY", PatientID="IDX-1-000123"),
    "Patient Name wildcard": identifier("STUDY", PatientName="FARBURY*"),
    "exact Patient Name": identifier("STUDY", PatientName="FARBURY^ANN"),
    "Study Date range": identifier("STUDY", StudyDate="20181012-20181110"),
    "Study Date": identifier("STUDY", StudyDate="20181012"),
    "Accession Number": identifier("STUDY", AccessionNumber="A000123"),
    "Study Instance UID": identifier("STUDY", StudyInstanceUID="2.25.7"),
    "series of a study": identifier("SERIES", StudyInstanceUID="2.25.7", SeriesInstanceUID="",
                                    Modality=""),
    "instances of a series": identifier("IMAGE", StudyInstanceUID="2.25.7",
                                        SeriesInstanceUID="2.25.8", SOPInstanceUID=""),
}


def populated(path: Path, studies: int) -> Index:
    index = Index(path)
    records = []
    for n in range(studies):
        for number in range(4):
            values = {"PatientID": f"IDX-1-{n // 2:06d}", "PatientName": f"NAME{n % 100}^X",
                      "StudyInstanceUID": f"2.25.{n}", "StudyDate": f"2018{n % 12 + 1:02d}01",
                      "StudyTime": "120000", "AccessionNumber": f"A{n:06d}",
                      "SeriesInstanceUID": f"2.25.{n}.{number % 2}", "Modality": "CT",
                      "SOPInstanceUID": f"2.25.{n}.{number}.1", "SOPClassUID": "1.2.3",
                      "InstanceNumber": str(number)}
            records.append((InstanceRecord(values, f"{n}/{number}.dcm", 1,
                                           "1.2.840.10008.1.2.1", "2026", None), False))
    index.commit_batch(records)
    index.close()
    with sqlite3.connect(path) as db:
        db.execute("ANALYZE")
    return Index(path)


@pytest.fixture(params=["fresh", "analyzed"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Index]:
    path = tmp_path / "index.sqlite"
    opened = Index(path) if request.param == "fresh" else populated(path, 400)
    yield opened
    opened.close()


def steps(index: Index, query: Dataset) -> list[str]:
    planned = plan(query, "study", QueryOptions())
    return index.plan(planned.sql, tuple(planned.params))


@pytest.mark.parametrize("name", list(SELECTIVE))
def test_selective_queries_search_indexes_and_never_scan_a_table(index: Index,
                                                                 name: str) -> None:
    found = steps(index, SELECTIVE[name])
    assert not [step for step in found if step.startswith("SCAN")], found
    assert found[0].startswith("SEARCH") and "USING" in found[0], found


def test_a_name_wildcard_is_a_range_on_the_name_index(index: Index) -> None:
    found = steps(index, SELECTIVE["Patient Name wildcard"])
    assert any("patients_name" in step and "PatientName>?" in step for step in found), found


def test_all_studies_stream_in_answer_order_without_sorting(index: Index) -> None:
    found = steps(index, identifier("STUDY"))
    assert any("studies_date_time" in step for step in found), found
    assert not any("TEMP B-TREE" in step for step in found), found
