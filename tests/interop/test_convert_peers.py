"""dcmtool convert against real codecs: DCMTK 3.6.7, GDCM 3.0 and dicom3tools.

* What we encode, DCMTK (dcmdjpeg, dcmdjpls, dcmdrle) and GDCM (gdcmconv --raw) decode to the
  very pixels we started from; lossy output decodes close to them and says it is lossy.
* What DCMTK (dcmcjpeg, dcmcjpls, dcmcrle) and GDCM (gdcmconv --jpeg/--jpegls/--rle/--j2k)
  encode, ``dcmtool convert --ts explicit`` decodes to the same pixels.
* A damaged fragment fails its own file in one line, not the batch.
* dciodvfy finds nothing wrong with what a lossy conversion records.

Programs are called by absolute path; a missing one skips the test (fails it when CI=true).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from support.datasets import SECONDARY_CAPTURE, make_dataset, pydicom_test_file, write_instance
from support.peers import require_program, run_cli, run_dcmtool

DCMDJPEG = "/usr/bin/dcmdjpeg"
DCMDJPLS = "/usr/bin/dcmdjpls"
DCMDRLE = "/usr/bin/dcmdrle"
DCMCJPEG = "/usr/bin/dcmcjpeg"
DCMCJPLS = "/usr/bin/dcmcjpls"
DCMCRLE = "/usr/bin/dcmcrle"
GDCMCONV = "/usr/bin/gdcmconv"
DCIODVFY = "/usr/bin/dciodvfy"

PACKAGES = {DCMDJPEG: "dcmtk", DCMDJPLS: "dcmtk", DCMDRLE: "dcmtk", DCMCJPEG: "dcmtk",
            DCMCJPLS: "dcmtk", DCMCRLE: "dcmtk", GDCMCONV: "libgdcm-tools",
            DCIODVFY: "dicom3tools"}

EXPLICIT = "1.2.840.10008.1.2.1"
UNCOMPRESSED = {"1.2.840.10008.1.2", EXPLICIT, "1.2.840.10008.1.2.2"}
UIDS = {
    "jpeg-baseline": "1.2.840.10008.1.2.4.50",
    "jpeg-extended": "1.2.840.10008.1.2.4.51",
    "jpeg-lossless-p14": "1.2.840.10008.1.2.4.57",
    "jpeg-lossless": "1.2.840.10008.1.2.4.70",
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "jpeg-ls-near": "1.2.840.10008.1.2.4.81",
    "j2k-lossless": "1.2.840.10008.1.2.4.90",
    "j2k-lossy": "1.2.840.10008.1.2.4.91",
    "rle": "1.2.840.10008.1.2.5",
}
MULTIFRAME_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"


def tool(path: str) -> str:
    return require_program(path, PACKAGES[path], path.rsplit("/", 1)[-1])


def run_tool(*argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    if check:
        assert done.returncode == 0, (f"{' '.join(map(str, argv))} exited {done.returncode}:\n"
                                      f"{done.stdout}{done.stderr}")
    return done


def decode_with(decoder: str, source: Path, destination: Path) -> Path:
    """Decompress ``source`` with a third-party program; the result must be uncompressed."""
    argv = [tool(decoder), "--raw"] if decoder == GDCMCONV else [tool(decoder)]
    run_tool(*argv, source, destination)
    assert dcmread(destination, stop_before_pixels=True).file_meta.TransferSyntaxUID \
        in UNCOMPRESSED, f"{decoder} left {destination.name} compressed"
    return destination


def assert_same_pixels(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if not np.array_equal(actual, expected):
        differ = actual.astype(np.int64) != expected.astype(np.int64)
        worst = np.abs(actual.astype(np.int64) - expected.astype(np.int64)).max()
        pytest.fail(f"{what}: {differ.sum()} of {differ.size} samples differ (worst by {worst})")


def errors(actual: np.ndarray, expected: np.ndarray) -> tuple[float, int]:
    """Mean and maximum absolute error."""
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    return float(diff.mean()), int(diff.max())


# ---------------------------------------------------------------------------------------------
# Inputs: realistic synthetic images and pydicom's own test files


def ct_slice(size: int, rng: np.random.Generator, shift: int = 0) -> np.ndarray:
    """A body-shaped CT slice in HU stored as signed 12-bit: air, bone rim, tissue, lung,
    noise, -2048 padding outside the field of view and a metal pixel at +2047."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    centre = size / 2
    body = np.hypot((x - centre - shift) / (0.42 * size), (y - centre) / (0.33 * size))
    image = np.full((size, size), -1000.0)
    image[body < 1.0] = 1200.0
    image[body < 0.93] = 40.0
    image[np.hypot(x - centre * 0.7 - shift, y - centre) < 0.07 * size] = -850.0
    image += rng.normal(0.0, 10.0, image.shape)
    image[np.hypot(x - centre, y - centre) > centre] = -2048.0
    image[int(centre), int(centre) - 2:int(centre) + 2] = 2047.0
    return np.asarray(np.clip(np.rint(image), -2048, 2047), dtype=np.int16)


