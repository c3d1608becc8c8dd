"""The values the index keeps, read from a received or stored file in one pass.

The common file (text and integer values in the default repertoire, Latin-1 or UTF-8) is
walked with struct (``dicom.structure.check_data_set``) and decoded here; anything else
(sequences, ISO 2022 code extensions, big endian) goes through pydicom. The walk is also the
structure check that refuses a truncated or malformed data set before it is acknowledged.
"""

from __future__ import annotations

import contextlib
import struct
from io import BytesIO
from pathlib import Path
from typing import Any

from dcmtool.archive.index import INDEXED_KEYWORDS, element_text
from dcmtool.dicom.elements import explicit_length
from dcmtool.dicom.part10 import data_set_bounds, header_of
from dcmtool.dicom.structure import DEFLATED, StructureError, check_data_set

#: Largest inflated size accepted for a deflated data set.
_MAX_INFLATED = 1 << 30
_MIN_INFLATED_CAP = 64 << 20
_MAX_INFLATION = 100
EXPLICIT_LE = "1.2.840.10008.1.2.1"

#: Files up to this size are walked in memory: a file's tell() is a system call.
_IN_MEMORY = 4 * 1024 * 1024

_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC",
             "UI", "UR", "UT"}
_STRIP_BOTH = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"}
_INTEGER_VRS = {"US": "H", "SS": "h", "UL": "L", "SL": "l"}
_SOURCE_AE = 0x0016


class HeaderReader:
    """Reads the indexed attributes (``index.INDEXED_KEYWORDS``) of Part 10 files.

    ``scratch``: where a deflated data set is inflated (bounded) to be walked.
    """

    def __init__(self, scratch: Path) -> None:
        from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

        self.scratch = scratch
        found = (tag_for_keyword(k) for k in INDEXED_KEYWORDS)
        self.tags = [int(t) for t in found if t is not None]
        self.keywords = {tag: keyword_for_tag(tag) for tag in self.tags}
        self.wanted = frozenset(self.tags)
        self.dictionary_vrs = {tag: dictionary_VR(tag) for tag in self.tags}

    def received(self, path: Path, transfer_syntax: str,
                 data: bytes | bytearray | None = None) -> dict[str, str | None]:
        """The values of a file written behind dcmtool's File Meta, its data set in
        ``transfer_syntax`` (``data``: the file's bytes, if at hand); checks the data set's
        structure on the way."""
        with contextlib.ExitStack() as stack:
            fh: Any
            if data is not None:
                fh = BytesIO(data)
            else:
                fh = stack.enter_context(path.open("rb"))
                if fh.seek(0, 2) <= _IN_MEMORY:
                    fh.seek(0)
                    fh = BytesIO(fh.read())
            start, end = data_set_bounds(fh)
            if transfer_syntax == DEFLATED[0]:
                walk = self._walk_deflated(fh, start)
            else:
                walk = check_data_set(fh, start, end, transfer_syntax, self.wanted)
        if walk is None:  # not walked: let pydicom read it
            return self.values(self.pydicom_header(path))
        fast = decode_simple(walk, self.keywords, self.dictionary_vrs)
        if fast is not None:
            return fast
        from pydicom.dataelem import DataElement, RawDataElement
        from pydicom.dataset import Dataset
        from pydicom.tag import BaseTag

        implicit = not walk.explicit
        raw: dict[BaseTag, DataElement | RawDataElement] = {
            BaseTag(tag): RawDataElement(BaseTag(tag), e.vr, e.length, e.value, e.offset,
                                         implicit, walk.little)
            for tag, e in sorted(walk.elements.items())
        }
        return self.values(Dataset(raw))

    def stored(self, path: Path) -> tuple[dict[str, str | None], str, str | None]:
        """(values, transfer syntax, source AE) of any Part 10 file, as reindex needs them:
        the File Meta parsed with struct where it can be, else pydicom reads the file."""
        with path.open("rb") as fh:
            head = fh.read(65536)
        header = header_of(head)
        if header is not None:
            source = _meta_text(head, header.dataset_offset, _SOURCE_AE)
            return self.received(path, header.transfer_syntax_uid), \
                header.transfer_syntax_uid, source
        ds = self.pydicom_header(path)
        meta = ds.file_meta
        return (self.values(ds), str(meta.TransferSyntaxUID),
                str(meta.get("SourceApplicationEntityTitle", "")).strip() or None)

    def pydicom_header(self, path: Path) -> Any:
        from pydicom import dcmread

        return dcmread(path, stop_before_pixels=True, specific_tags=self.tags)

    def values(self, ds: Any) -> dict[str, str | None]:
        """Index text for the indexed attributes present (``ds`` holds only those)."""
        keywords = self.keywords
        return {keywords[int(e.tag)]: element_text(e) for e in ds if int(e.tag) in keywords}

    def _walk_deflated(self, fh: Any, start: int) -> Any:
        """Inflate into a scratch file, bounded, and walk that: never the whole thing in memory
        (pydicom inflates a deflated data set in one call: a 1 MB C-STORE can claim GBs).

        The bound grows with the compressed size (``_MAX_INFLATION`` times it, at least
        ``_MIN_INFLATED_CAP``), so a deflate bomb is refused after tens of MiB of scratch file,
        not after a GiB; real deflated data sets (documents, reports) inflate far less."""
        import tempfile
        import zlib

        compressed = fh.seek(0, 2) - start
        cap = min(_MAX_INFLATED, max(_MIN_INFLATED_CAP, compressed * _MAX_INFLATION))
        fh.seek(start)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        with tempfile.TemporaryFile(dir=self.scratch) as out:
            total = 0
            while not inflater.eof:
                chunk = inflater.unconsumed_tail or fh.read(1 << 20)
                if not chunk:
                    raise StructureError("the deflated data set is truncated")
                data = inflater.decompress(chunk, 1 << 22)
                total += len(data)
                if total > cap:
                    # Short: it goes back in the C-STORE response's Error Comment (LO, 64).
                    raise StructureError(f"deflated data inflates past {cap >> 20} MiB")
                out.write(data)
            return check_data_set(out, 0, out.tell(), EXPLICIT_LE, self.wanted)


