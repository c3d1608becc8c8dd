"""Keeping the index equal to the folder: at start (``recover``, proportional to what a crash
interrupted), on demand (``reconcile``, a walk of every file) and from scratch (``reindex``).

What start-up checks: the partial transfers in ``.incoming`` (never acknowledged: deleted),
and the journal of the one batch whose commit may have been under way (``groupcommit``).
The whole folder is walked only when the index has never seen it walked (an index from
before schema 3, or a new index on an existing folder), or when asked (``serve --rescan``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dcmtool.archive import disk
from dcmtool.archive.audit import utc_now
from dcmtool.archive.index import Index, InstanceRecord, Pending
from dcmtool.archive.reading import HeaderReader

LOG = logging.getLogger("dcmtool.archive")

#: Rows committed per transaction when many files are indexed (reindex, a first walk).
_BATCH = 500


@dataclass(frozen=True)
class ReconcileReport:
    removed_partial: int = 0
    indexed_orphans: int = 0
    dropped_missing: int = 0
    unreadable: tuple[str, ...] = ()
    #: Journal rows checked (instances whose commit a crash may have interrupted).
    checked: int = 0
    #: Whether every file was looked at (False: start-up's proportional check).
    walked: bool = False

    @property
    def consistent(self) -> bool:
        return not (self.removed_partial or self.indexed_orphans or self.dropped_missing)


@dataclass(frozen=True)
class Folder:
    """What recovery works on: the archive's root, index, reader and reserved names."""

    root: Path
    incoming: Path
    index: Index
    reader: HeaderReader
    reserved: frozenset[str]

    def instance_files(self) -> Iterator[Path]:
        """Every file in the archive that should be an instance (not the index, log, ...)."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            if here == self.root:
                dirnames[:] = [d for d in dirnames if d not in self.reserved]
                filenames = [f for f in filenames if f not in self.reserved]
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith("."):
                    yield here / name


def recover(folder: Folder, walk: Callable[[], ReconcileReport]) -> ReconcileReport:
    """Start-up's check: ``.incoming`` emptied, the journal settled; ``walk`` (the full
    reconcile) instead when the folder was never walked."""
    if folder.index.folder_walked() is None:
        return walk()
    removed = clear_incoming(folder.incoming)
    journal = folder.index.pending()
    dropped, unreadable = settle(folder, journal)
    return ReconcileReport(removed, 0, dropped, tuple(unreadable), checked=len(journal))


def reconcile(folder: Folder, files: Iterator[Path],
              progress: Callable[[int], None] | None = None) -> ReconcileReport:
    """Walk every file: index those without a row, drop rows whose file is gone."""
    removed = clear_incoming(folder.incoming)
    journal = folder.index.pending()
    settle(folder, journal)
    started = utc_now()
    indexed = folder.index.paths()
    on_disk = {p.relative_to(folder.root).as_posix() for p in files}
    missing = sorted(indexed - on_disk)
    if missing:
        folder.index.remove_paths(missing)
    added, unreadable = index_files(folder, sorted(on_disk - indexed), progress)
    folder.index.mark_folder_walked(started)
    return ReconcileReport(removed, added, len(missing), tuple(unreadable),
                           checked=len(journal), walked=True)


def reindex(folder: Folder, files: Iterator[Path],
            progress: Callable[[int], None] | None = None) -> tuple[int, list[str]]:
    """Rebuild the index from the files; (indexed, unreadable paths)."""
    started = utc_now()
    settle(folder, folder.index.pending())  # an interrupted overwrite: one copy, not two
    folder.index.clear()
    relatives = sorted(p.relative_to(folder.root).as_posix() for p in files)
    added, unreadable = index_files(folder, relatives, progress)
    folder.index.mark_folder_walked(started)
    return added, unreadable


def clear_incoming(incoming: Path) -> int:
    """Delete the partial transfers a stop or crash left (none was acknowledged)."""
    removed = 0
    for leftover in incoming.iterdir():
        with contextlib.suppress(OSError):
            if leftover.is_dir():
                continue  # not ours (the archive writes only files there)
            leftover.unlink()
            removed += 1
    return removed


def settle(folder: Folder, journal: list[Pending]) -> tuple[int, list[str]]:
    """Make the rows of an interrupted batch say what the folder holds: an instance whose
    file is in place is indexed from that file (and the copy it replaced removed); one whose
    file never arrived loses its row (and the copy it would replace is indexed again).
    Returns (rows dropped, unreadable paths)."""
    dropped, unreadable = 0, list[str]()
    reindexed: list[str] = []
    for entry in journal:
        if (folder.root / entry.path).is_file():
            reindexed.append(entry.path)
            if entry.replaced:
                replaced = folder.root / entry.replaced
                with contextlib.suppress(OSError):
                    replaced.unlink(missing_ok=True)
                    disk.fsync_directory(replaced.parent)
            continue
        folder.index.remove(entry.sop_instance_uid, entry.path)
        dropped += 1
        if entry.replaced and (folder.root / entry.replaced).is_file():
            reindexed.append(entry.replaced)
    if reindexed:
        _, unreadable = index_files(folder, reindexed, None)
    if journal:
        folder.index.remove_paths([])  # prune series, studies and patients left empty
        folder.index.clear_pending([entry.path for entry in journal])
    return dropped, unreadable


def index_files(folder: Folder, relatives: list[str],
                progress: Callable[[int], None] | None) -> tuple[int, list[str]]:
    """Index each file (rows replace those of the same instance or path), committed in
    batches; (indexed, unreadable paths)."""
    added, unreadable = 0, []
    batch: list[tuple[InstanceRecord, bool]] = []
    for number, relative in enumerate(relatives, 1):
        path = folder.root / relative
        try:
            values, syntax, source = folder.reader.stored(path)
            if not values.get("SOPInstanceUID") or not values.get("SeriesInstanceUID"):
                raise ValueError("no SOP or Series Instance UID")
            stat = path.stat()
            received = datetime.fromtimestamp(stat.st_mtime, timezone.utc)
            batch.append((InstanceRecord(
                values, relative, stat.st_size, syntax,
                received.isoformat(timespec="milliseconds").replace("+00:00", "Z"), source,
            ), True))
        except Exception as exc:
            LOG.warning("not indexed: %s: %s", relative, exc)
            unreadable.append(relative)
        if len(batch) >= _BATCH:
            folder.index.commit_batch(batch)
            added += len(batch)
            batch = []
        if progress:
            progress(number)
    if batch:
        folder.index.commit_batch(batch)
        added += len(batch)
    return added, unreadable
