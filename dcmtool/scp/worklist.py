"""Modality Worklist items from a folder (``ROOT/worklist``) and C-FIND matching against them.

The library half of the Modality Worklist SCP (SOP class 1.2.840.10008.5.1.4.31, PS3.4 K):
the server's C-FIND handler calls ``WorklistFolder.find(identifier)`` and sends each yielded
data set as a pending response.

Items
    One scheduled procedure per data set, in files as DCMTK's ``wlmscpfs`` uses them: ``*.wl``
    (Part 10 files or bare data sets, read with ``dcmread(force=True)``) and DICOM JSON ``*.json``
    (PS3.18 F: one object, or a list of objects). Files directly in the folder and in its
    subfolders one level down are read (wlmscpfs keeps ``ROOT/worklist/AETITLE/*.wl`` per called
    AE title); every item is served whatever AE title was called. Names starting with ``.`` and
    other suffixes (wlmscpfs's ``lockfile``) are ignored. A missing folder holds no items.

    An item must carry the PS3.4 K.6-1 return keys an SCU relies on (see ``REQUIRED_KEYS`` and
    ``REQUIRED_STEP_KEYS``; Type 1 with a value, Type 2 present). Items that do not, and files
    that cannot be read, are skipped with one log line naming the file, never an exception
    (like ``wlmscpfs --enable-file-reject``). JSON text is Unicode: a JSON item with non-ASCII
    text and no Specific Character Set gets ``ISO_IR 192``.

Re-reading
    Every ``find()`` lists the folder (names, sizes, mtimes, inodes) and reads again only the
    files that are new or changed; deleted files drop out. No threads; calls from several
    association threads are serialised by a lock.

Matching (PS3.4 C.2.2.2), per key of the identifier
    * universal: an empty value, or ``*``, matches every item, also one without the attribute;
      any other value never matches an item that lacks the attribute or has it empty.
    * single value: exact and case-sensitive; PN optionally case-insensitive. Leading and
      trailing spaces do not count. PN also matches one component group alone (``山田^太郎``
      matches ``Yamada^Tarou=山田^太郎``), and trailing empty components do not count.
    * wildcard ``*`` and ``?`` for the text VRs (AE CS LO LT PN SH ST UC UR UT); not for UI,
      DA, TM, DT or numbers, where they are literal.
    * list (values separated by ``\\``): matches if any value does (meant for UIDs).
    * range for DA, TM and DT: ``A-B``, ``-B``, ``A-``. A single TM/DT value is the range of
      its precision (``0856`` matches 08:56:00-08:56:59.999999). DT offsets are ignored.
      Scheduled Procedure Step Start Date and Start Time are matched independently (not as one
      combined date-time range).
    * a multi-valued attribute of the item matches if any of its values does.
    * sequence: the first item of the query's sequence holds the sub-keys; an item of the
      worklist item's sequence matches if it matches all of them (recursively). The response
      carries the matching sequence items with the requested sub-keys only. An empty query
      sequence returns the whole sequence items.
    * Specific Character Set, Query/Retrieve Level, group lengths and command/meta groups in
      the identifier are not keys.

Responses
    A new data set per match with every key of the identifier, filled from the item (empty if
    the item lacks it), plus the item's Specific Character Set if it has one. Values are the
    item's decoded values (``str``), so the server encodes them in the item's character set.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator
from collections.abc import Sequence as AbcSequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

LOG = logging.getLogger("dcmtool.scp.worklist")

#: File name suffixes read as worklist items (compared case-insensitively).
SUFFIXES = (".wl", ".json")

#: Attributes every item needs (PS3.4 K.6-1): keyword -> needs a value (Type 1) rather than
#: only being present (Type 2). Plus a Scheduled Procedure Step Sequence with at least one item.
REQUIRED_KEYS: dict[str, bool] = {
    "PatientName": True,
    "PatientID": True,
    "AccessionNumber": False,
    "StudyInstanceUID": True,
    "RequestedProcedureID": True,
}
#: What every item of the Scheduled Procedure Step Sequence needs.
REQUIRED_STEP_KEYS: dict[str, bool] = {
    "Modality": True,
    "ScheduledProcedureStepStartDate": True,
    "ScheduledProcedureStepID": True,
}
STEP_SEQUENCE = "ScheduledProcedureStepSequence"

_CHARSET_TAG = 0x00080005
_QUERY_LEVEL_TAG = 0x00080052
_WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_NUMERIC_VRS = frozenset({"DS", "IS", "FL", "FD", "SL", "SS", "SV", "UL", "US", "UV"})
_DT = r"\d{4,14}(?:\.\d{1,6})?(?:[+-]\d{4})?"
_DT_SINGLE = re.compile(r"(\d{4,14})(?:\.(\d{1,6}))?(?:[+-]\d{4})?")
_DT_RANGE = re.compile(rf"({_DT})?-({_DT})?")
_TM = re.compile(r"(\d{2}|\d{4}|\d{6})(?:\.(\d{1,6}))?")

Stamp = tuple[int, int, int, int]  # mtime_ns, ctime_ns, size, inode


@dataclass(frozen=True)
class _Loaded:
    stamp: Stamp
    items: list[Dataset]


class WorklistFolder:
    """The worklist items in ``folder`` (read lazily, re-read when files change).

    ``log`` receives one line per skipped file or item (default: the ``dcmtool.scp.worklist``
    logger at WARNING). A file is logged again only after it changes.
    """

    def __init__(self, folder: Path, log: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self._log: Callable[[str], None] = log if log is not None else LOG.warning
        self._lock = threading.Lock()
        self._files: dict[Path, _Loaded] = {}
        self._items: list[Dataset] = []

    @property
    def items(self) -> list[Dataset]:
        """The valid items, in file name order (after a refresh). Do not modify them."""
        self.refresh()
        return list(self._items)

    def refresh(self) -> None:
        """Re-read new and changed files, forget deleted ones."""
        with self._lock:
            found = self._scan()
            changed = False
            for path in [p for p in self._files if p not in found]:
                del self._files[path]
                changed = True
            for path, stamp in sorted(found.items()):
                loaded = self._files.get(path)
                if loaded is None or loaded.stamp != stamp:
                    self._files[path] = _Loaded(stamp, self._load(path))
                    changed = True
            if changed:
                self._items = [ds for path in sorted(self._files)
                               for ds in self._files[path].items]

    def find(self, identifier: Dataset, *, case_insensitive_names: bool = False
             ) -> Iterator[Dataset]:
        """The responses for a C-FIND identifier, one per matching item (folder re-read now)."""
        self.refresh()
        return self._matches(list(self._items), identifier, case_insensitive_names)

    @staticmethod
    def _matches(items: list[Dataset], identifier: Dataset, fold: bool) -> Iterator[Dataset]:
        for item in items:
            response = match_item(identifier, item, case_insensitive_names=fold)
            if response is not None:
                yield response

    # -- reading the folder ------------------------------------------------------------

    def _scan(self) -> dict[Path, Stamp]:
        found: dict[Path, Stamp] = {}
        for entry in _entries(self.folder):
            if entry.is_dir(follow_symlinks=True):
                for sub in _entries(Path(entry.path)):
                    self._consider(sub, found)
            else:
                self._consider(entry, found)
        return found

    @staticmethod
    def _consider(entry: os.DirEntry[str], found: dict[Path, Stamp]) -> None:
        if not entry.name.lower().endswith(SUFFIXES):
            return
        try:
            if not entry.is_file(follow_symlinks=True):
                return
            st = entry.stat(follow_symlinks=True)
        except OSError:  # deleted while listing
            return
        found[Path(entry.path)] = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)

    def _load(self, path: Path) -> list[Dataset]:
        name = self._name(path)
        try:
            if path.name.lower().endswith(".json"):
                datasets = _read_json(path)
            else:
                datasets = [_read_dicom(path)]
        except Exception as exc:  # pydicom raises many types for a broken file
            self._log(f"worklist: skipped {name}: cannot read it ({_reason(exc)})")
            return []
        valid: list[Dataset] = []
        for number, ds in enumerate(datasets):
            where = f"{name}[{number}]" if len(datasets) > 1 else name
            try:
                missing = missing_keys(ds)
            except Exception as exc:
                self._log(f"worklist: skipped {where}: cannot decode it ({_reason(exc)})")
                continue
            if len(missing) == len(REQUIRED_KEYS) + 1:
                self._log(f"worklist: skipped {where}: not a worklist item "
                          "(none of the required attributes; not DICOM?)")
            elif missing:
                self._log(f"worklist: skipped {where}: missing {', '.join(missing)}")
            else:
                valid.append(ds)
        return valid

    def _name(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.folder))
        except ValueError:
            return str(path)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return [e for e in it if not e.name.startswith(".")]
    except OSError:  # missing folder, or not a folder
        return []


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _read_dicom(path: Path) -> Dataset:
    from pydicom import dcmread

    ds = dcmread(path, force=True, stop_before_pixels=True)
    _decode_all(ds)
    return ds


def _read_json(path: Path) -> list[Dataset]:
    from pydicom.dataset import Dataset

    data = json.loads(path.read_text(encoding="utf-8"))
    objects = data if isinstance(data, list) else [data]
    datasets: list[Dataset] = []
    for obj in objects:
        if not isinstance(obj, dict):
            raise ValueError(f"expected a DICOM JSON object, found {type(obj).__name__}")
        ds = Dataset.from_json(obj)
        _decode_all(ds)
        if "SpecificCharacterSet" not in ds and _has_non_ascii(ds):
            ds.SpecificCharacterSet = "ISO_IR 192"
        datasets.append(ds)
    return datasets


def _decode_all(ds: Dataset) -> None:
    """Convert every raw element now, so a broken file fails at load and not in a query."""
    for _ in ds.iterall():
        pass


def _has_non_ascii(ds: Dataset) -> bool:
    return any(elem.VR != "SQ" and not isinstance(elem.value, bytes | bytearray)
               and not all(t.isascii() for t in _texts(elem)) for elem in ds.iterall())


def missing_keys(ds: Dataset) -> list[str]:
    """The required attributes ``ds`` lacks, e.g. ``ScheduledProcedureStepSequence[0].Modality``."""
    missing = [k for k, needs_value in REQUIRED_KEYS.items() if not _has(ds, k, needs_value)]
    steps = _element(ds, STEP_SEQUENCE)
    if steps is None or steps.VR != "SQ" or not steps.value:
        missing.append(STEP_SEQUENCE)
    else:
        for number, step in enumerate(steps.value):
            missing.extend(f"{STEP_SEQUENCE}[{number}].{k}"
                           for k, needs_value in REQUIRED_STEP_KEYS.items()
                           if not _has(step, k, needs_value))
    return missing


def _element(ds: Dataset, keyword: str) -> DataElement | None:
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return None if tag is None or tag not in ds else ds[tag]


def _has(ds: Dataset, keyword: str, needs_value: bool) -> bool:
    element = _element(ds, keyword)
    return element is not None and (not needs_value or bool(_texts(element)))


# -- matching ---------------------------------------------------------------------------


def match_item(identifier: Dataset, item: Dataset, *, case_insensitive_names: bool = False
               ) -> Dataset | None:
    """The response for ``item`` if it matches ``identifier`` (PS3.4 C.2.2.2), else ``None``."""
    response = _match_dataset(identifier, item, case_insensitive_names)
    if response is not None and _CHARSET_TAG in item:
        response.add(copy.deepcopy(item[_CHARSET_TAG]))
    return response


def _is_key(tag: int) -> bool:
    group, element = tag >> 16, tag & 0xFFFF
    return (group > 0x0002 and element != 0x0000
            and tag not in (_CHARSET_TAG, _QUERY_LEVEL_TAG))


def _match_dataset(query: Dataset, item: Dataset, fold: bool) -> Dataset | None:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    response = Dataset()
    for key in query:
        if not _is_key(key.tag):
            continue
        found: DataElement | None = item.get(key.tag, None)
        if key.VR == "SQ":
            matched = _match_sequence(key, found, fold)
            if matched is None:
                return None
            response.add(DataElement(key.tag, "SQ", Sequence(matched)))
            continue
        vr = found.VR if found is not None and found.VR not in ("UN", "SQ") else key.VR
        if not _element_matches(key, found, vr, fold):
            return None
        if found is not None:
            response.add(copy.deepcopy(found))
        else:
            response.add(DataElement(key.tag, key.VR, None))
    return response


def _match_sequence(key: DataElement, found: DataElement | None, fold: bool
                    ) -> list[Dataset] | None:
    """The matching sequence items (with the requested sub-keys), or ``None``: no match."""
    steps: list[Dataset] = list(found.value) if found is not None and found.VR == "SQ" else []
    if not key.value:  # empty sequence: universal, the whole items
        return [copy.deepcopy(step) for step in steps]
    sub_keys: Dataset = key.value[0]
    matched = [r for step in steps if (r := _match_dataset(sub_keys, step, fold)) is not None]
    if matched:
        return matched
    if not steps and _all_universal(sub_keys):
        return []
    return None


def _all_universal(query: Dataset) -> bool:
    for key in query:
        if not _is_key(key.tag):
            continue
        if key.VR == "SQ":
            if key.value and not _all_universal(key.value[0]):
                return False
        elif not _is_universal(_texts(key)):
            return False
    return True


def _is_universal(values: list[str]) -> bool:
    return not values or "*" in values


def _texts(element: DataElement) -> list[str]:
    """An element's values as stripped text; empty values left out."""
    value: Any = element.value
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):  # UN (e.g. private keys in implicit VR)
        value = bytes(value).decode("latin-1").strip("\x00 ").split("\\")
    many = isinstance(value, AbcSequence) and not isinstance(value, str)
    values = list(value) if many else [value]
    texts = (str(v).strip(" \x00") for v in values if v is not None)
    return [t for t in texts if t]


