"""Orthanc archives of many instances for the serve-scale-* cases, cloned in its SQLite index
rather than uploaded: POST /instances would take half an hour or more for 1,000,000 here.

Orthanc itself loads a template: the first two studies of ``make_data.py index`` (40 files,
over REST), then stops. The clone copies what Orthanc wrote for them — the rows of each
resource in Resources, MainDicomTags, DicomIdentifiers, Metadata and AttachedFiles — to the
studies 2..N-1 of the same rules, with new internal ids, Orthanc's public ids (SHA-1 of the
DICOM identifiers, as Orthanc computes them) and each study's values. Before copying, it checks
that its rules give back exactly what Orthanc wrote for the template (tags, values, public ids):
if a version of Orthanc indexed other tags, the clone fails instead of guessing. Orthanc's own
triggers keep the patient recycling order and the disk size totals. Only the template's 40
files exist; the queries never read a file. The Changes log is not cloned (nothing asked here
reads it).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.make_data import (
    DESCRIPTIONS,
    MODALITIES,
    index_date,
    index_name,
    index_patient,
    uid,
)
from bench.scale_index import PER_STUDY, SERIES_PER_STUDY

TEMPLATE_STUDIES = 2  # the first two studies: one patient, four series, 40 instances
PATIENT, STUDY, SERIES, INSTANCE = 1, 2, 3, 4  # Orthanc's resource types
INDEX_IN_SERIES = 1  # Orthanc's metadata type for an instance's position in its series
BATCH_STUDIES = 2000  # even, like TEMPLATE_STUDIES: a batch starts with a new patient
Tag = tuple[int, int]


class CloneError(Exception):
    """The template is not what the clone expects, or the index cannot be written."""


def public_id(*identifiers: str) -> str:
    """Orthanc's public id of a resource: SHA-1 of its DICOM identifiers joined by '|'."""
    digest = hashlib.sha1("|".join(identifiers).encode()).hexdigest()
    return "-".join(digest[i:i + 8] for i in range(0, 40, 8))


def patient_tags(s: int, seed: int) -> dict[Tag, str]:
    p = index_patient(s)
    return {(0x0010, 0x0010): index_name(p), (0x0010, 0x0020): f"IDX-{seed}-{p:06d}",
            (0x0010, 0x0030): f"{1930 + p % 80}0101", (0x0010, 0x0040): "FM"[p % 2]}


def study_tags(s: int, seed: int) -> dict[Tag, str]:
    return {**patient_tags(s, seed),
            (0x0008, 0x0020): index_date(s), (0x0008, 0x0030): f"{8 + s % 10:02d}{s % 60:02d}00",
            (0x0008, 0x0050): f"A{seed}{s:07d}", (0x0008, 0x1030): DESCRIPTIONS[s % 7],
            (0x0020, 0x000D): uid(seed, "index", "study", s),
            (0x0020, 0x0010): str(s % 100000)}


def series_tags(s: int, j: int, seed: int) -> dict[Tag, str]:
    return {(0x0008, 0x0021): index_date(s),
            (0x0008, 0x0031): f"{8 + s % 10:02d}{s % 60:02d}{j:02d}",
            (0x0008, 0x0060): MODALITIES[s % len(MODALITIES)],
            (0x0008, 0x103E): f"SERIES {j + 1}",
            (0x0020, 0x000E): uid(seed, "index", "series", s, j),
            (0x0020, 0x0011): str(j + 1)}


def instance_tags(s: int, k: int, seed: int) -> dict[Tag, str]:
    return {(0x0008, 0x0018): uid(seed, "index", "instance", s, k),
            (0x0020, 0x0013): str(k + 1)}


@dataclass
class Shape:
    """What Orthanc wrote for one resource type: its rows, with the values that are the same
    for every resource of the template kept as they are."""

    main: list[Tag]
    identifiers: list[Tag]
    constants: dict[tuple[str, Tag], str]  # (table, tag) -> value, for tags the rules lack
    metadata: list[tuple[int, str]]  # (type, value)
    files: list[tuple[Any, ...]]  # AttachedFiles rows without id and uuid


