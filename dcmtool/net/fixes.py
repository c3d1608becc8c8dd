"""Fixes dcmtool carries for pynetdicom 3.0.x (the dependency is pinned to that minor).

1. TCP_NODELAY on every association socket. Without it, DIMSE messages split over several
   PDUs wait on Nagle's algorithm and delayed ACKs (~40 ms each on Linux loopback).
2. The reason a TCP connection failed. pynetdicom logs it and drops it; dcmtool keeps the
   ``OSError`` so it can say "connection refused" or "timed out" instead of "aborted".
3. Received data sets stream into the archive's own folder: with chunked receive on, pynetdicom
   writes each C-STORE data set to a temporary file in the system temp dir, behind File Meta
   Information that names pynetdicom. For an AE that sets ``dcmtool_incoming`` (a directory),
   the file goes there instead (same file system as the archive, so it can be renamed into
   place) and its meta names dcmtool and the sending AE title (PS3.10 7.1).
4. Accepting an association deep-copies every supported presentation context, re-validating
   each UID: with every storage class x every syntax (serve) that is ~30 ms per association.
   A context's mutable state is its transfer syntax list; copying just that is enough.
5. The event loops poll. The DUL thread sleeps 1 ms whenever it finds nothing to do, and so
   does the association reactor, so every DIMSE message waits up to a few ms in queues
   (~200 small C-STOREs/s at best). Both threads now block on what they are waiting for: the
   DUL thread in ``select()`` on its socket and a wake-up socketpair (written when a PDU is
   queued to send or it is told to stop); the reactor on an Event set when a DIMSE message or
   an ACSE primitive arrives, when a requestor pauses it, or when it is killed. The patch is a
   ``time`` stand-in for those two modules whose ``sleep()`` does that waiting on the two
   reactor threads and is the real ``time.sleep`` everywhere else, so pynetdicom's loops and
   their checks stay exactly as written. Timeouts still bound every wait.
6. With TLS, pynetdicom's server does the handshake on its accept thread with no timeout, so
   one silent client stops it from accepting anyone (and from shutting down). The handshake
   now happens on the connection's own thread, bounded by the ACSE timeout.
7. DIMSE command sets (a dozen group-0000 elements) are encoded with struct instead of
   pydicom's general writer, which costs ~0.1 ms per message; anything unusual falls back.
8. Socket reads: pynetdicom reads a PDU 4 KiB per ``recv()`` into a growing bytearray (128
   calls and copies for a 512 KB CT image); ``recv_into`` one buffer of the PDU's size.
9. pynetdicom#875: ``send_c_*()`` pauses the reactor thread with a checkpoint, but the reactor's
   ``_is_paused`` flag can still be ``True`` from the previous pause, so the reactor may take the
   *response* off the DIMSE queue ("Received unexpected C-STORE service message") and the
   requestor then times out and aborts. The reactor is the only caller of the non-blocking
   ``get_msg()``; while a requestor holds the checkpoint, any response it takes is handed back
   to the front of the queue, where the requestor's blocking ``get_msg()`` finds it.
10. C-MOVE and C-GET SCP: an AE that sets ``dcmtool_retrieve`` runs its own sub-operation
    loop (``dcmtool.net.suboperations``) instead of pynetdicom's.
11. Owned reading: while a thread reads an association's socket itself
    (``wire.OwnedReader``), the DUL thread neither polls nor reads it; a PDU that
    thread does not handle is pushed back and read by the DUL as if it had just arrived.
12. Storage SCP: an AE that sets ``dcmtool_receive`` answers a C-STORE through pynetdicom and
    reads the C-STOREs that follow itself (``dcmtool.receiving.receive_more``).
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

_applied = False
#: pynetdicom's own get_msg, kept so a test can show the race without the fix.
ORIGINAL_GET_MSG: Any = None
_lock = threading.Lock()

#: The OSError of a failed connect, by association.
CONNECT_ERRORS: weakref.WeakKeyDictionary[Any, OSError] = weakref.WeakKeyDictionary()


def apply() -> None:
    """Install the fixes once per process (idempotent, thread-safe)."""
    global _applied
    with _lock:
        if _applied:
            return
        _patch_socket()
        _patch_chunked_receive()
        _patch_context_copy()
        _patch_event_loops()
        _patch_tls_accept()
        _patch_command_encoding()
        _patch_reactor_race()
        _patch_server_poll()
        _patch_send_lock()
        _patch_retrieve_scp()
        _patch_owned_reading()
        _patch_storage_receive()
        _applied = True


def sync_pdu_logging() -> None:
    """Bind pynetdicom's PDU/DIMSE dump handlers only when someone reads them (``-d``).

    They format every PDU and DIMSE message even when the log level drops the text:
    a measurable share of the CPU per small C-STORE.
    """
    import logging

    from pynetdicom import _config

    verbose = logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)
    _config.LOG_HANDLER_LEVEL = "standard" if verbose else "none"


def _set_nodelay(sock: socket.socket | None) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):  # not a TCP socket
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


#: Receive buffer allocated before any byte of a PDU has arrived.
_RECV_CHUNK = 1 << 20


def _patch_socket() -> None:
    from pynetdicom import transport

    original_init = transport.AssociationSocket.__init__
    original_connect = transport.AssociationSocket.connect

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        _set_nodelay(self.socket)  # requestor: before connect; acceptor: the accepted socket

    def connect(self: Any, primitive: Any) -> None:
        # Record the OSError by intercepting the socket's connect: pynetdicom catches it.
        raw = self.socket
        if raw is not None and not self.tls_args:
            self.socket = _RecordingSocket.adopt(raw, self.assoc)
        elif raw is not None:
            context, _hostname = self.tls_args
            context.sslsocket_class = _recording_ssl_class(self.assoc)
        original_connect(self, primitive)

    def recv(self: Any, nr_bytes: int) -> bytearray:
        pushback = getattr(self, "dcmtool_pushback", b"")
        if pushback:  # bytes an owned reader took but left to pynetdicom (point 11)
            self.dcmtool_pushback = pushback[nr_bytes:]
            return bytearray(pushback[:nr_bytes])
        # The PDU length is the peer's claim: allocate as the bytes arrive, not up front.
        buffer = bytearray(min(nr_bytes, _RECV_CHUNK))
        received = 0
        while received < nr_bytes:
            if received == len(buffer):
                buffer.extend(bytes(min(nr_bytes - received, len(buffer))))
            with memoryview(buffer) as view, view[received:] as free:
                count = self.socket.recv_into(free)
            if not count:  # connection closed: return what arrived, as pynetdicom does
                del buffer[received:]
                return buffer
            received += count
        return buffer

    transport.AssociationSocket.recv = recv  # type: ignore[method-assign]
    transport.AssociationSocket.__init__ = __init__  # type: ignore[method-assign]
    transport.AssociationSocket.connect = connect  # type: ignore[method-assign]


class _RecordingSocket(socket.socket):
    """A socket that remembers why ``connect`` failed."""

    __slots__ = ("_dcmtool_assoc",)
    _dcmtool_assoc: Any

    @classmethod
    def adopt(cls, sock: socket.socket, assoc: Any) -> _RecordingSocket:
        new = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        new._dcmtool_assoc = weakref.ref(assoc)
        return new

    def connect(self, address: Any) -> None:
        try:
            super().connect(address)
        except OSError as exc:
            assoc = self._dcmtool_assoc()
            if assoc is not None:
                CONNECT_ERRORS[assoc] = exc
            raise


def _recording_ssl_class(assoc: Any) -> type:
    import ssl

    ref = weakref.ref(assoc)

    class RecordingSSLSocket(ssl.SSLSocket):
        def connect(self, address: Any) -> None:
            try:
                super().connect(address)
            except OSError as exc:
                owner = ref()
                if owner is not None:
                    CONNECT_ERRORS[owner] = exc
                raise

    return RecordingSSLSocket


_receiving = threading.local()


def _patch_chunked_receive() -> None:
    import tempfile

    from pynetdicom import dimse_messages, dsutils

    from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
    from dcmtool.dicom.part10 import FileMeta

    original_decode = dimse_messages.DIMSEMessage.decode_msg

    def decode_msg(self: Any, primitive: Any, assoc: Any = None) -> bool:
        _receiving.assoc = assoc
        try:
            return bool(original_decode(self, primitive, assoc))
        finally:
            _receiving.assoc = None

    def incoming_dir() -> Any:
        assoc = getattr(_receiving, "assoc", None)
        return getattr(getattr(assoc, "ae", None), "dcmtool_incoming", None)

    def named_temporary_file(*args: Any, **kwargs: Any) -> Any:
        directory = incoming_dir()
        if directory is not None:
            kwargs.update(dir=directory, prefix="rx-")
        return tempfile.NamedTemporaryFile(*args, **kwargs)

    def create_file_meta(**kwargs: Any) -> Any:
        assoc: Any = getattr(_receiving, "assoc", None)
        if incoming_dir() is None:
            return dsutils.create_file_meta(**kwargs)
        return FileMeta(
            sop_class_uid=str(kwargs["sop_class_uid"]),
            sop_instance_uid=str(kwargs["sop_instance_uid"]),
            transfer_syntax_uid=str(kwargs["transfer_syntax"]),
            implementation_class_uid=IMPLEMENTATION_CLASS_UID,
            implementation_version_name=implementation_version_name(),
            source_ae_title=str(assoc.requestor.ae_title).strip() or None,
            receiving_ae_title=str(assoc.acceptor.ae_title).strip() or None,
        )

    original_write_meta = dimse_messages.write_file_meta_info  # type: ignore[attr-defined]

    def write_file_meta_info(fh: Any, meta: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(meta, FileMeta):
            fh.write(meta.encode())
        else:
            original_write_meta(fh, meta, *args, **kwargs)

    dimse_messages.DIMSEMessage.decode_msg = decode_msg  # type: ignore[method-assign]
    dimse_messages.NamedTemporaryFile = named_temporary_file  # type: ignore[attr-defined]
    dimse_messages.create_file_meta = create_file_meta  # type: ignore[attr-defined]
    dimse_messages.write_file_meta_info = write_file_meta_info  # type: ignore[attr-defined, assignment]


def _patch_context_copy() -> None:
    import copy

    from pynetdicom import transport
    from pynetdicom.presentation import PresentationContext

    def copy_contexts(value: Any, memo: Any = None) -> Any:
        if isinstance(value, list) and all(isinstance(v, PresentationContext) for v in value):
            copies = []
            for context in value:
                clone = copy.copy(context)
                clone._transfer_syntax = list(context._transfer_syntax)
                copies.append(clone)
            return copies
        return copy.deepcopy(value, memo)

    transport.deepcopy = copy_contexts  # type: ignore[attr-defined, assignment]


#: Longest a blocked reactor waits before re-checking its timers (ARTIM, idle) by itself.
IDLE_WAIT = 0.05


class _TimeShim:
    """``time`` for pynetdicom's dul and association modules: see point 5 above."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        idle = getattr(threading.current_thread(), "_dcmtool_idle", None)
        if idle is None or seconds < 0.001:
            time.sleep(seconds)
        else:
            idle(seconds)


