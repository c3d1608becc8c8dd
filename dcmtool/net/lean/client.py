"""One association over plain TCP, driven by the calling thread: associate, C-ECHO, release.

The requestor's side of PS3.8's state machine, as far as a verification needs it: connect
(TCP_NODELAY, the connect timeout), A-ASSOCIATE-RQ, the answer within the ACSE timeout, a
command and its response within the DIMSE timeout, A-RELEASE (answering a peer's release
request, also in a collision), A-ABORT on every error. Failures are the typed errors of
``outcomes``, worded as for pynetdicom's client; a PDU that does not parse, or that has no
place where it arrives, aborts the association and says so.

pynetdicom logs some of these events itself, at ERROR ("Association Rejected", "ACSE timeout
reached ..."); the CLI shows its log with ``-v``. This client logs the same lines when
pynetdicom's log is shown, so ``-v`` reads the same whichever client ran.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dcmtool.config import Peer
from dcmtool.dicom.commands import (
    C_ECHO_RSP,
    C_STORE_RSP,
    NO_DATA_SET,
    echo_request,
    parse_command,
    store_request,
    text,
    us,
)
from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
from dcmtool.dicom.sopclasses import VERIFICATION
from dcmtool.errors import AssociationAborted, DcmtoolError, DimseTimeout
from dcmtool.net import framing, outcomes
from dcmtool.net.contexts import MAX_CONTEXTS, ContextRequest
from dcmtool.net.lean import pdus
from dcmtool.net.lean.pdus import PduError
from dcmtool.net.outcomes import ContextResult, Negotiation

#: PDUs framed (and written) at a time for a data set.
_PDUS_PER_WRITE = 256
#: The longest command set read: real ones are a few hundred bytes.
_LONGEST_COMMAND = 1 << 16

LOG = logging.getLogger("dcmtool.net.lean")
LOG.addHandler(logging.NullHandler())  # a library's log: silent unless the application shows it

def usable(peer: Peer) -> bool:
    """Whether this client can talk to ``peer``: nobody reads pynetdicom's PDU and DIMSE
    dumps (``-d``), which only its own client writes. (Plain TCP or TLS.)"""
    return not logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)


def _library_log(*lines: str) -> None:
    """Log what pynetdicom logs at ERROR for the same event, when its log is shown."""
    if logging.getLogger("pynetdicom").isEnabledFor(logging.ERROR):
        for line in lines:
            LOG.error(line)


def _protocol_error(peer: Peer, what: str) -> AssociationAborted:
    return AssociationAborted(
        f"{peer.label} sent {what}: dcmtool aborted the association",
        hint="the peer does not follow the DICOM upper layer protocol (PS3.8); its log may "
        "say more")


def _deadline(seconds: float | None) -> float | None:
    return None if seconds is None else time.monotonic() + seconds


def _read_exactly(sock: socket.socket, count: int, deadline: float | None) -> bytes:
    """``count`` bytes; ``TimeoutError`` at the deadline, ``ConnectionError`` when closed."""
    data = bytearray()
    while len(data) < count:
        if deadline is None:
            sock.settimeout(None)
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            sock.settimeout(left)
        chunk = sock.recv(min(count - len(data), 1 << 20))
        if not chunk:
            raise ConnectionError("closed by the peer")
        data += chunk
    return bytes(data)


def read_pdu(sock: socket.socket, deadline: float | None, max_data: int) -> tuple[int, bytes]:
    """(type, body) of the next PDU; ``PduError`` for one that cannot be, before its body is
    read. Raises ``TimeoutError``, or ``OSError`` for a connection closed or broken."""
    head = _read_exactly(sock, 6, deadline)
    pdu_type, length = head[0], int.from_bytes(head[2:6], "big")
    pdus.check_header(pdu_type, length, max_data)
    return pdu_type, _read_exactly(sock, length, deadline)


class LeanAssociation:
    """An established association; one thread uses it."""

    def __init__(self, peer: Peer, sock: socket.socket | None,
                 negotiation: Negotiation) -> None:
        self.peer = peer
        self.negotiation = negotiation
        self._sock: socket.socket | None = sock
        self._accepted = {cx.abstract_syntax: cx.context_id for cx in negotiation.accepted}
        self._last_activity = time.monotonic()
        #: The protocol error we aborted for, for ``lost``.
        self._failure: AssociationAborted | None = None
        #: The DIMSE timeout (s) that ran out while we waited: after it we aborted.
        self.dimse_timeout_fired: float | None = None

    @property
    def is_established(self) -> bool:
        return self._sock is not None

    # -- requests ------------------------------------------------------------------------------

    def send_c_echo(self, message_id: int) -> int | None:
        """Send a C-ECHO-RQ and return the response's Status; ``None`` when none came (the
        association is closed by then: ``lost`` says why)."""
        context_id = self._accepted.get(VERIFICATION)
        if context_id is None:
            raise ValueError("the peer did not accept a Verification context")
        fields = self._request(context_id, echo_request(message_id))
        if fields is None:
            return None
        status = us(fields, 0x0900)
        if us(fields, 0x0100) != C_ECHO_RSP or us(fields, 0x0120) != message_id or \
                us(fields, 0x0800) != NO_DATA_SET or status is None:
            self._fail("a message that is not the response to our C-ECHO",
                       pdus.INVALID_PARAMETER)
            return None
        return status

    def accepted_syntaxes(self) -> dict[str, dict[str, int]]:
        """SOP class -> {transfer syntax: context ID} of the accepted contexts."""
        accepted: dict[str, dict[str, int]] = {}
        for cx in self.negotiation.accepted:
            accepted.setdefault(cx.abstract_syntax, {}).setdefault(cx.transfer_syntaxes[0],
                                                                   cx.context_id)
        return accepted

    def send_c_store(self, context_id: int, sop_class: str, sop_instance: str,
                     message_id: int, data_set: Iterable[tuple[bytes | memoryview, bool]]
                     ) -> bool:
        """Write a C-STORE-RQ with the data set's blocks (see ``_write``); ``False`` when it
        could not go (then no response will come: ``lost`` says why)."""
        return self._write(context_id, store_request(sop_class, sop_instance, message_id),
                           data_set)

    def c_store_response(self, context_id: int, message_id: int) -> tuple[int, str] | None:
        """(Status, Error Comment) of the C-STORE-RSP to ``message_id``; ``None`` when none
        came (the association is closed by then: ``lost`` says why)."""
        fields = self._response(context_id)
        if fields is None:
            return None
        status = us(fields, 0x0900)
        if us(fields, 0x0100) != C_STORE_RSP or us(fields, 0x0120) != message_id or \
                us(fields, 0x0800) != NO_DATA_SET or status is None:
            self._fail("a message that is not the response to our C-STORE",
                       pdus.INVALID_PARAMETER)
            return None
        return status, text(fields, 0x0902)

    def lost(self, during: str) -> AssociationAborted:
        """The error for a request that got no response (see ``send_c_echo``)."""
        if self._failure is not None:
            return self._failure
        if self.dimse_timeout_fired is not None:
            return DimseTimeout.waiting(self.peer.label, during, self.dimse_timeout_fired)
        return outcomes.aborted_during(self.peer, during)

    def _request(self, context_id: int, command_set: bytes) -> dict[int, bytes] | None:
        """Send a command-only message; the response's command elements, or ``None``."""
        if not self._write(context_id, command_set, ()):
            return None
        return self._response(context_id)

    def _write(self, context_id: int, command_set: bytes,
               data_set: Iterable[tuple[bytes | memoryview, bool]]) -> bool:
        """Write a message: the command, then the data set's blocks, (block, whether last)
        (none: no data set). ``False`` when it could not go (the association is closed)."""
        timeouts = self.peer.timeouts
        sock = self._sock
        if sock is None:
            return False
        if timeouts.network is not None and \
                time.monotonic() - self._last_activity > timeouts.network:
            self._network_timeout(timeouts.network)  # idle between requests (a long -i)
            return False
        chunk = framing.chunk_for(self.negotiation.peer_max_pdu)
        # Framed a run of PDUs at a time: a peer announcing tiny PDUs must not make us hold
        # a header and a slice for every one of a block's PDUs at once.
        run = chunk * _PDUS_PER_WRITE
        buffers: list[Any] = [self._framed(context_id, command_set)]
        try:
            sock.settimeout(timeouts.dimse)  # reads leave the socket with what was left
            for block, last in data_set:
                view = memoryview(block)
                for start in range(0, max(len(view), 1), run):
                    buffers += framing.framed(context_id, view[start:start + run], chunk,
                                              last=last and start + run >= len(view))
                    framing.send_buffers(sock, buffers)
                    buffers = []
            if buffers:
                framing.send_buffers(sock, buffers)
        except OSError:
            # Half a PDU may be out: an A-ABORT now would land inside it, and a peer that
            # stopped reading would hold the write. Closing says it.
            self._close()
            return False
        return True

    def _response(self, context_id: int) -> dict[int, bytes] | None:
        """The command elements of the response on ``context_id``, or ``None`` (see
        ``lost``): within the DIMSE timeout, or the network timeout when shorter."""
        timeouts = self.peer.timeouts
        dimse, network = timeouts.dimse, timeouts.network
        waits = [t for t in (dimse, network) if t is not None]
        deadline = _deadline(min(waits) if waits else None)
        try:
            return self._read_command(context_id, deadline)
        except TimeoutError:
            if network is not None and (dimse is None or network < dimse):
                self._network_timeout(network)
                return None
            _library_log("DIMSE timeout reached while waiting for message response")
            self.dimse_timeout_fired = dimse
            self.abort()
        except PduError as exc:
            self._fail(str(exc), pdus.INVALID_PARAMETER)
        except OSError:
            _library_log("Connection closed while waiting for DIMSE message")
            self._close()
        return None

    def _framed(self, context_id: int, command_set: bytes) -> bytes:
        """The command in P-DATA-TF PDUs no longer than the peer receives (PS3.8 D.1)."""
        limit = self.negotiation.peer_max_pdu or 0
        chunk = limit - 6 if limit > 6 else max(len(command_set), 1)
        return b"".join(framing.framed(context_id, command_set, chunk, last=True, command=True))

    def _read_command(self, context_id: int, deadline: float | None) -> dict[int, bytes] | None:
        """The next message's command elements; ``None`` when the peer released or aborted
        (answered and closed here). A data set, another context or a PDU that has no place
        here raise ``PduError``."""
        assert self._sock is not None
        fragments = bytearray()
        while True:
            pdu_type, body = read_pdu(self._sock, deadline, self.peer.max_pdu)
            self._last_activity = time.monotonic()
            if pdu_type == pdus.ABORT:
                self._close()
                return None
            if pdu_type == pdus.RELEASE_RQ:
                self._send(pdus.release_rp())
                self._close()
                return None
            if pdu_type != pdus.P_DATA_TF:
                raise PduError(f"{pdus.a_pdu(pdu_type)} while a response was due")
            pdvs = pdus.parse_p_data(body)
            for index, (pdv_context, control, data) in enumerate(pdvs):
                if pdv_context != context_id:
                    raise PduError(f"a PDV on presentation context {pdv_context} while the "
                                   f"response on context {context_id} was due")
                if not control & 0x01:
                    raise PduError("a data set where a command was due")
                fragments += data
                if len(fragments) > _LONGEST_COMMAND:
                    raise PduError(f"a command set of more than {_LONGEST_COMMAND} bytes")
                if control & 0x02:
                    if index != len(pdvs) - 1:
                        raise PduError("more PDVs after the last fragment of a command")
                    fields = parse_command(bytes(fragments))
                    if fields is None:
                        raise PduError("a command set whose element lengths do not add up")
                    return fields

    # -- ending --------------------------------------------------------------------------------

    def release(self) -> None:
        """A-RELEASE-RQ, and close once the peer answers (or aborts, or the ACSE timeout
        runs out: then we abort, as pynetdicom's client is made to)."""
        if not self._send(pdus.release_rq()):
            return
        deadline = _deadline(self.peer.timeouts.acse)
        while self._sock is not None:
            try:
                pdu_type, _ = read_pdu(self._sock, deadline, self.peer.max_pdu)
            except TimeoutError:
                self.abort()
                return
            except PduError:
                self.abort(pdus.ABORT_PROVIDER, pdus.INVALID_PARAMETER)
                return
            except OSError:
                break
            if pdu_type == pdus.RELEASE_RQ:
                # A release collision: as the requestor we answer first, then wait for the
                # peer's answer (PS3.8 9.2.3, states 9 and 11).
                self._send(pdus.release_rp())
            elif pdu_type in (pdus.RELEASE_RP, pdus.ABORT):
                break
            elif pdu_type != pdus.P_DATA_TF:  # a late response is dropped; anything else:
                self.abort(pdus.ABORT_PROVIDER, pdus.UNEXPECTED_PDU)
                return
        self._close()

    def abort(self, source: int = pdus.ABORT_USER, reason: int = 0) -> None:
        if self._send(pdus.abort(source, reason)):
            self._close()

    def _network_timeout(self, seconds: float) -> None:
        """Nothing from the peer for the network timeout: abort, as pynetdicom does."""
        _library_log("Network timeout reached")
        self._failure = AssociationAborted(
            f"nothing came from {self.peer.label} within the network timeout ({seconds:g} s): "
            "dcmtool aborted the association",
            hint="raise the network timeout (also for an interval longer than it)",
            setting="network_timeout")
        self.abort()

    def _fail(self, what: str, reason: int) -> None:
        self._failure = _protocol_error(self.peer, what)
        self.abort(pdus.ABORT_PROVIDER, reason)

    def _send(self, data: bytes) -> bool:
        """Write whole PDUs; ``False`` (and closed) when the connection is gone."""
        if self._sock is None:
            return False
        try:
            self._sock.settimeout(self.peer.timeouts.acse)
            self._sock.sendall(data)
        except OSError:
            self._close()
            return False
        return True

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()


