"""A file's header as text, like DCMTK's dcmdump, or as the DICOM JSON model (PS3.18 F.2).

pydicom parses; this module only decides what a reader sees. One element a line: tag, VR,
value, keyword (or private name, or UID name), nested items indented. Values stay short
unless asked: text and multi-valued numbers are cut, binary values show their first bytes and
their length, and Pixel Data is always a summary (bytes, fragments, syntax), never the bytes.
Everything that came from the file is escaped: a control character in a value cannot move
the terminal's cursor. The JSON model leaves bulk data out the same way.
"""

from __future__ import annotations

import base64
import re
import struct
import warnings
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from dcmtool.errors import UsageError

#: Binary VRs: their values are bytes (PS3.5 6.2).
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: VRs whose values are numbers, printed without brackets as dcmdump does.
NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"})
#: Pixel Data, Float Pixel Data, Double Float Pixel Data (PS3.3 C.7.6.3).
PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
#: A binary value longer than this is bulk data: left out of the JSON model.
BULK_THRESHOLD = 1024

_ITEM = 0xFFFEE000
_TAG_TEXT = re.compile(r"\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?")


@dataclass(frozen=True)
class Limits:
    """How much of a value the text dump shows before it summarizes."""

    text: int = 64  # characters of a text value
    values: int = 16  # values of a multi-valued number or text element
    binary: int = 8  # leading bytes of a binary value (16-bit words for OW)

    @classmethod
    def unlimited(cls) -> Limits:
        """Text and numbers in full; binary values stay summarized."""
        return cls(text=1 << 62, values=1 << 62)


def parse_tag(text: str) -> int:
    """The tag a keyword (``PatientName``) or ``(gggg,eeee)``/``gggg,eeee``/``ggggeeee`` names.

    Raises
    ------
    UsageError
        For an unknown keyword or a malformed tag.
    """
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(text.strip())
    if tag is not None:
        return int(tag)
    match = _TAG_TEXT.fullmatch(text.strip())
    if match:
        return int(match.group(1) + match.group(2), 16)
    from difflib import get_close_matches

    from pydicom.datadict import keyword_dict

    close = get_close_matches(text.strip(), list(keyword_dict), n=1, cutoff=0.8)
    raise UsageError(f"unknown keyword or tag {text!r}" +
                     (f"; did you mean {close[0]}?" if close else ""),
                     hint="give a keyword such as PatientName, or a tag as (0010,0010)")


def select(ds: Any, tags: Collection[int]) -> Any:
    """A copy of ``ds`` holding only the elements with one of ``tags``, at any depth.

    A sequence that contains a selected element stays, with every item (an item without one
    is empty), so that item numbers and the JSON model's indices are those of the file.
    """
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    out = Dataset()
    for elem in _elements(ds):
        if elem.tag in tags:
            out.add(elem)
        elif elem.VR == "SQ" and elem.value:
            items = [select(item, tags) for item in elem.value]
            if any(len(item) for item in items):
                out.add(DataElement(elem.tag, "SQ", Sequence(items)))
    return out


def _elements(ds: Any) -> Iterator[Any]:
    """The elements of ``ds`` in tag order, each converted from its raw bytes by pydicom;
    one that cannot be is yielded raw (its value stays bytes)."""
    for tag in sorted(ds.keys()):
        try:
            yield ds[tag]
        except Exception as exc:  # pydicom raises anything at all on a garbled value
            from pydicom import config
            from pydicom.dataelem import DataElement

            warnings.warn(f"{tag_text(tag)} cannot be decoded, shown as bytes: "
                          f"{_first_sentence(exc)}", stacklevel=2)
            raw = ds.get_item(tag, keep_deferred=True)
            value = raw.value if isinstance(raw.value, bytes) else b""
            # Not "UN" to the constructor: pydicom would put the dictionary's VR back.
            undefined = getattr(raw, "length", 0) == 0xFFFFFFFF or \
                getattr(raw, "is_undefined_length", False)
            elem = DataElement(tag, "OB", value, already_converted=True,
                               is_undefined_length=undefined, validation_mode=config.IGNORE)
            elem.VR = "UN"
            yield elem


def _first_sentence(exc: Exception) -> str:
    return " ".join(str(exc).split(". ")[0].split()) or type(exc).__name__


# -- text ---------------------------------------------------------------------------------