class _WakingEvent(threading.Event):
    """The reactor checkpoint: a requestor clearing it (to pause the reactor) wakes it."""

    def __init__(self, wake: threading.Event) -> None:
        super().__init__()
        self._wake = wake

    def clear(self) -> None:
        super().clear()
        self._wake.set()


def _wake_on_put(q: Any, wake: Callable[[], None]) -> None:
    put = q.put

    def put_and_wake(item: Any, block: bool = True, timeout: float | None = None) -> None:
        put(item, block, timeout)
        wake()

    q.put = put_and_wake


def _wait_readable(socks: list[Any], timeout: float) -> None:
    """select() raises for descriptors >= FD_SETSIZE (1024) on POSIX: use poll() there."""
    if not hasattr(select, "poll"):  # Windows: no such limit on descriptor values
        select.select(socks, [], [], timeout)
        return
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN)
    poller.poll(timeout * 1000)


def _patch_event_loops() -> None:
    from pynetdicom import association, dul

    shim = _TimeShim()
    association.time = shim  # type: ignore[attr-defined, assignment]
    dul.time = shim  # type: ignore[attr-defined, assignment]

    original_assoc_init = association.Association.__init__
    original_dul_init = dul.DULServiceProvider.__init__
    original_kill = association.Association.kill
    original_kill_dul = dul.DULServiceProvider.kill_dul
    original_dul_run = dul.DULServiceProvider.run

    def assoc_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_assoc_init(self, *args, **kwargs)
        wake = threading.Event()
        self._dcmtool_wake = wake
        checkpoint = _WakingEvent(wake)
        checkpoint.set()
        self._reactor_checkpoint = checkpoint
        _wake_on_put(self.dimse.msg_queue, wake.set)
        _wake_on_put(self.dul.to_user_queue, wake.set)

        def idle(seconds: float) -> None:
            # The reactor's loop-top sleep: block until something happens. A pass takes one
            # DIMSE message, so never wait while more are queued (one wake-up, several puts).
            if not self.dimse.msg_queue.empty():
                return
            wake.wait(max(seconds, IDLE_WAIT))
            wake.clear()

        self._dcmtool_idle = idle

    def kill(self: Any) -> None:
        wake = getattr(self, "_dcmtool_wake", None)
        if wake is not None:
            wake.set()
        original_kill(self)

    def dul_init(self: Any, assoc: Any) -> None:
        original_dul_init(self, assoc)
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._dcmtool_wake_pair = (reader, writer)

        def wake() -> None:
            try:
                writer.send(b"\0")
            except OSError:  # buffer full (a wake-up is pending anyway) or closed
                pass

        self._dcmtool_wake = wake
        _wake_on_put(self.to_provider_queue, wake)
        _wake_on_put(self.event_queue, wake)

        def idle(seconds: float) -> None:
            transport = self.socket
            sock = getattr(transport, "socket", None)
            waiting: list[Any] = [reader]
            if sock is not None and getattr(transport, "_is_connected", False) and \
                    not getattr(self, "dcmtool_owned", False):
                if getattr(transport, "dcmtool_pushback", b""):
                    return  # a PDU handed back by an owned reader
                pending = getattr(sock, "pending", None)
                if pending is not None and pending():
                    return  # TLS: decrypted bytes already buffered
                waiting.append(sock)
            try:
                _wait_readable(waiting, max(seconds, IDLE_WAIT))
            except (OSError, ValueError):
                return  # socket closed under us: the loop notices
            try:
                while reader.recv(4096):
                    pass
            except OSError:
                pass

        self._dcmtool_idle = idle

    def kill_dul(self: Any) -> None:
        original_kill_dul(self)
        wake = getattr(self, "_dcmtool_wake", None)
        if wake is not None:
            wake()

    def dul_run(self: Any) -> None:
        try:
            original_dul_run(self)
        finally:
            for end in getattr(self, "_dcmtool_wake_pair", ()):
                end.close()
            assoc_wake = getattr(self.assoc, "_dcmtool_wake", None)
            if assoc_wake is not None:
                assoc_wake.set()  # the reactor checks whether its DUL is alive

    association.Association.__init__ = assoc_init  # type: ignore[method-assign]
    association.Association.kill = kill  # type: ignore[method-assign]
    dul.DULServiceProvider.__init__ = dul_init  # type: ignore[method-assign]
    dul.DULServiceProvider.kill_dul = kill_dul  # type: ignore[method-assign]
    dul.DULServiceProvider.run = dul_run  # type: ignore[method-assign]


