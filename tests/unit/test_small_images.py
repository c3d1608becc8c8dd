"""Images of a few pixels through JPEG-LS and JPEG 2000 (issue #14, item 6).

Neither standard has a minimum size: JPEG-LS codes a 1x1 image, and JPEG 2000 gives a small
image fewer resolution levels (ISO 15444-1 only needs 2**(levels - 1) <= rows, columns). The
encoders pydicom uses did refuse them: pyjpegls sized its output at twice the raw frame, too
little for a frame of a few pixels, and pylibjpeg-openjpeg always asks for six resolution
levels, so nothing under 32x32. Every image here must come back pixel-identical.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames
from support.datasets import pydicom_test_file, write_instance
from support.images import KINDS, SIZES, noise_image
from support.peers import run_cli

from dcmtool.dicom.transcode import (
    J2K,
    J2K_LOSSLESS,
    JPEG_LS,
    JPEG_LS_NEAR,
    EncodeOptions,
    TranscodeError,
    transcode,
)

TARGETS = {"jpeg-ls": JPEG_LS, "j2k-lossless": J2K_LOSSLESS}

def small_image(kind: str, rows: int, columns: int, frames: int = 1
                ) -> tuple[pydicom.Dataset, np.ndarray]:
    return noise_image(kind, rows, columns, frames=frames)


def round_trip(ds: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("rows,columns", SIZES, ids=lambda n: str(n))
@pytest.mark.parametrize("kind", list(KINDS))
def test_small_synthetic_images_round_trip(kind: str, rows: int, columns: int,
                                           target: str) -> None:
    ds, pixels = small_image(kind, rows, columns)
    original_uid = ds.SOPInstanceUID
    transcode(ds, TARGETS[target])
    back = round_trip(ds)
    assert back.file_meta.TransferSyntaxUID == TARGETS[target]
    assert back.SOPInstanceUID == original_uid  # lossless keeps the instance
    assert np.array_equal(back.pixel_array, pixels)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("kind", ["mono-12bit-signed", "rgb-8bit"])
def test_small_multiframe_images_get_one_fragment_per_frame(kind: str, target: str) -> None:
    ds, pixels = small_image(kind, 5, 7, frames=3)
    transcode(ds, TARGETS[target])
    back = round_trip(ds)
    assert len(list(generate_frames(back.PixelData, number_of_frames=3))) == 3
    assert np.array_equal(back.pixel_array, pixels)


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("name", ["SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm",
                                  "JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm"])
def test_pydicom_small_test_files_round_trip(name: str, target: str) -> None:
    """3x3 RGB (as DCMTK's dcmcjpls encodes it), and 45x10 / 50x10 greyscale."""
    expected = dcmread(pydicom_test_file(name)).pixel_array
    ds = dcmread(pydicom_test_file(name))
    transcode(ds, TARGETS[target])
    back = round_trip(ds)
    assert back.file_meta.TransferSyntaxUID == TARGETS[target]
    assert np.array_equal(back.pixel_array, expected)


def _marker_segment(codestream: bytes, marker: bytes) -> bytes:
    """The payload of the first ``marker`` segment (after its length field)."""
    at = codestream.find(marker)
    assert at >= 0, f"no {marker.hex()} marker"
    length = struct.unpack(">H", codestream[at + 2:at + 4])[0]
    return codestream[at + 4:at + 2 + length]


@pytest.mark.parametrize("kind", ["mono-8bit", "mono-12bit-signed", "rgb-8bit"])
def test_small_jpeg_ls_codestream_agrees_with_the_data_set(kind: str) -> None:
    """PS3.5 8.2.3: what the stream says matches the Image Pixel module; no SPIFF header."""
    ds, _ = small_image(kind, 3, 3)
    transcode(ds, JPEG_LS)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert frame.startswith(b"\xff\xd8\xff\xf7")  # SOI, then SOF55 (no APP8 SPIFF)
    sof = _marker_segment(frame, b"\xff\xf7")
    precision, height, width, components = struct.unpack(">BHHB", sof[:6])
    assert (precision, height, width, components) == (ds.BitsStored, 3, 3, ds.SamplesPerPixel)


@pytest.mark.parametrize("kind", ["mono-8bit", "mono-12bit-signed", "rgb-16bit"])
def test_small_j2k_codestream_agrees_with_the_data_set(kind: str) -> None:
    """PS3.5 A.4.4: a bare codestream (no JP2 header) whose SIZ matches the data set."""
    ds, _ = small_image(kind, 5, 7)
    transcode(ds, J2K_LOSSLESS)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    assert frame.startswith(b"\xff\x4f\xff\x51")  # SOC, SIZ
    siz = _marker_segment(frame, b"\xff\x51")
    width, height = struct.unpack(">II", siz[2:10])
    components = struct.unpack(">H", siz[34:36])[0]
    ssiz = siz[36]
    assert (height, width, components) == (5, 7, ds.SamplesPerPixel)
    assert (ssiz & 0x7F) + 1 == ds.BitsStored and bool(ssiz & 0x80) == bool(
        ds.PixelRepresentation)
    cod = _marker_segment(frame, b"\xff\x52")
    assert cod[5] <= 2  # decomposition levels: 2**levels <= 5
    assert cod[9] == 1  # the reversible 5-3 wavelet
    expected = "YBR_RCT" if ds.SamplesPerPixel == 3 else "MONOCHROME2"
    assert ds.PhotometricInterpretation == expected


def test_small_jpeg_ls_near_lossless_stays_within_its_error() -> None:
    ds, pixels = small_image("mono-8bit", 3, 3)
    transcode(ds, JPEG_LS_NEAR, EncodeOptions(near=2))
    back = round_trip(ds)
    assert back.LossyImageCompression == "01"
    assert np.abs(back.pixel_array.astype(int) - pixels.astype(int)).max() <= 2


def test_small_lossy_j2k_is_refused_in_one_line_with_a_way_out() -> None:
    """The lossy ratio comes from pylibjpeg-openjpeg, which still needs 32x32 pixels."""
    ds, _ = small_image("mono-8bit", 5, 7)
    with pytest.raises(TranscodeError) as refused:
        transcode(ds, J2K)
    assert "\n" not in str(refused.value)
    assert "5x7" in str(refused.value) and "32x32" in str(refused.value)
    assert "j2k-lossless" in (refused.value.hint or "")


@pytest.mark.parametrize("target", list(TARGETS))
def test_convert_command_writes_small_images(tmp_path: Path, target: str) -> None:
    folder = tmp_path / "in"
    (folder / "odd.dcm").parent.mkdir(parents=True)
    (folder / "odd.dcm").write_bytes(pydicom_test_file("SC_rgb_small_odd.dcm").read_bytes())
    expected = {"odd.dcm": dcmread(folder / "odd.dcm").pixel_array}
    for kind in ("mono-12bit-signed", "rgb-8bit"):
        ds, pixels = small_image(kind, 1, 1)
        write_instance(folder / f"{kind}.dcm", ds)
        expected[f"{kind}.dcm"] = pixels
    out = tmp_path / "out"
    result = run_cli("convert", folder, "--ts", target, "-o", out, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"3 converted to {target}, 0 already {target}, 0 failed")
    for name, pixels in expected.items():
        converted = dcmread(out / name)
        assert converted.file_meta.TransferSyntaxUID == TARGETS[target]
        assert np.array_equal(converted.pixel_array, pixels), name
