"""The archive's SQLite index: patient / study / series / instance, with the Q/R keys.

Columns carry the search and return keys of the conformance statements this project follows
(seeds 003 and 004: PS3.4 C.6 keys plus the usual optional ones), named by DICOM keyword so that
query matching can map keys to columns directly. Counts such as Number of Study Related
Instances and Modalities In Study are computed at query time, never stored.
The index can always be rebuilt from the files (``dcmtool serve --reindex``).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: 2: the ``mpps`` table (performed procedure steps; an older index gains it when opened).
#: 3: the ``pending`` journal and the (StudyDate, StudyTime) index.
SCHEMA_VERSION = 3

PATIENT_KEYS = (
    "PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientBirthTime",
    "PatientSex", "OtherPatientIDs", "PatientComments", "ResponsiblePerson",
    "ResponsiblePersonRole", "ResponsibleOrganization", "PatientSpeciesDescription",
    "PatientBreedDescription",
)
STUDY_KEYS = (
    "StudyInstanceUID", "StudyID", "StudyDate", "StudyTime", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "ReferringPhysicianName", "StudyDescription",
    "PatientAge", "PatientSize", "PatientWeight", "NameOfPhysiciansReadingStudy",
    "AdmittingDiagnosesDescription", "InstitutionName",
)
SERIES_KEYS = (
    "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "SeriesDate",
    "SeriesTime", "Laterality", "BodyPartExamined", "PatientPosition",
    "AnatomicalOrientationType", "ProtocolName", "PerformedProcedureStepStartDate",
    "PerformedProcedureStepStartTime", "PerformedProcedureStepID", "RequestAttributesSequence",
    "StationName", "Manufacturer", "ManufacturerModelName", "OperatorsName",
    "PerformingPhysicianName",
)
INSTANCE_KEYS = (
    "SOPInstanceUID", "SOPClassUID", "InstanceNumber", "InstanceCreationDate",
    "InstanceCreationTime", "ContentDate", "ContentTime", "AcquisitionDate", "AcquisitionTime",
    "AcquisitionNumber", "ImageType", "NumberOfFrames", "Rows", "Columns", "BitsAllocated",
    "PhotometricInterpretation", "ImageComments",
)
#: Everything read from a file's header to index it.
INDEXED_KEYWORDS = ("SpecificCharacterSet", *PATIENT_KEYS, *STUDY_KEYS, *SERIES_KEYS,
                    *INSTANCE_KEYS)


def _columns(keys: tuple[str, ...]) -> str:
    return ", ".join(f'"{k}" TEXT' for k in keys)


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS patients (
    id INTEGER PRIMARY KEY,
    SpecificCharacterSet TEXT,
    {_columns(PATIENT_KEYS)},
    UNIQUE (PatientID, IssuerOfPatientID)
);
CREATE TABLE IF NOT EXISTS studies (
    patient INTEGER NOT NULL REFERENCES patients(id),
    SpecificCharacterSet TEXT,
    {_columns(STUDY_KEYS)},
    PRIMARY KEY (StudyInstanceUID)
);
CREATE TABLE IF NOT EXISTS series (
    SpecificCharacterSet TEXT,
    StudyInstanceUID TEXT NOT NULL REFERENCES studies(StudyInstanceUID),
    {_columns(SERIES_KEYS)},
    PRIMARY KEY (SeriesInstanceUID)
);
CREATE TABLE IF NOT EXISTS instances (
    SpecificCharacterSet TEXT,
    SeriesInstanceUID TEXT NOT NULL REFERENCES series(SeriesInstanceUID),
    {_columns(INSTANCE_KEYS)},
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    transfer_syntax TEXT NOT NULL,
    received_at TEXT NOT NULL,
    source_ae TEXT,
    PRIMARY KEY (SOPInstanceUID)
);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient);
CREATE INDEX IF NOT EXISTS series_study ON series(StudyInstanceUID);
CREATE INDEX IF NOT EXISTS instances_series ON instances(SeriesInstanceUID);
CREATE INDEX IF NOT EXISTS patients_name ON patients(PatientName);
DROP INDEX IF EXISTS studies_date;
CREATE INDEX IF NOT EXISTS studies_date_time ON studies(StudyDate, StudyTime);
CREATE INDEX IF NOT EXISTS studies_accession ON studies(AccessionNumber);
CREATE TABLE IF NOT EXISTS mpps (
    uid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    patient_id TEXT,
    modality TEXT,
    start TEXT,
    "end" TEXT,
    path TEXT NOT NULL,
    mtime_ns INTEGER NOT NULL
);
-- Instances whose rows are committed but whose files may not be in place yet: written in
-- the same transaction as their rows, before the renames; emptied by the next commit, which
-- comes after those renames and their folders' fsyncs. What a crash leaves here is all
-- that start-up must check (``Archive.recover``), however large the archive.
CREATE TABLE IF NOT EXISTS pending (
    path TEXT PRIMARY KEY,
    SOPInstanceUID TEXT NOT NULL,
    replaced TEXT
);
"""
#: meta key: when the whole folder was last walked (reconcile or reindex). An index without
#: it (made before schema 3, or by a run that never finished one) is walked once at start.
FOLDER_WALKED = "folder_walked"


