"""DICOM media (file sets with a DICOMDIR) for tests: the validators as the tests need them,
a DCMTK-made file set to compare with, and the kinds of objects media carry.

The validators are other people's programs run by absolute path; a missing one skips the test
(fails it when ``CI=true``, see ``require_program``):

* dicom3tools ``dciodvfy`` checks the DICOMDIR against the Basic Directory IOD (PS3.3 F.3):
  record types, their Type 1 keys, offsets. On a good DICOMDIR made by DCMTK ``dcmmkdir`` it
  prints only warnings (attributes a record may carry that the IOD does not list, e.g. Image
  Type); ``Error - ...`` lines are what is wrong, ``Abort - ...`` means it could not read it.
* dicom3tools ``dcdirdmp`` walks the record tree by its offsets and prints it, one
  ``-> DICOM\\...`` line per referenced file.
* DCMTK ``dcmdump`` reads any DICOM file; ``dcmmkdir`` writes a DICOMDIR over files already
  named in ISO 9660 form (it refuses other names).
* pydicom's ``FileSet`` reads the DICOMDIR and loads every referenced file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from support.datasets import write_instance
from support.processes import dcmtk_env, require_program

DCIODVFY = "/usr/bin/dciodvfy"
DCDIRDMP = "/usr/bin/dcdirdmp"
DCMDUMP = "/usr/bin/dcmdump"
DCMMKDIR = "/usr/bin/dcmmkdir"

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
GRAYSCALE_SOFTCOPY_PRESENTATION_STATE = "1.2.840.10008.5.1.4.1.1.11.1"

#: A File ID component: 1 to 8 of A-Z, 0-9 and _ (PS3.10 8.2, PS3.12 the ISO 9660 names).
ISO_COMPONENT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
#: How dicom3tools starts a message about an error: at the start of a line, or after the
#: element it is about (``(0x0010,0x0010) PN ... - Error - ...``).
_DICOM3TOOLS_ERROR = re.compile(r"(^|\s-\s)(Error|Abort)\s-\s")


def _dicom3tools(path: str) -> str:
    return require_program(path, "dicom3tools", f"dicom3tools {Path(path).name}")


def _dcmtk(path: str) -> str:
    return require_program(path, "dcmtk", f"DCMTK {Path(path).name}")


def _run(argv: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, errors="replace",
                          timeout=120, stdin=subprocess.DEVNULL, env=dcmtk_env(), cwd=cwd)


# ---------------------------------------------------------------------------------------------
# Validators


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy prints for a DICOMDIR (or any DICOM file); warnings are
    not errors. A file it cannot read at all (``Abort``) fails the test with its output."""
    done = _run([_dicom3tools(DCIODVFY), str(path)])
    lines = (done.stdout + done.stderr).splitlines()
    if any(line.startswith("Abort") for line in lines):
        raise AssertionError(f"dciodvfy could not read {path}:\n" + "\n".join(lines))
    errors = [line.strip() for line in lines if _DICOM3TOOLS_ERROR.search(line)]
    if done.returncode != 0 and not errors:
        raise AssertionError(f"dciodvfy exited {done.returncode} on {path} without an Error "
                             f"line:\n" + "\n".join(lines))
    return errors


def dcdirdmp(path: Path) -> str:
    """dcdirdmp's dump of a DICOMDIR's record tree (it prints it on stderr, with its warnings);
    fails the test when dcdirdmp reports an error (e.g. a record offset that points nowhere,
    ``Error - Directory record offset invalid``)."""
    done = _run([_dicom3tools(DCDIRDMP), str(path)])
    text = done.stdout + done.stderr
    errors = [line for line in text.splitlines() if _DICOM3TOOLS_ERROR.search(line)]
    if done.returncode != 0 or errors:
        raise AssertionError(f"dcdirdmp failed on {path} (exit {done.returncode}):\n{text}")
    return text


def dcdirdmp_file_ids(path: Path) -> list[str]:
    """The referenced File IDs in dcdirdmp's dump (``DICOM\\PAT00001\\...``), in record order."""
    return [line.split("->", 1)[1].strip() for line in dcdirdmp(path).splitlines()
            if line.strip().startswith("->")]


def dcmdump_output(path: Path) -> subprocess.CompletedProcess[str]:
    """DCMTK dcmdump of a file, the whole run (exit status, dump, ``E:`` lines)."""
    return _run([_dcmtk(DCMDUMP), str(path)])


def dcmdump_ok(path: Path) -> bool:
    """Whether DCMTK dcmdump reads the whole file: exit 0 and no ``E:`` line."""
    done = dcmdump_output(path)
    return done.returncode == 0 and not any(
        line.startswith("E:") for line in (done.stdout + done.stderr).splitlines())


