"""The Modality Worklist folder: loading items, re-reading, and C-FIND matching (no network).

Queries go through pynetdicom's encode/decode first, as the server receives them, and
responses are encoded again in the item's character set, as the server sends them.
"""

from __future__ import annotations

import json
import os
import subprocess
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
from pynetdicom.dsutils import decode, encode
from support.peers import require_program

from dcmtool.dicom.sopclasses import MODALITY_WORKLIST_FIND
from dcmtool.scp.worklist import WorklistFolder, value_matches


def make_item(patient_id: str = "P1", name: str = "Doe^John", *,
              steps: list[dict[str, Any]] | None = None, **values: Any) -> Dataset:
    """A complete worklist item; ``values`` add or override top-level attributes."""
    ds = Dataset()
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "M"
    ds.AccessionNumber = f"A{patient_id}"
    ds.StudyInstanceUID = f"1.2.826.0.1.3680043.10.1.{len(patient_id)}{ord(patient_id[-1])}"
    ds.RequestedProcedureID = f"RP{patient_id}"
    ds.RequestedProcedureDescription = "MR head"
    ds.ReferringPhysicianName = "Ref^Rita"
    for step_values in steps or [{}]:
        step = Dataset()
        step.Modality = "MR"
        step.ScheduledStationAETitle = "MR1"
        step.ScheduledProcedureStepStartDate = "20260115"
        step.ScheduledProcedureStepStartTime = "093000"
        step.ScheduledProcedureStepID = f"SPS{patient_id}"
        step.ScheduledProcedureStepDescription = "head"
        step.ScheduledPerformingPhysicianName = "Tech^Tom"
        for key, value in step_values.items():
            if value is None:
                delattr(step, key)
            else:
                setattr(step, key, value)
        ds.ScheduledProcedureStepSequence = [*ds.get("ScheduledProcedureStepSequence", []),
                                             step]
    for key, value in values.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    return ds


