"""The exporter's inputs: which files they name, and what a directory record needs of each.

Most files are read without pydicom: one read of the file's start (the whole of a small
file), the File Meta parsed and the data set's top-level elements stepped over with struct
up to Pixel Data, keeping the values of the keys a record can take (``records.raw_tags``).
pydicom reads the others: big endian, deflated or meta without a group length, data sets
whose record needs sequences (SR, presentation states, encapsulated documents), and every
file that is re-identified on the way (the modifier works on pydicom data sets).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, TextIO

from dcmtool.dicom.elements import LONG_LENGTH_VR_BYTES, explicit_length
from dcmtool.dicom.files import find_files, referenced_files
from dcmtool.dicom.part10 import offset_in
from dcmtool.dicom.structure import file_problem
from dcmtool.dicom.transcode import EXPLICIT, IMPLICIT
from dcmtool.media import records
from dcmtool.media.profiles import Profile
from dcmtool.media.records import Value

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
#: The first read of each file: small files whole, the header of larger ones.
HEAD = 64 * 1024
#: Names in a ``dcmtool serve`` archive root that are not instances.
ARCHIVE_RESERVED = frozenset({"worklist", ".incoming", "index.sqlite", "index.sqlite-wal",
                              "index.sqlite-shm", "audit.jsonl", ".lock"})


@dataclass(slots=True)
class Scanned:
    """One input instance, as the directory needs it."""

    path: Path
    size: int
    offset: int | None  # where the data set starts; None: copy through pydicom
    syntax: str
    sop_class: str
    sop_instance: str
    source_ae: str | None
    record_type: str
    top_level: bool  # a root record (hanging protocol, palette, implant)
    values: dict[int, Value]
    charset: bytes = b""
    problem: str | None = None  # why the file cannot be copied (truncated...)
    pixels: bool = False
    # The grouping keys, read once.
    patient_id: str = field(init=False, default="")
    patient_name: str = field(init=False, default="")
    study: str = field(init=False, default="")
    series: str = field(init=False, default="")

    def __post_init__(self) -> None:
        self.patient_id = self.text(records.PATIENT_ID)
        self.patient_name = self.text(records.PATIENT_NAME)
        self.study = self.text(records.STUDY_INSTANCE_UID)
        self.series = self.text(records.SERIES_INSTANCE_UID)

    def text(self, tag: int) -> str:
        return records.text(self.values.get(tag), self.charset)


# -- inputs -------------------------------------------------------------------------------

def input_files(inputs: Sequence[str], stdin: TextIO | None = None) -> Iterator[Path]:
    """The files ``inputs`` name: as ``find_files`` takes them, plus ``dcmtool serve`` archive
    roots (a folder with ``index.sqlite``: its instance files only). A DICOMDIR among them is
    expanded by the scan, wherever it was found."""
    for item in inputs:
        if item == "-":
            for line in stdin if stdin is not None else _stdin():
                if line.strip():
                    yield from input_files([line.strip()])
            continue
        path = Path(item)
        if path.is_dir() and (path / "index.sqlite").is_file():
            yield from _archive_files(path)
        else:
            yield from find_files([item])


def _stdin() -> TextIO:
    import sys

    return sys.stdin


def _archive_files(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        at_top = Path(folder) == root
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and not (at_top and d in ARCHIVE_RESERVED))
        for name in sorted(files):
            if not name.startswith(".") and not (at_top and name in ARCHIVE_RESERVED):
                yield Path(folder) / name


# -- one file -----------------------------------------------------------------------------

class NotDicom(Exception):
    """Not a DICOM Part 10 file: skipped and counted."""


def scan(path: Path, modify: Callable[[Any], None] | None = None,
         profile: Profile | None = None,
         shared: dict[Value, Value] | None = None) -> Scanned | list[Path]:
    """What the directory needs of the file at ``path`` (its records in ``profile``, in any
    profile when None); for a DICOMDIR, the files it references. Raises NotDicom, or OSError
    when the file cannot be read.

    ``shared``, kept across the files of one run, makes equal values one object: the
    patient, study and series keys repeat in every file of a series, and ten thousand files
    are held until the DICOMDIR is written."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        head = os.read(fd, HEAD)
    finally:
        os.close(fd)
    if head[128:132] != b"DICM":
        raise NotDicom(f"{path}: not a DICOM file")
    meta = _meta(head)
    if meta is None or modify is not None:
        return _scan_pydicom(path, size, modify, profile)
    offset, elements = meta
    syntax = elements.get(0x0010, "")
    sop_class = elements.get(0x0002, "")
    if sop_class == MEDIA_STORAGE_DIRECTORY:
        return referenced_files(path)
    whole = len(head) >= size
    found = None
    explicit = False
    if syntax in (EXPLICIT, IMPLICIT):
        explicit = syntax == EXPLICIT and _looks_explicit(head, offset)
        found = _walk(head, offset, explicit, _wanted(), {} if shared is None else shared,
                      complete=whole)
        if found is None and not whole:
            with open(path, "rb") as fh:
                head = fh.read()
            whole = True
            found = _walk(head, offset, explicit, _wanted(), {} if shared is None else shared,
                          complete=True)
    if found is None:
        return _scan_pydicom(path, size, None, profile)
    pixels = found.pop(records.PIXEL_DATA, None) is not None
    values = found
    sop_class = records.text(values.get(records.SOP_CLASS_UID)) or sop_class
    kind, top = records.record_type(sop_class, records.text(values.get(records.MODALITY)),
                                    records.ENCAPSULATED_DOCUMENT in values,
                                    records.RT_PLAN_LABEL in values)
    if records.needs_pydicom(kind):
        return _scan_pydicom(path, size, None, profile)
    charset = values.get(records.SPECIFIC_CHARACTER_SET, ("CS", b""))[1].strip(b"\x00 ")
    values = records.kept(kind, top, values, profile)
    # Implicit VR data under the explicit syntax's UID: copied as it is, the copy would be
    # as wrong; through pydicom it gets its dictionary VRs (convert's rule).
    copyable = offset if syntax != EXPLICIT or explicit else None
    return Scanned(
        path, size, copyable, syntax, sop_class,
        records.text(values.get(records.SOP_INSTANCE_UID)) or elements.get(0x0003, ""),
        elements.get(0x0016) or None, kind, top, values, charset,
        problem=file_problem(path, offset, syntax, head=head if whole else b"", size=size),
        pixels=pixels)


