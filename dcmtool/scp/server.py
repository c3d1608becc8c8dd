"""The archive SCP behind ``dcmtool serve``: Verification and Storage, on a folder + SQLite.

Handlers never raise: every outcome is a DIMSE status, a log line and an audit record.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import shlex
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

from pynetdicom import AE, _config, evt

from dcmtool.archive.storage import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    Archive,
    StoreOutcome,
)
from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
from dcmtool.dicom.sopclasses import (
    MODALITY_WORKLIST_FIND,
    QR_MODELS,
    VERIFICATION,
    storage_sop_classes,
)
from dcmtool.dicom.syntaxes import TRANSFER_SYNTAXES, resolve_uid
from dcmtool.errors import DcmtoolError, UsageError
from dcmtool.net import fixes
from dcmtool.net.suboperations import (
    CANCELLED,
    GET_RESPONSE,
    MOVE_RESPONSE,
    Responder,
    StoredFile,
    Tally,
    perform,
    sub_contexts,
)

fixes.apply()

LOG = logging.getLogger("dcmtool.serve")

#: Seed 004's policy: explicit over implicit, lossless compressed over lossy. Everything is
#: stored as received, so lossy and video syntaxes are accepted too, after the others.
STORAGE_SYNTAX_PREFERENCE = tuple(
    resolve_uid(name) for name in (
        "explicit", "jpeg-lossless", "jpeg-lossless-p14", "jpeg-ls", "j2k-lossless",
        "htj2k-lossless", "htj2k-rpcl", "rle", "deflate", "implicit", "big-endian",
        "jpeg-baseline", "jpeg-extended", "jpeg-ls-near", "j2k", "htj2k",
        "mpeg2-mp", "mpeg2-hl", "mpeg4", "mpeg4-bd", "mpeg4-2d", "mpeg4-3d", "mpeg4-stereo",
        "hevc", "hevc-10",
    )
)
assert set(STORAGE_SYNTAX_PREFERENCE) == {ts.uid for ts in TRANSFER_SYNTAXES}


@dataclass(frozen=True)
class ServeOptions:
    ae_title: str = "DCMTOOL"
    port: int = 11112
    bind: str = "127.0.0.1"
    accept_unknown: bool = False
    transfer_syntaxes: tuple[str, ...] = STORAGE_SYNTAX_PREFERENCE  # in order of preference
    require_called_aet: bool = False
    allowed_calling_aets: tuple[str, ...] = ()
    max_associations: int = 100
    max_pdu: int = 262144
    acse_timeout: float | None = 30.0
    dimse_timeout: float | None = 60.0
    network_timeout: float | None = 60.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    on_stored: str | None = None
    on_study_complete: str | None = None
    study_timeout: float = 60.0
    #: C-MOVE destinations: AE title -> (host, port), from the config's nodes.
    destinations: tuple[tuple[str, str, int], ...] = ()
    max_results: int | None = None  # C-FIND: stop after this many matches (seed 004)
    utf8_answers: bool = False  # C-FIND: answer in ISO_IR 192
    case_insensitive_names: bool = False  # C-FIND: PN matching ignores case
    worklist: Path | None = None  # default ROOT/worklist


@dataclass
class ServerStats:
    """Counters for the live status line; read them, don't write them."""

    open_associations: int = 0
    associations: int = 0
    stored: int = 0
    refused: int = 0
    bytes_stored: int = 0
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)