@dataclass
class Resource:
    internal_id: int
    kind: int
    public: str
    parent: int | None
    tags: dict[Tag, str]


def template_resources(db: sqlite3.Connection, seed: int) -> dict[str, Resource]:
    """The template's resources by public id, each with the tags its rules give."""
    rules: dict[str, Resource] = {}
    for s in range(TEMPLATE_STUDIES):
        pid = patient_tags(s, seed)[(0x0010, 0x0020)]
        study = study_tags(s, seed)
        study_uid = study[(0x0020, 0x000D)]
        rules[public_id(pid)] = Resource(0, PATIENT, public_id(pid), None, patient_tags(s, seed))
        rules[public_id(pid, study_uid)] = Resource(0, STUDY, "", None, study)
        for j in range(SERIES_PER_STUDY):
            series = series_tags(s, j, seed)
            series_uid = series[(0x0020, 0x000E)]
            rules[public_id(pid, study_uid, series_uid)] = Resource(0, SERIES, "", None, series)
            for k in series_instances(j):
                tags = instance_tags(s, k, seed)
                rules[public_id(pid, study_uid, series_uid, tags[(0x0008, 0x0018)])] = \
                    Resource(0, INSTANCE, "", None, tags)
    found = db.execute("SELECT internalId, resourceType, publicId, parentId FROM Resources")
    resources = {}
    for internal_id, kind, public, parent in found:
        rule = rules.get(public)
        if rule is None or rule.kind != kind:
            raise CloneError(f"Orthanc's template holds a resource the rules do not make: "
                             f"{public} (type {kind})")
        resources[public] = Resource(internal_id, kind, public, parent, rule.tags)
    if len(resources) != len(rules):
        raise CloneError(f"Orthanc's template holds {len(resources)} resources, the rules "
                         f"make {len(rules)}")
    return resources


def series_instances(j: int) -> range:
    per_series = PER_STUDY // SERIES_PER_STUDY
    return range(j * per_series, (j + 1) * per_series)


def shapes(db: sqlite3.Connection, resources: dict[str, Resource]) -> dict[int, Shape]:
    """Each resource type's rows, checked against the rules: a value the rules give must be
    Orthanc's (normalised, for the identifiers); any other must be the same everywhere."""
    found: dict[int, Shape] = {}
    for resource in resources.values():
        rows: dict[str, list[tuple[Tag, str]]] = {}
        for table in ("MainDicomTags", "DicomIdentifiers"):
            rows[table] = [((g, e), str(v)) for g, e, v in db.execute(
                f"SELECT tagGroup, tagElement, value FROM {table} WHERE id = ? ORDER BY rowid",
                (resource.internal_id,))]
        metadata = [(int(t), str(v)) for t, v in db.execute(
            "SELECT type, value FROM Metadata WHERE id = ? ORDER BY type",
            (resource.internal_id,))]
        files = [tuple(row[1:]) for row in db.execute(
            "SELECT * FROM AttachedFiles WHERE id = ? ORDER BY fileType",
            (resource.internal_id,))]
        constants: dict[tuple[str, Tag], str] = {}
        for table, pairs in rows.items():
            for tag, value in pairs:
                if tag in resource.tags:
                    expected = resource.tags[tag]
                    if table == "DicomIdentifiers":
                        expected = expected.upper().strip()
                    if value != expected:
                        raise CloneError(f"Orthanc wrote {table} {tag[0]:04X},{tag[1]:04X} = "
                                         f"{value!r} where the rules give {expected!r}")
                else:
                    constants[(table, tag)] = value
        shape = Shape([t for t, _ in rows["MainDicomTags"]],
                      [t for t, _ in rows["DicomIdentifiers"]], constants,
                      [(t, v) for t, v in metadata if t != INDEX_IN_SERIES], files)
        known = found.setdefault(resource.kind, shape)
        if (known.main, known.identifiers, known.constants) != (
                shape.main, shape.identifiers, shape.constants):
            raise CloneError(f"Orthanc's template rows differ between resources of type "
                             f"{resource.kind}: the clone cannot tell what is constant")
    if sorted(found) != [PATIENT, STUDY, SERIES, INSTANCE]:
        raise CloneError(f"Orthanc's template lacks a resource type: {sorted(found)}")
    return found


