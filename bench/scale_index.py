"""Archives of dcmtool serve whose index holds many instances without their files: the rows
are bulk-loaded with SQLite, not received, so that a 1,000,000-instance archive takes under a
minute to make (the serve-scale-* cases; the query figures never open a file).

The values follow ``make_data.py index`` (the same rules and UIDs, so a bulk-loaded archive of
N studies holds the rows that ``dcmtool serve --reindex`` makes of ``make_data.py index
--studies N``): two studies per patient, 100 surnames, study dates over ten years from 2016,
five modalities, 20 instances per study in 2 series. Paths follow serve's default layout.

The schema is serve's own: ``dcmtool serve ROOT --reindex`` on an empty folder creates the
index and exits; the loader then reads each table's columns (``PRAGMA table_info``) and its
foreign keys (``PRAGMA foreign_key_list``) and fills the columns it knows by DICOM keyword or
by serve's own names (path, size, ...), the keys to a parent row from that row, and leaves
the others NULL (listed in ``Loaded.unfilled``). A NOT NULL column without a default that it
does not know is an error, never a silent guess.
"""

from __future__ import annotations

import datetime
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.make_data import (
    CT_IMAGE_STORAGE,
    DESCRIPTIONS,
    EXPLICIT_VR_LITTLE_ENDIAN,
    MODALITIES,
    index_date,
    index_name,
    index_patient,
    uid,
)

TABLES = ("patients", "studies", "series", "instances")
INDEX_FILE = "index.sqlite"
FOLDER_WALKED = "folder_walked"  # serve's meta key: the folder has been walked (no walk at start)
PER_STUDY, SERIES_PER_STUDY = 20, 2
INSTANCE_SIZE = 1500  # bytes: what make_data.py index writes per instance (16x16 pixels)
BATCH = 50_000  # instance rows per executemany
RECEIVED = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


class LoadError(Exception):
    """The index cannot be made or filled."""


@dataclass
class Loaded:
    """A bulk-loaded archive."""

    root: Path
    studies: int
    instances: int
    seconds: float  # to create the index and load it
    index_bytes: int
    unfilled: dict[str, list[str]] = field(default_factory=dict)  # table -> NULL columns

    def unfilled_own(self) -> list[str]:
        """serve's own columns (not DICOM keywords, which start in upper case) left NULL:
        worth a note, as they may be ones the loader should learn to fill."""
        return [f"{table}.{column}" for table, columns in self.unfilled.items()
                for column in columns if column[:1].islower()]


def build(dcmtool: list[str], env: dict[str, str], root: Path, studies: int,
          seed: int = 1) -> Loaded:
    """Create ``root`` as an archive whose index holds ``studies`` x 20 instances."""
    started = time.monotonic()
    root.mkdir(parents=True)
    argv = [*dcmtool, "serve", str(root), "--reindex"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LoadError(f"dcmtool serve --reindex failed: {exc}") from None
    path = root / INDEX_FILE
    if proc.returncode != 0 or not path.is_file():
        raise LoadError(f"dcmtool serve --reindex made no index: exit {proc.returncode}: "
                        f"{(proc.stderr or proc.stdout).strip()[-300:]}")
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=OFF")  # a crash while loading only loses a bench run
        db.execute("PRAGMA cache_size=-1000000")  # 1 GB: the B-trees stay in memory
        unfilled = load(db, studies, seed)
        now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (FOLDER_WALKED, now))
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise LoadError(f"bulk load of {path} failed: {exc}") from None
    finally:
        db.close()
    return Loaded(root, studies, studies * PER_STUDY, time.monotonic() - started,
                  path.stat().st_size, unfilled)


