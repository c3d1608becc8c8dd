"""Part 10 files (PS3.10 7.1): the one reader and writer of preamble and File Meta.

The archive writes a File Meta header per received instance, on the receiving thread;
pydicom's writer costs about 0.2 ms a call, this a few microseconds. ``store`` reads what it
needs of each file (classes, UIDs, where the data set starts) with struct; anything unusual
is left to pydicom. File Meta is always explicit VR little endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from dcmtool.dicom.elements import encode_element, explicit_length, padded

PREAMBLE = b"\x00" * 128 + b"DICM"
#: Where the File Meta group length's value ends: the smallest offset of a data set.
_GROUP_LENGTH_END = 144


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    name = vr.decode()
    return encode_element(group << 16 | element, name, padded(name, value), implicit=False)


@dataclass(frozen=True)
class FileMeta:
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    implementation_class_uid: str
    implementation_version_name: str
    source_ae_title: str | None = None
    receiving_ae_title: str | None = None

    def encode(self) -> bytes:
        """The group-2 elements, group length first (without preamble and 'DICM')."""
        body = [
            _element(2, 0x0001, b"OB", b"\x00\x01"),
            _element(2, 0x0002, b"UI", self.sop_class_uid.encode("ascii", "replace")),
            _element(2, 0x0003, b"UI", self.sop_instance_uid.encode("ascii", "replace")),
            _element(2, 0x0010, b"UI", self.transfer_syntax_uid.encode("ascii", "replace")),
            _element(2, 0x0012, b"UI", self.implementation_class_uid.encode("ascii")),
            _element(2, 0x0013, b"SH", self.implementation_version_name.encode("ascii")),
        ]
        if self.source_ae_title:
            title = self.source_ae_title.encode("ascii", "replace")
            body.append(_element(2, 0x0016, b"AE", title))  # Source AE Title
            body.append(_element(2, 0x0017, b"AE", title))  # Sending AE Title
        if self.receiving_ae_title:
            body.append(_element(2, 0x0018, b"AE",
                                 self.receiving_ae_title.encode("ascii", "replace")))
        rest = b"".join(body)
        return _element(2, 0x0000, b"UL", struct.pack("<L", len(rest))) + rest

    def file_header(self) -> bytes:
        """Preamble, 'DICM' and the File Meta: what precedes the data set in the file."""
        return PREAMBLE + self.encode()


@dataclass(frozen=True)
class Header:
    """What dcmtool store needs of a file, read without pydicom."""

    sop_class_uid: str  # the data set's (the File Meta's when the data set has none)
    sop_instance_uid: str
    transfer_syntax_uid: str
    study_instance_uid: str
    dataset_offset: int
    meta_sop_class_uid: str = ""  # what the File Meta says, to warn when it disagrees
    meta_sop_instance_uid: str = ""

    @property
    def meta_disagreement(self) -> str | None:
        """What the File Meta says that the data set contradicts, or None."""
        return meta_disagreement(self.meta_sop_class_uid, self.sop_class_uid,
                                 self.meta_sop_instance_uid, self.sop_instance_uid)


def meta_disagreement(meta_class: str, data_class: str, meta_instance: str,
                      data_instance: str) -> str | None:
    """The File Meta's Media Storage SOP Class/Instance UIDs that differ from the data set's
    SOP Class/Instance UIDs, in words; DCMTK's storescu sends the data set's, so does dcmtool."""
    parts = []
    if meta_class and data_class and meta_class != data_class:
        parts.append(f"Media Storage SOP Class UID {meta_class} but SOP Class UID {data_class}")
    if meta_instance and data_instance and meta_instance != data_instance:
        parts.append(f"Media Storage SOP Instance UID {meta_instance} but SOP Instance UID "
                     f"{data_instance}")
    if not parts:
        return None
    return "the File Meta disagrees with the data set (" + "; ".join(parts) + \
        "): the data set's UIDs are sent"


#: Data sets not in (implicit or explicit) VR little endian: pydicom reads those.
_OTHER_ENCODINGS = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95"}
_SOP_CLASS_UID = 0x00080016
_SOP_INSTANCE_UID = 0x00080018
_STUDY_INSTANCE_UID = 0x0020000D
_WANTED = (_SOP_CLASS_UID, _SOP_INSTANCE_UID, _STUDY_INSTANCE_UID)


def read_header(path: Any, limit: int = 65536) -> Header | None:
    """Parse the File Meta and walk the data set to Study Instance UID with struct.

    Returns ``None`` for anything unusual (no group length, big endian or deflated data,
    undefined lengths before the study UID, a header longer than ``limit``): the caller then
    reads the file with pydicom, which also decides whether it is DICOM at all.
    """
    with open(path, "rb") as fh:
        return header_of(fh.read(limit))


def header_of(data: bytes) -> Header | None:
    """``read_header`` of a file's first bytes, already read."""
    end = offset_in(data)
    if end is None:
        return None
    meta: dict[int, str] = {}
    position = 144
    while position + 8 <= end:
        group, element, vr = struct.unpack_from("<HH2s", data, position)
        length, position = explicit_length(data, position, vr)
        if group != 0x0002 or position + length > end:
            return None
        meta[element] = data[position:position + length].rstrip(b"\x00 ").decode(
            "ascii", "replace")
        position += length
    syntax = meta.get(0x0010, "")
    if not (meta.get(0x0002) and meta.get(0x0003) and syntax) or syntax in _OTHER_ENCODINGS:
        return None
    found = _find_uids(data, end, implicit=syntax == "1.2.840.10008.1.2")
    if found is None:
        return None
    return Header(found.get(_SOP_CLASS_UID) or meta[0x0002],
                  found.get(_SOP_INSTANCE_UID) or meta[0x0003], syntax,
                  found.get(_STUDY_INSTANCE_UID, ""), end,
                  meta_sop_class_uid=meta[0x0002], meta_sop_instance_uid=meta[0x0003])


