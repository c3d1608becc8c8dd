"""The DICOMDIR (PS3.10 8, PS3.3 F.3): written here, read with pydicom, and checked.

A DICOMDIR is one Basic Directory data set: File-set ID, the offsets of the first and last
root records, the consistency flag, and the Directory Record Sequence, whose items point at
each other with byte offsets counted from the start of the file (next record at the same
level, first record of the level below). Each record is encoded once with zero offsets: an
offset is a UL, so filling it in later never changes a record's size, and every offset is
known from the sizes alone. Items and the sequence have defined lengths; the file is
explicit VR little endian, as PS3.10 8.6 requires.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from dcmtool.dicom.elements import padded
from dcmtool.dicom.files import write_atomically
from dcmtool.dicom.transcode import EXPLICIT
from dcmtool.errors import MediaError
from dcmtool.media import records
from dcmtool.media.profiles import Profile

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_RECORD_TYPE = 0x00041430
_FIRST, _LAST = 0x00041200, 0x00041202


@dataclass(eq=False)
class Node:
    """One directory record, its children, and the file it references (if any)."""

    record_type: str
    values: dict[str, str]  # keyword -> value as text (sequences left out)
    file_id: tuple[str, ...] | None
    sop_class_uid: str | None
    sop_instance_uid: str | None
    transfer_syntax: str | None
    children: list[Node] = field(default_factory=list)
    #: The record's elements after Directory Record Type, encoded (explicit VR little
    #: endian, tag order), or the pydicom record they are encoded from when written.
    body: bytes = field(default=b"", repr=False)
    source: Any = field(default=None, repr=False)

    def walk(self) -> Iterator[Node]:
        """This record and every record below it, depth first."""
        yield self
        for child in self.children:
            yield from child.walk()


# -- writing ------------------------------------------------------------------------------

def write_dicomdir(path: Path, roots: Sequence[Node], *, fileset_id: str = "",
                   instance_uid: str | None = None) -> int:
    """Write the DICOMDIR for the record trees ``roots`` at ``path`` (atomically: a temporary
    file in the same folder, then a rename). ``instance_uid`` keeps a file set's identity
    when it is rewritten (a new one otherwise). Returns the file's size.

    A DICOMDIR that replaces another (``add``) is on the disk before the rename, so that a
    crash leaves the old one or the new one; a new one is not waited for, as cp and dcmmkdir
    do not wait: on ext4 an fsync also waits for every copy written before it."""
    from pydicom.uid import generate_uid

    from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
    from dcmtool.dicom.part10 import FileMeta

    meta = FileMeta(MEDIA_STORAGE_DIRECTORY, instance_uid or generate_uid(),
                    EXPLICIT, IMPLEMENTATION_CLASS_UID,
                    implementation_version_name()).file_header()
    order = [node for root in roots for node in root.walk()]
    items = [_item(node) for node in order]
    fileset = records.element(0x00041130, ("CS", padded(
        "CS", fileset_id.encode("ascii", "replace")[:16])))
    # File-set ID, the two root offsets (UL), the consistency flag (US) and the sequence
    # header come before the first item.
    start = len(meta) + len(fileset) + 12 + 12 + 10 + 12
    offsets: dict[int, int] = {}
    position = start
    for node, item in zip(order, items, strict=True):
        offsets[id(node)] = position
        position += len(item)
    index = {id(node): item for node, item in zip(order, items, strict=True)}
    for siblings in _sibling_lists(roots):
        for node, after in pairwise(siblings):
            struct.pack_into("<L", index[id(node)], _NEXT_AT, offsets[id(after)])
    for node in order:
        if node.children:
            struct.pack_into("<L", index[id(node)], _LOWER_AT, offsets[id(node.children[0])])
    first = offsets[id(roots[0])] if roots else 0
    last = offsets[id(roots[-1])] if roots else 0
    sequence_length = position - start
    data = b"".join([
        meta, fileset,
        records.element(_FIRST, ("UL", struct.pack("<L", first))),
        records.element(_LAST, ("UL", struct.pack("<L", last))),
        records.element(0x00041212, ("US", b"\x00\x00")),  # no known inconsistencies
        struct.pack("<HH2sHL", 0x0004, 0x1220, b"SQ", 0, sequence_length),
        *items,
    ])
    # fsync'd only when it replaces a DICOMDIR (add): a new file set is made durable by
    # whoever writes the media, and on ext4 an fsync here would wait for every copy.
    return write_atomically(path, lambda fh: fh.write(data), durable=path.exists())


#: Where, in an encoded item, the values of Offset of the Next Directory Record and Offset
#: of Referenced Lower-Level Directory Entity are: item header (8), (0004,1400) UL header
#: (8); then its value (4), (0004,1410) US (10) and the (0004,1420) UL header (8).
_NEXT_AT = 16
_LOWER_AT = 38


def _item(node: Node) -> bytearray:
    body = node.body or _body_of(node.source)
    elements = b"".join((
        records.element(0x00041400, ("UL", b"\x00\x00\x00\x00")),
        records.element(0x00041410, ("US", b"\xff\xff")),  # record in use
        records.element(0x00041420, ("UL", b"\x00\x00\x00\x00")),
        records.element(_RECORD_TYPE, ("CS", padded("CS", node.record_type.encode("ascii")))),
        body,
    ))
    return bytearray(struct.pack("<HHL", 0xFFFE, 0xE000, len(elements)) + elements)


def _sibling_lists(roots: Sequence[Node]) -> Iterator[Sequence[Node]]:
    yield roots
    for root in roots:
        for node in root.walk():
            if node.children:
                yield node.children


def _body_of(record: Any) -> bytes:
    """The elements after Directory Record Type of a record read with pydicom, encoded
    again (values as read, sequences included)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    charset = record.get("SpecificCharacterSet")
    encodings = [charset] if isinstance(charset, str) else list(charset or [])
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = False
    for elem in record:  # iterating converts raw elements: VRs are known when written
        if elem.tag > _RECORD_TYPE:
            write_data_element(buffer, elem, encodings or None)
    return bytes(buffer.getvalue())


