#!/usr/bin/env python3
"""Test data for bench/run's serve cases: deterministic DICOM files made with pydicom.

bench/run itself uses only the standard library; it runs this script with the Python that
dcmtool runs on (which has pydicom), once per bench run, into a temporary folder it deletes.

    make_data.py OUT ct [--count 500] [--series 5] [--studies 1] [--seed 1]
        CT-like images: 512x512, 16 bit (12 stored), explicit VR little endian, ~513 KB each,
        COUNT instances spread over SERIES series, spread over STUDIES studies (one patient
        each; default one).
    make_data.py OUT small [--count 2000] [--series 20] [--studies 4] [--seed 1]
        Small images: 64x64, 16 bit, explicit VR little endian, ~9 KB each, COUNT instances
        spread over SERIES series, spread over STUDIES studies (one patient each; default
        4, or SERIES if fewer).
    make_data.py OUT ct-body [--count 200] [--seed 1]
        CT slices of a synthetic chest for the codec cases: 512x512, 16 bit signed (16
        stored, values in HU, -2000 outside the reconstruction circle), explicit VR little
        endian, ~525 KB each, one series: smooth anatomy (body, fat, lungs with texture, heart,
        aorta, spine, ribs, table) changing from slice to slice, plus correlated noise of
        ~13 HU, so that lossless codecs compress it about as much as real CT (needs numpy).
    make_data.py OUT index [--studies 5000] [--per-study 20] [--series-per-study 2] [--seed 1]
        A query/retrieve index: STUDIES studies of PER-STUDY tiny instances (16x16 pixels,
        ~1.5 KB each), two studies per patient, with spread-out values to match on: 100
        surnames (``SURNAMES``), study dates over ten years from 2016, five modalities.
        Written byte by byte (no pydicom per file: 100,000 files take seconds, not minutes).
        Files are named index-SSSSS-III.dcm, so the first N x PER-STUDY in name order are
        the first N studies. The JSON summary adds the matching values of the bench's queries
        (``index_queries``) and how many studies each matches, in all and in the first 500.
    make_data.py OUT big [--size 1GiB] [--seed 1]
        One multi-frame image (Multi-frame Grayscale Word Secondary Capture, 512x512 frames
        of 16 bit) whose pixel data is SIZE bytes; streamed to disk, so it never needs SIZE
        bytes of memory.

The files go flat into OUT (created if needed). Same arguments, same bytes: UIDs are derived
from the seed (``2.25.<digest>``), pixel data from a seeded generator (for ct-body, numpy's
PCG64: the same bytes for the same numpy version). The last line on stdout is a JSON
summary: {"files": N, "bytes": TOTAL, "dir": OUT, "sop_class": UID, ...}, with the Study
Instance UIDs for ct and small ("study_uids") and the queries for index.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import struct
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pydicom is imported where files are written: the index rules below
    # (index_patient, index_name, index_date, uid) serve the bench's standard-library side too.
    from pydicom.dataset import Dataset

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
MF_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
#: Pixel data element header (7FE0,0010) OW in explicit VR little endian, before the length.
PIXEL_DATA_HEADER = b"\xe0\x7f\x10\x00OW\x00\x00"


def uid(seed: int, *parts: object) -> str:
    """A deterministic UID under 2.25 (a UUID-derived root, PS3.5 B.2) from the seed and parts."""
    digest = hashlib.sha256("/".join(map(str, (seed, *parts))).encode()).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def pixel_bytes(rng: random.Random, size: int) -> bytes:
    """``size`` bytes of 16-bit little-endian noise within 12 bits (BitsStored 12)."""
    data = bytearray(rng.randbytes(size))
    data[1::2] = bytes(data[1::2]).translate(bytes(b & 0x0F for b in range(256)))
    return bytes(data)


def base_dataset(seed: int, sop_class: str, sop_instance: str, patient: int, study_uid: str,
                 series_uid: str, series_number: int, instance_number: int, modality: str,
                 rows: int, columns: int) -> Dataset:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance
    ds.StudyDate = "20260101"
    ds.SeriesDate = "20260101"
    ds.ContentDate = "20260101"
    ds.StudyTime = "120000"
    ds.SeriesTime = f"12{series_number:02d}00"
    ds.ContentTime = f"12{series_number:02d}{instance_number % 60:02d}"
    ds.AccessionNumber = f"BENCH{seed}{patient:03d}"
    ds.Modality = modality
    ds.Manufacturer = "dcmtool bench"
    ds.InstitutionName = "Benchmark Hospital"
    ds.ReferringPhysicianName = "Referring^Doctor"
    ds.StudyDescription = "Benchmark study"
    ds.SeriesDescription = f"Benchmark series {series_number}"
    ds.PatientName = f"Bench^Patient{patient:03d}"
    ds.PatientID = f"BENCH-{seed}-{patient:03d}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    return ds


def ct_attributes(ds: Dataset, instance_number: int, frame_of_reference: str) -> None:
    """The usual CT image plane and pixel value attributes, so headers are a realistic size."""
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.ImagePositionPatient = ["-250.0", "-250.0", f"{-instance_number * 1.0:.1f}"]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = frame_of_reference
    ds.SliceLocation = f"{-instance_number * 1.0:.1f}"
    ds.PixelSpacing = ["0.976562", "0.976562"]
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"


def save(ds: Dataset, path: Path) -> int:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.save_as(path, enforce_file_format=True)
    return path.stat().st_size


def make_series_set(out: Path, kind: str, count: int, series: int, studies: int,
                    seed: int) -> dict[str, object]:
    """COUNT instances in contiguous series, the series in contiguous studies; each study is
    its own patient's (patient N has study N), so UIDs stay those of earlier versions."""
    rows = columns = 512 if kind == "ct" else 64
    rng = random.Random(f"{seed}/{kind}")
    frame = rows * columns * 2
    # A few distinct pixel blocks, reused: generating 250 MB of noise would dominate the setup.
    blocks = [pixel_bytes(rng, frame) for _ in range(8)]
    total = 0
    for i in range(count):
        series_index = i * series // count  # contiguous series, sizes differ by at most one
        patient = series_index * studies // series  # = the study's index
        study_uid = uid(seed, kind, "study", patient)
        series_uid = uid(seed, kind, "series", series_index)
        number = i + 1
        ds = base_dataset(seed, CT_IMAGE_STORAGE, uid(seed, kind, "instance", i), patient,
                          study_uid, series_uid, series_index + 1, number, "CT", rows, columns)
        ct_attributes(ds, number, uid(seed, kind, "frame-of-reference", patient))
        ds.PixelData = blocks[i % len(blocks)]
        total += save(ds, out / f"{kind}-{i:05d}.dcm")
    return {"files": count, "bytes": total, "dir": str(out), "sop_class": CT_IMAGE_STORAGE,
            "study_uids": [uid(seed, kind, "study", p) for p in range(studies)]}


