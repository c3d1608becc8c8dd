"""Start-up recovery is proportional to what a crash interrupted, and exact.

A child process stores instances through the archive and dies (``os._exit``, no cleanup, as
under SIGKILL) at a chosen point of a group commit: inside the index transaction, after the
commit before the renames, after the renames before the folders' fsync. The restart's
``recover()`` must leave the index equal to the folder without walking it (``instance_files``
raises while it runs), delete the partial transfers, and keep every instance whose store
returned.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from support.datasets import make_dataset, write_instance

from dcmtool.archive.storage import Archive, StorePolicy

CHILD = textwrap.dedent("""
    import json, os, shutil, sys
    from pathlib import Path
    from dcmtool.archive import groupcommit, index as index_module
    from dcmtool.archive.storage import Archive, StorePolicy

    root, files, crash_at, policy = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], \\
        sys.argv[4]
    archive = Archive(root, StorePolicy(min_free_bytes=0, duplicates=policy))
    archive.recover()
    stored = []

    def crash(*args, **kwargs):
        print(json.dumps(stored), flush=True)
        os._exit(9)

    for number, (source, sop_class, sop_instance) in enumerate(files):
        received = root / ".incoming" / f"rx-{number}"  # as the network layer leaves it
        shutil.copyfile(source, received)
        if number == len(files) - 1:  # the last store dies at the chosen point
            if crash_at == "in-transaction":
                index_module.Index._add = crash
            elif crash_at == "before-rename":
                groupcommit.os.replace = crash
            elif crash_at == "before-folder-sync":
                groupcommit.disk.fsync_directory = crash
        outcome = archive.store_received(
            received, sop_class_uid=sop_class, sop_instance_uid=sop_instance,
            transfer_syntax="1.2.840.10008.1.2.1", calling_ae="TEST")
        assert outcome.status == 0, outcome.message
        stored.append(sop_instance)
    print(json.dumps(stored), flush=True)
    archive.close()
""")


def to_send(folder: Path, name: str, ds: Dataset | None = None,
            **attributes: str) -> tuple[str, str, str]:
    """A file for the child to store: (path, SOP Class UID, SOP Instance UID)."""
    ds = write_instance(folder / name, ds, **attributes)
    return str(folder / name), str(ds.SOPClassUID), str(ds.SOPInstanceUID)


def run_child(root: Path, files: list[tuple[str, str, str]], crash_at: str,
              policy: str = "ignore") -> list[str]:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), json.dumps(files), crash_at,
                           policy], capture_output=True, text=True, timeout=120)
    assert proc.returncode == (0 if crash_at == "none" else 9), proc.stderr
    return list(json.loads(proc.stdout.splitlines()[-1]))


@pytest.fixture
def restarted(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Archive]]:
    opened: list[Archive] = []
    yield opened
    for archive in opened:
        archive.close()


def recover_without_walking(root: Path, monkeypatch: pytest.MonkeyPatch,
                            opened: list[Archive]) -> tuple[Archive, object]:
    archive = Archive(root, StorePolicy(min_free_bytes=0))
    opened.append(archive)

    def no_walk(self: Archive) -> Iterator[Path]:
        raise AssertionError("start-up walked the whole folder")

    with monkeypatch.context() as patch:
        patch.setattr(Archive, "instance_files", no_walk)
        report = archive.recover()
    return archive, report


def assert_index_is_the_folder(archive: Archive, acknowledged: list[str]) -> None:
    on_disk = {p.relative_to(archive.root).as_posix() for p in archive.instance_files()}
    assert archive.index.paths() == on_disk
    for uid in acknowledged:
        path = archive.index.instance_path(uid)
        assert path is not None and (archive.root / path).is_file(), uid
    assert list(archive.incoming.iterdir()) == []
    assert archive.index.pending() == []


def first_run(root: Path) -> list[str]:
    """An archive with two stored instances, closed cleanly (its folder walked once)."""
    files = [to_send(root.parent / "sent", f"first-{n}", PatientID="P1") for n in range(2)]
    return run_child(root, files, "none")


@pytest.mark.parametrize("crash_at", ["in-transaction", "before-rename", "before-folder-sync"])
def test_a_crash_in_a_group_commit_is_settled_at_start_without_a_walk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restarted: list[Archive],
        crash_at: str) -> None:
    root = tmp_path / "archive"
    kept = first_run(root)
    # One series: the last file's folder exists, so the crash point is in its commit.
    files = [to_send(tmp_path / "sent", f"second-{n}", PatientID="P2", StudyInstanceUID="2.25.1",
                     SeriesInstanceUID="2.25.2") for n in range(3)]
    acknowledged = run_child(root, files, crash_at)
    assert len(acknowledged) == 2  # the third died in its commit
    archive, report = recover_without_walking(root, monkeypatch, restarted)
    assert not report.walked
    assert_index_is_the_folder(archive, kept + acknowledged)
    last = files[-1][2]
    # Placed before the crash: indexed from its file; not placed: neither file nor row.
    assert (archive.index.instance_path(last) is not None) == (crash_at == "before-folder-sync")
    if crash_at != "in-transaction":
        assert report.checked == 1  # the one journal row, not the archive


def test_an_interrupted_overwrite_keeps_one_copy_of_the_instance(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restarted: list[Archive]) -> None:
    """Overwrite with a new path (the layout uses the Patient ID): a crash after the commit
    and before the rename brings back the stored copy; the journal says which it was."""
    root = tmp_path / "archive"
    ds = make_dataset(PatientID="OLD")
    run_child(root, [to_send(tmp_path / "sent", "old", ds)], "none", "overwrite")
    ds.PatientID = "NEW"
    run_child(root, [to_send(tmp_path / "sent", "new", ds)], "before-rename", "overwrite")
    archive, _ = recover_without_walking(root, monkeypatch, restarted)
    assert_index_is_the_folder(archive, [str(ds.SOPInstanceUID)])
    (row,) = archive.index.rows("SELECT PatientID FROM patients p JOIN studies s "
                                "ON s.patient = p.id")
    assert row["PatientID"] == "OLD"


def test_an_index_that_never_saw_its_folder_walked_walks_it_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restarted: list[Archive]) -> None:
    """Files put there by hand, or an index from before the journal: the first start walks
    the folder and indexes them; the next start does not walk."""
    root = tmp_path / "archive"
    orphan = write_instance(root / "by-hand" / "one.dcm")
    archive = Archive(root, StorePolicy(min_free_bytes=0))
    report = archive.recover()
    assert report.walked and report.indexed_orphans == 1
    assert archive.index.instance_path(str(orphan.SOPInstanceUID)) == "by-hand/one.dcm"
    archive.close()
    archive, report = recover_without_walking(root, monkeypatch, restarted)
    assert report.consistent  # type: ignore[attr-defined]