def _patch_tls_accept() -> None:
    import logging
    import ssl

    from pynetdicom import transport

    log = logging.getLogger("dcmtool.serve")
    original_handle = transport.RequestHandler.handle

    def get_request(self: Any) -> tuple[Any, Any]:
        client, address = self.socket.accept()
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True,
                                                  do_handshake_on_connect=False)
        return client, address

    def handle(self: Any) -> None:
        sock = self.request
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.settimeout(self.server.ae.acse_timeout)
                sock.do_handshake()
                sock.settimeout(None)
            except (OSError, ValueError) as exc:
                log.warning("TLS handshake with %s:%s failed: %s", *self.client_address[:2],
                            getattr(exc, "reason", None) or exc)
                with contextlib.suppress(OSError):
                    sock.close()
                return
        original_handle(self)

    # A handshake in progress (bounded by the ACSE timeout) must not hold up shutdown.
    transport.ThreadedAssociationServer.block_on_close = False
    transport.ThreadedAssociationServer.daemon_threads = True
    transport.AssociationServer.get_request = get_request  # type: ignore[method-assign]
    transport.RequestHandler.handle = handle  # type: ignore[method-assign]


def _patch_command_encoding() -> None:
    from pynetdicom import dimse_messages

    from dcmtool.dicom import commands

    original_encode = dimse_messages.encode  # type: ignore[attr-defined]

    def encode(ds: Any, is_implicit_vr: bool, is_little_endian: bool,
               deflated: bool = False) -> bytes | None:
        if is_implicit_vr and is_little_endian and not deflated:
            try:
                fast = commands.encode_command_set(ds)
            except (UnicodeEncodeError, struct.error):
                fast = None
            if fast is not None:
                return fast
        result: bytes | None = original_encode(ds, is_implicit_vr, is_little_endian, deflated)
        return result

    dimse_messages.encode = encode  # type: ignore[attr-defined]