def dump_lines(ds: Any, *, meta: bool = True, data_set: bool = True,
               only: Collection[int] = (), limits: Limits | None = None) -> Iterator[str]:
    """The dump of a data set read from a Part 10 file, one line at a time.

    Parameters
    ----------
    ds
        A pydicom ``FileDataset`` (``ds.file_meta`` is its File Meta Information).
    meta, data_set
        Which of the two parts to print.
    only
        Tags to print (wherever they occur, with the sequences that hold them); all when
        empty. Section headings are left out then, as dcmdump ``+P`` leaves them out.
    limits
        How much of long values to show (default: ``Limits()``).
    """
    limits = limits or Limits()
    syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
    little = syntax != "1.2.840.10008.1.2.2"
    parts = [("File Meta Information (always explicit VR little endian)", ds.file_meta, True)
             if meta else None,
             (f"Data Set: {syntax_title(syntax)}", ds, little) if data_set else None]
    for part in parts:
        if part is None:
            continue
        heading, dataset, part_little = part
        if only:
            dataset = select(dataset, only)
        else:
            yield f"# {heading}"
        yield from _lines(dataset, depth=0, little=part_little, syntax=syntax, limits=limits)


def _lines(ds: Any, *, depth: int, little: bool, syntax: str, limits: Limits) -> Iterator[str]:
    indent = "  " * depth
    for elem in _elements(ds):
        tag = int(elem.tag)
        head = f"{indent}{tag_text(tag)} {elem.VR} "
        yield _columns(head + value_text(elem, little=little, syntax=syntax, limits=limits),
                       label(elem), depth)
        if elem.VR == "SQ" and elem.value:
            count = len(elem.value)
            for number, item in enumerate(elem.value, 1):
                yield f"{indent}  (FFFE,E000) <item {number} of {count}>"
                yield from _lines(item, depth=depth + 2, little=little, syntax=syntax,
                                  limits=limits)


def tag_text(tag: int) -> str:
    """``(gggg,eeee)``, upper case as PS3.6 writes tags."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _columns(left: str, comment: str, depth: int) -> str:
    # dcmdump's layout: the comment column at 56 characters, shifted with the nesting.
    return f"{left:<{56 + 2 * depth}} # {comment}" if comment else left


def label(elem: Any) -> str:
    """Keyword, else pydicom's name ("[Private name]", "Private Creator"); a known UID's
    name follows in parentheses."""
    text = elem.keyword or elem.name
    if elem.VR == "UI" and not elem.is_empty and elem.VM == 1:
        from pydicom.uid import UID

        name = UID(str(elem.value)).name
        if name and name != str(elem.value):
            text += f" ({name})"
    return printable(text)


def value_text(elem: Any, *, little: bool = True, syntax: str = "",
               limits: Limits | None = None) -> str:
    """One element's value as the dump shows it (without tag, VR and keyword)."""
    limits = limits or Limits()
    if elem.VR == "SQ":
        count = len(elem.value or ())
        return f"<{count} item{'' if count == 1 else 's'}>"
    if int(elem.tag) in PIXEL_TAGS and isinstance(elem.value, bytes):
        return pixel_summary(elem.value, encapsulated=elem.is_undefined_length,
                             syntax=syntax, little=little)
    if elem.is_empty:
        return "(no value)"
    if elem.VR in BINARY_VRS or isinstance(elem.value, bytes | bytearray):
        # The second case: a value pydicom could not convert to its VR (odd-length US).
        return _binary(elem.value, elem.VR, little, limits)
    values = list(elem.value) if elem.VM > 1 else [elem.value]
    shown = [_one_value(v, elem.VR) for v in values[:limits.values]]
    more = len(values) - len(shown)
    text = "\\".join(shown) + ("\\..." if more else "")
    suffix = f" ({len(values)} values)" if more else ""
    if len(text) > limits.text:
        suffix = suffix or f" ({len(text)} characters)"
        text = text[:limits.text] + "..."
    if elem.VR not in NUMBER_VRS and elem.VR != "AT":
        text = f"[{text}]"
    return text + suffix


def _one_value(value: Any, vr: str) -> str:
    if vr == "AT":
        return tag_text(int(value))
    if vr == "FL" and isinstance(value, float):
        return _float32(value)
    if vr == "FD" and isinstance(value, float):
        text = repr(value)  # the shortest that reads back the same, "1" for 1.0 as dcmdump
        return text[:-2] if text.endswith(".0") else text
    return printable(str(value))


def _float32(value: float) -> str:
    """The shortest text that reads back as the same 32-bit float (pydicom hands FL values
    over as 64-bit floats: 0.1 would print as 0.10000000149011612)."""
    packed = struct.pack("<f", value)
    for digits in range(6, 10):
        text = f"{value:.{digits}g}"
        if struct.pack("<f", float(text)) == packed:
            return text
    return repr(value)


