"""Small synthetic images of every pixel layout the codecs care about (tests of small-image
encoding, in-process and through DCMTK/GDCM)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from support.datasets import CT_IMAGE_STORAGE, SECONDARY_CAPTURE, make_dataset

#: name -> (bits allocated, bits stored, pixel representation, samples per pixel)
KINDS = {
    "mono-8bit": (8, 8, 0, 1),
    "mono-16bit": (16, 16, 0, 1),
    "mono-12bit-signed": (16, 12, 1, 1),
    "rgb-8bit": (8, 8, 0, 3),
    "rgb-16bit": (16, 16, 0, 3),
}
#: 31x31 is the largest size openjpeg's default six resolution levels refused.
SIZES = [(1, 1), (3, 3), (5, 7), (31, 31)]


def noise_image(kind: str, rows: int, columns: int, *, frames: int = 1, seed: int = 0,
                **attributes: Any) -> tuple[Dataset, np.ndarray]:
    """A data set of full-range noise (the least compressible input) and its pixels."""
    allocated, stored, signed, samples = KINDS[kind]
    rng = np.random.default_rng(seed or rows * 1000 + columns * 10 + samples)
    low, high = (-(2 ** (stored - 1)), 2 ** (stored - 1)) if signed else (0, 2 ** stored)
    shape: tuple[int, ...] = (rows, columns) if samples == 1 else (rows, columns, 3)
    if frames > 1:
        shape = (frames, *shape)
    pixels = rng.integers(low, high, size=shape, dtype=np.int64).astype(
        f"{'i' if signed else 'u'}{allocated // 8}")
    layout: dict[str, Any] = {"BitsAllocated": allocated, "BitsStored": stored,
                              "HighBit": stored - 1, "PixelRepresentation": signed}
    if samples == 3:
        layout.update(SamplesPerPixel=3, PhotometricInterpretation="RGB",
                      PlanarConfiguration=0)
    sop_class = attributes.pop("sop_class", SECONDARY_CAPTURE if samples == 3
                               else CT_IMAGE_STORAGE)
    ds = make_dataset(sop_class=sop_class, rows=rows, columns=columns,
                      **{**layout, **attributes})
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.tobytes()
    return ds, pixels
