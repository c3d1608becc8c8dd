"""Receiving N-EVENT-REPORTs as an SCU: on the association it opened, or on one the peer opens.

A Storage Commitment SCP answers an N-ACTION at once and reports the outcome later with an
N-EVENT-REPORT (PS3.4 J.3.3.1.2): on the same association while the SCU keeps it open, else
on a new association that the SCP opens to the SCU, proposing itself as SCP of the class
through SCP/SCU Role Selection (PS3.7 D.3.3.4). This module is the pynetdicom side of both
for the SCU (``scu.commit``): handlers that hand each report to a callback and answer it with
the status the callback returns, and a small acceptor that takes only those reports (and
C-ECHO, so that the peer's operator can verify us). Sending reports, the SCP's side, is
``net.events``.

pynetdicom already serves an N-EVENT-REPORT request that arrives on a requestor's
association: its DIMSE provider runs it on a thread of its own, even while the requestor
waits for another response (``dimse.DIMSEServiceProvider.receive_primitive``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pynetdicom import AE, evt

from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
from dcmtool.dicom.sopclasses import VERIFICATION
from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from dcmtool.net import acceptor, patches, settings

LOG = logging.getLogger("dcmtool.net.reports")

#: N-EVENT-REPORT response statuses (PS3.7 10.1.1.1.8, Annex C).
SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110

#: Syntaxes a report may come in: a DCMTK-based SCP (Orthanc) proposes implicit VR first.
_SYNTAXES = [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN,
             "1.2.840.10008.1.2.2"]  # explicit VR big endian (retired, still proposed)


@dataclass(frozen=True)
class EventReport:
    """One N-EVENT-REPORT request as received."""

    sop_class_uid: str
    sop_instance_uid: str
    event_type: int
    #: The Event Information data set; ``None`` when the request had none.
    information: Any
    #: The AE title of the peer that reported.
    reporter: str
    #: Received on the association we opened (``False``: on one the peer opened to us).
    same_association: bool


#: Answers a report: the N-EVENT-REPORT response status (0x0000 when it was taken).
OnReport = Callable[[EventReport], int]


def _report_handler(on_report: OnReport, same_association: bool) -> Callable[[Any], Any]:
    def handle(event: Any) -> tuple[int, None]:
        request = event.request
        try:
            information = event.event_information if request.EventInformation else None
        except Exception as exc:  # undecodable: said, and answered as a failure
            LOG.warning("an N-EVENT-REPORT whose Event Information does not decode: %s", exc)
            return PROCESSING_FAILURE, None
        try:
            # On our association the reporter is its acceptor; on the listener's, the requestor.
            peer = event.assoc.acceptor if same_association else event.assoc.requestor
            report = EventReport(
                sop_class_uid=str(request.AffectedSOPClassUID or ""),
                sop_instance_uid=str(request.AffectedSOPInstanceUID or ""),
                event_type=int(request.EventTypeID or 0),
                information=information,
                reporter=str(peer.ae_title).strip(),
                same_association=same_association,
            )
            return int(on_report(report)), None
        except Exception as exc:  # a handler never raises into pynetdicom
            LOG.warning("cannot process an N-EVENT-REPORT: %s: %s", type(exc).__name__, exc)
            return PROCESSING_FAILURE, None

    return handle


def report_handlers(on_report: OnReport, on_closed: Callable[[], None] | None = None
                    ) -> list[tuple[Any, Callable[..., Any]]]:
    """Handlers to bind to the association an SCU opens (``open_association(handlers=)``):
    each N-EVENT-REPORT goes to ``on_report``; ``on_closed`` is called when the connection
    closes (released, aborted, or lost), so that a waiter need not poll."""
    handlers: list[tuple[Any, Callable[..., Any]]] = [
        (evt.EVT_N_EVENT_REPORT, _report_handler(on_report, same_association=True))]
    if on_closed is not None:
        def closed(event: Any) -> None:
            on_closed()

        handlers.append((evt.EVT_CONN_CLOSE, closed))
    return handlers


def keep_open(assoc: Any, seconds: float) -> None:
    """Let ``assoc`` sit idle for ``seconds`` while a report is awaited on it: pynetdicom
    would otherwise abort it once the network timeout passes without a PDU."""
    current = assoc.network_timeout
    if current is not None and current < seconds:
        assoc.network_timeout = seconds


def is_open(assoc: Any) -> bool:
    return bool(assoc.is_established)


class ReportListener:
    """An acceptor on our port that takes N-EVENT-REPORTs; ``stop()`` closes it."""

    def __init__(self, server: Any) -> None:
        self._server = server
        self._stopped = threading.Lock()
        self.port = int(server.server_address[1])

    def stop(self, grace: float = 5.0) -> None:
        """Stop accepting; a peer still on an association (releasing it after its report
        was answered) gets up to ``grace`` s before it is aborted."""
        if not self._stopped.acquire(blocking=False):
            return
        acceptor.shut_down(self._server, grace)


def listen_for_reports(sop_classes: Sequence[str], on_report: OnReport, *, ae_title: str,
                       bind: str, port: int, max_pdu: int = 262144,
                       acse_timeout: float | None = 30.0,
                       network_timeout: float | None = 60.0) -> ReportListener:
    """Accept associations on ``bind:port`` from a peer that reports on ``sop_classes``
    (it proposes the SCP role, or no roles: both are accepted) and hand each N-EVENT-REPORT
    to ``on_report``. Verification is accepted too.

    Raises ``DcmtoolError`` when the address cannot be bound.
    """
    patches.apply()
    settings.sync_pdu_logging()
    ae = AE(ae_title=ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = implementation_version_name()
    ae.maximum_associations = 10
    ae.maximum_pdu_size = max_pdu
    ae.acse_timeout = acse_timeout or 3600 * 24  # pynetdicom needs a number
    ae.network_timeout = network_timeout
    ae.add_supported_context(VERIFICATION, [IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN])
    for uid in sop_classes:
        # Both roles allowed: the reporting peer proposes itself as SCP (PS3.4 J.3.3.1.2);
        # a peer that proposes no roles gets the defaults and may still report.
        ae.add_supported_context(uid, _SYNTAXES, scu_role=True, scp_role=True)

    def echo(event: Any) -> int:
        return SUCCESS

    handlers = [(evt.EVT_N_EVENT_REPORT, _report_handler(on_report, same_association=False)),
                (evt.EVT_C_ECHO, echo)]
    server = acceptor.start(ae, (bind, port), None, handlers)
    LOG.info("listening for reports on %s:%s as %s", bind, server.server_address[1], ae_title)
    return ReportListener(server)