def gradient(rows: int, columns: int, top: int, rng: np.random.Generator,
             noise: float) -> np.ndarray:
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float64)
    image = (0.7 * x / (columns - 1) + 0.3 * y / (rows - 1)) * top
    image += rng.normal(0.0, noise, image.shape)
    return np.asarray(np.clip(np.rint(image), 0, top), dtype=np.float64)


def synthetic(name: str) -> tuple[Dataset, np.ndarray]:
    """(data set, pixels) of one synthetic input."""
    rng = np.random.default_rng(sum(map(ord, name)))
    if name == "ct-12bit-signed":
        pixels = ct_slice(512, rng)
        ds = make_dataset(rows=512, columns=512, BitsStored=12, HighBit=11,
                          PixelRepresentation=1, RescaleIntercept=0, RescaleSlope=1,
                          ImageType=["ORIGINAL", "PRIMARY", "AXIAL"])
    elif name == "ct-3-frames":
        pixels = np.stack([ct_slice(128, rng, shift=8 * i) for i in range(3)])
        ds = make_dataset(sop_class=MULTIFRAME_GRAYSCALE_WORD_SC, rows=128, columns=128,
                          BitsStored=12, HighBit=11, PixelRepresentation=1, NumberOfFrames=3)
    elif name == "mono-16bit":
        pixels = gradient(256, 256, 65535, rng, 400.0).astype(np.uint16)
        pixels[:, -24:] = 65535  # saturated detector edge
        pixels[:16, :] = 0  # collimated
        ds = make_dataset(rows=256, columns=256, BitsStored=16, HighBit=15, Modality="DX")
    elif name == "mono-12bit":
        pixels = gradient(256, 256, 4095, rng, 6.0).astype(np.uint16)
        ds = make_dataset(rows=256, columns=256, Modality="CR")
    elif name == "mono-8bit":
        pixels = gradient(240, 320, 255, rng, 1.5).astype(np.uint8)
        ds = make_dataset(sop_class=SECONDARY_CAPTURE, rows=240, columns=320, BitsAllocated=8,
                          BitsStored=8, HighBit=7, Modality="OT", ConversionType="WSD")
    elif name == "rgb-8bit":
        red = gradient(240, 320, 255, rng, 1.5)
        green = gradient(240, 320, 255, rng, 1.5)[:, ::-1]
        blue = gradient(240, 320, 255, rng, 1.5)[::-1, :]
        pixels = np.stack([red, green, blue], axis=-1).astype(np.uint8)
        pixels[100:140, 100:140] = (255, 0, 0)  # a saturated primary
        ds = make_dataset(sop_class=SECONDARY_CAPTURE, rows=240, columns=320, SamplesPerPixel=3,
                          PhotometricInterpretation="RGB", PlanarConfiguration=0,
                          BitsAllocated=8, BitsStored=8, HighBit=7, Modality="OT",
                          ConversionType="WSD")
    else:
        raise KeyError(name)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    return ds, pixels


SYNTHETIC = ["ct-12bit-signed", "ct-3-frames", "mono-16bit", "mono-12bit", "mono-8bit",
             "rgb-8bit"]
#: CT_small and MR_small: 16-bit signed; SC_rgb_rle*: RLE sources (8- and 16-bit RGB).
PYDICOM_FILES = ["CT_small.dcm", "MR_small.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_16bit.dcm"]
SOURCES = SYNTHETIC + PYDICOM_FILES