def pydicom_fileset_instances(dicomdir: Path) -> set[str]:
    """The SOP Instance UIDs of the instances pydicom's FileSet finds through a DICOMDIR.

    Each referenced file is loaded: a missing or unreadable file, or one whose SOP Instance
    UID differs from its record's, fails the test.
    """
    from pydicom.fileset import FileSet

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fileset = FileSet(dicomdir)
    # FileSet leaves out a record whose file is missing, with only a warning.
    missing = [str(w.message) for w in caught if "does not exist" in str(w.message)]
    if missing:
        raise AssertionError("\n".join(missing))
    found: set[str] = set()
    for instance in fileset:
        try:
            ds = instance.load()
        except OSError as exc:  # a referenced file that is missing or unreadable
            raise AssertionError(f"{instance.path}: {exc}") from None
        recorded = str(instance.SOPInstanceUID)
        if str(ds.SOPInstanceUID) != recorded:
            raise AssertionError(f"{instance.path}: SOP Instance UID {ds.SOPInstanceUID}, "
                                 f"its record says {recorded}")
        found.add(recorded)
    return found


# ---------------------------------------------------------------------------------------------
# DCMTK's file sets


def is_iso_file_id(relative: str | Path) -> bool:
    """Whether a path relative to the file set's root is a valid File ID: at most 8
    components of 1 to 8 characters A-Z, 0-9, _ (PS3.10 8.2 with PS3.11's ISO 9660 names)."""
    parts = Path(relative).parts
    return 0 < len(parts) <= 8 and all(
        0 < len(part) <= 8 and set(part) <= ISO_COMPONENT for part in parts)


def copy_to_iso_tree(files: Iterable[Path], root: Path, folder: str = "DICOM") -> list[Path]:
    """Copy ``files`` to ``root/FOLDER/IMG00001``, ``IMG00002``, ... (ISO 9660 names, as
    dcmmkdir wants them); returns the copies in the order given."""
    target = root / folder
    target.mkdir(parents=True, exist_ok=True)
    copies = []
    for number, source in enumerate(files, start=1):
        copy = target / f"IMG{number:05d}"
        shutil.copyfile(source, copy)
        copies.append(copy)
    return copies


def dcmmkdir(folder: Path, *options: str) -> Path:
    """Write ``folder/DICOMDIR`` with DCMTK dcmmkdir over every file below ``folder`` (named
    in ISO 9660 form already, e.g. by ``copy_to_iso_tree``); ``options`` are dcmmkdir's, e.g.
    ``"+I"`` (invent missing keys) or a profile (``"-Pdv"``: STD-GEN-DVD-JPEG)."""
    dicomdir = folder / "DICOMDIR"
    done = _run([_dcmtk(DCMMKDIR), "+r", "+id", str(folder), "+D", str(dicomdir), *options],
                cwd=folder)
    if done.returncode != 0 or not dicomdir.is_file():
        raise AssertionError(f"dcmmkdir failed in {folder} (exit {done.returncode}):\n"
                             f"{done.stdout}{done.stderr}")
    return dicomdir


# ---------------------------------------------------------------------------------------------
# Objects media carry beside images