class _Hooks:
    """Runs --on-stored / --on-study-complete commands on a worker thread, never on the
    association's own thread (a slow hook must not stall the sender)."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self._jobs: queue.Queue[str | None] = queue.Queue()
        self._studies: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if options.on_stored or options.on_study_complete:
            self._threads.append(threading.Thread(target=self._run, name="dcmtool-hooks",
                                                  daemon=True))
        if options.on_study_complete:
            self._threads.append(threading.Thread(target=self._watch_studies,
                                                  name="dcmtool-studies", daemon=True))
        for thread in self._threads:
            thread.start()

    @staticmethod
    def expand(template: str, values: dict[str, str]) -> str:
        """Replace {name} placeholders with shell-quoted values (never interpreted)."""
        out = template
        for key, value in values.items():
            out = out.replace("{" + key + "}", shlex.quote(value))
        return out

    def stored(self, outcome: StoreOutcome, calling_ae: str, called_ae: str) -> None:
        if outcome.path is None:
            return
        values = {
            "path": str(outcome.path), "dir": str(outcome.path.parent),
            "sop": outcome.sop_instance_uid or "", "study": outcome.study_instance_uid or "",
            "calling_aet": calling_ae, "called_aet": called_ae,
        }
        if self.options.on_stored:
            self._jobs.put(self.expand(self.options.on_stored, values))
        if self.options.on_study_complete and outcome.study_instance_uid:
            with self._lock:
                entry = self._studies.setdefault(outcome.study_instance_uid, {"count": 0})
                entry.update(values, last=time.monotonic())
                entry["count"] += 1

    def _watch_studies(self) -> None:
        period = max(0.05, min(1.0, self.options.study_timeout / 4))
        while not self._stop.wait(period):
            self._flush_studies(time.monotonic() - self.options.study_timeout)
        self._flush_studies(float("inf"))  # at shutdown, every open study is complete

    def _flush_studies(self, idle_before: float) -> None:
        assert self.options.on_study_complete
        with self._lock:
            done = [uid for uid, e in self._studies.items() if e["last"] <= idle_before]
            entries = [self._studies.pop(uid) for uid in done]
        for entry in entries:
            values = {k: str(v) for k, v in entry.items() if k != "last"}
            self._jobs.put(self.expand(self.options.on_study_complete, values))

    def _run(self) -> None:
        while True:
            command = self._jobs.get()
            if command is None:
                return
            try:
                result = subprocess.run(command, shell=True, capture_output=True, text=True,
                                        timeout=600)
                if result.returncode:
                    LOG.warning("hook exited with %d: %s: %s", result.returncode, command,
                                result.stderr.strip()[:200])
            except (OSError, subprocess.SubprocessError) as exc:
                LOG.warning("hook failed: %s: %s", command, exc)

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.name == "dcmtool-studies":
                thread.join(timeout)
        self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)


def _status(code: int, comment: str | None = None) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]  # LO
    return ds


class RunningServer:
    """A started archive SCP. ``stop()`` stops accepting, lets transfers finish, closes."""

    def __init__(self, archive: Archive, options: ServeOptions) -> None:
        self.archive = archive
        self.options = options
        self.stats = ServerStats()
        self._hooks = _Hooks(options)
        self._per_assoc: dict[int, dict[str, int]] = {}
        self._stopped = threading.Event()
        self.ae = self._make_ae()
        try:
            self._server: Any = self.ae.start_server(
                (options.bind, options.port),
                block=False,
                ssl_context=self._tls_context(),
                evt_handlers=self._handlers(),
            )
        except OSError as exc:
            self._hooks.close()
            raise DcmtoolError(
                f"cannot listen on {options.bind}:{options.port}: {exc.strerror or exc}",
                hint="is another server using that port? choose one with --port",
            ) from None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def _make_ae(self) -> AE:
        o = self.options
        fixes.sync_pdu_logging()
        ae = AE(ae_title=o.ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = implementation_version_name()
        ae.maximum_associations = o.max_associations
        ae.maximum_pdu_size = o.max_pdu
        ae.acse_timeout = o.acse_timeout or 3600 * 24
        ae.dimse_timeout = o.dimse_timeout
        ae.network_timeout = o.network_timeout
        ae.require_called_aet = o.require_called_aet
        if o.allowed_calling_aets:
            ae.require_calling_aet = list(o.allowed_calling_aets)
        ae.add_supported_context(VERIFICATION, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        register_storage_classes()
        for sop in storage_sop_classes():
            # Both roles: a C-GET requester asks us to be the SCU of its storage contexts.
            ae.add_supported_context(sop.uid, list(o.transfer_syntaxes), scu_role=True,
                                     scp_role=True)
        for model in (*QR_MODELS, MODALITY_WORKLIST_FIND):
            ae.add_supported_context(model, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        ae.dcmtool_incoming = str(self.archive.incoming)  # type: ignore[attr-defined]
        ae.dcmtool_retrieve = self._retrieve  # type: ignore[attr-defined]
        # Stream data sets to disk instead of memory; process-wide pynetdicom settings.
        _config.STORE_RECV_CHUNKED_DATASET = True
        _config.UNRESTRICTED_STORAGE_SERVICE = o.accept_unknown
        # pynetdicom pretty-prints every identifier for its log even when nobody reads it.
        verbose = logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)
        _config.LOG_REQUEST_IDENTIFIERS = _config.LOG_RESPONSE_IDENTIFIERS = verbose
        # Values that break VR rules are the sender's business; stored as received, quietly.
        import pydicom.config

        pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
        return ae

    def _tls_context(self) -> ssl.SSLContext | None:
        o = self.options
        if not (o.tls_cert or o.tls_key or o.tls_ca):
            return None
        if not (o.tls_cert and o.tls_key):
            raise UsageError("TLS needs both --tls-cert and --tls-key")
        try:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(o.tls_cert, o.tls_key)
            if o.tls_ca:
                context.load_verify_locations(o.tls_ca)
                context.verify_mode = ssl.CERT_REQUIRED
        except (OSError, ssl.SSLError) as exc:
            raise DcmtoolError(f"TLS setup failed: {exc}") from None
        return context

    # -- event handlers (never raise) --------------------------------------------------------

    def _handlers(self) -> list[Any]:
        return [
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
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

    def _on_accepted(self, event: Any) -> None:
        try:
            who = self._who(event.assoc)
            self._per_assoc[id(event.assoc)] = {"stored": 0, "refused": 0}
            self.stats.add(open_associations=1, associations=1)
            LOG.info("association from %s (%s) to %s accepted, %d contexts",
                     who["calling_aet"], who["peer"], who["called_aet"],
                     len(event.assoc.accepted_contexts))
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
            counts = self._per_assoc.pop(id(event.assoc), None)
            if counts is None:
                return  # closed before it was accepted
            how = "aborted" if event.event is evt.EVT_ABORTED else "released"
            who = self._who(event.assoc)
            self.stats.add(open_associations=-1)
            LOG.info("association from %s %s: %d stored, %d refused", who["calling_aet"], how,
                     counts["stored"], counts["refused"])
            self.archive.audit.write(f"association-{how}", **who, **counts)
        except Exception:
            LOG.exception("association bookkeeping failed")

    def _on_echo(self, event: Any) -> int:
        return 0x0000

    # -- query/retrieve and worklist (generators: pynetdicom sends each yield) ----------------

    def _on_find(self, event: Any) -> Any:
        try:
            yield from self._find(event)
        except Exception as exc:
            LOG.exception("C-FIND handler failed")
            yield _status(0xC000, f"internal error: {type(exc).__name__}"), None

    def _find(self, event: Any) -> Any:
        from dcmtool.archive.query import MODEL_OF, Match, QueryError, QueryOptions, matches
        from dcmtool.net.wire import PendingWriter

        who = self._who(event.assoc)
        model_uid = str(event.request.AffectedSOPClassUID)
        try:
            identifier = event.identifier
        except Exception:
            yield _status(0xA900, "identifier cannot be decoded"), None
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
        try:
            for response in source:
                if event.is_cancelled:
                    if writer:
                        writer.flush()
                    LOG.info("C-FIND from %s cancelled after %d matches", who["calling_aet"],
                             count)
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
                    _drain(event.assoc)  # let the reactor read a C-CANCEL between sends
        except QueryError as exc:
            if writer:
                writer.flush()
            yield _status(exc.status, exc.comment), None
            return
        except OSError:
            LOG.warning("C-FIND from %s: the connection broke", who["calling_aet"])
            return
        if writer:
            writer.flush()
        LOG.info("C-FIND from %s: %d matches", who["calling_aet"], count)
        self.archive.audit.write("find", matches=count, **who)
        yield 0x0000, None

    def _worklist(self) -> Any:
        from dcmtool.scp.worklist import WorklistFolder

        if self.__dict__.get("_worklist_folder") is None:
            folder = self.options.worklist or self.archive.root / "worklist"
            self._worklist_folder = WorklistFolder(folder, log=LOG.warning)
        return self._worklist_folder

    def _selected(self, request: Any, context: Any) -> tuple[list[StoredFile], Any]:
        """(the files a retrieval selects, None) or ([], the failure status Dataset)."""
        from pynetdicom.dsutils import decode

        from dcmtool.archive.query import MODEL_OF, QueryError, instances_for

        syntax = context.transfer_syntax[0]
        try:
            identifier = decode(request.Identifier, syntax.is_implicit_VR,
                                syntax.is_little_endian, syntax.is_deflated)
            rows = instances_for(self.archive.index, identifier,
                                 MODEL_OF[str(request.AffectedSOPClassUID)])
        except QueryError as exc:
            return [], _status(exc.status, exc.comment)
        except Exception as exc:
            return [], _status(0xA900, f"identifier cannot be processed: "
                               f"{type(exc).__name__}")
        return [StoredFile(self.archive.root / path, sop_class, sop_instance, syntax)
                for path, sop_class, sop_instance, syntax in rows], None

    def _retrieve(self, service: Any, request: Any, context: Any, kind: str) -> None:
        """The C-MOVE / C-GET SCP, in place of pynetdicom's loop (see dcmtool.net.suboperations).
        Never raises: the requester always gets a final status."""
        responder = Responder(service, request, context,
                              MOVE_RESPONSE if kind == "move" else GET_RESPONSE)
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
        known = {aet: (host, port) for aet, host, port in self.options.destinations}
        if destination not in known:
            LOG.warning("C-MOVE to unknown destination %s refused", destination)
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
        host, port = known[destination]
        sender = service.ae.associate(host, port, ae_title=destination,
                                      contexts=sub_contexts(items))
        if not sender.is_established:
            LOG.error("C-MOVE: cannot associate with %s at %s:%s", destination, host, port)
            responder.final(0xA801, comment=f"cannot associate with {destination}")
            with contextlib.suppress(Exception):
                sender.dul.socket.close()
            return
        originator = (str(service.ae.ae_title).strip(), int(request.MessageID))
        try:
            tally, cancelled = perform(sender, items, responder, originator=originator)
        finally:
            if sender.is_established:
                sender.release()
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
            LOG.info("retrieval cancelled with %d sub-operation(s) left", tally.remaining)
            responder.final(CANCELLED, tally)
        else:
            responder.final(tally.final_status, tally)

    def handle_store(self, event: Any) -> Any:
        """The C-STORE handler, for associations this server did not accept (C-GET)."""
        return self._on_store(event)

    def _on_store(self, event: Any) -> Any:
        try:
            return self._store(event)
        except Exception as exc:  # a bug must cost one instance, never the association
            LOG.exception("C-STORE handler failed")
            return _status(CANNOT_UNDERSTAND, f"internal error: {type(exc).__name__}")

    def store_file(self, assoc: Any, received: Path | StoreOutcome, sop_class: str,
                   sop_instance: str, transfer_syntax: str) -> Any:
        """Archive a data set received on ``assoc`` into a file of the archive's incoming
        folder (or report the outcome that already refused it); the status Dataset to answer.
        For receivers outside pynetdicom's event loop (dcmtool get's); never raises."""
        try:
            return self._archive(assoc, self._who(assoc), received, sop_class, sop_instance,
                                 transfer_syntax)
        except Exception as exc:
            LOG.exception("C-STORE handler failed")
            return _status(CANNOT_UNDERSTAND, f"internal error: {type(exc).__name__}")

    def _store(self, event: Any) -> Any:
        request = event.request
        who = self._who(event.assoc)
        sop_class = str(request.AffectedSOPClassUID)
        sop_instance = str(request.AffectedSOPInstanceUID)
        transfer_syntax = str(event.context.transfer_syntax)
        temp = self._received_file(event, sop_class, sop_instance, transfer_syntax, who)
        return self._archive(event.assoc, who, temp, sop_class, sop_instance, transfer_syntax)

    def _archive(self, assoc: Any, who: dict[str, Any], received: Path | StoreOutcome,
                 sop_class: str, sop_instance: str, transfer_syntax: str) -> Any:
        if isinstance(received, StoreOutcome):
            outcome = received
        else:
            outcome = self.archive.store_received(
                received, sop_class_uid=sop_class, sop_instance_uid=sop_instance,
                transfer_syntax=transfer_syntax, calling_ae=who["calling_aet"] or None,
            )
        counts = self._per_assoc.setdefault(id(assoc), {"stored": 0, "refused": 0})
        audit = {"sop_instance_uid": sop_instance, "sop_class_uid": sop_class,
                 "transfer_syntax": transfer_syntax, "status": f"0x{outcome.status:04X}",
                 "calling_aet": who["calling_aet"]}
        if outcome.status == 0x0000:
            counts["stored"] += 1
            self.stats.add(stored=1, bytes_stored=outcome.size)
            LOG.info("%s from %s: %s", sop_instance, who["calling_aet"], outcome.message)
            self.archive.audit.write("instance-stored", **audit, message=outcome.message,
                                     path=None if outcome.path is None else
                                     outcome.path.relative_to(self.archive.root).as_posix())
            self._hooks.stored(outcome, who["calling_aet"], who["called_aet"])
            return _status(0x0000)
        counts["refused"] += 1
        self.stats.add(refused=1)
        LOG.warning("%s from %s refused (0x%04X): %s", sop_instance, who["calling_aet"],
                    outcome.status, outcome.message)
        self.archive.audit.write("instance-refused", **audit, reason=outcome.message)
        return _status(outcome.status, outcome.message)

    def _received_file(self, event: Any, sop_class: str, sop_instance: str,
                       transfer_syntax: str, who: dict[str, Any]) -> Path | StoreOutcome:
        """The file pynetdicom streamed the data set into, or one written from memory."""
        path = getattr(event.request, "_dataset_path", None)
        if path is not None:
            return Path(path)
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

    def stop(self, grace: float = 30.0) -> None:
        """Stop accepting; wait up to ``grace`` s for open associations; close the index."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._server.shutdown()
        deadline = time.monotonic() + grace
        for assoc in list(self._server.active_associations):
            if not assoc.is_established:
                # Connected but never associated (a port probe, a stalled peer): pynetdicom
                # would wait for the ACSE timeout; nothing is in flight, so close it now.
                # Shut the socket first: a DUL blocked in recv() mid-PDU never reaches Sta1,
                # and abort() waits for that forever.
                sock = getattr(assoc.dul.socket, "socket", None)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                assoc.abort()
                continue
            assoc.join(max(0.0, deadline - time.monotonic()))
            if assoc.is_alive():
                LOG.warning("aborting an association still open after %.0f s", grace)
                assoc.abort()
                assoc.join(5)
        self._hooks.close()
        self.archive.close()

    def abort_open(self) -> None:
        """Abort every open association (a second Ctrl-C while stopping)."""
        for assoc in list(self._server.active_associations):
            assoc.abort()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()


