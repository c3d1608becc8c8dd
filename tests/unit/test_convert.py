"""dcmtool convert and the transcoding core: every pydicom test file through every syntax."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom import dcmread
from pydicom.pixels.processing import convert_color_space
from support.datasets import make_dataset, pydicom_test_file, write_instance
from support.peers import run_cli

from dcmtool.dicom.convert import write_dataset
from dcmtool.dicom.syntaxes import lookup
from dcmtool.dicom.transcode import EncodeOptions, TranscodeError, transcode

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

LOSSLESS_TARGETS = ["implicit", "explicit", "big-endian", "deflate", "rle", "jpeg-lossless",
                    "jpeg-lossless-p14", "jpeg-ls", "j2k-lossless"]
LOSSY_TARGETS = ["jpeg-baseline", "jpeg-extended", "jpeg-ls-near", "j2k-lossy"]

#: Images whose pixels PS3.5 or the codecs cannot put in a syntax: they must fail cleanly.
#: (file stem, target) -> why. Everything else must round-trip pixel-identical.
CANNOT = {
    **{(stem, t): "32-bit pixels: RLE in pydicom, JPEG, JPEG-LS and openjpeg stop at 16/24"
       for stem in ("rtdose", "rtdose_1frame", "rtdose_expb", "rtdose_expb_1frame",
                    "rtdose_rle", "rtdose_rle_1frame", "SC_rgb_rle_32bit",
                    "SC_rgb_rle_32bit_2frame")
       for t in ("rle", "jpeg-lossless", "jpeg-lossless-p14", "jpeg-ls", "j2k-lossless")},
    **{(stem, t): "1-bit pixels (bits allocated 1) exist only uncompressed"
       for stem in ("liver_1frame", "liver_expb_1frame")
       for t in ("rle", "jpeg-lossless", "jpeg-lossless-p14", "jpeg-ls", "j2k-lossless")},
}
# rtdose_rle* already are RLE: converting them to rle changes nothing.
for _stem in ("rtdose_rle", "rtdose_rle_1frame", "SC_rgb_rle_32bit", "SC_rgb_rle_32bit_2frame"):
    CANNOT.pop((_stem, "rle"), None)


def _image_files() -> list[Path]:
    """pydicom's local test files that hold a decodable image with File Meta."""
    found = []
    for path in sorted(TEST_FILES.glob("*.dcm")):
        try:
            ds = dcmread(path)
            if "PixelData" not in ds or "TransferSyntaxUID" not in ds.file_meta:
                continue
            ds.pixel_array  # noqa: B018 - files pydicom itself cannot decode are not ours to test
        except Exception:
            continue
        found.append(path)
    return found


IMAGE_FILES = _image_files()


def _reference(path: Path, target: str) -> np.ndarray:
    """The pixels a lossless conversion must give back, in the colour space it writes."""
    ds = dcmread(path)
    arr = ds.pixel_array
    compressed_target = target not in ("implicit", "explicit", "big-endian", "deflate")
    uncompressed_ybr = (not ds.file_meta.TransferSyntaxUID.is_compressed
                        and ds.PhotometricInterpretation in ("YBR_FULL", "YBR_FULL_422"))
    if compressed_target and uncompressed_ybr:
        arr = convert_color_space(arr, "YBR_FULL", "RGB")  # colour is encoded from RGB
    return arr


def _round_trip(ds: pydicom.Dataset) -> pydicom.Dataset:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    buffer.seek(0)
    return dcmread(buffer)


def test_the_matrix_covers_many_files() -> None:
    assert len(IMAGE_FILES) >= 40  # pydicom ships ~50 decodable images; a broken glob finds 0