def make_ct_body(out: Path, count: int, seed: int) -> dict[str, object]:
    """COUNT axial slices 1.25 mm apart through a synthetic chest, stored in HU (signed)."""
    import numpy as np  # only this kind needs it (dcmtool's environment has it)

    rows = columns = 512
    spacing = 0.78125  # mm: a 400 mm field of view
    rng = np.random.Generator(np.random.PCG64(seed))
    centre = (np.arange(columns, dtype=np.float32) - (columns - 1) / 2) * spacing
    x = centre[np.newaxis, :]  # mm, left to right
    y = centre[:, np.newaxis]  # mm, anterior (top) to posterior
    radius = np.hypot(x, y)

    def ellipse(cx: float, cy: float, a: float, b: float, edge: float = 1.5) -> np.ndarray:
        """1 inside, 0 outside, with a soft rim about ``edge`` mm wide (CT is band-limited)."""
        r = np.sqrt(((x - cx) / a) ** 2 + ((y - cy) / b) ** 2)
        return np.clip((1.0 - r) * (min(a, b) / edge) + 0.5, 0.0, 1.0)

    def blend(image: np.ndarray, mask: np.ndarray, value: np.ndarray | float) -> np.ndarray:
        return image + mask * (value - image)

    # Fixed textures, reused with a shift per slice: lung parenchyma and soft-tissue mottling.
    texture = np.zeros((rows, columns), dtype=np.float32)
    for k in range(1, 7):
        fx, fy, phase = rng.uniform(0.02, 0.12), rng.uniform(0.02, 0.12), rng.uniform(0, 6.3)
        texture += np.sin(x * fx + y * fy + phase).astype(np.float32) / k
    study_uid = uid(seed, "ct-body", "study", 0)
    series_uid = uid(seed, "ct-body", "series", 0)
    frame_of_reference = uid(seed, "ct-body", "frame-of-reference", 0)
    total = 0
    for i in range(count):
        z = i * 1.25  # mm from the top of the range (apex to upper abdomen)
        t = z / max(1.0, (count - 1) * 1.25)  # 0..1 through the range
        image = np.full((rows, columns), -1000.0, dtype=np.float32)  # air
        body_a, body_b = 165 + 10 * np.sin(3 * t), 115 + 8 * np.sin(2 * t + 1)
        image = blend(image, ellipse(0, 5, body_a, body_b, 2.0), -95.0)  # subcutaneous fat
        image = blend(image, ellipse(0, 5, body_a - 14, body_b - 12), 40.0 + 8 * texture)
        lung = 0.9 * np.sin(np.pi * min(1.0, 0.15 + 1.1 * t)) + 0.1  # grows, then shrinks
        for side in (-1, 1):
            mask = ellipse(side * 75, 0, 52 * lung + 8, 80 * lung + 10, 2.5)
            image = blend(image, mask, -850.0 + 25 * np.roll(texture, 7 * i + 40 * side, 1))
        if 0.3 < t < 0.8:  # heart, between the lungs
            size = np.sin(np.pi * (t - 0.3) / 0.5)
            image = blend(image, ellipse(-15, -15, 55 * size + 5, 45 * size + 5, 2.0), 45.0)
        image = blend(image, ellipse(15, 45, 13, 13), 180.0)  # aorta, with contrast
        image = blend(image, ellipse(0, 85, 20, 17), 700.0)  # vertebral body: cortex...
        image = blend(image, ellipse(0, 85, 16, 13), 250.0 + 30 * texture)  # ...and marrow
        image = blend(image, ellipse(0, 112, 7, 12), 650.0)  # spinous process
        shift = 0.15 * np.sin(6 * np.pi * t)  # ribs come and go through the slices
        for angle in np.linspace(-2.6, 2.6, 12) + shift:  # ribs along the chest wall
            rib_x = (body_a - 22) * np.sin(angle)
            rib_y = 5 - (body_b - 17) * np.cos(angle)
            image = blend(image, ellipse(rib_x, rib_y, 6, 4, 1.0), 600.0)
        image = blend(image, ellipse(0, 150, 190, 6, 1.0), 120.0)  # the table
        # Noise: white, then a 3x3 box filter (reconstruction kernels correlate it).
        noise = rng.standard_normal((rows + 2, columns + 2), dtype=np.float32) * 40.0
        noise = noise[:-2] + noise[1:-1] + noise[2:]
        noise = (noise[:, :-2] + noise[:, 1:-1] + noise[:, 2:]) / 9.0
        image += noise
        image[radius > 200.0] = -2000.0  # outside the reconstruction circle: padding
        pixels = np.rint(image).astype("<i2")
        number = i + 1
        ds = base_dataset(seed, CT_IMAGE_STORAGE, uid(seed, "ct-body", "instance", i), 0,
                          study_uid, series_uid, 1, number, "CT", rows, columns)
        ct_attributes(ds, number, frame_of_reference)
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.SliceThickness = "1.25"
        ds.ImagePositionPatient = ["-199.609375", "-199.609375", f"{-z:.2f}"]
        ds.SliceLocation = f"{-z:.2f}"
        ds.PixelSpacing = [str(spacing), str(spacing)]
        ds.RescaleIntercept = "0"
        ds.PixelData = pixels.tobytes()
        total += save(ds, out / f"ct-body-{i:05d}.dcm")
    return {"files": count, "bytes": total, "dir": str(out), "sop_class": CT_IMAGE_STORAGE}


