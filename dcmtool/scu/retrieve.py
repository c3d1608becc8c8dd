"""C-MOVE and C-GET SCU: retrieve into a folder, with progress and a completeness check.

Received instances go through the same archive code as ``dcmtool serve`` (checks, rename,
the same layout patterns), into plain files or, asked for, an archive ``serve`` can open.
A move to ourselves runs a storage SCP on the configured local port and bind address for the
duration of the retrieval.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from dcmtool.config import LocalAE, Peer
from dcmtool.dicom import status
from dcmtool.dicom.sopclasses import (
    PATIENT_ROOT_GET,
    PATIENT_ROOT_MOVE,
    PATIENT_STUDY_ONLY_GET,
    PATIENT_STUDY_ONLY_MOVE,
    STUDY_ROOT_FIND,
    STUDY_ROOT_GET,
    STUDY_ROOT_MOVE,
    sop_class_name,
)
from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from dcmtool.errors import (
    AssociationAborted,
    DcmtoolError,
    DimseFailure,
    PartialFailure,
    UsageError,
)
from dcmtool.net.association import make_ae, open_association
from dcmtool.net.contexts import MAX_CONTEXTS, ContextRequest, plan_storage
from dcmtool.net.links import configure_ae

LOG = logging.getLogger("dcmtool.scu.retrieve")

MOVE_MODELS = {"patient": PATIENT_ROOT_MOVE, "study": STUDY_ROOT_MOVE,
               "patient-study": PATIENT_STUDY_ONLY_MOVE}
GET_MODELS = {"patient": PATIENT_ROOT_GET, "study": STUDY_ROOT_GET,
              "patient-study": PATIENT_STUDY_ONLY_GET}

#: Storage classes a C-GET offers to receive by default: what studies usually hold. Each gets
#: one context with the uncompressed syntaxes and one per common compressed family, so that
#: the list fits the 128 contexts of one association with the Q/R context.
COMMON_STORAGE_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2",      # CT Image
    "1.2.840.10008.5.1.4.1.1.2.1",    # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4",      # MR Image
    "1.2.840.10008.5.1.4.1.1.4.1",    # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.1",      # CR
    "1.2.840.10008.5.1.4.1.1.1.1",    # DX for presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # DX for processing
    "1.2.840.10008.5.1.4.1.1.1.2",    # Mammography for presentation
    "1.2.840.10008.5.1.4.1.1.6.1",    # US Image
    "1.2.840.10008.5.1.4.1.1.3.1",    # US Multi-frame
    "1.2.840.10008.5.1.4.1.1.7",      # Secondary Capture
    "1.2.840.10008.5.1.4.1.1.7.4",    # Multi-frame True Color SC
    "1.2.840.10008.5.1.4.1.1.12.1",   # XA
    "1.2.840.10008.5.1.4.1.1.20",     # NM
    "1.2.840.10008.5.1.4.1.1.128",    # PET
    "1.2.840.10008.5.1.4.1.1.481.1",  # RT Image
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT Dose
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT Structure Set
    "1.2.840.10008.5.1.4.1.1.481.5",  # RT Plan
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic Text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection
    "1.2.840.10008.5.1.4.1.1.11.1",   # Grayscale Softcopy Presentation State
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.66.4",   # Segmentation
    "1.2.840.10008.5.1.4.1.1.77.1.4", # VL Photographic
    "1.2.840.10008.5.1.4.1.1.13.1.3", # Breast Tomosynthesis
    "1.2.840.10008.5.1.4.1.1.9.1.1",  # 12-lead ECG
    "1.2.840.10008.5.1.4.1.1.130",    # Enhanced PET
    "1.2.840.10008.5.1.4.1.1.66",     # Raw Data
)
#: Syntax groups proposed per class for C-GET: uncompressed, then the lossless families.
#: A peer accepts one syntax of each context: classes that are named (--store-classes) or
#: found (--exact-classes) get the compressed ones in a context each, room permitting
#: (``get_contexts``).
UNCOMPRESSED = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)
GET_SYNTAX_GROUPS = (
    UNCOMPRESSED,
    ("1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.80",
     "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.201",
     "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
     "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.1.99"),
)


@dataclass
class RetrieveOutcome:
    """The result of one C-MOVE or C-GET request (one item of the list)."""

    label: str  # what was asked for, e.g. "StudyInstanceUID=1.2.3"
    status: int | None = None
    completed: int = 0
    failed: int = 0
    warning: int = 0
    received: int = 0  # files our storage SCP stored during this request
    connections: int = 0  # associations the peer opened to our storage SCP meanwhile
    failed_uids: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def expected(self) -> int:
        return self.completed + self.warning


@dataclass
class RetrieveSummary:
    outcomes: list[RetrieveOutcome] = field(default_factory=list)
    out_dir: Path | None = None
    seconds: float = 0.0  # from the first request until every file is durable
    #: Received files that could not be made durable (removed): the error that says so.
    storage_error: DcmtoolError | None = None

    @property
    def received(self) -> int:
        return sum(o.received for o in self.outcomes)


@dataclass(frozen=True)
class Progress:
    label: str
    completed: int
    remaining: int
    failed: int
    warning: int
    received: int


ProgressCallback = Callable[[Progress], None]


def identifier_label(identifier: Any) -> str:
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "PatientID"):
        value = identifier.get(keyword)
        if value:
            return f"{keyword}={value}"
    return "the identifier"


def build_retrieve_identifier(level: str, keys: Sequence[str]) -> Any:
    from pydicom.dataset import Dataset

    from dcmtool.scu.find import set_key

    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for key in keys:
        set_key(ds, key)
    return ds


class Receiver(Protocol):
    """Where retrieved instances go: a storage SCP and its archive (``scp.receiver``)."""

    stats: Any  # .stored, .associations: counters
    archive: Any  # .incoming: the folder received data sets are written into

    def store_file(self, assoc: Any, received: Any, sop_class: str, sop_instance: str,
                   transfer_syntax: str, data: bytes | bytearray | None = None) -> Any: ...

    def handle_store(self, event: Any) -> Any: ...

    def stop(self, grace: float = 30.0) -> None: ...


#: Opens a receiver: listening for a C-MOVE's sub-associations (True) or not (C-GET).
OpenReceiver = Callable[[bool], Receiver]


def move(peer: Peer, identifiers: Iterable[Any], *, model: str, destination: str | None,
         out_dir: Path | None, local: LocalAE, open_receiver: OpenReceiver | None = None,
         on_progress: ProgressCallback | None = None) -> RetrieveSummary:
    """C-MOVE each identifier to ``destination``, or to a storage SCP of ours
    (``open_receiver``) that writes into ``out_dir``."""
    if destination is None and (out_dir is None or open_receiver is None):
        raise UsageError("no move destination and no folder to receive into",
                         hint="give one", setting="destination")
    summary = RetrieveSummary(out_dir=out_dir)
    receiver = None
    if destination is None:
        assert open_receiver is not None
        receiver = open_receiver(True)
        destination = local.ae_title
    started = time.perf_counter()
    try:
        with open_association(peer, [ContextRequest(model, UNCOMPRESSED)]) as s:
            for identifier in identifiers:
                before = receiver.stats.stored if receiver else 0
                connections = receiver.stats.associations if receiver else 0
                outcome = RetrieveOutcome(identifier_label(identifier))
                responses = s.assoc.send_c_move(identifier, destination, model)
                _follow(s, responses, outcome, receiver, before, on_progress, "C-MOVE")
                if receiver is not None:
                    outcome.received = receiver.stats.stored - before
                    outcome.connections = receiver.stats.associations - connections
                summary.outcomes.append(outcome)
    except BaseException:
        if receiver is not None:
            _stop(receiver, None)
        raise
    if receiver is not None:
        _stop(receiver, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def get(peer: Peer, identifiers: Iterable[Any], *, model: str, out_dir: Path,
        open_receiver: OpenReceiver, store_classes: Sequence[str] = COMMON_STORAGE_CLASSES,
        held: Mapping[str, Collection[str]] | None = None, per_syntax: bool = False,
        on_progress: ProgressCallback | None = None) -> RetrieveSummary:
    """C-GET each identifier; the instances arrive on the same association.

    ``held``: the transfer syntaxes the peer holds each class in (``holdings_in``), and
    ``per_syntax``: the classes were named or found, not the defaults (see ``get_contexts``).
    """
    from pynetdicom import evt

    from dcmtool.net import receiving, wire

    contexts = get_contexts(model, store_classes, held or {}, per_syntax=per_syntax)
    summary = RetrieveSummary(out_dir=out_dir)
    receiver = open_receiver(False)
    started = time.perf_counter()
    try:
        ae = make_ae(peer)
        configure_ae(ae, incoming=receiver.archive.incoming)
        with open_association(peer, contexts, ae=ae,
                              handlers=[(evt.EVT_C_STORE, receiver.handle_store)]) as s:
            for identifier in identifiers:
                before = receiver.stats.stored
                outcome = RetrieveOutcome(identifier_label(identifier))
                if wire.usable(s.assoc):  # read off the socket by this thread
                    responses = receiving.send_c_get(
                        s.assoc, identifier, model, store=receiver.store_file,
                        incoming=receiver.archive.incoming)
                else:  # TLS or PDU logging: pynetdicom's path and its C-STORE handler
                    responses = s.assoc.send_c_get(identifier, model)
                _follow(s, responses, outcome, receiver, before, on_progress, "C-GET")
                outcome.received = receiver.stats.stored - before
                summary.outcomes.append(outcome)
    except BaseException:
        _stop(receiver, None)
        raise
    _stop(receiver, summary)
    summary.seconds = time.perf_counter() - started
    return summary


def get_contexts(model: str, store_classes: Sequence[str],
                 held: Mapping[str, Collection[str]], *, per_syntax: bool
                 ) -> list[ContextRequest]:
    """A C-GET's presentation contexts: the Q/R model's, then the storage classes'.

    A peer accepts one transfer syntax per context and sends each file in a context of its
    syntax, converting it when it can (and failing it when it cannot). So, following the
    storage planner (``plan_storage``), a class gets a context per compressed syntax it is
    held in (``held``, from the peer's Available Transfer Syntax UID), or per compressed
    syntax of ``GET_SYNTAX_GROUPS`` when that is unknown and ``per_syntax``; plus one
    context for explicit and implicit VR little endian. Where those do not fit in one
    association, the classes that come last keep today's two contexts (uncompressed, and
    every compressed syntax in one), which is also what the default classes get.
    """
    classes = list(dict.fromkeys(store_classes))
    grouped = {uid: [ContextRequest(uid, group) for group in GET_SYNTAX_GROUPS]
               for uid in classes}
    exact: dict[str, list[ContextRequest]] = {}
    for uid in classes:
        syntaxes = list(held.get(uid, ())) or (list(GET_SYNTAX_GROUPS[1]) if per_syntax else [])
        if syntaxes:
            (planned, _), = plan_storage([(uid, ts) for ts in syntaxes], lambda pair: pair[0],
                                         lambda pair: pair[1])
            kept = [cx for cx in planned if cx.transfer_syntaxes[0] not in UNCOMPRESSED
                    or len(cx.transfer_syntaxes) > 1]
            # Uncompressed first: some peers (DCMTK's dcmqrscp) send every file of a class
            # on the first context they accepted for it.
            exact[uid] = sorted(kept, key=lambda cx: cx.transfer_syntaxes[0] not in UNCOMPRESSED)
    budget = MAX_CONTEXTS - 1  # the Q/R model's context comes first
    chosen = {uid: min((exact.get(uid, grouped[uid]), grouped[uid]), key=len)
              for uid in classes}
    needed = sum(len(c) for c in chosen.values())
    if needed > budget:
        raise UsageError(f"{len(classes)} storage classes need {needed + 1} presentation "
                         f"contexts; one association holds {MAX_CONTEXTS}",
                         hint="name at most 63 storage classes", setting="store_classes")
    left_grouped = []
    for uid, contexts in exact.items():
        extra = len(contexts) - len(chosen[uid])
        if extra > 0 and needed + extra <= budget:
            chosen[uid], needed = contexts, needed + extra
        elif extra > 0:
            left_grouped.append(uid)
    if left_grouped:
        LOG.info("a presentation context per transfer syntax for every storage class would "
                 "need more than %d; offering %d class(es) with their compressed syntaxes in "
                 "one context: %s", MAX_CONTEXTS, len(left_grouped),
                 ", ".join(map(sop_class_name, left_grouped)))
    LOG.info("C-GET: %d presentation contexts for %d storage classes", needed + 1,
             len(classes))
    requests = [ContextRequest(model, UNCOMPRESSED)]
    for uid in classes:
        requests += [replace(cx, scu_role=False, scp_role=True) for cx in chosen[uid]]
    return requests


def _stop(receiver: Receiver, summary: RetrieveSummary | None) -> None:
    """Stop the receiver, which makes every received file durable; those that could not be
    are ``summary``'s storage error, or a warning when another error is on its way."""
    try:
        receiver.stop(grace=10)
    except DcmtoolError as exc:
        if summary is None:
            LOG.warning("%s", exc)
        else:
            summary.storage_error = exc