@dataclass(frozen=True)
class Source:
    name: str
    path: Path  # what dcmtool converts (SC_rgb_rle*: RLE compressed)
    plain: Path  # explicit VR little endian, what DCMTK and GDCM compress
    pixels: np.ndarray  # what every lossless decoder must give back
    sop_instance_uid: str


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Source]:
    folder = tmp_path_factory.mktemp("sources")
    made: dict[str, Source] = {}
    for name in SOURCES:
        path = folder / "given" / f"{name.removesuffix('.dcm')}.dcm"
        plain = folder / "plain" / path.name
        plain.parent.mkdir(parents=True, exist_ok=True)
        if name in SYNTHETIC:
            ds, pixels = synthetic(name)
            write_instance(path, ds)
            write_instance(plain, ds)
        else:
            path = pydicom_test_file(name)
            ds = dcmread(path)
            pixels = ds.pixel_array
            if ds.file_meta.TransferSyntaxUID != EXPLICIT:
                ds.decompress(generate_instance_uid=False)
            ds.save_as(plain, enforce_file_format=True)
        assert_same_pixels(dcmread(plain).pixel_array, pixels, f"{name} as written")
        made[name] = Source(name, path, plain, pixels, str(ds.SOPInstanceUID))
    return made


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory, sources: dict[str, Source]
         ) -> Callable[[str, str], Path]:
    """``ours(source, syntax)``: the file ``dcmtool convert --ts syntax`` writes (cached)."""
    folder = tmp_path_factory.mktemp("ours")
    done: dict[tuple[str, str], Path] = {}

    def encode(name: str, syntax: str) -> Path:
        if (name, syntax) not in done:
            out = folder / syntax
            result = run_cli("convert", sources[name].path, "--ts", syntax, "-o", out)
            assert result.exit_code == 0, result.stderr
            written = out / sources[name].path.name
            meta = dcmread(written, stop_before_pixels=True).file_meta
            assert meta.TransferSyntaxUID == UIDS[syntax]
            done[(name, syntax)] = written
        return done[(name, syntax)]

    return encode


# ---------------------------------------------------------------------------------------------
# 1. What we encode, they decode


DCMTK_DECODERS = {"jpeg-lossless": DCMDJPEG, "jpeg-lossless-p14": DCMDJPEG, "jpeg-ls": DCMDJPLS,
                  "rle": DCMDRLE}
GDCM_TARGETS = ["jpeg-lossless", "jpeg-lossless-p14", "jpeg-ls", "rle", "j2k-lossless"]
#: GDCM 3.0.21 swaps the bytes of 16-bit RGB RLE: it gets pydicom's own SC_rgb_rle_16bit.dcm
#: wrong too, where DCMTK and pydicom agree. Not ours to test.
GDCM_WRONG = {("SC_rgb_rle_16bit.dcm", "rle")}


@pytest.mark.parametrize("target", list(DCMTK_DECODERS))
@pytest.mark.parametrize("name", SOURCES)
def test_dcmtk_decodes_our_lossless_output_to_the_original_pixels(
        name: str, target: str, sources: dict[str, Source], ours: Callable[[str, str], Path],
        tmp_path: Path) -> None:
    decoded = decode_with(DCMTK_DECODERS[target], ours(name, target), tmp_path / "dcmtk.dcm")
    assert_same_pixels(dcmread(decoded).pixel_array, sources[name].pixels,
                       f"{name} as {target}, decoded by DCMTK")


@pytest.mark.parametrize("name,target", [(n, t) for n in SOURCES for t in GDCM_TARGETS
                                         if (n, t) not in GDCM_WRONG])
def test_gdcm_decodes_our_lossless_output_to_the_original_pixels(
        name: str, target: str, sources: dict[str, Source], ours: Callable[[str, str], Path],
        tmp_path: Path) -> None:
    decoded = decode_with(GDCMCONV, ours(name, target), tmp_path / "gdcm.dcm")
    assert_same_pixels(dcmread(decoded).pixel_array, sources[name].pixels,
                       f"{name} as {target}, decoded by GDCM")


@dataclass(frozen=True)
class Lossy:
    name: str
    target: str
    decoders: tuple[str, ...]
    method: str
    mean_error: float  # the largest mean absolute error we accept
    max_error: int | None = None  # JPEG-LS near-lossless promises one


