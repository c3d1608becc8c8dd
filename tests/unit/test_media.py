"""dcmtool.media without sockets or external programs: profiles, file IDs, the refusals of
issue #15 item 3, invented keys, re-identification, add (FSU), verify, and what the copies
and records hold. Speed is measured in bench/, never asserted here."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from support.datasets import dataset_bytes, make_dataset, write_instance

from dcmtool.errors import MediaError, UsageError
from dcmtool.media.directory import Node, Problem, conformant, read_tree, verify
from dcmtool.media.export import ExportOptions, ExportSummary, add, create
from dcmtool.media.profiles import PROFILES, profile

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
CD = PROFILES["STD-GEN-CD"]
IMPLEMENTATION_CLASS_UID = "2.25.280742595852762648379511460137954333587"


def options(name: str = "STD-GEN-CD", **kwargs: Any) -> ExportOptions:
    return ExportOptions(profile(name), **kwargs)


def study(folder: Path, name: str, *, patient: str = "P1", count: int = 2, series: int = 1,
          **attributes: Any) -> list[Dataset]:
    """``count`` instances of one study, ``series`` series, written as folder/name-N.dcm."""
    study_uid = generate_uid()
    series_uids = [generate_uid() for _ in range(series)]
    written = []
    for number in range(count):
        ds = make_dataset(PatientID=patient, StudyInstanceUID=study_uid,
                          SeriesInstanceUID=series_uids[number % series],
                          SeriesNumber=number % series + 1, InstanceNumber=number + 1,
                          **attributes)
        write_instance(folder / f"{name}-{number}.dcm", ds)
        written.append(ds)
    return written


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leaves(roots: list[Node]) -> list[Node]:
    return [node for root in roots for node in root.walk() if node.file_id]


def refused(call: Callable[[], object], out: Path) -> MediaError:
    """The MediaError ``call`` raises, having written nothing into ``out``."""
    with pytest.raises(MediaError) as caught:
        call()
    assert not out.exists() or not any(out.iterdir()), "something was written"
    return caught.value


# -- profiles -----------------------------------------------------------------------------

def test_profiles_name_the_syntaxes_each_allows() -> None:
    assert CD.syntaxes == (EXPLICIT,)
    for name in ("STD-GEN-DVD-JPEG", "STD-GEN-USB-JPEG"):
        assert set(PROFILES[name].syntaxes) == {EXPLICIT, JPEG_BASELINE, JPEG_EXTENDED,
                                                JPEG_LOSSLESS_SV1}
        assert PROFILES[name].lossless_target == JPEG_LOSSLESS_SV1
    for name in ("STD-GEN-DVD-J2K", "STD-GEN-USB-J2K"):
        assert set(PROFILES[name].syntaxes) == {EXPLICIT, J2K_LOSSLESS, J2K}
        assert PROFILES[name].lossy_target == J2K
    assert PROFILES["general"].allows(IMPLICIT) and PROFILES["general"].allows("1.2.3")
    assert not CD.allows(IMPLICIT) and CD.lossy_target is None


def test_a_lossy_target_holds_the_image_or_there_is_none() -> None:
    jpeg = PROFILES["STD-GEN-DVD-JPEG"]
    assert jpeg.lossy_for(8) == JPEG_BASELINE
    assert jpeg.lossy_for(12) == JPEG_EXTENDED
    assert jpeg.lossy_for(16) is None  # JPEG's lossy processes stop at 12 bits
    assert PROFILES["STD-GEN-USB-J2K"].lossy_for(16) == J2K


def test_profile_names_are_case_insensitive_and_a_typo_gets_a_suggestion() -> None:
    assert profile("std-gen-dvd-jpeg") is PROFILES["STD-GEN-DVD-JPEG"]
    assert profile("GENERAL") is PROFILES["general"]
    with pytest.raises(UsageError) as caught:
        profile("STD-GEN-DVD-JPG")
    assert "did you mean STD-GEN-DVD-JPEG?" in caught.value.message
    assert caught.value.hint is not None and "STD-GEN-CD" in caught.value.hint


def test_lossy_needs_a_profile_with_a_lossy_syntax(tmp_path: Path) -> None:
    study(tmp_path / "in", "a")
    with pytest.raises(UsageError, match="STD-GEN-CD allows no lossy syntax"):
        create(tmp_path / "out", [str(tmp_path / "in")], options(lossy=True))
    assert not (tmp_path / "out").exists()


# -- file IDs and order -------------------------------------------------------------------

def test_file_ids_are_ps310_and_numbered_by_patient_study_series_instance(
        tmp_path: Path) -> None:
    source = tmp_path / "in"
    # Written so that file names sort against the DICOM order.
    late = study(source, "a-late", patient="P2", StudyDate="20260301", count=1)
    early = study(source, "b-early", patient="P2", StudyDate="20250101", count=1)
    first = study(source, "z-first", patient="P1", count=4, series=2)
    summary = create(tmp_path / "out", [str(source)], options())

    by_uid = {f.sop_instance_uid: f.file_id for f in summary.files}
    assert all(conformant(f.file_id) for f in summary.files)
    assert by_uid[first[0].SOPInstanceUID] == ("DICOM", "PAT00001", "STU00001", "SER00001",
                                               "IMG00001")
    assert by_uid[first[2].SOPInstanceUID][-2:] == ("SER00001", "IMG00002")  # series 1
    assert by_uid[first[1].SOPInstanceUID][-2:] == ("SER00002", "IMG00001")  # series 2
    assert by_uid[early[0].SOPInstanceUID][1:3] == ("PAT00002", "STU00001")  # 2025 first
    assert by_uid[late[0].SOPInstanceUID][1:3] == ("PAT00002", "STU00002")
    assert (summary.patients, summary.studies, summary.series, summary.instances) == \
        (2, 3, 4, 6)
    assert (tmp_path / "out" / "DICOMDIR").is_file()
    for exported in summary.files:
        assert (tmp_path / "out").joinpath(*exported.file_id).is_file()

    again = create(tmp_path / "again", [str(p) for p in sorted(source.iterdir(),
                                                                reverse=True)], options())
    assert {f.sop_instance_uid: f.file_id for f in again.files} == by_uid  # stable


def test_the_dicomdir_lists_the_tree_with_the_keys_of_each_record(tmp_path: Path) -> None:
    written = study(tmp_path / "in", "a", count=2, StudyDescription="Chest",
                    AccessionNumber="A1")
    create(tmp_path / "out", [str(tmp_path / "in")], options())
    roots = read_tree(tmp_path / "out" / "DICOMDIR")
    assert [r.record_type for r in roots] == ["PATIENT"]
    patient = roots[0]
    assert patient.values["PatientID"] == "P1"
    assert patient.values["PatientName"] == "Test^Patient"
    (record,) = patient.children
    assert record.record_type == "STUDY"
    assert record.values["StudyDescription"] == "Chest"
    assert record.values["StudyInstanceUID"] == written[0].StudyInstanceUID
    (series,) = record.children
    assert (series.values["Modality"], series.values["SeriesNumber"]) == ("CT", "1")
    assert [(i.record_type, i.values["InstanceNumber"], i.sop_instance_uid, i.transfer_syntax)
            for i in series.children] == \
        [("IMAGE", str(n + 1), ds.SOPInstanceUID, EXPLICIT) for n, ds in enumerate(written)]


def test_a_file_in_an_allowed_syntax_is_copied_as_its_bytes_behind_our_file_meta(
        tmp_path: Path) -> None:
    ds = make_dataset()
    source = tmp_path / "in" / "ct.dcm"
    write_instance(source, ds)
    data = source.read_bytes()
    meta = dcmread(source).file_meta
    meta.SourceApplicationEntityTitle = "MODALITY1"
    original = dcmread(source)
    original.file_meta = meta
    original.save_as(source, enforce_file_format=True)
    before = source.read_bytes()
    summary = create(tmp_path / "out", [str(source)], options())

    copy = (tmp_path / "out").joinpath(*summary.files[0].file_id)
    assert dataset_bytes(copy) == dataset_bytes(source)
    written = dcmread(copy).file_meta
    assert written.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert written.SourceApplicationEntityTitle == "MODALITY1"
    assert written.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert source.read_bytes() == before and data  # the original is only read
    assert summary.converted == {}


def test_a_syntax_the_profile_does_not_allow_is_converted_through_the_convert_core(
        tmp_path: Path) -> None:
    ds = make_dataset()
    write_instance(tmp_path / "in" / "implicit.dcm", ds, transfer_syntax=IMPLICIT)
    summary = create(tmp_path / "out", [str(tmp_path / "in")], options())
    assert summary.converted == {("implicit", "explicit"): 1}
    (exported,) = summary.files
    assert (exported.source_syntax, exported.syntax) == (IMPLICIT, EXPLICIT)
    copy = dcmread((tmp_path / "out").joinpath(*exported.file_id))
    assert copy.file_meta.TransferSyntaxUID == EXPLICIT
    assert copy.PixelData == ds.PixelData and copy.SOPInstanceUID == ds.SOPInstanceUID
    assert verify(tmp_path / "out" / "DICOMDIR", CD) == []


def test_general_keeps_every_syntax(tmp_path: Path) -> None:
    write_instance(tmp_path / "in" / "implicit.dcm", make_dataset(), transfer_syntax=IMPLICIT)
    summary = create(tmp_path / "out", [str(tmp_path / "in")], options("general"))
    assert summary.files[0].syntax == IMPLICIT and summary.converted == {}
    assert verify(tmp_path / "out" / "DICOMDIR") == []


@pytest.mark.parametrize(("bits", "expected"), [(8, JPEG_BASELINE), (12, JPEG_EXTENDED)])
def test_lossy_encodes_uncompressed_images_as_a_new_instance(tmp_path: Path, bits: int,
                                                            expected: str) -> None:
    ds = make_dataset(rows=64, columns=64, BitsAllocated=8 if bits == 8 else 16,
                      BitsStored=bits, HighBit=bits - 1)
    ds.PixelData = bytes(64 * 64 * (1 if bits == 8 else 2))
    write_instance(tmp_path / "in" / "image.dcm", ds)
    kept = create(tmp_path / "kept", [str(tmp_path / "in")], options("STD-GEN-DVD-JPEG"))
    assert kept.files[0].syntax == EXPLICIT  # allowed: without lossy=True it stays

    summary = create(tmp_path / "out", [str(tmp_path / "in")],
                     options("STD-GEN-DVD-JPEG", lossy=True))
    (exported,) = summary.files
    assert exported.syntax == expected
    assert exported.sop_instance_uid != ds.SOPInstanceUID  # PS3.3 C.7.6.1.1.5
    copy = dcmread((tmp_path / "out").joinpath(*exported.file_id))
    assert copy.LossyImageCompression == "01"
    assert copy.SourceImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID
    (node,) = leaves(read_tree(tmp_path / "out" / "DICOMDIR"))
    assert (node.sop_instance_uid, node.transfer_syntax) == (copy.SOPInstanceUID, expected)
    assert verify(tmp_path / "out" / "DICOMDIR", PROFILES["STD-GEN-DVD-JPEG"]) == []


# -- inputs -------------------------------------------------------------------------------

def test_not_dicom_is_skipped_and_counted(tmp_path: Path) -> None:
    study(tmp_path / "in", "a", count=1)
    (tmp_path / "in" / "notes.txt").write_text("not DICOM\n")
    summary = create(tmp_path / "out", [str(tmp_path / "in")], options())
    assert summary.skipped == [tmp_path / "in" / "notes.txt"]
    assert summary.instances == 1


def test_a_dicomdir_input_means_the_files_it_references(tmp_path: Path) -> None:
    written = study(tmp_path / "in", "a", count=3)
    create(tmp_path / "first", [str(tmp_path / "in")], options())
    summary = create(tmp_path / "second", [str(tmp_path / "first" / "DICOMDIR")], options())
    assert sorted(f.sop_instance_uid for f in summary.files) == \
        sorted(ds.SOPInstanceUID for ds in written)
    assert summary.skipped == [] and summary.duplicates == []


def test_a_serve_archive_root_means_its_instance_files(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    written = study(archive / "P1" / "study", "a", count=2)
    (archive / "index.sqlite").write_bytes(b"SQLite format 3\x00")
    (archive / "audit.jsonl").write_text("{}\n")
    (archive / ".lock").write_text("")
    write_instance(archive / "worklist" / "item.dcm", make_dataset(PatientID="WL"))
    write_instance(archive / ".incoming" / "partial.dcm", make_dataset(PatientID="TMP"))
    summary = create(tmp_path / "out", [str(archive)], options())
    assert sorted(f.sop_instance_uid for f in summary.files) == \
        sorted(ds.SOPInstanceUID for ds in written)
    assert summary.skipped == []


def test_stdin_lists_paths(tmp_path: Path) -> None:
    import io

    written = study(tmp_path / "in", "a", count=2)
    listing = io.StringIO("".join(f"{p}\n" for p in sorted((tmp_path / "in").iterdir())))
    summary = create(tmp_path / "out", ["-"], options(), stdin=listing)
    assert summary.instances == len(written)


def test_progress_is_reported_per_file(tmp_path: Path) -> None:
    study(tmp_path / "in", "a", count=3)
    calls: list[tuple[Path, int, int]] = []
    create(tmp_path / "out", [str(tmp_path / "in")], options(),
           on_file=lambda path, done, total: calls.append((path, done, total)))
    assert [(done, total) for _, done, total in calls] == [(1, 3), (2, 3), (3, 3)]


# -- refusals (issue #15 item 3): nothing is written --------------------------------------

def test_one_patient_id_with_two_names_is_refused_naming_the_files(tmp_path: Path) -> None:
    study(tmp_path / "in", "a", count=1, PatientName="DOE^JOHN")
    study(tmp_path / "in", "b", count=1, PatientName="DOE^JANE")
    error = refused(lambda: create(tmp_path / "out", [str(tmp_path / "in")], options()),
                    tmp_path / "out")
    assert "Patient ID 'P1' has different names" in error.message
    assert "a-0.dcm" in error.message and "b-0.dcm" in error.message
    assert "DOE^JOHN" in error.message and "DOE^JANE" in error.message
    assert "nothing was written" in error.message


def test_one_patient_id_with_two_birth_dates_is_refused(tmp_path: Path) -> None:
    study(tmp_path / "in", "a", count=1, PatientBirthDate="19700101")
    study(tmp_path / "in", "b", count=1, PatientBirthDate="19710101")
    error = refused(lambda: create(tmp_path / "out", [str(tmp_path / "in")], options()),
                    tmp_path / "out")
    assert "different birth dates: 19700101" in error.message
    assert len(error.problems) == 1


def test_one_study_under_two_patients_is_refused(tmp_path: Path) -> None:
    (first,) = study(tmp_path / "in", "a", count=1, patient="P1")
    other = make_dataset(PatientID="P2", StudyInstanceUID=first.StudyInstanceUID)
    write_instance(tmp_path / "in" / "b.dcm", other)
    error = refused(lambda: create(tmp_path / "out", [str(tmp_path / "in")], options()),
                    tmp_path / "out")
    assert f"Study Instance UID {first.StudyInstanceUID} is in files of two patients" in \
        error.message


def test_a_duplicate_instance_with_other_content_is_refused(tmp_path: Path) -> None:
    (ds,) = study(tmp_path / "in", "a", count=1)
    ds.SeriesDescription = "changed"
    write_instance(tmp_path / "in" / "b.dcm", ds)
    error = refused(lambda: create(tmp_path / "out", [str(tmp_path / "in")], options()),
                    tmp_path / "out")
    assert f"the same SOP Instance UID {ds.SOPInstanceUID} with different content" in \
        error.message


def test_a_duplicate_instance_with_the_same_content_is_copied_once(tmp_path: Path) -> None:
    study(tmp_path / "in", "a", count=1)
    shutil.copy(tmp_path / "in" / "a-0.dcm", tmp_path / "in" / "b.dcm")
    summary = create(tmp_path / "out", [str(tmp_path / "in")], options())
    assert summary.instances == 1
    assert summary.duplicates == [tmp_path / "in" / "b.dcm"]


def test_missing_type_1_keys_are_refused_with_the_invent_hint(tmp_path: Path) -> None:
    ds = make_dataset()
    del ds.StudyID
    ds.SeriesNumber = None
    write_instance(tmp_path / "in" / "a.dcm", ds)
    error = refused(lambda: create(tmp_path / "out", [str(tmp_path / "in")], options()),
                    tmp_path / "out")
    assert "a.dcm: no StudyID, a Type 1 key of its STUDY record" in error.message
    assert "a.dcm: no SeriesNumber, a Type 1 key of its SERIES record" in error.message
    assert error.setting == "invent" and error.hint is not None


def test_a_missing_key_that_cannot_be_invented_is_refused_even_with_invent(
        tmp_path: Path) -> None:
    ds = make_dataset()
    ds.Modality = None
    write_instance(tmp_path / "in" / "a.dcm", ds)
    error = refused(lambda: create(tmp_path / "out", [str(tmp_path / "in")],
                                   options(invent=True)), tmp_path / "out")
    assert "no Modality, a Type 1 key of its SERIES record" in error.message


def test_a_truncated_file_is_refused(tmp_path: Path) -> None:
    study(tmp_path / "in", "a", count=1)
    data = (tmp_path / "in" / "a-0.dcm").read_bytes()
    (tmp_path / "in" / "a-0.dcm").write_bytes(data[:-40])
    error = refused(lambda: create(tmp_path / "out", [str(tmp_path / "in")], options()),
                    tmp_path / "out")
    assert "a-0.dcm: not a whole data set" in error.message and "truncated" in error.message


def test_out_that_is_not_empty_needs_force_and_nothing_in_it_is_overwritten(
        tmp_path: Path) -> None:
    study(tmp_path / "in", "a", count=1)
    out = tmp_path / "out"
    (out / "DICOM" / "PAT00001" / "STU00001" / "SER00001").mkdir(parents=True)
    keep = out / "DICOM" / "PAT00001" / "STU00001" / "SER00001" / "IMG00001"
    keep.write_bytes(b"not ours")
    with pytest.raises(MediaError, match="not empty") as caught:
        create(out, [str(tmp_path / "in")], options())
    assert caught.value.setting == "force"
    summary = create(out, [str(tmp_path / "in")], options(force=True))
    assert keep.read_bytes() == b"not ours"
    assert summary.files[0].file_id != ("DICOM", "PAT00001", "STU00001", "SER00001",
                                        "IMG00001")


def test_force_refuses_inputs_inside_out(tmp_path: Path) -> None:
    study(tmp_path / "out" / "in", "a", count=1)
    with pytest.raises(MediaError, match="inside"):
        create(tmp_path / "out", [str(tmp_path / "out" / "in")], options(force=True))


# -- invent -------------------------------------------------------------------------------

def test_invent_fills_what_dcmmkdir_plus_i_fills_and_says_so(tmp_path: Path) -> None:
    ds = make_dataset(SeriesDate="20240505", SeriesTime="101010")
    for keyword in ("PatientID", "StudyDate", "StudyTime", "StudyID"):
        delattr(ds, keyword)
    ds.SeriesNumber = None
    ds.InstanceNumber = None
    write_instance(tmp_path / "in" / "a.dcm", ds)
    summary = create(tmp_path / "out", [str(tmp_path / "in")], options(invent=True))
    assert summary.invented == [
        "PAT00001 PatientID: invented 'DCMTOOLPAT000001'",
        "PAT00001/STU00001 StudyDate: invented '20240505'",  # the Series Date, as dcmmkdir
        "PAT00001/STU00001 StudyTime: invented '101010'",
        "PAT00001/STU00001 StudyID: invented 'DCMTOOLSTU000001'",
        "PAT00001/STU00001/SER00001 SeriesNumber: invented '1'",
        "PAT00001/STU00001/SER00001/IMG00001 InstanceNumber: invented '1'",
    ]
    (patient,) = read_tree(tmp_path / "out" / "DICOMDIR")
    assert patient.values["PatientID"] == "DCMTOOLPAT000001"
    assert patient.children[0].values["StudyDate"] == "20240505"
    assert patient.children[0].children[0].children[0].values["InstanceNumber"] == "1"
    # Only the DICOMDIR gets them, as with dcmmkdir: the copy is the instance as it was.
    copy = dcmread((tmp_path / "out").joinpath(*summary.files[0].file_id))
    assert "PatientID" not in copy


def test_invented_numbers_do_not_repeat_within_a_series(tmp_path: Path) -> None:
    (first, second) = study(tmp_path / "in", "a", count=2)
    for ds, name in ((first, "a-0.dcm"), (second, "a-1.dcm")):
        ds.InstanceNumber = None
        write_instance(tmp_path / "in" / name, ds)
    summary = create(tmp_path / "out", [str(tmp_path / "in")], options(invent=True))
    numbers = [n.values["InstanceNumber"] for n in
               leaves(read_tree(tmp_path / "out" / "DICOMDIR"))]
    assert sorted(numbers) == ["1", "2"]
    assert len(summary.invented) == 2


# -- re-identification --------------------------------------------------------------------

def test_new_uids_and_assignments_change_the_copies_never_the_originals(
        tmp_path: Path) -> None:
    written = study(tmp_path / "in", "a", count=3, series=2)
    before = digest(tmp_path / "in")
    summary = create(tmp_path / "out", [str(tmp_path / "in")],
                     options(new_uids=True, assignments=["PatientName=ANON^ONE",
                                                         "PatientID=ANON1"]))
    assert digest(tmp_path / "in") == before

    copies = [dcmread((tmp_path / "out").joinpath(*f.file_id)) for f in summary.files]
    originals = {ds.SOPInstanceUID for ds in written}
    assert not {c.SOPInstanceUID for c in copies} & originals
    assert len({c.StudyInstanceUID for c in copies}) == 1  # one study, one new UID
    assert copies[0].StudyInstanceUID != written[0].StudyInstanceUID
    assert len({c.SeriesInstanceUID for c in copies}) == 2
    assert {str(c.PatientName) for c in copies} == {"ANON^ONE"}
    assert all(c.file_meta.MediaStorageSOPInstanceUID == c.SOPInstanceUID for c in copies)
    (patient,) = read_tree(tmp_path / "out" / "DICOMDIR")
    assert (patient.values["PatientName"], patient.values["PatientID"]) == \
        ("ANON^ONE", "ANON1")
    assert patient.children[0].values["StudyInstanceUID"] == copies[0].StudyInstanceUID
    assert verify(tmp_path / "out" / "DICOMDIR", CD) == []


def test_a_bad_assignment_is_a_usage_error(tmp_path: Path) -> None:
    study(tmp_path / "in", "a", count=1)
    with pytest.raises(UsageError, match="Keyword=Value"):
        create(tmp_path / "out", [str(tmp_path / "in")], options(assignments=["NoSuch=1"]))


# -- character sets -----------------------------------------------------------------------

@pytest.mark.parametrize(("charset", "name"), [("ISO_IR 100", "Müller^Jürgen"),
                                               ("ISO_IR 192", "山田^太郎")])
def test_records_with_non_ascii_values_carry_the_character_set(tmp_path: Path, charset: str,
                                                             name: str) -> None:
    study(tmp_path / "in", "a", count=1, SpecificCharacterSet=charset, PatientName=name,
          StudyDescription="Thorax")
    create(tmp_path / "out", [str(tmp_path / "in")], options())
    (patient,) = read_tree(tmp_path / "out" / "DICOMDIR")
    assert patient.values["PatientName"] == name
    records = dcmread(tmp_path / "out" / "DICOMDIR").DirectoryRecordSequence
    by_type = {r.DirectoryRecordType: r for r in records}
    assert by_type["PATIENT"].SpecificCharacterSet == charset
    assert "SpecificCharacterSet" not in by_type["STUDY"]  # its keys are all ASCII
    assert "SpecificCharacterSet" not in by_type["IMAGE"]


# -- add (FSU) ----------------------------------------------------------------------------

def test_add_keeps_every_existing_file_and_record(tmp_path: Path) -> None:
    (first,) = study(tmp_path / "a", "a", count=1)
    create(tmp_path / "out", [str(tmp_path / "a")], options())
    before = digest(tmp_path / "out" / "DICOM")
    old = [(n.file_id, n.sop_instance_uid) for n in
           leaves(read_tree(tmp_path / "out" / "DICOMDIR"))]
    identity = dcmread(tmp_path / "out" / "DICOMDIR").file_meta.MediaStorageSOPInstanceUID

    same_series = make_dataset(PatientID="P1", StudyInstanceUID=first.StudyInstanceUID,
                               SeriesInstanceUID=first.SeriesInstanceUID, InstanceNumber=2)
    write_instance(tmp_path / "b" / "next.dcm", same_series)
    study(tmp_path / "b", "other", patient="P9", count=1)
    shutil.copy(tmp_path / "a" / "a-0.dcm", tmp_path / "b" / "again.dcm")
    summary = add(tmp_path / "out" / "DICOMDIR", [str(tmp_path / "b")], options())

    after = digest(tmp_path / "out" / "DICOM")
    assert {k: after[k] for k in before} == before  # existing files byte for byte
    assert summary.duplicates == [tmp_path / "b" / "again.dcm"]
    ids = {f.sop_instance_uid: f.file_id for f in summary.files}
    assert ids[same_series.SOPInstanceUID] == ("DICOM", "PAT00001", "STU00001", "SER00001",
                                               "IMG00002")
    assert ids[next(iter(set(ids) - {same_series.SOPInstanceUID}))][1] == "PAT00002"
    roots = read_tree(tmp_path / "out" / "DICOMDIR")
    assert [n.values["PatientID"] for n in roots] == ["P1", "P9"]
    assert [(n.file_id, n.sop_instance_uid) for n in leaves(roots)][:2] == \
        [*old, (ids[same_series.SOPInstanceUID], same_series.SOPInstanceUID)]
    assert dcmread(tmp_path / "out" / "DICOMDIR").file_meta.MediaStorageSOPInstanceUID == \
        identity
    assert verify(tmp_path / "out" / "DICOMDIR", CD) == []


def test_add_refuses_an_instance_already_there_with_other_content(tmp_path: Path) -> None:
    (ds,) = study(tmp_path / "a", "a", count=1)
    create(tmp_path / "out", [str(tmp_path / "a")], options())
    dicomdir = (tmp_path / "out" / "DICOMDIR").read_bytes()
    ds.SeriesDescription = "changed"
    write_instance(tmp_path / "b" / "changed.dcm", ds)
    with pytest.raises(MediaError, match="already in the file set"):
        add(tmp_path / "out" / "DICOMDIR", [str(tmp_path / "b")], options())
    assert (tmp_path / "out" / "DICOMDIR").read_bytes() == dicomdir


def test_add_refuses_a_patient_whose_name_differs_from_the_file_set(tmp_path: Path) -> None:
    study(tmp_path / "a", "a", count=1, PatientName="DOE^JOHN")
    create(tmp_path / "out", [str(tmp_path / "a")], options())
    study(tmp_path / "b", "b", count=1, PatientName="ROE^JANE")
    with pytest.raises(MediaError, match=r"'DOE\^JOHN' \(the file set\)"):
        add(tmp_path / "out" / "DICOMDIR", [str(tmp_path / "b")], options())


def test_add_to_something_that_is_not_a_dicomdir(tmp_path: Path) -> None:
    study(tmp_path / "a", "a", count=1)
    with pytest.raises(MediaError, match="not a DICOMDIR"):
        add(tmp_path / "a" / "a-0.dcm", [str(tmp_path / "a")], options())


# -- verify -------------------------------------------------------------------------------

@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, ExportSummary]:
    study(tmp_path / "in", "a", count=3)
    summary = create(tmp_path / "media", [str(tmp_path / "in")], options())
    return tmp_path / "media", summary


def test_verify_finds_nothing_wrong_with_what_create_wrote(
        media: tuple[Path, ExportSummary]) -> None:
    folder, _ = media
    assert verify(folder / "DICOMDIR", CD) == []


def test_verify_finds_a_missing_file(media: tuple[Path, ExportSummary]) -> None:
    folder, summary = media
    gone = summary.files[1].file_id
    folder.joinpath(*gone).unlink()
    assert verify(folder / "DICOMDIR") == [
        Problem("/".join(gone), "missing (its IMAGE record references it)")]


def test_verify_finds_an_unreferenced_dicom_file(media: tuple[Path, ExportSummary]) -> None:
    folder, summary = media
    shutil.copy(folder.joinpath(*summary.files[0].file_id), folder / "DICOM" / "EXTRA")
    (folder / "README.TXT").write_text("viewer instructions\n")  # not DICOM: fine
    assert verify(folder / "DICOMDIR") == [
        Problem("DICOM/EXTRA", "a DICOM file that no record references")]


def test_verify_finds_a_file_that_does_not_match_its_record(
        media: tuple[Path, ExportSummary]) -> None:
    folder, summary = media
    path = folder.joinpath(*summary.files[2].file_id)
    ds = dcmread(path)
    ds.SOPInstanceUID = "1.2.3.4"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.save_as(path, enforce_file_format=True)
    problems = verify(folder / "DICOMDIR")
    assert problems == [Problem("/".join(summary.files[2].file_id),
                                f"SOP Instance UID 1.2.3.4, the record says "
                                f"{summary.files[2].sop_instance_uid}")]


def test_verify_checks_the_syntax_against_a_profile(tmp_path: Path) -> None:
    write_instance(tmp_path / "in" / "implicit.dcm", make_dataset(), transfer_syntax=IMPLICIT)
    summary = create(tmp_path / "out", [str(tmp_path / "in")], options("general"))
    assert verify(tmp_path / "out" / "DICOMDIR") == []
    assert verify(tmp_path / "out" / "DICOMDIR", CD) == [
        Problem("/".join(summary.files[0].file_id),
                "transfer syntax implicit is not allowed by STD-GEN-CD")]


# -- other encodings and record types -----------------------------------------------------

def test_big_endian_is_converted_for_a_profile_and_kept_by_general(tmp_path: Path) -> None:
    from support.datasets import pydicom_test_file

    shutil.copy(pydicom_test_file("MR_small_bigendian.dcm"), tmp_path / "big.dcm")
    converted = create(tmp_path / "cd", [str(tmp_path / "big.dcm")], options())
    assert converted.converted == {("big-endian", "explicit"): 1}
    copy = dcmread((tmp_path / "cd").joinpath(*converted.files[0].file_id))
    assert copy.pixel_array.tolist() == dcmread(tmp_path / "big.dcm").pixel_array.tolist()
    kept = create(tmp_path / "general", [str(tmp_path / "big.dcm")], options("general"))
    assert dataset_bytes((tmp_path / "general").joinpath(*kept.files[0].file_id)) == \
        dataset_bytes(tmp_path / "big.dcm")
    assert verify(tmp_path / "general" / "DICOMDIR") == []


def test_implicit_data_under_the_explicit_uid_is_rewritten_not_copied(tmp_path: Path) -> None:
    from dcmtool.dicom.part10 import FileMeta

    ds = make_dataset()
    write_instance(tmp_path / "implicit.dcm", ds, transfer_syntax=IMPLICIT)
    mislabelled = FileMeta(ds.SOPClassUID, ds.SOPInstanceUID, EXPLICIT, "1.2.3", "X")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "wrong.dcm").write_bytes(
        mislabelled.file_header() + dataset_bytes(tmp_path / "implicit.dcm"))
    with pytest.warns(UserWarning, match="Expected explicit VR, but found implicit VR"):
        summary = create(tmp_path / "out", [str(tmp_path / "in")], options())
    copy = (tmp_path / "out").joinpath(*summary.files[0].file_id)
    assert dataset_bytes(copy)[4:6] == b"UI"  # explicit VR now: (0008,0016) UI ...
    assert dcmread(copy).PixelData == ds.PixelData


def test_an_sr_record_holds_only_the_concept_modifiers_of_its_content(tmp_path: Path) -> None:
    ds = make_dataset(sop_class="1.2.840.10008.5.1.4.1.1.88.33", Modality="SR",
                      CompletionFlag="COMPLETE", VerificationFlag="UNVERIFIED",
                      ContentDate="20260101", ContentTime="120000")
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
                    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "PixelData"):
        delattr(ds, keyword)
    title = Dataset()
    title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning = \
        "18748-4", "LN", "Diagnostic Imaging Report"
    ds.ConceptNameCodeSequence = [title]
    modifier, text = Dataset(), Dataset()
    modifier.RelationshipType, modifier.ValueType = "HAS CONCEPT MOD", "CODE"
    text.RelationshipType, text.ValueType, text.TextValue = "CONTAINS", "TEXT", "Findings"
    ds.ContentSequence = [modifier, text]
    write_instance(tmp_path / "in" / "sr.dcm", ds)
    summary = create(tmp_path / "out", [str(tmp_path / "in")], options())
    (node,) = leaves(read_tree(tmp_path / "out" / "DICOMDIR"))
    assert node.record_type == "SR DOCUMENT"
    assert summary.files[0].file_id[-1] == "SR000001"
    record = node.source
    assert [i.RelationshipType for i in record.ContentSequence] == ["HAS CONCEPT MOD"]
    assert record.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    assert (record.CompletionFlag, record.ContentDate) == ("COMPLETE", "20260101")


def test_verify_finds_a_truncated_file(media: tuple[Path, ExportSummary]) -> None:
    folder, summary = media
    path = folder.joinpath(*summary.files[0].file_id)
    path.write_bytes(path.read_bytes()[:-30])
    (problem,) = verify(folder / "DICOMDIR")
    assert problem.path == "/".join(summary.files[0].file_id)
    assert problem.message.startswith("not a whole data set:")


def test_inputs_without_dicom_are_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("nothing\n")
    with pytest.raises(UsageError, match=r"no DICOM files in the inputs \(1 other"):
        create(tmp_path / "out", [str(tmp_path / "in")], options())
    assert not (tmp_path / "out").exists()


def test_adding_only_what_is_there_leaves_the_dicomdir_alone(tmp_path: Path) -> None:
    study(tmp_path / "in", "a", count=2)
    create(tmp_path / "out", [str(tmp_path / "in")], options())
    before = (tmp_path / "out" / "DICOMDIR").read_bytes()
    summary = add(tmp_path / "out" / "DICOMDIR", [str(tmp_path / "in")], options())
    assert (summary.instances, len(summary.duplicates)) == (0, 2)
    assert (tmp_path / "out" / "DICOMDIR").read_bytes() == before


def test_new_uids_follow_the_references_inside_sequences(tmp_path: Path) -> None:
    (ct,) = study(tmp_path / "in", "ct", count=1)
    state = make_dataset(sop_class="1.2.840.10008.5.1.4.1.1.11.1", Modality="PR", PatientID="P1",
                         StudyInstanceUID=ct.StudyInstanceUID, SeriesNumber=2,
                         ContentLabel="ARROWS", PresentationCreationDate="20260101",
                         PresentationCreationTime="120000")
    image, series = Dataset(), Dataset()
    image.ReferencedSOPClassUID = ct.SOPClassUID
    image.ReferencedSOPInstanceUID = ct.SOPInstanceUID
    series.SeriesInstanceUID = ct.SeriesInstanceUID
    series.ReferencedImageSequence = [image]
    state.ReferencedSeriesSequence = [series]
    write_instance(tmp_path / "in" / "pr.dcm", state)
    summary = create(tmp_path / "out", [str(tmp_path / "in")], options(new_uids=True))
    copies = {dcmread((tmp_path / "out").joinpath(*f.file_id)).Modality:
              dcmread((tmp_path / "out").joinpath(*f.file_id)) for f in summary.files}
    referenced = copies["PR"].ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == copies["CT"].SeriesInstanceUID != ct.SeriesInstanceUID
    assert referenced.ReferencedImageSequence[0].ReferencedSOPInstanceUID == \
        copies["CT"].SOPInstanceUID
    assert referenced.ReferencedImageSequence[0].ReferencedSOPClassUID == ct.SOPClassUID


def test_a_pydicom_without_the_record_helpers_fails_loudly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom.fileset

    from dcmtool.media import records

    monkeypatch.delattr(pydicom.fileset, "_four_level_record_type")
    with pytest.raises(ImportError, match=r"pydicom\.fileset has no _four_level_record_type"):
        records.pydicom_helpers()


def test_record_keys_come_from_pydicoms_recorders() -> None:
    from dcmtool.media import records

    study_keys = records.f5_keys("STUDY")
    assert {records.keyword(t) for t in study_keys.required} == \
        {"StudyDate", "StudyTime", "StudyID"}
    assert {records.keyword(t) for t in study_keys.empty_allowed} == \
        {"StudyDescription", "AccessionNumber"}
    assert {records.keyword(t) for t in study_keys.if_present} == {"StudyInstanceUID"}
    sr = records.f5_keys("SR DOCUMENT")
    assert "ConceptNameCodeSequence" in {records.keyword(t) for t in sr.required}
    assert records.record_type("1.2.840.10008.5.1.4.1.1.104.1", "DOC", True) == \
        ("ENCAP DOC", False)
    assert records.record_type("1.2.840.10008.5.1.4.38.1") == ("HANGING PROTOCOL", True)