def _connect(peer: Peer) -> socket.socket:
    tls = None
    if peer.tls.enabled:  # a bad certificate file is said before anything is opened
        from dcmtool.net.tls import tls_client_context

        tls = tls_client_context(peer)
    try:
        sock = socket.create_connection((peer.host, peer.port), timeout=peer.timeouts.connect)
    except OSError as exc:
        _library_log("Association request failed: unable to connect to remote",
                     f"TCP Initialisation Error: {exc}")
        raise outcomes.connection_failed(peer, exc) from None
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is None:
            return sock
        context, hostname = tls
        # The handshake, within the connect timeout still set on the socket.
        return context.wrap_socket(sock, server_hostname=hostname)
    except OSError as exc:  # ssl.SSLError is an OSError
        sock.close()
        _library_log("Association request failed: unable to connect to remote",
                     f"TLS Initialisation Error: {exc}")
        raise outcomes.connection_failed(peer, exc) from None
    except BaseException:
        sock.close()
        raise


def _negotiation(started: float, accepted: pdus.Accepted,
                 proposed: Sequence[tuple[int, str, Sequence[str]]]) -> Negotiation:
    contexts = []
    for context_id, abstract_syntax, syntaxes in proposed:
        # A context the answer leaves out counts as "no reason given", as pynetdicom has it.
        result, chosen = accepted.contexts.get(context_id, (2, None))
        chosen_syntaxes = (chosen,) if result == 0 and chosen else tuple(syntaxes)
        contexts.append(ContextResult(context_id, abstract_syntax, chosen_syntaxes, result))
    return Negotiation(
        associate_ms=(time.perf_counter() - started) * 1000,
        peer_implementation_class_uid=accepted.implementation_class_uid,
        peer_implementation_version_name=accepted.implementation_version_name,
        peer_max_pdu=accepted.max_pdu,
        contexts=tuple(contexts),
    )