def _patch_reactor_race() -> None:
    from pynetdicom import dimse

    global ORIGINAL_GET_MSG
    original_get_msg = ORIGINAL_GET_MSG = dimse.DIMSEServiceProvider.get_msg

    def get_msg(self: Any, block: bool = False) -> Any:
        if block:
            return original_get_msg(self, block)
        q = self.msg_queue
        try:
            item = q.get(block=False)
        except queue.Empty:
            return None, None
        checkpoint = getattr(self.assoc, "_reactor_checkpoint", None)
        if checkpoint is not None and not checkpoint.is_set():
            # Whoever paused the reactor reads the queue itself: its response, the
            # (None, None) that wakes it on an abort, or a C-GET sub-operation.
            with q.mutex:
                q.queue.appendleft(item)
                q.unfinished_tasks += 1
                q.not_empty.notify()
            return None, None
        return item

    dimse.DIMSEServiceProvider.get_msg = get_msg  # type: ignore[method-assign]


def _patch_server_poll() -> None:
    """Stop a server within 50 ms: socketserver checks for shutdown every 0.5 s by default,
    which every ``dcmtool move -o`` would pay when its storage SCP stops."""
    from pynetdicom.transport import AssociationServer

    original = AssociationServer.serve_forever

    def serve_forever(self: Any, poll_interval: float = 0.05) -> None:
        original(self, poll_interval)

    AssociationServer.serve_forever = serve_forever  # type: ignore[method-assign]


