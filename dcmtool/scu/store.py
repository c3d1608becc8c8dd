"""C-STORE SCU: send files to a peer as they are, decompressing only what the peer refuses.

Each file's header is read first (stopping before pixel data); files are grouped by SOP class,
and for each class the files' own transfer syntaxes are proposed plus explicit and implicit VR
little endian as fallbacks (seed 004's STORAGE-SCU policy). A file whose syntax was accepted is
sent as its bytes (over dcmtool's plain-TCP client where it can, see ``store_lean``; never
decoded); otherwise an uncompressed one is re-encoded and a compressed one decompressed, both
through the convert core (dcmtool.dicom.transcode), over pynetdicom's client.
``--ts`` sends everything in one chosen syntax instead. Every file gets an outcome; nothing
raises for one bad file.
"""

from __future__ import annotations

import csv
import json
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcmtool.config import Peer
from dcmtool.dicom import status
from dcmtool.dicom.modify import Modifier
from dcmtool.dicom.syntaxes import conversion_target, describe
from dcmtool.dicom.transcode import EncodeOptions, TranscodeError, transcode
from dcmtool.errors import AssociationAborted, ConnectionFailed, DcmtoolError
from dcmtool.net.contexts import ContextRequest, plan_storage
from dcmtool.net.lean import client as lean_client
from dcmtool.scu.store_scan import MEDIA_STORAGE_DIRECTORY as MEDIA_STORAGE_DIRECTORY
from dcmtool.scu.store_scan import Instance as Instance
from dcmtool.scu.store_scan import Scan as Scan
from dcmtool.scu.store_scan import scan as scan

if TYPE_CHECKING:
    from dcmtool.net import owned
    from dcmtool.scu.jobs import Stop


@dataclass(frozen=True)
class FileOutcome:
    path: Path
    sop_instance_uid: str | None
    status: int | None  # None: never answered (not sent, or the association failed)
    message: str
    sent_as: str | None = None  # the transfer syntax on the wire
    #: Not sent because the association failed and could not be re-opened (said once).
    abandoned: bool = False
    #: ``--new-uids``: (keyword, original UID, UID sent) of each UID that was replaced.
    renamed: tuple[tuple[str, str, str], ...] = ()

    @property
    def stored(self) -> bool:
        return status.completed(self.status)

    @property
    def warning(self) -> bool:
        return status.is_warning(self.status)


@dataclass
class StoreSummary:
    outcomes: list[FileOutcome] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # not DICOM
    seconds: float = 0.0
    bytes_sent: int = 0
    #: Why nothing could be sent at all (no association opened); every file has an outcome.
    error: DcmtoolError | None = None
    #: Sending stopped on request (``stop``) before every file was sent.
    interrupted: bool = False
    #: Why the files marked ``abandoned`` were not sent (an abort, a lost connection).
    abandoned_by: DcmtoolError | None = None

    @property
    def not_sent(self) -> int:
        """Files never sent: abandoned after a failure, or interrupted."""
        return sum(1 for o in self.outcomes if o.abandoned or o.message == INTERRUPTED)

    @property
    def stored(self) -> int:
        return sum(1 for o in self.outcomes if o.stored)

    @property
    def not_sent_interrupted(self) -> int:
        return sum(1 for o in self.outcomes if o.message == INTERRUPTED)

    @property
    def warnings(self) -> int:
        return sum(1 for o in self.outcomes if o.warning)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if not o.stored)


Progress = Callable[[FileOutcome, int, int], None]

#: The outcome of the files not sent because sending was stopped (Ctrl-C).
INTERRUPTED = "not sent: interrupted"


