"""store's inputs, read: each file's header (with struct; pydicom only for a file that reader
does not take), which files are not DICOM and which are broken."""

from __future__ import annotations

import collections
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Instance:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    study_instance_uid: str
    size: int
    dataset_offset: int | None = None  # where the data set starts, when the scan knows


@dataclass
class Scan:
    """The inputs, read: what can be sent, what is not DICOM, what is broken (and why)."""

    instances: list[Instance] = field(default_factory=list)
    not_dicom: list[Path] = field(default_factory=list)
    broken: list[tuple[Path, str]] = field(default_factory=list)
    #: Files whose File Meta names other UIDs than their data set (the data set's are sent).
    meta_disagrees: list[tuple[Path, str]] = field(default_factory=list)


def scan(paths: Iterable[Path]) -> Scan:
    """Read each file's header and check that its data set is whole: a truncated file sent
    anyway can make the peer abort the association, and every file after it fails."""
    from dcmtool.dicom.files import referenced_files
    from dcmtool.dicom.part10 import dataset_offset, meta_disagreement
    from dcmtool.dicom.structure import file_problem

    result = Scan()
    instances, skipped = result.instances, result.not_dicom
    # A file named twice (a link, ./a and a) is sent once: known by device and inode, which
    # the header's read gives for free (resolving paths took a quarter of a small file's scan).
    seen: set[tuple[int, int]] = set()
    queue = collections.deque(paths)
    while queue:
        path = queue.popleft()
        header, head, size, identity = _quick_header(path)
        if identity is not None:
            if identity in seen:
                continue
            seen.add(identity)
        if header is not None:
            problem = file_problem(path, header.dataset_offset, header.transfer_syntax_uid,
                                   head=head, size=size)
            if problem is not None:
                result.broken.append((path, problem))
                continue
            instances.append(Instance(path, header.sop_class_uid, header.sop_instance_uid,
                                      header.transfer_syntax_uid, header.study_instance_uid,
                                      size, header.dataset_offset))
            if header.meta_disagreement:
                result.meta_disagrees.append((path, header.meta_disagreement))
            continue
        from pydicom import dcmread  # only for a file the struct reader does not take
        from pydicom.errors import InvalidDicomError

        try:
            ds = dcmread(path, stop_before_pixels=True,
                         specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"])
            meta = ds.file_meta
            if meta.get("MediaStorageSOPClassUID") == MEDIA_STORAGE_DIRECTORY:
                queue.extendleft(reversed(referenced_files(path)))  # what it references
                continue
            problem = file_problem(path, dataset_offset(path), str(meta.TransferSyntaxUID))
            if problem is not None:
                result.broken.append((path, problem))
                continue
            # The C-STORE names the data set's UIDs (as DCMTK's storescu does): the peer
            # checks the command against the data set, not against the File Meta.
            meta_class = str(meta.get("MediaStorageSOPClassUID", "") or "")
            meta_instance = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
            sop_class = str(ds.get("SOPClassUID", "") or meta_class)
            sop_instance = str(ds.get("SOPInstanceUID", "") or meta_instance)
            if not (sop_class and sop_instance):
                raise ValueError("no SOP Class or SOP Instance UID")
            instances.append(Instance(path, sop_class, sop_instance,
                                      str(meta.TransferSyntaxUID),
                                      str(ds.get("StudyInstanceUID", "")), path.stat().st_size))
            disagreement = meta_disagreement(meta_class, sop_class, meta_instance, sop_instance)
            if disagreement:
                result.meta_disagrees.append((path, disagreement))
        except (InvalidDicomError, AttributeError, KeyError, ValueError, OSError, EOFError):
            skipped.append(path)
    return result


MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


def _quick_header(path: Path) -> tuple[Any, bytes, int, tuple[int, int] | None]:
    """The struct-parsed header of an ordinary file (not a DICOMDIR) or None, the file's
    first 64 KiB (all of a small file), its size and (device, inode) (None: unreadable)."""
    from dcmtool.dicom.part10 import header_of

    try:
        # os calls: a file object, and a 64 KiB buffer for a 9 KB file, cost more than the read
        fd = os.open(path, os.O_RDONLY)
        try:
            info = os.fstat(fd)
            head = os.read(fd, min(info.st_size, 65536))
        finally:
            os.close(fd)
    except OSError:
        return None, b"", 0, None
    identity = (info.st_dev, info.st_ino)
    try:
        header = header_of(head)
    except struct.error:
        return None, b"", 0, identity
    if header is None or header.sop_class_uid == MEDIA_STORAGE_DIRECTORY:
        return None, b"", 0, identity
    return header, head, info.st_size, identity