# -- reading ------------------------------------------------------------------------------

def read_tree(dicomdir: Path) -> list[Node]:
    """The root records of a DICOMDIR (PATIENT, or root-level records such as HANGING
    PROTOCOL), each with its children, following the offsets as any reader must; records
    not in use are left out. Raises MediaError when the file is not a readable DICOMDIR."""
    ds = _read(dicomdir)
    by_offset = {int(item.seq_item_tell): item
                 for item in ds.get("DirectoryRecordSequence", [])}
    first = int(ds.get(_FIRST).value or 0) if _FIRST in ds else 0
    return _chain(by_offset, first, dicomdir, set())


def _read(dicomdir: Path) -> Any:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(dicomdir)
    except FileNotFoundError:
        raise MediaError(f"{dicomdir}: no such file") from None
    except IsADirectoryError:
        raise MediaError(f"{dicomdir}: a folder, not a DICOMDIR",
                         hint="name the DICOMDIR file in it") from None
    except (InvalidDicomError, EOFError, ValueError, struct.error) as exc:
        raise MediaError(f"{dicomdir}: not a readable DICOMDIR: "
                         f"{' '.join(str(exc).split())}") from None
    except OSError as exc:
        raise MediaError(f"{dicomdir}: cannot read: {exc.strerror or exc}") from None
    sop_class = str(ds.file_meta.get("MediaStorageSOPClassUID", ""))
    if sop_class != MEDIA_STORAGE_DIRECTORY and "DirectoryRecordSequence" not in ds:
        raise MediaError(f"{dicomdir}: not a DICOMDIR (its SOP class is {sop_class or 'none'})")
    return ds


def _chain(by_offset: dict[int, Any], offset: int, dicomdir: Path,
           seen: set[int]) -> list[Node]:
    nodes: list[Node] = []
    while offset:
        if offset in seen:
            raise MediaError(f"{dicomdir}: the record at offset {offset} is reached twice "
                             "(the offsets loop)")
        seen.add(offset)
        record = by_offset.get(offset)
        if record is None:
            raise MediaError(f"{dicomdir}: an offset ({offset}) points at no directory record")
        texts = _texts(record)
        children = _chain(by_offset, _number(texts.get(0x00041420)), dicomdir, seen)
        if texts.get(0x00041410, "") != "0":  # Record In-use Flag: 0 is inactive
            nodes.append(_node(record, texts, children))
        offset = _number(texts.get(0x00041400))
    return nodes