def _glob_ci(pattern: str, value: str | None) -> bool:
    """SQL ``dicom_glob_ci(pattern, value)``: DICOM wildcards * and ?, ignoring case."""
    from fnmatch import fnmatchcase

    if value is None:
        return False
    return fnmatchcase(value.lower(), pattern.lower().replace("[", "[[]"))


class IndexFailure(Exception):
    """The index database cannot be opened or written."""


@dataclass(frozen=True)
class InstanceRecord:
    """What the index keeps about one stored instance."""

    values: Mapping[str, str | None]  # keyword -> text (INDEXED_KEYWORDS)
    path: str  # relative to the archive root, '/' separated
    size: int
    transfer_syntax: str
    received_at: str
    source_ae: str | None

    @property
    def sop_instance_uid(self) -> str:
        return str(self.values["SOPInstanceUID"])


def element_text(element: Any) -> str | None:
    """An element's value as index text: multi-values joined by '\\', sequences as JSON."""
    value = element.value
    if value is None or value == "":
        return None
    if element.VR == "SQ":
        # Values that break VR rules are stored as received; here they are left out.
        return json.dumps([item.to_json_dict(suppress_invalid_tags=True) for item in value],
                          separators=(",", ":"))
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join("" if v is None else str(v) for v in value)
    if isinstance(value, bytes):
        return None
    return str(value)


@dataclass(frozen=True)
class Pending:
    """A journal row: the instance at ``path`` was being placed (``replaced``: the path of
    the copy it replaces, when that differs)."""

    path: str
    sop_instance_uid: str
    replaced: str | None = None


