"""Data elements packed with struct: the one element encoder and VR table of dcmtool.

pydicom's writer costs about 0.1 ms an element set; command sets, File Meta and C-FIND answers
are sent thousands at a time, so they are packed here. Covers the text and small binary VRs;
anything else (sequences, code extensions, values that do not fit their character set)
returns ``None`` and the caller falls back to pydicom's writer.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache

#: Python codecs for the single-byte and UTF-8 Specific Character Sets (PS3.3 C.12.1.1.2).
CODECS = {
    "": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin_1", "ISO_IR 101": "iso8859_2",
    "ISO_IR 109": "iso8859_3", "ISO_IR 110": "iso8859_4", "ISO_IR 144": "iso8859_5",
    "ISO_IR 127": "iso8859_6", "ISO_IR 126": "iso8859_7", "ISO_IR 138": "iso8859_8",
    "ISO_IR 148": "iso8859_9", "ISO_IR 166": "tis_620", "ISO_IR 192": "utf_8",
    "GB18030": "gb18030", "GBK": "gbk",
}
#: VRs whose values are encoded in the Specific Character Set.
_TEXT = {"PN", "LO", "SH", "ST", "LT", "UT", "UC"}
_ASCII = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR"}
_BINARY = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i", "FL": "<f", "FD": "<d"}
#: VRs with a 4-byte length (and 2 reserved bytes) under explicit VR (PS3.5 7.1.2).
LONG_LENGTH_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
LONG_LENGTH_VR_BYTES = frozenset(vr.encode() for vr in LONG_LENGTH_VRS)
#: The byte that pads an odd-length value (PS3.5 6.2): NUL for UI and the binary OB.
_PAD_WITH_NUL = {"UI", "OB"}


@lru_cache(maxsize=4096)
def tag_of(keyword: str) -> int | None:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return None if tag is None else int(tag)


def value_bytes(vr: str, value: str | None, codec: str) -> bytes | None:
    """The encoded, even-length value; ``None`` when this VR or value needs pydicom."""
    if value is None or value == "":
        return b""
    if vr in _TEXT:
        try:
            raw = value.encode(codec)
        except UnicodeEncodeError:
            return None
        return padded(vr, raw)
    if vr in _ASCII:
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            return None
        return padded(vr, raw)
    if vr in _BINARY:
        try:
            parts = [float(v) if vr in ("FL", "FD") else int(v) for v in value.split("\\")]
        except ValueError:
            return None
        return b"".join(struct.pack(_BINARY[vr], p) for p in parts)
    return None


def padded(vr: str, raw: bytes) -> bytes:
    """``raw`` made even-length with the padding byte of its VR."""
    if len(raw) % 2:
        return raw + (b"\x00" if vr in _PAD_WITH_NUL else b" ")
    return raw


def encode_element(tag: int, vr: str, value: bytes, *, implicit: bool) -> bytes:
    """One element, little endian; ``value`` already even-length."""
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        return struct.pack("<HHI", group, element, len(value)) + value
    if vr in LONG_LENGTH_VRS:
        return struct.pack("<HH2sHI", group, element, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr.encode(), len(value)) + value


def encode(elements: Iterable[tuple[int, str, bytes]], *, implicit: bool) -> bytes:
    """Elements (tag, VR, value bytes) in ascending tag order, little endian."""
    return b"".join(encode_element(tag, vr, value, implicit=implicit)
                    for tag, vr, value in sorted(elements))


def explicit_length(data: bytes | memoryview, position: int, vr: bytes) -> tuple[int, int]:
    """An explicit VR little endian element's value length at ``position``, and where its
    value starts."""
    if vr in LONG_LENGTH_VR_BYTES:
        return struct.unpack_from("<I", data, position + 8)[0], position + 12
    return struct.unpack_from("<H", data, position + 6)[0], position + 8
