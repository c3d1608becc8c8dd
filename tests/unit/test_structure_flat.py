"""The in-memory walk of a received data set (``structure._walk_flat``) finds what the
element-by-element walk finds, and refuses what it refuses: over pydicom's test files, whole
and cut short at every few bytes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file

from dcmtool.dicom.part10 import data_set_bounds
from dcmtool.dicom.structure import StructureError, check_data_set

FILES = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "MR_small_implicit.dcm",
         "SC_rgb_rle.dcm", "UN_sequence.dcm", "badVR.dcm", "nested_priv_SQ.dcm", "rtdose.dcm",
         "liver_1frame.dcm", "SC_rgb_small_odd.dcm", "waveform_ecg.dcm", "reportsi.dcm"]
WANTED = frozenset({0x00080016, 0x00080018, 0x0020000D, 0x0020000E, 0x00100010, 0x00280010})


class NoBuffer(io.BytesIO):
    """The same bytes without ``getbuffer``: what a file on disk gives the walk."""

    getbuffer = None  # type: ignore[assignment]


def walk(data: bytes, start: int, end: int, syntax: str, *, in_memory: bool) -> object:
    fh = io.BytesIO(data) if in_memory else NoBuffer(data)
    try:
        result = check_data_set(fh, start, end, syntax, WANTED)
    except StructureError as exc:
        return ("refused", str(exc))
    return None if result is None else (result.explicit, result.little, result.elements)


@pytest.mark.parametrize("name", FILES)
def test_the_flat_walk_agrees_with_the_element_walk(name: str) -> None:
    path = Path(str(get_testdata_file(name, download=False)))
    data = path.read_bytes()
    syntax = str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    start, end = data_set_bounds(io.BytesIO(data))
    whole = walk(data, start, end, syntax, in_memory=True)
    assert whole == walk(data, start, end, syntax, in_memory=False)
    step = max(1, (end - start) // 300)
    for cut in range(start + 1, end, step):
        short = data[:cut]
        assert walk(short, start, cut, syntax, in_memory=True) == \
            walk(short, start, cut, syntax, in_memory=False), cut
        # The sender's length says more than arrived: the end is where the bytes stop.
        assert walk(short, start, len(short), syntax, in_memory=True) == \
            walk(short, start, len(short), syntax, in_memory=False), cut


def test_an_ordinary_instance_is_walked_in_one_pass_over_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The flat walk is what runs for a plain instance (else the speed it exists for is
    lost without a failing test): with the element walk switched off, it still checks."""
    from dcmtool.dicom import structure

    path = Path(str(get_testdata_file("CT_small.dcm", download=False)))
    data = path.read_bytes()
    start, end = data_set_bounds(io.BytesIO(data))

    def no_element_walk(*args: object, **kwargs: object) -> None:
        raise AssertionError("walked element by element")

    monkeypatch.setattr(structure._Walker, "data_set", no_element_walk)
    found = check_data_set(io.BytesIO(data), start, end, "1.2.840.10008.1.2.1", WANTED)
    assert found is not None and found.elements[0x00080018].value.rstrip(b"\0") == \
        str(dcmread(path).SOPInstanceUID).encode()
