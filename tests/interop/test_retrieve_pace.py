"""dcmtool get and move -o receive at the peer's pace and report only what is durable.

Each received file is fsynced in the background while the next ones arrive (not all at the
end); the command waits for the last ones and for the folders before it reports success, and a
file that cannot be written to disk (a failing fsync: EIO, ENOSPC) fails the command, is named
and is removed. Real associations with an in-process dcmtool serve; the fsync is replaced at
the library boundary (``archive.disk.fsync_file``) to watch it or to make it fail.
"""

from __future__ import annotations

import errno
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from support.archive import ServedArchive, write_site_config
from support.datasets import write_instance
from support.peers import free_port, run_cli

COUNT = 6


@dataclass
class Study:
    env: dict[str, str]
    uid: str
    pixels: dict[str, bytes] = field(default_factory=dict)  # SOP Instance UID -> pixel data


@pytest.fixture
def study(serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> Study:
    """A serve archive holding one study of ``COUNT`` CT images; it can move to our [local]
    AE (DCMTOOL), which the config names together with the archive (node ARCHIVE)."""
    local_port = free_port()
    served = serve_archive(destinations=(("DCMTOOL", "127.0.0.1", local_port),))
    loaded = Study(write_site_config(tmp_path / "config.toml", served, local_port),
                   generate_uid())
    series = generate_uid()
    for number in range(1, COUNT + 1):
        ds = write_instance(tmp_path / "load" / f"{number}.dcm", rows=64, columns=64,
                            StudyInstanceUID=loaded.uid, SeriesInstanceUID=series,
                            InstanceNumber=number)
        loaded.pixels[str(ds.SOPInstanceUID)] = ds.PixelData
    result = run_cli("store", "ARCHIVE", tmp_path / "load", env=loaded.env)
    assert result.exit_code == 0, result.stderr
    return loaded


def retrieve(command: str, study: Study, out: Path, *args: str) -> Any:
    return run_cli(command, "ARCHIVE", "--study", study.uid, "-o", out, *args, env=study.env)


def received(out: Path) -> dict[str, bytes]:
    """SOP Instance UID -> pixel data of every file under ``out``."""
    found = {}
    for path in out.rglob("*.dcm"):
        ds = dcmread(path)
        found[str(ds.SOPInstanceUID)] = ds.PixelData
    return found


@pytest.mark.parametrize("command", ["get", "move"])
def test_each_file_is_fsynced_as_the_next_arrive_and_all_before_the_report(
        study: Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    """Each stored file's fsync runs while the retrieval goes on: after a file is stored the
    receiver waits (up to 10 s) for that file's fsync, which today's code starts at once in
    the background; code that fsyncs only when the receiver closes never gets there. Every
    file and folder is durable when the command reports."""
    from dcmtool.archive import disk, storage

    synced: list[Path] = []
    folders: list[Path] = []
    done: dict[Path, threading.Event] = {}
    late: list[Path] = []  # stored files whose fsync had not run before the next arrived
    lock = threading.Lock()
    real_fsync, real_folder_sync = disk.fsync_file, disk.fsync_directory
    real_store = storage.Archive.store_received

    def fsync(path: Path) -> None:
        real_fsync(path)
        with lock:
            synced.append(Path(path))
            done.setdefault(Path(path), threading.Event()).set()

    def folder_sync(path: Path) -> None:
        real_folder_sync(path)
        folders.append(Path(path))

    def store(self: Any, temp_path: Path, **kwargs: Any) -> Any:
        outcome = real_store(self, temp_path, **kwargs)
        if outcome.path is not None and not late:
            with lock:
                event = done.setdefault(outcome.path, threading.Event())
            if not event.wait(10):
                late.append(outcome.path)
        return outcome

    monkeypatch.setattr(disk, "fsync_file", fsync)
    monkeypatch.setattr(disk, "fsync_directory", folder_sync)
    monkeypatch.setattr(storage.Archive, "store_received", store)
    out = tmp_path / "out"
    result = retrieve(command, study, out)
    assert result.exit_code == 0, result.stderr
    assert late == [], "a file's fsync waited for the receiver to close"
    files = sorted(out.rglob("*.dcm"))
    assert received(out) == study.pixels  # complete, readable, the right contents
    assert sorted(synced) == files  # each file once, all before the command returned
    assert {out.resolve(), out.resolve() / study.uid} <= set(folders)  # and their entries


@pytest.mark.parametrize("command,args", [("get", ()), ("move", ()), ("get", ("--archive",))])
def test_a_file_that_cannot_be_written_to_disk_fails_the_command_and_is_named(
        study: Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str,
        args: tuple[str, ...]) -> None:
    """An fsync that fails (EIO) is an error for that file: exit 7, the file is named on
    stderr and in --json, and removed (and not indexed in an archive); the others arrive."""
    from dcmtool.archive import disk

    victim = sorted(study.pixels)[2]
    real_fsync = disk.fsync_file

    def failing(path: Path) -> None:
        if victim in Path(path).name:
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(path)

    monkeypatch.setattr(disk, "fsync_file", failing)
    out = tmp_path / "out"
    result = retrieve(command, study, out, "--json", *args)
    assert result.exit_code == 7, result.stdout + result.stderr
    assert victim in result.stderr and "Input/output error" in result.stderr
    summary = json.loads(result.stdout)
    assert len(summary["not_written"]) == 1 and victim in summary["not_written"][0]
    assert summary["received"] == COUNT - 1
    assert received(out) == {uid: data for uid, data in study.pixels.items() if uid != victim}
    if args:  # the archive's index does not claim the removed file
        from dcmtool.archive.index import Index

        index = Index(out / "index.sqlite")
        try:
            assert index.instance_path(victim) is None
            assert index.counts()["instances"] == COUNT - 1
        finally:
            index.close()


def test_a_folder_that_cannot_be_synced_fails_the_command(
        study: Study, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder whose entries cannot be made durable (here: no descriptor left to open it)
    leaves its files not durable: the command fails and says so, it does not report them."""
    from dcmtool.archive import disk

    real_open = disk.os.open

    def no_folder_descriptors(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & getattr(os, "O_DIRECTORY", 0):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(disk.os, "open", no_folder_descriptors)
    result = retrieve("get", study, tmp_path / "out", "--json")
    assert result.exit_code == 7, result.stdout + result.stderr
    assert "Too many open files" in result.stderr
