"""Storing received instances: validate, fsync, index, place — then acknowledge.

The received bytes are never decoded and re-encoded. The data set of a C-STORE is streamed
into a file under ``ROOT/.incoming`` (same file system as the archive) behind File Meta
Information that names dcmtool and the sending AE; this module checks it (``reading``) and
hands it to the group commit (``groupcommit``), which indexes it and moves it into place
with the instances of the other associations. A status is returned for every outcome;
nothing raises. Keeping the index equal to the folder is ``recovery``'s.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dcmtool.archive import disk, recovery
from dcmtool.archive.audit import AuditLog, utc_now
from dcmtool.archive.groupcommit import GroupCommit, Placement, Syncing
from dcmtool.archive.index import Index, IndexFailure, InstanceRecord
from dcmtool.archive.layout import DEFAULT_PATTERN, Layout, LayoutError
from dcmtool.archive.lock import LOCK_FILE, FolderLock
from dcmtool.archive.reading import HeaderReader
from dcmtool.archive.recovery import ReconcileReport
from dcmtool.dicom import status
from dcmtool.dicom.uids import uid_problem
from dcmtool.errors import PartialFailure

LOG = logging.getLogger("dcmtool.archive")

DuplicatePolicy = Literal["reject", "ignore", "overwrite"]
INCOMING = ".incoming"
INDEX_FILE = "index.sqlite"
AUDIT_FILE = "audit.jsonl"
MPPS_FOLDER = "mpps"  # one file per performed procedure step (archive.mpps)
#: Names in ROOT that are not instances.
RESERVED = {INCOMING, INDEX_FILE, f"{INDEX_FILE}-wal", f"{INDEX_FILE}-shm", AUDIT_FILE, "worklist",
            LOCK_FILE, MPPS_FOLDER}

# C-STORE statuses (PS3.4 B.2.3, and seed 004's table)
SUCCESS = status.SUCCESS
DUPLICATE = status.DUPLICATE_SOP_INSTANCE
OUT_OF_RANGE = 0x0116
OUT_OF_RESOURCES = status.OUT_OF_RESOURCES
DOES_NOT_MATCH = status.IDENTIFIER_DOES_NOT_MATCH
CANNOT_UNDERSTAND = status.CANNOT_UNDERSTAND


@dataclass(frozen=True)
class StorePolicy:
    layout: Layout = field(default_factory=lambda: Layout.parse(DEFAULT_PATTERN))
    #: A SOP Instance UID already stored: keep the stored copy and answer success, as
    #: Orthanc and storescp do (a folder sent again must not fail).
    duplicates: DuplicatePolicy = "ignore"
    min_free_bytes: int = 100 * 1024 * 1024
    #: fsync each instance before it is acknowledged (serve: the sender may delete its copy
    #: then). False (get, move -o: the peer keeps its copies): each file is fsynced in the
    #: background once in place; close() waits for those and fsyncs the folders.
    durable_each: bool = True


@dataclass(frozen=True)
class StoreOutcome:
    status: int
    message: str
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    study_instance_uid: str | None = None
    path: Path | None = None
    size: int = 0
    #: ``path`` relative to the archive root, '/' separated (as the index has it).
    relative: str | None = None

    @property
    def stored(self) -> bool:
        return self.status == SUCCESS and self.path is not None


class NotDurable(PartialFailure):
    """Received files whose fsync failed (EIO, ENOSPC): removed, and named."""

    def __init__(self, failures: list[tuple[Path, OSError]]) -> None:
        self.files = [path for path, _ in failures]
        shown = "; ".join(f"{path} ({error.strerror or error})" for path, error in failures[:3])
        more = f" and {len(failures) - 3} more" if len(failures) > 3 else ""
        super().__init__(f"{len(failures)} received file(s) could not be written to disk "
                         f"and were removed: {shown}{more}",
                         hint="check the disk and the file system's log, then retrieve again")


class Archive:
    """A folder of DICOM files with an SQLite index and an audit log."""

    def __init__(self, root: Path, policy: StorePolicy | None = None, *,
                 holder: str = "dcmtool", plain: bool = False) -> None:
        """Open (creating) the archive in ``root`` for this process alone: ``ArchiveInUse``
        when another has it open (``holder`` says what this one does, for that message).

        ``plain``: a folder of files and nothing else (what ``get -o`` and ``move -o`` write,
        like DCMTK's ``-od``): the index lives in memory for this run, there is no audit
        trail and no lock, and partial transfers go to a private hidden folder removed at
        ``close()``. Files already in the folder are neither read nor reported.
        """
        self.root = root.resolve()
        self.policy = policy or StorePolicy()
        self.plain = plain
        self.root.mkdir(parents=True, exist_ok=True)
        self._folder_lock = FolderLock(self.root)
        if plain:
            self.incoming = Path(tempfile.mkdtemp(prefix=".dcmtool-incoming-", dir=self.root))
            self.index = Index(Path(":memory:"))
            self.audit = AuditLog(None)
        else:
            self._folder_lock.acquire(holder)
            try:
                self.incoming = self.root / INCOMING
                self.incoming.mkdir(exist_ok=True)
                self.index = Index(self.root / INDEX_FILE,
                                   durable_commits=self.policy.durable_each)
                self.audit = AuditLog(self.root / AUDIT_FILE)
            except BaseException:
                self._folder_lock.release()
                raise
        self._lock = threading.Lock()
        self.reader = HeaderReader(self.incoming)
        self._folder = recovery.Folder(self.root, self.incoming, self.index, self.reader,
                                       frozenset(RESERVED))
        self._checked_dirs: set[str] = set()
        self._syncing: list[Syncing] = []  # durable_each=False: fsyncs under way
        self._new_folders: set[Path] = set()  # durable_each=False: parents of new folders
        self._commits = GroupCommit(self.root, self.index, self.policy.duplicates,
                                    durable=self.policy.durable_each, behind=self._behind,
                                    settle=lambda journal: recovery.settle(self._folder,
                                                                           journal))

    def close(self) -> None:
        """Close the index and the audit log, after ``sync()``."""
        try:
            self._commits.close()  # the batch under way ends first; no new one starts
            self.sync()
            if self._commits.unjournaled:
                self.index.mark_folder_walked(utc_now())  # every file durable: trust it again
        finally:
            try:
                with contextlib.suppress(IndexFailure):
                    self.index.clear_pending()  # every batch finished: nothing to check
                self.index.close()
                self.audit.close()
            finally:
                if self.plain:
                    shutil.rmtree(self.incoming, ignore_errors=True)
                else:
                    self._folder_lock.release()

    def _behind(self, item: Syncing | Path) -> None:
        with self._lock:
            if isinstance(item, Path):
                self._new_folders.add(item)
            else:
                self._syncing.append(item)

    def sync(self) -> None:
        """Wait for the background fsyncs (``durable_each=False``), then fsync their folders
        once each. A file that cannot be made durable is removed with its index row;
        ``NotDurable`` names them once every other file is durable."""
        with self._lock:
            syncing, self._syncing = self._syncing, []
            new_folders, self._new_folders = self._new_folders, set()
        if not syncing and not new_folders:
            return
        failed: dict[Path, tuple[Syncing, OSError]] = {}
        for item in syncing:
            try:
                item.done.result()
            except OSError as exc:
                failed[item.path] = (item, exc)
        folders = list(dict.fromkeys([*(item.path.parent for item in syncing), *new_folders]))
        for folder, done in [(f, disk.SYNC.submit(disk.fsync_directory, f)) for f in folders]:
            try:
                done.result()
            except OSError as exc:  # a file whose folder (or a folder above) is not durable
                failed.update((item.path, (item, exc)) for item in syncing
                              if item.path.is_relative_to(folder) and item.path not in failed)
        if failed:
            for item, _ in failed.values():
                self._discard(item)
            raise NotDurable([(path, error) for path, (_, error) in failed.items()])

    def _discard(self, item: Syncing) -> None:
        with contextlib.suppress(OSError):
            item.path.unlink()
        with contextlib.suppress(IndexFailure):
            self.index.remove(item.sop_instance_uid,
                              item.path.relative_to(self.root).as_posix())

    # -- storing ----------------------------------------------------------------------------

    def store_received(
        self,
        temp_path: Path,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        calling_ae: str | None,
        data: bytes | bytearray | None = None,
    ) -> StoreOutcome:
        """Validate and file a received instance at ``temp_path`` (inside ``.incoming``;
        ``data``: its bytes, when the receiver kept them: checked without reading it back).

        On success the file has moved into the archive; otherwise it is deleted.
        """
        outcome = self._store(temp_path, sop_class_uid, sop_instance_uid, transfer_syntax,
                              calling_ae, data)
        if not outcome.stored:
            temp_path.unlink(missing_ok=True)
        return outcome

    def _store(self, temp: Path, sop_class: str, sop_instance: str, transfer_syntax: str,
               calling_ae: str | None, data: bytes | bytearray | None) -> StoreOutcome:
        def refuse(status: int, message: str, **extra: Any) -> StoreOutcome:
            return StoreOutcome(status, message, sop_instance_uid=sop_instance,
                                sop_class_uid=sop_class, **extra)

        if self.policy.min_free_bytes:
            free = shutil.disk_usage(self.root).free
            if free < self.policy.min_free_bytes:
                return refuse(OUT_OF_RESOURCES,
                              f"only {free // 2**20} MiB free in {self.root} "
                              f"(the minimum is {self.policy.min_free_bytes // 2**20} MiB)")
        problem = uid_problem(sop_instance)
        if problem:
            return refuse(OUT_OF_RANGE, f"Affected SOP Instance UID {sop_instance!r} {problem}")
        # The file's fsync runs while this thread checks it and the index commits (fsyncs
        # release the GIL); it is awaited before the rename: nothing unsynced is placed.
        synced = disk.SYNC.submit(disk.fsync_file, temp) if self.policy.durable_each else None
        try:
            values = self.reader.received(temp, transfer_syntax, data)
        except Exception as exc:  # any parse failure is the sender's data
            return refuse(CANNOT_UNDERSTAND, f"cannot parse the data set: {exc}")
        if not values.get("SOPClassUID"):
            return refuse(DOES_NOT_MATCH, "the data set has no SOP Class UID")
        if values["SOPClassUID"] != sop_class:
            return refuse(DOES_NOT_MATCH,
                          f"data set SOP Class UID {values['SOPClassUID']} does not match "
                          f"the request's {sop_class}")
        if values.get("SOPInstanceUID") != sop_instance:
            return refuse(DOES_NOT_MATCH,
                          f"data set SOP Instance UID {values.get('SOPInstanceUID')} does not "
                          f"match the request's {sop_instance}")
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
            value = values.get(keyword)
            if value is None:
                return refuse(DOES_NOT_MATCH, f"the data set has no {keyword}")
            problem = uid_problem(value)
            if problem:
                return refuse(OUT_OF_RANGE, f"{keyword} {value[:80]!r} {problem}")
        study = str(values["StudyInstanceUID"])
        try:
            relative, target = self._target(values)
        except LayoutError as exc:
            return refuse(CANNOT_UNDERSTAND, str(exc))
        size = len(data) if data is not None else temp.stat().st_size
        record = InstanceRecord(values, relative, size, transfer_syntax, utc_now(), calling_ae)
        code, message, path = self._commits.place(Placement(temp, target, record, synced))
        return StoreOutcome(code, message, sop_instance, sop_class, study, path,
                            size if path is not None else 0,
                            relative if path is not None else None)

    def _target(self, values: dict[str, str | None]) -> tuple[str, Path]:
        """The file's path, relative ('/' separated) and absolute; each new folder is checked
        once to be inside the root."""
        parts = self.policy.layout.relative_parts(values)
        if parts[0] in RESERVED:  # e.g. PatientID "worklist": reconcile skips those
            parts[0] += "_"
        folder = "/".join(parts[:-1])
        if folder not in self._checked_dirs:
            self.policy.layout.resolve(self.root, values)  # raises LayoutError if outside
            if len(self._checked_dirs) > 10_000:
                self._checked_dirs.clear()
            self._checked_dirs.add(folder)
        relative = "/".join(parts)
        return relative, self.root / relative

    # -- consistency ------------------------------------------------------------------------

    def instance_files(self) -> Iterator[Path]:
        """Every file in the archive that should be an instance (not the index, log, ...)."""
        return self._folder.instance_files()

    def recover(self) -> ReconcileReport:
        """What start-up does: settle what a stop or crash interrupted (partial transfers,
        the last batch's journal), in time proportional to that, not to the archive; the
        first time an index meets its folder, the whole ``reconcile`` instead."""
        return recovery.recover(self._folder, self.reconcile)

    def reconcile(self, progress: Callable[[int], None] | None = None) -> ReconcileReport:
        """Make the index agree with the whole folder, and report what had to change.

        Partial files of interrupted transfers (``.incoming``) are deleted; files without an
        index row are indexed; rows whose file is gone are dropped.
        """
        return recovery.reconcile(self._folder, self.instance_files(), progress)

    def reindex(self, progress: Callable[[int], None] | None = None) -> tuple[int, list[str]]:
        """Rebuild the index from the files; returns (indexed, unreadable paths)."""
        return recovery.reindex(self._folder, self.instance_files(), progress)
