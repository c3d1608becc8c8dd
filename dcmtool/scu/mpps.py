"""Modality Performed Procedure Step SCU (PS3.4 F.7): report what was performed.

A step is created IN PROGRESS with an N-CREATE whose SOP Instance UID the SCU chooses (F.7.2.1:
"the SCU shall specify ... the SOP Instance UID"), from a worklist item or from keys, and
later set COMPLETED with the series performed, or DISCONTINUED with a reason, by N-SETs on
that UID. The data sets are built by ``dicom.mpps``; this module sends them and reads back
what the peer answered. The step's UID is the caller's to keep: later commands name it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcmtool.config import Peer
from dcmtool.dicom import status
from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from dcmtool.errors import DimseFailure, UsageError
from dcmtool.net.association import open_association
from dcmtool.net.contexts import ContextRequest

#: Error ID (0000,0903) with 0x0110 after a final state (F.7.2.2).
NO_LONGER_UPDATABLE = 0xA710


@dataclass(frozen=True)
class StepResult:
    """One N-CREATE or N-SET: the step's UID, the peer's status, what was sent."""

    operation: str  # "N-CREATE" or "N-SET"
    step_uid: str
    status: int
    comment: str
    error_id: int | None
    request: Any  # the Attribute List or Modification List sent
    reply: Any  # the Attribute List the peer answered with, if any

    @property
    def succeeded(self) -> bool:
        return status.completed(self.status)


def _context() -> list[ContextRequest]:
    from dcmtool.dicom.mpps import MPPS_SOP_CLASS

    return [ContextRequest(MPPS_SOP_CLASS, (EXPLICIT_VR_LITTLE_ENDIAN,
                                            IMPLICIT_VR_LITTLE_ENDIAN))]


def _result(operation: str, step_uid: str, request: Any, response: Any, reply: Any
            ) -> StepResult:
    code = getattr(response, "Status", None)
    error_id = getattr(response, "ErrorID", None)
    return StepResult(operation, step_uid, int(code) if code is not None else -1,
                      str(getattr(response, "ErrorComment", "") or ""),
                      int(error_id) if error_id is not None else None, request, reply)


def create(peer: Peer, attributes: Any, *, step_uid: str | None = None) -> StepResult:
    """N-CREATE the step ``attributes`` describe (``dicom.mpps.create_request``) under a new
    SOP Instance UID (or ``step_uid``). ``check`` raises for a failure status.

    Raises
    ------
    ConnectionFailed, AssociationRejected, AssociationAborted, NoAcceptableContext
    """
    from pydicom.uid import generate_uid

    from dcmtool.dicom.mpps import MPPS_SOP_CLASS

    uid = step_uid or str(generate_uid())
    with open_association(peer, _context()) as session:
        response, reply = session.assoc.send_n_create(attributes, MPPS_SOP_CLASS, uid)
        if getattr(response, "Status", None) is None:
            raise session.lost("the N-CREATE")
    return _result("N-CREATE", uid, attributes, response, reply)


def update(peer: Peer, step_uid: str, modification: Any) -> StepResult:
    """N-SET ``modification`` (``dicom.mpps.set_request``, or keys) on the step ``step_uid``.
    ``check`` raises for a failure status."""
    from dcmtool.dicom.mpps import MPPS_SOP_CLASS
    from dcmtool.dicom.uids import uid_problem

    problem = uid_problem(step_uid)
    if problem:
        raise UsageError(f"STEP_UID {step_uid[:80]!r} {problem}",
                         hint="give the UID 'dcmtool mpps PEER create' printed")
    with open_association(peer, _context()) as session:
        response, reply = session.assoc.send_n_set(modification, MPPS_SOP_CLASS, step_uid)
        if getattr(response, "Status", None) is None:
            raise session.lost("the N-SET")
    return _result("N-SET", step_uid, modification, response, reply)


def check(result: StepResult, peer: Peer) -> None:
    """``DimseFailure`` (exit 6) for a failure status, with what to do about the usual ones."""
    if result.succeeded:
        return
    comment = f": {result.comment}" if result.comment else ""
    hint = None
    if result.status == 0x0112:
        hint = f"{peer.label} knows no step {result.step_uid}: is it the UID 'mpps create' " \
               "printed, and the same peer?"
    elif result.error_id == NO_LONGER_UPDATABLE or "no longer" in result.comment.lower() \
            or "already" in result.comment.lower():
        hint = "a step COMPLETED or DISCONTINUED cannot be changed any more (PS3.4 F.7.2.2)"
    elif result.status in (0x0120, 0x0121, 0x0106):
        hint = "add or correct the attribute with -k Keyword=Value"
    raise DimseFailure(f"{peer.label} refused the {result.operation} of step "
                       f"{result.step_uid}: {status.describe(result.status)}{comment}",
                       status=result.status, hint=hint)


# -- what the requests are built from ---------------------------------------------------------


def read_worklist_item(source: str, index: int | None = None) -> Any:
    """A worklist item: ``dcmtool mwl --json`` output (a list of DICOM JSON objects, or one
    object; ``-`` for stdin), a ``--jsonl`` line each, or a DICOM file (a ``.wl`` file)."""
    from pydicom import dcmread
    from pydicom.dataset import Dataset
    from pydicom.errors import InvalidDicomError

    where = "stdin" if source == "-" else source
    try:
        data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"--from-worklist {where}: {exc.strerror or exc}") from None
    text = data.lstrip()
    if text[:1] in (b"[", b"{"):
        try:
            decoded = data.decode("utf-8")
            try:
                loaded = json.loads(decoded)
                items = loaded if isinstance(loaded, list) else [loaded]
            except json.JSONDecodeError:  # JSON lines
                items = [json.loads(line) for line in decoded.splitlines() if line.strip()]
            datasets = [Dataset.from_json(item) for item in items]
        except (ValueError, TypeError, AttributeError) as exc:
            raise UsageError(f"--from-worklist {where}: not DICOM JSON ({exc})") from None
    else:
        from io import BytesIO

        try:
            ds = dcmread(BytesIO(data), force=True)
            if "ScheduledProcedureStepSequence" not in ds and "PatientID" not in ds:
                raise ValueError("no Scheduled Procedure Step Sequence")
        except (InvalidDicomError, ValueError, EOFError, AttributeError) as exc:
            raise UsageError(f"--from-worklist {where}: not a worklist item ({exc})") from None
        if hasattr(ds, "file_meta"):
            del ds.file_meta
        datasets = [ds]
    if not datasets:
        raise UsageError(f"--from-worklist {where}: no worklist item in it")
    if index is None:
        if len(datasets) > 1:
            raise UsageError(f"--from-worklist {where}: {len(datasets)} worklist items; "
                             "choose one with --item N (1 is the first)")
        return datasets[0]
    if not 1 <= index <= len(datasets):
        raise UsageError(f"--item {index}: {where} has {len(datasets)} worklist item(s)")
    return datasets[index - 1]


def keys_dataset(keys: Sequence[str]) -> Any:
    """An N-SET Modification List from ``-k Keyword=Value`` keys (``Seq[0].Keyword=`` too)."""
    from pydicom.dataset import Dataset

    from dcmtool.scu.find import set_key

    ds = Dataset()
    for key in keys:
        if "=" not in key:
            raise UsageError(f"{key!r}: an N-SET needs Keyword=Value (Keyword= empties it)",
                             setting="key")
        set_key(ds, key)
    return ds


def series_from_files(paths: Iterable[Path]) -> list[Any]:
    """The performed series of DICOM files (grouped by Series Instance UID, in the order they
    appear), with their instances; files that are not DICOM are skipped."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    tags = ["SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "ProtocolName",
            "SeriesDescription"]
    headers = []
    for path in paths:
        try:
            ds = dcmread(path, stop_before_pixels=True, specific_tags=tags)
        except (InvalidDicomError, OSError, EOFError, ValueError):
            continue
        if ds.get("SeriesInstanceUID") and ds.get("SOPInstanceUID"):
            headers.append(ds)
    return _series(headers)