class Index:
    """Access to ``ROOT/index.sqlite``: one writing connection behind a lock, and read-only
    connections (WAL readers) that stream query answers while instances are written."""

    def __init__(self, path: Path, *, durable_commits: bool = True) -> None:
        """``durable_commits``: fsync the WAL at each commit (serve acknowledges after it);
        False where the files are what must be durable and the index can be rebuilt from
        them (get --archive, move -o --archive)."""
        self.path = path
        self._in_memory = str(path) == ":memory:"
        self._lock = threading.Lock()
        #: Series whose series, study and patient rows exist: later instances skip 3 inserts.
        self._known_series: set[str | None] = set()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # A commit is durable when it returns (the WAL is fsynced): an instance is
            # acknowledged only after its rows are (``archive.groupcommit``), and a commit
            # serves every association waiting, so the fsync is shared.
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable_commits else 'NORMAL'}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.create_function("dicom_glob_ci", 2, _glob_ci, deterministic=True)
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)",
                             (str(SCHEMA_VERSION),))
            self._db.execute("UPDATE meta SET value = ? WHERE key = 'schema' AND "
                             "CAST(value AS INTEGER) < ?", (str(SCHEMA_VERSION), SCHEMA_VERSION))
        except sqlite3.DatabaseError as exc:
            raise IndexFailure(f"cannot open the index {path}: {exc}") from exc

    def close(self) -> None:
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for reader in readers:
            reader.close()
        with self._lock:
            try:
                # Statistics for the planner on the tables that grew; the limit keeps it to
                # a sample, so closing a million-instance index stays quick.
                self._db.execute("PRAGMA analysis_limit=1000")
                self._db.execute("PRAGMA optimize")
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()

    # -- writes ---------------------------------------------------------------------------

    def add(self, record: InstanceRecord, *, replace: bool = True) -> None:
        """Insert or replace one instance (and its patient, study and series if new)."""
        self.commit_batch([(record, replace)])

    def commit_batch(self, records: list[tuple[InstanceRecord, bool]],
                     journal: list[Pending] | None = None) -> None:
        """One transaction: insert (or replace, where the flag says) the records, and with a
        ``journal``, make it the journal's whole content (``archive.groupcommit``). Durable
        when it returns."""
        added: list[str | None] = []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if journal is not None:
                    self._db.execute("DELETE FROM pending")
                    self._db.executemany(
                        "INSERT OR REPLACE INTO pending VALUES (?, ?, ?)",
                        [(p.path, p.sop_instance_uid, p.replaced) for p in journal])
                for record, replace in records:
                    added.append(self._add(record, replace))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:  # BEGIN itself can fail ("database is locked")
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                self._known_series.clear()  # rows of this transaction are not there
                raise IndexFailure(f"index write failed: {exc}") from exc
            if len(self._known_series) > 100_000:
                self._known_series.clear()
            self._known_series.update(added)

    def _add(self, record: InstanceRecord, replace: bool) -> str | None:
        v = record.values
        charset = v.get("SpecificCharacterSet")
        series_uid = v.get("SeriesInstanceUID")
        if series_uid not in self._known_series:  # the first instance of its series
            patient_id = self._patient(v, charset)
            self._insert("studies", {"patient": patient_id,
                                     "SpecificCharacterSet": charset,
                                     **{k: v.get(k) for k in STUDY_KEYS}})
            self._insert("series", {"SpecificCharacterSet": charset,
                                    "StudyInstanceUID": v.get("StudyInstanceUID"),
                                    **{k: v.get(k) for k in SERIES_KEYS}})
        row = {"SpecificCharacterSet": charset,
               "SeriesInstanceUID": series_uid,
               **{k: v.get(k) for k in INSTANCE_KEYS},
               "path": record.path, "size": record.size,
               "transfer_syntax": record.transfer_syntax,
               "received_at": record.received_at, "source_ae": record.source_ae}
        if replace:  # an instance that moved, or a file that replaced another
            self._db.execute("DELETE FROM instances WHERE SOPInstanceUID = ? OR path = ?",
                             (record.sop_instance_uid, record.path))
        self._insert("instances", row, replace=True)
        return series_uid

    def _patient(self, v: Mapping[str, str | None], charset: str | None) -> int:
        key = (v.get("PatientID") or "", v.get("IssuerOfPatientID") or "")
        row = self._db.execute(
            "SELECT id FROM patients WHERE PatientID = ? AND IssuerOfPatientID = ?", key
        ).fetchone()
        if row:
            return int(row[0])
        values = {"SpecificCharacterSet": charset, **{k: v.get(k) for k in PATIENT_KEYS}}
        values["PatientID"], values["IssuerOfPatientID"] = key
        cursor = self._insert("patients", values)
        return int(cursor.lastrowid or 0)

    def _insert(self, table: str, row: Mapping[str, Any], replace: bool = False) -> sqlite3.Cursor:
        names = ", ".join(f'"{k}"' for k in row)
        marks = ", ".join("?" for _ in row)
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        return self._db.execute(f"{verb} INTO {table} ({names}) VALUES ({marks})",
                                tuple(row.values()))

    def remove(self, sop_instance_uid: str, path: str | None = None) -> None:
        """Drop an instance's row (only the row at ``path``, when given)."""
        sql, params = "DELETE FROM instances WHERE SOPInstanceUID = ?", [sop_instance_uid]
        if path is not None:
            sql, params = sql + " AND path = ?", [sop_instance_uid, path]
        with self._lock:
            try:
                self._db.execute(sql, params)
            except sqlite3.Error as exc:
                raise IndexFailure(f"index write failed: {exc}") from exc

    def remove_paths(self, paths: list[str]) -> None:
        """Drop the rows of ``paths``, then the series, studies and patients left empty."""
        with self._lock:
            self._known_series.clear()
            try:
                self._db.executemany("DELETE FROM instances WHERE path = ?",
                                     [(p,) for p in paths])
                self._prune()
            except sqlite3.Error as exc:
                raise IndexFailure(f"index write failed: {exc}") from exc

    def clear(self) -> None:
        with self._lock:
            self._known_series.clear()
            self._db.executescript(
                "DELETE FROM instances; DELETE FROM series; DELETE FROM studies; "
                "DELETE FROM patients; DELETE FROM pending;"
            )

    def _prune(self) -> None:
        """Drop series, studies and patients left without instances."""
        self._db.executescript(
            "DELETE FROM series WHERE SeriesInstanceUID NOT IN "
            "(SELECT SeriesInstanceUID FROM instances);"
            "DELETE FROM studies WHERE StudyInstanceUID NOT IN "
            "(SELECT StudyInstanceUID FROM series);"
            "DELETE FROM patients WHERE id NOT IN (SELECT patient FROM studies);"
        )

    def put_step(self, row: Mapping[str, Any]) -> None:
        """Insert or replace a performed procedure step's row (``archive.mpps``)."""
        with self._lock:
            try:
                self._insert("mpps", row, replace=True)
            except sqlite3.Error as exc:
                raise IndexFailure(f"index write failed: {exc}") from exc

    def remove_steps(self, uids: list[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM mpps WHERE uid = ?", [(u,) for u in uids])

    # -- the journal and the folder walk ---------------------------------------------------

    def pending(self) -> list[Pending]:
        with self._lock:
            rows = self._db.execute("SELECT path, SOPInstanceUID, replaced FROM pending"
                                    ).fetchall()
        return [Pending(str(p), str(uid), None if r is None else str(r)) for p, uid, r in rows]

    def clear_pending(self, paths: list[str] | None = None) -> None:
        """Drop the journal's rows for ``paths`` (all of them without)."""
        with self._lock:
            try:
                if paths is None:
                    self._db.execute("DELETE FROM pending")
                else:
                    self._db.executemany("DELETE FROM pending WHERE path = ?",
                                         [(p,) for p in paths])
            except sqlite3.Error as exc:
                raise IndexFailure(f"index write failed: {exc}") from exc

    def folder_walked(self) -> str | None:
        """When the whole folder was last walked (ISO time), or None if never."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?",
                                   (FOLDER_WALKED,)).fetchone()
        return None if row is None else str(row[0])

    def mark_folder_walked(self, when: str | None) -> None:
        """Record a whole walk of the folder (``None``: forget it, so the next start walks:
        the index may disagree with the folder in a way the journal does not record)."""
        with self._lock:
            if when is None:
                self._db.execute("DELETE FROM meta WHERE key = ?", (FOLDER_WALKED,))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                 (FOLDER_WALKED, when))

    # -- reads ----------------------------------------------------------------------------

    def instance_path(self, sop_instance_uid: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT path FROM instances WHERE SOPInstanceUID = ?",
                                   (sop_instance_uid,)).fetchone()
        return None if row is None else str(row[0])

    def instance_paths(self, sop_instance_uids: list[str]) -> dict[str, str]:
        """SOP Instance UID -> path of those stored."""
        return {str(uid): str(path)
                for uid, path in self._by_uid("path", sop_instance_uids)}

    def stored(self, sop_instance_uids: list[str]) -> dict[str, tuple[str | None, str, int]]:
        """SOP Instance UID -> (SOP Class UID, path, size) of those stored."""
        return {str(uid): (sop_class, str(path), int(size)) for uid, sop_class, path, size
                in self._by_uid("SOPClassUID, path, size", sop_instance_uids)}

    def _by_uid(self, columns: str, sop_instance_uids: list[str]) -> list[tuple[Any, ...]]:
        """(SOPInstanceUID, columns...) of the instances stored among these, 500 a query."""
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(sop_instance_uids), 500):
            batch = sop_instance_uids[start:start + 500]
            marks = ", ".join("?" for _ in batch)
            with self._lock:
                try:
                    rows += self._db.execute(
                        f"SELECT SOPInstanceUID, {columns} FROM instances "
                        f"WHERE SOPInstanceUID IN ({marks})", batch).fetchall()
                except sqlite3.Error as exc:
                    raise IndexFailure(f"index read failed: {exc}") from exc
        return rows

    def paths(self) -> set[str]:
        with self._lock:
            return {str(r[0]) for r in self._db.execute("SELECT path FROM instances")}

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                table: int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("patients", "studies", "series", "instances")
            }

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> Iterator[sqlite3.Row]:
        """Run a read-only query, streaming its rows from a reader of its own (a query
        answered while instances arrive neither waits for them nor holds them up)."""
        if self._in_memory:  # one connection only: read it all under the lock
            with self._lock:
                self._db.row_factory = sqlite3.Row
                try:
                    rows = self._db.execute(sql, params).fetchall()
                finally:
                    self._db.row_factory = None
            yield from rows
            return
        reader = self._reader()
        cursor = None
        try:
            cursor = reader.execute(sql, params)
            yield from cursor
        finally:
            if cursor is not None:
                cursor.close()  # ends the read transaction: the WAL can be checkpointed
            with self._readers_lock:
                if len(self._readers) < _KEPT_READERS:
                    self._readers.append(reader)
                    reader = None  # type: ignore[assignment]
            if reader is not None:
                reader.close()

    def plan(self, sql: str, params: tuple[Any, ...] = ()) -> list[str]:
        """SQLite's query plan for ``sql`` (EXPLAIN QUERY PLAN details), for tests."""
        return [str(row["detail"]) for row in self.rows(f"EXPLAIN QUERY PLAN {sql}", params)]

    def _reader(self) -> sqlite3.Connection:
        with self._readers_lock:
            if self._readers:
                return self._readers.pop()
        try:
            reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                     check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise IndexFailure(f"cannot read the index {self.path}: {exc}") from exc
        reader.row_factory = sqlite3.Row
        reader.create_function("dicom_glob_ci", 2, _glob_ci, deterministic=True)
        return reader


#: Read-only connections kept for the next query (one per concurrent query beyond is opened
#: and closed).
_KEPT_READERS = 8
