"""`dcmtool dicomdir` end to end: the media it writes, checked by the validators other tools
trust (dicom3tools dciodvfy and dcdirdmp, DCMTK dcmdump, pydicom's FileSet), DICOMDIRs made
by DCMTK read back, and discs sent back to an archive or exported from one (issue 15)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from support.archive import ServedArchive, write_site_config
from support.datasets import pydicom_test_file, write_instance
from support.media import (
    copy_to_iso_tree,
    dcdirdmp,
    dcdirdmp_file_ids,
    dciodvfy_errors,
    dcmdump_ok,
    dcmmkdir,
    is_iso_file_id,
    pydicom_fileset_instances,
    write_media_inputs,
)
from support.peers import free_port, run_cli, run_dcmtool
from typer.testing import Result

pytestmark = [pytest.mark.peer("dcmtk"), pytest.mark.peer("dicom3tools")]

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS_SV1 = ("1.2.840.10008.1.2.4.50",
                                                   "1.2.840.10008.1.2.4.51",
                                                   "1.2.840.10008.1.2.4.70")
JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80"
J2K_LOSSLESS, J2K = "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"
LOSSY = {JPEG_BASELINE, JPEG_EXTENDED, J2K, "1.2.840.10008.1.2.4.81"}
#: What each profile lets onto the media (PS3.11 Annex D, as DCMTK dcmmkdir checks them);
#: None: any syntax, each file kept in its own.
PROFILES: dict[str, set[str] | None] = {
    "STD-GEN-CD": {EXPLICIT},
    "STD-GEN-DVD-JPEG": {EXPLICIT, JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS_SV1},
    "STD-GEN-USB-JPEG": {EXPLICIT, JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS_SV1},
    "STD-GEN-DVD-J2K": {EXPLICIT, J2K_LOSSLESS, J2K},
    "STD-GEN-USB-J2K": {EXPLICIT, J2K_LOSSLESS, J2K},
    "general": None,
}
#: The record types the mixed inputs need beside IMAGE (PS3.3 F.5).
RECORD_TYPES = ("IMAGE", "SR DOCUMENT", "RT PLAN", "RT DOSE", "WAVEFORM", "ENCAP DOC",
                "PRESENTATION")


# ---------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """The mixed inputs of support.media.write_media_inputs, in tmp_path/inputs."""
    return write_media_inputs(tmp_path / "inputs")


def create(*args: str | Path, input: str | None = None) -> Result:
    """`dcmtool dicomdir create ARGS`, expected to succeed."""
    result = run_cli("dicomdir", "create", *args, input=input, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def copy_test_file(name: str, target: Path) -> Path:
    """A copy of one of pydicom's test files at ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pydicom_test_file(name), target)
    return target


def sop_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def digests(paths: list[Path]) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def media_files(out: Path) -> list[Path]:
    """Every file of a file set but its DICOMDIR."""
    return sorted(p for p in out.rglob("*") if p.is_file() and p.name != "DICOMDIR")


def copies(out: Path) -> dict[str, Dataset]:
    """The instances on the media by SOP Instance UID (read whole)."""
    found: dict[str, Dataset] = {}
    for path in media_files(out):
        ds = dcmread(path)
        assert str(ds.SOPInstanceUID) not in found, f"{path}: the same instance twice"
        found[str(ds.SOPInstanceUID)] = ds
    return found


def assert_valid_media(out: Path, expected: set[str]) -> None:
    """OUT/DICOMDIR passes dciodvfy, dcdirdmp and dcmdump read it, its File IDs are ISO 9660
    names of exactly the files there, and pydicom's FileSet finds ``expected``."""
    dicomdir = out / "DICOMDIR"
    assert dciodvfy_errors(dicomdir) == []
    assert dcmdump_ok(dicomdir)
    file_ids = dcdirdmp_file_ids(dicomdir)
    on_disk = sorted("\\".join(p.relative_to(out).parts) for p in media_files(out))
    assert sorted(file_ids) == on_disk
    assert all(is_iso_file_id(p.relative_to(out)) for p in media_files(out)), on_disk
    assert all(dcmdump_ok(p) for p in media_files(out))
    assert pydicom_fileset_instances(dicomdir) == expected


