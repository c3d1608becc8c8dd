"""dcmtool get's presentation contexts fit what the peer holds (issue #17 item 4).

A peer accepts one transfer syntax per presentation context and sends each file in a context
of the file's syntax, or converts it, or fails it when it cannot convert. With --exact-classes
(and for classes named with --store-classes) each compressed syntax gets a context of its own:
the transfer syntaxes the peer says it holds (Available Transfer Syntax UID at IMAGE level,
which dcmtool serve returns), else every lossless and lossy family (Orthanc 1.10 returns no
syntax). Either way a study held in JPEG 2000, JPEG-LS and RLE arrives as it is stored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from support.archive import ServedArchive
from support.datasets import write_instance
from support.peers import OrthancServer, run_cli

#: The compressed syntaxes of the study: JPEG 2000 lossless, JPEG-LS lossless, RLE lossless.
SYNTAXES = {"j2k-lossless": "1.2.840.10008.1.2.4.90", "jpeg-ls": "1.2.840.10008.1.2.4.80",
            "rle": "1.2.840.10008.1.2.5"}


@dataclass(frozen=True)
class Held:
    uid: str  # the study
    files: list[Path]  # two per syntax

    def stored(self) -> dict[str, tuple[str, bytes]]:
        """SOP Instance UID -> (transfer syntax, encapsulated pixel data) as held."""
        return {str(ds.SOPInstanceUID): (str(ds.file_meta.TransferSyntaxUID), ds.PixelData)
                for ds in map(dcmread, self.files)}


@pytest.fixture
def compressed_study(tmp_path: Path) -> Held:
    """One CT study of six 64x64 images: two in each syntax of ``SYNTAXES``."""
    study, series = generate_uid(), generate_uid()
    files = []
    for index, name in enumerate(sorted(SYNTAXES)):
        plain = tmp_path / "plain" / name
        for number in (2 * index + 1, 2 * index + 2):
            write_instance(plain / f"{number}.dcm", rows=64, columns=64,
                           StudyInstanceUID=study, SeriesInstanceUID=series,
                           InstanceNumber=number)
        result = run_cli("convert", plain, "--ts", name, "-o", tmp_path / "held" / name, "-q")
        assert result.exit_code == 0, result.stderr
        files += sorted((tmp_path / "held" / name).glob("*.dcm"))
    held = Held(study, files)
    assert {syntax for syntax, _ in held.stored().values()} == set(SYNTAXES.values())
    return held


def arrived(out: Path) -> dict[str, tuple[str, bytes]]:
    return {str(ds.SOPInstanceUID): (str(ds.file_meta.TransferSyntaxUID), ds.PixelData)
            for ds in map(dcmread, sorted(out.rglob("*.dcm")))}


def test_serve_says_which_syntax_it_holds_each_instance_in(
        serve_archive: Callable[..., ServedArchive], compressed_study: Held) -> None:
    served = serve_archive()
    assert run_cli("store", served.address, *compressed_study.files).exit_code == 0
    result = run_cli("find", served.address, "-L", "IMAGE", "--csv", "--no-defaults", "-k",
                     f"StudyInstanceUID={compressed_study.uid}", "-k", "SOPInstanceUID",
                     "-k", "AvailableTransferSyntaxUID")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    held = {uid: syntax for uid, (syntax, _) in compressed_study.stored().items()}
    assert {r["SOPInstanceUID"]: r["AvailableTransferSyntaxUID"] for r in rows} == held


def test_get_exact_classes_from_serve_receives_each_file_as_it_is_held(
        serve_archive: Callable[..., ServedArchive], compressed_study: Held,
        tmp_path: Path) -> None:
    """Before, the one compressed context was accepted in one syntax and serve converted the
    rest (to explicit VR little endian): the files arrived, decompressed."""
    served = serve_archive()
    assert run_cli("store", served.address, *compressed_study.files).exit_code == 0
    out = tmp_path / "out"
    result = run_cli("get", served.address, "--study", compressed_study.uid, "-o", out,
                     "--exact-classes", "-v")
    assert result.exit_code == 0, result.stderr
    assert arrived(out) == compressed_study.stored()
    assert "C-GET: 5 presentation contexts for 1 storage classes" in result.stderr


@pytest.mark.peer("orthanc")
@pytest.mark.parametrize("choice", [(), ("--exact-classes",),
                                    ("--store-classes", "CTImageStorage")])
def test_get_from_orthanc_receives_what_it_cannot_convert(
        orthanc: Callable[..., OrthancServer], compressed_study: Held, tmp_path: Path,
        choice: tuple[str, ...]) -> None:
    """Orthanc 1.10 returns no Available Transfer Syntax UID and converts a file only when no
    accepted context has its syntax; it cannot decode JPEG 2000. Before, it converted the
    JPEG-LS and RLE files and failed the JPEG 2000 ones (0xC000, exit 7)."""
    server = orthanc()
    for path in compressed_study.files:
        server.rest.upload(path)
    out = tmp_path / "out"
    result = run_cli("get", server.address, "--study", compressed_study.uid, "-o", out,
                     *choice)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert arrived(out) == compressed_study.stored()


def test_classes_beyond_one_association_keep_their_syntaxes_grouped(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    """Twelve named classes with a context per syntax would need 145 contexts: the first ten
    get theirs, the last two one context for every compressed syntax, and -v says which."""
    served = serve_archive()
    study = generate_uid()
    write_instance(tmp_path / "in" / "ct.dcm", StudyInstanceUID=study)
    assert run_cli("store", served.address, tmp_path / "in").exit_code == 0
    classes = ["CTImageStorage", "MRImageStorage", "EnhancedCTImageStorage",
               "EnhancedMRImageStorage", "ComputedRadiographyImageStorage",
               "DigitalXRayImageStorageForPresentation", "UltrasoundImageStorage",
               "SecondaryCaptureImageStorage", "XRayAngiographicImageStorage",
               "NuclearMedicineImageStorage", "PositronEmissionTomographyImageStorage",
               "RTImageStorage"]
    out = tmp_path / "out"
    result = run_cli("get", served.address, "--study", study, "-o", out, "-v",
                     *(arg for name in classes for arg in ("--store-classes", name)))
    assert result.exit_code == 0, result.stderr
    assert len(list(out.rglob("*.dcm"))) == 1
    assert "offering 2 class(es) with their compressed syntaxes in one context: " \
           "Positron Emission Tomography Image Storage, RT Image Storage" in result.stderr
