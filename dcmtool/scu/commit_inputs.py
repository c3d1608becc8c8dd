"""What a storage commitment asks for: the instances a ``store --report`` lists as stored,
the transactions an earlier ``commit --report`` still waits for, or what a C-FIND at IMAGE
level finds on the peer."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dcmtool.config import Peer
from dcmtool.dicom import status
from dcmtool.errors import DcmtoolError, UsageError
from dcmtool.scu.commit import NOT_REPORTED, Requested, Transaction


def from_store_report(path: Path) -> tuple[list[Requested], int]:
    """The instances a ``dcmtool store --report`` lists as stored, and how many rows it lists
    as not stored. The SOP class is read from each file; the SOP Instance and Study UIDs are
    those the report says were sent (``--new-uids`` gave new ones)."""
    from dcmtool.scu.store import read_report, scan

    try:
        rows = read_report(path)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    stored = [r for r in rows if r["stored"]]
    files = [Path(r["path"]) for r in stored]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise UsageError(f"{path}: {len(missing)} file(s) it lists as stored are gone "
                         f"(first: {missing[0]}): their SOP class cannot be read",
                         hint="commit by --study UID instead (the peer is asked which "
                              "instances the study holds)")
    by_path = {str(i.path.resolve()): i for i in scan(files).instances}
    items = []
    for row, file in zip(stored, files, strict=True):
        instance = by_path.get(str(file.resolve()))
        if instance is None:
            raise UsageError(f"{path}: {file} is no longer a readable DICOM file")
        items.append(Requested(instance.sop_class_uid,
                               str(row.get("sop_instance_uid") or instance.sop_instance_uid),
                               str(row.get("study_instance_uid") or
                                   instance.study_instance_uid),
                               str(file)))
    return items, len(rows) - len(stored)


def pending_transactions(path: Path) -> tuple[list[Transaction], str | None]:
    """The transactions a ``commit --report`` file lists as not reported (their Transaction
    UIDs and instances), and the calling AE title it was requested as (JSON reports)."""
    calling: str | None = None
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".csv":
            rows: list[dict[str, Any]] = list(csv.DictReader(text.splitlines()))
        else:
            doc = json.loads(text)
            rows, calling = doc["instances"], doc.get("calling_ae_title")
        by_uid: dict[str, Transaction] = {}
        for row in rows:
            if row["result"] != NOT_REPORTED:
                continue
            uid = str(row["transaction_uid"])
            transaction = by_uid.setdefault(uid, Transaction(uid, [], status=status.SUCCESS))
            transaction.items.append(Requested(
                str(row["sop_class_uid"]), str(row["sop_instance_uid"]),
                str(row.get("study_instance_uid") or ""), str(row.get("source") or "")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"--pending {path}: not a commit report ({exc})") from None
    return list(by_uid.values()), calling


def is_store_report(path: Path) -> bool:
    """A ``.json``/``.csv`` file that starts like a store report (rows with ``path`` and
    ``stored``), not a DICOM file."""
    if path.suffix.lower() not in (".json", ".csv") or not path.is_file():
        return False
    try:
        with path.open(encoding="utf-8") as fh:
            head = fh.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return '"path"' in head and '"stored"' in head if path.suffix.lower() == ".json" \
        else "path" in head.split("\n", 1)[0] and "stored" in head.split("\n", 1)[0]


def from_peer(peer: Peer, identifiers: Sequence[Any], model: str) -> list[Requested]:
    """The instances the peer holds for retrieve-style ``identifiers`` (study, series,
    instance, patient), by C-FIND at IMAGE level (Study Root)."""
    from pydicom.dataset import Dataset

    from dcmtool.scu.find import find

    found: dict[str, Requested] = {}
    for identifier in identifiers:
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                        "SOPInstanceUID"):
            if identifier.get(keyword):
                setattr(query, keyword, identifier.get(keyword))
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID",
                        "SOPClassUID"):
            if keyword not in query:
                setattr(query, keyword, "")
        answer = find(peer, query, model)
        status.raise_for_final(answer.status, "C-FIND", comment=answer.comment)
        for match in answer.matches:
            uid = str(match.get("SOPInstanceUID", "") or "")
            sop_class = str(match.get("SOPClassUID", "") or "")
            if not uid:
                continue
            if not sop_class:
                raise DcmtoolError(f"{peer.label} answered the C-FIND at IMAGE level without "
                                   f"the SOP Class UID of {uid}",
                                   hint="name the instances by their files or a store report")
            found.setdefault(uid, Requested(sop_class, uid,
                                            str(match.get("StudyInstanceUID", "") or ""),
                                            f"C-FIND on {peer.label}"))
    return list(found.values())