LOSSY = [
    Lossy("mono-8bit", "jpeg-baseline", (DCMDJPEG, GDCMCONV), "ISO_10918_1", 2.0),
    Lossy("rgb-8bit", "jpeg-baseline", (DCMDJPEG, GDCMCONV), "ISO_10918_1", 2.0),
    Lossy("mono-12bit", "jpeg-extended", (DCMDJPEG, GDCMCONV), "ISO_10918_1", 4.0),
    Lossy("ct-12bit-signed", "j2k-lossy", (GDCMCONV,), "ISO_15444_1", 8.0),
    Lossy("rgb-8bit", "j2k-lossy", (GDCMCONV,), "ISO_15444_1", 2.0),
    # pydicom's JPEG-LS encoder refuses signed 12-bit pixels within NEAR of the range's ends
    # (the synthetic CT's -2048 padding), so the signed case is CT_small (16-bit).
    Lossy("CT_small.dcm", "jpeg-ls-near", (DCMDJPLS, GDCMCONV), "ISO_14495_1", 2.0, 2),
    Lossy("mono-12bit", "jpeg-ls-near", (DCMDJPLS, GDCMCONV), "ISO_14495_1", 2.0, 2),
    Lossy("rgb-8bit", "jpeg-ls-near", (DCMDJPLS, GDCMCONV), "ISO_14495_1", 2.0, 2),
]


@pytest.mark.parametrize("case,decoder", [
    (case, decoder) for case in LOSSY for decoder in case.decoders],
    ids=lambda v: v.rsplit("/", 1)[-1] if isinstance(v, str) else f"{v.name}-{v.target}")
def test_third_party_decoders_read_our_lossy_output_and_its_lossy_record(
        case: Lossy, decoder: str, sources: dict[str, Source],
        ours: Callable[[str, str], Path], tmp_path: Path) -> None:
    source = sources[case.name]
    encoded = ours(case.name, case.target)
    ds = dcmread(encoded, stop_before_pixels=True)
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == case.method
    assert float(ds.LossyImageCompressionRatio) > 1.0
    assert ds.SOPInstanceUID != source.sop_instance_uid
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SourceImageSequence[-1].ReferencedSOPInstanceUID == source.sop_instance_uid

    decoded = dcmread(decode_with(decoder, encoded, tmp_path / "decoded.dcm"))
    assert decoded.LossyImageCompression == "01"  # decompressing does not undo the loss
    # GDCM 3.0 writes decoded YBR_FULL_422 JPEG as RGB samples under a YBR_FULL label (it does
    # the same with DCMTK's JPEG files): compare samples, as every other decoder gives RGB.
    mean, worst = errors(decoded.pixel_array, source.pixels)
    assert mean <= case.mean_error, f"mean absolute error {mean:.2f} (worst {worst})"
    if case.max_error is not None:
        assert worst <= case.max_error, f"JPEG-LS NEAR={case.max_error} but an error of {worst}"


# ---------------------------------------------------------------------------------------------
# 2. What they encode, we decode


@dataclass(frozen=True)
class Encoder:
    label: str
    argv: tuple[str, ...]
    syntax: str


ENCODERS = [
    Encoder("dcmcjpeg-sv1", (DCMCJPEG, "+e1"), "jpeg-lossless"),
    # Process 14 with DCMTK's default selection value 6, a predictor SV1 never uses.
    Encoder("dcmcjpeg-p14-sv6", (DCMCJPEG, "+el"), "jpeg-lossless-p14"),
    Encoder("dcmcjpeg-p14-sv7", (DCMCJPEG, "+el", "+sv", "7"), "jpeg-lossless-p14"),
    Encoder("dcmcjpls", (DCMCJPLS, "+el"), "jpeg-ls"),
    Encoder("dcmcrle", (DCMCRLE,), "rle"),
    Encoder("gdcmconv-jpeg", (GDCMCONV, "--jpeg"), "jpeg-lossless"),
    Encoder("gdcmconv-jpegls", (GDCMCONV, "--jpegls"), "jpeg-ls"),
    Encoder("gdcmconv-rle", (GDCMCONV, "--rle"), "rle"),
    Encoder("gdcmconv-j2k", (GDCMCONV, "--j2k"), "j2k-lossless"),
]


