"""Storing received instances: validate, place, fsync, rename, index — then acknowledge.

The received bytes are never decoded and re-encoded. pynetdicom streams the data set of a
C-STORE into a file under ``ROOT/.incoming`` (same file system as the archive) behind File Meta
Information that names dcmtool and the sending AE; this module checks the header, moves the file
into place atomically and indexes it. A status is returned for every outcome; nothing raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Literal

from dcmtool.archive.audit import AuditLog, utc_now
from dcmtool.archive.index import (
    INDEXED_KEYWORDS,
    Index,
    IndexFailure,
    InstanceRecord,
    element_text,
)
from dcmtool.archive.layout import DEFAULT_PATTERN, Layout, LayoutError
from dcmtool.archive.lock import LOCK_FILE, FolderLock
from dcmtool.dicom import status
from dcmtool.dicom.files import FILE_MODE
from dcmtool.dicom.part10 import data_set_bounds
from dcmtool.dicom.structure import DEFLATED, StructureError, check_data_set
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


@dataclass(frozen=True)
class _Syncing:
    """A file stored without fsync (``durable_each=False``) and its fsync in the background."""

    path: Path
    sop_instance_uid: str
    done: Future[None]


@dataclass(frozen=True)
class ReconcileReport:
    removed_partial: int = 0
    indexed_orphans: int = 0
    dropped_missing: int = 0
    unreadable: tuple[str, ...] = ()

    @property
    def consistent(self) -> bool:
        return not (self.removed_partial or self.indexed_orphans or self.dropped_missing)


def _tags() -> list[int]:
    from pydicom.datadict import tag_for_keyword

    tags = [tag_for_keyword(k) for k in INDEXED_KEYWORDS]
    return [int(t) for t in tags if t is not None]


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
                self.index = Index(self.root / INDEX_FILE)
                self.audit = AuditLog(self.root / AUDIT_FILE)
            except BaseException:
                self._folder_lock.release()
                raise
        self._lock = threading.Lock()
        self._tags = _tags()
        from pydicom.datadict import keyword_for_tag

        self._keywords = {tag: keyword_for_tag(tag) for tag in self._tags}
        self._wanted = frozenset(self._tags)
        from pydicom.datadict import dictionary_VR

        self._dictionary_vrs = {tag: dictionary_VR(tag) for tag in self._tags}
        self._checked_dirs: set[Path] = set()
        self._syncing: list[_Syncing] = []  # durable_each=False: fsyncs under way
        self._new_folders: set[Path] = set()  # durable_each=False: parents of new folders

    def close(self) -> None:
        """Close the index and the audit log, after ``sync()``."""
        try:
            self.sync()
        finally:
            try:
                self.index.close()
                self.audit.close()
            finally:
                if self.plain:
                    shutil.rmtree(self.incoming, ignore_errors=True)
                else:
                    self._folder_lock.release()

    def sync(self) -> None:
        """Wait for the background fsyncs (``durable_each=False``), then fsync their folders
        once each. A file that cannot be made durable is removed with its index row;
        ``NotDurable`` names them once every other file is durable."""
        with self._lock:
            syncing, self._syncing = self._syncing, []
            new_folders, self._new_folders = self._new_folders, set()
        if not syncing and not new_folders:
            return
        failed: dict[Path, tuple[_Syncing, OSError]] = {}
        for item in syncing:
            try:
                item.done.result()
            except OSError as exc:
                failed[item.path] = (item, exc)
        folders = list(dict.fromkeys([*(item.path.parent for item in syncing), *new_folders]))
        for folder, done in [(f, _SYNC.submit(_fsync_directory, f)) for f in folders]:
            try:
                done.result()
            except OSError as exc:  # a file whose folder (or a folder above) is not durable
                failed.update((item.path, (item, exc)) for item in syncing
                              if item.path.is_relative_to(folder) and item.path not in failed)
        if failed:
            for item, _ in failed.values():
                self._discard(item)
            raise NotDurable([(path, error) for path, (_, error) in failed.items()])

    def _discard(self, item: _Syncing) -> None:
        with contextlib.suppress(OSError):
            item.path.unlink()
        with contextlib.suppress(IndexFailure):
            self.index.remove(item.sop_instance_uid)

    # -- storing ----------------------------------------------------------------------------

    def store_received(
        self,
        temp_path: Path,
        *,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
        calling_ae: str | None,
    ) -> StoreOutcome:
        """Validate and file a received instance at ``temp_path`` (inside ``.incoming``).

        On success the file has moved into the archive; otherwise it is deleted.
        """
        outcome = self._store(temp_path, sop_class_uid, sop_instance_uid, transfer_syntax,
                              calling_ae)
        if not outcome.stored:
            temp_path.unlink(missing_ok=True)
        return outcome

    def _store(self, temp: Path, sop_class: str, sop_instance: str, transfer_syntax: str,
               calling_ae: str | None) -> StoreOutcome:
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
        # The file's fsync runs while this thread checks and indexes (it releases the GIL);
        # it is awaited before the rename, so nothing is acknowledged before it is durable.
        synced = _SYNC.submit(_fsync_file, temp) if self.policy.durable_each else None
        try:
            values = self._read_received(temp, transfer_syntax)
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
            target = self._target(values)
        except LayoutError as exc:
            return refuse(CANNOT_UNDERSTAND, str(exc))
        size = temp.stat().st_size
        try:
            if synced is not None:
                synced.result()
        except OSError as exc:
            return refuse(OUT_OF_RESOURCES, f"cannot write {temp}: {exc.strerror or exc}")
        with self._lock:
            existing = self.index.instance_path(sop_instance)
            if existing is not None:
                if self.policy.duplicates == "reject":
                    return refuse(DUPLICATE, "duplicate SOP Instance UID: already stored as "
                                  f"{existing} (duplicate policy: reject)",
                                  study_instance_uid=study)
                if self.policy.duplicates == "ignore":
                    return StoreOutcome(SUCCESS, "duplicate ignored: kept the stored copy "
                                        "(duplicate policy: ignore)", sop_instance, sop_class,
                                        study)
            relative = target.relative_to(self.root).as_posix()
            # An overwrite keeps the stored copy aside until the new one is indexed.
            backup = self.incoming / f"old-{os.getpid()}-{threading.get_ident()}"
            kept = False
            try:
                if self.policy.durable_each:
                    _ensure_directory(target.parent)
                else:
                    self._new_folders.update(_ensure_directory(target.parent, sync=False))
                if existing is not None and existing == relative and target.exists():
                    os.link(target, backup)
                    kept = True
                os.chmod(temp, FILE_MODE)  # the temporary file is 0600: follow the umask
                os.replace(temp, target)
            except OSError as exc:
                if kept:
                    backup.unlink(missing_ok=True)
                return refuse(OUT_OF_RESOURCES, f"cannot write {target}: {exc.strerror or exc}")
            # The directory's fsync (making the rename durable) overlaps the index write;
            # both finish before the sender hears success.
            dir_synced = _SYNC.submit(_fsync_directory, target.parent) \
                if self.policy.durable_each else None
            record = InstanceRecord(values, relative, size, transfer_syntax, utc_now(), calling_ae)
            try:
                self.index.add(record, replace=existing is not None)
                if dir_synced is not None:
                    dir_synced.result()
                else:  # durable by close(): the fsync runs while the next one arrives
                    self._syncing.append(_Syncing(target, sop_instance,
                                                  _BEHIND.submit(_fsync_if_present, target)))
            except Exception as exc:  # undo: nothing refused may stay in the archive
                if kept:
                    os.replace(backup, target)
                else:
                    target.unlink(missing_ok=True)
                    if existing is None:
                        with contextlib.suppress(IndexFailure):
                            self.index.remove(sop_instance)
                return refuse(OUT_OF_RESOURCES, f"cannot index {relative}: {exc}")
            if kept:
                backup.unlink(missing_ok=True)
            if existing is not None and existing != relative:
                old = self.root / existing
                old.unlink(missing_ok=True)
                _fsync_directory(old.parent)  # or a crash brings the replaced copy back
        note = " (replaced the stored copy)" if existing is not None else ""
        return StoreOutcome(SUCCESS, f"stored {relative}{note}", sop_instance, sop_class, study,
                            target, size)

    def _target(self, values: dict[str, str | None]) -> Path:
        """The file's path; each new parent directory is checked once to be inside the root."""
        relative = self.policy.layout.relative_path(values)
        if relative.parts[0] in RESERVED:  # e.g. PatientID "worklist": reconcile skips those
            relative = Path(relative.parts[0] + "_", *relative.parts[1:])
        target = self.root / relative
        parent = target.parent
        if parent not in self._checked_dirs:
            self.policy.layout.resolve(self.root, values)  # raises LayoutError if outside
            if len(self._checked_dirs) > 10_000:
                self._checked_dirs.clear()
            self._checked_dirs.add(parent)
        return target

    def _values(self, ds: Any) -> dict[str, str | None]:
        """Index text for the indexed attributes present (``ds`` holds only those)."""
        keywords = self._keywords
        return {keywords[int(e.tag)]: element_text(e) for e in ds if int(e.tag) in keywords}

    def _read_received(self, path: Path, transfer_syntax: str) -> dict[str, str | None]:
        """Check the data set's structure and get the indexed attributes in one pass."""
        from pydicom.dataelem import DataElement, RawDataElement
        from pydicom.dataset import Dataset
        from pydicom.tag import BaseTag

        with path.open("rb") as raw_file:
            fh: Any = raw_file
            if raw_file.seek(0, 2) <= _IN_MEMORY:
                # Small files are walked in memory: a file's tell() is a system call.
                raw_file.seek(0)
                fh = BytesIO(raw_file.read())
            start, end = data_set_bounds(fh)
            if transfer_syntax == DEFLATED[0]:  # Deflated Explicit VR Little Endian
                walk = self._walk_deflated(fh, start)
            else:
                walk = check_data_set(fh, start, end, transfer_syntax, self._wanted)
        if walk is None:  # not walked: let pydicom read it
            return self._values(self._read_header(path))
        fast = decode_simple(walk, self._keywords, self._dictionary_vrs)
        if fast is not None:
            return fast
        implicit = not walk.explicit
        raw: dict[BaseTag, DataElement | RawDataElement] = {
            BaseTag(tag): RawDataElement(BaseTag(tag), e.vr, e.length, e.value, e.offset,
                                         implicit, walk.little)
            for tag, e in sorted(walk.elements.items())
        }
        return self._values(Dataset(raw))

    def _walk_deflated(self, fh: Any, start: int) -> Any:
        """Inflate into a scratch file, bounded, and walk that: never the whole thing in memory
        (pydicom inflates a deflated data set in one call: a 1 MB C-STORE can claim GBs).

        The bound grows with the compressed size (``_MAX_INFLATION`` times it, at least
        ``_MIN_INFLATED_CAP``), so a deflate bomb is refused after tens of MiB of scratch file,
        not after a GiB; real deflated data sets (documents, reports) inflate far less."""
        import tempfile
        import zlib

        compressed = fh.seek(0, 2) - start
        cap = min(_MAX_INFLATED, max(_MIN_INFLATED_CAP, compressed * _MAX_INFLATION))
        fh.seek(start)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        with tempfile.TemporaryFile(dir=self.incoming) as out:
            total = 0
            while not inflater.eof:
                chunk = inflater.unconsumed_tail or fh.read(1 << 20)
                if not chunk:
                    raise StructureError("the deflated data set is truncated")
                data = inflater.decompress(chunk, 1 << 22)
                total += len(data)
                if total > cap:
                    # Short: it goes back in the C-STORE response's Error Comment (LO, 64).
                    raise StructureError(f"deflated data inflates past {cap >> 20} MiB")
                out.write(data)
            return check_data_set(out, 0, out.tell(), EXPLICIT_LE, self._wanted)

    def _read_header(self, path: Path) -> Any:
        from pydicom import dcmread

        return dcmread(path, stop_before_pixels=True, specific_tags=self._tags)

    # -- consistency ------------------------------------------------------------------------

    def instance_files(self) -> Iterator[Path]:
        """Every file in the archive that should be an instance (not the index, log, ...)."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            here = Path(dirpath)
            if here == self.root:
                dirnames[:] = [d for d in dirnames if d not in RESERVED]
                filenames = [f for f in filenames if f not in RESERVED]
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith("."):
                    yield here / name

    def reconcile(self, progress: Callable[[int], None] | None = None) -> ReconcileReport:
        """Make the index agree with the folder, and report what had to change.

        Partial files of interrupted transfers (``.incoming``) are deleted; files without an
        index row are indexed; rows whose file is gone are dropped.
        """
        removed = 0
        for leftover in self.incoming.iterdir():
            leftover.unlink(missing_ok=True)
            removed += 1
        indexed = self.index.paths()
        on_disk = {p.relative_to(self.root).as_posix() for p in self.instance_files()}
        missing = sorted(indexed - on_disk)
        if missing:
            self.index.remove_paths(missing)
        added, unreadable = self._index_files(sorted(on_disk - indexed), progress)
        return ReconcileReport(removed, added, len(missing), tuple(unreadable))

    def reindex(self, progress: Callable[[int], None] | None = None) -> tuple[int, list[str]]:
        """Rebuild the index from the files; returns (indexed, unreadable paths)."""
        self.index.clear()
        files = sorted(p.relative_to(self.root).as_posix() for p in self.instance_files())
        return self._index_files(files, progress)

    def _index_files(self, relatives: list[str],
                     progress: Callable[[int], None] | None) -> tuple[int, list[str]]:
        from datetime import datetime, timezone

        added, unreadable = 0, []
        for number, relative in enumerate(relatives, 1):
            path = self.root / relative
            try:
                ds = self._read_header(path)
                meta = ds.file_meta
                values = self._values(ds)
                if not values.get("SOPInstanceUID") or not values.get("SeriesInstanceUID"):
                    raise ValueError("no SOP or Series Instance UID")
                stat = path.stat()
                received = datetime.fromtimestamp(stat.st_mtime, timezone.utc)
                self.index.add(InstanceRecord(
                    values, relative, stat.st_size, str(meta.TransferSyntaxUID),
                    received.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    str(meta.get("SourceApplicationEntityTitle", "")) or None,
                ))
                added += 1
            except Exception as exc:
                LOG.warning("not indexed: %s: %s", relative, exc)
                unreadable.append(relative)
            if progress:
                progress(number)
        return added, unreadable


#: Largest inflated size accepted for a deflated data set.
_MAX_INFLATED = 1 << 30
_MIN_INFLATED_CAP = 64 << 20
_MAX_INFLATION = 100
EXPLICIT_LE = "1.2.840.10008.1.2.1"

#: Received files up to this size are checked in memory.
_IN_MEMORY = 4 * 1024 * 1024

#: fsync calls run here, beside the CPU work of the association's thread.
_SYNC = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dcmtool-fsync")
#: durable_each=False: one fsync at a time behind the receiving (less in its way than four).
_BEHIND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcmtool-fsync-behind")

_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
             "UI", "UR", "UT"}
_STRIP_BOTH = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"}
_INTEGER_VRS = {"US": "H", "SS": "h", "UL": "L", "SL": "l"}


def decode_simple(walk: Any, keywords: dict[int, str],
                  dictionary_vrs: dict[int, str]) -> dict[str, str | None] | None:
    """Index text straight from the encoded values, for the common case.

    Covers text and integer VRs in the default repertoire, ISO_IR 100 and ISO_IR 192; returns
    ``None`` for anything else (sequences, code extensions), which pydicom then decodes.
    """
    charset = walk.elements.get(0x00080005)
    encoding = "latin-1"
    if charset is not None:
        terms = [t.strip() for t in charset.value.decode("ascii", "replace").split("\\")]
        terms = [t for t in terms if t]
        if terms in ([], ["ISO_IR 6"], ["ISO_IR 100"]):
            encoding = "latin-1"
        elif terms == ["ISO_IR 192"]:
            encoding = "utf-8"
        else:
            return None
    prefix = "<" if walk.little else ">"
    values: dict[str, str | None] = {}
    for tag, element in walk.elements.items():
        vr = element.vr or dictionary_vrs.get(tag, "")
        raw = element.value
        if vr in _TEXT_VRS:
            text = raw.decode(encoding, "replace")
            text = text.strip(" \x00") if vr in _STRIP_BOTH else text.rstrip(" \x00")
            if vr == "PN":  # as pydicom: no empty trailing component groups
                text = "\\".join(name.rstrip("=") for name in text.split("\\"))
            values[keywords[tag]] = text or None
        elif vr in _INTEGER_VRS:
            code = _INTEGER_VRS[vr]
            count = len(raw) // struct.calcsize(code)
            numbers = struct.unpack(f"{prefix}{count}{code}", raw[: count * struct.calcsize(code)])
            values[keywords[tag]] = "\\".join(str(n) for n in numbers) or None
        else:
            return None
    return values


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_if_present(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # replaced since (duplicate policy: overwrite)
        _fsync_file(path)


def _fsync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        if os.name != "nt":  # Windows has no directory fds; elsewhere (EMFILE...) not durable
            raise
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _ensure_directory(path: Path, *, sync: bool = True) -> list[Path]:
    """Create ``path``; the folders whose entries changed (each new directory's parent),
    fsynced now unless ``sync`` is false (then the caller does, before it reports)."""
    created = []
    probe = path
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    parents = [directory.parent for directory in reversed(created)]
    if sync:
        for parent in parents:
            _fsync_directory(parent)
    return parents
