"""Group commit: associations storing at the same time share index transactions and folder
fsyncs, every instance is durable and indexed when its store returns, and a file whose fsync
fails is refused alone, leaving neither file nor row."""

from __future__ import annotations

import errno
import shutil
import threading
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from support.datasets import write_instance

from dcmtool.archive import disk
from dcmtool.archive.index import Index
from dcmtool.archive.storage import Archive, StoreOutcome, StorePolicy

EXPLICIT_LE = "1.2.840.10008.1.2.1"


def received_copy(archive: Archive, source: Path, name: str) -> Path:
    target = archive.incoming / name
    shutil.copyfile(source, target)
    return target


def test_concurrent_stores_share_transactions_and_folder_fsyncs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    threads, per_thread = 6, 25
    sources = [[write_instance(tmp_path / "sent" / f"{t}-{n}.dcm", PatientID=f"P{t}",
                               StudyInstanceUID=f"2.25.{t}", SeriesInstanceUID=f"2.25.{t}.1")
                for n in range(per_thread)] for t in range(threads)]
    archive = Archive(tmp_path / "archive", StorePolicy(min_free_bytes=0))
    archive.recover()
    transactions: list[int] = []
    folder_syncs: list[Path] = []
    real_commit, real_folder_sync = Index.commit_batch, disk.fsync_directory

    def commit(self: Index, records: list, journal: list | None = None) -> None:
        transactions.append(len(records))
        real_commit(self, records, journal)

    def folder_sync(path: Path) -> None:
        folder_syncs.append(path)
        real_folder_sync(path)

    monkeypatch.setattr(Index, "commit_batch", commit)
    monkeypatch.setattr(disk, "fsync_directory", folder_sync)
    durable_when_answered: list[bool] = []
    start = threading.Barrier(threads)

    def sender(number: int) -> None:
        start.wait()
        for n, ds in enumerate(sources[number]):
            temp = received_copy(archive, tmp_path / "sent" / f"{number}-{n}.dcm",
                                 f"rx-{number}-{n}")
            outcome = archive.store_received(
                temp, sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
                transfer_syntax=EXPLICIT_LE, calling_ae=f"S{number}")
            assert outcome.stored, outcome.message
            # Answered: its row is committed and its folder was fsynced after it arrived.
            durable_when_answered.append(
                archive.index.instance_path(str(ds.SOPInstanceUID)) is not None
                and outcome.path is not None and outcome.path.is_file())

    workers = [threading.Thread(target=sender, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    total = threads * per_thread
    assert durable_when_answered == [True] * total
    assert sum(transactions) == total
    # Shared: fewer transactions and folder fsyncs than instances.
    assert len(transactions) < total and max(transactions) > 1, transactions
    assert len(folder_syncs) < total + threads * 4
    archive.close()
    reopened = Archive(tmp_path / "archive", StorePolicy(min_free_bytes=0))
    try:
        assert reopened.index.counts()["instances"] == total
        assert reopened.index.pending() == []  # a clean close leaves nothing to check
    finally:
        reopened.close()


def test_a_file_whose_fsync_fails_is_refused_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = Archive(tmp_path / "archive", StorePolicy(min_free_bytes=0))
    good = write_instance(tmp_path / "good.dcm")
    bad = write_instance(tmp_path / "bad.dcm")
    real_fsync = disk.fsync_file

    def failing(path: Path) -> None:
        if Path(path).name == "rx-bad":
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(path)

    monkeypatch.setattr(disk, "fsync_file", failing)
    try:
        outcomes = {}
        for name, ds in (("good", good), ("bad", bad)):
            temp = received_copy(archive, tmp_path / f"{name}.dcm", f"rx-{name}")
            outcomes[name] = archive.store_received(
                temp, sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
                transfer_syntax=EXPLICIT_LE, calling_ae="S")
        assert outcomes["good"].stored
        assert outcomes["bad"].status == 0xA700 and "Input/output error" in \
            outcomes["bad"].message
        assert archive.index.instance_path(str(bad.SOPInstanceUID)) is None
        assert [p.name for p in archive.instance_files()] == [outcomes["good"].path.name]
        assert list(archive.incoming.iterdir()) == []
    finally:
        archive.close()


def store(archive: Archive, source: Path, name: str, ds: Dataset) -> StoreOutcome:
    temp = received_copy(archive, source, name)
    return archive.store_received(temp, sop_class_uid=str(ds.SOPClassUID),
                                  sop_instance_uid=str(ds.SOPInstanceUID),
                                  transfer_syntax=EXPLICIT_LE, calling_ae="S")


def test_an_overwrite_whose_folder_cannot_be_synced_keeps_the_stored_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Overwrite in place, then the folder's fsync fails: the sender hears 0xA700, and the
    instance is still stored and indexed (the file there is not deleted)."""
    archive = Archive(tmp_path / "archive", StorePolicy(min_free_bytes=0,
                                                        duplicates="overwrite"))
    ds = write_instance(tmp_path / "one.dcm")
    first = store(archive, tmp_path / "one.dcm", "rx-1", ds)
    assert first.stored
    real_folder_sync = disk.fsync_directory

    def failing(path: Path) -> None:
        if first.path is not None and Path(path) == first.path.parent:
            raise OSError(errno.EIO, "Input/output error")
        real_folder_sync(path)

    monkeypatch.setattr(disk, "fsync_directory", failing)
    again = store(archive, tmp_path / "one.dcm", "rx-2", ds)
    monkeypatch.undo()
    try:
        assert again.status == 0xA700
        path = archive.index.instance_path(str(ds.SOPInstanceUID))
        assert path is not None and (archive.root / path).is_file()
    finally:
        archive.close()


def test_an_unforeseen_failure_in_a_commit_is_a_status_and_the_next_start_walks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = Archive(tmp_path / "archive", StorePolicy(min_free_bytes=0))
    archive.recover()
    ds = write_instance(tmp_path / "one.dcm")

    def broken(self: Index, uids: list[str]) -> dict[str, str]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Index, "instance_paths", broken)
    try:
        outcome = store(archive, tmp_path / "one.dcm", "rx-1", ds)
        assert outcome.status == 0xA700, outcome.message
        assert "RuntimeError: a bug" in outcome.message
        assert archive.index.folder_walked() is None  # the next start checks every file
    finally:
        monkeypatch.undo()
        archive.close()


def test_an_archive_receiving_without_a_journal_is_walked_after_a_crash(
        tmp_path: Path) -> None:
    """get/move -o --archive fsync at the end, without a journal: while they receive, the
    index says its folder must be walked at the next start; a clean close trusts it again."""
    archive = Archive(tmp_path / "archive", StorePolicy(min_free_bytes=0, durable_each=False))
    archive.recover()
    assert archive.index.folder_walked() is not None
    ds = write_instance(tmp_path / "one.dcm")
    assert store(archive, tmp_path / "one.dcm", "rx-1", ds).stored
    assert archive.index.folder_walked() is None  # a crash now: the next start walks
    archive.close()
    reopened = Archive(tmp_path / "archive", StorePolicy(min_free_bytes=0))
    try:
        assert reopened.index.folder_walked() is not None
    finally:
        reopened.close()
