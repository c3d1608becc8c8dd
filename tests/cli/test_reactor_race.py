"""pynetdicom#875: the reactor thread must never take a response a requestor is waiting for.

The race: the requestor pauses the reactor but sees a stale ``_is_paused`` flag, sends its
request, and the reactor, still running, takes the response off the DIMSE queue before the
requestor does. In real life the window is microseconds wide (about half of 2,000-instance runs
against a fast peer hit it). Here both threads are slowed down at exactly those points, so every
request falls into the window and the outcome is deterministic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pynetdicom import AE, association, dimse
from pynetdicom.sop_class import Verification

from dcmtool.config import Peer, Timeouts
from dcmtool.net import patches
from dcmtool.net.patches import reactor_race
from dcmtool.scu.echo import echo

patches.apply()


class SlowWakeEvent(threading.Event):
    """Delays the reactor thread right after it wakes, while ``_is_paused`` is still True."""

    def __init__(self, owner: Any) -> None:
        super().__init__()
        self.owner = owner

    def wait(self, timeout: float | None = None) -> bool:
        woke = super().wait(timeout)
        if threading.current_thread() is self.owner:
            time.sleep(0.03)  # the injected delay that widens the race window
        return woke


def widen_race_window(monkeypatch: pytest.MonkeyPatch) -> None:
    original_init = association.Association.__init__
    current_get_msg = dimse.DIMSEServiceProvider.get_msg

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if self.is_requestor:
            self._reactor_checkpoint = SlowWakeEvent(self)
            self._reactor_checkpoint.set()

    monkeypatch.setattr(association.Association, "__init__", init)
    _slow_requestor_get(monkeypatch, current_get_msg)


def _slow_requestor_get(monkeypatch: pytest.MonkeyPatch, get_msg: Any) -> None:
    """The requestor reaches the queue late, after the response has arrived."""

    def slow_get_msg(self: Any, block: bool = False) -> Any:
        if block and threading.current_thread() is not self.assoc:
            time.sleep(0.06)
        return get_msg(self, block)

    monkeypatch.setattr(dimse.DIMSEServiceProvider, "get_msg", slow_get_msg)


@pytest.fixture
def verification_peer() -> Iterator[Peer]:
    ae = AE("RACE-SCP")
    ae.add_supported_context(Verification)
    server = ae.start_server(("127.0.0.1", 0), block=False)
    try:
        port = server.socket.getsockname()[1]
        yield Peer(label="race", host="127.0.0.1", port=port, called_ae_title="RACE-SCP",
                   calling_ae_title="DCMTOOL", timeouts=Timeouts(dimse=2.0))
    finally:
        server.shutdown()


def test_without_the_fix_the_reactor_steals_the_response(
    verification_peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Proves the test reproduces upstream's bug: with pynetdicom's own get_msg, a C-ECHO
    # response is taken by the reactor and the requestor gives up.
    monkeypatch.setattr(dimse.DIMSEServiceProvider, "get_msg",
                        reactor_race.ORIGINAL_GET_MSG)
    widen_race_window(monkeypatch)
    result = echo(verification_peer, count=5, interval=0, lean=False)  # pynetdicom's reactor
    assert result.ok < 5
    assert result.error is not None


def test_with_the_fix_every_response_reaches_the_requestor(
    verification_peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    widen_race_window(monkeypatch)
    result = echo(verification_peer, count=20, interval=0, lean=False)
    assert result.error is None
    assert (result.sent, result.ok) == (20, 20)


def test_a_rejection_that_arrives_before_the_requestor_looks_is_still_a_rejection(
    pynetdicom_scp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pynetdicom's requestor checks that it is connected after sending A-ASSOCIATE-RQ; when
    the A-ASSOCIATE-RJ has arrived and the DUL has closed the connection by then, it aborts
    (seen with Orthanc on a busy machine). The requesting thread is slowed down right after
    sending, so the answer always wins: the user still hears "rejected", exit code 4."""
    from pynetdicom import acse

    from dcmtool.errors import AssociationRejected
    from dcmtool.net.association import open_association
    from dcmtool.net.contexts import ContextRequest

    scp = pynetdicom_scp(reject=(1, 1, 7))
    send_request = acse.ACSE.send_request

    def slow_send_request(self: Any) -> None:
        send_request(self)
        time.sleep(0.2)  # the injected delay: the DUL reads the answer meanwhile

    monkeypatch.setattr(acse.ACSE, "send_request", slow_send_request)
    peer = Peer(label="REJECTING", host=scp.host, port=scp.port, called_ae_title="WRONG",
                calling_ae_title="DCMTOOL")
    with pytest.raises(AssociationRejected) as rejected, \
            open_association(peer, [ContextRequest(Verification, ("1.2.840.10008.1.2",))]):
        pass
    assert (rejected.value.result, rejected.value.source, rejected.value.reason) == (1, 1, 7)
    assert int(rejected.value.exit_code) == 4