_registered = threading.Lock()




def _drain(assoc: Any, timeout: float = 5.0) -> None:
    """Wait until the DUL has sent what is queued: pynetdicom's reactor reads the socket only
    when its send queue is empty, so a C-CANCEL would otherwise wait for every match."""
    pending = assoc.dul.to_provider_queue
    deadline = time.monotonic() + timeout
    while pending.qsize() and assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.0005)


def register_storage_classes() -> None:
    """Teach pynetdicom the storage classes it does not know (mostly retired ones).

    Without this it accepts the context but aborts when the C-STORE arrives.
    """
    import re

    from pynetdicom import sop_class
    from pynetdicom.service_class import StorageServiceClass

    with _registered:
        known = set(sop_class._STORAGE_CLASSES.values())
        for sop in storage_sop_classes():
            if sop.uid in known:
                continue
            keyword = "Dcmtool" + re.sub(r"[^A-Za-z0-9]", "", sop.name.title())
            try:
                sop_class.register_uid(sop.uid, keyword, StorageServiceClass)
            except ValueError:
                pass  # already registered under that keyword


def start_server(archive: Archive, options: ServeOptions) -> RunningServer:
    """Start the SCP on ``options.bind:options.port`` in background threads.

    Raises
    ------
    DcmtoolError
        The port cannot be bound, or TLS files are unusable.
    """
    return RunningServer(archive, options)