def _patch_send_lock() -> None:
    """Every PDU pynetdicom writes is written under the DUL's ``dcmtool_send_lock``.

    dcmtool's fast paths (``dcmtool.net.wire``) write whole messages to the socket from
    another thread under the same lock, so PDUs never interleave mid-write.
    """
    from pynetdicom.dul import DULServiceProvider

    original = DULServiceProvider._send

    def _send(self: Any, pdu: Any) -> None:
        with send_lock(self):
            original(self, pdu)

    DULServiceProvider._send = _send  # type: ignore[method-assign]


def send_lock(dul: Any) -> threading.Lock:
    """The DUL's write lock: pynetdicom's PDUs and dcmtool's whole messages are written under it."""
    return _dul_lock(dul, "dcmtool_send_lock")


def read_lock(dul: Any) -> threading.Lock:
    """Held by the DUL thread while it reads a PDU, and while ownership changes hands."""
    return _dul_lock(dul, "dcmtool_read_lock")


def _dul_lock(dul: Any, name: str) -> threading.Lock:
    """A lock kept on the DUL, created on first use (the attribute set is atomic under the GIL)."""
    lock: threading.Lock | None = getattr(dul, name, None)
    if lock is None:
        with _lock:
            lock = getattr(dul, name, None)
            if lock is None:
                lock = threading.Lock()
                setattr(dul, name, lock)
    return lock


def _patch_retrieve_scp() -> None:
    """C-MOVE/C-GET requests go to ``ae.dcmtool_retrieve(service, request, context, kind)``
    when the AE has one (dcmtool serve), else to pynetdicom's own loop."""
    from pynetdicom.service_class import QueryRetrieveServiceClass

    for name, kind in (("_move_scp", "move"), ("_get_scp", "get")):
        original = getattr(QueryRetrieveServiceClass, name)

        def scp(self: Any, request: Any, context: Any, original: Any = original,
                kind: str = kind) -> None:
            run = getattr(self.ae, "dcmtool_retrieve", None)
            if run is None:
                original(self, request, context)
            else:
                run(self, request, context, kind)

        setattr(QueryRetrieveServiceClass, name, scp)


def _patch_owned_reading() -> None:
    """Point 11: the DUL leaves a socket alone while another thread owns its reading."""
    from pynetdicom import dul, transport

    original_event = dul.DULServiceProvider._is_transport_event
    original_ready: Any = transport.AssociationSocket.ready  # a property

    def _is_transport_event(self: Any) -> bool:
        with read_lock(self):
            if getattr(self, "dcmtool_owned", False):
                return False
            return bool(original_event(self))

    def ready(self: Any) -> bool:
        return bool(getattr(self, "dcmtool_pushback", b"")) or bool(original_ready.fget(self))

    dul.DULServiceProvider._is_transport_event = _is_transport_event  # type: ignore[method-assign]
    transport.AssociationSocket.ready = property(ready)  # type: ignore[assignment, method-assign]


def _patch_storage_receive() -> None:
    """Point 12."""
    from pynetdicom.service_class import StorageServiceClass

    original = StorageServiceClass.SCP

    def SCP(self: Any, req: Any, context: Any) -> None:
        receive = getattr(self.ae, "dcmtool_receive", None)
        if receive is None:
            original(self, req, context)
        else:
            receive(self.assoc, lambda: original(self, req, context))

    StorageServiceClass.SCP = SCP  # type: ignore[method-assign]
