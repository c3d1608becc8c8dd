"""A structural check of an encoded data set: every element's length fits the bytes there are.

pydicom reads leniently (a truncated value is returned short, with no error). Before the
archive acknowledges an instance it walks the element headers, sequences and encapsulated
fragments once, seeking over values, so that a truncated or garbled data set is refused
(0xC000) instead of being stored. Deflated data sets are not walked.

Pixel Data must agree with the transfer syntax (PS3.5 A.4): encapsulated, with an undefined
length, under the compressed syntaxes; native, with a defined length, under the others. Such
a file breaks every reader later, so it is refused like a truncated one (DCMTK's storescp
refuses it too).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from dcmtool.dicom.elements import LONG_LENGTH_VR_BYTES

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_MAX_DEPTH = 64

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")


class StructureError(ValueError):
    """The bytes are not a well-formed data set."""


@dataclass(frozen=True)
class RawElement:
    """A top-level element's encoded value, as the walk found it."""

    tag: int
    vr: str | None  # None under implicit VR
    length: int
    value: bytes
    offset: int


@dataclass
class WalkResult:
    explicit: bool
    little: bool
    elements: dict[int, RawElement] = field(default_factory=dict)


def check_data_set(fh: BinaryIO, start: int, end: int, transfer_syntax: str,
                   wanted: frozenset[int] = frozenset(), *,
                   pixel_data: bool = True) -> WalkResult | None:
    """Raise ``StructureError`` if the data set in ``fh[start:end]`` is not well formed.

    Returns the encoded values of the top-level elements in ``wanted`` (so that the caller
    need not parse the file a second time), or ``None`` for a deflated data set.
    """
    if transfer_syntax in DEFLATED:
        return None
    walker = _Walker(fh, end, little=transfer_syntax != EXPLICIT_BE, wanted=wanted,
                     encapsulated=_encapsulated(transfer_syntax) if pixel_data else None,
                     syntax=transfer_syntax)
    explicit = transfer_syntax != IMPLICIT_LE
    if explicit:
        # Some writers encode implicit VR under an explicit syntax; readers (pydicom, DCMTK)
        # detect it from the first element, and so do we.
        fh.seek(start + 4)
        first_vr = fh.read(2)
        explicit = len(first_vr) < 2 or (first_vr.isalpha() and first_vr.isupper())
    buffer = getattr(fh, "getbuffer", None)
    if buffer is not None and walker.prefix == "<" and end <= len(buffer()):
        flat = _walk_flat(buffer(), start, end, explicit, wanted,
                          walker.encapsulated is not True)
        if flat is not None:
            return WalkResult(explicit, True, flat)
    fh.seek(start)
    walker.data_set(explicit=explicit, until=end, depth=0)
    return WalkResult(explicit, walker.prefix == "<", walker.found)


_TAG_LENGTH = struct.Struct("<HHL")
_TAG_VR_SHORT = struct.Struct("<HH2sH")
_LONG_LENGTH = struct.Struct("<L")


def _walk_flat(data: memoryview, position: int, end: int, explicit: bool,
               wanted: frozenset[int], native_pixels: bool) -> dict[int, RawElement] | None:
    """The walk of a little endian data set held in memory whose top-level elements all have
    defined lengths and are whole (most received instances): the same result as ``_Walker``
    in one loop over the buffer. ``None`` at the first thing it does not take (an undefined
    length, a delimiter, a bad VR, a value past the end): ``_Walker`` then walks it all and
    says what is wrong."""
    found: dict[int, RawElement] = {}
    with data:
        while position < end:
            if position + 8 > end:
                return None
            if explicit:
                group, element, vr, length = _TAG_VR_SHORT.unpack_from(data, position)
                if not (vr.isalpha() and vr.isupper()):
                    return None
                if vr in LONG_LENGTH_VR_BYTES:
                    if position + 12 > end:
                        return None
                    (length,) = _LONG_LENGTH.unpack_from(data, position + 8)
                    value_start = position + 12
                else:
                    value_start = position + 8
            else:
                group, element, length = _TAG_LENGTH.unpack_from(data, position)
                vr, value_start = b"", position + 8
            tag = group << 16 | element
            if length == _UNDEFINED or group == 0xFFFE or value_start + length > end:
                return None
            if tag == _PIXEL_DATA and not native_pixels:
                return None  # encapsulated syntax with a defined length: _Walker refuses it
            if tag in wanted:
                found[tag] = RawElement(tag, vr.decode() or None, length,
                                        bytes(data[value_start:value_start + length]),
                                        value_start)
            position = value_start + length
    return found