def parse_syntaxes(names: Sequence[str]) -> tuple[str, ...]:
    """``--accept-ts`` values (names or UIDs) in the order given; raise ``UsageError``."""
    try:
        return tuple(dict.fromkeys(resolve_uid(n) for n in names))
    except ValueError as exc:
        raise UsageError(f"--accept-ts: {exc}") from None


# ---------------------------------------------------------------------------------------------
# From command line and config file to options


@dataclass(frozen=True)
class ServeRequest:
    """What the user asked for on the command line; ``None`` means "not given"."""

    root: Path | None = None
    port: int | None = None
    ae_title: str | None = None
    bind: str | None = None
    layout: str | None = None
    duplicates: str | None = None
    min_free: str | None = None
    accept_unknown: bool | None = None
    accept_ts: Sequence[str] | None = None
    require_called_aet: bool | None = None
    allow: Sequence[str] | None = None
    max_associations: int | None = None
    max_pdu: int | None = None
    acse_timeout: float | None = None
    dimse_timeout: float | None = None
    network_timeout: float | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    on_stored: str | None = None
    on_study_complete: str | None = None
    study_timeout: float | None = None
    max_results: int | None = None
    utf8_answers: bool | None = None
    case_insensitive_names: bool | None = None


DEFAULT_ROOT = Path("dcmtool-archive")


