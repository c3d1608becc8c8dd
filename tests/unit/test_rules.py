"""The rules written once: the DIMSE status table and its exit-code policy, the context
planner, the conversion target, the element encoder and the Part 10 header."""

from __future__ import annotations

import io
import struct

import pytest

from dcmtool.dicom import status
from dcmtool.dicom.elements import encode_element, padded
from dcmtool.dicom.part10 import FileMeta, data_set_bounds, offset_in
from dcmtool.dicom.syntaxes import conversion_target
from dcmtool.errors import AssociationAborted, DimseFailure, ExitCode, PartialFailure
from dcmtool.net.contexts import MAX_CONTEXTS, plan_storage

EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
JPEG_LS, JPEG_BASELINE, J2K = "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.50", \
    "1.2.840.10008.1.2.4.91"


@pytest.mark.parametrize(("code", "category"), [
    (0x0000, status.Category.SUCCESS),
    (0xFF00, status.Category.PENDING), (0xFF01, status.Category.PENDING),
    (0xFE00, status.Category.CANCEL),
    # PS3.7 C.4 warnings and every 0xBxxx (PS3.4 B.2.3): the instance was stored.
    (0x0001, status.Category.WARNING), (0x0107, status.Category.WARNING),
    (0x0116, status.Category.WARNING), (0xB000, status.Category.WARNING),
    (0xB006, status.Category.WARNING), (0xB007, status.Category.WARNING),
    (0x0111, status.Category.FAILURE), (0x0122, status.Category.FAILURE),
    (0xA700, status.Category.FAILURE), (0xA702, status.Category.FAILURE),
    (0xA900, status.Category.FAILURE), (0xC000, status.Category.FAILURE),
    (0xC123, status.Category.FAILURE),
])
def test_one_category_per_status(code: int, category: status.Category) -> None:
    assert status.category(code) is category
    assert status.completed(code) is (category in (status.Category.SUCCESS,
                                                   status.Category.WARNING))


def test_statuses_are_described_in_words() -> None:
    assert status.describe(0xA700) == "0xA700 (out of resources)"
    assert status.describe(0xC0FF) == "0xC0FF (unable to process)"
    assert status.describe(0xA7FF) == "0xA7FF (out of resources)"


def test_a_batch_gives_the_exit_code_of_how_it_went() -> None:
    status.raise_for_batch(3, 0, completed=3, first_status=None, first_message="")
    with pytest.raises(PartialFailure) as partial:
        status.raise_for_batch(3, 1, completed=2, first_status=0xA700, first_message="full")
    assert partial.value.exit_code == ExitCode.PARTIAL
    with pytest.raises(DimseFailure) as refused:
        status.raise_for_batch(2, 2, completed=0, first_status=0xA900, first_message="bad")
    assert refused.value.status == 0xA900
    with pytest.raises(AssociationAborted):
        status.raise_for_batch(2, 2, completed=0, first_status=None, first_message="gone")


def test_a_final_status_passes_unless_it_is_a_failure() -> None:
    for code in (0x0000, 0xB000, None):
        status.raise_for_final(code, "C-FIND")
    status.raise_for_final(0xFE00, "C-FIND", cancelled_by_us=True)
    with pytest.raises(DimseFailure, match=r"0xFE00 \(cancelled by the peer\)"):
        status.raise_for_final(0xFE00, "C-FIND")
    with pytest.raises(DimseFailure, match=r"C-MOVE with 0xA801 \(move destination unknown\)"):
        status.raise_for_final(0xA801, "C-MOVE")


def _files(classes: int, syntaxes: tuple[str, ...] = (EXPLICIT,)) -> list[tuple[str, str]]:
    return [(f"1.2.3.{c}", ts) for c in range(classes) for ts in syntaxes]


def test_the_planner_splits_at_128_contexts_without_splitting_a_class() -> None:
    files = _files(100, (EXPLICIT, JPEG_LS))  # 3 contexts per class: 300 in all
    batches = plan_storage(files, lambda f: f[0], lambda f: f[1])
    assert len(batches) == 3
    for contexts, batch in batches:
        assert len(contexts) <= MAX_CONTEXTS
        classes = {c.abstract_syntax for c in contexts}
        assert {f[0] for f in batch} == classes  # a class's files go where its contexts are
    sent = [f for _, batch in batches for f in batch]
    assert sorted(sent) == sorted(files)


def test_the_planner_proposes_each_stored_syntax_alone_plus_a_fallback() -> None:
    ((contexts, _),) = plan_storage(_files(1, (JPEG_LS, EXPLICIT)), lambda f: f[0],
                                    lambda f: f[1])
    assert [c.transfer_syntaxes for c in contexts] == [(JPEG_LS,), (EXPLICIT,),
                                                       (EXPLICIT, IMPLICIT)]
    ((targeted, _),) = plan_storage(_files(1), lambda f: f[0], lambda f: f[1], target=J2K)
    assert [c.transfer_syntaxes for c in targeted] == [(J2K,)]


def test_a_refused_file_is_converted_only_to_a_lossless_syntax() -> None:
    assert conversion_target([JPEG_LS, IMPLICIT, EXPLICIT]) == EXPLICIT
    assert conversion_target([IMPLICIT]) == IMPLICIT
    assert conversion_target([JPEG_BASELINE, JPEG_LS]) == JPEG_LS
    assert conversion_target([JPEG_BASELINE, J2K]) is None  # never lossy on our initiative


def test_one_element_encoder_for_every_vr() -> None:
    assert encode_element(0x00100010, "PN", padded("PN", b"DOE"), implicit=False) == \
        b"\x10\x00\x10\x00PN\x04\x00DOE "
    assert encode_element(0x00080018, "UI", padded("UI", b"1.2.3"), implicit=False) == \
        b"\x08\x00\x18\x00UI\x06\x001.2.3\x00"
    assert encode_element(0x7FE00010, "OB", b"\x01\x02", implicit=False) == \
        b"\xe0\x7f\x10\x00OB\x00\x00" + struct.pack("<I", 2) + b"\x01\x02"
    assert encode_element(0x00100010, "PN", b"AB", implicit=True) == \
        b"\x10\x00\x10\x00" + struct.pack("<I", 2) + b"AB"


def test_the_part10_writer_and_reader_agree() -> None:
    meta = FileMeta("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", EXPLICIT, "1.2.3", "DCMTOOL_X",
                    "SENDER", "RECEIVER")
    header = meta.file_header()
    data_set = b"\x08\x00\x18\x00UI\x08\x001.2.3.4\x00"
    assert offset_in(header + data_set) == len(header)
    start, end = data_set_bounds(io.BytesIO(header + data_set))
    assert (start, end) == (len(header), len(header) + len(data_set))
    assert offset_in(b"\x00" * 200) is None
