"""A structural check of an encoded data set: every element's length fits the bytes there are.

pydicom reads leniently (a truncated value is returned short, with no error). Before the
archive acknowledges an instance it walks the element headers, sequences and encapsulated
fragments once, seeking over values, so that a truncated or garbled data set is refused
(0xC000) instead of being stored. Deflated data sets are not walked.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
             b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_MAX_DEPTH = 64

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")


class StructureError(ValueError):
    """The bytes are not a well-formed data set."""


def check_data_set(fh: BinaryIO, start: int, end: int, transfer_syntax: str) -> None:
    """Raise ``StructureError`` if the data set in ``fh[start:end]`` is not well formed."""
    if transfer_syntax in DEFLATED:
        return
    walker = _Walker(fh, end, little=transfer_syntax != EXPLICIT_BE)
    explicit = transfer_syntax != IMPLICIT_LE
    if explicit:
        # Some writers encode implicit VR under an explicit syntax; readers (pydicom, DCMTK)
        # detect it from the first element, and so do we.
        fh.seek(start + 4)
        first_vr = fh.read(2)
        explicit = len(first_vr) < 2 or (first_vr.isalpha() and first_vr.isupper())
    fh.seek(start)
    walker.data_set(explicit=explicit, until=end, depth=0)


class _Walker:
    def __init__(self, fh: BinaryIO, end: int, *, little: bool) -> None:
        self.fh = fh
        self.end = end
        self.prefix = "<" if little else ">"

    def _read(self, size: int, what: str) -> bytes:
        data = self.fh.read(size)
        if len(data) != size:
            raise StructureError(f"the data set ends inside {what} at byte {self.fh.tell()}")
        return data

    def _tag(self, what: str) -> int:
        group, element = struct.unpack(self.prefix + "HH", self._read(4, what))
        return int((group << 16) | element)

    def _skip(self, length: int, tag: int) -> None:
        position = self.fh.tell()
        if position + length > self.end:
            raise StructureError(
                f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) claims {length} bytes but only "
                f"{self.end - position} remain (truncated?)")
        self.fh.seek(length, 1)

    def data_set(self, *, explicit: bool, until: int | None, depth: int) -> None:
        """Walk elements until ``until`` (defined length) or an item delimiter (undefined)."""
        if depth > _MAX_DEPTH:
            raise StructureError("sequences nested too deeply")
        while until is None or self.fh.tell() < until:
            if until is None and self.fh.tell() >= self.end:
                raise StructureError("an item of undefined length has no delimiter")
            tag = self._tag("an element tag")
            if tag == _ITEM_END:
                self._read(4, "an item delimiter")
                if until is None:
                    return
                raise StructureError("unexpected item delimiter")
            if tag >> 16 == 0xFFFE:
                raise StructureError(f"unexpected delimiter ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            vr = b""
            if explicit:
                vr = self._read(2, "a VR")
                if not vr.isalpha() or not vr.isupper():
                    raise StructureError(f"invalid VR {vr!r} at byte {self.fh.tell() - 2}")
                if vr in _LONG_VRS:
                    self._read(2, "a reserved field")
                    (length,) = struct.unpack(self.prefix + "L", self._read(4, "a length"))
                else:
                    (length,) = struct.unpack(self.prefix + "H", self._read(2, "a length"))
            else:
                (length,) = struct.unpack(self.prefix + "L", self._read(4, "a length"))
            if length == _UNDEFINED:
                # Sequences, encapsulated pixel data, and UN (whose content is implicit VR).
                nested_explicit = explicit and vr != b"UN"
                self.items(explicit=nested_explicit, depth=depth + 1)
            else:
                self._skip(length, tag)

    def items(self, *, explicit: bool, depth: int) -> None:
        while True:
            tag = self._tag("an item tag")
            (length,) = struct.unpack(self.prefix + "L", self._read(4, "an item length"))
            if tag == _SEQUENCE_END:
                return
            if tag != _ITEM:
                raise StructureError(
                    f"expected an item, found ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            if length == _UNDEFINED:
                self.data_set(explicit=explicit, until=None, depth=depth)
            else:
                self._skip(length, tag)
