"""The SCP side of pynetdicom: building an accepting AE and what its handlers need of
pynetdicom's internals (the only place outside ``net`` they would otherwise be touched).
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pynetdicom import AE

from dcmtool.dicom.commitment import STORAGE_COMMITMENT_PUSH
from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
from dcmtool.dicom.mpps import MPPS_SOP_CLASS
from dcmtool.dicom.sopclasses import (
    MODALITY_WORKLIST_FIND,
    QR_MODELS,
    VERIFICATION,
    storage_sop_classes,
)
from dcmtool.dicom.status import OUT_OF_RESOURCES
from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from dcmtool.errors import DcmtoolError
from dcmtool.net import patches, settings
from dcmtool.net.links import ReceiveHandler, RetrieveHandler, configure_ae, link
from dcmtool.net.patches.incoming import IncomingFile
from dcmtool.net.receiving import Refusal

_UNCOMPRESSED = [EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN]


@dataclass(frozen=True)
class AcceptorSettings:
    """What an accepting AE is configured with."""

    ae_title: str
    transfer_syntaxes: tuple[str, ...]  # storage, in order of preference
    max_associations: int = 100
    max_pdu: int = 262144
    acse_timeout: float | None = 30.0
    dimse_timeout: float | None = 60.0
    network_timeout: float | None = 60.0
    require_called_aet: bool = False
    allowed_calling_aets: tuple[str, ...] = ()
    accept_unknown_classes: bool = False
    max_message_bytes: int | None = None  # command sets and identifiers held in memory
    min_free_bytes: int = 0  # stop receiving a data set that would leave less free


def make_acceptor(settings_: AcceptorSettings, *, incoming: Path,
                  retrieve: RetrieveHandler | None = None,
                  receive: ReceiveHandler | None = None) -> AE:
    """An AE accepting Verification, every Storage class (both roles: a C-GET requester asks
    us to be the SCU of its storage contexts), the Q/R models, the worklist, Storage
    Commitment Push Model and MPPS; received data sets stream into ``incoming``."""
    patches.apply()
    settings.sync_pdu_logging()
    settings.acceptor_settings(accept_unknown_classes=settings_.accept_unknown_classes)
    ae = AE(ae_title=settings_.ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = implementation_version_name()
    ae.maximum_associations = settings_.max_associations
    ae.maximum_pdu_size = settings_.max_pdu
    ae.acse_timeout = settings_.acse_timeout or 3600 * 24  # pynetdicom needs a number
    ae.dimse_timeout = settings_.dimse_timeout
    ae.network_timeout = settings_.network_timeout
    ae.require_called_aet = settings_.require_called_aet
    if settings_.allowed_calling_aets:
        ae.require_calling_aet = list(settings_.allowed_calling_aets)
    ae.add_supported_context(VERIFICATION, _UNCOMPRESSED)
    register_storage_classes()
    for sop in storage_sop_classes():
        ae.add_supported_context(sop.uid, list(settings_.transfer_syntaxes), scu_role=True,
                                 scp_role=True)
    for model in (*QR_MODELS, MODALITY_WORKLIST_FIND, STORAGE_COMMITMENT_PUSH, MPPS_SOP_CLASS):
        ae.add_supported_context(model, _UNCOMPRESSED)
    configure_ae(ae, incoming=incoming, retrieve=retrieve, receive=receive,
                 max_message_bytes=settings_.max_message_bytes,
                 min_free_bytes=settings_.min_free_bytes)
    return ae


def start(ae: AE, address: tuple[str, int], tls: ssl.SSLContext | None,
          handlers: Sequence[Any]) -> Any:
    """Listen in background threads; ``DcmtoolError`` when the address cannot be bound."""
    try:
        return ae.start_server(address, block=False, ssl_context=tls,
                               evt_handlers=list(handlers))
    except OSError as exc:
        raise DcmtoolError(f"cannot listen on {address[0]}:{address[1]}: "
                           f"{exc.strerror or exc}",
                           hint="is another server using that port? choose another one",
                           setting="port") from None


def server_tls(cert: Path | None, key: Path | None, ca: Path | None) -> ssl.SSLContext | None:
    """The server's TLS context from PEM files; ``None`` without any (TLS off). A CA makes
    client certificates required."""
    if not (cert or key or ca):
        return None
    if not (cert and key):
        raise DcmtoolError("TLS needs both a certificate and its private key",
                           setting="tls_files")
    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        if ca:
            context.load_verify_locations(ca)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise DcmtoolError(f"TLS setup failed: {exc}") from None
    return context


_registered = threading.Lock()


def register_storage_classes() -> None:
    """Teach pynetdicom the storage classes it does not know (mostly retired ones).

    Without this it accepts the context but aborts when the C-STORE arrives.
    """
    from pynetdicom import sop_class
    from pynetdicom.service_class import StorageServiceClass

    with _registered:
        known = set(sop_class._STORAGE_CLASSES.values())
        for sop in storage_sop_classes():
            if sop.uid in known:
                continue
            keyword = "Dcmtool" + re.sub(r"[^A-Za-z0-9]", "", sop.name.title())
            with contextlib.suppress(ValueError):  # already registered under that keyword
                sop_class.register_uid(sop.uid, keyword, StorageServiceClass)


def drain(assoc: Any, timeout: float = 5.0) -> None:
    """Wait until the DUL has sent what is queued: pynetdicom's reactor reads the socket only
    when its send queue is empty, so a C-CANCEL would otherwise wait for every match."""
    pending = assoc.dul.to_provider_queue
    deadline = time.monotonic() + timeout
    while pending.qsize() and assoc.is_established and time.monotonic() < deadline:
        time.sleep(0.0005)


def shut_down(server: Any, grace: float, *, on_abort: Callable[[], None] | None = None) -> None:
    """Stop a listening server: no new associations; the ones open get up to ``grace`` s to
    finish (a connection that never associated is closed at once); then they are aborted."""
    server.shutdown()
    deadline = time.monotonic() + grace
    for assoc in list(server.active_associations):
        if not assoc.is_established:
            close_unassociated(assoc)
            continue
        assoc.join(max(0.0, deadline - time.monotonic()))
        if assoc.is_alive():
            if on_abort is not None:
                on_abort()
            assoc.abort()
            assoc.join(5)


def close_connection(assoc: Any) -> None:
    """Close the socket of an association that never got established."""
    with contextlib.suppress(Exception):
        assoc.dul.socket.close()


def close_unassociated(assoc: Any) -> None:
    """Connected but never associated (a port probe, a stalled peer): pynetdicom would wait
    for the ACSE timeout; nothing is in flight, so close it now. The socket is shut first: a
    DUL blocked in recv() mid-PDU never reaches Sta1, and abort() waits for that forever."""
    sock = getattr(assoc.dul.socket, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    assoc.abort()


def dimse_timeout_fired(assoc: Any) -> float | None:
    """The DIMSE timeout (s) after which dcmtool gave up waiting for the peer on ``assoc``
    and aborted it; ``None`` if that did not happen."""
    return link(assoc).dimse_timeout_fired


def received_file(request: Any) -> Path | Refusal | None:
    """The file pynetdicom streamed a C-STORE's data set into (chunked receive), or why it
    could not be written (the disk is full: 0xA700); ``None`` without chunked receive."""
    written = getattr(request, "_dataset_file", None)
    if isinstance(written, IncomingFile) and written.failure is not None:
        reason = written.failure.strerror or str(written.failure)
        return Refusal(OUT_OF_RESOURCES, f"cannot write: {reason}")
    path = getattr(request, "_dataset_path", None)
    return None if path is None else Path(path)


def request_identifier(request: Any, syntax: Any) -> Any:
    """The identifier of a C-MOVE/C-GET request, decoded in its context's syntax."""
    from pynetdicom.dsutils import decode

    return decode(request.Identifier, syntax.is_implicit_VR, syntax.is_little_endian,
                  syntax.is_deflated)