def _encapsulated(transfer_syntax: str) -> bool | None:
    """Whether Pixel Data is encapsulated under this syntax; ``None`` for an unknown one."""
    from dcmtool.dicom.syntaxes import lookup

    known = lookup(transfer_syntax)
    if known is None:
        return None
    return known.compressed and transfer_syntax not in DEFLATED


class _Walker:
    def __init__(self, fh: BinaryIO, end: int, *, little: bool,
                 wanted: frozenset[int] = frozenset(), encapsulated: bool | None = None,
                 syntax: str = "") -> None:
        self.encapsulated = encapsulated
        self.syntax = syntax
        self.fh = fh
        self.end = end
        self.prefix = "<" if little else ">"
        self.wanted = wanted
        self.found: dict[int, RawElement] = {}

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
                if vr in LONG_LENGTH_VR_BYTES:
                    self._read(2, "a reserved field")
                    (length,) = struct.unpack(self.prefix + "L", self._read(4, "a length"))
                else:
                    (length,) = struct.unpack(self.prefix + "H", self._read(2, "a length"))
            else:
                (length,) = struct.unpack(self.prefix + "L", self._read(4, "a length"))
            keep = depth == 0 and tag in self.wanted
            if depth == 0 and tag == _PIXEL_DATA and self.encapsulated is not None:
                self._check_pixel_data(length)
            value_start = self.fh.tell()
            if length == _UNDEFINED:
                # Sequences, encapsulated pixel data, and UN (whose content is implicit VR).
                nested_explicit = explicit and vr != b"UN"
                self.items(explicit=nested_explicit, depth=depth + 1)
                if keep:
                    value_end = self.fh.tell()
                    self.fh.seek(value_start)
                    value = self.fh.read(value_end - value_start)
                    self.found[tag] = RawElement(tag, vr.decode() or None, length, value,
                                                 value_start)
            elif keep:
                if value_start + length > self.end:
                    self._skip(length, tag)  # raises: truncated
                self.found[tag] = RawElement(tag, vr.decode() or None, length,
                                             self._read(length, "a value"), value_start)
            else:
                self._skip(length, tag)

    def _check_pixel_data(self, length: int) -> None:
        from dcmtool.dicom.syntaxes import describe

        name = describe(self.syntax)
        if self.encapsulated and length != _UNDEFINED:
            raise StructureError(f"Pixel Data is native (length {length}) under {name}, "
                                 "which needs it encapsulated (PS3.5 A.4)")
        if not self.encapsulated and length == _UNDEFINED:
            raise StructureError(f"Pixel Data is encapsulated under {name}, which needs it "
                                 "native (PS3.5 A.4)")

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