def write_wl(path: Path, ds: Dataset, *, meta: bool = True) -> Path:
    """A .wl file: Part 10 (explicit VR little endian) or a bare implicit VR data set."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = UID(MODALITY_WORKLIST_FIND)
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(path, implicit_vr=False, little_endian=True, enforce_file_format=True)
    else:
        path.write_bytes(encode(ds, True, True) or b"")
    return path


def write_json(path: Path, *datasets: Dataset, as_list: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    objects = [ds.to_json_dict() for ds in datasets]
    path.write_text(json.dumps(objects if as_list or len(objects) > 1 else objects[0]),
                    encoding="utf-8")
    return path


def query(charset: str | None = None, **keys: Any) -> Dataset:
    """An identifier as the SCP receives it (encoded and decoded, implicit VR).

    ``steps={...}`` gives the Scheduled Procedure Step sub-keys ({} for an empty item,
    ``[]`` for an empty sequence). PatientID is always asked for (empty unless given).
    """
    keys.setdefault("PatientID", "")
    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    steps = keys.pop("steps", None)
    for key, value in keys.items():
        setattr(ds, key, value)
    if isinstance(steps, dict):
        step = Dataset()
        for key, value in steps.items():
            setattr(step, key, value)
        ds.ScheduledProcedureStepSequence = [step]
    elif steps is not None:
        ds.ScheduledProcedureStepSequence = steps
    data = encode(ds, True, True)
    assert data is not None
    decoded = decode(BytesIO(data), True, True)
    assert isinstance(decoded, Dataset)
    return decoded


def as_sent(ds: Dataset) -> Dataset:
    """A response after the round trip to the SCU (encoded in its own character set)."""
    data = encode(ds, True, True)
    assert data is not None, "the response cannot be encoded"
    decoded = decode(BytesIO(data), True, True)
    assert isinstance(decoded, Dataset)
    return decoded


class Log(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "worklist"
    path.mkdir()
    return path


@pytest.fixture
def log() -> Log:
    return Log()


@pytest.fixture
def three(folder: Path) -> Path:
    """Three items: P1 (MR, 15 Jan 09:30), P2 (CT on CT1, 20 Jan 14:00), P3 (two steps)."""
    write_wl(folder / "p1.wl", make_item("P1", "Doe^John"))
    write_wl(folder / "p2.wl", make_item(
        "P2", "Smith^Jane", PatientBirthDate="19851231", PatientSex="F",
        steps=[{"Modality": "CT", "ScheduledStationAETitle": "CT1",
                "ScheduledProcedureStepStartDate": "20260120",
                "ScheduledProcedureStepStartTime": "140000"}]), meta=False)
    write_json(folder / "p3.json", make_item(
        "P3", "Dobbs^Jim", steps=[
            {"Modality": "MR", "ScheduledStationAETitle": "MR1", "ScheduledProcedureStepID": "A"},
            {"Modality": "US", "ScheduledStationAETitle": ["US1", "US2"],
             "ScheduledProcedureStepID": "B", "ScheduledProcedureStepStartDate": "20260201",
             "ScheduledProcedureStepStartTime": "0800"},
        ]))
    return folder


def ids(results: list[Dataset]) -> list[str]:
    return sorted(str(r.PatientID) for r in results)


def search(folder: Path, identifier: Dataset, **options: bool) -> list[Dataset]:
    return list(WorklistFolder(folder).find(identifier, **options))


# -- loading -----------------------------------------------------------------------------


def test_loads_part10_bare_and_json_items_flat_and_per_ae_title(folder: Path, log: Log) -> None:
    write_wl(folder / "a.wl", make_item("P1"))
    write_wl(folder / "WLMSCP" / "b.wl", make_item("P2"), meta=False)
    write_json(folder / "c.json", make_item("P3"))
    write_json(folder / "OTHERAE" / "d.json", make_item("P4"), make_item("P5"))
    write_json(folder / "e.json", make_item("P6"), as_list=True)
    (folder / "WLMSCP" / "lockfile").touch()
    (folder / "notes.txt").write_text("not an item")
    write_wl(folder / ".hidden.wl", make_item("P9"))
    write_wl(folder / "x" / "y" / "deep.wl", make_item("P8"))  # two levels down: not read
    wl = WorklistFolder(folder, log)
    assert [str(ds.PatientID) for ds in wl.items] == ["P4", "P5", "P2", "P1", "P3", "P6"]
    assert ids(list(wl.find(query(PatientID="")))) == ["P1", "P2", "P3", "P4", "P5", "P6"]
    assert log == []


def test_missing_folder_has_no_items(tmp_path: Path, log: Log) -> None:
    wl = WorklistFolder(tmp_path / "absent", log)
    assert wl.items == []
    assert list(wl.find(query(PatientID=""))) == []
    assert log == []


def test_item_missing_required_keys_is_skipped_and_logged_once(folder: Path, log: Log) -> None:
    write_wl(folder / "good.wl", make_item("P1"))
    write_wl(folder / "bad.wl", make_item("P2", PatientID=None, StudyInstanceUID="",
                                          steps=[{"Modality": None}]))
    write_json(folder / "nosteps.json", make_item("P3", ScheduledProcedureStepSequence=[]),
               make_item("P4"))
    wl = WorklistFolder(folder, log)
    assert [str(ds.PatientID) for ds in wl.items] == ["P1", "P4"]
    assert log == [
        "worklist: skipped bad.wl: missing PatientID, StudyInstanceUID, "
        "ScheduledProcedureStepSequence[0].Modality",
        "worklist: skipped nosteps.json[0]: missing ScheduledProcedureStepSequence",
    ]
    list(wl.find(query(PatientID="")))
    assert len(log) == 2  # not logged again until the file changes


def test_type_2_keys_may_be_empty(folder: Path, log: Log) -> None:
    write_wl(folder / "a.wl", make_item("P1", AccessionNumber=""))
    write_wl(folder / "b.wl", make_item("P2", AccessionNumber=None))
    assert [str(ds.PatientID) for ds in WorklistFolder(folder, log).items] == ["P1"]
    assert log == ["worklist: skipped b.wl: missing AccessionNumber"]


@pytest.mark.filterwarnings("ignore:VR lookup failed:UserWarning")
def test_corrupt_files_are_skipped_and_logged(folder: Path, log: Log) -> None:
    write_wl(folder / "good.wl", make_item("P1"))
    (folder / "garbage.wl").write_bytes(b"hello, this is not DICOM at all\n" * 20)
    (folder / "empty.wl").write_bytes(b"")
    whole = write_wl(folder / "cut.wl", make_item("P2")).read_bytes()
    (folder / "cut.wl").write_bytes(whole[:200])
    (folder / "broken.json").write_text('{"00100020": {"vr": "LO", "Value": ["P3"]')
    (folder / "wrong.json").write_text('[1, 2]')
    (folder / "badvr.json").write_text('{"00100020": {"vr": "XX", "Value": ["P4"]}}')
    (folder / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    wl = WorklistFolder(folder, log)
    assert [str(ds.PatientID) for ds in wl.items] == ["P1"]
    assert ids(list(wl.find(query(PatientID="")))) == ["P1"]
    skipped = [line.split(":")[1].split()[-1] for line in log]
    assert skipped == ["badvr.json", "binary.json", "broken.json", "cut.wl", "empty.wl",
                       "garbage.wl", "wrong.json"]
    assert all(line.startswith("worklist: skipped ") for line in log)


def test_new_changed_and_deleted_files_are_seen_by_the_next_find(
        folder: Path, log: Log, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[str] = []
    real_dcmread = pydicom.dcmread

    def counting_dcmread(path: Any, *args: Any, **kwargs: Any) -> Any:
        reads.append(Path(path).name)
        return real_dcmread(path, *args, **kwargs)

    monkeypatch.setattr(pydicom, "dcmread", counting_dcmread)
    write_wl(folder / "a.wl", make_item("P1"))
    wl = WorklistFolder(folder, log)
    everyone = query(PatientID="", PatientName="")
    assert ids(list(wl.find(everyone))) == ["P1"]
    assert ids(list(wl.find(everyone))) == ["P1"]
    assert reads == ["a.wl"]  # unchanged: not read again

    write_wl(folder / "b.wl", make_item("P2"))
    assert ids(list(wl.find(everyone))) == ["P1", "P2"]
    assert reads == ["a.wl", "b.wl"]

    write_wl(folder / "a.wl", make_item("P1", "Changed^Name"))
    names = {str(r.PatientID): str(r.PatientName) for r in wl.find(everyone)}
    assert names == {"P1": "Changed^Name", "P2": "Doe^John"}

    (folder / "b.wl").unlink()
    assert ids(list(wl.find(everyone))) == ["P1"]

    write_wl(folder / "a.wl", make_item("P1", PatientID=None))  # now incomplete
    assert list(wl.find(everyone)) == []
    assert log == ["worklist: skipped a.wl: missing PatientID"]
    write_wl(folder / "a.wl", make_item("P1"))  # repaired
    assert ids(list(wl.find(everyone))) == ["P1"]


# -- matching ----------------------------------------------------------------------------


def test_single_value_matching_is_exact_and_case_sensitive(three: Path) -> None:
    assert ids(search(three, query(PatientID="P2"))) == ["P2"]
    assert ids(search(three, query(PatientID="p2"))) == []
    assert ids(search(three, query(PatientSex="F"))) == ["P2"]
    assert ids(search(three, query(AccessionNumber="AP3", PatientID=""))) == ["P3"]
    assert ids(search(three, query(PatientName="Doe^John"))) == ["P1"]
    assert ids(search(three, query(PatientName="DOE^JOHN"))) == []
    assert ids(search(three, query(PatientName="Doe"))) == []
    assert ids(search(three, query(RequestedProcedureID="RP1", PatientID="P2"))) == []


def test_wildcards(three: Path) -> None:
    assert ids(search(three, query(PatientName="Do*"))) == ["P1", "P3"]
    assert ids(search(three, query(PatientName="D?e^*"))) == ["P1"]
    assert ids(search(three, query(PatientName="*i*"))) == ["P2", "P3"]
    assert ids(search(three, query(PatientID="P?"))) == ["P1", "P2", "P3"]
    assert ids(search(three, query(AccessionNumber="*2", PatientID=""))) == ["P2"]
    assert ids(search(three, query(PatientName="do*"))) == []
    # not for UIDs and dates: literal there
    assert ids(search(three, query(StudyInstanceUID="1.2.826.*", PatientID=""))) == []
    assert ids(search(three, query(PatientBirthDate="1970*", PatientID=""))) == []


def test_universal_matching_returns_the_items_values(three: Path) -> None:
    results = search(three, query(PatientID="P1", PatientName="", PatientBirthDate="",
                                  StudyInstanceUID="", AdmissionID=""))
    assert len(results) == 1
    (r,) = results
    assert str(r.PatientName) == "Doe^John"
    assert r.PatientBirthDate == "19700101"
    assert r.StudyInstanceUID.startswith("1.2.826.0.1.3680043.10.1.")
    assert "AdmissionID" in r and r.AdmissionID in ("", None)  # item lacks it: empty


def test_an_attribute_the_item_lacks_matches_only_universal_values(three: Path) -> None:
    assert ids(search(three, query(AdmissionID=""))) == ["P1", "P2", "P3"]
    assert ids(search(three, query(AdmissionID="*"))) == ["P1", "P2", "P3"]
    assert ids(search(three, query(AdmissionID="ADM1"))) == []
    assert ids(search(three, query(AdmissionID="A*"))) == []
    assert ids(search(three, query(PatientID="", OtherPatientIDs="X"))) == []


def test_date_ranges(three: Path) -> None:
    def by_date(value: str) -> list[str]:
        return ids(search(three, query(PatientID="", steps={
            "ScheduledProcedureStepStartDate": value})))

    assert by_date("20260115") == ["P1", "P3"]
    assert by_date("20260101-20260131") == ["P1", "P2", "P3"]
    assert by_date("20260116-20260131") == ["P2"]
    assert by_date("20260120-20260120") == ["P2"]
    assert by_date("-20260119") == ["P1", "P3"]
    assert by_date("20260121-") == ["P3"]  # its second step, 1 Feb
    assert by_date("20260301-") == []
    assert by_date("-") == ["P1", "P2", "P3"]
    assert by_date("2026011*") == []
    assert ids(search(three, query(PatientID="", PatientBirthDate="19800101-"))) == ["P2"]
    assert ids(search(three, query(PatientID="", PatientBirthDate="-19800101"))) == [
        "P1", "P3"]


def test_time_ranges(three: Path) -> None:
    def by_time(value: str) -> list[str]:
        return ids(search(three, query(PatientID="", steps={
            "ScheduledProcedureStepStartTime": value})))

    assert by_time("080000-120000") == ["P1", "P3"]
    assert by_time("12-") == ["P2"]
    assert by_time("-0830") == ["P3"]  # 0800 (hh mm only) is 08:00:00
    assert by_time("09-09") == ["P1", "P3"]  # the whole 9 o'clock hour
    assert by_time("093000") == ["P1", "P3"]
    assert by_time("1400") == ["P2"]
    assert by_time("1401-") == []


def test_date_and_time_are_matched_independently(three: Path) -> None:
    results = search(three, query(PatientID="", steps={
        "ScheduledProcedureStepStartDate": "20260115-20260131",
        "ScheduledProcedureStepStartTime": "1200-"}))
    assert ids(results) == ["P2"]


@pytest.mark.parametrize(
    ("wanted", "value", "vr", "expected"),
    [
        ("20260101120000-20260102", "20260101130000", "DT", True),
        ("20260101120000-20260102", "20260101110000", "DT", False),
        ("20260102-", "20260102000000.5+0100", "DT", True),
        ("2026", "20261231235959", "DT", True),
        ("-2025", "20260101", "DT", False),
        ("20260101120000+0100", "20260101120000", "DT", True),
        ("10-", "095959.999999", "TM", False),
        ("-10", "105959.999999", "TM", True),
        ("10:00-11:00", "10:30", "TM", True),  # ACR-NEMA style
        ("2026.01.01-2026.01.31", "20260115", "DA", True),
        ("20260101", "2026011", "DA", False),
        ("1.2.3", "1.2.3", "UI", True),
        ("1.2.?", "1.2.3", "UI", False),
        ("5", "5.0", "DS", True),
    ],
)
def test_value_matching(wanted: str, value: str, vr: str, expected: bool) -> None:
    assert value_matches(wanted, value, vr) is expected


def test_uid_lists(three: Path) -> None:
    uids = {str(ds.PatientID): str(ds.StudyInstanceUID)
            for ds in WorklistFolder(three).items}
    both = query(StudyInstanceUID=[uids["P1"], uids["P3"]], PatientID="")
    results = search(three, both)
    assert ids(results) == ["P1", "P3"]
    assert {str(r.StudyInstanceUID) for r in results} == {uids["P1"], uids["P3"]}
    assert ids(search(three, query(StudyInstanceUID=["1.2.3", uids["P2"]],
                                   PatientID=""))) == ["P2"]
    assert ids(search(three, query(StudyInstanceUID=["1.2.3", "1.2.4"], PatientID=""))) == []


def test_sequence_matching_on_modality_and_station_returns_the_matching_steps(
        three: Path) -> None:
    results = search(three, query(PatientID="", steps={
        "Modality": "US", "ScheduledStationAETitle": "", "ScheduledProcedureStepID": ""}))
    assert ids(results) == ["P3"]
    (steps,) = [r.ScheduledProcedureStepSequence for r in results]
    assert len(steps) == 1  # only the US step of P3's two
    assert steps[0].Modality == "US"
    assert list(steps[0].ScheduledStationAETitle) == ["US1", "US2"]
    assert steps[0].ScheduledProcedureStepID == "B"
    assert set(steps[0].dir()) == {"Modality", "ScheduledStationAETitle",
                                   "ScheduledProcedureStepID"}

    assert ids(search(three, query(PatientID="", steps={"Modality": "MR"}))) == ["P1", "P3"]
    assert ids(search(three, query(PatientID="", steps={"Modality": "mr"}))) == []
    assert ids(search(three, query(PatientID="", steps={"ScheduledStationAETitle": "CT1"}))
               ) == ["P2"]
    # a multi-valued station AE title matches on any of its values
    assert ids(search(three, query(PatientID="", steps={"ScheduledStationAETitle": "US2"}))
               ) == ["P3"]
    # all sub-keys must match in the same step
    assert ids(search(three, query(PatientID="", steps={
        "Modality": "US", "ScheduledStationAETitle": "MR1"}))) == []
    assert ids(search(three, query(PatientID="", steps={
        "Modality": "MR", "ScheduledStationAETitle": "MR*",
        "ScheduledPerformingPhysicianName": "Tech*", "ScheduledProcedureStepID": "A"}))
               ) == ["P3"]


def test_sequence_with_empty_sub_keys_returns_every_step_with_those_keys(three: Path) -> None:
    (r,) = search(three, query(PatientID="P3", steps={"Modality": ""}))
    assert [s.Modality for s in r.ScheduledProcedureStepSequence] == ["MR", "US"]
    assert all(set(s.dir()) == {"Modality"} for s in r.ScheduledProcedureStepSequence)


def test_empty_sequence_returns_the_whole_steps(three: Path) -> None:
    (r,) = search(three, query(PatientID="P2", steps=[]))
    (step,) = r.ScheduledProcedureStepSequence
    assert step.Modality == "CT"
    assert step.ScheduledProcedureStepDescription == "head"
    assert str(step.ScheduledPerformingPhysicianName) == "Tech^Tom"


def test_only_the_requested_keys_are_returned(three: Path) -> None:
    results = search(three, query(PatientID="P1", PatientName="", steps={"Modality": ""}))
    (r,) = results
    assert set(r.dir()) == {"PatientID", "PatientName", "ScheduledProcedureStepSequence"}
    assert "SpecificCharacterSet" not in r  # the item has none
    assert not hasattr(r, "file_meta") or not r.file_meta
    as_sent(r)


def test_case_insensitive_names_option(three: Path) -> None:
    assert ids(search(three, query(PatientName="DOE^JOHN"))) == []
    assert ids(search(three, query(PatientName="DOE^JOHN"), case_insensitive_names=True)
               ) == ["P1"]
    assert ids(search(three, query(PatientName="do*"), case_insensitive_names=True)
               ) == ["P1", "P3"]
    # PN inside the sequence too; other VRs stay case-sensitive
    assert ids(search(three, query(PatientID="", steps={
        "ScheduledPerformingPhysicianName": "tech^tom"}), case_insensitive_names=True)
               ) == ["P1", "P2", "P3"]
    assert ids(search(three, query(PatientID="p1"), case_insensitive_names=True)) == []


# -- character sets ----------------------------------------------------------------------

NAMES = [
    # (item charset, name, query charset, queries that match it)
    ("ISO_IR 100", "Müller^Hans", "ISO_IR 100", ["Müller^Hans", "Mü*", "M?ller^Hans"]),
    ("ISO_IR 100", "Müller^Hans", "ISO_IR 192", ["Müller^Hans", "*ller^H*"]),
    ("ISO_IR 192", "Wang^XiaoDong=王^小東", "ISO_IR 192",
     ["Wang^XiaoDong=王^小東", "王^小東", "Wang^XiaoDong", "王*", "Wang*"]),
    ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう", "\\ISO 2022 IR 87",
     ["Yamada^Tarou=山田^太郎=やまだ^たろう", "山田^太郎", "やまだ^たろう", "Yamada^Tarou",
      "山田*"]),
    ("\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう", "ISO_IR 192",
     ["山田^太郎", "*太郎*"]),
]


@pytest.mark.parametrize(("item_charset", "name", "query_charset", "queries"), NAMES)
@pytest.mark.parametrize("source", ["wl", "json"])
def test_names_in_other_character_sets(folder: Path, item_charset: str, name: str,
                                       query_charset: str, queries: list[str],
                                       source: str) -> None:
    item = make_item("P1", name, SpecificCharacterSet=item_charset,
                     steps=[{"ScheduledPerformingPhysicianName": name}])
    if source == "wl":
        write_wl(folder / "item.wl", item)
    else:
        write_json(folder / "item.json", item)
    write_wl(folder / "other.wl", make_item("P2", "Other^Name"))
    wl = WorklistFolder(folder)
    for text in queries:
        (r,) = wl.find(query(query_charset, PatientName=text, PatientID=""))
        assert str(r.PatientName) == name
        sent = as_sent(r)  # encoded in the item's character set, decoded by the SCU
        assert sent.SpecificCharacterSet == item.SpecificCharacterSet
        assert str(sent.PatientName) == name
        (r,) = wl.find(query(query_charset, PatientID="",
                             steps={"ScheduledPerformingPhysicianName": text}))
        step = as_sent(r).ScheduledProcedureStepSequence[0]
        assert str(step.ScheduledPerformingPhysicianName) == name
    assert list(wl.find(query(query_charset, PatientName=name[:3] + "x"))) == []


def test_json_item_with_unicode_and_no_charset_is_sent_as_utf8(folder: Path) -> None:
    write_json(folder / "a.json", make_item("P1", "Wang^XiaoDong=王^小東"))
    (r,) = WorklistFolder(folder).find(query(PatientName="Wang*"))
    assert r.SpecificCharacterSet == "ISO_IR 192"
    assert str(as_sent(r).PatientName) == "Wang^XiaoDong=王^小東"


def test_iso_2022_ir_87_file_bytes_are_decoded(folder: Path) -> None:
    """A .wl written byte by byte (escape sequences), as another system would write it."""
    item = make_item("P1", "x", SpecificCharacterSet="\\ISO 2022 IR 87")
    data = bytearray(encode(item, True, True) or b"")
    placeholder = b"\x10\x00\x10\x00\x02\x00\x00\x00x "
    assert placeholder in data
    name = (b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B="
            b"\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B")
    value = b"\x10\x00\x10\x00" + len(name).to_bytes(4, "little") + name
    (folder / "jp.wl").write_bytes(bytes(data).replace(placeholder, value))
    (r,) = WorklistFolder(folder).find(query("ISO_IR 192", PatientName="山田^太郎"))
    assert str(r.PatientName) == "Yamada^Tarou=山田^太郎=やまだ^たろう"


# -- DCMTK -------------------------------------------------------------------------------

DUMP = """\
(0008,0005) CS  [ISO_IR 100]
(0008,0050) SH  [00000]
(0010,0010) PN  [VIVALDI^ANTONIO]
(0010,0020) LO  [AV35674]
(0010,0030) DA  [16780304]
(0010,0040) CS  [M]
(0010,2000) LO  [METASTASIS]
(0020,000d) UI  [1.2.276.0.7230010.3.2.101]
(0032,1032) PN  [SMITH]
(0032,1060) LO  [EXAM6]
(0040,0100) SQ  (Sequence with undefined length)
(fffe,e000) na  (Item with undefined length)
(0008,0060) CS  [MR]
(0032,1070) LO  [BARIUMSULFAT]
(0040,0001) AE  [AA32\\AA33]
(0040,0002) DA  [19951015]
(0040,0003) TM  [085607]
(0040,0006) PN  [JOHNSON]
(0040,0007) LO  [EXAM74]
(0040,0009) SH  [SPD3445]
(0040,0010) SH  [STN456]
(0040,0011) SH  [B34F56]
(0040,0012) LO  (no value available)
(0040,0400) LT  (no value available)
(fffe,e00d) na  (ItemDelimitationItem)
(fffe,e0dd) na  (SequenceDelimitationItem)
(0040,1001) SH  [RP454G234]
(0040,1003) SH  [LOW]
"""


@pytest.mark.parametrize("as_dataset", [False, True], ids=["file-format", "dataset"])
def test_dcmtk_wlistdb_style_file(folder: Path, log: Log, as_dataset: bool) -> None:
    dump2dcm = require_program("/usr/bin/dump2dcm", "dcmtk", "DCMTK dump2dcm")
    source = folder.parent / "wklist1.dump"
    source.write_text(DUMP.replace("VIVALDI^ANTONIO", "VIVALDI^ANTÖNIO"), encoding="latin-1")
    target = folder / "OFFIS" / "wklist1.wl"
    target.parent.mkdir()
    options = ["-F"] if as_dataset else []
    done = subprocess.run([dump2dcm, *options, str(source), str(target)], capture_output=True,
                          text=True, timeout=30, env={**os.environ})
    assert done.returncode == 0, done.stderr or done.stdout
    assert (target.read_bytes()[128:132] == b"DICM") is not as_dataset

    wl = WorklistFolder(folder, log)
    assert log == []
    results = list(wl.find(query(
        "ISO_IR 192", PatientName="VIVALDI*", PatientID="", PatientBirthDate="",
        AccessionNumber="", RequestedProcedureID="",
        steps={"Modality": "MR", "ScheduledStationAETitle": "AA33",
               "ScheduledProcedureStepStartDate": "19951001-19951031",
               "ScheduledProcedureStepStartTime": "08-09", "ScheduledProcedureStepID": ""})))
    assert len(results) == 1
    r = as_sent(results[0])
    assert r.SpecificCharacterSet == "ISO_IR 100"
    assert str(r.PatientName) == "VIVALDI^ANTÖNIO"
    assert (r.PatientID, r.PatientBirthDate, r.AccessionNumber, r.RequestedProcedureID) == (
        "AV35674", "16780304", "00000", "RP454G234")
    (step,) = r.ScheduledProcedureStepSequence
    assert step.Modality == "MR"
    assert list(step.ScheduledStationAETitle) == ["AA32", "AA33"]
    assert (step.ScheduledProcedureStepStartDate, step.ScheduledProcedureStepStartTime,
            step.ScheduledProcedureStepID) == ("19951015", "085607", "SPD3445")
    assert list(wl.find(query(PatientID="", steps={"Modality": "CT"}))) == []


def test_find_is_lazy_only_in_matching(folder: Path) -> None:
    """find() reads the folder when called; the matching runs as the results are taken."""
    wl = WorklistFolder(folder)
    results = wl.find(query(PatientID=""))
    write_wl(folder / "a.wl", make_item("P1"))
    assert list(results) == []
    assert ids(list(wl.find(query(PatientID="")))) == ["P1"]
