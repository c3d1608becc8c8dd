"""dcmtool.media's file sets against the validators and readers of other toolkits.

* Our DICOMDIRs, for every profile and for SR, presentation state, encapsulated PDF, RT
  plan/dose/structure set, waveform and non-ASCII names (ISO_IR 100 and ISO_IR 192): dicom3tools
  ``dciodvfy`` reports no error, ``dcdirdmp`` dumps every record, DCMTK ``dcmdump`` reads them,
  and pydicom's ``FileSet`` finds every instance.
* A DICOMDIR made by DCMTK ``dcmmkdir`` (on copies named in ISO 9660 form) is read by
  ``read_tree``, passes ``verify``, and takes files added by ``add``.

Programs are called by absolute path; a missing one skips the test (fails it when CI=true).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid
from support.datasets import make_dataset, pydicom_test_file, write_instance
from support.processes import require_program

from dcmtool.media.directory import read_tree, verify
from dcmtool.media.export import ExportOptions, ExportSummary, add, create
from dcmtool.media.profiles import PROFILES

DCIODVFY = "/usr/bin/dciodvfy"
DCDIRDMP = "/usr/bin/dcdirdmp"
DCMDUMP = "/usr/bin/dcmdump"
DCMMKDIR = "/usr/bin/dcmmkdir"

#: Record types the inputs below make, besides PATIENT/STUDY/SERIES/IMAGE.
OTHER_RECORDS = {"SR DOCUMENT", "PRESENTATION", "ENCAP DOC", "RT PLAN", "RT DOSE",
                 "RT STRUCTURE SET", "WAVEFORM"}


def dicom3tools(path: str) -> str:
    return require_program(path, "dicom3tools", path.rsplit("/", 1)[-1])


def dcmtk(path: str) -> str:
    return require_program(path, "dcmtk", path.rsplit("/", 1)[-1])


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # dcdirdmp prints names in their own character set: never fail on decoding them.
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True,
                          errors="replace", timeout=120, check=False)


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's errors: lines starting "Error -", or "- Error -" after the element they
    are about; "Abort" (it could not read the file) is one too. Warnings are not."""
    checked = run(dicom3tools(DCIODVFY), path)
    lines = (checked.stdout + checked.stderr).splitlines()
    return [line for line in lines if re.search(r"(^|\s-\s)(Error|Abort)\s-\s", line)]


