"""dcmtool serve: statuses, policies, durability and the CLI, over real associations."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, _config
from support.archive import ServedArchive
from support.datasets import dataset_bytes, make_dataset, write_instance
from support.peers import run_cli

from dcmtool.archive.storage import StorePolicy
from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID

ServeFactory = Callable[..., ServedArchive]
EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
CT = "1.2.840.10008.5.1.4.1.1.2"


@contextmanager
def associated(
    served: ServedArchive,
    contexts: Sequence[tuple[str, Sequence[str]]] = ((CT, (EXPLICIT,)),),
    *,
    calling: str = "SENDER",
    called: str | None = None,
) -> Iterator[Any]:
    ae = AE(calling)
    for sop, syntaxes in contexts:
        ae.add_requested_context(sop, list(syntaxes))
    assoc = ae.associate(served.host, served.port, ae_title=called or served.ae_title)
    assert assoc.is_established, "association failed"
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def send_file(served: ServedArchive, path: Path, monkeypatch: pytest.MonkeyPatch,
              **kwargs: Any) -> Dataset:
    """Send a file's data set bytes as they are (pynetdicom's chunked send)."""
    from pydicom.filereader import read_file_meta_info

    meta = read_file_meta_info(path)
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    with associated(served, ((str(meta.MediaStorageSOPClassUID),
                              (str(meta.TransferSyntaxUID),)),), **kwargs) as assoc:
        status: Dataset = assoc.send_c_store(path)
    return status


def send(served: ServedArchive, ds: Dataset, **kwargs: Any) -> Dataset:
    with associated(served, ((str(ds.SOPClassUID), (EXPLICIT,)),), **kwargs) as assoc:
        status: Dataset = assoc.send_c_store(ds)
    return status


def audit(served: ServedArchive) -> list[dict[str, Any]]:
    return [json.loads(line) for line in
            (served.root / "audit.jsonl").read_text(encoding="utf-8").splitlines()]


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# Storing


def test_an_instance_is_stored_as_received_with_dcmtool_meta(
        serve_archive: ServeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = serve_archive()
    source = tmp_path / "in.dcm"
    ds = write_instance(source, PatientID="PAT1")
    status = send_file(served, source, monkeypatch, calling="MODALITY1")
    assert status.Status == 0x0000
    (stored,) = served.files()
    assert stored.relative_to(served.root).parts == (
        "PAT1", ds.StudyInstanceUID, ds.SeriesInstanceUID, f"{ds.SOPInstanceUID}.dcm")
    assert dataset_bytes(stored) == dataset_bytes(source)
    meta = dcmread(stored, stop_before_pixels=True).file_meta
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName.startswith("DCMTOOL_")
    assert meta.SourceApplicationEntityTitle == "MODALITY1"
    assert meta.TransferSyntaxUID == EXPLICIT
    assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    rows = list(served.archive.index.rows(
        "SELECT i.path, i.size, i.transfer_syntax, i.source_ae, p.PatientName, s.Modality "
        "FROM instances i JOIN series s USING (SeriesInstanceUID) "
        "JOIN studies st USING (StudyInstanceUID) JOIN patients p ON p.id = st.patient"))
    assert [tuple(r) for r in rows] == [(
        stored.relative_to(served.root).as_posix(), stored.stat().st_size, EXPLICIT,
        "MODALITY1", "Test^Patient", "CT")]
    assert not any((served.root / ".incoming").iterdir())


def test_a_retired_sop_class_is_stored(serve_archive: ServeFactory) -> None:
    served = serve_archive()
    retired_nm = "1.2.840.10008.5.1.4.1.1.5"  # Nuclear Medicine Image Storage (Retired)
    assert send(served, make_dataset(sop_class=retired_nm)).Status == 0x0000
    assert len(served.files()) == 1


def test_unknown_sop_classes_need_accept_unknown(serve_archive: ServeFactory) -> None:
    private = "1.2.826.0.1.3680043.9.9999.1"
    strict = serve_archive()
    ae = AE("SENDER")
    ae.add_requested_context(private, EXPLICIT)
    assoc = ae.associate(strict.host, strict.port, ae_title=strict.ae_title)
    assert not assoc.is_established  # no context accepted: pynetdicom aborts
    strict.stop()
    lenient = serve_archive(accept_unknown=True)
    try:
        assert send(lenient, make_dataset(sop_class=private)).Status == 0x0000
        assert len(lenient.files()) == 1
    finally:
        lenient.stop()
        _config.UNRESTRICTED_STORAGE_SERVICE = False


@pytest.mark.parametrize(
    ("proposed", "accepted"),
    [
        ((IMPLICIT, JPEG_BASELINE, EXPLICIT), EXPLICIT),  # explicit over implicit
        ((JPEG_BASELINE, JPEG_LOSSLESS, IMPLICIT), JPEG_LOSSLESS),  # lossless over lossy
        ((IMPLICIT, JPEG_BASELINE), IMPLICIT),
        ((JPEG_BASELINE,), JPEG_BASELINE),  # stored as received, even lossy
    ],
)
def test_transfer_syntax_policy(serve_archive: ServeFactory, proposed: tuple[str, ...],
                                accepted: str) -> None:
    served = serve_archive()
    with associated(served, ((CT, proposed),)) as assoc:
        (context,) = assoc.accepted_contexts
        assert context.transfer_syntax[0] == accepted


def test_accept_ts_restricts_and_orders(serve_archive: ServeFactory) -> None:
    served = serve_archive(transfer_syntaxes=(IMPLICIT,))
    with associated(served, ((CT, (EXPLICIT, IMPLICIT)), ("1.2.840.10008.5.1.4.1.1.4",
                                                           (EXPLICIT,)))) as assoc:
        assert [(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in
                assoc.accepted_contexts] == [(CT, IMPLICIT)]


# ---------------------------------------------------------------------------------------------
# Statuses


def test_duplicates_reject_answers_0x0111(serve_archive: ServeFactory) -> None:
    """--duplicates reject (serve's default is ignore: tests/cli/test_serve_first_use.py)."""
    served = serve_archive(policy=StorePolicy(duplicates="reject", min_free_bytes=0))
    ds = make_dataset()
    assert send(served, ds).Status == 0x0000
    (stored,) = served.files()
    before = stored.read_bytes()
    ds.PatientName = "Changed^Name"
    status = send(served, ds)
    assert status.Status == 0x0111
    assert "duplicate SOP Instance UID" in status.ErrorComment
    assert stored.read_bytes() == before
    refused = [e for e in audit(served) if e["event"] == "instance-refused"]
    assert refused[0]["status"] == "0x0111"
    assert refused[0]["sop_instance_uid"] == ds.SOPInstanceUID


def test_duplicates_ignore_keeps_the_first_copy(serve_archive: ServeFactory) -> None:
    served = serve_archive(policy=StorePolicy(duplicates="ignore", min_free_bytes=0))
    ds = make_dataset()
    send(served, ds)
    (stored,) = served.files()
    before = stored.read_bytes()
    ds.PatientName = "Changed^Name"
    assert send(served, ds).Status == 0x0000
    assert stored.read_bytes() == before
    assert not any((served.root / ".incoming").iterdir())


def test_duplicates_overwrite_replaces_and_moves(serve_archive: ServeFactory) -> None:
    served = serve_archive(policy=StorePolicy(duplicates="overwrite", min_free_bytes=0))
    ds = make_dataset(PatientID="OLD")
    send(served, ds)
    ds.PatientID = "NEW"
    assert send(served, ds).Status == 0x0000
    (stored,) = served.files()
    assert stored.relative_to(served.root).parts[0] == "NEW"
    assert dcmread(stored).PatientID == "NEW"
    assert served.archive.index.paths() == {stored.relative_to(served.root).as_posix()}


def test_low_disk_space_answers_out_of_resources(serve_archive: ServeFactory) -> None:
    served = serve_archive(policy=StorePolicy(min_free_bytes=2**62))
    status = send(served, make_dataset())
    assert status.Status == 0xA700
    assert "free" in status.ErrorComment
    assert served.files() == []
    assert not any((served.root / ".incoming").iterdir())


def test_an_unparseable_data_set_answers_cannot_understand(
        serve_archive: ServeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = serve_archive()
    source = tmp_path / "broken.dcm"
    write_instance(source)
    data = source.read_bytes()
    head = len(data) - len(dataset_bytes(source))
    # a valid meta header, then a data element claiming 4 GB: not a data set
    source.write_bytes(data[:head] + b"\x08\x00\x16\x00UI\xff\xff" + b"\x00" * 32)
    status = send_file(served, source, monkeypatch)
    assert status.Status == 0xC000
    assert "cannot parse" in status.ErrorComment
    assert served.files() == []
    assert not any((served.root / ".incoming").iterdir())


def test_a_data_set_of_another_sop_class_answers_a900(
        serve_archive: ServeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served = serve_archive()
    source = tmp_path / "mismatch.dcm"
    ds = make_dataset(sop_class="1.2.840.10008.5.1.4.1.1.4")  # MR in the data set
    write_instance(source, ds)
    ds.file_meta.MediaStorageSOPClassUID = CT  # the chunked send takes the request's from here
    from io import BytesIO

    from pydicom.filewriter import write_file_meta_info

    header = BytesIO()
    header.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(header, ds.file_meta)  # type: ignore[arg-type]
    source.write_bytes(header.getvalue() + dataset_bytes(source))
    status = send_file(served, source, monkeypatch)
    assert status.Status == 0xA900
    assert served.files() == []


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("StudyInstanceUID", "1." + "2" * 70), ("SeriesInstanceUID", "1.2.abc"),
     ("StudyInstanceUID", "../../../etc")],
)
def test_invalid_or_overlong_uids_answer_0116(serve_archive: ServeFactory, keyword: str,
                                              value: str) -> None:
    served = serve_archive()
    status = send(served, make_dataset(**{keyword: value}))
    assert status.Status == 0x0116
    assert keyword in status.ErrorComment
    assert served.files() == []


@pytest.mark.parametrize(
    "patient_id",
    ["../../escape", "/etc/passwd", "a\x00b", "", "..", "...", "x" * 300, "C:\\Windows\\x",
     "~root", "$(touch pwned)"],
)
def test_nothing_is_written_outside_the_root(serve_archive: ServeFactory, tmp_path: Path,
                                             patient_id: str) -> None:
    root = tmp_path / "deep" / "root"
    served = serve_archive(root=root)
    before = {p for p in tmp_path.rglob("*")}
    assert send(served, make_dataset(PatientID=patient_id)).Status == 0x0000
    (stored,) = served.files()
    assert root.resolve() in stored.resolve().parents
    top = stored.relative_to(served.root).parts[0]
    assert top not in ("", ".", "..") and "/" not in top and "\x00" not in top
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(root.resolve() in p.resolve().parents for p in created)
    assert not (Path.cwd() / "pwned").exists()


# ---------------------------------------------------------------------------------------------
# Association policy


def test_require_called_aet_rejects_other_titles(serve_archive: ServeFactory) -> None:
    served = serve_archive(require_called_aet=True, ae_title="ARCHIVE")
    result = run_cli("echo", f"WRONG@{served.host}:{served.port}")
    assert result.exit_code == 4
    assert "called ae title not recognised" in result.stderr
    assert run_cli("echo", served.address).exit_code == 0
    rejected = [e for e in audit(served) if e["event"] == "association-rejected"]
    assert rejected[0]["called_aet"] == "WRONG"


def test_allow_list_rejects_other_calling_titles(serve_archive: ServeFactory) -> None:
    served = serve_archive(allowed_calling_aets=("GOOD",))
    result = run_cli("echo", served.address, "-aet", "BAD")
    assert result.exit_code == 4
    assert "calling ae title not recognised" in result.stderr
    assert run_cli("echo", served.address, "-aet", "GOOD").exit_code == 0


def test_association_limit_rejects_transiently(serve_archive: ServeFactory) -> None:
    served = serve_archive(max_associations=1)
    with associated(served, (("1.2.840.10008.1.1", (EXPLICIT,)),)):
        result = run_cli("echo", served.address)
    assert result.exit_code == 4
    assert "transiently" in result.stderr and "local limit exceeded" in result.stderr
    assert run_cli("echo", served.address).exit_code == 0


# ---------------------------------------------------------------------------------------------
# Audit, hooks, durability


def test_audit_log_tells_the_story(serve_archive: ServeFactory) -> None:
    served = serve_archive(policy=StorePolicy(duplicates="reject", min_free_bytes=0))
    ds = make_dataset()
    with associated(served, ((CT, (EXPLICIT,)),), calling="AUDITED") as assoc:
        assert assoc.send_c_store(ds).Status == 0x0000
        assert assoc.send_c_store(ds).Status == 0x0111
    wait_for(lambda: audit(served)[-1]["event"] == "association-released")
    events = [e["event"] for e in audit(served)]
    assert events == ["association-opened", "instance-stored", "instance-refused",
                      "association-released"]
    last = audit(served)[-1]
    assert (last["calling_aet"], last["stored"], last["refused"]) == ("AUDITED", 1, 1)


def test_hooks_run_with_quoted_placeholders(serve_archive: ServeFactory, tmp_path: Path) -> None:
    stored_log, studies_log = tmp_path / "stored.txt", tmp_path / "studies.txt"
    served = serve_archive(
        on_stored=f"printf '%s|%s\\n' {{path}} {{calling_aet}} >> {stored_log}",
        on_study_complete=f"printf '%s %s\\n' {{study}} {{count}} >> {studies_log}",
        study_timeout=0.3,
    )
    study = generate_uid()
    for _ in range(3):
        assert send(served, make_dataset(StudyInstanceUID=study, PatientID="P; rm -rf /"),
                    calling="HOOKED").Status == 0x0000
    wait_for(lambda: studies_log.exists() and stored_log.exists()
             and len(stored_log.read_text().splitlines()) == 3)
    lines = stored_log.read_text().splitlines()
    assert {line.split("|")[0] for line in lines} == {str(p) for p in served.files()}
    assert all(line.endswith("|HOOKED") for line in lines)
    assert studies_log.read_text() == f"{study} 3\n"


def test_instances_small_and_large_on_one_association_arrive_whole(
        serve_archive: ServeFactory) -> None:
    """After the first C-STORE, serve reads the rest off the socket: those up to 1 MiB are
    kept in memory and written at once, larger ones stream to their file; each arrives as
    sent, whichever way it went, in any order."""
    served = serve_archive()
    sent = []
    for rows in (8, 1024, 16, 1024, 700, 8):  # 1024 x 768 x 2 bytes: 1.5 MiB of pixels
        ds = make_dataset(rows=rows, columns=768)
        ds.PixelData = bytes((n * rows) % 251 for n in range(rows * 768 * 2))
        sent.append(ds)
    with associated(served, ((CT, (EXPLICIT,)),), called=served.ae_title) as assoc:
        assert [assoc.send_c_store(ds).Status for ds in sent] == [0x0000] * len(sent)
    stored = {str(dcmread(path).SOPInstanceUID): dcmread(path) for path in served.files()}
    for ds in sent:
        assert stored[str(ds.SOPInstanceUID)].PixelData == ds.PixelData
        assert stored[str(ds.SOPInstanceUID)].Rows == ds.Rows


def test_stop_lets_a_transfer_in_progress_finish(serve_archive: ServeFactory,
                                                 tmp_path: Path) -> None:
    served = serve_archive()
    big = make_dataset(rows=2048, columns=2048)  # 8 MiB of pixel data
    big.NumberOfFrames = 4
    big.PixelData = bytes(2048 * 2048 * 2 * 4)
    result: list[Any] = []

    def sender() -> None:
        with associated(served, ((CT, (EXPLICIT,)),), called=served.ae_title) as assoc:
            result.append(assoc.send_c_store(big))

    thread = threading.Thread(target=sender)
    thread.start()
    wait_for(lambda: any((served.root / ".incoming").iterdir()))
    served.stop()  # while the data set is arriving
    thread.join(30)
    assert result and result[0].Status == 0x0000
    (stored,) = served.files()
    assert dcmread(stored, stop_before_pixels=True).SOPInstanceUID == big.SOPInstanceUID
    with pytest.raises(ConnectionRefusedError), socket.create_connection(
            (served.host, served.port), timeout=2):
        pass


def test_reconcile_repairs_what_a_crash_left(serve_archive: ServeFactory,
                                             tmp_path: Path) -> None:
    served = serve_archive(root=tmp_path / "arch")
    kept, gone = make_dataset(), make_dataset()
    send(served, kept)
    send(served, gone)
    served.stop()
    root = tmp_path / "arch"
    (root / ".incoming" / "rx-partial.dcm").write_bytes(b"\x00" * 1000)
    gone_path = next(p for p in root.rglob("*.dcm") if gone.SOPInstanceUID in p.name)
    gone_path.unlink()
    orphan = write_instance(root / "manual" / "orphan.dcm")

    from dcmtool.archive.storage import Archive

    archive = Archive(root, StorePolicy(min_free_bytes=0))
    report = archive.reconcile()
    assert (report.removed_partial, report.indexed_orphans, report.dropped_missing) == (1, 1, 1)
    assert archive.index.paths() == {
        p.relative_to(root).as_posix() for p in archive.instance_files()}
    assert archive.index.instance_path(orphan.SOPInstanceUID) == "manual/orphan.dcm"
    assert archive.reconcile().consistent
    archive.close()


def test_a_start_checks_what_was_interrupted_and_rescan_checks_every_file(
        serve_process: Any, tmp_path: Path) -> None:
    """A start settles only what a stop or crash left (here: a partial transfer), so a file
    put into the folder by hand stays unknown until --rescan walks every file and indexes it
    (and drops the row of a file deleted by hand)."""
    from dcmtool.archive.index import Index

    root = tmp_path / "arch"
    first = serve_process(root=root)
    sent = write_instance(tmp_path / "sent.dcm")
    assert run_cli("store", f"DCMTOOL@127.0.0.1:{first.port}", str(tmp_path / "sent.dcm")
                   ).exit_code == 0
    first.process.stop()
    (root / ".incoming" / "rx-partial").write_bytes(b"\x00" * 100)
    by_hand = write_instance(root / "by-hand" / "one.dcm")
    next(root.rglob(f"{sent.SOPInstanceUID}.dcm")).unlink()

    def indexed(uid: str) -> bool:
        index = Index(root / "index.sqlite")
        try:
            return index.instance_path(uid) is not None
        finally:
            index.close()

    plain = serve_process(root=root)
    plain.process.stop()
    assert "removed 1 partial transfer" in plain.process.log_tail()
    assert not (root / ".incoming" / "rx-partial").exists()
    assert not indexed(str(by_hand.SOPInstanceUID)) and indexed(str(sent.SOPInstanceUID))

    rescanned = serve_process("--rescan", root=root)
    rescanned.process.stop()
    log = rescanned.process.log_tail()
    assert "indexed 1 file it lacked" in log and "dropped 1 row whose file is gone" in log, log
    assert indexed(str(by_hand.SOPInstanceUID)) and not indexed(str(sent.SOPInstanceUID))


# ---------------------------------------------------------------------------------------------
# The command line


def test_serve_reindex_rebuilds_the_index(serve_archive: ServeFactory, tmp_path: Path) -> None:
    root = tmp_path / "arch"
    served = serve_archive(root=root)
    for _ in range(3):
        send(served, make_dataset())
    served.stop()
    for name in ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm"):
        (root / name).unlink(missing_ok=True)
    (root / "junk.txt").write_text("not dicom")
    result = run_cli("serve", str(root), "--reindex")
    assert result.exit_code == 0, result.stderr
    assert "index rebuilt" in result.stderr and ": 3 instances, 1 unreadable" in result.stderr
    assert "junk.txt" in result.stderr


def test_serve_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", str(tmp_path / "a"), "--port", str(port))
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-2].startswith(f"dcmtool: error: cannot listen on "
                                                     f"127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layout", "{PatientID}/x.dcm"], "--layout: layout '{PatientID}/x.dcm': must contain"),
        (["--duplicates", "maybe"], "--duplicates: expected reject, ignore or overwrite"),
        (["--min-free", "lots"], "--min-free: 'lots' is not a size"),
        (["--accept-ts", "mp3"], "--accept-ts: unknown transfer syntax 'mp3'"),
        (["--aet", "A_VERY_LONG_AE_TITLE"], "--aet: 'A_VERY_LONG_AE_TITLE' is longer than 16"),
    ],
)
def test_serve_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("serve", str(tmp_path / "a"), *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"dcmtool: error: {message}")


