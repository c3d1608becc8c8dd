"""The pynetdicom fixes that change what a peer or a user can observe, one test each where the
suite has none elsewhere (the others: reactor race in test_reactor_race.py, owned reading and
storage receive in test_find_retrieve.py, the retrieve SCP in test_serve_retrieve.py, command
encoding in test_archive.py, connect errors, TLS accept and TLS close in the interop tests)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from pynetdicom.sop_class import Verification
from support.archive import ServedArchive

from dcmtool.config import Peer
from dcmtool.net.association import open_association
from dcmtool.net.contexts import ContextRequest


def _nodelay(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def test_both_ends_of_an_association_set_tcp_nodelay(
        serve_archive: Callable[..., ServedArchive]) -> None:
    """Fix 1: without TCP_NODELAY a message split over PDUs waits ~40 ms on Nagle's
    algorithm and delayed ACKs. Our requestor's socket and serve's accepted one both set it."""
    served = serve_archive()
    peer = Peer(label="serve", host=served.host, port=served.port,
                called_ae_title=served.ae_title, calling_ae_title="NODELAY")
    with open_association(peer, [ContextRequest(Verification, ("1.2.840.10008.1.2",))]) as s:
        ours = s.assoc.dul.socket.socket
        accepted: Any = next(iter(served.server._server.active_associations))
        theirs = accepted.dul.socket.socket
        assert _nodelay(ours)
        assert _nodelay(theirs)


def test_finished_associations_are_freed(serve_archive: Callable[..., ServedArchive]) -> None:
    """What the fixes keep beside pynetdicom's objects (net.links, the idle waits) is weak:
    once associations are over, nothing of theirs stays in memory (a value holding its own
    weak key leaked ~110 KB per association under fuzzing)."""
    import gc

    from pynetdicom.association import Association

    served = serve_archive()
    peer = Peer(label="serve", host=served.host, port=served.port,
                called_ae_title=served.ae_title, calling_ae_title="LEAK")
    for _ in range(30):
        with open_association(peer, [ContextRequest(Verification, ("1.2.840.10008.1.2",))]) \
                as session:
            assert session.assoc.send_c_echo().Status == 0x0000
    deadline = time.monotonic() + 5  # serve's side of the last release may still be ending
    while served.server._server.active_associations and time.monotonic() < deadline:
        time.sleep(0.05)
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, Association)]
    assert len(alive) < 5


def test_the_server_loop_never_forces_a_full_collection(
        serve_archive: Callable[..., ServedArchive], monkeypatch: Any) -> None:
    """Fix "server gc": pynetdicom's server loop ran gc.collect() every 60 polls, stopping
    every association thread for the whole collection (a fifth of the GIL's time while four
    senders stored). Python's collector frees finished associations by itself (above)."""
    import gc

    served = serve_archive()
    forced: list[int] = []
    monkeypatch.setattr(gc, "collect", lambda *args: forced.append(1) or 0)
    for _ in range(200):  # more than three times pynetdicom's period
        served.server._server.service_actions()
    assert forced == []