def make_big(out: Path, size: int, seed: int) -> dict[str, object]:
    """One multi-frame image, its pixel data appended by hand in 8 MiB chunks."""
    rows = columns = 512
    frame = rows * columns * 2
    frames = max(1, size // frame)
    length = frames * frame
    if length >= 2**32 - 1:
        raise SystemExit("make_data.py: pixel data must stay below 4 GiB")
    ds = base_dataset(seed, MF_GRAYSCALE_WORD_SC, uid(seed, "big", "instance"), 0,
                      uid(seed, "big", "study"), uid(seed, "big", "series"), 1, 1, "OT",
                      rows, columns)
    ds.ConversionType = "WSD"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = "33.3"
    path = out / "big-00000.dcm"
    save(ds, path)  # everything but the pixel data, which must be the last element
    rng = random.Random(f"{seed}/big")
    chunk = pixel_bytes(rng, 8 * 2**20)
    with open(path, "ab") as fh:
        fh.write(PIXEL_DATA_HEADER + struct.pack("<I", length))
        left = length
        while left:
            piece = chunk[: min(left, len(chunk))]
            fh.write(piece)
            left -= len(piece)
    return {"files": 1, "bytes": path.stat().st_size, "dir": str(out),
            "sop_class": MF_GRAYSCALE_WORD_SC, "frames": frames}


# --- index: many small studies for query/retrieve, encoded by hand ---------------------------

#: 100 surnames, none a prefix of another (each part's first letter is unique among its part),
#: so that "SURNAME*" matches exactly the patients with that surname.
SURNAMES = [first + second
            for first in ("AB", "BER", "COL", "DAV", "EV", "FAR", "GOR", "HAL", "KIN", "LOM")
            for second in ("ANDER", "BURY", "CROFT", "DALE", "FIELD", "GATE", "HOLM", "LING",
                           "MORE", "TON")]
GIVEN_NAMES = ["ANNA", "BORIS", "CLARA", "DAVID", "EMMA", "FELIX", "GRETA", "HUGO", "IRIS",
               "JONAS", "KARIN", "LEON", "MARIA", "NOAH", "OLGA", "PAUL", "RITA", "SVEN",
               "TINA", "VICTOR"]
MODALITIES = ["CT", "MR", "CR", "US", "DX"]
DESCRIPTIONS = ["CHEST", "ABDOMEN", "HEAD", "KNEE LEFT", "SPINE LUMBAR", "PELVIS", "HAND RIGHT"]
INDEX_DAYS = 3653  # study dates spread over 2016-01-01 .. 2025-12-31
INDEX_QUERY_PATIENT = 123  # in the first 500 studies: every subset answers every query
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.9.7433.1.1"  # an example root, bench only


def index_patient(study: int) -> int:
    return study // 2


def index_date(study: int) -> str:
    """Study dates as a permutation over the days (7919 is prime to INDEX_DAYS)."""
    import datetime
    day = datetime.date(2016, 1, 1) + datetime.timedelta(days=(study * 7919) % INDEX_DAYS)
    return day.strftime("%Y%m%d")


def index_name(patient: int) -> str:
    return f"{SURNAMES[(patient * 37) % 100]}^{GIVEN_NAMES[patient % len(GIVEN_NAMES)]}"


def index_queries(seed: int = 1, studies: int = 5000) -> dict[str, str]:
    """The matching values of the bench's queries, all hitting a patient of the first 500
    studies: an exact Patient ID, a surname wildcard (1% of the patients) and a 30-day date
    range around one of that patient's studies (~0.8% of the studies)."""
    import datetime
    patient = min(INDEX_QUERY_PATIENT, index_patient(studies - 1))
    first = datetime.datetime.strptime(index_date(2 * patient), "%Y%m%d").date()
    start, end = first - datetime.timedelta(days=10), first + datetime.timedelta(days=19)
    return {
        "PatientID": f"IDX-{seed}-{patient:06d}",
        "PatientName": index_name(patient).split("^")[0] + "*",
        "StudyDate": f"{start:%Y%m%d}-{end:%Y%m%d}",
    }


def _element(group: int, element: int, vr: str, value: bytes | str) -> bytes:
    """One explicit VR little endian element, its value padded to an even length."""
    data = value.encode("ascii") if isinstance(value, str) else value
    if len(data) % 2:
        data += b"\0" if vr in ("UI", "OB") else b" "
    if vr in ("OB", "OW", "SQ", "UN", "UT"):
        return struct.pack("<HH2s2xI", group, element, vr.encode(), len(data)) + data
    return struct.pack("<HH2sH", group, element, vr.encode(), len(data)) + data


def _us(value: int) -> bytes:
    return struct.pack("<H", value)


def make_index(out: Path, studies: int, per_study: int, series_per_study: int,
               seed: int, subset: int = 500) -> dict[str, object]:
    """STUDIES x PER-STUDY tiny CT instances, the elements written in tag order by hand."""
    size = 16
    pixels = bytes(size * size * 2)
    total = 0
    for s in range(studies):
        patient = index_patient(s)
        study_uid = uid(seed, "index", "study", s)
        date = index_date(s)
        modality = MODALITIES[s % len(MODALITIES)]
        study_part = [
            _element(0x0008, 0x0005, "CS", "ISO_IR 100"),
            _element(0x0008, 0x0008, "CS", "ORIGINAL\\PRIMARY\\AXIAL"),
            _element(0x0008, 0x0016, "UI", CT_IMAGE_STORAGE),
        ]
        for k in range(per_study):
            series = k * series_per_study // per_study
            series_uid = uid(seed, "index", "series", s, series)
            sop_uid = uid(seed, "index", "instance", s, k)
            body = b"".join([
                *study_part,
                _element(0x0008, 0x0018, "UI", sop_uid),
                _element(0x0008, 0x0020, "DA", date),
                _element(0x0008, 0x0021, "DA", date),
                _element(0x0008, 0x0023, "DA", date),
                _element(0x0008, 0x0030, "TM", f"{8 + s % 10:02d}{s % 60:02d}00"),
                _element(0x0008, 0x0031, "TM", f"{8 + s % 10:02d}{s % 60:02d}{series:02d}"),
                _element(0x0008, 0x0033, "TM", f"{8 + s % 10:02d}{s % 60:02d}{k % 60:02d}"),
                _element(0x0008, 0x0050, "SH", f"A{seed}{s:07d}"),
                _element(0x0008, 0x0060, "CS", modality),
                _element(0x0008, 0x0070, "LO", "dcmtool bench"),
                _element(0x0008, 0x0080, "LO", "Benchmark Hospital"),
                _element(0x0008, 0x0090, "PN", "REFERRING^DOCTOR"),
                _element(0x0008, 0x1030, "LO", DESCRIPTIONS[s % len(DESCRIPTIONS)]),
                _element(0x0008, 0x103E, "LO", f"SERIES {series + 1}"),
                _element(0x0010, 0x0010, "PN", index_name(patient)),
                _element(0x0010, 0x0020, "LO", f"IDX-{seed}-{patient:06d}"),
                _element(0x0010, 0x0030, "DA", f"{1930 + patient % 80}0101"),
                _element(0x0010, 0x0040, "CS", "FM"[patient % 2]),
                _element(0x0020, 0x000D, "UI", study_uid),
                _element(0x0020, 0x000E, "UI", series_uid),
                _element(0x0020, 0x0010, "SH", str(s % 100000)),
                _element(0x0020, 0x0011, "IS", str(series + 1)),
                _element(0x0020, 0x0013, "IS", str(k + 1)),
                _element(0x0028, 0x0002, "US", _us(1)),
                _element(0x0028, 0x0004, "CS", "MONOCHROME2"),
                _element(0x0028, 0x0010, "US", _us(size)),
                _element(0x0028, 0x0011, "US", _us(size)),
                _element(0x0028, 0x0100, "US", _us(16)),
                _element(0x0028, 0x0101, "US", _us(12)),
                _element(0x0028, 0x0102, "US", _us(11)),
                _element(0x0028, 0x0103, "US", _us(0)),
                _element(0x7FE0, 0x0010, "OW", pixels),
            ])
            meta = b"".join([
                _element(0x0002, 0x0001, "OB", b"\x00\x01"),
                _element(0x0002, 0x0002, "UI", CT_IMAGE_STORAGE),
                _element(0x0002, 0x0003, "UI", sop_uid),
                _element(0x0002, 0x0010, "UI", EXPLICIT_VR_LITTLE_ENDIAN),
                _element(0x0002, 0x0012, "UI", IMPLEMENTATION_CLASS_UID),
                _element(0x0002, 0x0013, "SH", "DCMTOOL_BENCH"),
            ])
            data = (bytes(128) + b"DICM" + _element(0x0002, 0x0000, "UL",
                                                    struct.pack("<I", len(meta)))
                    + meta + body)
            (out / f"index-{s:05d}-{k:03d}.dcm").write_bytes(data)
            total += len(data)
    queries = index_queries(seed, studies)
    return {"files": studies * per_study, "bytes": total, "dir": str(out),
            "sop_class": CT_IMAGE_STORAGE, "studies": studies, "queries": queries,
            "matches": {"all": index_matches(queries, studies, seed),
                        f"first {subset}": index_matches(queries, min(subset, studies), seed)}}


def index_matches(queries: dict[str, str], studies: int, seed: int) -> dict[str, int]:
    """How many of the first STUDIES studies each query of ``index_queries`` matches."""
    low, high = queries["StudyDate"].split("-")
    surname = queries["PatientName"].rstrip("*")
    counts = {"PatientID": 0, "PatientName": 0, "StudyDate": 0, "all": studies}
    for s in range(studies):
        patient = index_patient(s)
        counts["PatientID"] += f"IDX-{seed}-{patient:06d}" == queries["PatientID"]
        counts["PatientName"] += index_name(patient).startswith(surname)
        counts["StudyDate"] += low <= index_date(s) <= high
    return counts


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]i?B?)?\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1GiB, 512MiB)")
    unit = (match.group(2) or "").upper().rstrip("B")
    factor = {"": 1, "K": 1000, "M": 1000**2, "G": 1000**3,
              "KI": 2**10, "MI": 2**20, "GI": 2**30}[unit]
    return int(match.group(1)) * factor


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="make_data.py", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder for the files (created if needed)")
    parser.add_argument("kind", choices=("ct", "small", "ct-body", "index", "big"))
    parser.add_argument("--count", type=int,
                        help="instances (ct: 500, small: 2000, ct-body: 200)")
    parser.add_argument("--series", type=int, help="series (ct: 5, small: 20)")
    parser.add_argument("--studies", type=int,
                        help="studies, one patient each (ct: 1, small: 4 or SERIES if fewer)")
    parser.add_argument("--per-study", type=int, default=20,
                        help="index: instances per study (default 20)")
    parser.add_argument("--series-per-study", type=int, default=2,
                        help="index: series per study (default 2)")
    parser.add_argument("--size", type=parse_size, default=2**30,
                        help="big: pixel data size (default 1GiB)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.kind == "big":
        summary = make_big(args.out, args.size, args.seed)
    elif args.kind == "index":
        studies = args.studies or 5000
        if studies < 1 or not 1 <= args.series_per_study <= args.per_study:
            parser.error("index: --studies >= 1 and 1 <= --series-per-study <= --per-study")
        summary = make_index(args.out, studies, args.per_study, args.series_per_study,
                             args.seed)
    elif args.kind == "ct-body":
        summary = make_ct_body(args.out, args.count or 200, args.seed)
    else:
        count = args.count or (500 if args.kind == "ct" else 2000)
        series = args.series or (5 if args.kind == "ct" else 20)
        studies = args.studies or (1 if args.kind == "ct" else min(4, series))
        if not 1 <= series <= count:
            parser.error("--series must be between 1 and --count")
        if not 1 <= studies <= series:
            parser.error("--studies must be between 1 and --series")
        summary = make_series_set(args.out, args.kind, count, series, studies, args.seed)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