def _element_matches(key: DataElement, found: DataElement | None, vr: str, fold: bool) -> bool:
    wanted = _texts(key)
    if _is_universal(wanted):
        return True
    if found is None:
        return False
    have = _texts(found)
    return any(value_matches(w, h, vr, case_insensitive=fold) for w in wanted for h in have)


def value_matches(query: str, value: str, vr: str, *, case_insensitive: bool = False) -> bool:
    """Whether one query value matches one value of an item, for an attribute of ``vr``.

    ``case_insensitive`` applies to PN only.
    """
    if vr in ("DA", "TM", "DT"):
        return _range_matches(query, value, vr)
    if vr == "PN":
        pattern = _pn_normal(query)
        candidates = [_pn_normal(value)]
        if "=" not in pattern:
            candidates += [_pn_normal(group) for group in value.split("=")]
        return any(_text_matches(pattern, c, case_insensitive) for c in candidates if c)
    if vr in _WILDCARD_VRS:
        return _text_matches(query, value, False)
    if vr in _NUMERIC_VRS:
        try:
            return float(query) == float(value)
        except ValueError:
            return query == value
    return query == value


def _pn_normal(name: str) -> str:
    return "=".join(group.rstrip("^ ") for group in name.split("=")).rstrip("=")


def _text_matches(pattern: str, text: str, fold: bool) -> bool:
    if fold:
        pattern, text = pattern.casefold(), text.casefold()
    if "*" in pattern or "?" in pattern:
        return _wildcard(pattern).fullmatch(text) is not None
    return pattern == text