def _meta(head: bytes) -> tuple[int, dict[int, str]] | None:
    """Where the data set starts and the File Meta's text values, or None (no group
    length, or a File Meta that does not parse: pydicom's turn)."""
    end = offset_in(head)
    if end is None:
        return None
    elements: dict[int, str] = {}
    position = 144
    while position + 8 <= end:
        group, element, vr = struct.unpack_from("<HH2s", head, position)
        length, position = explicit_length(head, position, vr)
        if group != 0x0002 or position + length > end:
            return None
        elements[element] = head[position:position + length].rstrip(b"\x00 ").decode(
            "ascii", "replace")
        position += length
    return end, elements


def _looks_explicit(head: bytes, offset: int) -> bool:
    # Some writers put implicit VR data under an explicit syntax; readers detect it from the
    # first element's VR, and so do we (as structure.py does).
    vr = head[offset + 4:offset + 6]
    return len(vr) < 2 or (vr.isalpha() and vr.isupper())


#: Explicit VRs as read -> as named (UN is left out: the dictionary's VR replaces it).
_VR_NAMES = {vr.encode(): vr for vr in (
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF",
    "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UR",
    "US", "UT", "UV")}
_EXPLICIT_HEADER = struct.Struct("<HH2sH")


@cache
def _wanted() -> dict[int, int]:
    return {tag: tag for tag in records.raw_tags()}


_IMPLICIT_HEADER = struct.Struct("<HHL")
_LENGTH = struct.Struct("<L")
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PRESENCE_ONLY = frozenset({records.ENCAPSULATED_DOCUMENT})


def _walk(data: bytes, position: int, explicit: bool, wanted: dict[int, int],
          shared: dict[Value, Value], *,
          complete: bool) -> dict[int, Value] | None:
    """The values of ``wanted`` top-level elements up to Pixel Data (noted with an empty
    value when present), or None when the bytes end first and are not the whole file, or do
    not parse. UN, and implicit VR, get the dictionary's VR (the bytes are little endian
    either way)."""
    found: dict[int, Value] = {}
    end = len(data)
    explicit_header = _EXPLICIT_HEADER.unpack_from
    implicit_header = _IMPLICIT_HEADER.unpack_from
    long_vrs = LONG_LENGTH_VR_BYTES
    names = _VR_NAMES
    try:
        while position + 8 <= end:
            if explicit:
                group, element, vr, length = explicit_header(data, position)
                if vr in long_vrs:
                    if position + 12 > end:
                        return None
                    (length,) = _LENGTH.unpack_from(data, position + 8)
                    position += 12
                else:
                    position += 8
            else:
                group, element, length = implicit_header(data, position)
                vr = b""
                position += 8
            tag = group << 16 | element
            if tag >= 0x7FE00010:
                if tag == 0x7FE00010:
                    found[tag] = ("OB", b"")
                return found
            if length == 0xFFFFFFFF:
                position = _skip_items(data, position, explicit and vr != b"UN")
                if position < 0:
                    return None
                continue
            key = wanted.get(tag)  # the table's int: one object for every file's key
            if key is not None:
                if position + length > end:
                    return None
                value = (names.get(vr) or records.vr_of(tag),
                         b"" if tag in _PRESENCE_ONLY else data[position:position + length])
                found[key] = shared.setdefault(value, value)
            position += length
    except (struct.error, RecursionError):
        return None
    return found if complete and position >= end else None