def read_report(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``store --report`` file (JSON or CSV); ``ValueError`` saying why when it
    is not one. Each row has ``path`` and ``stored`` (a bool, also when read from CSV)."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".csv":
            rows: list[dict[str, Any]] = list(csv.DictReader(text.splitlines()))
        else:
            rows = json.loads(text)
        for row in rows:
            row["path"] = str(row["path"])
            row["stored"] = row.get("stored") in (True, "True", "true")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a store report ({exc})") from None
    return rows


def plan(instances: Sequence[Instance], target: str | None = None
         ) -> list[tuple[list[ContextRequest], list[Instance]]]:
    """Batches of files whose presentation contexts fit in one association (see
    ``contexts.plan_storage``)."""
    return plan_storage(instances, lambda i: i.sop_class_uid, lambda i: i.transfer_syntax,
                        target)


def partition(instances: Sequence[Instance], jobs: int) -> list[list[Instance]]:
    """Split into at most ``jobs`` groups, whole studies only, balanced by bytes."""
    studies: dict[str, list[Instance]] = {}
    for instance in instances:
        studies.setdefault(instance.study_instance_uid, []).append(instance)
    groups: list[list[Instance]] = [[] for _ in range(max(1, min(jobs, len(studies))))]
    sizes = [0] * len(groups)
    for files in sorted(studies.values(), key=lambda f: -sum(i.size for i in f)):
        smallest = sizes.index(min(sizes))
        groups[smallest].extend(files)
        sizes[smallest] += sum(i.size for i in files)
    return [g for g in groups if g]


def store(
    peer: Peer,
    instances: Sequence[Instance],
    *,
    jobs: int = 1,
    retries: int = 0,
    retry_delay: float = 0.5,
    on_file: Progress | None = None,
    on_retry: Callable[[str, int, float], None] | None = None,
    modify: Callable[[Any], None] | None = None,
    target: str | None = None,
    encode_options: EncodeOptions | None = None,
    stop: threading.Event | None = None,
) -> StoreSummary:
    """Send ``instances`` to ``peer``; every file gets an outcome in the summary.

    ``stop`` set while sending: the file being sent finishes, the rest are not sent
    (``summary.interrupted``). When no association could be opened at all,
    ``summary.error`` says why (``check`` raises it) and every file is "not stored".

    ``target`` (a transfer syntax UID) transcodes every file to it before sending, through
    the convert core with ``encode_options``; files already in it go as their bytes.

    ``jobs`` associations run in parallel, each with whole studies: in worker processes
    where they can be forked (see ``jobs``), else in threads. Either way ``on_file`` and
    ``on_retry`` are called in this process and thread, in the order things happen. A
    connection failure or an abort re-opens the association up to ``retries`` times (delay
    doubling from ``retry_delay``) and goes on from the file that was not acknowledged.
    """
    from dcmtool.scu import store_lean

    started = time.perf_counter()
    lock = threading.Lock()
    summary = StoreSummary()
    total = len(instances)

    def record(instance: Instance, outcome: FileOutcome) -> None:
        with lock:
            summary.outcomes.append(outcome)
            if outcome.sent_as is not None and outcome.status is not None:
                summary.bytes_sent += instance.size
            done = len(summary.outcomes)
        if on_file:
            on_file(outcome, done, total)

    groups = partition(instances, jobs)
    worker = _Group(peer, retries, retry_delay, record, on_retry, modify,
                    _Transcoding(target, encode_options or EncodeOptions()) if target else None,
                    stop or threading.Event(),
                    store_lean.usable(peer, modifying=modify is not None, target=target))
    if len(groups) == 1:
        errors = [worker.run(groups[0])]
    else:
        from dcmtool.scu import jobs as pool  # not at the top: one association needs none

        if pool.forking():
            errors = pool.run_forked(groups, worker, stop)
        else:
            with ThreadPoolExecutor(max_workers=len(groups)) as threads:
                errors = list(threads.map(worker.run, groups))
    if all(error is not None for error in errors):
        summary.error = errors[0]  # not one association opened: its own exit code
    summary.interrupted = summary.not_sent_interrupted > 0
    summary.abandoned_by = worker.abandoned_by
    order = {instance.path: n for n, instance in enumerate(instances)}
    summary.outcomes.sort(key=lambda o: order.get(o.path, 0))
    summary.seconds = time.perf_counter() - started
    return summary


@dataclass
class _Pending:
    """One batch's files not sent yet (oldest first) and the one sent but not answered."""

    files: list[Instance]
    in_flight: Instance | None = None
    #: Left by the plain-TCP client: files the peer takes only converted (``store_lean``).
    convert: list[Instance] = field(default_factory=list)


class _Group:
    """Sends one group of files over one association at a time, retrying failures."""

    def __init__(self, peer: Peer, retries: int, retry_delay: float,
                 record: Callable[[Instance, FileOutcome], None],
                 on_retry: Callable[[str, int, float], None] | None,
                 modify: Callable[[Any], None] | None = None,
                 transcoding: _Transcoding | None = None,
                 stop: Stop | None = None, lean: bool = False) -> None:
        self.stop: Stop = stop or threading.Event()
        self.lean = lean  # over the plain-TCP client (store_lean.usable)
        self.modify = modify
        self.transcoding = transcoding
        self.peer = peer
        self.retries = retries
        self.retry_delay = retry_delay
        self.record = record
        self.on_retry = on_retry
        self.abandoned_by: DcmtoolError | None = None  # the first failure that left files

    def reporting_to(self, record: Callable[[Instance, FileOutcome], None],
                     on_retry: Callable[[str, int, float], None] | None, stop: Stop) -> _Group:
        """A sender like this one that reports through these (a worker process's)."""
        return _Group(self.peer, self.retries, self.retry_delay, record, on_retry,
                      self.modify, self.transcoding, stop, self.lean)

    def run(self, files: list[Instance], lean: bool | None = None) -> DcmtoolError | None:
        """Returns the error when no association of this group could be opened. Files the
        plain-TCP client left to convert go after their batch, over pynetdicom's."""
        lean = self.lean if lean is None else lean
        opened = False
        first_error: DcmtoolError | None = None
        target = self.transcoding.target if self.transcoding else None
        for contexts, batch in plan(files, target):
            pending = _Pending(list(batch))
            failures = 0
            while pending.files:
                if self.stop.is_set():
                    self._interrupted(pending.files)
                    break
                try:
                    with self._associate(contexts, lean) as s:
                        opened = True
                        if lean:
                            from dcmtool.scu import store_lean

                            store_lean.send(self, s, pending)
                        else:
                            self._send(s, pending)
                except (ConnectionFailed, AssociationAborted) as exc:
                    failures += 1
                    first_error = first_error or exc
                    if failures <= self.retries:
                        delay = min(30.0, self.retry_delay * 2 ** (failures - 1))
                        if self.on_retry:
                            self.on_retry(exc.message, failures, delay)
                        time.sleep(delay)  # back-off before the peer is tried again
                        continue
                    self.give_up(pending.files + _drain(pending.convert), exc, pending.in_flight)
                    pending.files.clear()
                except DcmtoolError as exc:  # rejected: retrying would not help
                    first_error = first_error or exc
                    self.give_up(pending.files + _drain(pending.convert), exc)
                    pending.files.clear()
            if pending.convert:
                error = self.run(pending.convert, lean=False)
                first_error = first_error or error
        return None if opened else first_error

    def _associate(self, contexts: list[ContextRequest], lean: bool
                   ) -> AbstractContextManager[Any]:
        return associate(self.peer, contexts, lean)

    def _send(self, session: Any, pending: _Pending) -> None:
        """Send the pending files in order over ``session``, recording each outcome; raises
        the association's loss with the unanswered file left first in ``pending``.

        While the peer stores one file, the next one is read (``_ready``): on small files
        the peer's turn is most of the time, and this takes the read off the path between
        one answer and the next request.
        """
        from dcmtool.net import owned

        files = pending.files
        # Responses are read by this thread (see owned.OwnedReader).
        reader = owned.OwnedReader.attach(session.assoc)
        try:
            ahead = self._ready(session, reader, files[0])
            while files:
                if self.stop.is_set():  # the file before finished
                    self._interrupted(files)
                    return
                instance = files[0]
                following = files[1] if len(files) > 1 else None
                pending.in_flight = instance
                if ahead is not None and reader is not None and reader.active:
                    outcome, ahead = self._send_ready(session, reader, instance, ahead,
                                                      following)
                else:
                    outcome = _send_one(session, instance, self.modify, self.transcoding)
                    ahead = self._ready(session, reader, following)
                if outcome.status is None and outcome.sent_as is not None:
                    raise session.lost(f"the C-STORE of {instance.path.name}")
                pending.in_flight = None
                del files[0]
                self.record(instance, outcome)
        finally:
            if reader is not None:
                reader.release()  # pynetdicom reads the A-RELEASE-RP

    def _ready(self, session: Any, reader: owned.OwnedReader | None,
               instance: Instance | None) -> tuple[int, bytes] | None:
        """(context ID, the file's bytes) when ``instance`` goes as it is over the owned
        reader's association (no ``--set``/``--new-uids``, its own syntax accepted, small
        enough to hold); None: ``_send_one`` decides and reports."""
        from dcmtool.net import framing, wire

        if instance is None or reader is None or not reader.active or \
                self.modify is not None or instance.dataset_offset is None or \
                (self.transcoding is not None and
                 self.transcoding.target != instance.transfer_syntax):
            return None
        context_id = wire.accepted_syntaxes(session.assoc).get(
            instance.sop_class_uid, {}).get(instance.transfer_syntax)
        if context_id is None:
            return None
        try:
            data = framing.read_small(instance.path)
        except OSError:
            return None
        return None if data is None else (context_id, data)

    def _send_ready(self, session: Any, reader: owned.OwnedReader, instance: Instance,
                    ready: tuple[int, bytes], following: Instance | None
                    ) -> tuple[FileOutcome, tuple[int, bytes] | None]:
        """C-STORE a file read by ``_ready``; read ``following`` while the peer answers."""
        from dcmtool.net import wire

        assoc = session.assoc
        context_id, data = ready
        assert instance.dataset_offset is not None
        message_id = wire.next_message_id(assoc)
        try:
            wire.send_request(assoc, context_id, memoryview(data)[instance.dataset_offset:],
                              instance.sop_class_uid, instance.sop_instance_uid, message_id,
                              pause_reactor=False)
        except OSError:  # the connection broke: no answer will come
            return _answered(instance, None, "", instance.transfer_syntax), None
        ahead = self._ready(session, reader, following)
        answer = reader.response(message_id)
        code, comment = answer if answer is not None else (None, "")
        return _answered(instance, code, comment, instance.transfer_syntax), ahead

    def _interrupted(self, pending: list[Instance]) -> None:
        for instance in pending:
            self.record(instance, FileOutcome(instance.path, instance.sop_instance_uid, None,
                                              INTERRUPTED))
        pending.clear()

    def give_up(self, pending: list[Instance], exc: DcmtoolError,
                in_flight: Instance | None = None) -> None:
        """Record ``pending`` as failed because of ``exc``: the file in flight as unanswered,
        the rest as not sent."""
        remaining = list(pending)
        pending.clear()
        if in_flight is not None and remaining and remaining[0] is in_flight:
            # Sent, and the association ended before its answer: failed, not "not sent".
            remaining = remaining[1:]
            self.record(in_flight, FileOutcome(in_flight.path, in_flight.sop_instance_uid,
                                               None, f"no answer: {exc.message}"))
        if remaining and self.abandoned_by is None:
            self.abandoned_by = exc
        for instance in remaining:
            self.record(instance, FileOutcome(instance.path, instance.sop_instance_uid, None,
                                              f"not sent: {exc.message}", abandoned=True))


def associate(peer: Peer, contexts: list[ContextRequest], lean: bool
              ) -> AbstractContextManager[Any]:
    """The association store sends on: dcmtool's plain-TCP client (``lean``) or
    pynetdicom's, set to send files undecoded; a peer accepting none of ``contexts`` is not
    an error here (each file is then refused)."""
    from dcmtool.net import settings

    if lean:
        return lean_client.open_association(peer, contexts, require_accepted=False)
    from dcmtool.net.association import open_association

    settings.send_files_undecoded()
    return open_association(peer, contexts, require_accepted=False)


def _drain(files: list[Instance]) -> list[Instance]:
    drained = list(files)
    files.clear()
    return drained


@dataclass(frozen=True)
class _Transcoding:
    """``--ts``: the syntax every file is sent in, and how lossy ones are encoded."""

    target: str
    options: EncodeOptions


def _answered(instance: Instance, code: int | None, comment: str, sent_as: str,
              uid: str | None = None, renamed: tuple[tuple[str, str, str], ...] = ()
              ) -> FileOutcome:
    """The outcome of a file the peer was sent, from its response's Status and Error
    Comment (``code`` None: no response came)."""
    uid = uid or instance.sop_instance_uid
    if code is None:
        return FileOutcome(instance.path, uid, None,
                           "no response: the association was aborted or timed out",
                           sent_as, renamed=renamed)
    text = "stored" if code == 0 else ("stored with warning" if status.is_warning(code)
                                       else "refused")
    return FileOutcome(instance.path, uid, code,
                       f"{text} (0x{code:04X}){': ' + comment if comment else ''}",
                       sent_as, renamed=renamed)


def _send_one(session: Any, instance: Instance,
              modify: Callable[[Any], None] | None = None,
              transcoding: _Transcoding | None = None) -> FileOutcome:
    from dcmtool.net import wire

    assoc = session.assoc
    accepted = wire.accepted_syntaxes(assoc).get(instance.sop_class_uid, {})

    def outcome(response: Any, sent_as: str, uid: str | None = None,
                renamed: tuple[tuple[str, str, str], ...] = ()) -> FileOutcome:
        code = getattr(response, "Status", None)
        return _answered(instance, None if code is None else int(code),
                         str(getattr(response, "ErrorComment", "") or ""), sent_as, uid,
                         renamed)

    on_wire, why_not = syntax_on_wire(instance, accepted,
                                      transcoding.target if transcoding else None)
    if on_wire is None:
        return FileOutcome(instance.path, instance.sop_instance_uid, None, why_not)
    try:
        if modify is None and on_wire == instance.transfer_syntax:
            return outcome(_send_bytes(assoc, instance), on_wire)  # the file's own bytes
        from pydicom import dcmread

        ds = dcmread(instance.path)
        renamed: tuple[tuple[str, str, str], ...] = ()
        if modify is not None:
            before = {k: str(ds.get(k, "")) for k in Modifier.UID_KEYWORDS}
            modify(ds)
            renamed = tuple((k, before[k], str(ds.get(k, ""))) for k in Modifier.UID_KEYWORDS
                            if before[k] != str(ds.get(k, "")))
        _transcoded(instance, ds, on_wire, transcoding.options if transcoding else None)
        wire.release_responses(assoc)  # pynetdicom's send reads through its DUL
        return outcome(assoc.send_c_store(ds), on_wire, str(ds.SOPInstanceUID), renamed)
    except DcmtoolError as exc:
        return FileOutcome(instance.path, instance.sop_instance_uid, None, exc.message)
    except Exception as exc:  # a bad file costs one outcome, never the batch
        return FileOutcome(instance.path, instance.sop_instance_uid, None,
                           f"cannot send: {type(exc).__name__}: {exc}")


def syntax_on_wire(instance: Instance, accepted: Collection[str],
                   target: str | None = None) -> tuple[str | None, str]:
    """The transfer syntax ``instance`` travels in, given the syntaxes the peer accepted for
    its SOP class (``target``: ``--ts``, proposed alone); ``(None, why)`` when it cannot go.
    Its own syntax when accepted, else ``syntaxes.conversion_target``'s (never lossy)."""
    if not accepted:
        wanted = f" as {describe(target)}" if target else ""
        return None, f"the peer refused SOP class {instance.sop_class_uid}{wanted}"
    if target is not None:
        return target, ""
    if instance.transfer_syntax in accepted:
        return instance.transfer_syntax, ""
    fallback = conversion_target(accepted)
    if fallback is None:
        offered = ", ".join(describe(t) for t in sorted(accepted))
        return None, (f"the peer accepts SOP class {instance.sop_class_uid} only as "
                      f"{offered}, not {describe(instance.transfer_syntax)}")
    return fallback, ""


def _send_bytes(assoc: Any, instance: Instance) -> Any:
    """C-STORE the file as its bytes: straight onto the socket, else pynetdicom's chunked send."""
    from dcmtool.net import wire

    status = wire.send_path(assoc, instance.path, instance.sop_class_uid,
                                instance.transfer_syntax, instance.sop_instance_uid,
                                offset=instance.dataset_offset)
    if status is not None:
        return status
    wire.release_responses(assoc)  # pynetdicom's send reads through its DUL
    return assoc.send_c_store(instance.path)


def _transcoded(instance: Instance, ds: Any, on_wire: str,
                options: EncodeOptions | None) -> Any:
    """``ds`` in the syntax it travels in, through the convert core (same instance UID unless
    a lossy ``--ts`` makes a new one)."""
    from dcmtool.net import stack

    stack.enable_pixels()  # a process that started network-only needs them now
    try:
        return transcode(ds, on_wire, options or EncodeOptions(keep_uid=True))
    except TranscodeError as exc:
        if options is None:  # the fallback for a refused syntax
            raise DcmtoolError(f"the peer refused {describe(instance.transfer_syntax)} and "
                               f"the file cannot be converted: {exc.message}") from None
        raise


def check(summary: StoreSummary) -> None:
    """Raise the error that gives the right exit code when not everything was stored."""
    if summary.error is not None:
        raise summary.error
    if summary.abandoned_by is not None and not summary.stored:
        raise summary.abandoned_by  # nothing stored: the abort (or lost connection) says why
    first = summary.outcomes[0] if summary.outcomes else None
    statuses = [o.status for o in summary.outcomes if o.status is not None]
    status.raise_for_batch(len(summary.outcomes), summary.failed, completed=summary.stored,
                           first_status=statuses[0] if statuses else None,
                           first_message=first.message if first else "")