@functools.lru_cache(maxsize=256)
def _wildcard(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _range_matches(query: str, value: str, vr: str) -> bool:
    bounds = _bounds(query, vr)
    target = _normal(value, vr, upper=False)
    if bounds is None or target is None:
        return False
    low, high = bounds
    return (low is None or low <= target) and (high is None or target <= high)


def _bounds(query: str, vr: str) -> tuple[str | None, str | None] | None:
    """Lower and upper bound of a DA/TM/DT query value (``None``: open); ``None`` if invalid."""
    if vr == "DT" and _DT_SINGLE.fullmatch(query):
        low_text, high_text = query, query
    elif vr == "DT":
        match = _DT_RANGE.fullmatch(query)
        if match is None:
            return None
        low_text, high_text = match.group(1) or "", match.group(2) or ""
    elif "-" in query:
        low_text, _, high_text = query.partition("-")
    else:
        low_text, high_text = query, query
    low = _normal(low_text, vr, upper=False) if low_text else None
    high = _normal(high_text, vr, upper=True) if high_text else None
    if (low_text and low is None) or (high_text and high is None):
        return None
    return low, high


def _normal(text: str, vr: str, *, upper: bool) -> str | None:
    """A date/time as a fixed-width string that sorts in time order (missing digits: 0 or 9)."""
    fill = "9" if upper else "0"
    text = text.strip()
    if vr == "DA":
        text = text.replace(".", "")  # ACR-NEMA style 2026.01.15
        return text if len(text) == 8 and text.isdigit() else None
    match = (_TM if vr == "TM" else _DT_SINGLE).fullmatch(text.replace(":", ""))
    if match is None:
        return None
    whole, fraction = match.group(1), match.group(2) or ""
    return whole.ljust(6 if vr == "TM" else 14, fill) + "." + fraction.ljust(6, fill)
