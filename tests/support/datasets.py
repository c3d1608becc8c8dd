"""Small synthetic DICOM files, and pydicom's own test files (never downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def make_dataset(
    *,
    sop_class: str = CT_IMAGE_STORAGE,
    rows: int = 8,
    columns: int = 8,
    **attributes: Any,
) -> Dataset:
    """A small valid image with fresh UIDs; keyword arguments set or override attributes."""
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "PAT001"
    ds.PatientName = "Test^Patient"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "ACC001"
    ds.StudyID = "1"
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(256)) * (rows * columns * 2 // 256) + bytes(
        (rows * columns * 2) % 256)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def write_instance(path: Path, ds: Dataset | None = None, *,
                   transfer_syntax: str = ExplicitVRLittleEndian, **attributes: Any) -> Dataset:
    """Write ``ds`` (or a fresh one) as a DICOM file with File Meta Information."""
    ds = ds if ds is not None else make_dataset(**attributes)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True,
               implicit_vr=transfer_syntax == "1.2.840.10008.1.2",
               little_endian=transfer_syntax != "1.2.840.10008.1.2.2")
    return ds


def dataset_bytes(path: Path) -> bytes:
    """A file's bytes after its File Meta Information: what travels in a C-STORE."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM", f"{path} has no DICOM preamble"
    # (0002,0000) UL group length: tag(4) VR(2) len(2) value(4) right after "DICM"
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length:]


def pydicom_test_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} missing"
    return Path(str(path))