@pytest.mark.parametrize("target", LOSSLESS_TARGETS)
@pytest.mark.parametrize("path", IMAGE_FILES, ids=lambda p: p.stem)
def test_every_test_file_converts_losslessly(path: Path, target: str) -> None:
    uid = lookup(target).uid  # type: ignore[union-attr]
    ds = dcmread(path)
    original_uid = ds.SOPInstanceUID
    if (path.stem, target) in CANNOT:
        with pytest.raises(TranscodeError) as refused:
            transcode(ds, uid)
        message = str(refused.value)
        assert "\n" not in message and "cannot encode" in message
        return
    transcode(ds, uid)
    back = _round_trip(ds)
    assert back.file_meta.TransferSyntaxUID == uid
    assert back.SOPInstanceUID == original_uid  # lossless keeps the instance
    assert np.array_equal(back.pixel_array, _reference(path, target))


@pytest.mark.parametrize("target", LOSSY_TARGETS)
@pytest.mark.parametrize("name", ["CT_small.dcm", "ExplVR_BigEnd.dcm", "JPEG2000.dcm",
                                  "SC_rgb_rle_2frame.dcm", "JPGExtended.dcm",
                                  "JPEGLSNearLossless_08.dcm", "SC_rgb_jpeg_dcmtk.dcm"])
def test_lossy_output_is_recorded_and_gets_a_new_instance(name: str, target: str) -> None:
    path = TEST_FILES / name
    if not path.exists():
        pytest.skip(f"{name} is not among pydicom's local test files")
    uid = lookup(target).uid  # type: ignore[union-attr]
    ds = dcmread(path)
    if ds.file_meta.TransferSyntaxUID == uid:
        return  # already there: nothing happens, nothing to record
    original = ds.SOPInstanceUID
    reference = ds.pixel_array.astype(np.float64)
    bits = ds.BitsStored
    try:
        transcode(ds, uid)
    except TranscodeError as exc:
        # JPEG baseline holds 8-bit, extended 8/12-bit unsigned greyscale (PS3.5 8.2.1);
        # openjpeg needs 32x32 pixels. Nothing else may refuse.
        if target == "j2k-lossy":
            assert min(ds.Rows, ds.Columns) < 32 and "32x32" in str(exc)
            return
        assert target in ("jpeg-baseline", "jpeg-extended"), exc
        assert bits > 8 or ds.PixelRepresentation == 1 or (
            target == "jpeg-extended" and ds.SamplesPerPixel == 3)
        return
    back = _round_trip(ds)
    assert back.LossyImageCompression == "01"
    methods = back.LossyImageCompressionMethod
    methods = list(methods) if back["LossyImageCompressionMethod"].VM > 1 else [methods]
    assert methods[-1] in ("ISO_10918_1", "ISO_14495_1", "ISO_15444_1")
    assert float(list(np.atleast_1d(back.LossyImageCompressionRatio))[-1]) > 0.5
    assert back.SOPInstanceUID != original
    assert back.SourceImageSequence[-1].ReferencedSOPInstanceUID == original
    assert back.DerivationCodeSequence[-1].CodeValue == "113040"
    decoded = back.pixel_array.astype(np.float64)
    assert decoded.shape == reference.shape
    scale = float(2 ** bits - 1)
    assert np.abs(decoded - reference).mean() / scale < 0.02  # close, not identical


def test_keep_uid_keeps_the_instance_on_lossy_output() -> None:
    ds = dcmread(pydicom_test_file("CT_small.dcm"))
    original = ds.SOPInstanceUID
    transcode(ds, lookup("j2k-lossy").uid, EncodeOptions(keep_uid=True))  # type: ignore[union-attr]
    assert ds.SOPInstanceUID == original
    assert ds.LossyImageCompression == "01"
    assert "SourceImageSequence" not in ds


def test_once_lossy_always_lossy() -> None:
    """Decompressing a JPEG baseline image still says it was lossy (PS3.3 C.7.6.1.1.5)."""
    ds = dcmread(pydicom_test_file("SC_rgb_jpeg_dcmtk.dcm"))
    if "LossyImageCompression" in ds:
        del ds.LossyImageCompression
    transcode(ds, lookup("explicit").uid)  # type: ignore[union-attr]
    assert ds.LossyImageCompression == "01"
    assert ds.PhotometricInterpretation == "RGB"


