"""Directory records (PS3.3 F.5): which record an instance gets, its keys, their encoding.

pydicom's ``DIRECTORY_RECORDERS`` are the maintained source of the keys of each record type:
each recorder checks its Type 1 keys (``_check_dataset`` raises naming the first one
missing), copies its Type 2 keys (``ds.get``: present, maybe empty) and asks for its Type 1C
keys (``"Key" in ds``). The tables below are read off the recorders once, by running each on
a probe data set, so that a key pydicom adds reaches our records too; the records themselves
are encoded here, from the instance's encoded values (no pydicom data set on the fast path).

Values travel as ``(VR, bytes)``: the value as explicit VR little endian holds it, in the
instance's Specific Character Set, copied from the file where it was read without pydicom.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from dcmtool.dicom.elements import LONG_LENGTH_VRS, padded
from dcmtool.media.profiles import Profile

Value = tuple[str, bytes]

SPECIFIC_CHARACTER_SET = 0x00080005
SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
MODALITY = 0x00080060
PATIENT_ID = 0x00100020
PATIENT_NAME = 0x00100010
PATIENT_BIRTH_DATE = 0x00100030
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
STUDY_DATE, STUDY_TIME, STUDY_ID = 0x00080020, 0x00080030, 0x00200010
SERIES_NUMBER, INSTANCE_NUMBER = 0x00200011, 0x00200013
BITS_STORED = 0x00280101
ENCAPSULATED_DOCUMENT = 0x00420011
RT_PLAN_LABEL = 0x300A0002
CONTENT_SEQUENCE = 0x0040A730
VERIFICATION_DATE_TIME = 0x0040A030
PIXEL_DATA = 0x7FE00010
#: Where dcmmkdir +I looks for a missing Study Date/Time, in order (then: now).
DATE_ALTERNATIVES = (0x00080021, 0x00080022, 0x00080023)  # Series, Acquisition, Content
TIME_ALTERNATIVES = (0x00080031, 0x00080032, 0x00080033)

#: What the exporter reads of every instance besides the record keys.
CONTROL_TAGS = frozenset({
    SPECIFIC_CHARACTER_SET, SOP_CLASS_UID, SOP_INSTANCE_UID, MODALITY, PATIENT_BIRTH_DATE,
    STUDY_INSTANCE_UID, SERIES_INSTANCE_UID, BITS_STORED, RT_PLAN_LABEL, ENCAPSULATED_DOCUMENT,
    *DATE_ALTERNATIVES, *TIME_ALTERNATIVES,
})


@dataclass(frozen=True)
class Keys:
    """The keys of one record type, as tags, by how they are written."""

    required: tuple[int, ...]  # Type 1: a value, or the record cannot be written
    empty_allowed: tuple[int, ...]  # Type 2: written empty when the instance has none
    if_present: tuple[int, ...]  # Type 1C/3: written when the instance has a value

    @property
    def tags(self) -> frozenset[int]:
        return frozenset((*self.required, *self.empty_allowed, *self.if_present))



_CHECK_MESSAGE = re.compile(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)")


def pydicom_helpers() -> dict[str, Any]:
    """pydicom's recorders and record type helpers (two are private); a pydicom release
    without them fails here, saying why, not later with a KeyError (pinned below 3.1)."""
    import pydicom
    import pydicom.fileset as fileset

    helpers = ("DIRECTORY_RECORDERS", "_four_level_record_type", "_single_level_record_type")
    missing = [name for name in helpers if not hasattr(fileset, name)]
    if missing:
        raise ImportError(f"pydicom {pydicom.__version__}'s pydicom.fileset has no "
                          f"{', '.join(missing)}: dcmtool.media builds its directory records "
                          "with them (written for pydicom 3.0)")
    return {name: getattr(fileset, name) for name in helpers}


_HELPERS = pydicom_helpers()  # checked when dcmtool.media is imported


def _recorders() -> dict[str, Any]:
    return _HELPERS


@cache
def f5_keys(record_type: str) -> Keys:
    """The PS3.3 F.5 keys of ``record_type``, read off pydicom's recorder for it."""
    from pydicom.datadict import keyword_for_tag, tag_for_keyword
    from pydicom.dataset import Dataset

    asked: list[str] = []

    class Probe(Dataset):  # notes the Type 1C keys a recorder asks for
        def __contains__(self, name: object) -> bool:
            if isinstance(name, str):
                asked.append(name)
            return super().__contains__(name)  # type: ignore[operator]

    recorder = _recorders()["DIRECTORY_RECORDERS"][record_type]
    probe = Probe()
    required: list[str] = []
    for _ in range(64):
        try:
            record = recorder(probe)
            break
        except ValueError as exc:  # _check_dataset: "The instance's (0010,0020) ... missing"
            match = _CHECK_MESSAGE.search(str(exc))
            keyword = keyword_for_tag(int(match.group(1) + match.group(2), 16)) if match else ""
            if not keyword or keyword in required:
                raise ImportError(f"cannot read the keys of {record_type} records off pydicom's "
                                  f"recorder: {exc}") from None
            required.append(keyword)
            setattr(probe, keyword, _dummy(keyword))
    else:
        raise ImportError(f"pydicom's {record_type} recorder never accepted a data set")
    written = [elem.keyword for elem in record]
    tags = _tags_of
    return Keys(
        required=tags(required),
        empty_allowed=tags(k for k in written if k not in required),
        if_present=tags(k for k in dict.fromkeys(asked)
                        if k not in required and k not in written and tag_for_keyword(k)),
    )


