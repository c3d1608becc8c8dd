"""Data elements packed with struct, for responses sent thousands at a time (C-FIND).

Covers the text and small binary VRs an index answers with; anything else (sequences, code
extensions, values that do not fit their character set) returns ``None`` and the caller falls
back to pydicom's writer.
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
_LONG = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}


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
        return raw + b" " if len(raw) % 2 else raw
    if vr in _ASCII:
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            return None
        if len(raw) % 2:
            raw += b"\x00" if vr == "UI" else b" "
        return raw
    if vr in _BINARY:
        try:
            parts = [float(v) if vr in ("FL", "FD") else int(v) for v in value.split("\\")]
        except ValueError:
            return None
        return b"".join(struct.pack(_BINARY[vr], p) for p in parts)
    return None


def encode(elements: Iterable[tuple[int, str, bytes]], *, implicit: bool) -> bytes:
    """Elements (tag, VR, value bytes) in ascending tag order, little endian."""
    out = []
    for tag, vr, value in sorted(elements):
        group, element = tag >> 16, tag & 0xFFFF
        if implicit:
            out.append(struct.pack("<HHI", group, element, len(value)))
        elif vr in _LONG:
            out.append(struct.pack("<HH2sHI", group, element, vr.encode(), 0, len(value)))
        else:
            out.append(struct.pack("<HH2sH", group, element, vr.encode(), len(value)))
        out.append(value)
    return b"".join(out)