def _find_uids(data: bytes, position: int, *, implicit: bool) -> dict[int, str] | None:
    """SOP Class, SOP Instance and Study Instance UIDs of the data set (those it has), or
    None when the walk cannot tell."""
    found: dict[int, str] = {}
    while position + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, position)
        tag = group << 16 | element
        if implicit:
            (length,) = struct.unpack_from("<I", data, position + 4)
            position += 8
        else:
            vr = data[position + 4:position + 6]
            if not (vr.isalpha() and vr.isupper()):
                return None  # implicit data under an explicit syntax: let pydicom cope
            length, position = explicit_length(data, position, vr)
        if tag > _STUDY_INSTANCE_UID:
            return found
        if length == 0xFFFFFFFF:
            return None  # an undefined-length sequence before the study: pydicom's job
        if tag in _WANTED:
            if position + length > len(data):
                return None
            found[tag] = data[position:position + length].rstrip(b"\x00 ").decode(
                "ascii", "replace")
            if tag == _STUDY_INSTANCE_UID:
                return found
        position += length
    return None


def dataset_offset(path: Any) -> int | None:
    """Where the data set starts in a Part 10 file, from its File Meta group length;
    ``None`` when the File Meta does not start with one (pydicom then parses it)."""
    with open(path, "rb") as fh:
        return _offset_from(fh.read(_GROUP_LENGTH_END))


def offset_in(data: bytes | memoryview) -> int | None:
    """``dataset_offset`` of a file read whole into ``data``."""
    offset = _offset_from(data[:_GROUP_LENGTH_END])
    return offset if offset is not None and offset <= len(data) else None


def data_set_bounds(fh: BinaryIO) -> tuple[int, int]:
    """(start, end) of the data set in an open file written with a File Meta group length;
    ``ValueError`` without one."""
    fh.seek(0)
    start = _offset_from(fh.read(_GROUP_LENGTH_END))
    if start is None:
        raise ValueError("no File Meta Information group length")
    return start, fh.seek(0, 2)


def _offset_from(head: bytes | memoryview) -> int | None:
    if len(head) < _GROUP_LENGTH_END or head[128:132] != b"DICM" or \
            head[132:138] != b"\x02\x00\x00\x00UL":
        return None
    (length,) = struct.unpack_from("<I", head, 140)
    return _GROUP_LENGTH_END + int(length)