def _number(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def _texts(record: Any) -> dict[int, str]:
    """Every element of a record but sequences, as text. Little endian values as read are
    decoded here (pydicom's conversion of each value costs seconds for a DICOMDIR of ten
    thousand records); anything else through pydicom."""
    from pydicom.dataelem import RawDataElement

    charset = b""
    out: dict[int, str] = {}
    for elem in record.elements():
        if isinstance(elem, RawDataElement) and elem.is_little_endian:
            vr = elem.VR or records.vr_of(elem.tag)
            if vr == "SQ" or elem.length == 0xFFFFFFFF:
                continue
            raw = bytes(elem.value or b"")
            if elem.tag == records.SPECIFIC_CHARACTER_SET:
                charset = raw.strip(b"\x00 ")
            out[int(elem.tag)] = records.text((vr, raw), charset)
        elif elem.VR != "SQ":
            value = elem.value
            out[int(elem.tag)] = "\\".join(str(v) for v in value) \
                if type(value).__name__ == "MultiValue" else \
                ("" if value is None else str(value))
    return out


def _node(record: Any, texts: dict[int, str], children: list[Node]) -> Node:
    file_id = texts.get(0x00041500)
    values = {}
    for tag, text in texts.items():
        name = records.keyword(tag)
        if tag > records.SPECIFIC_CHARACTER_SET and not name.startswith("("):
            values[name] = text
    return Node(texts.get(_RECORD_TYPE, "").strip(), values,
                tuple(file_id.split("\\")) if file_id else None,
                texts.get(0x00041510) or None, texts.get(0x00041511) or None,
                texts.get(0x00041512) or None, children, source=record)


def fileset_identity(dicomdir: Path) -> tuple[str, str | None]:
    """(File-set ID, the DICOMDIR's SOP Instance UID) of an existing file set."""
    ds = _read(dicomdir)
    return str(ds.get("FileSetID", "") or ""), \
        str(ds.file_meta.get("MediaStorageSOPInstanceUID", "")) or None


# -- checking -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    path: str  # relative to the DICOMDIR's folder
    message: str


_FILE_ID_PART = re.compile(r"^[A-Z0-9_]{1,8}$")


def conformant(file_id: Sequence[str]) -> bool:
    """PS3.10 8.5 and PS3.11's ISO 9660 rule: at most 8 components of 1 to 8 of A-Z 0-9 _."""
    return 0 < len(file_id) <= 8 and all(_FILE_ID_PART.match(p) for p in file_id)


def verify(dicomdir: Path, profile: Profile | None = None) -> list[Problem]:
    """Every problem of the file set of ``dicomdir``, one per file or record: a referenced
    file that is missing, unreadable, truncated or does not match its record (SOP class,
    SOP instance, transfer syntax, which ``profile`` must also allow), a file ID that PS3.10
    does not allow, a DICOM file in the folder that no record references. ``[]`` when all
    is well. Raises MediaError when the DICOMDIR itself cannot be read."""
    from dcmtool.media.scan import NotDicom, Scanned, scan

    root = dicomdir.parent
    problems: list[Problem] = []
    referenced: dict[str, str] = {}  # real path -> file ID, to find unreferenced files
    instances: dict[str, str] = {}
    for top in read_tree(dicomdir):
        for node in top.walk():
            if node.file_id is None:
                continue
            name = "/".join(node.file_id)
            if not conformant(node.file_id):
                problems.append(Problem(name, "the file ID is not a PS3.10 file ID (at most 8 "
                                              "components of at most 8 of A-Z, 0-9, _)"))
            if node.sop_instance_uid:
                if node.sop_instance_uid in instances:
                    problems.append(Problem(name, f"SOP Instance UID {node.sop_instance_uid} "
                                                  f"is also in {instances[node.sop_instance_uid]}"))
                instances.setdefault(node.sop_instance_uid, name)
            path = _locate(root, node.file_id)
            if path is None:
                problems.append(Problem(name, f"missing (its {node.record_type} record "
                                              "references it)"))
                continue
            if str(path) in referenced:
                problems.append(Problem(name, "referenced by two records"))
                continue
            referenced[str(path)] = name
            try:
                found = scan(path)
            except NotDicom:
                problems.append(Problem(name, "not a DICOM file"))
                continue
            except OSError as exc:
                problems.append(Problem(name, f"cannot be read: {exc.strerror or exc}"))
                continue
            if not isinstance(found, Scanned):
                problems.append(Problem(name, "a DICOMDIR referenced as an instance"))
                continue
            problems += [Problem(name, m) for m in _mismatches(node, found, profile)]
    problems += _unreferenced(root, dicomdir, referenced)
    return problems


def _mismatches(node: Node, found: Any, profile: Profile | None) -> Iterator[str]:
    from dcmtool.dicom.syntaxes import describe

    if found.problem:
        yield f"not a whole data set: {found.problem}"
    if node.sop_class_uid and node.sop_class_uid != found.sop_class:
        yield f"SOP Class UID {found.sop_class}, the record says {node.sop_class_uid}"
    if node.sop_instance_uid and node.sop_instance_uid != found.sop_instance:
        yield f"SOP Instance UID {found.sop_instance}, the record says {node.sop_instance_uid}"
    if node.transfer_syntax and node.transfer_syntax != found.syntax:
        yield (f"transfer syntax {describe(found.syntax)}, the record says "
               f"{describe(node.transfer_syntax)}")
    if profile is not None and not profile.allows(found.syntax):
        yield f"transfer syntax {describe(found.syntax)} is not allowed by {profile.name}"


def _locate(root: Path, file_id: Sequence[str]) -> Path | None:
    """The file a file ID names; component by component without regard to case when the
    exact name is missing (media mounted with lower-case names)."""
    path = root.joinpath(*file_id)
    if path.is_file():
        return path
    path = root
    for part in file_id:
        try:
            match = next((entry for entry in os.listdir(path) if entry.upper() == part.upper()),
                         None)
        except OSError:
            return None
        if match is None:
            return None
        path = path / match
    return path if path.is_file() else None


def _unreferenced(root: Path, dicomdir: Path, referenced: dict[str, str]) -> list[Problem]:
    problems = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if str(path) in referenced or path == dicomdir or name.startswith(".dcmtool-"):
                continue
            try:
                with open(path, "rb") as fh:
                    is_dicom = fh.read(132)[128:] == b"DICM"
            except OSError:
                continue
            if is_dicom:
                problems.append(Problem(path.relative_to(root).as_posix(),
                                        "a DICOM file that no record references"))
    return problems
