"""The archive's pieces without a network: layout, UID checks, sizes, the index."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest

from dcmtool.archive.index import Index, InstanceRecord
from dcmtool.archive.layout import DEFAULT_PATTERN, Layout, LayoutError, sanitise
from dcmtool.archive.storage import uid_problem
from dcmtool.config import parse_size


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("PAT001", "PAT001"),
        ("../../etc", "etc"),
        ("/etc/passwd", "etc_passwd"),
        ("..", "unknown"),
        ("...", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
        ("a\x00b", "ab"),
        ("Müller^Hans", "M_ller_Hans"),
        (".hidden", "hidden"),
        ("C:\\Windows", "C_Windows"),
    ],
)
def test_sanitise_makes_one_safe_component(value: object, expected: str) -> None:
    assert sanitise(value) == expected


def test_overlong_values_are_cut_but_stay_distinct() -> None:
    a, b = sanitise("x" * 300 + "a"), sanitise("x" * 300 + "b")
    assert len(a) == len(b) == 64
    assert a != b


def test_layout_never_leaves_the_root(tmp_path: Path) -> None:
    layout = Layout.parse(DEFAULT_PATTERN)
    values = {"PatientID": "../../../../tmp", "StudyInstanceUID": "..",
              "SeriesInstanceUID": "/", "SOPInstanceUID": "1.2.3"}
    target = layout.resolve(tmp_path, values)
    assert tmp_path.resolve() in target.parents
    assert target.relative_to(tmp_path.resolve()).parts == ("tmp", "unknown", "unknown",
                                                            "1.2.3.dcm")


def test_layout_refuses_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    (root / "PAT").symlink_to(outside)
    with pytest.raises(LayoutError, match="outside the archive"):
        Layout.parse(DEFAULT_PATTERN).resolve(root, {"PatientID": "PAT",
                                                     "SOPInstanceUID": "1.2"})


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("{PatientID}/{StudyInstanceUID}.dcm", "must contain {SOPInstanceUID}"),
        ("{NotAKeyword}/{SOPInstanceUID}", "is not a DICOM keyword"),
        ("/abs/{SOPInstanceUID}", "relative pattern"),
        ("{PatientID}/../{SOPInstanceUID}", "'..'"),
        ("{PatientID!r}/{SOPInstanceUID}", "is not a DICOM keyword"),
    ],
)
def test_bad_layouts_are_refused(pattern: str, message: str) -> None:
    with pytest.raises(LayoutError, match=message.replace("{", r"\{").replace("}", r"\}")
                       .replace("(", r"\(").replace(".", r"\.")):
        Layout.parse(pattern)


def test_other_layouts() -> None:
    layout = Layout.parse("{Modality}/{StudyDate}/{SOPInstanceUID}")
    assert layout.relative_path({"Modality": "CT", "StudyDate": "20260101",
                                 "SOPInstanceUID": "1.2"}) == Path("CT/20260101/1.2")


@pytest.mark.parametrize(
    ("uid", "problem"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", None),
        ("", "is empty"),
        ("1." + "2" * 63, "is 65 characters long (the limit is 64)"),
        ("1.2.abc", "is not a valid UID"),
        ("1.02.3", "is not a valid UID"),
        ("1..2", "is not a valid UID"),
        ("../1.2", "is not a valid UID"),
    ],
)
def test_uid_problems(uid: str, problem: str | None) -> None:
    assert uid_problem(uid) == problem


@pytest.mark.parametrize(("text", "size"), [("0", 0), ("100M", 100 * 2**20), ("2G", 2 * 2**30),
                                            ("1.5GB", int(1.5 * 2**30)), ("512k", 512 * 1024)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_parse_size_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")


def record(sop: str, series: str, study: str, patient: str, path: str) -> InstanceRecord:
    return InstanceRecord(
        {"SOPInstanceUID": sop, "SeriesInstanceUID": series, "StudyInstanceUID": study,
         "PatientID": patient, "PatientName": "Doe^J", "Modality": "CT"},
        path, 10, "1.2.840.10008.1.2.1", "2026-01-01T00:00:00Z", "SCU")


def test_index_keeps_the_hierarchy_and_prunes_empty_levels(tmp_path: Path) -> None:
    index = Index(tmp_path / "index.sqlite")
    index.add(record("1.1", "2.1", "3.1", "P1", "a/1.dcm"))
    index.add(record("1.2", "2.1", "3.1", "P1", "a/2.dcm"))
    index.add(record("1.3", "2.2", "3.2", "P2", "b/3.dcm"))
    assert index.counts() == {"patients": 2, "studies": 2, "series": 2, "instances": 3}
    assert index.instance_path("1.2") == "a/2.dcm"
    index.remove_paths(["b/3.dcm"])
    assert index.counts() == {"patients": 1, "studies": 1, "series": 1, "instances": 2}
    assert index.paths() == {"a/1.dcm", "a/2.dcm"}
    index.close()


def test_index_replaces_an_instance_that_moved(tmp_path: Path) -> None:
    index = Index(tmp_path / "index.sqlite")
    index.add(record("1.1", "2.1", "3.1", "P1", "old/1.dcm"))
    index.add(record("1.1", "2.1", "3.1", "P1", "new/1.dcm"))
    assert index.paths() == {"new/1.dcm"}
    index.close()


def test_file_meta_encoding_matches_pydicom(tmp_path: Path) -> None:
    from io import BytesIO

    from pydicom.filewriter import write_file_meta_info
    from pynetdicom.dsutils import create_file_meta

    from dcmtool.dicom.part10 import FileMeta

    ours = FileMeta("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4", "1.2.840.10008.1.2.1",
                    "2.25.1", "DCMTOOL_0.1.0", "MODALITY", "ARCHIVE1")
    meta = create_file_meta(sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                            sop_instance_uid="1.2.3.4", transfer_syntax="1.2.840.10008.1.2.1",
                            implementation_uid="2.25.1", implementation_version="DCMTOOL_0.1.0")
    meta.SourceApplicationEntityTitle = "MODALITY"
    meta.SendingApplicationEntityTitle = "MODALITY"
    meta.ReceivingApplicationEntityTitle = "ARCHIVE1"
    reference = BytesIO()
    write_file_meta_info(reference, meta)  # type: ignore[arg-type]
    assert ours.encode() == reference.getvalue()


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm",
                                  "MR_small_bigendian.dcm", "MR_small_implicit.dcm",
                                  "SC_rgb_rle.dcm", "chrFren.dcm", "chrArab.dcm", "chrX1.dcm",
                                  "chrH31.dcm"])
def test_fast_index_values_agree_with_pydicom(name: str, tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    from dcmtool.archive.reading import HeaderReader, decode_simple
    from dcmtool.dicom.part10 import data_set_bounds
    from dcmtool.dicom.structure import check_data_set

    found = get_testdata_file(name, download=False)
    if found is None:
        from pydicom.data import get_charset_files

        found = get_charset_files(name)[0]
    path = Path(str(found))
    reader = HeaderReader(tmp_path)
    ds = reader.pydicom_header(path)
    expected = reader.values(ds)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    # What reindex reads: the same values, the transfer syntax, the sending AE.
    assert reader.stored(path) == (expected, syntax, str(
        ds.file_meta.get("SourceApplicationEntityTitle", "")).strip() or None)
    with path.open("rb") as fh:
        start, end = data_set_bounds(fh)
        walk = check_data_set(fh, start, end, syntax, reader.wanted)
    assert walk is not None
    fast = decode_simple(walk, reader.keywords, reader.dictionary_vrs)
    if fast is None:  # a code extension or a sequence: the pydicom path must be taken
        assert name in ("chrArab.dcm", "chrH31.dcm") or any(
            reader.dictionary_vrs.get(t) == "SQ" for t in walk.elements)
        return
    assert fast == expected
    assert reader.received(path, syntax) == expected


def test_command_sets_encode_as_pydicom_does() -> None:
    from pydicom.dataset import Dataset
    from pynetdicom.dimse_messages import C_ECHO_RQ, C_STORE_RQ, C_STORE_RSP
    from pynetdicom.dimse_primitives import C_ECHO, C_STORE
    from pynetdicom.dsutils import encode

    from dcmtool.dicom.commands import encode_command_set

    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rsp.AffectedSOPInstanceUID = "1.2.3.4.5"
    rsp.Status = 0xA900
    rsp.ErrorComment = "odd"
    rq = C_STORE()
    rq.MessageID = 7
    rq.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rq.AffectedSOPInstanceUID = "1.2.3.4.55"
    rq.Priority = 2
    rq.MoveOriginatorApplicationEntityTitle = "MOVER"
    rq.MoveOriginatorMessageID = 3
    rq.DataSet = BytesIO(b"")
    echo = C_ECHO()
    echo.MessageID = 1
    echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
    for message, primitive in ((C_STORE_RSP(), rsp), (C_STORE_RQ(), rq), (C_ECHO_RQ(), echo)):
        message.primitive_to_message(primitive)
        fast = encode_command_set(message.command_set)
        assert fast is not None
        assert fast == encode(message.command_set, True, True)
    assert encode_command_set(Dataset({})) == b""


@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
@pytest.mark.parametrize("in_memory", [True, False])
def test_store_finds_a_truncated_file_before_sending_it(tmp_path: Path, syntax: str,
                                                        in_memory: bool) -> None:
    """``file_problem``: whole files pass, a file cut short is named (both ways of walking:
    the whole file in memory, or header to header on disk; a sequence of undefined length
    takes the full walk)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from support.datasets import write_instance

    from dcmtool.dicom.part10 import dataset_offset
    from dcmtool.dicom.structure import file_problem

    path = tmp_path / "whole.dcm"
    ds = write_instance(path, transfer_syntax=syntax, rows=32, columns=32)
    item = Dataset()
    item.CodeValue = "X"
    ds.ReferencedImageSequence = Sequence([item])
    ds.save_as(path, enforce_file_format=True, implicit_vr=syntax == "1.2.840.10008.1.2")
    offset = dataset_offset(path)

    def problem(target: Path) -> str | None:
        data = target.read_bytes()
        head = data if in_memory else b""
        return file_problem(target, offset, syntax, head=head, size=len(data))

    assert problem(path) is None
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(path.read_bytes()[:-100])
    found = problem(cut)
    assert found is not None and "truncated" in found