def _follow(session: Any, responses: Any, outcome: RetrieveOutcome, receiver: Any,
            before: int, on_progress: ProgressCallback | None, service: str) -> None:
    """Read the pending and final responses of one retrieval into ``outcome``."""
    for response, identifier in responses:
        code = getattr(response, "Status", None)
        if code is None:
            raise session.lost(f"the {service}")
        # Counts only grow; some peers (Orthanc on 0xC000) end with zeros.
        outcome.completed = max(outcome.completed, _count(response, "Completed"))
        outcome.failed = max(outcome.failed, _count(response, "Failed"))
        outcome.warning = max(outcome.warning, _count(response, "Warning"))
        remaining = int(getattr(response, "NumberOfRemainingSuboperations", 0) or 0)
        if status.is_pending(code):
            if on_progress:
                received = receiver.stats.stored - before if receiver else 0
                on_progress(Progress(outcome.label, outcome.completed, remaining,
                                     outcome.failed, outcome.warning, received))
            continue
        outcome.status = int(code)
        outcome.message = str(getattr(response, "ErrorComment", "") or "")
        if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
            value = identifier.FailedSOPInstanceUIDList
            outcome.failed_uids = [str(v) for v in (value if isinstance(value, list | tuple)
                                                    or type(value).__name__ == "MultiValue"
                                                    else [value]) if v]