def associate(peer: Peer, contexts: Sequence[ContextRequest], *,
              require_accepted: bool = True) -> LeanAssociation:
    """Associate with ``peer`` proposing ``contexts`` (IDs 1, 3, 5, ...). With
    ``require_accepted`` off, a peer that accepts none of them is aborted and the closed
    association returned, for its negotiation (store reports each file refused).

    Raises
    ------
    ConnectionFailed, AssociationTimeout, AssociationRejected, AssociationAborted,
    NoAcceptableContext
    """
    if not contexts or len(contexts) > MAX_CONTEXTS:
        raise ValueError(f"{len(contexts)} presentation contexts: 1 to {MAX_CONTEXTS} allowed")
    if any(cx.scu_role is not None or cx.scp_role is not None for cx in contexts):
        raise ValueError("role selection is pynetdicom's client's (net.association)")
    proposed = [(2 * i + 1, cx.abstract_syntax, cx.transfer_syntaxes)
                for i, cx in enumerate(contexts)]
    started = time.perf_counter()
    sock = _connect(peer)
    established = False
    try:
        pdu_type, body = _request_association(peer, sock, proposed)
        if pdu_type != pdus.ASSOCIATE_AC:
            raise _refusal(peer, sock, pdu_type, body)
        negotiation = _negotiation(started, pdus.parse_associate_ac(body), proposed)
        if not negotiation.accepted:
            _library_log("No accepted presentation contexts")
            _send_quietly(sock, pdus.abort(pdus.ABORT_PROVIDER))
            if not require_accepted:
                return LeanAssociation(peer, None, negotiation)  # closed by ``finally``
            raise outcomes.no_acceptable_context(peer, negotiation.contexts)
        established = True
        return LeanAssociation(peer, sock, negotiation)
    except PduError as exc:
        _send_quietly(sock, pdus.abort(pdus.ABORT_PROVIDER, pdus.INVALID_PARAMETER))
        raise _protocol_error(peer, str(exc)) from None
    finally:
        if not established:
            sock.close()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    """A last PDU (an abort) to a peer that may be gone already."""
    try:
        sock.sendall(data)
    except OSError:
        pass


