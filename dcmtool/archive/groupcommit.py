"""Group commit: instances received on every association share one index transaction and one
round of folder fsyncs, and none is acknowledged before all of it is durable.

Each association's thread checks its file and fsyncs it, then ``GroupCommit.place`` queues it
and waits for the commit lock. The thread that gets the lock takes every instance queued by
then (its own among them) and, for all of them at once:

1. applies the duplicate policy (here, one thread at a time, so two associations sending the
   same instance cannot both store it);
2. commits their index rows together with a journal of what is being placed (``pending``),
   in one transaction that is durable when it returns (one WAL fsync for the batch), while
   the files' own fsyncs finish;
3. renames the files into place and fsyncs each folder they went into, in parallel;
4. hands every waiting thread its outcome. The next commit empties the journal.

A crash anywhere leaves at most the last batch in the journal, and start-up checks just those
(``recovery.recover``): a restart costs what the crash interrupted, not the archive's size.
Where the index may disagree with the folder in a way the journal does not record (a failed
undo), the index forgets that its folder was walked, and the next start walks it.

Rows are committed before their files are renamed: a query in that moment (about a
millisecond) can list an instance whose file is not yet in place, or one then refused.
With one association the batch is one instance: the cost is that of storing it alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dcmtool.archive import disk
from dcmtool.archive.index import Index, IndexFailure, InstanceRecord, Pending
from dcmtool.dicom import status
from dcmtool.dicom.files import FILE_MODE

LOG = logging.getLogger("dcmtool.archive")


@dataclass(eq=False)
class Placement:
    """A received and checked file on its way into the archive (its fsync under way)."""

    temp: Path
    target: Path
    record: InstanceRecord
    #: The temporary file's fsync, under way: awaited after the commit, before the rename (a
    #: crash between leaves a journal row whose file never arrived: its row is dropped).
    synced: disk.Job | None = None
    #: Set by the thread that commits it: (status, message, stored path or None).
    result: tuple[int, str, Path | None] | None = None
    #: The path of the stored copy it replaces (duplicate policy "overwrite").
    existing: str | None = None


@dataclass(eq=False)
class Syncing:
    """A file placed without fsync (``durable=False``) and its fsync in the background."""

    path: Path
    sop_instance_uid: str
    done: disk.Job


@dataclass(eq=False)
class GroupCommit:
    """Places files and commits their rows for all the threads that wait (see the module)."""

    root: Path
    index: Index
    duplicates: str  # "reject", "ignore" or "overwrite"
    #: fsync folders before answering (serve). False (get, move -o): each file is fsynced in
    #: the background once in place, and ``behind`` collects them for ``Archive.sync``.
    durable: bool = True
    behind: Callable[[Syncing | Path], None] | None = None
    #: Re-checks the journal's rows after a failed placement (``recovery.settle``).
    settle: Callable[[list[Pending]], object] | None = None
    _queue: list[Placement] = field(default_factory=list)
    _queue_lock: threading.Lock = field(default_factory=threading.Lock)
    _commit_lock: threading.Lock = field(default_factory=threading.Lock)
    _known_folders: set[Path] = field(default_factory=set)
    #: Folders made whose parents' fsync failed: their parents are fsynced at the next use.
    _unsynced_folders: set[Path] = field(default_factory=set)
    _closed: bool = False
    #: durable=False: rows were committed without a journal (``Archive.close`` marks the
    #: folder walked again once every file is durable).
    unjournaled: bool = False

    def place(self, placement: Placement) -> tuple[int, str, Path | None]:
        """Commit ``placement`` with whatever else is waiting; its (status, message, path).
        Never raises: the archive's failures, even unforeseen ones, are a status."""
        with self._queue_lock:
            self._queue.append(placement)
        with self._commit_lock:
            if placement.result is None:  # nobody took it yet: this thread commits
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    while batch:
                        batch = self._commit(batch)
                except Exception as exc:  # a bug or a dying disk: every waiter hears it
                    LOG.exception("group commit failed")
                    self._unsettled()
                    for p in batch:
                        if p.result is None:
                            p.result = _out_of_resources(
                                f"cannot store {p.record.path}: {type(exc).__name__}: {exc}")
        return placement.result or _out_of_resources("not stored: the archive is closing")

    def close(self) -> None:
        """Wait for the batch under way; later placements are refused (the archive closes)."""
        with self._commit_lock:
            self._closed = True

    # -- one batch ---------------------------------------------------------------------------

    def _commit(self, batch: list[Placement]) -> list[Placement]:
        """Commit the first copy of each instance in ``batch``; the later copies (sent twice
        at once) are returned, to be committed after, against what this batch stored."""
        if self._closed:
            for p in batch:
                p.result = _out_of_resources("not stored: the archive is closing")
            return []
        placing, later, seen = [], [], set()
        existing = self.index.instance_paths([p.record.sop_instance_uid for p in batch])
        for p in batch:
            uid = p.record.sop_instance_uid
            if uid in seen:
                later.append(p)
                continue
            seen.add(uid)
            p.existing = existing.get(uid)
            if p.existing is None or self.duplicates == "overwrite":
                placing.append(p)
            elif self.duplicates == "reject":
                p.result = (status.DUPLICATE_SOP_INSTANCE, "duplicate SOP Instance UID: already "
                            f"stored as {p.existing} (duplicate policy: reject)", None)
            else:
                p.result = (status.SUCCESS, "duplicate ignored: kept the stored copy "
                            "(duplicate policy: ignore)", None)
        placing = self._make_folders(placing)
        if placing:
            self._write_rows(placing)
        return later

    def _make_folders(self, placing: list[Placement]) -> list[Placement]:
        ready = []
        for p in placing:
            folder = p.target.parent
            try:
                if folder not in self._known_folders:
                    if folder in self._unsynced_folders and self.durable:
                        for parent in folder.relative_to(self.root).parents:
                            disk.fsync_directory(self.root / parent)
                        self._unsynced_folders.discard(folder)
                    made = disk.ensure_directory(folder, sync=self.durable)
                    if not self.durable and self.behind is not None:
                        for parent in made:
                            self.behind(parent)
                    if len(self._known_folders) > 10_000:
                        self._known_folders.clear()
                    self._known_folders.add(folder)
                ready.append(p)
            except OSError as exc:
                self._known_folders.discard(folder)
                self._unsynced_folders.add(folder)
                p.result = _out_of_resources(f"cannot write {p.target}: {exc.strerror or exc}")
        return ready

    def _write_rows(self, placing: list[Placement]) -> None:
        journal = [Pending(p.record.path, p.record.sop_instance_uid,
                           p.existing if p.existing != p.record.path else None)
                   for p in placing]
        if not self.durable and not self.unjournaled:
            # No journal here (the files are made durable at close): until then a crash can
            # leave rows without files that only a walk finds.
            try:
                self.index.mark_folder_walked(None)
            except Exception as exc:
                for p in placing:
                    p.result = _out_of_resources(f"cannot index {p.record.path}: {exc}")
                return
            self.unjournaled = True
        try:
            self.index.commit_batch([(p.record, p.existing is not None) for p in placing],
                                    journal if self.durable else None)
        except IndexFailure as exc:  # nothing renamed yet: the files stay out
            for p in placing:
                p.result = _out_of_resources(f"cannot index {p.record.path}: {exc}")
            return
        unsynced = self._await_files(placing)
        placed, failed = self._rename([p for p in placing if p not in unsynced])
        failed += unsynced
        if self.durable:
            failed += self._sync_folders(placed)
        for p in placed:
            if p.result is not None:
                continue
            if p.existing is not None and p.existing != p.record.path:
                self._drop_replaced(p.existing)
            note = " (replaced the stored copy)" if p.existing is not None else ""
            p.result = (status.SUCCESS, f"stored {p.record.path}{note}", p.target)
        if failed and self.settle is not None:
            # Undo what the journal says for these: rows back to what the folder holds.
            try:
                self.settle([j for j, p in zip(journal, placing, strict=True) if p in failed])
            except Exception:
                LOG.exception("could not undo the index rows of instances not stored")
                self._unsettled()

    @staticmethod
    def _await_files(placing: list[Placement]) -> list[Placement]:
        """Wait for the files' fsyncs; those that failed (EIO, ENOSPC) are not placed."""
        failed = []
        for p in placing:
            try:
                if p.synced is not None:
                    p.synced.result()
            except OSError as exc:
                p.result = _out_of_resources(f"cannot write {p.temp}: {exc.strerror or exc}")
                failed.append(p)
        return failed

    def _rename(self, placing: list[Placement]) -> tuple[list[Placement], list[Placement]]:
        placed, failed = [], []
        for p in placing:
            try:
                os.chmod(p.temp, FILE_MODE)  # the temporary file is 0600: follow the umask
                os.replace(p.temp, p.target)
            except OSError as exc:
                p.result = _out_of_resources(f"cannot write {p.target}: {exc.strerror or exc}")
                failed.append(p)
                continue
            placed.append(p)
            if not self.durable and self.behind is not None:
                self.behind(Syncing(p.target, p.record.sop_instance_uid,
                                    disk.BEHIND.submit(disk.fsync_if_present, p.target)))
        return placed, failed

    def _sync_folders(self, placed: list[Placement]) -> list[Placement]:
        """fsync each folder of ``placed`` once, in parallel; the placements whose folder
        failed, removed again (their sender is told, and may send them again)."""
        folders = list({p.target.parent: None for p in placed})
        # One folder (one association, or one series): fsynced here, no handing over.
        done = [(folder, None if len(folders) == 1 else
                 disk.SYNC.submit(disk.fsync_directory, folder)) for folder in folders]
        failed = []
        for folder, future in done:
            try:
                if future is None:
                    disk.fsync_directory(folder)
                else:
                    future.result()
            except OSError as exc:
                for p in placed:
                    if p.target.parent == folder:
                        if p.existing != p.record.path:  # else it replaced the stored copy:
                            with contextlib.suppress(OSError):  # the file there is kept
                                p.target.unlink()
                        p.result = _out_of_resources(
                            f"cannot write {p.target}: {exc.strerror or exc}")
                        failed.append(p)
        return failed

    def _unsettled(self) -> None:
        """The index may now disagree with the folder beyond what the journal says: the next
        start walks the whole folder."""
        try:
            self.index.mark_folder_walked(None)
        except Exception:
            LOG.exception("could not mark the index for a full check at the next start")

    def _drop_replaced(self, existing: str) -> None:
        """Remove the copy an overwrite replaced at another path (its row is gone already);
        a failure here is logged: the new copy is stored and answered as such."""
        old = self.root / existing
        try:
            old.unlink(missing_ok=True)
            disk.fsync_directory(old.parent)  # or a crash brings the replaced copy back
        except OSError as exc:
            LOG.warning("could not remove the replaced copy %s: %s", old, exc.strerror or exc)


def _out_of_resources(message: str) -> tuple[int, str, Path | None]:
    return status.OUT_OF_RESOURCES, message, None
