"""serve against what a broken or hostile network sends: half PDUs, connections that close
or send garbage before associating, command sets that do not decode. Nothing may hold a slot
past its timeout, kill a thread or stop the next client being served."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification
from support.archive import ServedArchive
from support.load import echo_ok

ServeFactory = Callable[..., ServedArchive]


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes (the bound, not a sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _open_slots(served: ServedArchive) -> int:
    return len(served.server._server.active_associations)


def _echo_works(served: ServedArchive) -> bool:
    return echo_ok(served.host, served.port, served.ae_title, calling="PROBE")


def _connect(served: ServedArchive) -> socket.socket:
    sock = socket.create_connection((served.host, served.port), timeout=20)
    return sock


def test_half_an_association_request_is_closed_after_the_acse_timeout(
        serve_archive: ServeFactory) -> None:
    """A PDU header announcing 200 bytes, then 10 of them, then silence: serve closes the
    connection when the ACSE timeout (1 s here) has passed, and frees its slot."""
    served = serve_archive(acse_timeout=1.0)
    sock = _connect(served)
    sock.sendall(struct.pack(">BBI", 0x01, 0, 200) + b"\x00\x01" + b"\x00" * 8)
    started = time.monotonic()
    assert sock.recv(1) == b""  # closed by serve (the socket's own timeout is 20 s)
    assert time.monotonic() - started < 10
    sock.close()
    assert _wait_for(lambda: _open_slots(served) == 0)
    assert _echo_works(served)


def test_a_pdu_longer_than_any_we_accept_is_refused_at_once(
        serve_archive: ServeFactory) -> None:
    """A first PDU claiming 2 GiB: nothing is allocated or waited for; the connection goes."""
    served = serve_archive(acse_timeout=30.0)
    sock = _connect(served)
    sock.sendall(struct.pack(">BBI", 0x01, 0, 0x7FFFFFFF) + b"\x00" * 64)
    assert sock.recv(1) == b""
    sock.close()
    assert _wait_for(lambda: _open_slots(served) == 0, timeout=5)


@pytest.mark.parametrize("first", [b"", b"GET / HTTP/1.1\r\n\r\n",
                                   struct.pack(">BBI", 0x07, 0, 4) + b"\x00\x00\x00\x00"])
def test_a_connection_that_never_associates_frees_its_slot_at_once(
        serve_archive: ServeFactory, first: bytes) -> None:
    """Ten port probes (closed at once, an HTTP request, an A-ABORT) against a server with
    two slots and a 60 s ACSE timeout: every slot is free again within seconds, and the
    next client is served (before: each probe held its slot for the whole ACSE timeout)."""
    served = serve_archive(acse_timeout=60.0, max_associations=2)
    for _ in range(10):
        sock = _connect(served)
        if first:
            sock.sendall(first)
        sock.close()
    # The probes reach serve's accept loop in their own time (the kernel's backlog holds
    # them meanwhile): poll until a client is served, bounded well below the ACSE timeout.
    assert _wait_for(lambda: _echo_works(served), timeout=20)
    assert _wait_for(lambda: _open_slots(served) == 0, timeout=20)


def test_a_command_set_that_does_not_decode_is_aborted_and_serve_goes_on(
        serve_archive: ServeFactory, caplog: pytest.LogCaptureFixture) -> None:
    """A P-DATA whose command set has no Command Field: the peer gets an A-ABORT (service
    provider, invalid PDU parameter), the log one line without a traceback, and serve
    keeps serving (before: pynetdicom's thread died with a traceback, the peer was told
    nothing)."""
    served = serve_archive()
    ae = AE("FUZZER")
    ae.add_requested_context(Verification)
    aborts: list[Any] = []
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title)
    assert assoc.is_established
    context_id = assoc.accepted_contexts[0].context_id
    uid = b"1.2.840.10008.1.1\x00"
    body = struct.pack("<HHI", 0, 0x0002, len(uid)) + uid
    command = struct.pack("<HHII", 0, 0, 4, len(body)) + body  # group length, class UID
    pdv = struct.pack(">IBB", len(command) + 2, context_id, 0x03) + command
    sock = assoc.dul.socket.socket
    with caplog.at_level("WARNING"):
        sock.sendall(struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv)
        assert _wait_for(lambda: assoc.is_aborted or not assoc.is_alive(), timeout=10)
        assert _wait_for(lambda: _open_slots(served) == 0, timeout=5)
    aborts = [r for r in caplog.records if "aborting the association" in r.getMessage()]
    assert aborts and not any(r.exc_info for r in caplog.records)
    assert _echo_works(served)


def test_an_identifier_past_the_limit_is_refused_and_serve_goes_on(
        serve_archive: ServeFactory, caplog: pytest.LogCaptureFixture) -> None:
    """A C-FIND identifier of 300 KiB against a 256 KiB limit (``--max-identifier``): the
    association is aborted once the identifier passes the limit, nothing more is held, and
    the next client is served."""
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

    served = serve_archive(max_message_bytes=256 << 10)
    ae = AE("BIGQUERY")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title)
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.StudyDescription = "x" * (300 << 10)
    with caplog.at_level("WARNING"):
        responses = list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
        assert _wait_for(lambda: assoc.is_aborted or not assoc.is_alive(), timeout=10)
    assert all(status.get("Status") in (None,) for status, _ in responses)
    assert any(f"past {256 << 10} bytes in memory" in r.getMessage() for r in caplog.records)
    assert _echo_works(served)


def test_slowloris_connections_cannot_lock_clients_out(serve_archive: ServeFactory) -> None:
    """Five connections trickling an A-ASSOCIATE-RQ one byte every 0.2 s, against two slots
    and a 2 s ACSE timeout: each is closed when its PDU has not arrived whole in time, and
    a real client is served meanwhile (before: they held every slot for as long as they
    trickled)."""
    import threading

    served = serve_archive(acse_timeout=2.0, max_associations=2)
    stop = threading.Event()
    closed: list[bool] = []

    def trickle() -> None:
        sock = _connect(served)
        data = struct.pack(">BBI", 0x01, 0, 200) + b"\x00" * 200
        try:
            for byte in data:
                if stop.wait(0.2):
                    return
                sock.sendall(bytes([byte]))
        except OSError:
            closed.append(True)  # serve closed it
        finally:
            sock.close()

    threads = [threading.Thread(target=trickle) for _ in range(5)]
    for thread in threads:
        thread.start()
    try:
        assert _wait_for(lambda: _echo_works(served), timeout=20)
        assert _wait_for(lambda: len(closed) == 5, timeout=20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