def decode_with_dcmtool(encoded: Path, out: Path) -> Dataset:
    result = run_cli("convert", encoded, "--ts", "explicit", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("1 converted to explicit, 0 already explicit, 0 failed")
    ds = dcmread(out / encoded.name)
    assert ds.file_meta.TransferSyntaxUID == EXPLICIT
    return ds


@pytest.mark.parametrize("encoder", ENCODERS, ids=lambda e: e.label)
@pytest.mark.parametrize("name", SOURCES)
def test_we_decode_third_party_lossless_files_to_the_original_pixels(
        name: str, encoder: Encoder, sources: dict[str, Source], tmp_path: Path) -> None:
    encoded = tmp_path / "encoded.dcm"
    run_tool(tool(encoder.argv[0]), *encoder.argv[1:], sources[name].plain, encoded)
    meta = dcmread(encoded, stop_before_pixels=True).file_meta
    assert meta.TransferSyntaxUID == UIDS[encoder.syntax], f"{encoder.label} wrote another syntax"
    ds = decode_with_dcmtool(encoded, tmp_path / "out")
    assert_same_pixels(ds.pixel_array, sources[name].pixels,
                       f"{name} encoded by {encoder.label}, decoded by dcmtool")


LOSSY_ENCODERS = [
    # (source, encoder, the program that decodes the same file for comparison)
    ("rgb-8bit", Encoder("dcmcjpeg-baseline", (DCMCJPEG, "+eb"), "jpeg-baseline"), DCMDJPEG),
    ("mono-8bit", Encoder("dcmcjpeg-baseline", (DCMCJPEG, "+eb"), "jpeg-baseline"), DCMDJPEG),
    ("mono-12bit", Encoder("dcmcjpeg-extended", (DCMCJPEG, "+ee"), "jpeg-extended"), DCMDJPEG),
    ("mono-12bit", Encoder("dcmcjpls-near", (DCMCJPLS, "+en", "+md", "2"), "jpeg-ls-near"),
     DCMDJPLS),
    # Not the synthetic 12-bit CT: GDCM codes it at 16-bit precision, so decoded values may
    # overshoot -2048, which GDCM keeps and pydicom wraps around in 12 bits.
    ("CT_small.dcm", Encoder("gdcmconv-j2k-lossy", (GDCMCONV, "--j2k", "--lossy", "-r", "5"),
                             "j2k-lossy"), GDCMCONV),
    ("rgb-8bit", Encoder("gdcmconv-j2k-lossy", (GDCMCONV, "--j2k", "--lossy", "-r", "5"),
                         "j2k-lossy"), GDCMCONV),
]


@pytest.mark.parametrize("name,encoder,reference", LOSSY_ENCODERS,
                         ids=[f"{n}-{e.label}" for n, e, _ in LOSSY_ENCODERS])
def test_we_decode_third_party_lossy_files_as_their_own_decoder_does(
        name: str, encoder: Encoder, reference: str, sources: dict[str, Source],
        tmp_path: Path) -> None:
    encoded = tmp_path / "encoded.dcm"
    run_tool(tool(encoder.argv[0]), *encoder.argv[1:], sources[name].plain, encoded)
    meta = dcmread(encoded, stop_before_pixels=True).file_meta
    assert meta.TransferSyntaxUID == UIDS[encoder.syntax], f"{encoder.label} wrote another syntax"
    theirs = dcmread(decode_with(reference, encoded, tmp_path / "theirs.dcm"))
    ds = decode_with_dcmtool(encoded, tmp_path / "out")
    assert ds.LossyImageCompression == "01"
    if sources[name].pixels.ndim == 3:
        # Colour comes out as RGB, whatever the codestream held (DCMTK: YBR_FULL_422).
        assert ds.PhotometricInterpretation == "RGB"
    # Two JPEG decoders may round the inverse DCT and upsample chroma differently (DCMTK's
    # libjpeg 6b "fancy" upsampling moves edge pixels of saturated colours by up to ~8).
    mean, worst = errors(ds.pixel_array, theirs.pixel_array)
    assert mean <= 0.5 and worst <= 16, (f"dcmtool and {reference} disagree: mean {mean:.2f}, "
                                         f"worst {worst}")
    mean, worst = errors(ds.pixel_array, sources[name].pixels)
    assert mean <= 0.01 * sources[name].pixels.max(), f"mean absolute error {mean:.2f}"


# ---------------------------------------------------------------------------------------------
# 3. A damaged fragment


def damage(encoded: Path, destination: Path, cut: Callable[[bytes], bytes]) -> Path:
    """Copy ``encoded`` with its first frame's codestream passed through ``cut``."""
    ds = dcmread(encoded)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    frames = list(generate_frames(ds.PixelData, number_of_frames=count))
    damaged = cut(frames[0])
    frames[0] = damaged + b"\0" * (len(damaged) % 2)
    ds.PixelData = encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    destination.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(destination, enforce_file_format=True)
    return destination


def headers_only(frame: bytes) -> bytes:
    return frame[:64]


def nine_tenths(frame: bytes) -> bytes:
    return frame[:len(frame) * 9 // 10]


DETECTED = [  # (syntax, damage): damaged fragments that the decoders notice today
    ("jpeg-lossless", headers_only),
    ("j2k-lossless", nine_tenths),
    ("rle", nine_tenths),
]


def failed_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("dcmtool: failed:")]


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("syntax,cut", DETECTED, ids=lambda v: getattr(v, "__name__", v))
def test_a_damaged_fragment_fails_its_file_and_not_the_batch(
        syntax: str, cut: Callable[[bytes], bytes], jobs: int,
        ours: Callable[[str, str], Path], sources: dict[str, Source], tmp_path: Path) -> None:
    good = ours("CT_small.dcm", syntax)
    bad = damage(ours("ct-12bit-signed", syntax), tmp_path / "in" / "damaged.dcm", cut)
    out = tmp_path / "out"
    result = run_cli("convert", good, bad, "--ts", "explicit", "-o", out, "--jobs", jobs)
    assert result.exit_code == 7, result.output
    assert "Traceback" not in result.output
    lines = failed_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"dcmtool: failed: {bad}: cannot decode {syntax} pixel data")
    assert str(good) not in result.stderr
    assert result.stdout.startswith("1 converted to explicit, 0 already explicit, 1 failed")
    assert_same_pixels(dcmread(out / good.name).pixel_array, sources["CT_small.dcm"].pixels,
                       "the undamaged file")
    assert sorted(p.name for p in out.iterdir()) == [good.name]  # no output, no temporary


