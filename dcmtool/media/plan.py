"""The layout of a file set before anything is written: the checks, the records, the file IDs.

Instances group into patients (Patient ID), studies (Study Instance UID) and series (Series
Instance UID), beside the records already in the file set when adding. Everything that would
make a wrong or incomplete DICOMDIR is collected first and refused in one MediaError: one
Patient ID with two names or birth dates, a study or series under two parents, one SOP
Instance UID with two contents, a truncated file, a missing Type 1 key (PS3.3 F.5) that is
not invented. New patients, studies, series and instances are numbered in a stable order:
Patient ID; Study Date then UID; Series Number then UID; Instance Number then UID.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dcmtool.errors import MediaError
from dcmtool.media import records
from dcmtool.media.directory import Node
from dcmtool.media.profiles import Profile
from dcmtool.media.records import Value
from dcmtool.media.scan import Scanned

#: File ID prefixes of the instance records (at most 8 characters with the number).
PREFIXES = {"IMAGE": "IMG", "SR DOCUMENT": "SR", "KEY OBJECT DOC": "KO", "PRESENTATION": "PR",
            "ENCAP DOC": "DOC", "RT DOSE": "RTD", "RT PLAN": "RTP", "RT STRUCTURE SET": "RTS",
            "RT TREAT RECORD": "RTT", "WAVEFORM": "WAV", "SPECTROSCOPY": "SPC",
            "RAW DATA": "RAW", "REGISTRATION": "REG", "FIDUCIAL": "FID"}
#: What dcmmkdir +I invents: identifiers and numbers, never UIDs or clinical values.
INVENTABLE = {
    ("PATIENT", records.PATIENT_ID), ("STUDY", records.STUDY_DATE),
    ("STUDY", records.STUDY_TIME), ("STUDY", records.STUDY_ID),
    ("SERIES", records.SERIES_NUMBER),
    *((kind, records.INSTANCE_NUMBER)
      for kind in ("IMAGE", "RT DOSE", "RT STRUCTURE SET", "RT PLAN", "SURFACE")),
}
_FOLDER_PREFIXES = {"PATIENT": "PAT", "STUDY": "STU", "SERIES": "SER"}
_EXISTING = "the file set"  # where a record came from, in messages
_SHOWN = 20  # problems listed in the message; all of them are in MediaError.problems


@dataclass(eq=False)
class Leaf:
    """One instance to write, and its record (finished once the copy is written)."""

    scanned: Scanned
    node: Node
    file_id: tuple[str, ...]
    patient: int  # group identities, for the summary's counts
    study: int
    series: int
    invented: dict[int, Value] = field(default_factory=dict)

    def finish(self, sop_instance: str, syntax: str, values: dict[int, Value],
               profile: Profile) -> None:
        """The record, from the instance as written (a lossy copy has a new UID)."""
        keys, _ = records.keys_of(records.record_keys(self.node.record_type, profile), values)
        keys.update(self.invented)
        node = self.node
        node.sop_instance_uid = sop_instance
        node.transfer_syntax = syntax
        charset = self.scanned.charset
        node.body = records.encode_body(
            {**records.references(self.file_id, self.scanned.sop_class, sop_instance, syntax),
             **keys}, charset)
        node.values = records.display(keys, charset)


@dataclass
class Plan:
    roots: list[Node]
    leaves: list[Leaf]
    invented: list[str]
    duplicates: list[Path]


@dataclass(eq=False)
class _Group:
    level: str
    key: str
    node: Node | None = None
    folder: tuple[str, ...] | None = None
    files: list[Scanned] = field(default_factory=list)
    children: dict[str, _Group] = field(default_factory=dict)
    parent: _Group | None = None


def plan(out: Path, existing: list[Node], scanned: list[Scanned], profile: Profile, *,
         invent: bool) -> Plan:
    """Check ``scanned`` against itself and the file set's ``existing`` records, and lay the
    accepted instances out under ``out``. Raises MediaError listing every problem."""
    tree = _Tree(out, existing, profile, invent)
    accepted = tree.check(scanned)
    tree.group(accepted)
    return tree.layout()


class _Tree:
    def __init__(self, out: Path, existing: list[Node], profile: Profile,
                 invent: bool) -> None:
        self.out = out
        self.profile = profile
        self.invent = invent
        self.roots = list(existing)
        self.patients: dict[str, _Group] = {}
        self.studies: dict[str, tuple[str, str]] = {}  # UID -> (patient key, where)
        self.series: dict[str, tuple[str, str]] = {}  # UID -> (study UID, where)
        self.instances: dict[str, Path] = {}  # UID -> file in the file set
        self.names = _Names(out)
        self.duplicates: list[Path] = []
        self.invented: list[str] = []
        self.top: list[Scanned] = []
        self.required: dict[str, tuple[int, ...]] = {}
        for root in existing:
            self._index(root)

    def _index(self, root: Node) -> None:
        for node in root.walk():
            if node.file_id:
                self.names.reserve(node.file_id)
                if node.sop_instance_uid:
                    self.instances[node.sop_instance_uid] = self.out.joinpath(*node.file_id)
        if root.record_type != "PATIENT":
            return
        patient = self.patients.setdefault(root.values.get("PatientID", ""),
                                           _Group("PATIENT", root.values.get("PatientID", "")))
        patient.node, patient.folder = root, _folder_of(root, 2)
        for study in root.children:
            uid = study.values.get("StudyInstanceUID", "")
            group = patient.children.setdefault(uid, _Group("STUDY", uid, study,
                                                            _folder_of(study, 3),
                                                            parent=patient))
            self.studies[uid] = (patient.key, _EXISTING)
            for series in study.children:
                series_uid = series.values.get("SeriesInstanceUID", "")
                group.children.setdefault(series_uid, _Group("SERIES", series_uid, series,
                                                             _folder_of(series, 4),
                                                             parent=group))
                self.series[series_uid] = (uid, _EXISTING)

    # -- checks ----------------------------------------------------------------------------

    def check(self, scanned: list[Scanned]) -> list[Scanned]:
        problems: list[str] = []
        accepted: list[Scanned] = []
        first: dict[str, Scanned] = {}
        names: dict[str, dict[str, str]] = {}  # patient key -> name -> where
        births: dict[str, dict[str, str]] = {}
        for key, group in self.patients.items():
            if group.node is not None and "PatientName" in group.node.values:
                names.setdefault(key, {})[group.node.values["PatientName"]] = _EXISTING
            if group.node is not None and group.node.values.get("PatientBirthDate"):
                births.setdefault(key, {})[group.node.values["PatientBirthDate"]] = \
                    _EXISTING
        for item in scanned:
            where = str(item.path)
            if item.problem:
                problems.append(f"{where}: not a whole data set: {item.problem}")
                continue
            uids = [("SOPInstanceUID", item.sop_instance)]
            if not item.top_level:
                uids += [("StudyInstanceUID", item.study),
                         ("SeriesInstanceUID", item.series)]
            missing_uids = [name for name, value in uids if not value]
            if missing_uids:
                problems.append(f"{where}: no {', '.join(missing_uids)}")
                continue
            if not self._unique(item, first, problems):
                continue
            problems += self._missing_keys(item)
            accepted.append(item)
            if item.top_level:
                continue
            key = self._patient_key(item)
            names.setdefault(key, {}).setdefault(item.patient_name, where)
            birth = item.text(records.PATIENT_BIRTH_DATE)
            if birth:
                births.setdefault(key, {}).setdefault(birth, where)
            study = item.study
            owner = self.studies.setdefault(study, (key, where))
            if owner[0] != key:
                problems.append(f"Study Instance UID {study} is in files of two patients: "
                                f"{owner[1]} ({_shown(owner[0])}) and {where} "
                                f"({_shown(key)})")
            series = item.series
            parent = self.series.setdefault(series, (study, where))
            if parent[0] != study:
                problems.append(f"Series Instance UID {series} is in two studies: {parent[1]} "
                                f"and {where}")
        for key, found in names.items():
            if len(found) > 1:
                problems.append(f"Patient ID {_shown(key)} has different names: "
                                + ", ".join(f"{v!r} ({w})" for v, w in found.items()))
        for key, found in births.items():
            if len(found) > 1:
                problems.append(f"Patient ID {_shown(key)} has different birth dates: "
                                + ", ".join(f"{v} ({w})" for v, w in found.items()))
        if problems:
            inventable = not self.invent and any("Type 1 key" in p for p in problems)
            shown = problems[:_SHOWN]
            more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN \
                else ""
            raise MediaError(
                f"inconsistent input, nothing was written ({len(problems)} problem"
                f"{'s' if len(problems) > 1 else ''}):\n  " + "\n  ".join(shown) + more,
                problems=problems,
                hint="missing Type 1 keys can be invented, as dcmmkdir +I does"
                if inventable else None, setting="invent" if inventable else None)
        return accepted

    def _unique(self, item: Scanned, first: dict[str, Scanned], problems: list[str]) -> bool:
        """Whether ``item`` is a new instance; a copy of one already there is a duplicate."""
        uid = item.sop_instance
        other = first.get(uid)
        if other is None and uid in self.instances:
            if _same_content(item.path, self.instances[uid]):
                self.duplicates.append(item.path)
            else:
                problems.append(f"{item.path}: SOP Instance UID {uid} is already in the file "
                                f"set ({self.instances[uid]}) with other content")
            return False
        if other is None:
            first[uid] = item
            return True
        if _same_content(item.path, other.path):
            self.duplicates.append(item.path)
        else:
            problems.append(f"{other.path} and {item.path}: the same SOP Instance UID {uid} "
                            "with different content")
        return False

    def _patient_key(self, item: Scanned) -> str:
        # Without a Patient ID (invented later) files group by name, as dcmmkdir does.
        return item.patient_id or "\0" + item.patient_name

    def _missing_keys(self, item: Scanned) -> list[str]:
        levels = [(item.record_type, True)]
        if not item.top_level:
            study = item.study
            series = item.series
            patient = self.patients.get(self._patient_key(item))
            levels = [("PATIENT", patient is None or patient.node is None),
                      ("STUDY", study not in self.studies or
                       self.studies[study][1] != _EXISTING),
                      ("SERIES", series not in self.series or
                       self.series[series][1] != _EXISTING), *levels]
        problems = []
        for kind, new in levels:
            if not new:
                continue
            required = self.required.get(kind)
            if required is None:
                required = self.required[kind] = \
                    records.record_keys(kind, self.profile).required
            for tag in required:
                if records.has_value(item.values.get(tag)) or \
                        (self.invent and (kind, tag) in INVENTABLE):
                    continue
                problems.append(f"{item.path}: no {records.keyword(tag)}, a Type 1 key of "
                                f"its {kind} record")
        return problems

    # -- layout ----------------------------------------------------------------------------

    def group(self, accepted: list[Scanned]) -> None:
        for item in accepted:
            if item.top_level:
                self.top.append(item)
                continue
            key = self._patient_key(item)
            patient = self.patients.setdefault(key, _Group("PATIENT", key))
            study_uid = item.study
            study = patient.children.setdefault(study_uid,
                                                _Group("STUDY", study_uid, parent=patient))
            series_uid = item.series
            series = study.children.setdefault(series_uid,
                                               _Group("SERIES", series_uid, parent=study))
            for group in (patient, study, series):
                group.files.append(item)

    def layout(self) -> Plan:
        leaves: list[Leaf] = []
        used_ids = {g.node.values.get("PatientID", "") for g in self.patients.values()
                    if g.node is not None}
        counter = _Counter()
        for patient in _ordered(self.patients.values(), _patient_order):
            if not patient.files:
                continue
            if patient.node is None:
                patient.node = self._record(patient, used_ids, counter, None)
                self.roots.append(patient.node)
            for study in _ordered(patient.children.values(), _study_order):
                if not study.files:
                    continue
                if study.node is None:
                    study.node = self._record(study, used_ids, counter, None)
                    patient.node.children.append(study.node)
                for series in _ordered(study.children.values(), _series_order):
                    if not series.files:
                        continue
                    if series.node is None:
                        series.node = self._record(series, used_ids, counter, study.node)
                        study.node.children.append(series.node)
                    folder = self._folder(series)
                    for item in sorted(series.files, key=_instance_order):
                        leaves.append(self._leaf(item, folder, series.node,
                                                 (id(patient), id(study), id(series))))
        for item in sorted(self.top, key=_instance_order):
            leaf = self._leaf(item, ("DICOM",), None, (0, 0, 0))
            self.roots.append(leaf.node)
            leaves.append(leaf)
        return Plan(self.roots, leaves, self.invented, self.duplicates)

    def _folder(self, group: _Group) -> tuple[str, ...]:
        """The folder new files of ``group`` go to: its own, else a new one in its
        parent's (a file set from another writer may have no folder per series)."""
        if group.folder is None:
            base = ("DICOM",) if group.parent is None else self._folder(group.parent)
            group.folder = (*base, self.names.next(base, _FOLDER_PREFIXES[group.level]))
        return group.folder

    def _record(self, group: _Group, used_ids: set[str], counter: _Counter,
                parent: Node | None) -> Node:
        """A new PATIENT, STUDY or SERIES record from the first of its files."""
        label = "/".join(self._folder(group)[1:])
        source = min(group.files, key=_instance_order)
        keys, missing = records.keys_of(records.record_keys(group.level, self.profile),
                                        source.values)
        for tag in missing:  # only inventable ones are left: check() refused the others
            other = next((f.values[tag] for f in group.files
                          if records.has_value(f.values.get(tag))), None)
            if other is not None:  # another file of the group has it
                keys[tag] = other
                continue
            value = self._invent(tag, source, used_ids, counter, parent)
            keys[tag] = value
            self.invented.append(f"{label} {records.keyword(tag)}: invented "
                                 f"'{records.text(value)}'")
        return Node(group.level, records.display(keys, source.charset), None, None, None, None,
                    body=records.encode_body(keys, source.charset))

    def _invent(self, tag: int, source: Scanned, used_ids: set[str], counter: _Counter,
                parent: Node | None) -> Value:
        if tag == records.PATIENT_ID:
            while True:
                value = f"DCMTOOLPAT{counter.next('patient'):06d}"
                if value not in used_ids:
                    used_ids.add(value)
                    return records.encoded("LO", value)
        if tag == records.STUDY_ID:
            return records.encoded("SH", f"DCMTOOLSTU{counter.next('study'):06d}")
        if tag in (records.STUDY_DATE, records.STUDY_TIME):
            alternatives = records.DATE_ALTERNATIVES if tag == records.STUDY_DATE \
                else records.TIME_ALTERNATIVES
            for alternative in alternatives:
                if records.has_value(source.values.get(alternative)):
                    return source.values[alternative]
            now = time.strftime("%Y%m%d" if tag == records.STUDY_DATE else "%H%M%S")
            return records.encoded("DA" if tag == records.STUDY_DATE else "TM", now)
        # Series Number: one more than the study's highest.
        numbers = [_number(c.values.get("SeriesNumber")) for c in
                   (parent.children if parent is not None else [])]
        return records.encoded("IS", str(max([0, *(n for n in numbers if n is not None)]) + 1))

    def _leaf(self, item: Scanned, folder: tuple[str, ...], series: Node | None,
              groups: tuple[int, int, int]) -> Leaf:
        prefix = PREFIXES.get(item.record_type, "OBJ")
        file_id = (*folder, self.names.next(folder, prefix))
        number = item.text(records.INSTANCE_NUMBER)
        node = Node(item.record_type, {"InstanceNumber": number} if number else {}, file_id,
                    item.sop_class, item.sop_instance, item.syntax)
        leaf = Leaf(item, node, file_id, *groups)
        keys = records.record_keys(item.record_type, self.profile)
        if records.INSTANCE_NUMBER in keys.required and \
                not records.has_value(item.values.get(records.INSTANCE_NUMBER)):
            siblings = series.children if series is not None else []
            numbers = [_number(c.values.get("InstanceNumber")) for c in siblings]
            value = records.encoded("IS", str(max([0, *(n for n in numbers
                                                         if n is not None)]) + 1))
            leaf.invented[records.INSTANCE_NUMBER] = value
            node.values["InstanceNumber"] = records.text(value)
            self.invented.append(f"{'/'.join(file_id[1:])} InstanceNumber: invented "
                                 f"'{records.text(value)}'")
        if series is not None:
            series.children.append(node)
        return leaf