def _ct(rows: int = 64, columns: int = 64, frames: int = 1, signed: bool = True,
        bits_stored: int = 12) -> pydicom.Dataset:
    rng = np.random.default_rng(7)
    low, high = (-(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1) if signed else \
        (0, 2 ** bits_stored - 1)
    shape = (frames, rows, columns) if frames > 1 else (rows, columns)
    arr = rng.integers(low, high + 1, size=shape, dtype=np.int32)
    arr = arr.astype(np.int16 if signed else np.uint16)
    ds = make_dataset(rows=rows, columns=columns, BitsStored=bits_stored,
                      HighBit=bits_stored - 1, PixelRepresentation=int(signed))
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = arr.tobytes()
    return ds


@pytest.mark.parametrize("target", ["rle", "jpeg-lossless", "jpeg-ls", "j2k-lossless"])
@pytest.mark.parametrize("signed,bits_stored", [(True, 12), (True, 16), (False, 16)])
def test_multiframe_signed_and_full_range_pixels_survive(target: str, signed: bool,
                                                         bits_stored: int) -> None:
    ds = _ct(frames=3, signed=signed, bits_stored=bits_stored)
    expected = ds.pixel_array.copy()
    transcode(ds, lookup(target).uid)  # type: ignore[union-attr]
    back = _round_trip(ds)
    assert back.NumberOfFrames == 3
    assert np.array_equal(back.pixel_array, expected)
    # One fragment per frame behind a basic offset table with one entry per frame.
    from pydicom.encaps import parse_basic_offsets

    offsets = parse_basic_offsets(io.BytesIO(back.PixelData))
    assert len(offsets) == 3 and offsets[0] == 0


def test_big_endian_round_trip_swaps_words(tmp_path: Path) -> None:
    ds = _ct()
    expected = ds.pixel_array.copy()
    transcode(ds, lookup("big-endian").uid)  # type: ignore[union-attr]
    path = tmp_path / "be.dcm"
    write_dataset(ds, path)
    raw = dcmread(path)
    assert raw.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2"
    assert np.array_equal(raw.pixel_array, expected)
    transcode(raw, lookup("explicit").uid)  # type: ignore[union-attr]
    assert np.array_equal(_round_trip(raw).pixel_array, expected)


def test_data_set_without_pixels_converts_between_uncompressed_syntaxes() -> None:
    ds = dcmread(pydicom_test_file("rtplan.dcm"))
    transcode(ds, lookup("deflate").uid)  # type: ignore[union-attr]
    assert _round_trip(ds).BeamSequence[0].BeamName == dcmread(
        pydicom_test_file("rtplan.dcm")).BeamSequence[0].BeamName
    with pytest.raises(TranscodeError, match="no Pixel Data"):
        transcode(ds, lookup("rle").uid)  # type: ignore[union-attr]


# -- the command -----------------------------------------------------------------------------


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    for index in range(3):
        ds = _ct(rows=32, columns=32)
        write_instance(folder / f"s{index % 2}" / f"{index}.dcm", ds)
    (folder / "notes.txt").write_text("not DICOM")
    return folder


def test_convert_mirrors_folders_and_counts_what_it_skipped(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    result = run_cli("convert", folder, "--ts", "jpeg-ls", "-o", out, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("3 converted to jpeg-ls, 0 already jpeg-ls, 0 failed, "
                                    "1 skipped")
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["s0/0.dcm", "s0/2.dcm", "s1/1.dcm"]
    for path in out.rglob("*.dcm"):
        source = folder / path.relative_to(out)
        converted = dcmread(path)
        assert converted.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
        assert np.array_equal(converted.pixel_array, dcmread(source).pixel_array)


def test_in_place_is_atomic_and_keeps_nothing_else(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    before = {p: dcmread(p).pixel_array.copy() for p in folder.rglob("*.dcm")}
    result = run_cli("convert", folder, "--ts", "rle", "--in-place", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    for path, pixels in before.items():
        ds = dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.5"
        assert np.array_equal(ds.pixel_array, pixels)
    leftovers = [p.name for p in folder.rglob(".dcmtool-*")]
    assert leftovers == []
    again = run_cli("convert", folder, "--ts", "rle", "--in-place")
    assert again.exit_code == 0
    assert "0 converted to rle, 3 already rle" in again.stdout


def test_a_failing_file_does_not_stop_the_batch(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    truncated = folder / "broken.dcm"
    data = (folder / "s0" / "0.dcm").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    result = run_cli("convert", folder, "--ts", "jpeg-lossless", "-o", out, "--json")
    assert result.exit_code == 7, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["converted"], summary["failed"], summary["skipped"]) == (3, 1, 1)
    failed = [f for f in summary["files"] if f["status"] == "failed"]
    assert failed[0]["source"].endswith("broken.dcm")
    assert "Traceback" not in result.stderr
    assert f"failed: {truncated}" in result.stderr
    assert not (out / "broken.dcm").exists()


def test_only_failures_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "rtdose.dcm"
    path.write_bytes(pydicom_test_file("rtdose.dcm").read_bytes())
    result = run_cli("convert", path, "--ts", "jpeg-lossless", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "cannot encode 32-bit" in result.stderr


def test_jobs_use_processes_and_give_the_same_result(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for index in range(8):
        write_instance(folder / f"{index}.dcm", _ct(rows=48, columns=48))
    result = run_cli("convert", folder, "--ts", "j2k-lossless", "-o", tmp_path / "out",
                     "--jobs", "2", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("8 converted")
    for index in range(8):
        converted = dcmread(tmp_path / "out" / f"{index}.dcm")
        assert np.array_equal(converted.pixel_array,
                              dcmread(folder / f"{index}.dcm").pixel_array)


def test_list_shows_what_decodes_and_encodes() -> None:
    result = run_cli("convert", "--list", "--json", catch_exceptions=False)
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    for name in ("explicit", "deflate", "rle", "jpeg-lossless", "jpeg-baseline", "jpeg-ls",
                 "j2k-lossless", "j2k-lossy"):
        assert rows[name]["decode"] and rows[name]["encode"], name
    assert rows["htj2k-lossless"]["decode"]
    assert not rows["mpeg4"]["decode"]
    table = run_cli("convert", "--list")
    assert "jpeg-lossless" in table.stdout and "1.2.840.10008.1.2.4.70" in table.stdout


@pytest.mark.parametrize("args,message", [
    (["--ts", "nonsense", "-o", "x"], "unknown transfer syntax 'nonsense'"),
    (["--ts", "htj2k-lossy", "-o", "x"], "cannot encode htj2k-lossy"),
    (["--ts", "rle"], "give either -o OUTDIR or --in-place"),
    (["--ts", "rle", "-o", "x", "--in-place"], "give either -o OUTDIR or --in-place"),
    (["-o", "x"], "choose the target with --ts"),
])
def test_usage_errors_say_what_to_do(tmp_path: Path, args: list[str], message: str) -> None:
    path = tmp_path / "a.dcm"
    write_instance(path)
    result = run_cli("convert", path, *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_output_folder_that_is_the_input_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    result = run_cli("convert", folder, "--ts", "rle", "-o", folder)
    assert result.exit_code == 2
    assert "--in-place" in result.stderr


def test_written_file_names_dcmtool_as_implementation(tmp_path: Path) -> None:
    ds = _ct()
    transcode(ds, lookup("rle").uid)  # type: ignore[union-attr]
    path = tmp_path / "x.dcm"
    size = write_dataset(ds, path)
    assert size == os.path.getsize(path)
    meta = dcmread(path).file_meta
    assert meta.ImplementationVersionName.startswith("DCMTOOL_")
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