def _tags_of(keywords: Iterable[str]) -> tuple[int, ...]:
    from pydicom.datadict import tag_for_keyword

    return tuple(int(tag_for_keyword(k)) for k in keywords)  # type: ignore[arg-type]


_DUMMIES: dict[str, Any] = {"DA": "20000101", "TM": "000000", "DT": "20000101000000",
                            "IS": "1", "DS": "1", "UI": "1.2", "US": 1, "UL": 1, "SS": 1,
                            "SL": 1, "FL": 1.0, "FD": 1.0, "AS": "001Y"}


def _dummy(keyword: str) -> Any:
    from pydicom.datadict import dictionary_VR
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    vr = dictionary_VR(keyword)
    return Sequence([Dataset()]) if vr == "SQ" else _DUMMIES.get(vr, "X")


@cache
def record_keys(record_type: str, profile: Profile | None = None) -> Keys:
    """F.5 keys plus what ``profile`` adds to this record type (PS3.11)."""
    keys = f5_keys(record_type)
    extras = profile.extras.get(record_type) if profile is not None else None
    if extras is None:
        return keys
    required = keys.required + tuple(t for t in _tags_of(extras.required)
                                      if t not in keys.tags)
    if_present = keys.if_present + tuple(t for t in _tags_of(extras.if_present)
                                         if t not in keys.tags and t not in required)
    return Keys(required, keys.empty_allowed, if_present)


@cache
def needs_pydicom(record_type: str) -> bool:
    """Whether a record of this type has sequences, which the scan leaves to pydicom."""
    return any(vr_of(tag) == "SQ" for tag in f5_keys(record_type).tags)


@cache
def raw_tags() -> frozenset[int]:
    """Every tag a record of any type, in any profile, takes from an instance, and that can be
    copied without pydicom (not a sequence)."""
    from dcmtool.media.profiles import PROFILES

    tags = set(CONTROL_TAGS)
    for record_type in _recorders()["DIRECTORY_RECORDERS"]:
        for profile in PROFILES.values():
            tags |= record_keys(record_type, profile).tags
    return frozenset(t for t in tags if vr_of(t) != "SQ")


@cache
def _kept_tags(record_type: str, top_level: bool, profile: Profile | None) -> frozenset[int]:
    from dcmtool.media.profiles import PROFILES

    levels = (record_type,) if top_level else ("PATIENT", "STUDY", "SERIES", record_type)
    tags = {SOP_CLASS_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID,
            PATIENT_BIRTH_DATE, BITS_STORED}
    for level in levels:
        for each in (profile,) if profile is not None else PROFILES.values():
            tags |= record_keys(level, each).tags
    return frozenset(tags)


def kept(record_type: str, top_level: bool, values: dict[int, Value],
         profile: Profile | None = None) -> dict[int, Value]:
    """What the records of an instance need of its values (the rest is let go: ten
    thousand instances are held until the DICOMDIR is written). The alternatives to a
    missing Study Date or Time stay, for dcmmkdir's way of inventing them."""
    keep = _kept_tags(record_type, top_level, profile)
    out = {tag: value for tag, value in values.items() if tag in keep}
    if not has_value(out.get(STUDY_DATE)) or not has_value(out.get(STUDY_TIME)):
        out.update((t, values[t]) for t in (*DATE_ALTERNATIVES, *TIME_ALTERNATIVES)
                   if t in values)
    return out