#: The smallest PDF readers open: one empty page.
MINIMAL_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 612 792]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def _patient_and_study(ds: Dataset, like: Dataset | None) -> None:
    """Patient and study attributes copied from ``like`` (same patient, same study), or
    made up."""
    keywords = ("SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate",
                "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                "AccessionNumber", "ReferringPhysicianName", "StudyDescription")
    if like is not None:
        for keyword in keywords:
            if keyword in like:
                setattr(ds, keyword, like.data_element(keyword).value)
    else:
        ds.PatientName = "Doc^Patient"
        ds.PatientID = "DOC001"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = generate_uid()
        ds.StudyDate = "20260101"
        ds.StudyTime = "120000"
        ds.StudyID = "1"
        ds.AccessionNumber = "ACC001"
        ds.ReferringPhysicianName = ""


def encapsulated_pdf(like: Dataset | None = None, title: str = "Report") -> Dataset:
    """An Encapsulated PDF instance (PS3.3 A.45.1) in its own series, in ``like``'s study."""
    ds = Dataset()
    _patient_and_study(ds, like)
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "DOC"
    ds.SeriesNumber = 90
    ds.InstanceNumber = 1
    ds.ConversionType = "WSD"
    ds.Manufacturer = "dcmtool tests"
    ds.ContentDate = "20260101"
    ds.ContentTime = "120000"
    ds.AcquisitionDateTime = "20260101120000"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = MINIMAL_PDF + (b"\0" if len(MINIMAL_PDF) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(MINIMAL_PDF)
    return ds


def presentation_state(image: Dataset) -> Dataset:
    """A Grayscale Softcopy Presentation State (PS3.3 A.33.1) on ``image``, in its study and
    a series of its own."""
    ds = Dataset()
    _patient_and_study(ds, image)
    ds.SOPClassUID = GRAYSCALE_SOFTCOPY_PRESENTATION_STATE
    ds.SOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "PR"
    ds.SeriesNumber = 91
    ds.InstanceNumber = 1
    ds.Manufacturer = "dcmtool tests"
    ds.ContentLabel = "WINDOW"
    ds.ContentDescription = "A lung window"
    ds.ContentCreatorName = "Reader^One"
    ds.PresentationCreationDate = "20260102"
    ds.PresentationCreationTime = "090000"
    referenced_image = Dataset()
    referenced_image.ReferencedSOPClassUID = image.SOPClassUID
    referenced_image.ReferencedSOPInstanceUID = image.SOPInstanceUID
    referenced_series = Dataset()
    referenced_series.SeriesInstanceUID = image.SeriesInstanceUID
    referenced_series.ReferencedImageSequence = [referenced_image]
    ds.ReferencedSeriesSequence = [referenced_series]
    area = Dataset()
    area.DisplayedAreaTopLeftHandCorner = [1, 1]
    area.DisplayedAreaBottomRightHandCorner = [int(image.get("Columns", 1)),
                                               int(image.get("Rows", 1))]
    area.PresentationSizeMode = "SCALE TO FIT"
    area.PresentationPixelSpacing = [1, 1]
    ds.DisplayedAreaSelectionSequence = [area]
    voi = Dataset()
    voi.WindowCenter = -600
    voi.WindowWidth = 1500
    ds.SoftcopyVOILUTSequence = [voi]
    ds.PresentationLUTShape = "IDENTITY"
    return ds


def write_dataset(path: Path, ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian
                  ) -> Path:
    """Write ``ds`` as a DICOM file with File Meta Information (a made-up object, or a copy
    of a test file given new attributes)."""
    write_instance(path, ds, transfer_syntax=transfer_syntax)
    return path


def rewrite(source: Path, target: Path, transfer_syntax: str | None = None,
            **attributes: object) -> Dataset:
    """Copy a DICOM file with ``attributes`` set (e.g. a key a test file lacks), in its own
    transfer syntax or, for an uncompressed one, in ``transfer_syntax``."""
    from pydicom import dcmread

    ds = dcmread(source)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    if transfer_syntax is not None:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    target.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(target, enforce_file_format=True)
    return ds


def write_media_inputs(folder: Path, *, explicit_only: bool = False) -> dict[str, Path]:
    """A folder of what a disc for a referring physician holds, from pydicom's test files and
    made-up objects: a CT and an MR image, a Comprehensive SR, an RT plan and RT dose
    (implicit VR), an ECG waveform, RGB images in JPEG lossless and JPEG baseline (ISO_IR
    192), a JPEG-LS MR image, a JPEG 2000 (lossy) NM image, an encapsulated PDF and a
    presentation state on the CT image. Returns the files by name.

    Keys pydicom's test files lack and a DICOMDIR record needs (PS3.3 F.5) are filled in as a
    modality would have written them. ``explicit_only``: uncompressed files only, all explicit
    VR little endian (what dcmmkdir's STD-GEN-CD profile takes).
    """
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    def test_file(name: str) -> Path:
        path = get_testdata_file(name, download=False)
        assert path is not None, f"pydicom test file {name} missing"
        return Path(str(path))

    explicit = ExplicitVRLittleEndian if explicit_only else None
    folder.mkdir(parents=True, exist_ok=True)
    files = {"ct": folder / "ct.dcm", "mr": folder / "mr.dcm"}
    shutil.copyfile(test_file("CT_small.dcm"), files["ct"])
    shutil.copyfile(test_file("MR_small.dcm"), files["mr"])
    files["sr"] = folder / "report-sr.dcm"
    rewrite(test_file("test-SR.dcm"), files["sr"], PatientID="SR0001", StudyDate="20010213",
            StudyTime="184700", StudyID="1")
    files["rtplan"] = folder / "rtplan.dcm"
    rewrite(test_file("rtplan.dcm"), files["rtplan"], explicit, InstanceNumber=1)
    files["rtdose"] = folder / "rtdose.dcm"
    rewrite(test_file("rtdose.dcm"), files["rtdose"], explicit, InstanceNumber=1)
    files["ecg"] = folder / "ecg.dcm"
    rewrite(test_file("waveform_ecg.dcm"), files["ecg"], SeriesNumber=1)
    if not explicit_only:
        files["jpeg"] = folder / "rgb-jpeg-lossless.dcm"
        shutil.copyfile(test_file("SC_rgb_jpeg_gdcm.dcm"), files["jpeg"])
        # MR_small again, as JPEG-LS: same patient and study, a series of its own.
        files["jpeg-baseline"] = folder / "rgb-jpeg-baseline.dcm"
        shutil.copyfile(test_file("SC_rgb_jpeg_dcmtk.dcm"), files["jpeg-baseline"])
        files["jpegls"] = folder / "mr-jpeg-ls.dcm"
        rewrite(test_file("MR_small_jpeg_ls_lossless.dcm"), files["jpegls"],
                SOPInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid(),
                SeriesNumber=2)
        files["j2k"] = folder / "nm-j2k.dcm"  # JPEG 2000 (lossy)
        shutil.copyfile(test_file("JPEG2000.dcm"), files["j2k"])
    ct = dcmread(files["ct"], stop_before_pixels=True)
    files["pdf"] = write_dataset(folder / "report.pdf.dcm", encapsulated_pdf(ct))
    files["pr"] = write_dataset(folder / "ct-window-pr.dcm", presentation_state(ct))
    return files