def build_serve_options(request: ServeRequest, config: Any) -> tuple[ServeOptions, Any, Path]:
    """Merge flags over the config's ``[serve]`` table over defaults; validate everything.

    Returns the server options, the storage policy and the archive root.
    """
    from dcmtool.archive.layout import DEFAULT_PATTERN, Layout, LayoutError
    from dcmtool.archive.storage import StorePolicy
    from dcmtool.config import parse_size, serve_settings, validate_ae_title

    table = serve_settings(config)

    def pick(name: str, key: str | None = None, default: Any = None) -> Any:
        value = getattr(request, name)
        if value is not None:
            return value
        return table.get(key or name, default)

    try:
        ae_title = validate_ae_title(pick("ae_title", default="DCMTOOL"))
    except ValueError as exc:
        raise UsageError(f"--aet: {exc}") from None
    allow = tuple(pick("allow", default=()) or ())
    for title in allow:
        try:
            validate_ae_title(title)
        except ValueError as exc:
            raise UsageError(f"--allow: {exc}") from None
    duplicates = pick("duplicates", default="reject")
    if duplicates not in ("reject", "ignore", "overwrite"):
        raise UsageError(f"--duplicates: expected reject, ignore or overwrite, got "
                         f"{duplicates!r}")
    try:
        min_free = parse_size(str(pick("min_free", default="100M")))
    except ValueError as exc:
        raise UsageError(f"--min-free: {exc}") from None
    try:
        layout = Layout.parse(pick("layout", default=DEFAULT_PATTERN))
    except LayoutError as exc:
        raise UsageError(f"--layout: {exc}") from None
    accept_ts = pick("accept_ts")
    syntaxes = parse_syntaxes(accept_ts) if accept_ts else STORAGE_SYNTAX_PREFERENCE
    port = pick("port", default=11112)
    if not isinstance(port, int) or not 0 <= port < 65536:
        raise UsageError(f"--port: {port!r} is not a port number")
    options = ServeOptions(
        ae_title=ae_title,
        port=port,
        bind=pick("bind", default="127.0.0.1"),
        accept_unknown=bool(pick("accept_unknown", default=False)),
        transfer_syntaxes=syntaxes,
        require_called_aet=bool(pick("require_called_aet", default=False)),
        allowed_calling_aets=allow,
        max_associations=int(pick("max_associations", default=100)),
        max_pdu=int(pick("max_pdu", default=262144)),
        acse_timeout=pick("acse_timeout", default=30.0) or None,  # 0: no timeout
        dimse_timeout=pick("dimse_timeout", default=60.0) or None,
        network_timeout=pick("network_timeout", default=60.0) or None,
        tls_cert=pick("tls_cert"),
        tls_key=pick("tls_key"),
        tls_ca=pick("tls_ca"),
        on_stored=pick("on_stored"),
        on_study_complete=pick("on_study_complete"),
        study_timeout=float(pick("study_timeout", default=60.0)),
        destinations=tuple((node.ae_title, node.host, node.port)
                           for node in getattr(config, "nodes", {}).values()),
        max_results=pick("max_results"),
        utf8_answers=bool(pick("utf8_answers", default=False)),
        case_insensitive_names=bool(pick("case_insensitive_names", default=False)),
    )
    policy = StorePolicy(layout=layout, duplicates=duplicates, min_free_bytes=min_free)
    root = Path(pick("root", default=DEFAULT_ROOT)).expanduser()
    return options, policy, root


def open_archive(root: Path, policy: Any) -> tuple[Archive, Any]:
    """Open (creating if needed) the archive and reconcile its index with the folder."""
    from dcmtool.archive.index import IndexFailure

    try:
        archive = Archive(root, policy)
    except IndexFailure as exc:
        raise DcmtoolError(str(exc), hint="rebuild it: dcmtool serve --reindex") from None
    except OSError as exc:
        raise DcmtoolError(f"cannot open the archive {root}: {exc.strerror or exc}") from None
    try:
        report = archive.reconcile()
    except BaseException:
        archive.close()
        raise
    return archive, report