def _count(status: Any, kind: str) -> int:
    return int(getattr(status, f"NumberOf{kind}Suboperations", 0) or 0)


def read_list(text: str, key: str | None) -> list[tuple[str, str]]:
    """(keyword, value) pairs from find's JSONL output, its tab-separated output (what it
    prints into a pipe), a CSV, or one value per line.

    A plain value is a Study Instance UID when it looks like one, else ``key`` (default
    AccessionNumber). JSONL/TSV/CSV rows give their most specific unique key, else their
    AccessionNumber or PatientID.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    order = ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "AccessionNumber",
             "PatientID")
    pairs: list[tuple[str, str]] = []
    if lines[0].lstrip().startswith("{"):
        for line in lines:
            row = _json_row(json.loads(line))
            pairs.append(_pick(row, order, line))
        return pairs
    first = lines[0]
    header = first.strip().split("\t")
    if any(k in header for k in order):  # find's output into a pipe (or a one-column CSV)
        for line in lines[1:]:
            values = [v.strip() for v in line.split("\t")]
            row = {k: v for k, v in zip(header, values, strict=False) if k and v}
            pairs.append(_pick(row, order, line))
        return pairs
    if "," in first and any(k in first for k in order):
        for row in csv.DictReader(io.StringIO("\n".join(lines))):
            pairs.append(_pick({k: v for k, v in row.items() if k and v}, order, str(row)))
        return pairs
    for line in lines:
        value = line.strip()
        if key:
            pairs.append((key, value))
        elif _looks_like_uid(value):
            pairs.append(("StudyInstanceUID", value))
        else:
            pairs.append(("AccessionNumber", value))
    return pairs


def _json_row(data: dict[str, Any]) -> dict[str, str]:
    """Keyword -> first value of a DICOM JSON object (find --jsonl output)."""
    from pydicom.datadict import keyword_for_tag

    row: dict[str, str] = {}
    for tag, element in data.items():
        values = element.get("Value") if isinstance(element, dict) else None
        if not values:
            continue
        keyword = keyword_for_tag(int(tag, 16)) if len(tag) == 8 else tag
        first = values[0]
        row[keyword or tag] = first.get("Alphabetic", "") if isinstance(first, dict) \
            else str(first)
    return row


def _pick(row: dict[str, str], order: Sequence[str], source: str) -> tuple[str, str]:
    for keyword in order:
        if row.get(keyword):
            return keyword, row[keyword]
    raise UsageError(f"no StudyInstanceUID, AccessionNumber or PatientID in {source[:80]}",
                     setting="from")


def _looks_like_uid(text: str) -> bool:
    parts = text.split(".")
    return len(parts) > 2 and all(p.isdigit() for p in parts) and len(text) <= 64


LEVEL_OF_KEY = {"SOPInstanceUID": "IMAGE", "SeriesInstanceUID": "SERIES",
                "StudyInstanceUID": "STUDY", "AccessionNumber": "STUDY", "PatientID": "PATIENT"}


def resolve(peer: Peer, pairs: Sequence[tuple[str, str]], *, find_model: str
            ) -> list[Any]:
    """Retrieve identifiers for (keyword, value) pairs; accession numbers (and patient IDs
    under Study Root) are resolved to Study Instance UIDs with a C-FIND first."""
    from pydicom.dataset import Dataset

    from dcmtool.scu.find import find

    identifiers: list[Any] = []
    for keyword, value in pairs:
        needs_find = keyword == "AccessionNumber" or (
            keyword == "PatientID" and find_model == STUDY_ROOT_FIND)
        if needs_find:
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            setattr(query, keyword, value)
            query.StudyInstanceUID = ""
            result = find(peer, query, find_model)
            uids = sorted({str(m.StudyInstanceUID) for m in result.matches
                           if m.get("StudyInstanceUID")})
            if not uids:
                raise DcmtoolError(f"{keyword} {value}: no study matches on {peer.label}")
            for uid in uids:
                ds = Dataset()
                ds.QueryRetrieveLevel = "STUDY"
                ds.StudyInstanceUID = uid
                identifiers.append(ds)
            continue
        ds = Dataset()
        ds.QueryRetrieveLevel = LEVEL_OF_KEY[keyword]
        setattr(ds, keyword, value)
        identifiers.append(ds)
    return identifiers


def check(summary: RetrieveSummary, *, destination: str | None, local: LocalAE | None,
          peer: Peer) -> None:
    """Raise the error that gives the right exit code, explaining the usual setup mistakes."""
    outcomes = summary.outcomes
    if not outcomes:
        return
    if summary.storage_error is not None:
        raise summary.storage_error
    unknown = [o for o in outcomes if o.status == status.UNKNOWN_MOVE_DESTINATION]
    if unknown:
        aet = destination or (local.ae_title if local else "?")
        where = f"{aet}@<this host>:{local.port}" if local and destination is None else aet
        raise DimseFailure(
            f"{peer.label} does not know the move destination {aet} (0xA801)",
            status=0xA801,
            hint=f"register {where} on {peer.label} as a DICOM node (AE title, this host's "
                 "address, port), or retrieve with C-GET instead", setting="get")
    failures = [o for o in outcomes if status.is_failure(o.status)]
    partial = [o for o in outcomes
               if o.status == status.SOME_SUBOPERATIONS_FAILED or o.failed]
    incomplete = [o for o in outcomes if summary.out_dir is not None and o.received < o.expected]
    if summary.out_dir is not None and destination is None and local is not None and \
            any(o.failed for o in outcomes) and \
            all(o.received == 0 and o.connections == 0 for o in outcomes):
        raise AssociationAborted(
            f"{peer.label} could not deliver any instance to our storage SCP "
            f"({local.ae_title}, port {local.port})",
            hint=f"can {peer.label} reach this host on port {local.port}? check the address "
                 f"it has for {local.ae_title}, firewalls, and [local] bind "
                 f"(now {local.bind})")
    if failures and len(failures) == len(outcomes) and not any(o.completed for o in outcomes):
        first = failures[0]
        raise DimseFailure(f"{first.label}: the peer answered 0x{first.status:04X}"
                           f"{': ' + first.message if first.message else ''}",
                           status=first.status or 0)
    if failures or partial or incomplete:
        parts = []
        if failures:
            parts.append(f"{len(failures)} request(s) failed")
        if partial:
            parts.append(f"{sum(o.failed for o in outcomes)} sub-operation(s) failed")
        if incomplete:
            parts.append(f"{sum(o.expected - o.received for o in incomplete)} instance(s) "
                         "reported sent never arrived")
        raise PartialFailure("; ".join(parts))


def holdings_in(peer: Peer, identifiers: Sequence[Any], model: str) -> dict[str, set[str]]:
    """The SOP classes the selection holds, each with the transfer syntaxes its instances
    are held in (empty when the peer does not return Available Transfer Syntax UID), by
    C-FIND at IMAGE level (for C-GET contexts)."""
    from pydicom.dataset import Dataset

    from dcmtool.scu.find import MODELS, find

    found: dict[str, set[str]] = {}
    unknown: set[str] = set()  # a class with an instance whose syntax was not given
    for identifier in identifiers:
        query = Dataset()
        query.QueryRetrieveLevel = "IMAGE"
        for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            if keyword in identifier:
                setattr(query, keyword, identifier.get(keyword))
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            if keyword not in query:
                setattr(query, keyword, "")
        query.SOPClassUID = ""
        query.AvailableTransferSyntaxUID = ""
        for match in find(peer, query, MODELS[model]).matches:
            sop_class = str(match.get("SOPClassUID") or "").strip()
            if sop_class:
                syntax = str(match.get("AvailableTransferSyntaxUID") or "").strip()
                found.setdefault(sop_class, set()).add(syntax)
                if not syntax:
                    unknown.add(sop_class)
    return {uid: set() if uid in unknown else syntaxes for uid, syntaxes in found.items()}