def test_a_damaged_fragment_alone_exits_1(ours: Callable[[str, str], Path],
                                          tmp_path: Path) -> None:
    bad = damage(ours("ct-12bit-signed", "jpeg-lossless"), tmp_path / "damaged.dcm",
                 headers_only)
    result = run_cli("convert", bad, "--ts", "explicit", "-o", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert [line.split(": cannot decode")[0] for line in failed_lines(result.stderr)] == \
        [f"dcmtool: failed: {bad}"]
    assert not (tmp_path / "out" / bad.name).exists()


# Regression (was a bug in dcmtool/cli/console.py configure_logging, seen through dcmtool
# convert): it set the
# "pydicom" logger to CRITICAL before the convert command first imports pydicom, and
# pydicom.config's import-time debug(False, False) puts it back to WARNING. pydicom's decoder
# then logs every failing plugin with LOGGER.exception, and a real `dcmtool convert` prints
# "dcmtool: error: libjpeg error code ..." plus an indented Traceback before its own line.
# In-process runs (run_cli) do not show it: conftest imported pydicom earlier.
def test_a_damaged_fragment_prints_no_traceback_from_a_real_process(
        ours: Callable[[str, str], Path], tmp_path: Path) -> None:
    good = ours("CT_small.dcm", "jpeg-lossless")
    bad = damage(ours("ct-12bit-signed", "jpeg-lossless"), tmp_path / "damaged.dcm",
                 headers_only)
    done = run_dcmtool("convert", good, bad, "--ts", "explicit", "-o", tmp_path / "out")
    assert done.returncode == 7, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert [line for line in done.stderr.splitlines() if not line.startswith(
        (f"dcmtool: failed: {bad}: cannot decode", "dcmtool: error: 1 of 2 files failed"))] \
        == [], done.stderr


# A 16-bit RLE frame whose segment decodes to more bytes than the image holds makes
# pylibjpeg-rle's Rust decoder panic; pyo3's PanicException derives from BaseException. It
# must cost that file only. (Rust's runtime prints its own "panicked at" line on stderr before
# Python sees the exception; that line is not ours to suppress, a Python traceback would be.)
def test_a_panicking_rle_decoder_fails_its_file_and_not_the_batch(
        ours: Callable[[str, str], Path], sources: dict[str, Source], tmp_path: Path) -> None:
    good = ours("CT_small.dcm", "rle")

    def overrun(frame: bytes) -> bytes:
        # Keep the RLE header; fill segment 1 (the high bytes) with 128-byte replicate runs.
        first, second = (int.from_bytes(frame[i:i + 4], "little") for i in (4, 8))
        return frame[:first] + b"\x81" * (second - first) + frame[second:]

    bad = damage(ours("ct-12bit-signed", "rle"), tmp_path / "in" / "damaged.dcm", overrun)
    out = tmp_path / "out"
    done = run_dcmtool("convert", bad, good, "--ts", "explicit", "-o", out,
                       env={"RUST_BACKTRACE": "0"})
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 7, done.stderr
    assert [line.split(": ")[:3] for line in failed_lines(done.stderr)] == \
        [["dcmtool", "failed", str(bad)]], done.stderr
    assert_same_pixels(dcmread(out / good.name).pixel_array, sources["CT_small.dcm"].pixels,
                       "the undamaged file")


# Regression (was a bug in dcmtool/transcode.py, _decompress): pydicom tries every installed
# decoder in turn and
# pylibjpeg's libjpeg returns whatever it decoded of a truncated JPEG or JPEG-LS codestream
# without an error (for JPEG-LS after pyjpegls/CharLS did report "Invalid JPEG-LS stream").
# dcmtool convert then writes the damaged image as if it were the original, exit 0, where
# DCMTK and GDCM both refuse the file. Expected: "dcmtool: failed: FILE: cannot decode ...".
@pytest.mark.parametrize("name,syntax,decoder", [
    ("CT_small.dcm", "jpeg-lossless", DCMDJPEG),
    ("MR_small.dcm", "jpeg-ls", DCMDJPLS),  # small: gdcmconv takes 5 s to refuse CT_small
    ("mono-8bit", "jpeg-baseline", DCMDJPEG),
])
def test_a_truncated_codestream_that_dcmtk_and_gdcm_refuse_is_not_converted(
        name: str, syntax: str, decoder: str, ours: Callable[[str, str], Path],
        tmp_path: Path) -> None:
    bad = damage(ours(name, syntax), tmp_path / "damaged.dcm", nine_tenths)
    for argv in ([tool(decoder)], [tool(GDCMCONV), "--raw"]):
        refused = run_tool(*argv, bad, tmp_path / "theirs.dcm", check=False)
        assert refused.returncode != 0, f"{argv[0]} accepted the truncated file"
    result = run_cli("convert", bad, "--ts", "explicit", "-o", tmp_path / "out")
    assert not (tmp_path / "out" / bad.name).exists(), \
        "dcmtool wrote an image from a truncated codestream"
    assert result.exit_code == 1, result.output
    assert [line.split(": ")[:3] for line in failed_lines(result.stderr)] == \
        [["dcmtool", "failed", str(bad)]], result.stderr


# ---------------------------------------------------------------------------------------------
# 4. dciodvfy on lossy output

#: Words in dciodvfy's messages about what a lossy conversion changes.
CONCERNS = re.compile(r"Pixel|Lossy|Transfer|Derivation|Source Image|Image Type|Photometric|"
                      r"Planar|Bits|SOP Instance", re.IGNORECASE)


@pytest.mark.parametrize("name,target,iod", [
    ("CT_small.dcm", "j2k-lossy", "CTImage"),
    ("CT_small.dcm", "jpeg-ls-near", "CTImage"),
    ("rgb-8bit", "jpeg-baseline", "SCImage"),
    ("rgb-8bit", "j2k-lossy", "SCImage"),
])
def test_dciodvfy_finds_no_error_in_what_lossy_output_records(
        name: str, target: str, iod: str, ours: Callable[[str, str], Path]) -> None:
    checked = run_tool(tool(DCIODVFY), ours(name, target), check=False)
    report = checked.stdout + checked.stderr
    assert report.splitlines()[0] == iod, report  # it did recognise and check the IOD
    concerns = [line for line in report.splitlines()
                if line.startswith("Error") and CONCERNS.search(line)]
    assert concerns == [], "\n".join(concerns)
