"""serve's DIMSE handlers: association bookkeeping, C-ECHO, C-STORE, C-FIND (archive and
worklist), C-MOVE and C-GET.

Handlers never raise: every outcome is a DIMSE status, a log line and an audit record. A bug
costs one request (0xC000 with a comment), never the association.

Logging: one line per association when it closes (``report.Session.summary``) on
``dcmtool.serve``; a line per instance and per request on ``dcmtool.serve.detail``, which the
CLI shows with ``-v``. Warnings about the server itself stay on ``dcmtool.serve``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from pynetdicom import evt

from dcmtool.archive.storage import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    Archive,
    StoreOutcome,
)
from dcmtool.dicom.commands import status_dataset
from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
from dcmtool.dicom.sopclasses import MODALITY_WORKLIST_FIND
from dcmtool.dicom.status import CANCEL as CANCELLED
from dcmtool.net import acceptor
from dcmtool.net.receiving import Refusal
from dcmtool.net.suboperations import (
    GET_RESPONSE,
    MOVE_RESPONSE,
    Responder,
    StoredFile,
    Tally,
    perform,
    sub_batches,
)
from dcmtool.scp.commitment import CommitmentSCP
from dcmtool.scp.destinations import MoveDestinations
from dcmtool.scp.hooks import CommandHooks
from dcmtool.scp.mpps import MppsSCP
from dcmtool.scp.options import ServeOptions
from dcmtool.scp.report import Session, plural

LOG = logging.getLogger("dcmtool.serve")
#: Per instance and per request (``-v``).
DETAIL = logging.getLogger("dcmtool.serve.detail")


@dataclass
class ServerStats:
    """Counters for the live status line; read them, don't write them.

    ``stored`` counts every instance acknowledged with success, ``duplicates`` those of them
    that were already stored (the duplicate policy kept the first copy).
    """

    open_associations: int = 0
    associations: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    bytes_stored: int = 0
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)




class Handlers:
    """The handlers of one server (or of a retrieving client's storage SCP)."""

    def __init__(self, archive: Archive, options: ServeOptions, stats: ServerStats,
                 hooks: CommandHooks) -> None:
        self.archive = archive
        self.options = options
        self.stats = stats
        self.hooks = hooks
        self._per_assoc: dict[int, Session] = {}
        self._worklist_folder: Any = None
        self.destinations = MoveDestinations(options.destinations, options.config_path)
        self.commitment = CommitmentSCP(archive, options.ae_title, self.destinations,
                                        self._who, self._session)
        self.mpps = MppsSCP(archive, self._who, self._session)

    def bindings(self) -> list[Any]:
        """(pynetdicom event, handler) pairs for the server."""
        return [
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_C_FIND, self._on_find),
            (evt.EVT_N_ACTION, self.commitment.on_action),
            (evt.EVT_N_CREATE, self.mpps.on_create),
            (evt.EVT_N_SET, self.mpps.on_set),
            (evt.EVT_ACCEPTED, self._on_accepted),
            (evt.EVT_REJECTED, self._on_rejected),
            (evt.EVT_RELEASED, self._on_closed),
            (evt.EVT_ABORTED, self._on_closed),
        ]

    @staticmethod
    def _who(assoc: Any) -> dict[str, Any]:
        requestor = assoc.requestor
        request = requestor.primitive  # the A-ASSOCIATE-RQ: what the peer asked for
        called = getattr(request, "called_ae_title", None) or assoc.acceptor.ae_title
        return {
            "calling_aet": str(requestor.ae_title).strip(),
            "called_aet": str(called).strip(),
            "peer": f"{requestor.address}:{requestor.port}",
        }

    def _session(self, assoc: Any) -> Session:
        session = self._per_assoc.get(id(assoc))
        if session is None:  # an association this server did not accept (C-GET's receiver)
            session = self._per_assoc.setdefault(id(assoc), Session(self._who(assoc)))
        return session

    def _on_accepted(self, event: Any) -> None:
        try:
            who = self._who(event.assoc)
            self._per_assoc[id(event.assoc)] = Session(who)
            self.stats.add(open_associations=1, associations=1)
            DETAIL.info("association from %s (%s) to %s accepted, %s", who["calling_aet"],
                        who["peer"], who["called_aet"],
                        plural(len(event.assoc.accepted_contexts), "presentation context"))
            self.archive.audit.write("association-opened", **who)
        except Exception:  # logging must never break an association
            LOG.exception("association bookkeeping failed")

    def _on_rejected(self, event: Any) -> None:
        try:
            who = self._who(event.assoc)
            primitive = event.assoc.acceptor.primitive
            reason = str(getattr(primitive, "reason_str", "rejected")).lower()
            LOG.warning("association from %s (%s) to %s rejected: %s", who["calling_aet"],
                        who["peer"], who["called_aet"], reason)
            self.archive.audit.write("association-rejected", reason=reason, **who)
        except Exception:
            LOG.exception("association bookkeeping failed")

    def _on_closed(self, event: Any) -> None:
        try:
            session = self._per_assoc.pop(id(event.assoc), None)
            if session is None:
                return  # closed before it was accepted
            self.stats.add(open_associations=-1)
            if event.event is evt.EVT_ABORTED:
                how, closing = "aborted", "aborted"
                waited = acceptor.dimse_timeout_fired(event.assoc)
                if waited is not None:
                    closing = (f"no answer within {waited:g} s (--dimse-timeout): dcmtool gave "
                               "up and aborted the association")
            else:
                how, closing = "released", None
            level = logging.WARNING if closing or session.failed else logging.INFO
            LOG.log(level, "%s", session.summary(closing))
            self.archive.audit.write(f"association-{how}", **session.who, **session.counts)
        except Exception:
            LOG.exception("association bookkeeping failed")

    def _on_echo(self, event: Any) -> int:
        with contextlib.suppress(Exception):
            self._session(event.assoc).request("C-ECHO")
        return 0x0000

    # -- query/retrieve and worklist (generators: pynetdicom sends each yield) ----------------

    def _on_find(self, event: Any) -> Any:
        try:
            yield from self._find(event)
        except Exception as exc:
            LOG.exception("C-FIND handler failed")
            yield status_dataset(0xC000, f"internal error: {type(exc).__name__}"), None

    def _find(self, event: Any) -> Any:
        from dcmtool.archive.query import MODEL_OF, Match, QueryError, QueryOptions, matches
        from dcmtool.net.wire import PendingWriter

        who = self._who(event.assoc)
        self._session(event.assoc).request("C-FIND")
        model_uid = str(event.request.AffectedSOPClassUID)
        try:
            identifier = event.identifier
        except Exception:
            yield status_dataset(0xA900, "identifier cannot be decoded"), None
            return
        if model_uid == MODALITY_WORKLIST_FIND:
            source: Any = self._worklist().find(
                identifier, case_insensitive_names=self.options.case_insensitive_names)
        else:
            options = QueryOptions(self.options.case_insensitive_names,
                                   self.options.utf8_answers, self.options.ae_title)
            source = matches(self.archive.index, identifier, MODEL_OF[model_uid], options)
        # Pending responses go straight onto the socket when they can (thousands per query);
        # the final one, and any pynetdicom must encode, go through pynetdicom.
        writer = PendingWriter.for_event(event) if model_uid != MODALITY_WORKLIST_FIND \
            else None
        implicit = str(event.context.transfer_syntax) == "1.2.840.10008.1.2"
        count = 0
        # Closed when the answer ends however it ends (cancel, --max-results, a broken
        # connection): its read transaction must not hold back the WAL until collected.
        closing = getattr(source, "close", None)
        try:
            for response in source:
                if event.is_cancelled:
                    if writer:
                        writer.flush()
                    DETAIL.info("C-FIND from %s cancelled after %s", who["calling_aet"],
                                plural(count, "match", "matches"))
                    yield 0xFE00, None
                    return
                if self.options.max_results is not None and count >= self.options.max_results:
                    LOG.warning("C-FIND from %s stopped at --max-results %d",
                                who["calling_aet"], self.options.max_results)
                    break
                count += 1
                if isinstance(response, Match):
                    encoded = response.encoded(implicit=implicit) if writer else None
                    if encoded is not None and writer is not None:
                        writer.send(encoded)
                        continue
                    if writer:
                        # Ours first, then pynetdicom's; from here on only pynetdicom writes
                        # (its DUL thread may still be sending when we would write again).
                        writer.flush()
                        writer = None
                    response = response.dataset()
                yield 0xFF00, response
                if count % 16 == 0:
                    acceptor.drain(event.assoc)  # let the reactor read a C-CANCEL between sends
        except QueryError as exc:
            if writer:
                writer.flush()
            yield status_dataset(exc.status, exc.comment), None
            return
        except OSError:
            LOG.warning("C-FIND from %s: the connection broke", who["calling_aet"])
            return
        finally:
            if closing is not None:
                closing()
        if writer:
            writer.flush()
        DETAIL.info("C-FIND from %s: %s", who["calling_aet"], plural(count, "match", "matches"))
        self.archive.audit.write("find", matches=count, **who)
        yield 0x0000, None

    def _worklist(self) -> Any:
        from dcmtool.scp.worklist import WorklistFolder

        if self._worklist_folder is None:
            folder = self.options.worklist or self.archive.root / "worklist"
            self._worklist_folder = WorklistFolder(folder, log=LOG.warning)
        return self._worklist_folder

    def _selected(self, request: Any, context: Any) -> tuple[list[StoredFile], Any]:
        """(the files a retrieval selects, None) or ([], the failure status Dataset)."""
        from dcmtool.archive.query import MODEL_OF, QueryError, instances_for

        syntax = context.transfer_syntax[0]
        try:
            identifier = acceptor.request_identifier(request, syntax)
            rows = instances_for(self.archive.index, identifier,
                                 MODEL_OF[str(request.AffectedSOPClassUID)])
        except QueryError as exc:
            return [], status_dataset(exc.status, exc.comment)
        except Exception as exc:
            return [], status_dataset(0xA900, f"identifier cannot be processed: "
                               f"{type(exc).__name__}")
        return [StoredFile(self.archive.root / path, sop_class, sop_instance, syntax)
                for path, sop_class, sop_instance, syntax in rows], None

    def retrieve(self, service: Any, request: Any, context: Any, kind: str) -> None:
        """The C-MOVE / C-GET SCP, in place of pynetdicom's loop (see dcmtool.net.suboperations).
        Never raises: the requester always gets a final status."""
        responder = Responder(service, request, context,
                              MOVE_RESPONSE if kind == "move" else GET_RESPONSE)
        with contextlib.suppress(Exception):
            self._session(service.assoc).request(f"C-{kind.upper()}")
        try:
            if kind == "move":
                self._move(service, request, context, responder)
            else:
                self._get(service, request, context, responder)
        except Exception as exc:
            LOG.exception("C-%s failed", kind.upper())
            with contextlib.suppress(Exception):
                responder.final(0xC000, comment=f"internal error: {type(exc).__name__}")

    def _move(self, service: Any, request: Any, context: Any, responder: Responder) -> None:
        destination = str(request.MoveDestination).strip()
        address = self.destinations.lookup(destination)
        if address is None:
            where = self.destinations.path or "the config file"
            LOG.warning("C-MOVE to unknown destination %s refused (0xA801): no node of %s has "
                        "that AE title", destination, where)
            responder.final(0xA801, comment=f"unknown move destination {destination}")
            return
        items, failure = self._selected(request, context)
        if failure is not None:
            LOG.warning("C-MOVE identifier refused: %s", failure.ErrorComment)
            responder.final(failure.Status, comment=str(failure.ErrorComment))
            return
        if not items:
            responder.final(0x0000, Tally(0))
            return
        host, port = address
        originator = (str(service.ae.ae_title).strip(), int(request.MessageID))
        tally, cancelled = Tally(len(items)), False
        # One sub-association per batch of at most 128 presentation contexts.
        for contexts, batch in sub_batches(items):
            sender = service.ae.associate(host, port, ae_title=destination, contexts=contexts)
            if not sender.is_established:
                LOG.error("C-MOVE: cannot associate with %s at %s:%s", destination, host, port)
                acceptor.close_connection(sender)
                if tally.remaining == len(items):
                    responder.final(0xA801, comment=f"cannot associate with {destination}")
                    return
                tally.fail_rest(batch)
                continue
            try:
                tally, cancelled = perform(sender, batch, responder, originator=originator,
                                           tally=tally)
            finally:
                if sender.is_established:
                    sender.release()
            waited = acceptor.dimse_timeout_fired(sender)
            if waited is not None:
                LOG.warning("C-MOVE: no answer from %s within %g s (--dimse-timeout): dcmtool "
                            "gave up and aborted the sub-association", destination, waited)
            if cancelled:
                break
        self._answer(responder, tally, cancelled)
        who = self._who(service.assoc)
        if not responder.present:
            LOG.warning("C-MOVE requester left; the sub-operations to %s finished: %d "
                        "stored, %d failed", destination, tally.completed + tally.warning,
                        tally.failed)
            self.archive.audit.write("move-finished", destination=destination,
                                     stored=tally.completed + tally.warning,
                                     failed=tally.failed, **who)
        self.archive.audit.write("move", destination=destination, instances=len(items),
                                 completed=tally.completed, failed=tally.failed, **who)

    def _get(self, service: Any, request: Any, context: Any, responder: Responder) -> None:
        items, failure = self._selected(request, context)
        if failure is not None:
            LOG.warning("C-GET identifier refused: %s", failure.ErrorComment)
            responder.final(failure.Status, comment=str(failure.ErrorComment))
            return
        tally, cancelled = perform(service.assoc, items, responder)
        self._answer(responder, tally, cancelled)
        self.archive.audit.write("get", instances=len(items), completed=tally.completed,
                                 failed=tally.failed, **self._who(service.assoc))

    @staticmethod
    def _answer(responder: Responder, tally: Tally, cancelled: bool) -> None:
        if cancelled:
            DETAIL.info("retrieval cancelled with %s left",
                        plural(tally.remaining, "sub-operation"))
            responder.final(CANCELLED, tally)
        else:
            responder.final(tally.final_status, tally)

    def on_store(self, event: Any) -> Any:
        try:
            return self._store(event)
        except Exception as exc:  # a bug must cost one instance, never the association
            LOG.exception("C-STORE handler failed")
            return status_dataset(CANNOT_UNDERSTAND, f"internal error: {type(exc).__name__}")

    def store_file(self, assoc: Any, received: Path | StoreOutcome | Refusal, sop_class: str,
                   sop_instance: str, transfer_syntax: str,
                   data: bytes | bytearray | None = None) -> Any:
        """Archive a data set received on ``assoc`` into a file of the archive's incoming
        folder (``data``: that file's bytes, when the receiver kept them), or report the
        outcome that already refused it; the status to answer (0x0000, or a status Dataset).
        For receivers outside pynetdicom's event loop; never raises."""
        try:
            return self._archive(assoc, self._who(assoc), received, sop_class, sop_instance,
                                 transfer_syntax, data)
        except Exception as exc:
            LOG.exception("C-STORE handler failed")
            return status_dataset(CANNOT_UNDERSTAND, f"internal error: {type(exc).__name__}")

    def _store(self, event: Any) -> Any:
        request = event.request
        who = self._who(event.assoc)
        sop_class = str(request.AffectedSOPClassUID)
        sop_instance = str(request.AffectedSOPInstanceUID)
        transfer_syntax = str(event.context.transfer_syntax)
        temp = self._received_file(event, sop_class, sop_instance, transfer_syntax, who)
        return self._archive(event.assoc, who, temp, sop_class, sop_instance, transfer_syntax)

    def _archive(self, assoc: Any, who: dict[str, Any],
                 received: Path | StoreOutcome | Refusal,
                 sop_class: str, sop_instance: str, transfer_syntax: str,
                 data: bytes | bytearray | None = None) -> Any:
        if isinstance(received, StoreOutcome):
            outcome = received
        elif isinstance(received, Refusal):
            outcome = StoreOutcome(received.status, received.message)
        else:
            outcome = self.archive.store_received(
                received, sop_class_uid=sop_class, sop_instance_uid=sop_instance,
                transfer_syntax=transfer_syntax, calling_ae=who["calling_aet"] or None,
                data=data,
            )
        session = self._session(assoc)
        audit = {"sop_instance_uid": sop_instance, "sop_class_uid": sop_class,
                 "transfer_syntax": transfer_syntax, "status": f"0x{outcome.status:04X}",
                 "calling_aet": who["calling_aet"]}
        if outcome.status == 0x0000:
            if outcome.path is None:  # the duplicate policy kept the stored copy
                session.duplicates += 1
                self.stats.add(stored=1, duplicates=1)
            else:
                session.stored += 1
                session.size += outcome.size
                self.stats.add(stored=1, bytes_stored=outcome.size)
            DETAIL.info("%s from %s: %s", sop_instance, who["calling_aet"], outcome.message)
            self.archive.audit.write("instance-stored", **audit, message=outcome.message,
                                     path=outcome.relative)
            self.hooks.stored(outcome, who["calling_aet"], who["called_aet"])
            return 0x0000
        session.refused(outcome.status, outcome.message)
        self.stats.add(refused=1)
        DETAIL.warning("%s from %s refused (0x%04X): %s", sop_instance, who["calling_aet"],
                       outcome.status, outcome.message)
        self.archive.audit.write("instance-refused", **audit, reason=outcome.message)
        return status_dataset(outcome.status, outcome.message)

    def _received_file(self, event: Any, sop_class: str, sop_instance: str,
                       transfer_syntax: str, who: dict[str, Any]) -> Path | StoreOutcome | Refusal:
        """The file pynetdicom streamed the data set into, or one written from memory."""
        received = acceptor.received_file(event.request)
        if received is not None:
            return received
        # Chunked receive was off (pynetdicom's setting is process-wide): write it ourselves.
        data = event.request.DataSet
        if not isinstance(data, BytesIO):
            return StoreOutcome(CANNOT_UNDERSTAND, "no data set in the C-STORE request")
        import tempfile

        from dcmtool.dicom.part10 import FileMeta

        meta = FileMeta(sop_class, sop_instance, transfer_syntax, IMPLEMENTATION_CLASS_UID,
                        implementation_version_name(), who["calling_aet"] or None,
                        who["called_aet"] or None)
        try:
            with tempfile.NamedTemporaryFile(dir=self.archive.incoming, prefix="rx-",
                                             delete=False) as fh:
                fh.write(meta.file_header())
                fh.write(data.getbuffer())
        except OSError as exc:
            return StoreOutcome(OUT_OF_RESOURCES, f"cannot write: {exc.strerror or exc}")
        return Path(fh.name)

    # -- lifecycle ---------------------------------------------------------------------------