def load(db: sqlite3.Connection, studies: int, seed: int) -> dict[str, list[str]]:
    """Insert the rows, one transaction per batch; returns the columns left NULL."""
    tables = {name: Table.read(db, name) for name in TABLES}
    unfilled: dict[str, list[str]] = {}
    batches: dict[str, list[tuple[Any, ...]]] = {name: [] for name in TABLES}

    def flush() -> None:
        db.execute("BEGIN")
        for name in TABLES:  # parents first
            if batches[name]:
                db.executemany(tables[name].insert, batches[name])
                batches[name].clear()
        db.execute("COMMIT")

    for table, row in rows(studies, seed):
        values = tables[table].values(row, tables)
        if table not in unfilled:
            unfilled[table] = tables[table].unfilled(row)
        batches[table].append(values)
        if len(batches["instances"]) >= BATCH:
            flush()
    flush()
    return unfilled


@dataclass
class Table:
    name: str
    columns: list[str]
    primary: list[str]  # the primary key's columns
    integer_key: str | None  # an INTEGER PRIMARY KEY column (the rowid), numbered by the loader
    parents: dict[str, tuple[str, str | None]]  # column -> (parent table, parent column)
    insert: str

    @classmethod
    def read(cls, db: sqlite3.Connection, name: str) -> Table:
        info = db.execute(f"PRAGMA table_info({name})").fetchall()
        if not info:
            raise LoadError(f"the index has no table {name}")
        columns = [str(c[1]) for c in info]
        keys = sorted((c for c in info if c[5]), key=lambda c: int(c[5]))
        integer_key = (str(keys[0][1]) if len(keys) == 1 and str(keys[0][2]).upper() ==
                       "INTEGER" else None)
        parents = {str(fk[3]): (str(fk[2]), None if fk[4] is None else str(fk[4]))
                   for fk in db.execute(f"PRAGMA foreign_key_list({name})")}
        for _cid, column, _type, notnull, default, pk in info:
            known = column in KNOWN[name] or column in parents or column == integer_key
            if notnull and default is None and not pk and not known:
                raise LoadError(f"{name}.{column} is NOT NULL and the bulk loader does not "
                                f"know what to put in it (bench/scale_index.py)")
        names = ", ".join(f'"{c}"' for c in columns)
        marks = ", ".join("?" for _ in columns)
        return cls(name, columns, [str(c[1]) for c in keys], integer_key, parents,
                   f"INSERT INTO {name} ({names}) VALUES ({marks})")

    def key_of(self, row: dict[str, Any], column: str | None) -> Any:
        """What a child's foreign key to ``column`` of this table (None: its primary key)
        holds for ``row``."""
        if column is None:
            if len(self.primary) != 1:
                raise LoadError(f"a foreign key names {self.name} without a column, and its "
                                f"primary key is not one column")
            column = self.primary[0]
        return row["_id"] if column == self.integer_key else row.get(column)

    def unfilled(self, row: dict[str, Any]) -> list[str]:
        """The columns the loader has no value for (NULL in every row)."""
        return [c for c in self.columns
                if c not in row and c != self.integer_key and c not in self.parents]

    def values(self, row: dict[str, Any], tables: dict[str, Table]) -> tuple[Any, ...]:
        out = []
        for column in self.columns:
            if column == self.integer_key:
                out.append(row["_id"])
            elif column in self.parents:
                table, parent_column = self.parents[column]
                if table not in row["_up"]:
                    raise LoadError(f"{self.name}.{column} points at {table}, which is not "
                                    f"above {self.name} in the bulk loader's hierarchy")
                out.append(tables[table].key_of(row["_up"][table], parent_column))
            else:
                out.append(row.get(column))
        return tuple(out)


# What the loader fills, by table: DICOM keywords and serve's own columns. Keys to parents
# (foreign keys) and an INTEGER PRIMARY KEY are filled whatever their names.
KNOWN: dict[str, set[str]] = {
    "patients": {"SpecificCharacterSet", "PatientID", "IssuerOfPatientID", "PatientName",
                 "PatientBirthDate", "PatientSex"},
    "studies": {"SpecificCharacterSet", "StudyInstanceUID", "StudyID", "StudyDate", "StudyTime",
                "AccessionNumber", "ReferringPhysicianName", "StudyDescription",
                "InstitutionName"},
    "series": {"SpecificCharacterSet", "SeriesInstanceUID", "Modality", "SeriesNumber",
               "SeriesDescription", "SeriesDate", "SeriesTime", "Manufacturer"},
    "instances": {"SpecificCharacterSet", "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
                  "ContentDate", "ContentTime", "ImageType", "Rows", "Columns",
                  "BitsAllocated", "PhotometricInterpretation", "path", "size",
                  "transfer_syntax", "received_at", "source_ae"},
}