def file_problem(path: Any, offset: int | None, transfer_syntax: str, *, head: bytes = b"",
                 size: int | None = None) -> str | None:
    """Why the Part 10 file at ``path`` (its data set starting at ``offset``) is not a
    well-formed data set, e.g. truncated; ``None`` when it is, or cannot be walked here
    (no offset known, deflated). Pixel Data is not checked against the syntax: a sender
    leaves that to the receiver.

    ``store`` asks this of every file before sending, so the common case is fast: ``head``
    (the file's first bytes, already read, ``size`` its length) holds a small file whole and
    its top-level elements are stepped over in memory; a larger file is stepped over by
    seeking from header to header. Undefined lengths at the top level (sequences,
    encapsulated pixel data) take the full walk.
    """
    if offset is None or transfer_syntax in DEFLATED:
        return None
    if size is not None and head and len(head) >= size and transfer_syntax != EXPLICIT_BE:
        problem = _in_memory_problem(head, offset, size, transfer_syntax != IMPLICIT_LE)
        if problem is not _UNKNOWN:
            return problem
    try:
        with open(path, "rb") as fh:
            if size is None:
                size = os.fstat(fh.fileno()).st_size
            problem = _top_level_problem(fh, b"", offset, size, transfer_syntax)
            if problem is not _UNKNOWN:
                return problem
            check_data_set(fh, offset, size, transfer_syntax, pixel_data=False)
    except StructureError as exc:
        return str(exc)
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


_UNKNOWN = "undefined length: walk it all"
_EXPLICIT_SHORT = struct.Struct("<HH2sH")
_LONG_LENGTH = struct.Struct("<L")
_IMPLICIT = struct.Struct("<HHL")


def _in_memory_problem(data: bytes, offset: int, end: int, explicit: bool) -> str | None:
    """``_top_level_problem`` of a little endian file held whole, in its tightest loop:
    ``store`` runs it on every small file."""
    if explicit:
        vr = data[offset + 4:offset + 6]  # implicit VR written under an explicit syntax
        explicit = len(vr) < 2 or (vr.isalpha() and vr.isupper())
    position = offset
    limit = end - 8
    while position < end:
        if position > limit:
            return f"the data set ends inside an element header at byte {position}"
        if explicit:
            group, element, vr, length = _EXPLICIT_SHORT.unpack_from(data, position)
            if vr in LONG_LENGTH_VR_BYTES:
                if position + 12 > end:
                    return f"the data set ends inside an element header at byte {position}"
                (length,) = _LONG_LENGTH.unpack_from(data, position + 8)
                position += 12
            else:
                position += 8
        else:
            group, element, length = _IMPLICIT.unpack_from(data, position)
            position += 8
        if length == _UNDEFINED:
            return _UNKNOWN
        position += length
        if position > end:
            return (f"element ({group:04X},{element:04X}) claims {length} bytes but only "
                    f"{end - position + length} remain (truncated?)")
    return None


def _top_level_problem(fh: BinaryIO | None, data: bytes, offset: int, end: int,
                       transfer_syntax: str) -> str | None:
    """The top-level elements' lengths against the file's; ``_UNKNOWN`` at an undefined
    length. ``data`` is the whole file, or empty to read the headers from ``fh``."""
    def header(position: int, size: int) -> bytes:
        if data or fh is None:
            return data[position:position + size]
        fh.seek(position)
        return fh.read(size)

    little = transfer_syntax != EXPLICIT_BE
    prefix = "<" if little else ">"
    explicit = transfer_syntax != IMPLICIT_LE
    if explicit:
        vr = header(offset + 4, 2)  # implicit VR written under an explicit syntax
        explicit = len(vr) < 2 or (vr.isalpha() and vr.isupper())
    position = offset
    while position < end:
        raw = header(position, 12)
        if len(raw) < 8:
            return f"the data set ends inside an element header at byte {position}"
        if explicit and raw[4:6] in LONG_LENGTH_VR_BYTES:
            if len(raw) < 12:
                return f"the data set ends inside an element header at byte {position}"
            group, element, length = struct.unpack(prefix + "HH4xL", raw)
            position += 12
        elif explicit:
            group, element, length = struct.unpack(prefix + "HH2xH", raw[:8])
            position += 8
        else:
            group, element, length = struct.unpack(prefix + "HHL", raw[:8])
            position += 8
        if length == _UNDEFINED:
            return _UNKNOWN
        if position + length > end:
            return (f"element ({group:04X},{element:04X}) claims {length} bytes but only "
                    f"{end - position} remain (truncated?)")
        position += length
    return None