def clone(index: Path, studies: int, seed: int = 1,
          progress: Callable[[int], None] | None = None) -> None:
    """Grow the template in Orthanc's ``index`` (its SQLite file) to ``studies`` studies."""
    db = sqlite3.connect(index, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-1000000")
        resources = template_resources(db, seed)
        found = shapes(db, resources)
        (next_id,) = db.execute("SELECT MAX(internalId) + 1 FROM Resources").fetchone()
        rows = Rows(found, next_id)
        for first in range(TEMPLATE_STUDIES, studies, BATCH_STUDIES):
            end = min(studies, first + BATCH_STUDIES)
            add_studies(rows, first, end, seed)
            write(db, rows.tables)
            if progress:
                progress(end)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise CloneError(f"cloning Orthanc's index {index} failed: {exc}") from None
    finally:
        db.close()


def write(db: sqlite3.Connection, batch: dict[str, list[tuple[Any, ...]]]) -> None:
    db.execute("BEGIN")
    for table, rows in batch.items():
        if rows:
            marks = ", ".join("?" for _ in rows[0])
            db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            rows.clear()
    db.execute("COMMIT")


class Rows:
    """New rows by table, each resource numbered from ``next_id``."""

    TABLES = ("Resources", "MainDicomTags", "DicomIdentifiers", "Metadata", "AttachedFiles")

    def __init__(self, found: dict[int, Shape], next_id: int) -> None:
        self.found = found
        self.next_id = next_id
        self.tables: dict[str, list[tuple[Any, ...]]] = {t: [] for t in self.TABLES}

    def add(self, kind: int, parent: int | None, tags: dict[Tag, str], *identifiers: str,
            index_in_series: int | None = None) -> int:
        internal_id, self.next_id = self.next_id, self.next_id + 1
        shape, rows = self.found[kind], self.tables
        rows["Resources"].append((internal_id, kind, public_id(*identifiers), parent))
        for table, order in (("MainDicomTags", shape.main),
                             ("DicomIdentifiers", shape.identifiers)):
            for tag in order:
                value = tags.get(tag)
                if value is None:
                    value = shape.constants[(table, tag)]
                elif table == "DicomIdentifiers":
                    value = value.upper().strip()
                rows[table].append((internal_id, tag[0], tag[1], value))
        metadata = list(shape.metadata)
        if index_in_series is not None:
            metadata.append((INDEX_IN_SERIES, str(index_in_series)))
        rows["Metadata"] += [(internal_id, t, v) for t, v in metadata]
        rows["AttachedFiles"] += [
            (internal_id, f[0], f"{internal_id:08x}-0000-4000-8000-{internal_id:012x}", *f[2:])
            for f in shape.files]
        return internal_id


def add_studies(rows: Rows, first: int, end: int, seed: int) -> None:
    """The resources of studies first..end-1 (``first`` even: a patient comes with its
    first study, the even one)."""
    patient_id = 0
    for s in range(first, end):
        tags = study_tags(s, seed)
        pid, study_uid = tags[(0x0010, 0x0020)], tags[(0x0020, 0x000D)]
        if s % 2 == 0:
            patient_id = rows.add(PATIENT, None, patient_tags(s, seed), pid)
        study_id = rows.add(STUDY, patient_id, tags, pid, study_uid)
        for j in range(SERIES_PER_STUDY):
            series = series_tags(s, j, seed)
            series_uid = series[(0x0020, 0x000E)]
            series_id = rows.add(SERIES, study_id, series, pid, study_uid, series_uid)
            for position, k in enumerate(series_instances(j), 1):
                instance = instance_tags(s, k, seed)
                rows.add(INSTANCE, series_id, instance, pid, study_uid, series_uid,
                         instance[(0x0008, 0x0018)], index_in_series=position)