def rows(studies: int, seed: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """(table, row) for every row, each parent before its children. A row holds the known
    columns plus ``_id`` (its number in its table, from 1) and ``_up`` (the rows above it, by
    table: what its foreign keys point at)."""
    charset = "ISO_IR 100"
    for s in range(studies):
        p = index_patient(s)
        patient_id = f"IDX-{seed}-{p:06d}"
        if s % 2 == 0:  # a patient's first study
            patient = {"_id": p + 1, "_up": {}, "SpecificCharacterSet": charset,
                       # "", not NULL: what serve writes (the patient's key is (ID, issuer))
                       "PatientID": patient_id, "IssuerOfPatientID": "",
                       "PatientName": index_name(p),
                       "PatientBirthDate": f"{1930 + p % 80}0101", "PatientSex": "FM"[p % 2]}
            yield "patients", patient
        date = index_date(s)
        time_of_day = f"{8 + s % 10:02d}{s % 60:02d}"
        study_uid = uid(seed, "index", "study", s)
        study = {"_id": s + 1, "_up": {"patients": patient}, "SpecificCharacterSet": charset,
                 "StudyInstanceUID": study_uid, "StudyID": str(s % 100000), "StudyDate": date,
                 "StudyTime": f"{time_of_day}00", "AccessionNumber": f"A{seed}{s:07d}",
                 "ReferringPhysicianName": "REFERRING^DOCTOR",
                 "StudyDescription": DESCRIPTIONS[s % len(DESCRIPTIONS)],
                 "InstitutionName": "Benchmark Hospital"}
        yield "studies", study
        received = (RECEIVED + datetime.timedelta(seconds=s)).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        for j in range(SERIES_PER_STUDY):
            series_uid = uid(seed, "index", "series", s, j)
            series = {"_id": s * SERIES_PER_STUDY + j + 1,
                      "_up": {"patients": patient, "studies": study},
                      "SpecificCharacterSet": charset, "SeriesInstanceUID": series_uid,
                      "Modality": MODALITIES[s % len(MODALITIES)], "SeriesNumber": str(j + 1),
                      "SeriesDescription": f"SERIES {j + 1}", "SeriesDate": date,
                      "SeriesTime": f"{time_of_day}{j:02d}", "Manufacturer": "dcmtool bench"}
            yield "series", series
            above = {"patients": patient, "studies": study, "series": series}
            per_series = PER_STUDY // SERIES_PER_STUDY
            for k in range(j * per_series, (j + 1) * per_series):
                sop = uid(seed, "index", "instance", s, k)
                yield "instances", {
                    "_id": s * PER_STUDY + k + 1, "_up": above,
                    "SpecificCharacterSet": charset, "SOPInstanceUID": sop,
                    "SOPClassUID": CT_IMAGE_STORAGE, "InstanceNumber": str(k + 1),
                    "ContentDate": date, "ContentTime": f"{time_of_day}{k % 60:02d}",
                    "ImageType": "ORIGINAL\\PRIMARY\\AXIAL", "Rows": "16", "Columns": "16",
                    "BitsAllocated": "16", "PhotometricInterpretation": "MONOCHROME2",
                    "path": f"{patient_id}/{study_uid}/{series_uid}/{sop}.dcm",
                    "size": INSTANCE_SIZE, "transfer_syntax": EXPLICIT_VR_LITTLE_ENDIAN,
                    "received_at": received,
                    "source_ae": None}  # as serve indexes a file that does not name one


def copy_archive(source: Path, target: Path) -> float:
    """Copy an archive (its index and the few small files beside it) and fsync the copy, so
    that no write-back of it lands in a timed run. Returns the seconds it took."""
    started = time.monotonic()
    shutil.copytree(source, target)
    for dirpath, _dirnames, filenames in os.walk(target):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return time.monotonic() - started