def _skip_items(data: bytes, position: int, explicit: bool) -> int:
    """Where the undefined-length sequence whose items start at ``position`` ends; -1 when
    its end is not in ``data``."""
    end = len(data)
    while position + 8 <= end:
        group, element, length = _IMPLICIT_HEADER.unpack_from(data, position)
        position += 8
        tag = group << 16 | element
        if tag == _SEQUENCE_END:
            return position
        if tag != _ITEM:
            return -1
        if length != _UNDEFINED:
            position += length
            continue
        while True:  # the item's elements, to its delimiter
            if position + 8 > end:
                return -1
            group, element = struct.unpack_from("<HH", data, position)
            if group << 16 | element == _ITEM_END:
                position += 8
                break
            if explicit:
                vr = data[position + 4:position + 6]
                if vr in LONG_LENGTH_VR_BYTES:
                    (length,) = _LENGTH.unpack_from(data, position + 8)
                    position += 12
                else:
                    length = struct.unpack_from("<H", data, position + 6)[0]
                    position += 8
            else:
                vr = b""
                (length,) = _LENGTH.unpack_from(data, position + 4)
                position += 8
            if length == _UNDEFINED:
                position = _skip_items(data, position, explicit and vr != b"UN")
                if position < 0:
                    return -1
            else:
                position += length
    return -1


def _scan_pydicom(path: Path, size: int, modify: Callable[[Any], None] | None,
                  profile: Profile | None) -> Scanned:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    from dcmtool.dicom.part10 import dataset_offset

    try:
        # Large values past the header (an encapsulated document) stay in the file.
        ds = dcmread(path, stop_before_pixels=True, defer_size=64 * 1024)
        syntax = str(ds.file_meta.TransferSyntaxUID)
    except InvalidDicomError:
        raise NotDicom(f"{path}: not a DICOM file") from None
    except (AttributeError, KeyError):
        raise NotDicom(f"{path}: no File Meta Information (transfer syntax unknown)") from None
    except (EOFError, ValueError, struct.error) as exc:
        return _broken(path, size, f"cannot be read: {' '.join(str(exc).split())}")
    meta = ds.file_meta
    if str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
        return referenced_files(path)  # type: ignore[return-value]
    if modify is not None:
        modify(ds)
    sop_class = str(ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID", ""))
    kind, top = records.record_type(sop_class, str(ds.get("Modality", "")),
                                    "EncapsulatedDocument" in ds, "RTPlanLabel" in ds)
    tags = records.raw_tags() | records.record_keys(kind).tags
    values = records.values_of(ds, tags - {records.ENCAPSULATED_DOCUMENT})
    charset = values.get(records.SPECIFIC_CHARACTER_SET, ("CS", b""))[1].strip(b"\x00 ")
    values = records.kept(kind, top, values, profile)
    offset = dataset_offset(path)
    problem = file_problem(path, offset, syntax, size=size) if offset is not None else None
    return Scanned(path, size, offset, syntax, sop_class,
                   str(ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID", "")),
                   str(meta.get("SourceApplicationEntityTitle", "")) or None, kind, top,
                   values, charset, problem=problem, pixels=_has_pixels(path, ds))


def _has_pixels(path: Path, ds: Any) -> bool:
    """Whether the file has Pixel Data: stop_before_pixels leaves it out of ``ds``."""
    if "PixelData" in ds:
        return True
    from pydicom import dcmread

    return "PixelData" in dcmread(path, specific_tags=["PixelData"], defer_size=0)


def _broken(path: Path, size: int, problem: str) -> Scanned:
    return Scanned(path, size, None, "", "", "", None, "IMAGE", False, {}, problem=problem)
