"""An in-process pynetdicom SCP that records what it saw, for asserting on negotiation.

Every association gets an ``AssociationRecord``: the AE titles, presentation contexts and
maximum PDU the requestor proposed, the DIMSE messages it sent, and how it ended. Records are
appended from pynetdicom's threads under a lock; read them through ``PynetdicomSCP.events``
(a snapshot) and use ``wait_for``/``wait_closed`` rather than sleeping when a test needs the
server side to have finished (the client can return before the acceptor saw the release).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer
from pynetdicom.utils import make_target

from support.processes import LOOPBACK

HandlerList = Sequence[tuple[Any, Callable[..., Any]]]
ContextSpec = str | tuple[str, Sequence[str]] | PresentationContext


#: Outcomes that end an association (what ``wait_closed`` waits for after the close).
_ENDED = ("rejected", "released", "aborted")


@dataclass(frozen=True)
class RequestedContext:
    context_id: int
    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True)
class DimseRecord:
    """One DIMSE message the SCP received (a request, or a response in C-GET's SCU role)."""

    command: str  # "C-ECHO-RQ", "C-STORE-RQ", "C-STORE-RSP", ...
    context_id: int | None
    message_id: int | None
    affected_sop_class_uid: str | None
    status: int | None  # responses only

    @property
    def is_request(self) -> bool:
        return self.command.endswith("-RQ")

    @property
    def service(self) -> str:
        """``C-ECHO`` for ``C-ECHO-RQ``."""
        return self.command.rsplit("-", 1)[0]


@dataclass
class AssociationRecord:
    calling_ae_title: str
    called_ae_title: str
    requested_contexts: tuple[RequestedContext, ...]
    max_pdu: int | None  # the requestor's Maximum Length Received (0 = unlimited)
    implementation_class_uid: str | None
    implementation_version_name: str | None
    peer_address: tuple[str, int]
    outcome: str = "requested"  # accepted, rejected, released, aborted
    closed: bool = False
    messages: list[DimseRecord] = field(default_factory=list)

    @property
    def requests(self) -> list[DimseRecord]:
        return [m for m in list(self.messages) if m.is_request]

    @property
    def abstract_syntaxes(self) -> list[str]:
        return [cx.abstract_syntax for cx in self.requested_contexts]


def echo_status_handler(status: int) -> Callable[[Any], int]:
    """A C-ECHO handler answering ``status`` (e.g. 0x0110 Processing failure)."""

    def handle(event: Any) -> int:
        return status

    return handle


def abort_handler(event: Any) -> int:
    """A DIMSE handler that aborts the association instead of answering."""
    event.assoc.abort()
    return 0x0000  # never sent: the association is gone


def _context(spec: ContextSpec) -> PresentationContext:
    if isinstance(spec, PresentationContext):
        return spec
    cx = PresentationContext()
    if isinstance(spec, str):
        from pynetdicom import DEFAULT_TRANSFER_SYNTAXES

        cx.abstract_syntax = spec
        cx.transfer_syntax = list(DEFAULT_TRANSFER_SYNTAXES)
    else:
        cx.abstract_syntax = spec[0]
        cx.transfer_syntax = list(spec[1])
    return cx


class PynetdicomSCP:
    """A running pynetdicom AE on 127.0.0.1 (port chosen by the kernel)."""

    def __init__(
        self,
        *,
        ae_title: str = "ANY-SCP",
        handlers: HandlerList | Mapping[Any, Callable[..., Any]] = (),
        contexts: Iterable[ContextSpec] | None = None,
        storage: bool = False,
        echo_status: int = 0x0000,
        reject: tuple[int, int, int] | None = None,
        store_dir: Path | None = None,
        **ae_settings: Any,
    ) -> None:
        self.ae_title = ae_title
        self.host = LOOPBACK
        self.reject = reject
        self.store_dir = store_dir
        self._lock = threading.Condition()
        self._records: dict[int, AssociationRecord] = {}
        self._order: list[AssociationRecord] = []
        #: Datasets received by the default C-STORE handler (``storage=True``), in order.
        self.stored: list[Any] = []

        ae = AE(ae_title=ae_title)
        for name, value in ae_settings.items():
            if not hasattr(ae, name):
                raise TypeError(f"pynetdicom AE has no setting {name!r}")
            setattr(ae, name, value)
        specs = list(contexts) if contexts is not None else [Verification]
        if storage:
            specs += [cx.abstract_syntax for cx in AllStoragePresentationContexts
                      if cx.abstract_syntax not in specs]
        for spec in specs:
            cx = _context(spec)
            ae.add_supported_context(cx.abstract_syntax, cx.transfer_syntax,
                                     scu_role=cx.scu_role, scp_role=cx.scp_role)
        self.ae = ae

        user = dict(handlers)
        intervention = {evt.EVT_C_ECHO: echo_status_handler(echo_status)}
        if storage:
            intervention[evt.EVT_C_STORE] = self._store
        intervention.update({k: v for k, v in user.items() if not k.is_notification})
        notification = [(k, v) for k, v in user.items() if k.is_notification]
        recorders = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_ACCEPTED, self._outcome("accepted")),
            (evt.EVT_REJECTED, self._outcome("rejected")),
            (evt.EVT_RELEASED, self._outcome("released")),
            (evt.EVT_ABORTED, self._outcome("aborted")),
            (evt.EVT_DIMSE_RECV, self._on_dimse),
            (evt.EVT_CONN_CLOSE, self._on_close),
        ]
        # What ae.start_server(block=False) does, with a 50 ms poll instead of 500 ms, so that
        # shutdown() returns at once and each test saves half a second of teardown.
        self.server = ae.make_server(
            (LOOPBACK, 0),
            evt_handlers=[*recorders, *notification, *intervention.items()],
            server_class=ThreadedAssociationServer,
        )
        ae._servers.append(self.server)
        self._thread = threading.Thread(
            target=make_target(lambda: self.server.serve_forever(poll_interval=0.05)),
            name=f"pynetdicom_scp:{ae_title}", daemon=True,
        )
        self._thread.start()
        self.port: int = int(self.server.server_address[1])

    # -- what the peer saw ---------------------------------------------------------------------

    @property
    def events(self) -> list[AssociationRecord]:
        """The associations seen so far, oldest first (a snapshot of the list)."""
        with self._lock:
            return list(self._order)

    @property
    def address(self) -> str:
        """``AET@127.0.0.1:PORT``, as dcmtool takes a peer."""
        return f"{self.ae_title}@{self.host}:{self.port}"

    def wait_for(self, predicate: Callable[[list[AssociationRecord]], bool],
                 timeout: float = 5.0) -> list[AssociationRecord]:
        """Block until ``predicate(events)`` holds; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(list(self._order)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"peer state not reached in {timeout:g} s: "
                                         f"{self._order!r}")
                self._lock.wait(left)
            return list(self._order)

    def wait_closed(self, count: int = 1, timeout: float = 5.0) -> list[AssociationRecord]:
        """Wait until at least ``count`` associations were seen and all of them are closed.

        pynetdicom may report the closed connection before the release or abort that ended
        the association (different threads): once closed, the outcome gets a moment more."""
        events = self.wait_for(lambda ev: len(ev) >= count and all(r.closed for r in ev),
                               timeout)
        try:
            return self.wait_for(lambda ev: all(r.outcome in _ENDED for r in ev), 1.0)
        except AssertionError:  # closed without a release or an abort: that is the outcome
            return events

    def shutdown(self) -> None:
        self.server.shutdown()
        self._thread.join(5)

    # -- pynetdicom handlers (run in the association threads) ---------------------------------

    def _on_requested(self, event: Any) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        contexts = tuple(
            RequestedContext(int(cx.context_id), str(cx.abstract_syntax),
                             tuple(str(t) for t in cx.transfer_syntax))
            for cx in rq.presentation_context_definition_list
        )
        impl_uid = assoc.requestor.implementation_class_uid
        record = AssociationRecord(
            calling_ae_title=str(rq.calling_ae_title).strip(),
            called_ae_title=str(rq.called_ae_title).strip(),
            requested_contexts=contexts,
            max_pdu=assoc.requestor.maximum_length,
            implementation_class_uid=str(impl_uid) if impl_uid else None,
            implementation_version_name=assoc.requestor.implementation_version_name,
            peer_address=(assoc.requestor.address, assoc.requestor.port),
        )
        with self._lock:
            self._records[id(assoc)] = record
            self._order.append(record)
            self._lock.notify_all()
        if self.reject is not None:
            # pynetdicom skips its own negotiation when EVT_REQUESTED rejected the request.
            # kill() waits until the A-ASSOCIATE-RJ is out and the requestor closed (as
            # pynetdicom's own rejections do); without it the socket may close first.
            with self._lock:
                record.outcome = "rejected"
            assoc.acse.send_reject(*self.reject)
            assoc.kill()

    def _record(self, event: Any) -> AssociationRecord | None:
        return self._records.get(id(event.assoc))

    def _outcome(self, outcome: str) -> Callable[[Any], None]:
        def handle(event: Any) -> None:
            with self._lock:
                record = self._record(event)
                if record is not None and record.outcome not in ("released", "aborted"):
                    record.outcome = outcome
                self._lock.notify_all()

        return handle

    def _on_dimse(self, event: Any) -> None:
        msg = event.message
        cs = msg.command_set
        status = getattr(cs, "Status", None)
        sop = getattr(cs, "AffectedSOPClassUID", None)
        message_id = getattr(cs, "MessageID", None)
        if message_id is None:
            message_id = getattr(cs, "MessageIDBeingRespondedTo", None)
        record = DimseRecord(
            command=type(msg).__name__.replace("_", "-"),
            context_id=msg.context_id,
            message_id=int(message_id) if message_id is not None else None,
            affected_sop_class_uid=str(sop) if sop else None,
            status=int(status) if status is not None else None,
        )
        with self._lock:
            owner = self._record(event)
            if owner is not None:
                owner.messages.append(record)
            self._lock.notify_all()

    def _on_close(self, event: Any) -> None:
        with self._lock:
            # Kept (not popped): the release or abort may still be reported after this.
            record = self._records.get(id(event.assoc))
            if record is not None:
                record.closed = True
            self._lock.notify_all()

    def _store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self._lock:
            self.stored.append(ds)
        if self.store_dir is not None:
            self.store_dir.mkdir(parents=True, exist_ok=True)
            ds.save_as(self.store_dir / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        return 0x0000