@lru_cache(maxsize=256)
def record_type(sop_class: str, modality: str = "", encapsulated_document: bool = False,
                rt_plan_label: bool = False) -> tuple[str, bool]:
    """(record type, whether it sits at the root) of an instance, as pydicom decides it."""
    from pydicom.dataset import Dataset

    probe = Dataset()
    probe.SOPClassUID = sop_class
    if modality:
        probe.Modality = modality
    if encapsulated_document:
        probe.EncapsulatedDocument = b""
    if rt_plan_label:
        probe.RTPlanLabel = "X"
    helpers = _recorders()
    top = helpers["_single_level_record_type"](probe)
    if top != "PATIENT":
        return str(top), True
    return str(helpers["_four_level_record_type"](probe)), False


@lru_cache(maxsize=4096)
def vr_of(tag: int) -> str:
    from pydicom.datadict import dictionary_VR

    try:
        vr = str(dictionary_VR(tag))
    except KeyError:
        return "UN"
    return vr if len(vr) == 2 else "UN"  # "US or SS": not a record key


# -- values -------------------------------------------------------------------------------

def has_value(value: Value | None) -> bool:
    return value is not None and bool(value[1].strip(b"\x00 "))


def text(value: Value | None, charset: bytes = b"") -> str:
    """A value as a string: text in its character set, numbers from their binary form."""
    if value is None:
        return ""
    vr, raw = value
    if vr in _BINARY:
        count = len(raw) // struct.calcsize(_BINARY[vr])
        return "\\".join(str(v) for v in struct.unpack_from(f"<{count}{_BINARY[vr][1]}", raw))
    stripped = raw.rstrip(b"\x00 ")
    if vr in _TEXT_VRS and not _plain(stripped):
        from pydicom.charset import convert_encodings, decode_bytes

        encodings = convert_encodings(charset.decode("ascii", "replace").split("\\"))
        return decode_bytes(stripped, encodings, _DELIMITERS.get(vr, set())).strip()
    return stripped.decode("ascii", "replace").strip()


_BINARY = {"US": "<H", "SS": "<h", "UL": "<L", "SL": "<l", "FL": "<f", "FD": "<d"}
_TEXT_VRS = frozenset({"PN", "LO", "SH", "ST", "LT", "UT", "UC"})
_DELIMITERS = {"PN": {0x5C, 0x3D, 0x5E}, "LO": {0x5C}, "SH": {0x5C}, "UC": {0x5C}}


def _plain(raw: bytes) -> bool:
    """ASCII without escape sequences: the same bytes in every character set."""
    return raw.isascii() and b"\x1b" not in raw


def _plain_items(raw: bytes) -> bool:
    """Whether every text value in an encoded sequence (explicit VR little endian, defined
    lengths, as ``values_of`` writes it) is plain: its lengths are binary, so the bytes
    themselves do not tell."""
    position = 0
    while position + 8 <= len(raw):
        (group,) = struct.unpack_from("<H", raw, position)
        position += 8
        if group == 0xFFFE:  # an item: its elements follow
            continue
        vr = raw[position - 4:position - 2].decode("ascii", "replace")
        if vr in LONG_LENGTH_VRS:
            (length,) = struct.unpack_from("<L", raw, position)
            position += 4
        else:
            length = struct.unpack_from("<H", raw, position - 2)[0]
        value = raw[position:position + length]
        if (vr in _TEXT_VRS and not _plain(value)) or (vr == "SQ" and not _plain_items(value)):
            return False
        position += length
    return True


def encoded(vr: str, value: str) -> Value:
    """An ASCII value (an invented key, a UID) as ``(VR, bytes)``."""
    if vr in _BINARY:
        return vr, struct.pack(_BINARY[vr], int(value))
    return vr, padded(vr, value.encode("ascii"))


def element(tag: int, value: Value) -> bytes:
    vr, raw = value
    if vr in LONG_LENGTH_VRS:
        return struct.pack("<HH2sHL", tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(raw)) + raw
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr.encode(), len(raw)) + raw


