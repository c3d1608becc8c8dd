"""The media test helpers (tests/support/media.py) against a DICOMDIR made by DCMTK dcmmkdir:
what the validators say about a good file set, and that they catch a bad one. dcmtool's own
file sets are tested with these helpers in test_dicomdir_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
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

pytestmark = [pytest.mark.peer("dcmtk"), pytest.mark.peer("dicom3tools")]


@pytest.fixture(scope="module")
def dcmtk_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A file set by dcmmkdir (STD-GEN-CD) over images, SR, RT, waveform, PDF and a
    presentation state; returns its DICOMDIR and the SOP Instance UID of each kind."""
    base = tmp_path_factory.mktemp("dcmtk-set")
    inputs = write_media_inputs(base / "inputs", explicit_only=True)
    copy_to_iso_tree(inputs.values(), base / "media")
    uids = {kind: str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            for kind, path in inputs.items()}
    return dcmmkdir(base / "media"), uids


def test_a_dcmtk_dicomdir_passes_every_validator(dcmtk_set: tuple[Path, dict[str, str]]
                                                  ) -> None:
    dicomdir, uids = dcmtk_set
    assert dciodvfy_errors(dicomdir) == []
    assert dcmdump_ok(dicomdir)
    dump = dcdirdmp(dicomdir)
    for record in ("IMAGE", "SR DOCUMENT", "RT PLAN", "RT DOSE", "WAVEFORM", "ENCAP DOC",
                   "PRESENTATION"):
        assert f"\t{record}" in dump, record
    file_ids = dcdirdmp_file_ids(dicomdir)
    assert sorted(file_ids) == [f"DICOM\\IMG{n:05d}" for n in range(1, len(uids) + 1)]
    assert all(is_iso_file_id(Path(*file_id.split("\\"))) for file_id in file_ids)
    assert pydicom_fileset_instances(dicomdir) == set(uids.values())


def test_dciodvfy_reports_an_empty_type_1_key(dcmtk_set: tuple[Path, dict[str, str]],
                                              tmp_path: Path) -> None:
    # Blank the first Patient ID (0010,0020) LO in place: offsets stay right, the record not.
    data = bytearray(dcmtk_set[0].read_bytes())
    at = data.find(b"\x10\x00\x20\x00LO")
    length = int.from_bytes(data[at + 6:at + 8], "little")
    data[at + 8:at + 8 + length] = b" " * length
    broken = tmp_path / "DICOMDIR"
    broken.write_bytes(data)
    errors = dciodvfy_errors(broken)
    assert errors and all("PatientID" in line for line in errors), errors
    assert dciodvfy_errors(dcmtk_set[0]) == []  # warnings alone are no errors


def test_dcdirdmp_reports_records_whose_offsets_point_nowhere(
        dcmtk_set: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    # What a writer that forgets to recompute the offsets produces: the first record longer,
    # every offset after it now wrong.
    ds = dcmread(dcmtk_set[0])
    ds.DirectoryRecordSequence[0].PatientName = "Longer^Than^The^Name^Was"
    broken = tmp_path / "DICOMDIR"
    ds.save_as(broken)
    with pytest.raises(AssertionError, match="offset"):
        dcdirdmp(broken)


def test_dcmdump_ok_is_false_for_a_truncated_file(dcmtk_set: tuple[Path, dict[str, str]],
                                                  tmp_path: Path) -> None:
    truncated = tmp_path / "DICOMDIR"
    truncated.write_bytes(dcmtk_set[0].read_bytes()[:700])
    assert not dcmdump_ok(truncated)


def test_the_fileset_helper_fails_on_a_missing_file(dcmtk_set: tuple[Path, dict[str, str]],
                                                    tmp_path: Path) -> None:
    media = tmp_path / "media"
    copy_to_iso_tree([dcmtk_set[0].parent / "DICOM" / "IMG00001"], media)
    (media / "DICOM" / "IMG00002").write_bytes((dcmtk_set[0].parent / "DICOM" /
                                                "IMG00002").read_bytes())
    dicomdir = dcmmkdir(media)
    (media / "DICOM" / "IMG00002").unlink()
    with pytest.raises(AssertionError, match="IMG00002"):
        pydicom_fileset_instances(dicomdir)


def test_dcmmkdir_wants_iso_9660_names(tmp_path: Path) -> None:
    inputs = write_media_inputs(tmp_path / "inputs", explicit_only=True)
    assert not is_iso_file_id("inputs/ct.dcm") and is_iso_file_id("DICOM/IMG00001")
    with pytest.raises(AssertionError, match="dcmmkdir failed"):
        dcmmkdir(inputs["ct"].parent)