def series_from_store_report(path: Path) -> list[Any]:
    """The performed series of what a ``store --report`` lists as stored, by the UIDs sent
    (``--new-uids`` gave new ones); the rest is read from each file."""
    from pydicom import dcmread

    from dcmtool.scu.store import read_report

    try:
        rows = read_report(path)
    except ValueError as exc:
        raise UsageError(f"--report {exc}") from None
    stored = [r for r in rows if r["stored"]]
    paths = [Path(r["path"]) for r in stored]
    tags = ["SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "ProtocolName",
            "SeriesDescription"]
    headers = []
    for row, file in zip(stored, paths, strict=True):
        try:
            ds = dcmread(file, stop_before_pixels=True, specific_tags=tags)
        except (OSError, ValueError, EOFError) as exc:
            raise UsageError(f"--report {path}: cannot read {file} ({exc})") from None
        if row.get("sop_instance_uid"):
            ds.SOPInstanceUID = str(row["sop_instance_uid"])
        if row.get("series_instance_uid"):
            ds.SeriesInstanceUID = str(row["series_instance_uid"])
        headers.append(ds)
    return _series(headers)


def _series(headers: Sequence[Any]) -> list[Any]:
    from dcmtool.dicom.mpps import PerformedSeries

    grouped: dict[str, list[Any]] = {}
    for ds in headers:
        grouped.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    series = []
    for uid, members in grouped.items():
        first = members[0]
        series.append(PerformedSeries(
            series_uid=uid,
            modality=str(first.get("Modality") or "") or None,
            protocol=str(first.get("ProtocolName") or "") or None,
            instances=list(dict.fromkeys((str(ds.SOPClassUID), str(ds.SOPInstanceUID))
                                         for ds in members)),
            description=str(first.get("SeriesDescription") or "") or None))
    return series
