"""dcmtool store against real peers: dcmtool serve, DCMTK storescp, pynetdicom SCPs."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import evt
from support.archive import ServedArchive
from support.datasets import dataset_bytes, pydicom_test_file, write_instance
from support.peers import run_cli

EXPLICIT = "1.2.840.10008.1.2.1"


def test_a_folder_is_stored_byte_for_byte(serve_archive: Callable[..., ServedArchive],
                                          tmp_path: Path) -> None:
    served = serve_archive()
    folder = tmp_path / "export"
    sources = [folder / f"sub{i % 2}" / f"{i}.dcm" for i in range(6)]
    for path in sources:
        write_instance(path)
    (folder / "README.txt").write_text("not DICOM")
    result = run_cli("store", served.address, str(folder), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("6 sent, 6 stored (0 with warnings), 0 failed, 1 skipped;")
    stored = {dcmread(p, stop_before_pixels=True).SOPInstanceUID: p for p in served.files()}
    for path in sources:
        uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(stored[uid]) == dataset_bytes(path)


@pytest.mark.peer("dcmtk")
def test_compressed_files_are_decompressed_for_a_peer_that_refuses_them(
        dcmtk_storescp: Callable[..., Any], tmp_path: Path) -> None:
    scp = dcmtk_storescp()  # DCMTK's default: uncompressed syntaxes only
    names = ["MR_small_jpeg_ls_lossless.dcm", "SC_rgb_rle.dcm", "MR_small_RLE.dcm",
             "JPEG2000.dcm", "SC_rgb_jpeg_gdcm.dcm"]
    files = []
    for name in names:  # pydicom's files share SOP Instance UIDs: give each its own
        ds = dcmread(pydicom_test_file(name))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(tmp_path / name, enforce_file_format=True)
        files.append(tmp_path / name)
    report = tmp_path / "report.json"
    result = run_cli("store", scp.address, *map(str, files), "--report", str(report))
    assert result.exit_code == 0, result.stderr
    rows = json.loads(report.read_text())
    assert [r["transfer_syntax"] for r in rows] == [EXPLICIT] * len(names)
    received = {dcmread(p).SOPInstanceUID: p for p in scp.output_dir.iterdir()}
    for path in files:
        original = dcmread(path)
        copy = dcmread(received[original.SOPInstanceUID])
        assert copy.file_meta.TransferSyntaxUID in (EXPLICIT, "1.2.840.10008.1.2")
        if "JPEG2000" in path.name:
            continue  # lossy J2K: decoded, not compared bit for bit
        assert (copy.pixel_array == original.pixel_array).all(), path.name


def test_statuses_decide_the_exit_code(pynetdicom_scp: Callable[..., Any],
                                       tmp_path: Path) -> None:
    files = [tmp_path / f"{i}.dcm" for i in range(4)]
    for path in files:
        write_instance(path)
    counter = {"n": 0}

    def every_second_refused(event: Any) -> int:
        counter["n"] += 1
        return 0xA700 if counter["n"] % 2 else 0x0000

    mixed = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, every_second_refused)], storage=True)
    result = run_cli("store", mixed.address, *map(str, files), "--json")
    assert result.exit_code == 7
    summary = json.loads(result.stdout)
    assert (summary["stored"], summary["failed"]) == (2, 2)
    assert sorted(f["status"] for f in summary["files"]) == ["0x0000", "0x0000", "0xA700",
                                                              "0xA700"]

    counter["n"] = 0

    def second_not_understood(event: Any) -> int:
        counter["n"] += 1
        return 0xC000 if counter["n"] == 2 else 0x0000

    cannot_understand = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, second_not_understood)],
                                       storage=True)
    result = run_cli("store", cannot_understand.address, *map(str, files), "--json")
    assert result.exit_code == 7
    summary = json.loads(result.stdout)
    assert (summary["stored"], summary["failed"]) == (3, 1)
    refused = [f for f in summary["files"] if not f["stored"]]
    assert refused[0]["status"] == "0xC000" and "refused (0xC000)" in refused[0]["message"]

    counter["n"] = 0
    mixed = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, every_second_refused)], storage=True)
    result = run_cli("store", mixed.address, *map(str, files), "--json")
    assert result.exit_code == 7
    summary = json.loads(result.stdout)
    assert (summary["stored"], summary["failed"]) == (2, 2)
    assert sorted(f["status"] for f in summary["files"]) == ["0x0000", "0x0000", "0xA700",
                                                              "0xA700"]

    full = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, lambda e: 0xA700)], storage=True)
    report = tmp_path / "report.csv"
    result = run_cli("store", full.address, str(tmp_path), "--report", str(report))
    assert result.exit_code == 6
    assert "every file was refused" in result.stderr
    rows = list(csv.DictReader(io.StringIO(report.read_text())))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"0xA700"}
    assert {r["path"] for r in rows} == {str(p) for p in files}


def test_store_errors(closed_port: int, tmp_path: Path) -> None:
    write_instance(tmp_path / "a.dcm")
    (tmp_path / "b.txt").write_text("x")
    result = run_cli("store", f"X@127.0.0.1:{closed_port}", str(tmp_path))
    assert result.exit_code == 3
    assert f"connection to 127.0.0.1:{closed_port} refused" in result.stderr
    result = run_cli("store", f"X@127.0.0.1:{closed_port}", str(tmp_path), "--strict")
    assert result.exit_code == 2
    assert f"skipped, not DICOM: {tmp_path / 'b.txt'}" in result.stderr
    result = run_cli("store", f"X@127.0.0.1:{closed_port}", str(tmp_path / "nope"))
    assert result.exit_code == 2
    assert "no such file or folder" in result.stderr
    result = run_cli("store", f"X@127.0.0.1:{closed_port}", str(tmp_path / "b.txt"))
    assert result.exit_code == 2
    assert "no DICOM files in the inputs" in result.stderr


def test_paths_on_stdin(serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    served = serve_archive()
    files = [tmp_path / f"{i}.dcm" for i in range(3)]
    for path in files:
        write_instance(path)
    result = run_cli("store", served.address, "-", input="\n".join(map(str, files)) + "\n")
    assert result.exit_code == 0, result.stderr
    assert len(served.files()) == 3


def test_more_than_128_contexts_are_split_over_associations() -> None:
    from dcmtool.scu.store import Instance, plan

    classes = [f"1.2.826.0.1.3680043.9.{n}" for n in range(100)]
    instances = [Instance(Path(f"{c}-{ts}.dcm"), c, f"{c}.{i}", ts, "1.2.3", 10)
                 for i, c in enumerate(classes)
                 for ts in (EXPLICIT, "1.2.840.10008.1.2.4.70")]
    batches = plan(instances)
    # 3 contexts a class (each stored syntax alone, and the fallback): 42 classes a batch.
    assert len(batches) == 3
    assert all(len(contexts) <= 128 for contexts, _ in batches)
    assert sum(len(files) for _, files in batches) == len(instances)
    for contexts, files in batches:  # every file's class and syntax is proposed alone
        alone = {(cx.abstract_syntax, cx.transfer_syntaxes[0]) for cx in contexts
                 if len(cx.transfer_syntaxes) == 1}
        assert all((f.sop_class_uid, f.transfer_syntax) in alone for f in files)


def test_retries_reopen_and_continue_from_the_failed_file(
        pynetdicom_scp: Callable[..., Any], tmp_path: Path) -> None:
    files = [tmp_path / f"{i}.dcm" for i in range(4)]
    for path in files:
        write_instance(path)
    seen: list[str] = []

    def abort_once(event: Any) -> int:
        seen.append(str(event.request.AffectedSOPInstanceUID))
        if len(seen) == 2:  # the second instance: abort instead of answering
            event.assoc.abort()
        return 0x0000

    scp = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, abort_once)], storage=True)
    result = run_cli("store", scp.address, *map(str, files), "--retries", "2", "--json")
    assert result.exit_code == 0, result.stderr
    assert "retry 1 of 2" in result.stderr
    summary = json.loads(result.stdout)
    assert (summary["stored"], summary["failed"]) == (4, 0)
    uids = [dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in files]
    # Resent from the failed one (studies go largest first, so the order is not the files').
    assert len(seen) == 5 and seen[1] == seen[2] and set(seen) == set(uids)
    assert len(scp.wait_closed(2)) == 2


def test_without_retries_an_abort_fails_the_rest(pynetdicom_scp: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    files = [tmp_path / f"{i}.dcm" for i in range(3)]
    for path in files:
        write_instance(path)
    count = {"n": 0}

    def abort_second(event: Any) -> int:
        count["n"] += 1
        if count["n"] == 2:
            event.assoc.abort()
        return 0x0000

    scp = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, abort_second)], storage=True)
    result = run_cli("store", scp.address, *map(str, files), "--json")
    assert result.exit_code == 7
    summary = json.loads(result.stdout)
    # the second was sent and lost with the association; the third was never sent
    assert (summary["sent"], summary["stored"], summary["failed"], summary["not_sent"]) == \
        (2, 1, 1, 1)
    assert all("aborted" in f["message"] for f in summary["files"] if not f["stored"])
    assert result.stderr.count("not sent") == 1  # said once, not per file


def test_resume_sends_only_what_was_not_stored(pynetdicom_scp: Callable[..., Any],
                                               serve_archive: Callable[..., ServedArchive],
                                               tmp_path: Path) -> None:
    folder = tmp_path / "in"
    files = [folder / f"{i}.dcm" for i in range(4)]
    for path in files:
        write_instance(path)
    count = {"n": 0}

    def refuse_odd(event: Any) -> int:
        count["n"] += 1
        return 0xA700 if count["n"] % 2 else 0x0000

    first = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, refuse_odd)], storage=True)
    report = tmp_path / "report.json"
    assert run_cli("store", first.address, str(folder), "--report", str(report)).exit_code == 7
    served = serve_archive()
    result = run_cli("store", served.address, str(folder), "--resume", str(report))
    assert result.exit_code == 0, result.stderr
    assert "--resume: 2 file(s) already stored" in result.stderr
    assert result.stdout.startswith("2 sent, 2 stored")
    assert len(served.files()) == 2


def test_jobs_use_parallel_associations_with_whole_studies(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    served = serve_archive()
    for study in range(4):
        study_uid = generate_uid()
        for i in range(3):
            write_instance(tmp_path / f"s{study}" / f"{i}.dcm", StudyInstanceUID=study_uid)
    result = run_cli("store", served.address, str(tmp_path), "--jobs", "2")
    assert result.exit_code == 0, result.stderr
    assert len(served.files()) == 12
    audit = [json.loads(line) for line in (served.root / "audit.jsonl").read_text().splitlines()]
    opened = [e for e in audit if e["event"] == "association-opened"]
    assert len(opened) == 2
    by_peer: dict[str, set[str]] = {}
    for event in audit:
        if event["event"] == "instance-stored":
            study_dir = event["path"].split("/")[1]
            by_peer.setdefault(event["calling_aet"], set()).add(study_dir)
    assert sum(len(s) for s in by_peer.values()) == 4  # each study went over one association


def test_a_dicomdir_sends_what_it_references(serve_archive: Callable[..., ServedArchive],
                                             tmp_path: Path) -> None:
    from pydicom.fileset import FileSet
    from support.datasets import make_dataset

    fileset = FileSet()
    sent = []
    for _ in range(3):
        ds = make_dataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        fileset.add(ds)
        sent.append(ds.SOPInstanceUID)
    fileset.write(tmp_path / "media")
    served = serve_archive()
    result = run_cli("store", served.address, str(tmp_path / "media" / "DICOMDIR"))
    assert result.exit_code == 0, result.stderr
    stored = {dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in served.files()}
    assert stored == set(sent)
    # The folder itself: the DICOMDIR is expanded, its files are not sent twice.
    again = serve_archive()
    result = run_cli("store", again.address, str(tmp_path / "media"), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["sent"] == 3


def test_new_uids_and_set_make_fresh_test_data(serve_archive: Callable[..., ServedArchive],
                                               tmp_path: Path) -> None:
    study, series = generate_uid(), generate_uid()
    originals = [write_instance(tmp_path / "in" / f"{i}.dcm", StudyInstanceUID=study,
                                SeriesInstanceUID=series) for i in range(3)]
    served = serve_archive()
    for _ in range(2):
        result = run_cli("store", served.address, str(tmp_path / "in"), "--new-uids",
                         "--set", "PatientID=ANON1", "--set", "PatientName=Test^Anon")
        assert result.exit_code == 0, result.stderr
    stored = [dcmread(p) for p in served.files()]
    assert len(stored) == 6  # new instance UIDs each run: no duplicates
    assert {d.PatientID for d in stored} == {"ANON1"}
    assert {str(d.PatientName) for d in stored} == {"Test^Anon"}
    assert len({d.StudyInstanceUID for d in stored}) == 2  # one new study per run
    assert study not in {d.StudyInstanceUID for d in stored}
    assert not {d.SOPInstanceUID for d in stored} & {d.SOPInstanceUID for d in originals}
    assert all(d.file_meta.MediaStorageSOPInstanceUID == d.SOPInstanceUID for d in stored)
    result = run_cli("store", served.address, str(tmp_path / "in"), "--set", "NotAKey=1")
    assert result.exit_code == 2
    assert "expected Keyword=Value with a DICOM keyword" in result.stderr


@pytest.mark.peer("orthanc")
def test_store_to_orthanc(orthanc: Callable[..., Any], tmp_path: Path) -> None:
    server = orthanc()
    for i in range(5):
        write_instance(tmp_path / f"{i}.dcm")
    result = run_cli("store", server.address, str(tmp_path), "--jobs", "2")
    assert result.exit_code == 0, result.stderr
    assert server.rest.instance_count() == 5


@pytest.mark.peer("dcmtk")
def test_a_peer_that_aborts_every_time_exhausts_the_retries(
        dcmtk_storescp: Callable[..., Any], tmp_path: Path) -> None:
    scp = dcmtk_storescp("--abort-after")
    write_instance(tmp_path / "a.dcm")
    result = run_cli("store", scp.address, str(tmp_path), "--retries", "1")
    assert result.exit_code == 5
    assert "retry 1 of 1" in result.stderr
    assert "no file was stored" in result.stderr


def test_more_than_128_contexts_over_real_associations(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    from support.datasets import make_dataset

    from dcmtool.net.patches import apply

    apply()
    served = serve_archive(accept_unknown=True)
    try:
        for n in range(90):  # 45 explicit (1 context) + 45 implicit (2) = 135 contexts
            ds = make_dataset(sop_class=f"1.2.826.0.1.3680043.9.7777.{n}")
            write_instance(tmp_path / f"{n}.dcm", ds,
                           transfer_syntax="1.2.840.10008.1.2" if n % 2 else EXPLICIT)
        result = run_cli("store", served.address, str(tmp_path), "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["stored"] == 90
        audit = [json.loads(x) for x in (served.root / "audit.jsonl").read_text().splitlines()]
        assert len([e for e in audit if e["event"] == "association-opened"]) == 2
    finally:
        from pynetdicom import _config

        _config.UNRESTRICTED_STORAGE_SERVICE = False


def test_a_rejected_association_is_exit_4(pynetdicom_scp: Callable[..., Any],
                                          tmp_path: Path) -> None:
    scp = pynetdicom_scp(storage=True, require_calling_aet=["SOMEONE"])
    write_instance(tmp_path / "a.dcm")
    result = run_cli("store", scp.address, str(tmp_path))
    assert result.exit_code == 4
    assert "calling ae title not recognised" in result.stderr


def _ct_files(folder: Path, count: int) -> list[Path]:
    import numpy as np

    rng = np.random.default_rng(3)
    files = []
    for index in range(count):
        path = folder / f"ct{index}.dcm"
        ds = write_instance(path, rows=64, columns=64, PixelRepresentation=1)
        ds.PixelData = rng.integers(-1000, 2000, size=(64, 64), dtype=np.int16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def test_ts_transcodes_every_file_on_the_way(serve_archive: Callable[..., ServedArchive],
                                             tmp_path: Path) -> None:
    served = serve_archive()
    files = _ct_files(tmp_path / "in", 3)
    result = run_cli("store", served.address, str(tmp_path / "in"), "--ts", "jpeg-ls",
                     "--json", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {f["transfer_syntax"] for f in summary["files"]} == {"1.2.840.10008.1.2.4.80"}
    stored = {dcmread(p).SOPInstanceUID: dcmread(p) for p in served.files()}
    for path in files:
        original = dcmread(path)
        copy = stored[original.SOPInstanceUID]  # lossless: the same instance
        assert copy.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.80"
        assert (copy.pixel_array == original.pixel_array).all()


def test_lossy_ts_sends_new_instances(serve_archive: Callable[..., ServedArchive],
                                      tmp_path: Path) -> None:
    served = serve_archive()
    files = _ct_files(tmp_path / "in", 2)
    result = run_cli("store", served.address, *map(str, files), "--ts", "j2k-lossy", "--json",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    sent = {f["sop_instance_uid"] for f in json.loads(result.stdout)["files"]}
    originals = {str(dcmread(p).SOPInstanceUID) for p in files}
    assert sent.isdisjoint(originals) and len(sent) == 2
    for path in served.files():
        copy = dcmread(path)
        assert str(copy.SOPInstanceUID) in sent
        assert copy.LossyImageCompression == "01"
        assert copy.SourceImageSequence[0].ReferencedSOPInstanceUID in originals


@pytest.mark.peer("dcmtk")
def test_ts_the_peer_refuses_names_class_and_syntax(dcmtk_storescp: Callable[..., Any],
                                                    tmp_path: Path) -> None:
    scp = dcmtk_storescp()  # uncompressed only
    files = _ct_files(tmp_path / "in", 2)
    result = run_cli("store", scp.address, *map(str, files), "--ts", "jpeg-lossless")
    assert result.exit_code == 5, result.stderr
    assert ("the peer refused SOP class 1.2.840.10008.5.1.4.1.1.2 as jpeg-lossless"
            in result.stderr)
    assert list(scp.output_dir.iterdir()) == []


@pytest.mark.peer("dcmtk")
def test_big_endian_files_are_sent_with_their_words_swapped(dcmtk_storescp: Callable[..., Any],
                                                             tmp_path: Path) -> None:
    """A retired big-endian file goes out as little endian with the pixel words swapped."""
    scp = dcmtk_storescp("+xi")  # implicit VR little endian only
    path = tmp_path / "be.dcm"
    ds = dcmread(pydicom_test_file("MR_small_bigendian.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(path)
    result = run_cli("store", scp.address, str(path), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["files"][0]["transfer_syntax"] == "1.2.840.10008.1.2"
    (received,) = list(scp.output_dir.iterdir())
    assert (dcmread(received).pixel_array == dcmread(path).pixel_array).all()


@pytest.mark.peer("dcmtk")
def test_large_files_framed_into_small_pdus_arrive_byte_for_byte(
        dcmtk_storescp: Callable[..., Any], tmp_path: Path) -> None:
    """Files go onto the socket in P-DATA PDUs of the peer's maximum length."""
    import numpy as np

    scp = dcmtk_storescp("--max-pdu", "16384")
    path = tmp_path / "big.dcm"
    ds = write_instance(path, rows=512, columns=512)
    ds.PixelData = np.random.default_rng(5).integers(0, 4096, (512, 512), np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    odd = tmp_path / "odd.dcm"  # 3 bytes over a PDU boundary
    ds2 = write_instance(odd, rows=1, columns=8190)
    ds2.save_as(odd, enforce_file_format=True)
    result = run_cli("store", scp.address, str(path), str(odd))
    assert result.exit_code == 0, result.stderr
    received = {dcmread(p).SOPInstanceUID: p for p in scp.output_dir.iterdir()}
    for source in (path, odd):
        uid = dcmread(source, stop_before_pixels=True).SOPInstanceUID
        assert dataset_bytes(received[uid]) == dataset_bytes(source)


def test_a_file_without_meta_group_length_is_still_sent(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    """No (0002,0000) first: dcmtool cannot find the data set by arithmetic, pynetdicom can."""
    from dcmtool.dicom.part10 import dataset_offset

    path = tmp_path / "nolength.dcm"
    write_instance(path)
    data = path.read_bytes()
    assert data[132:138] == b"\x02\x00\x00\x00UL"
    path.write_bytes(data[:132] + data[144:])  # drop the 12-byte (0002,0000) element
    assert dataset_offset(path) is None
    served = serve_archive()
    result = run_cli("store", served.address, str(path))
    assert result.exit_code == 0, result.stderr
    assert len(served.files()) == 1


def test_quick_header_agrees_with_pydicom(tmp_path: Path) -> None:
    """store reads headers with struct; where it answers, it must answer what pydicom does."""
    import pydicom

    from dcmtool.dicom.part10 import read_header

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    answered = 0
    for path in sorted(folder.glob("*.dcm")):
        header = read_header(path)
        if header is None:
            continue
        answered += 1
        ds = dcmread(path, stop_before_pixels=True)
        # the data set's UIDs (what the C-STORE names), the File Meta's beside them
        assert header.sop_class_uid == ds.get("SOPClassUID",
                                              ds.file_meta.MediaStorageSOPClassUID), path.name
        assert header.sop_instance_uid == ds.get(
            "SOPInstanceUID", ds.file_meta.MediaStorageSOPInstanceUID), path.name
        assert header.meta_sop_instance_uid == ds.file_meta.MediaStorageSOPInstanceUID
        assert header.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID, path.name
        assert header.study_instance_uid == str(ds.get("StudyInstanceUID", "")), path.name
    assert answered >= 20
    write_instance(tmp_path / "x.dcm", transfer_syntax="1.2.840.10008.1.2")
    header = read_header(tmp_path / "x.dcm")
    assert header is not None
    assert header.study_instance_uid == dcmread(tmp_path / "x.dcm").StudyInstanceUID


@pytest.mark.peer("dcmtk")
def test_large_data_sets_stream_in_blocks(dcmtk_storescp: Callable[..., Any], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the in-memory limit a data set goes out block by block, still byte for byte."""
    import numpy as np

    from dcmtool.net import framing

    monkeypatch.setattr(framing, "STREAM_ABOVE", 50_000)  # 3 blocks for this file
    scp = dcmtk_storescp("--max-pdu", "16384")
    path = tmp_path / "big.dcm"
    ds = write_instance(path, rows=256, columns=256)
    ds.PixelData = np.random.default_rng(6).integers(0, 4096, (256, 256), np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    result = run_cli("store", scp.address, str(path))
    assert result.exit_code == 0, result.stderr
    (received,) = list(scp.output_dir.iterdir())
    assert dataset_bytes(received) == dataset_bytes(path)


def test_the_peers_error_comment_is_reported(serve_archive: Callable[..., ServedArchive],
                                             tmp_path: Path) -> None:
    """store reads each C-STORE response from the socket itself: the comment that explains a
    refusal (here serve's duplicate check, 0x0111) still reaches the report."""
    from dcmtool.archive.storage import StorePolicy

    served = serve_archive(policy=StorePolicy(duplicates="reject", min_free_bytes=0))
    path = tmp_path / "one.dcm"
    write_instance(path)
    assert run_cli("store", served.address, str(path)).exit_code == 0
    again = run_cli("store", served.address, str(path), "--json")
    assert again.exit_code == 6
    (refused,) = json.loads(again.stdout)["files"]
    assert refused["status"] == "0x0111"
    assert "duplicate SOP Instance UID" in refused["message"], refused["message"]


def test_files_go_in_their_own_syntax_to_a_peer_that_prefers_implicit(
        pynetdicom_scp: Callable[..., Any], tmp_path: Path) -> None:
    """pynetdicom's SCP picks implicit VR from a context that offers both: each stored syntax
    is proposed alone too, so explicit VR files are not converted on the way."""
    scp = pynetdicom_scp(storage=True)
    path = tmp_path / "explicit.dcm"
    write_instance(path)
    assert str(dcmread(path).file_meta.TransferSyntaxUID) == EXPLICIT
    result = run_cli("store", scp.address, str(path), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["files"][0]["transfer_syntax"] == EXPLICIT
    assert str(scp.stored[0].file_meta.TransferSyntaxUID) == EXPLICIT


def test_a_truncated_file_fails_alone_and_the_rest_are_sent(
        dcmtk_storescp: Callable[..., Any], tmp_path: Path) -> None:
    """One truncated file in a folder: it is found while scanning (its elements claim more
    bytes than the file has), never sent, and reported; the files before and after it reach
    DCMTK's storescp, and the exit code says partial (7), at once, without any time-out."""
    scp = dcmtk_storescp()
    folder = tmp_path / "batch"
    for index in range(5):
        write_instance(folder / f"{index}.dcm", rows=64, columns=64)
    truncated = folder / "2.dcm"
    truncated.write_bytes(truncated.read_bytes()[:-1000])
    result = run_cli("store", scp.address, str(folder), "--report", str(tmp_path / "r.json"))
    assert result.exit_code == 7, result.stderr
    assert f"dcmtool: failed: {truncated}: not sent, not a whole data set: " in result.stderr
    assert "truncated" in result.stderr
    assert len(scp.received()) == 4
    report = json.loads((tmp_path / "r.json").read_text())
    assert [row["stored"] for row in report].count(True) == 4
    assert any(row["path"] == str(truncated.resolve()) and not row["stored"] for row in report)


def test_a_refused_connection_still_writes_the_report(closed_port: int, tmp_path: Path) -> None:
    """Nothing could be sent: exit 3 with one line saying why, and a report that names every
    file as not stored (so a script knows what to send later)."""
    for index in range(3):
        write_instance(tmp_path / "in" / f"{index}.dcm")
    report = tmp_path / "report.json"
    result = run_cli("store", f"ANY-SCP@127.0.0.1:{closed_port}", str(tmp_path / "in"),
                     "--report", str(report))
    assert result.exit_code == 3, result.stderr
    assert result.stderr.count("refused") == 1
    rows = json.loads(report.read_text())
    assert len(rows) == 3 and not any(row["stored"] for row in rows)
    assert all("refused" in row["message"] for row in rows)


def test_ctrl_c_finishes_the_file_writes_the_report_and_resume_sends_the_rest(
        pynetdicom_scp: Callable[..., Any], tmp_path: Path) -> None:
    """Ctrl-C while sending: the file in flight is finished, the report and the summary are
    written, the exit code is 130, and --resume sends exactly the files that were not stored.
    The peer itself sends the SIGINT when the third file arrives: no timing involved."""
    import os
    import signal
    import subprocess
    import sys

    from pynetdicom import evt

    process: dict[str, subprocess.Popen[str]] = {}
    arrived: list[str] = []

    def on_store(event: Any) -> int:
        arrived.append(str(event.request.AffectedSOPInstanceUID))
        if len(arrived) == 3 and "store" in process:
            os.kill(process["store"].pid, signal.SIGINT)
        return 0x0000

    scp = pynetdicom_scp(ae_title="STORE-SCP", storage=True,
                         handlers={evt.EVT_C_STORE: on_store})
    folder = tmp_path / "in"
    for index in range(10):
        write_instance(folder / f"{index:02d}.dcm", rows=16, columns=16)
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "dcmtool", "store", scp.address, str(folder),
               "--report", str(report)]
    process["store"] = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
    out, err = process["store"].communicate(timeout=60)
    assert process["store"].returncode == 130, err
    assert "dcmtool: interrupted: 7 file(s) not sent; rerun with --resume" in err
    assert "3 stored" in out
    rows = json.loads(report.read_text())
    # Files go in the order the sender plans (by study), not necessarily the folder's.
    assert sorted(row["sop_instance_uid"] for row in rows if row["stored"]) == sorted(arrived)
    assert [row["message"] for row in rows if not row["stored"]] == \
        ["not sent: interrupted"] * 7
    del process["store"]
    resumed = run_cli("store", scp.address, str(folder), "--resume", str(report))
    assert resumed.exit_code == 0, resumed.stderr
    assert "--resume: 3 file(s) already stored" in resumed.stderr
    assert len(arrived) == 10 and len(set(arrived)) == 10