def strings(value: Any) -> list[str]:
    """Every string in a parsed JSON document (keys and values)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def nothing_written(out: Path) -> bool:
    return not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def pixels(ds: Dataset) -> np.ndarray:
    return np.asarray(ds.pixel_array)


# ---------------------------------------------------------------------------------------------
# create


def test_mixed_inputs_make_media_every_validator_accepts(inputs: dict[str, Path],
                                                         tmp_path: Path) -> None:
    before = digests(list(inputs.values()))
    out = tmp_path / "media"
    result = create(out, inputs["ct"].parent)
    expected = {sop_uid(p) for p in inputs.values()}
    assert f"{len(expected)} instances" in result.stdout
    assert "converted:" in result.stdout  # implicit VR and compressed files for STD-GEN-CD
    assert_valid_media(out, expected)
    dump = dcdirdmp(out / "DICOMDIR")
    for record in RECORD_TYPES:
        assert f"\t{record}" in dump, record
    file_ids = dcdirdmp_file_ids(out / "DICOMDIR")
    assert "DICOM\\PAT00001\\STU00001\\SER00001\\IMG00001" in file_ids, file_ids
    assert digests(list(inputs.values())) == before  # the originals are only read


@pytest.mark.parametrize("profile", list(PROFILES))
def test_each_profile_writes_only_the_syntaxes_it_allows(inputs: dict[str, Path],
                                                         tmp_path: Path, profile: str) -> None:
    out = tmp_path / "media"
    create(out, inputs["ct"].parent, "--profile", profile)
    originals = {sop_uid(p): dcmread(p) for p in inputs.values()}
    written = copies(out)
    assert set(written) == set(originals)
    allowed = PROFILES[profile]
    for uid, copy in written.items():
        original = originals[uid]
        source, target = original.file_meta.TransferSyntaxUID, copy.file_meta.TransferSyntaxUID
        what = f"{profile}: {uid} {source.name} -> {target.name}"
        if allowed is None or (source in allowed and source != EXPLICIT):
            # Kept as it is: a compressed file allowed is not decoded and encoded again.
            assert target == source, what
            if "PixelData" in original and source.is_compressed:
                assert copy.PixelData == original.PixelData, what
            continue
        assert target in allowed, what
        assert target not in LOSSY, f"lossy without --lossy: {what}"
        if "PixelData" in original and source not in LOSSY:
            assert np.array_equal(pixels(copy), pixels(original)), f"pixels differ: {what}"
    assert_valid_media(out, set(originals))
    verified = run_cli("dicomdir", "verify", out / "DICOMDIR", "--profile", profile)
    assert verified.exit_code == 0, verified.output


def test_lossy_only_when_asked(tmp_path: Path) -> None:
    source = copy_test_file("CT_small.dcm", tmp_path / "in" / "ct.dcm")
    out = tmp_path / "media"
    create(out, source, "--profile", "STD-GEN-USB-J2K", "--lossy")
    (copy,) = copies(out).values()
    assert copy.file_meta.TransferSyntaxUID in LOSSY
    # PS3.3 C.7.6.1.1.5: said once lossy, and a new instance (not the original's UID).
    assert copy.LossyImageCompression == "01"
    assert copy.SOPInstanceUID != sop_uid(source)
    assert_valid_media(out, {str(copy.SOPInstanceUID)})


def test_non_ascii_patient_names_come_back_right(tmp_path: Path) -> None:
    names = {"ISO_IR 100": ("LAT1", "Müller^Jürgen"), "ISO_IR 192": ("UTF8", "山田^太郎")}
    for charset, (patient_id, name) in names.items():
        write_instance(tmp_path / "in" / f"{patient_id}.dcm", SpecificCharacterSet=charset,
                       PatientID=patient_id, PatientName=name)
    out = tmp_path / "media"
    create(out, tmp_path / "in")
    listing = run_cli("dicomdir", "ls", out / "DICOMDIR", "--json", catch_exceptions=False)
    assert listing.exit_code == 0, listing.output
    found = strings(json.loads(listing.stdout))
    for _, (_, name) in names.items():
        assert name in found, (name, listing.stdout)
    tree = run_cli("dicomdir", "ls", out / "DICOMDIR", catch_exceptions=False)
    assert all(name in tree.stdout for _, name in names.values()), tree.stdout
    # The records carry their character set: other readers decode them too.
    records = dcmread(out / "DICOMDIR").DirectoryRecordSequence
    patients = {str(r.PatientID): str(r.PatientName) for r in records
                if r.DirectoryRecordType == "PATIENT"}
    assert patients == {patient_id: name for patient_id, name in names.values()}
    assert_valid_media(out, {sop_uid(p) for p in (tmp_path / "in").iterdir()})


def test_duplicate_files_are_one_instance(tmp_path: Path) -> None:
    original = copy_test_file("CT_small.dcm", tmp_path / "a" / "ct.dcm")
    copy_test_file("CT_small.dcm", tmp_path / "b" / "same-ct.dcm")
    out = tmp_path / "media"
    result = create(out, tmp_path / "a", tmp_path / "b")
    assert "1 instance," in result.stdout
    assert_valid_media(out, {sop_uid(original)})


# ---------------------------------------------------------------------------------------------
# What is refused, before anything is written


def _conflicting_patients(folder: Path, key: str) -> list[Path]:
    first, second = folder / "first.dcm", folder / "second.dcm"
    write_instance(first, PatientID="P7", PatientName="Doe^Jane", PatientBirthDate="19700101")
    other = {"name": {"PatientName": "Roe^Richard"},
             "birth date": {"PatientBirthDate": "19800202"}}[key]
    write_instance(second, PatientID="P7", **{"PatientName": "Doe^Jane",
                                               "PatientBirthDate": "19700101", **other})
    return [first, second]


def _duplicate_uid(folder: Path, key: str) -> list[Path]:
    first = folder / "first.dcm"
    ds = write_instance(first)
    ds.PixelData = b"\xff" * len(ds.PixelData)  # the same SOP Instance UID, other pixels
    second = folder / "second.dcm"
    write_instance(second, ds)
    return [first, second]


def _missing_keys(folder: Path, key: str) -> list[Path]:
    # pydicom's own test files, as they are: the SR has an empty Patient ID, Study Date and
    # Study ID; the RT plan has no Instance Number (all Type 1 in their records, PS3.3 F.5).
    return [copy_test_file(name, folder / name) for name in ("test-SR.dcm", "rtplan.dcm")]


REFUSALS: dict[str, tuple[Callable[[Path, str], list[Path]], str, str]] = {
    "same patient ID, other name": (_conflicting_patients, "name", r"P7"),
    "same patient ID, other birth date": (_conflicting_patients, "birth date", r"P7"),
    "same SOP Instance UID, other content": (_duplicate_uid, "", r"SOP ?Instance ?UID"),
    "missing Type 1 keys": (_missing_keys, "", r"Patient ?ID.*|Instance ?Number"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_inconsistent_input_is_refused_before_writing(tmp_path: Path, case: str) -> None:
    make, key, said = REFUSALS[case]
    folder = tmp_path / "in"
    folder.mkdir()
    named = make(folder, key)
    out = tmp_path / "media"
    result = run_cli("dicomdir", "create", out, folder)
    assert result.exit_code == 1, result.output
    assert nothing_written(out), sorted(out.rglob("*"))
    for path in named:
        assert path.name in result.stderr, (path.name, result.stderr)
    assert re.search(said, result.stderr), result.stderr
    if case == "missing Type 1 keys":
        assert "--invent" in result.stderr, result.stderr  # the way past it
    assert "Traceback" not in result.output


def test_an_out_folder_that_is_not_empty_needs_force(tmp_path: Path) -> None:
    source = copy_test_file("CT_small.dcm", tmp_path / "in" / "ct.dcm")
    out = tmp_path / "media"
    out.mkdir()
    (out / "NOTES.TXT").write_text("mine")
    refused = run_cli("dicomdir", "create", out, source)
    assert refused.exit_code in (1, 2), refused.output
    assert "--force" in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == ["NOTES.TXT"]
    create(out, source, "--force")
    assert (out / "NOTES.TXT").read_text() == "mine"
    assert pydicom_fileset_instances(out / "DICOMDIR") == {sop_uid(source)}


def test_invent_fills_missing_keys_and_says_which(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    originals = _missing_keys(folder, "")
    before = digests(originals)
    out = tmp_path / "media"
    result = create(out, folder, "--invent")
    assert "invent" in result.stderr.lower(), result.output
    assert re.search(r"Patient ?ID", result.stderr), result.stderr
    assert re.search(r"Instance ?Number", result.stderr), result.stderr
    assert_valid_media(out, {sop_uid(p) for p in originals})
    assert digests(originals) == before


def test_new_uids_and_set_change_the_copies_not_the_originals(inputs: dict[str, Path],
                                                              tmp_path: Path) -> None:
    before = digests(list(inputs.values()))
    originals = {kind: dcmread(p, stop_before_pixels=True) for kind, p in inputs.items()}
    out = tmp_path / "media"
    create(out, inputs["ct"].parent, "--new-uids", "--set", "PatientName=Anon^Ymous",
           "--set", "PatientID=ANON01")
    assert digests(list(inputs.values())) == before
    written = copies(out)
    old_uids = {str(ds.get(k)) for ds in originals.values()
                for k in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")}
    for uid, copy in written.items():
        assert {str(copy.PatientName), str(copy.PatientID)} == {"Anon^Ymous", "ANON01"}, uid
        assert not {uid, str(copy.StudyInstanceUID), str(copy.SeriesInstanceUID)} & old_uids
    # Consistently: as many studies and series as before, and the presentation state
    # still points at the CT image (now under its new UIDs).
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        assert (len({str(ds.get(keyword)) for ds in written.values()})
                == len({str(ds.get(keyword)) for ds in originals.values()})), keyword
    (pr,) = [ds for ds in written.values() if ds.Modality == "PR"]
    (ct,) = [ds for ds in written.values() if ds.Modality == "CT"]
    referenced = pr.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == ct.SeriesInstanceUID
    assert referenced.ReferencedImageSequence[0].ReferencedSOPInstanceUID == ct.SOPInstanceUID
    assert_valid_media(out, set(written))
    listing = run_cli("dicomdir", "ls", out / "DICOMDIR", "--json", catch_exceptions=False)
    patients = json.loads(listing.stdout)
    assert [patient["PatientID"] for patient in patients] == ["ANON01"]
    assert "Anon^Ymous" in strings(patients)


def test_globs_and_stdin_name_the_inputs(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "media"
    create(out, str(inputs["ct"].parent / "r*.dcm"), "-",
           input=f"{inputs['ct']}\n{inputs['mr']}\n")
    chosen = [p for p in inputs.values() if p.name.startswith("r")] + [inputs["ct"],
                                                                       inputs["mr"]]
    assert pydicom_fileset_instances(out / "DICOMDIR") == {sop_uid(p) for p in chosen}


def test_another_dicomdir_is_an_input(inputs: dict[str, Path], tmp_path: Path) -> None:
    first = tmp_path / "first"
    create(first, inputs["ct"].parent, "--profile", "general")
    second = tmp_path / "second"
    create(second, first / "DICOMDIR")
    assert_valid_media(second, {sop_uid(p) for p in inputs.values()})


# ---------------------------------------------------------------------------------------------
# ls, verify and add


@pytest.fixture
def dcmtk_media(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """A file set made by DCMTK dcmmkdir (STD-GEN-CD) and the inputs it was made from."""
    files = write_media_inputs(tmp_path / "dcmtk-inputs", explicit_only=True)
    copy_to_iso_tree(files.values(), tmp_path / "dcmtk")
    return dcmmkdir(tmp_path / "dcmtk"), files


def test_ls_and_verify_read_a_dcmtk_dicomdir(dcmtk_media: tuple[Path, dict[str, Path]]
                                             ) -> None:
    dicomdir, files = dcmtk_media
    listing = run_cli("dicomdir", "ls", dicomdir, "--json", catch_exceptions=False)
    assert listing.exit_code == 0, listing.output
    found = strings(json.loads(listing.stdout))
    for path in files.values():
        ds = dcmread(path, stop_before_pixels=True)
        assert str(ds.PatientName) in found and str(ds.StudyInstanceUID) in found, path.name
    as_csv = run_cli("dicomdir", "ls", dicomdir, "--csv", catch_exceptions=False)
    rows = as_csv.stdout.strip().splitlines()
    assert len(rows) == 1 + len({str(dcmread(p, stop_before_pixels=True).SeriesInstanceUID)
                                 for p in files.values()})
    verified = run_cli("dicomdir", "verify", dicomdir, catch_exceptions=False)
    assert verified.exit_code == 0, verified.output


def _delete_one(media: Path) -> str:
    victim = media_files(media)[0]
    victim.unlink()
    return victim.name


def _stray_file(media: Path) -> str:
    write_instance(media_files(media)[0].parent / "STRAY")
    return "STRAY"


def _swapped_content(media: Path) -> str:
    # One file replaced by another instance: its record's UIDs no longer match.
    first, second = media_files(media)[:2]
    shutil.copyfile(second, first)
    return str(first.relative_to(media))


@pytest.mark.parametrize("damage", [_delete_one, _stray_file, _swapped_content],
                         ids=["missing file", "unreferenced file", "record/file mismatch"])
def test_verify_reports_each_problem_on_a_line_and_exits_7(
        dcmtk_media: tuple[Path, dict[str, Path]], tmp_path: Path,
        damage: Callable[[Path], str]) -> None:
    dicomdir, _ = dcmtk_media
    out = tmp_path / "media"
    create(out, dicomdir)
    assert run_dcmtool("dicomdir", "verify", out / "DICOMDIR").returncode == 0
    named = damage(out)
    done = run_dcmtool("dicomdir", "verify", out / "DICOMDIR")
    assert done.returncode == 7, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines and all(named in line for line in lines), done.stdout


def test_add_extends_media_without_touching_what_is_there(inputs: dict[str, Path],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "media"
    create(out, inputs["ct"], inputs["mr"])
    before = digests(media_files(out))
    added = [inputs["pdf"], inputs["pr"], inputs["sr"]]  # PDF and PR are in the CT's study
    result = run_cli("dicomdir", "add", out / "DICOMDIR", *added, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert {p: h for p, h in digests(media_files(out)).items() if p in before} == before
    assert len(media_files(out)) == len(before) + len(added)
    everything = [inputs["ct"], inputs["mr"], *added]
    assert_valid_media(out, {sop_uid(p) for p in everything})
    records = dcmread(out / "DICOMDIR").DirectoryRecordSequence
    patients = [str(r.PatientID) for r in records if r.DirectoryRecordType == "PATIENT"]
    studies = [str(r.StudyInstanceUID) for r in records if r.DirectoryRecordType == "STUDY"]
    assert sorted(patients) == sorted(set(patients)), patients  # the CT's patient once
    assert sorted(studies) == sorted(set(studies)), studies
    verified = run_cli("dicomdir", "verify", out / "DICOMDIR")
    assert verified.exit_code == 0, verified.output


# ---------------------------------------------------------------------------------------------
# Media and an archive


def test_store_sends_every_instance_of_a_disc_back(
        serve_archive: Callable[..., ServedArchive], inputs: dict[str, Path],
        tmp_path: Path) -> None:
    served = serve_archive()
    env = write_site_config(tmp_path / "config.toml", served, free_port())
    out = tmp_path / "media"
    create(out, inputs["ct"].parent)
    result = run_cli("store", "ARCHIVE", out / "DICOMDIR", env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert {sop_uid(p) for p in served.files()} == {sop_uid(p) for p in inputs.values()}


@pytest.mark.parametrize("method", ["move", "get"])
def test_create_from_a_peer_writes_the_retrieved_study(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path, method: str) -> None:
    local_port = free_port()
    served = serve_archive(destinations=(("DCMTOOL", "127.0.0.1", local_port),))
    env = write_site_config(tmp_path / "config.toml", served, local_port,
                            extra=f'retrieve = "{method}"\n')
    study, series = generate_uid(), generate_uid()
    sent = []
    for number in range(1, 4):
        ds = write_instance(tmp_path / "load" / f"{number}.dcm", StudyInstanceUID=study,
                            SeriesInstanceUID=series, PatientID="P1", InstanceNumber=number)
        sent.append(str(ds.SOPInstanceUID))
    write_instance(tmp_path / "load" / "other.dcm", PatientID="P2")  # another study
    stored = run_cli("store", "ARCHIVE", tmp_path / "load", env=env, catch_exceptions=False)
    assert stored.exit_code == 0, stored.output
    out = tmp_path / "media"
    result = run_cli("dicomdir", "create", out, "--peer", "ARCHIVE", "--study", study,
                     env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert_valid_media(out, set(sent))
    assert sorted(p.name for p in out.iterdir()) == ["DICOM", "DICOMDIR"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_a_serve_archive_root_is_an_input(serve_archive: Callable[..., ServedArchive],
                                          inputs: dict[str, Path], tmp_path: Path) -> None:
    served = serve_archive()
    env = write_site_config(tmp_path / "config.toml", served, free_port())
    stored = run_cli("store", "ARCHIVE", inputs["ct"].parent, env=env, catch_exceptions=False)
    assert stored.exit_code == 0, stored.output
    out = tmp_path / "media"
    create(out, served.root)
    assert_valid_media(out, {sop_uid(p) for p in inputs.values()})