def _binary(value: Any, vr: str, little: bool, limits: Limits) -> str:
    if not isinstance(value, bytes | bytearray):  # several values: pydicom gives a list
        value = b"".join(v for v in value if isinstance(v, bytes | bytearray))
    if vr == "OW" and len(value) % 2 == 0:
        count = min(len(value) // 2, limits.binary)
        words = struct.unpack(f"{'<' if little else '>'}{count}H", value[:2 * count])
        text = "\\".join(f"{w:04x}" for w in words)
        shown = 2 * count
    else:
        shown = min(len(value), limits.binary)
        text = "\\".join(f"{b:02x}" for b in value[:shown])
    if shown < len(value):
        text += f"\\... ({len(value)} bytes)"
    return text


def pixel_summary(value: bytes, *, encapsulated: bool, syntax: str = "",
                  little: bool = True) -> str:
    """``<pixel data: 524288 bytes>``; encapsulated, with the fragments and the syntax:
    ``<pixel data: 1724 bytes in 1 fragment, jpeg-baseline>`` (the basic offset table is not
    a fragment, PS3.5 A.4)."""
    from dcmtool.dicom.syntaxes import describe

    if not encapsulated:
        return f"<pixel data: {len(value)} bytes>"
    fragments, size = fragment_sizes(value, little=little)
    name = describe(syntax) if syntax else "encapsulated"
    return (f"<pixel data: {size} bytes in {fragments} fragment"
            f"{'' if fragments == 1 else 's'}, {name}>")


def fragment_sizes(value: bytes, *, little: bool = True) -> tuple[int, int]:
    """(fragments, their bytes) of encapsulated Pixel Data, basic offset table excluded; the
    walk stops at the first thing that is not an item (pydicom already read the value)."""
    prefix = "<" if little else ">"
    position, items, size = 0, 0, 0
    while position + 8 <= len(value):
        group, element, length = struct.unpack_from(prefix + "HHL", value, position)
        if (group << 16 | element) != _ITEM:
            break
        position += 8 + length
        if items:  # the first item is the basic offset table
            size += length
        items += 1
    return max(items - 1, 0), size


def syntax_title(uid: str) -> str:
    """``Explicit VR Little Endian (1.2.840.10008.1.2.1)``, or the UID alone if unknown."""
    from dcmtool.dicom.syntaxes import lookup

    known = lookup(uid) if uid else None
    if known is not None:
        return f"{known.title} ({uid})"
    return uid or "transfer syntax unknown"


def printable(text: str) -> str:
    """``text`` with every non-printable character escaped as Python writes it (``\\x1b``,
    ``\\n``): values come from files and must not drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# -- JSON ---------------------------------------------------------------------------------


def json_model(ds: Any, *, meta: bool = True, data_set: bool = True,
               only: Collection[int] = ()) -> dict[str, Any]:
    """The DICOM JSON model (PS3.18 F.2) of a file: File Meta (group 0002) and data set in
    one object, as DCMTK's ``dcm2json +fm`` writes them.

    Bulk data is left out: Pixel Data and binary values longer than ``BULK_THRESHOLD``
    bytes keep their ``vr`` and lose their value (shorter ones are ``InlineBinary``).
    """
    model: dict[str, Any] = {}
    for part, wanted in ((ds.file_meta, meta), (ds, data_set)):
        if not wanted:
            continue
        if only:
            part = select(part, only)
        model.update(_json(part))
    return model


def _json(ds: Any) -> dict[str, Any]:
    model: dict[str, Any] = {}
    for elem in _elements(ds):
        key = f"{int(elem.tag):08X}"
        if elem.VR == "SQ":
            entry: dict[str, Any] = {"vr": "SQ"}
            if elem.value:
                entry["Value"] = [_json(item) for item in elem.value]
            model[key] = entry
        elif elem.VR in BINARY_VRS or int(elem.tag) in PIXEL_TAGS:
            model[key] = _binary_json(elem)
        else:
            try:
                model[key] = elem.to_json_dict(None, BULK_THRESHOLD)
            except Exception as exc:  # a value pydicom kept as bytes, e.g. odd-length US
                warnings.warn(f"{tag_text(int(elem.tag))} left without a value: "
                              f"{_first_sentence(exc)}", stacklevel=2)
                model[key] = {"vr": elem.VR}
    return model


def _binary_json(elem: Any) -> dict[str, Any]:
    value = elem.value
    if isinstance(value, list):
        value = b"".join(v for v in value if isinstance(v, bytes | bytearray))
    if not isinstance(value, bytes | bytearray):
        return {"vr": elem.VR}  # a float array pydicom decoded; bulk data all the same
    if int(elem.tag) in PIXEL_TAGS or len(value) > BULK_THRESHOLD or not value:
        return {"vr": elem.VR}
    return {"vr": elem.VR, "InlineBinary": base64.b64encode(value).decode("ascii")}