def _request_association(peer: Peer, sock: socket.socket,
                         proposed: Sequence[tuple[int, str, Sequence[str]]]
                         ) -> tuple[int, bytes]:
    """Send the A-ASSOCIATE-RQ; the answer, whatever PDU it is."""
    request = pdus.associate_rq(
        calling_ae_title=peer.calling_ae_title, called_ae_title=peer.called_ae_title,
        contexts=proposed, max_pdu=peer.max_pdu,
        implementation_class_uid=IMPLEMENTATION_CLASS_UID,
        implementation_version_name=implementation_version_name())
    acse = peer.timeouts.acse
    try:
        sock.sendall(request)
        return read_pdu(sock, _deadline(acse), peer.max_pdu)
    except TimeoutError:
        _library_log("ACSE timeout reached while waiting for response to association request")
        _send_quietly(sock, pdus.abort())
        raise outcomes.association_timeout(peer, acse or 0) from None
    except OSError:
        _library_log("Association Aborted")
        raise outcomes.closed_before_answer(peer) from None


def _refusal(peer: Peer, sock: socket.socket, pdu_type: int, body: bytes) -> DcmtoolError:
    """The error for any answer to A-ASSOCIATE-RQ but an acceptance."""
    if pdu_type == pdus.ASSOCIATE_RJ:
        result, source, reason = pdus.parse_associate_rj(body)
        problem = outcomes.rejection_problem(result, source, reason)
        if problem is not None:
            return outcomes.malformed_rejection(peer, problem)
        _library_log(*outcomes.rejection_lines(result, source, reason))
        return outcomes.rejection(peer, result, source, reason)
    if pdu_type == pdus.ABORT:
        _library_log("Association Aborted")
        return outcomes.aborted_request(peer)
    _send_quietly(sock, pdus.abort(pdus.ABORT_PROVIDER, pdus.UNEXPECTED_PDU))
    if pdu_type in (pdus.RELEASE_RQ, pdus.RELEASE_RP):
        return outcomes.released_while_associating(peer)
    return _protocol_error(peer, f"{pdus.a_pdu(pdu_type)} in answer to the association "
                           "request")


@contextmanager
def open_association(peer: Peer, contexts: Sequence[ContextRequest], *,
                     require_accepted: bool = True) -> Iterator[LeanAssociation]:
    """Associate with ``peer``; release on exit, abort when the block raises. Raises what
    ``associate`` raises."""
    session = associate(peer, contexts, require_accepted=require_accepted)
    try:
        yield session
    except BaseException:
        session.abort()
        raise
    session.release()
