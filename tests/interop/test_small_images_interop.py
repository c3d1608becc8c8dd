"""Images of a few pixels that ``dcmtool convert`` writes as JPEG-LS and JPEG 2000, decoded by
DCMTK (dcmdjpls) and GDCM (gdcmconv --raw) to the very pixels we started from (issue #14,
item 6). DCMTK has no free JPEG 2000 codec, so JPEG 2000 goes to GDCM alone.

The other direction too: the 3x3 RGB image DCMTK's dcmcjpls encodes, dcmtool decodes.

Programs are called by absolute path; a missing one skips the test (fails it when CI=true).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from support.datasets import SECONDARY_CAPTURE, pydicom_test_file, write_instance
from support.images import KINDS, SIZES, noise_image
from support.peers import require_program, run_cli

DCMDJPLS = "/usr/bin/dcmdjpls"
DCMCJPLS = "/usr/bin/dcmcjpls"
GDCMCONV = "/usr/bin/gdcmconv"
PACKAGES = {DCMDJPLS: "dcmtk", DCMCJPLS: "dcmtk", GDCMCONV: "libgdcm-tools"}

UIDS = {"jpeg-ls": "1.2.840.10008.1.2.4.80", "j2k-lossless": "1.2.840.10008.1.2.4.90"}
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}
DECODERS = {"jpeg-ls": (DCMDJPLS, GDCMCONV), "j2k-lossless": (GDCMCONV,)}

SYNTHETIC = [f"{kind}-{rows}x{columns}" for kind in KINDS for rows, columns in SIZES]
#: 3x3 RGB; 45x10 and 50x10 greyscale (JPEG-LS near-lossless sources, decoded first).
PYDICOM_FILES = ["SC_rgb_small_odd.dcm", "JPEGLSNearLossless_08.dcm",
                 "JPEGLSNearLossless_16.dcm"]


def tool(path: str) -> str:
    return require_program(path, PACKAGES[path], path.rsplit("/", 1)[-1])


def run_tool(*argv: str | Path) -> None:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, (f"{' '.join(map(str, argv))} exited {done.returncode}:\n"
                                  f"{done.stdout}{done.stderr}")


def synthetic(name: str) -> tuple[Dataset, np.ndarray]:
    """``mono-8bit-3x3`` and so on, as Secondary Capture."""
    kind, size = name.rsplit("-", 1)
    rows, columns = (int(n) for n in size.split("x"))
    return noise_image(kind, rows, columns, seed=sum(map(ord, name)),
                       sop_class=SECONDARY_CAPTURE, Modality="OT", ConversionType="WSD")


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray]]:
    """name -> (the file dcmtool converts, the pixels every decoder must give back)."""
    folder = tmp_path_factory.mktemp("small")
    made: dict[str, tuple[Path, np.ndarray]] = {}
    for name in SYNTHETIC:
        ds, pixels = synthetic(name)
        path = folder / f"{name}.dcm"
        write_instance(path, ds)
        made[name] = (path, pixels)
    for name in PYDICOM_FILES:
        path = pydicom_test_file(name)
        made[name] = (path, dcmread(path).pixel_array)
    return made


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory,
         sources: dict[str, tuple[Path, np.ndarray]]) -> Callable[[str, str], Path]:
    """``ours(source, syntax)``: the file ``dcmtool convert --ts syntax`` writes (cached)."""
    folder = tmp_path_factory.mktemp("ours")
    done: dict[tuple[str, str], Path] = {}

    def encode(name: str, syntax: str) -> Path:
        if (name, syntax) not in done:
            source = sources[name][0]
            out = folder / syntax / name.removesuffix(".dcm")
            result = run_cli("convert", source, "--ts", syntax, "-o", out)
            assert result.exit_code == 0, result.stderr
            written = out / source.name
            assert dcmread(written, stop_before_pixels=True).file_meta.TransferSyntaxUID \
                == UIDS[syntax]
            done[(name, syntax)] = written
        return done[(name, syntax)]

    return encode


@pytest.mark.parametrize("name,target,decoder", [
    (name, target, decoder) for name in SYNTHETIC + PYDICOM_FILES
    for target, decoders in DECODERS.items() for decoder in decoders])
def test_dcmtk_and_gdcm_decode_our_small_images_to_the_original_pixels(
        name: str, target: str, decoder: str, sources: dict[str, tuple[Path, np.ndarray]],
        ours: Callable[[str, str], Path], tmp_path: Path) -> None:
    decoded = tmp_path / "decoded.dcm"
    argv = [tool(decoder), "--raw"] if decoder == GDCMCONV else [tool(decoder)]
    run_tool(*argv, ours(name, target), decoded)
    ds = dcmread(decoded)
    assert ds.file_meta.TransferSyntaxUID in UNCOMPRESSED, f"{decoder} left it compressed"
    pixels = sources[name][1]
    assert ds.pixel_array.shape == pixels.shape
    assert np.array_equal(ds.pixel_array, pixels), \
        f"{name} as {target}, decoded by {decoder.rsplit('/', 1)[-1]}"


def test_we_decode_what_dcmcjpls_makes_of_the_3x3_rgb_image(tmp_path: Path) -> None:
    source = pydicom_test_file("SC_rgb_small_odd.dcm")
    encoded = tmp_path / "dcmtk.dcm"
    run_tool(tool(DCMCJPLS), "+el", source, encoded)  # +el: lossless
    assert dcmread(encoded, stop_before_pixels=True).file_meta.TransferSyntaxUID \
        == UIDS["jpeg-ls"]
    out = tmp_path / "out"
    result = run_cli("convert", encoded, "--ts", "explicit", "-o", out, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert np.array_equal(dcmread(out / encoded.name).pixel_array,
                          dcmread(source).pixel_array)