def _meta_text(head: bytes, end: int, element: int) -> str | None:
    """A File Meta element's text (explicit VR little endian, group 0002), or None."""
    position = 144
    while position + 8 <= end:
        group, number, vr = struct.unpack_from("<HH2s", head, position)
        length, position = explicit_length(head, position, vr)
        if group == 0x0002 and number == element:
            return head[position:position + length].decode("ascii", "replace").strip(
                " \x00") or None
        position += length
    return None


def decode_simple(walk: Any, keywords: dict[int, str],
                  dictionary_vrs: dict[int, str]) -> dict[str, str | None] | None:
    """Index text straight from the encoded values, for the common case.

    Covers text and integer VRs in the default repertoire, ISO_IR 100 and ISO_IR 192; returns
    ``None`` for anything else (sequences, code extensions), which pydicom then decodes.
    """
    charset = walk.elements.get(0x00080005)
    encoding = "latin-1"
    if charset is not None:
        terms = [t.strip() for t in charset.value.decode("ascii", "replace").split("\\")]
        terms = [t for t in terms if t]
        if terms in ([], ["ISO_IR 6"], ["ISO_IR 100"]):
            encoding = "latin-1"
        elif terms == ["ISO_IR 192"]:
            encoding = "utf-8"
        else:
            return None
    prefix = "<" if walk.little else ">"
    values: dict[str, str | None] = {}
    for tag, element in walk.elements.items():
        vr = element.vr or dictionary_vrs.get(tag, "")
        raw = element.value
        if vr in _TEXT_VRS:
            text = raw.decode(encoding, "replace")
            text = text.strip(" \x00") if vr in _STRIP_BOTH else text.rstrip(" \x00")
            if vr == "PN":  # as pydicom: no empty trailing component groups
                text = "\\".join(name.rstrip("=") for name in text.split("\\"))
            values[keywords[tag]] = text or None
        elif vr in _INTEGER_VRS:
            code = _INTEGER_VRS[vr]
            count = len(raw) // struct.calcsize(code)
            numbers = struct.unpack(f"{prefix}{count}{code}", raw[: count * struct.calcsize(code)])
            values[keywords[tag]] = "\\".join(str(n) for n in numbers) or None
        else:
            return None
    return values
