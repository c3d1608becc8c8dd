"""Performed procedure steps kept by the archive: one DICOM file per step, plus an index row.

``ROOT/mpps/{SOP Instance UID}.dcm`` holds the step as last set (the N-CREATE's attributes with
every accepted N-SET applied), written like an instance: a temporary file beside it, fsync,
rename, fsync of the folder. The file is the record; the index's ``mpps`` table (status,
patient, modality, start, end) is for listing, and ``reconcile`` rebuilds it from the files,
so a step written just before a crash, or an index rebuilt, loses nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dcmtool.archive.disk import ensure_directory, fsync_directory, fsync_file
from dcmtool.archive.index import Index
from dcmtool.archive.storage import MPPS_FOLDER
from dcmtool.dicom.files import FILE_MODE
from dcmtool.dicom.mpps import MPPS_SOP_CLASS
from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN
from dcmtool.dicom.uids import uid_problem

LOG = logging.getLogger("dcmtool.archive")

_TEMP_SUFFIX = ".tmp"


class ProcedureSteps:
    """The steps of the archive in ``root``. ``lock`` serialises read-check-write sequences."""

    def __init__(self, root: Path, index: Index) -> None:
        self.folder = root / MPPS_FOLDER
        self.index = index
        self.lock = threading.RLock()

    def path(self, uid: str) -> Path:
        """Where step ``uid`` lives; ``ValueError`` for a value that is not a UID (so never a
        path outside the folder)."""
        problem = uid_problem(uid)
        if problem:
            raise ValueError(f"SOP Instance UID {uid[:80]!r} {problem}")
        return self.folder / f"{uid}.dcm"

    def exists(self, uid: str) -> bool:
        return self.path(uid).is_file()

    def load(self, uid: str) -> Any:
        """The step as stored (a Dataset), or ``None`` when there is none.

        Raises ``OSError`` or pydicom's errors when the file cannot be read.
        """
        from pydicom import dcmread

        path = self.path(uid)
        if not path.is_file():
            return None
        ds = dcmread(path)
        del ds.file_meta
        return ds

    def write(self, uid: str, ds: Any, *, calling_ae: str | None) -> Path:
        """Write (create or replace) step ``uid`` durably and index it. Raises ``OSError`` or
        ``IndexFailure``."""
        from pydicom import dcmwrite
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import UID

        from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name

        target = self.path(uid)
        ds.SOPClassUID = MPPS_SOP_CLASS
        ds.SOPInstanceUID = uid
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = UID(MPPS_SOP_CLASS)
        meta.MediaStorageSOPInstanceUID = UID(uid)
        meta.TransferSyntaxUID = UID(EXPLICIT_VR_LITTLE_ENDIAN)
        meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
        meta.ImplementationVersionName = implementation_version_name()
        if calling_ae:
            meta.SourceApplicationEntityTitle = calling_ae
        ds.file_meta = meta
        ensure_directory(self.folder)
        temp = self.folder / f".{uid}.{os.getpid()}.{threading.get_ident()}{_TEMP_SUFFIX}"
        try:
            dcmwrite(temp, ds, enforce_file_format=True)
            fsync_file(temp)
            os.chmod(temp, FILE_MODE)
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        finally:
            del ds.file_meta
        fsync_directory(self.folder)
        self._index(uid, ds, target)
        return target

    def _index(self, uid: str, ds: Any, path: Path) -> None:
        def text(keyword: str) -> str | None:
            value = ds.get(keyword)
            return str(value).strip() or None if value is not None else None

        start = " ".join(filter(None, (text("PerformedProcedureStepStartDate"),
                                       text("PerformedProcedureStepStartTime"))))
        end = " ".join(filter(None, (text("PerformedProcedureStepEndDate"),
                                     text("PerformedProcedureStepEndTime"))))
        self.index.put_step({
            "uid": uid, "status": text("PerformedProcedureStepStatus") or "",
            "patient_id": text("PatientID"), "modality": text("Modality"),
            "start": start or None, "end": end or None,
            "path": path.relative_to(self.folder.parent).as_posix(),
            "mtime_ns": path.stat().st_mtime_ns,
        })

    def rows(self) -> list[dict[str, Any]]:
        """Every indexed step, oldest start first."""
        return [dict(row) for row in self.index.rows(
            'SELECT uid, status, patient_id, modality, start, "end", path FROM mpps '
            "ORDER BY start, uid")]

    def _files(self) -> Iterator[Path]:
        if not self.folder.is_dir():
            return
        for entry in self.folder.iterdir():
            if entry.name.startswith("."):
                if entry.name.endswith(_TEMP_SUFFIX):  # a write a crash interrupted
                    with contextlib.suppress(OSError):
                        entry.unlink()
                continue
            if entry.suffix == ".dcm" and entry.is_file():
                yield entry

    def reconcile(self) -> tuple[int, int]:
        """Make the ``mpps`` table agree with the files: (rows written, rows dropped)."""
        known = {str(row["uid"]): int(row["mtime_ns"]) for row in
                 self.index.rows("SELECT uid, mtime_ns FROM mpps")}
        written = 0
        seen = set()
        for path in self._files():
            uid = path.stem
            seen.add(uid)
            if known.get(uid) == path.stat().st_mtime_ns:
                continue
            try:
                ds = self.load(uid)
            except Exception as exc:
                LOG.warning("performed procedure step not indexed: %s: %s", path.name, exc)
                continue
            if ds is not None:
                self._index(uid, ds, path)
                written += 1
        dropped = sorted(set(known) - seen)
        if dropped:
            self.index.remove_steps(dropped)
        return written, len(dropped)