class _Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def next(self, what: str) -> int:
        self.counts[what] = self.counts.get(what, 0) + 1
        return self.counts[what]


class _Names:
    """Free file ID components per folder: never a name a file in it already has."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.used: dict[tuple[str, ...], set[str]] = {}
        self.counters: dict[tuple[tuple[str, ...], str], int] = {}

    def _taken(self, folder: tuple[str, ...]) -> set[str]:
        if folder not in self.used:
            try:
                names = {n.upper() for n in os.listdir(self.out.joinpath(*folder))}
            except OSError:
                names = set()
            self.used[folder] = names
        return self.used[folder]

    def reserve(self, file_id: tuple[str, ...]) -> None:
        for depth in range(len(file_id)):
            self._taken(file_id[:depth]).add(file_id[depth].upper())

    def next(self, folder: tuple[str, ...], prefix: str) -> str:
        taken = self._taken(folder)
        digits = 8 - len(prefix)
        number = self.counters.get((folder, prefix), 0)
        while True:
            number += 1
            if number >= 10 ** digits:
                raise MediaError(f"more than {10 ** digits - 1} {prefix} entries in "
                                 f"{'/'.join(folder)}: PS3.10 file IDs have 8 characters")
            name = f"{prefix}{number:0{digits}d}"
            if name not in taken:
                taken.add(name)
                self.counters[(folder, prefix)] = number
                return name


def _folder_of(node: Node, depth: int) -> tuple[str, ...] | None:
    """The folder all files below ``node`` share at ``depth`` components, if they do."""
    ids = [n.file_id for n in node.walk() if n.file_id]
    if not ids or any(len(i) <= depth for i in ids):
        return None
    prefix = ids[0][:depth]
    return prefix if all(i[:depth] == prefix for i in ids) else None


def _ordered(groups: Iterable[_Group], key: Callable[[_Group], Any]) -> list[_Group]:
    """Groups already in the file set first, as they are; new ones sorted."""
    items = list(groups)
    existing = [g for g in items if g.node is not None]
    new = sorted((g for g in items if g.node is None), key=key)
    return existing + new


def _number(text: str | None) -> int | None:
    try:
        return int(str(text).split("\\")[0].strip())
    except ValueError:
        return None


def _patient_order(group: _Group) -> tuple[bool, str]:
    return group.key.startswith("\0"), group.key


def _study_order(group: _Group) -> tuple[str, str]:
    return group.files[0].text(records.STUDY_DATE), group.key


def _series_order(group: _Group) -> tuple[int, str]:
    number = _number(group.files[0].text(records.SERIES_NUMBER))
    return (number if number is not None else 1 << 31), group.key


def _instance_order(item: Scanned) -> tuple[int, str]:
    number = _number(item.text(records.INSTANCE_NUMBER))
    return (number if number is not None else 1 << 31), item.sop_instance


def _shown(key: str) -> str:
    return repr(key) if not key.startswith("\0") else f"(none, name {key[1:]!r})"


def _same_content(a: Path, b: Path) -> bool:
    """Whether two files hold the same data set bytes (their File Meta may differ)."""
    from dcmtool.dicom.part10 import dataset_offset

    try:
        offsets = dataset_offset(a) or 0, dataset_offset(b) or 0
        with open(a, "rb") as first, open(b, "rb") as second:
            first.seek(offsets[0])
            second.seek(offsets[1])
            while True:
                left, right = first.read(1 << 20), second.read(1 << 20)
                if left != right:
                    return False
                if not left:
                    return True
    except OSError:
        return False