def encode_body(values: Mapping[int, Value], charset: bytes = b"") -> bytes:
    """A record's elements after Directory Record Type (0004,1430), in tag order; Specific
    Character Set first when a text value needs it (PS3.3 F.5: Type 1C)."""
    items = sorted(values.items())
    if charset and not all(_plain(raw) if vr in _TEXT_VRS else _plain_items(raw)
                           for _, (vr, raw) in items if vr in _TEXT_VRS or vr == "SQ"):
        items.insert(next((i for i, (t, _) in enumerate(items) if t > SPECIFIC_CHARACTER_SET),
                          len(items)),
                     (SPECIFIC_CHARACTER_SET, ("CS", padded("CS", charset))))
    return b"".join(element(tag, value) for tag, value in items)


def references(file_id: tuple[str, ...], sop_class: str, sop_instance: str,
               syntax: str) -> dict[int, Value]:
    """Referenced File ID and the Referenced ... in File UIDs of a record (PS3.3 F.3.2.2)."""
    return {
        0x00041500: ("CS", padded("CS", "\\".join(file_id).encode("ascii"))),
        0x00041510: encoded("UI", sop_class),
        0x00041511: encoded("UI", sop_instance),
        0x00041512: encoded("UI", syntax),
    }


def keys_of(keys: Keys, values: Mapping[int, Value]) -> tuple[dict[int, Value], list[int]]:
    """The record's key values from the instance's, and the Type 1 keys it has no value for."""
    out: dict[int, Value] = {}
    missing: list[int] = []
    for tag in keys.required:
        value = values.get(tag)
        if has_value(value):
            out[tag] = value  # type: ignore[assignment]
        else:
            missing.append(tag)
    for tag in keys.empty_allowed:
        value = values.get(tag)
        out[tag] = value if value is not None else (vr_of(tag), b"")
    for tag in keys.if_present:
        value = values.get(tag)
        if has_value(value):
            out[tag] = value  # type: ignore[assignment]
    return out, missing


@lru_cache(maxsize=4096)
def keyword(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    return str(keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})")


def display(values: Mapping[int, Value], charset: bytes = b"") -> dict[str, str]:
    """Keyword -> value as text, sequences left out: what ``ls`` shows of a record."""
    return {keyword(tag): text(value, charset) for tag, value in sorted(values.items())
            if value[0] != "SQ" and tag > SPECIFIC_CHARACTER_SET}


# -- values of a pydicom data set (the slow path) -----------------------------------------

def values_of(ds: Any, tags: Iterable[int]) -> dict[int, Value]:
    """The values of ``tags`` that ``ds`` has, encoded as explicit VR little endian in its
    character set; sequences with defined lengths. An SR's Content Sequence is reduced to the
    concept modifiers of its root (HAS CONCEPT MOD), which is what the SR DOCUMENT and KEY
    OBJECT DOC records hold (PS3.3 F.5.21, F.5.26)."""
    from pydicom.dataelem import DataElement
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element
    from pydicom.sequence import Sequence

    charset = ds.get("SpecificCharacterSet")
    encodings = [charset] if isinstance(charset, str) else list(charset or [])
    out: dict[int, Value] = {}
    for tag in tags:
        elem = _element_of(ds, tag)
        if elem is None:
            continue
        if tag == CONTENT_SEQUENCE:
            modifiers = [item for item in elem.value
                         if item.get("RelationshipType") == "HAS CONCEPT MOD"]
            if not modifiers:
                continue
            elem = DataElement(tag, "SQ", Sequence(modifiers))
        if elem.VR == "SQ":
            _define_lengths(elem)
        buffer = DicomBytesIO()
        buffer.is_little_endian = True
        buffer.is_implicit_VR = False
        write_data_element(buffer, elem, encodings or None)
        raw = buffer.getvalue()
        vr = raw[4:6].decode("ascii")
        out[tag] = (vr, raw[12:] if vr in LONG_LENGTH_VRS else raw[8:])
    return out


def _element_of(ds: Any, tag: int) -> Any:
    if tag in ds:
        return ds[tag]
    if tag == VERIFICATION_DATE_TIME and ds.get("VerificationFlag") == "VERIFIED":
        # The most recent verification (PS3.3 F.5.21, as dcmmkdir takes it).
        observers = ds.get("VerifyingObserverSequence") or []
        if observers and "VerificationDateTime" in observers[-1]:
            return observers[-1]["VerificationDateTime"]
    return None


def _define_lengths(elem: Any) -> None:
    """Items and sequences with defined lengths, all the way down."""
    elem.is_undefined_length = False
    for item in elem.value:
        item.is_undefined_length_sequence_item = False
        for child in item:
            if child.VR == "SQ":
                _define_lengths(child)