def test_serve_config_section_is_validated(isolated_config: Path, tmp_path: Path) -> None:
    isolated_config.write_text("[serve]\nprot = 104\n")
    result = run_cli("serve", str(tmp_path / "a"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"dcmtool: error: {isolated_config}: [serve] prot: unknown key")


def test_serve_settings_precedence(tmp_path: Path) -> None:
    from dcmtool.config import load_config
    from dcmtool.scp.options import ServeRequest, build_serve_options

    path = tmp_path / "config.toml"
    path.write_text('[serve]\nport = 4242\nae_title = "FROMFILE"\nroot = "store"\n'
                    'duplicates = "overwrite"\nallow = ["CT1"]\nmin_free = "1G"\n')
    config = load_config(path)
    options, policy, root = build_serve_options(ServeRequest(), config)
    assert (options.port, options.ae_title, options.allowed_calling_aets) == (
        4242, "FROMFILE", ("CT1",))
    assert (policy.duplicates, policy.min_free_bytes, root) == (
        "overwrite", 2**30, tmp_path / "store")
    options, policy, root = build_serve_options(
        ServeRequest(port=104, ae_title="FLAG", root=tmp_path / "x", duplicates="reject"), config)
    assert (options.port, options.ae_title, policy.duplicates, root) == (
        104, "FLAG", "reject", tmp_path / "x")
    defaults, _, default_root = build_serve_options(ServeRequest(), load_config(None))
    assert (defaults.port, defaults.ae_title, defaults.bind, str(default_root)) == (
        11112, "DCMTOOL", "127.0.0.1", "dcmtool-archive")


def test_a_non_ascii_uid_is_refused_and_the_association_survives(
        serve_archive: ServeFactory) -> None:
    served = serve_archive()
    bad, good = make_dataset(), make_dataset()
    bad.SOPInstanceUID = "1.2.3.\u00e94"
    with associated(served) as assoc:
        assert assoc.send_c_store(bad).Status == 0x0116
        assert assoc.send_c_store(good).Status == 0x0000
    assert len(served.files()) == 1
    assert not any((served.root / ".incoming").iterdir())


def test_reserved_names_do_not_hide_instances(serve_archive: ServeFactory,
                                              tmp_path: Path) -> None:
    root = tmp_path / "arch"
    served = serve_archive(root=root)
    for patient in ("worklist", "index.sqlite", "audit.jsonl"):
        assert send(served, make_dataset(PatientID=patient)).Status == 0x0000
    served.stop()
    from dcmtool.archive.storage import Archive

    archive = Archive(root, StorePolicy(min_free_bytes=0))
    assert archive.reconcile().consistent
    assert archive.index.counts()["instances"] == 3
    archive.close()


def test_a_truncated_deflated_data_set_is_refused(
        serve_archive: ServeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zlib

    served = serve_archive()
    source = tmp_path / "deflated.dcm"
    write_instance(source)
    data = source.read_bytes()
    head = len(data) - len(dataset_bytes(source))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = compressor.compress(dataset_bytes(source)) + compressor.flush()
    meta = dcmread(source, stop_before_pixels=True).file_meta
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    from io import BytesIO

    from pydicom.filewriter import write_file_meta_info

    header = BytesIO()
    header.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(header, meta)  # type: ignore[arg-type]
    assert head > 0
    source.write_bytes(header.getvalue() + deflated[: len(deflated) // 2])
    status = send_file(served, source, monkeypatch)
    assert status.Status == 0xC000
    assert "truncated" in status.ErrorComment
    assert served.files() == []


def test_serve_fsyncs_each_instance_before_acknowledging_it(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive's default: by the time the sender hears success, the instance's file has
    been fsynced (the sender may delete its copy then)."""
    from dcmtool.archive import disk

    synced: list[Path] = []
    real_fsync = disk.fsync_file

    def record(path: Path) -> None:
        synced.append(Path(path))
        real_fsync(path)

    monkeypatch.setattr(disk, "fsync_file", record)
    served = serve_archive()
    write_instance(tmp_path / "one.dcm")
    assert run_cli("store", served.address, str(tmp_path / "one.dcm")).exit_code == 0
    assert len(synced) == 1 and synced[0].parent.name == ".incoming"


def test_a_second_server_on_an_archive_in_use_is_refused(tmp_path: Path,
                                                         serve_process: Any) -> None:
    """Two servers on one folder lose data (the second deletes the first one's partial
    transfers as crash leftovers): the folder is locked while served, and the second process
    says by whom, exits 1, and leaves the first one's files alone."""
    root = tmp_path / "arch"
    first = serve_process(root=root)
    partial = root / ".incoming" / "rx-in-flight"
    partial.write_bytes(b"\x00" * 100)  # a transfer in progress, as the first server sees it
    reindex = run_cli("serve", str(root), "--reindex")
    assert reindex.exit_code == 1 and "is in use by" in reindex.stderr
    second = run_cli("serve", str(root), "--port", "0")
    assert second.exit_code == 1
    assert second.stderr.startswith(f"dcmtool: error: the archive {root.resolve()} is in use by "
                                    f"PID {first.process.pid} (dcmtool serve)")
    assert partial.exists()
    first.process.stop()
    again = run_cli("serve", str(root), "--reindex")  # the lock went with the process
    assert again.exit_code == 0, again.stderr


def _relabelled(source: Path, target: Path, transfer_syntax: str) -> Path:
    """``source``'s data set, byte for byte, behind File Meta claiming ``transfer_syntax``."""
    from dcmtool.dicom.part10 import FileMeta

    ds = dcmread(source, stop_before_pixels=True)
    meta = FileMeta(str(ds.SOPClassUID), str(ds.SOPInstanceUID), transfer_syntax,
                    IMPLEMENTATION_CLASS_UID, "TEST")
    target.write_bytes(meta.file_header() + dataset_bytes(source))
    return target


@pytest.mark.parametrize(("source", "claimed", "problem"), [
    ("native", "1.2.840.10008.1.2.4.90",
     "Pixel Data is native (length 8192) under j2k-lossless, which needs it encapsulated"),
    ("encapsulated", EXPLICIT,
     "Pixel Data is encapsulated under explicit, which needs it native"),
])
def test_pixel_data_that_contradicts_the_transfer_syntax_is_refused(
        serve_archive: ServeFactory, tmp_path: Path, source: str, claimed: str,
        problem: str) -> None:
    """PS3.5 A.4: such a file breaks every reader later (DCMTK's storescp refuses it too).
    serve answers 0xC000 with a comment naming the problem, and stores nothing."""
    from support.datasets import pydicom_test_file

    served = serve_archive()
    if source == "native":
        original = tmp_path / "native.dcm"
        write_instance(original, rows=64, columns=64)
    else:
        original = pydicom_test_file("JPEG2000.dcm")
    path = _relabelled(original, tmp_path / "contradicting.dcm", claimed)
    result = run_cli("store", served.address, str(path))
    assert result.exit_code == 6, result.stderr
    assert "0xC000" in result.stderr and problem[:60] in result.stderr
    assert served.archive.index.counts()["instances"] == 0
    assert any(problem in entry.get("reason", "") for entry in audit(served))


def test_a_full_disk_answers_a700_and_keeps_the_association(
        serve_archive: ServeFactory, small_disk: Path, tmp_path: Path) -> None:
    """The archive on a 3 MiB tmpfs: instances are stored until the disk is full; the one that
    no longer fits is read to its end and answered 0xA700 (not an abort), its partial file is
    removed at once, and the association goes on: the next, smaller instance is stored."""
    import numpy as np

    served = serve_archive(root=small_disk / "archive")
    statuses = []
    with associated(served, (("1.2.840.10008.5.1.4.1.1.2", (EXPLICIT,)),)) as assoc:
        for index in range(4):  # 1 MiB each: the fourth cannot fit
            ds = make_dataset(rows=512, columns=1024, InstanceNumber=index + 1)
            ds.PixelData = np.full((512, 1024), index, np.uint16).tobytes()
            statuses.append(assoc.send_c_store(ds))
        assert list((served.root / ".incoming").iterdir()) == []
        small = assoc.send_c_store(make_dataset(rows=8, columns=8))
        assert assoc.is_established
    codes = [s.Status for s in statuses]
    assert 0xA700 in codes and codes[0] == 0x0000
    refused = statuses[codes.index(0xA700)]
    assert "No space left on device" in str(refused.get("ErrorComment", ""))
    assert small.Status == 0x0000
    assert served.archive.index.counts()["instances"] == codes.count(0x0000) + 1


def test_a_deflate_bomb_is_refused_before_a_big_scratch_file(
        serve_archive: ServeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """200 MiB of zeros deflated to ~200 KB: the structure check inflates into a scratch file
    bounded by 100 times the compressed size (at least 64 MiB), not by 1 GiB, and refuses it
    (0xC000) with that bound in the comment; nothing is stored, no scratch file is left."""
    import struct
    import zlib
    from io import BytesIO

    from pydicom.filewriter import write_file_meta_info

    served = serve_archive()
    source = tmp_path / "bomb.dcm"
    write_instance(source)
    meta = dcmread(source, stop_before_pixels=True).file_meta
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    size = 200 << 20
    parts = [compressor.compress(dataset_bytes(source)[:-8])]  # everything but a small tail
    parts.append(compressor.compress(struct.pack("<HH2sHI", 0x0009, 0x1010, b"OB", 0, size)))
    zeros = bytes(1 << 20)
    parts += [compressor.compress(zeros) for _ in range(size >> 20)]
    parts.append(compressor.flush())
    header = BytesIO()
    header.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(header, meta)  # type: ignore[arg-type]
    source.write_bytes(header.getvalue() + b"".join(parts))
    status = send_file(served, source, monkeypatch)
    assert status.Status == 0xC000
    assert "deflated data inflates past 64 MiB" in status.ErrorComment
    assert served.files() == []
    assert list((served.root / ".incoming").iterdir()) == []


@pytest.mark.parametrize("first", ["big", "small"])
def test_min_free_stops_an_instance_before_it_fills_the_disk(
        serve_archive: ServeFactory, small_disk: Path, monkeypatch: pytest.MonkeyPatch,
        first: str) -> None:
    """A 4 MiB instance to an archive on a 3 MiB disk that must keep 1 MiB free: receiving
    stops when the minimum would be crossed (checked every 256 KiB here), the answer is
    0xA700 naming the minimum, not a full disk; the next small instance is stored. The same
    whether it is the association's first C-STORE (through pynetdicom) or a later one (read
    off the socket by serve)."""
    import numpy as np

    from dcmtool.net import space
    from dcmtool.net.patches.incoming import IncomingFile

    monkeypatch.setattr(IncomingFile, "CHECK_EVERY", 256 << 10)
    monkeypatch.setattr(space, "CHECK_EVERY", 256 << 10)
    served = serve_archive(root=small_disk / "archive",
                           policy=StorePolicy(min_free_bytes=1 << 20))
    with associated(served, (("1.2.840.10008.5.1.4.1.1.2", (EXPLICIT,)),)) as assoc:
        if first == "small":
            assert assoc.send_c_store(make_dataset(rows=8, columns=8)).Status == 0x0000
        big = make_dataset(rows=1024, columns=2048)
        big.PixelData = np.ones((1024, 2048), np.uint16).tobytes()
        refused = assoc.send_c_store(big)
        small = assoc.send_c_store(make_dataset(rows=8, columns=8))
    assert refused.Status == 0xA700
    assert "minimum free space (1 MiB)" in str(refused.ErrorComment)
    assert small.Status == 0x0000
    assert list((served.root / ".incoming").iterdir()) == []