def _copy_of(study: Dataset, sop_class: str, modality: str, series_number: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    for keyword in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex",
                    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber"):
        setattr(ds, keyword, getattr(study, keyword))
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.InstanceNumber = 1
    return ds


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of varied instances: images, SR, GSPS, PDF, RT, waveform, two charsets."""
    folder = tmp_path_factory.mktemp("inputs")
    ct = make_dataset(PatientID="MIXED", rows=64, columns=64)
    ct.PixelData = bytes(64 * 64 * 2)
    write_instance(folder / "ct.dcm", ct)
    write_instance(folder / "ct-implicit.dcm", make_dataset(PatientID="IMPL"),
                   transfer_syntax="1.2.840.10008.1.2")

    state = _copy_of(ct, "1.2.840.10008.5.1.4.1.1.11.1", "PR", 2)  # GSPS
    state.ContentLabel = "ANNOTATIONS"
    state.ContentDescription = "arrows"
    state.ContentCreatorName = "Reader^One"
    state.PresentationCreationDate = "20260101"
    state.PresentationCreationTime = "120000"
    image = Dataset()
    image.ReferencedSOPClassUID = ct.SOPClassUID
    image.ReferencedSOPInstanceUID = ct.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = ct.SeriesInstanceUID
    series.ReferencedImageSequence = [image]
    state.ReferencedSeriesSequence = [series]
    write_instance(folder / "gsps.dcm", state)

    pdf = _copy_of(ct, "1.2.840.10008.5.1.4.1.1.104.1", "DOC", 3)  # Encapsulated PDF
    pdf.ContentDate = "20260101"
    pdf.ContentTime = "120000"
    pdf.AcquisitionDateTime = "20260101120000"
    pdf.BurnedInAnnotation = "YES"
    pdf.DocumentTitle = "Report"
    pdf.ConceptNameCodeSequence = []
    pdf.MIMETypeOfEncapsulatedDocument = "application/pdf"
    pdf.EncapsulatedDocument = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    pdf.EncapsulatedDocumentLength = len(pdf.EncapsulatedDocument)
    write_instance(folder / "report.dcm", pdf)

    # Compressed inputs (JPEG 2000, JPEG baseline colour): each profile converts the ones it
    # does not allow.
    for name in ("test-SR.dcm", "rtplan.dcm", "rtdose.dcm", "waveform_ecg.dcm",
                 "JPEG2000.dcm", "SC_rgb_jpeg_dcmtk.dcm"):
        shutil.copy(pydicom_test_file(name), folder / name)
    # pydicom's rtstruct.dcm has no File Meta: write it as a Part 10 file.
    write_instance(folder / "rtstruct.dcm", dcmread(pydicom_test_file("rtstruct.dcm"),
                                                    force=True))
    write_instance(folder / "latin1.dcm", make_dataset(
        PatientID="LATIN1", PatientName="Müller^Jürgen", SpecificCharacterSet="ISO_IR 100",
        StudyDescription="Übersicht"))
    write_instance(folder / "utf8.dcm", make_dataset(
        PatientID="UTF8", PatientName="山田^太郎", SpecificCharacterSet="ISO_IR 192",
        StudyDescription="検査"))
    return folder


def _instances(folder: Path) -> set[str]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID)
            for p in folder.iterdir() if p.suffix == ".dcm"}


def _check_with_every_reader(dicomdir: Path, summary: ExportSummary) -> None:
    """dciodvfy: no error; dcdirdmp and dcmdump: read it; pydicom FileSet: every instance."""
    assert dciodvfy_errors(dicomdir) == []

    dumped = run(dicom3tools(DCDIRDMP), dicomdir)
    assert dumped.returncode == 0, dumped.stderr
    listing = dumped.stdout + dumped.stderr  # dcdirdmp writes its tree to stderr
    for exported in summary.files:
        assert "\\".join(exported.file_id) in listing

    dcmdump = run(dcmtk(DCMDUMP), "+L", dicomdir)
    assert dcmdump.returncode == 0 and "E:" not in dcmdump.stderr, dcmdump.stderr
    assert dcmdump.stdout.count('"Directory Record"') == \
        sum(1 for root in read_tree(dicomdir) for _ in root.walk())

    fileset = FileSet(dcmread(dicomdir))
    assert {str(i.SOPInstanceUID) for i in fileset} == \
        {f.sop_instance_uid for f in summary.files}
    for instance in fileset:  # each file exists and is the instance its record names
        assert dcmread(instance.path).SOPInstanceUID == instance.SOPInstanceUID


@pytest.mark.parametrize("name", list(PROFILES))
def test_every_profile_makes_a_file_set_every_reader_accepts(
        name: str, inputs: Path, tmp_path: Path) -> None:
    summary = create(tmp_path / "media", [str(inputs)],
                     ExportOptions(PROFILES[name], invent=True))
    dicomdir = tmp_path / "media" / "DICOMDIR"
    assert {f.sop_instance_uid for f in summary.files} == _instances(inputs)
    types = {node.record_type for root in read_tree(dicomdir) for node in root.walk()}
    assert types >= OTHER_RECORDS
    assert verify(dicomdir, PROFILES[name]) == []
    allowed = PROFILES[name].syntaxes
    assert all(f.syntax in allowed for f in summary.files) if allowed else \
        summary.converted == {}
    _check_with_every_reader(dicomdir, summary)


@pytest.mark.parametrize(("name", "expected"), [
    # JPEG: baseline holds 8 bits, extended 12; 16-bit images stay lossless (explicit VR).
    ("STD-GEN-DVD-JPEG", {8: "1.2.840.10008.1.2.4.50", 12: "1.2.840.10008.1.2.4.51",
                          16: "1.2.840.10008.1.2.1"}),
    ("STD-GEN-USB-J2K", dict.fromkeys((8, 12, 16), "1.2.840.10008.1.2.4.91")),
])
def test_lossy_file_sets_pass_the_readers_too(name: str, expected: dict[int, str],
                                              tmp_path: Path) -> None:
    source = tmp_path / "in"
    for number, bits in enumerate(expected):
        ds = make_dataset(rows=64, columns=64, BitsAllocated=8 if bits == 8 else 16,
                          BitsStored=bits, HighBit=bits - 1, InstanceNumber=number + 1)
        ds.PixelData = bytes(range(256)) * (64 * 64 * (1 if bits == 8 else 2) // 256)
        write_instance(source / f"{bits}.dcm", ds)
    summary = create(tmp_path / "media", [str(source)],
                     ExportOptions(PROFILES[name], lossy=True))
    assert {int(f.source.stem): f.syntax for f in summary.files} == expected
    assert verify(tmp_path / "media" / "DICOMDIR", PROFILES[name]) == []
    _check_with_every_reader(tmp_path / "media" / "DICOMDIR", summary)


@pytest.fixture
def dcmmkdir_media(tmp_path: Path) -> Path:
    """Two studies copied under ISO 9660 names and indexed by DCMTK dcmmkdir."""
    program = dcmtk(DCMMKDIR)
    folder = tmp_path / "dcmtk"
    (folder / "DICOM").mkdir(parents=True)
    for number in range(4):
        ds = make_dataset(PatientID=f"P{number % 2}", PatientName=f"Patient^{number % 2}",
                          InstanceNumber=number + 1)
        write_instance(folder / "DICOM" / f"IM{number:06d}", ds)
    latin = make_dataset(PatientID="LATIN1", PatientName="Müller^Jürgen",
                         SpecificCharacterSet="ISO_IR 100")
    write_instance(folder / "DICOM" / "IM000009", latin)
    made = run(program, "+r", "+D", "DICOMDIR", "DICOM", cwd=folder)
    assert made.returncode == 0, made.stderr
    return folder / "DICOMDIR"


def test_a_dcmmkdir_dicomdir_is_read_and_verified(dcmmkdir_media: Path) -> None:
    roots = read_tree(dcmmkdir_media)
    assert sorted(r.values["PatientID"] for r in roots) == ["LATIN1", "P0", "P1"]
    assert {r.values["PatientName"] for r in roots} >= {"Müller^Jürgen"}
    images = [n for r in roots for n in r.walk() if n.record_type == "IMAGE"]
    assert len(images) == 5 and all(n.file_id and n.file_id[0] == "DICOM" for n in images)
    assert verify(dcmmkdir_media, PROFILES["STD-GEN-CD"]) == []


def test_add_to_a_dcmmkdir_file_set_keeps_it_valid(dcmmkdir_media: Path,
                                                    tmp_path: Path) -> None:
    before = {p: p.read_bytes() for p in (dcmmkdir_media.parent / "DICOM").iterdir()}
    write_instance(tmp_path / "new" / "a.dcm", make_dataset(PatientID="P0",
                                                             PatientName="Patient^0"))
    summary = add(dcmmkdir_media, [str(tmp_path / "new")],
                  ExportOptions(PROFILES["STD-GEN-CD"]))
    assert {p: p.read_bytes() for p in before} == before
    assert verify(dcmmkdir_media, PROFILES["STD-GEN-CD"]) == []
    roots = read_tree(dcmmkdir_media)
    assert sorted(r.values["PatientID"] for r in roots) == ["LATIN1", "P0", "P1"]
    assert len(FileSet(dcmread(dcmmkdir_media))) == 6
    assert summary.files[0].file_id[0] == "DICOM"
    assert dciodvfy_errors(dcmmkdir_media) == []
