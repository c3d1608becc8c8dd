"""What a new user hits first, without sockets: names, messages, values (issue: first hour)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import dcmread
from support.datasets import pydicom_test_file
from support.peers import run_cli

from dcmtool.dicom.commands import error_comment


def test_an_error_comment_never_cuts_a_uid() -> None:
    message = ("data set SOP Instance UID 1.2.777.777.77.7.7777.7777.20030903150023 does not "
               "match the request's 1.2.999.999.99.9.9999.9999.20030903150023")
    comment = error_comment(message)
    assert len(comment) <= 64
    assert comment == "data set SOP Instance UID does not match the request's"
    assert error_comment("short 1.2.3") == "short 1.2.3"
    long_words = "word " * 30
    assert len(error_comment(long_words)) <= 64 and error_comment(long_words).endswith("...")


@pytest.mark.parametrize("name,choices", [
    ("jpeg2000", "j2k-lossless, j2k-lossy (lossy)"),
    ("J2K", "j2k-lossless, j2k-lossy (lossy)"),
    ("jpeg", "jpeg-lossless, jpeg-lossless-p14, jpeg-baseline (lossy), jpeg-extended (lossy)"),
])
def test_an_ambiguous_syntax_name_is_refused_with_the_exact_names(
        tmp_path: Path, name: str, choices: str) -> None:
    result = run_cli("convert", str(pydicom_test_file("CT_small.dcm")), "--ts", name,
                     "-o", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert f"is ambiguous: name one of {choices}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_near_miss_syntax_name_suggests_the_right_one(tmp_path: Path) -> None:
    result = run_cli("convert", str(pydicom_test_file("CT_small.dcm")), "--ts",
                     "jpeg-losless", "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "did you mean 'jpeg-lossless'?" in result.stderr


def test_every_accepted_alias_is_listed() -> None:
    result = run_cli("convert", "--list", "--json", catch_exceptions=False)
    import json

    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["j2k-lossless"]["aliases"] == ["jpeg2000-lossless"]
    assert rows["j2k-lossy"]["lossy"] and rows["j2k-lossy"]["aliases"] == ["jpeg2000-lossy"]


@pytest.mark.parametrize("args,said", [
    ((), "(lossy, new SOP Instance UIDs)"),
    (("--keep-uid",), "(lossy, SOP Instance UIDs kept)"),
])
def test_lossy_output_says_lossy_in_the_summary(tmp_path: Path, args: tuple[str, ...],
                                                said: str) -> None:
    source = pydicom_test_file("CT_small.dcm")
    result = run_cli("convert", str(source), "--ts", "j2k-lossy", "-o",
                     str(tmp_path / "out"), *args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"1 converted to j2k-lossy {said}" in result.stdout
    written = list((tmp_path / "out").rglob("*.dcm")) or list((tmp_path / "out").rglob("*"))
    ds = dcmread(next(p for p in written if p.is_file()))
    assert ds.LossyImageCompression == "01"


def test_convert_of_one_file_to_a_file_name_writes_that_file(tmp_path: Path) -> None:
    out = tmp_path / "out.dcm"
    result = run_cli("convert", str(pydicom_test_file("CT_small.dcm")), "--ts", "explicit",
                     "-o", str(out), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert dcmread(out).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    folder = tmp_path / "folder"
    result = run_cli("convert", str(pydicom_test_file("CT_small.dcm")), "--ts", "explicit",
                     "-o", str(folder), catch_exceptions=False)
    assert (folder / "CT_small.dcm").is_file()


def test_files_written_follow_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    source = tmp_path / "in.dcm"
    source.write_bytes(pydicom_test_file("CT_small.dcm").read_bytes())
    source.chmod(0o644)
    result = run_cli("convert", str(source), "--ts", "explicit", "-o", str(tmp_path / "o.dcm"),
                     catch_exceptions=False)
    assert result.exit_code == 0
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "o.dcm").stat().st_mode) == 0o666 & ~mask
    result = run_cli("convert", str(source), "--ts", "rle", "--in-place",
                     catch_exceptions=False)
    assert result.exit_code == 0
    assert stat.S_IMODE(source.stat().st_mode) == 0o644  # in place keeps the file's mode


TODAY = __import__("datetime").date(2026, 3, 1)


@pytest.mark.parametrize("vr,value,sent", [
    ("DA", "today", "20260301"),
    ("DA", "yesterday", "20260228"),
    ("DA", "-7d", "20260222-20260301"),
    ("DA", "yesterday-today", "20260228-20260301"),
    ("DA", "20240101-", "20240101-"),
    ("DA", "-20240101", "-20240101"),
    ("TM", "0800-1230", "0800-1230"),
    ("CS", "ct", "CT"),
    ("UI", "1.2.3\\1.2.4", "1.2.3\\1.2.4"),
    ("PN", "DOE^*", "DOE^*"),
])
def test_matching_values_people_type_are_sent_as_dicom(vr: str, value: str, sent: str) -> None:
    from dcmtool.dicom.matching import matching_value

    assert matching_value(vr, value, today=TODAY) == sent


@pytest.mark.parametrize("vr,value,said", [
    ("DA", "2024-01-01", "did you mean 20240101?"),
    ("DA", "20241301", "'20241301' is not a date of the calendar"),
    ("DA", "20240201-20240101", "the range '20240201-20240101' ends before it starts"),
    ("DA", "last week", "'last week' is not a date"),
    ("TM", "25", "'25' is not a time"),
    ("UI", "1.2.*", "'1.2.*' is not a UID"),
    ("CS", "CT-SCAN", "is not a code string"),
    ("SH", "x" * 17, "SH values have at most 16"),
])
def test_matching_values_that_match_nothing_are_refused(vr: str, value: str, said: str) -> None:
    from dcmtool.dicom.matching import MatchingValueError, matching_value

    with pytest.raises(MatchingValueError, match=__import__("re").escape(said)):
        matching_value(vr, value, today=TODAY)


def test_new_uids_agree_across_forked_workers() -> None:
    """``store --jobs N --new-uids``: each worker process has its own copy of the modifier;
    a UID renamed in one (an image) and in another (a presentation state naming it) must
    become the same new UID, or the reference breaks."""
    import os

    from dcmtool.dicom.modify import Modifier

    modifier = Modifier([], new_uids=True)
    original = "1.2.826.0.1.3680043.8.498.12345"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker that sends the image renames it first
        os.close(read)
        os.write(write, modifier._new(original).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        in_worker = pipe.read().decode()
    renamed = modifier._new(original)  # the other worker, which sends the reference
    assert renamed == in_worker
    assert renamed != original
    assert Modifier([], new_uids=True)._new(original) != renamed  # another run: other UIDs
