"""Fix 5: the event loops block on what they wait for instead of polling.

The DUL thread sleeps 1 ms whenever it finds nothing to do, and so does the association
reactor, so every DIMSE message waits up to a few ms in queues (~200 small C-STOREs/s at
best). Both threads now block: the DUL thread in ``poll()`` on its socket and a wake-up
socketpair (written when a PDU is queued to send or it is told to stop); the reactor on an
Event set when a DIMSE message or an ACSE primitive arrives, when a requestor pauses it, or
when it is killed. The patch is a ``time`` stand-in for those two modules whose ``sleep()``
does that waiting on the two reactor threads and is the real ``time.sleep`` everywhere else,
so pynetdicom's loops and their checks stay exactly as written. Timeouts still bound every
wait.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from dcmtool.net.links import link
from dcmtool.net.patches._replace import replace

#: Longest a blocked reactor waits before re-checking its timers (ARTIM, idle) by itself.
IDLE_WAIT = 0.05

#: How each reactor thread (an Association or a DUL, both Threads) waits when idle, called
#: with the thread itself: the function must not hold it, or the weak key would never go.
_IDLE: weakref.WeakKeyDictionary[threading.Thread, Callable[[Any, float], None]] = \
    weakref.WeakKeyDictionary()
#: Each DUL's wake-up socketpair, closed when its thread ends.
_WAKE_PAIRS: weakref.WeakKeyDictionary[Any, tuple[socket.socket, socket.socket]] = \
    weakref.WeakKeyDictionary()


class _TimeShim:
    """``time`` for pynetdicom's dul and association modules."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        thread = threading.current_thread()
        idle = _IDLE.get(thread) if seconds >= 0.001 else None
        if idle is None:
            time.sleep(seconds)
        else:
            idle(thread, seconds)


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


def apply() -> None:
    from pynetdicom import association, dul

    fix = "blocking event loops"
    shim = _TimeShim()
    replace(association, "time", shim, fix=fix)
    replace(dul, "time", shim, fix=fix)
    originals: dict[str, Any] = {}

    def assoc_init(self: Any, *args: Any, **kwargs: Any) -> None:
        originals["assoc_init"](self, *args, **kwargs)
        wake = threading.Event()
        link(self).wake_reactor = wake
        checkpoint = _WakingEvent(wake)
        checkpoint.set()
        self._reactor_checkpoint = checkpoint
        _wake_on_put(self.dimse.msg_queue, wake.set)
        _wake_on_put(self.dul.to_user_queue, wake.set)

        def idle(assoc: Any, seconds: float) -> None:
            # The reactor's loop-top sleep: block until something happens. A pass takes one
            # DIMSE message, so never wait while more are queued (one wake-up, several puts).
            if not assoc.dimse.msg_queue.empty():
                return
            wake.wait(max(seconds, IDLE_WAIT))
            wake.clear()

        _IDLE[self] = idle

    def kill(self: Any) -> None:
        wake = link(self).wake_reactor
        if wake is not None:
            wake.set()
        originals["kill"](self)

    def dul_init(self: Any, assoc: Any) -> None:
        originals["dul_init"](self, assoc)
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        _WAKE_PAIRS[self] = (reader, writer)
        state = link(assoc)

        def wake() -> None:
            try:
                writer.send(b"\0")
            except OSError:  # buffer full (a wake-up is pending anyway) or closed
                pass

        state.wake_dul = wake
        _wake_on_put(self.to_provider_queue, wake)
        _wake_on_put(self.event_queue, wake)

        def idle(dul: Any, seconds: float) -> None:
            transport = dul.socket
            sock = getattr(transport, "socket", None)
            waiting: list[Any] = [reader]
            if sock is not None and getattr(transport, "_is_connected", False) and \
                    not state.owned:
                if state.pushback:
                    return  # a PDU handed back by an owned reader
                pending = getattr(sock, "pending", None)
                if pending is not None:
                    # TLS: decrypted bytes already buffered. Asked under the read lock, so
                    # never while another thread reads or writes the SSL object.
                    with state.read_lock:
                        buffered = not state.owned and pending()
                    if buffered:
                        return
                waiting.append(sock)
            try:
                _wait_readable(waiting, max(seconds, IDLE_WAIT))
            except (OSError, ValueError):
                return  # socket closed under us: the loop notices
            with contextlib.suppress(OSError):
                while reader.recv(4096):
                    pass

        _IDLE[self] = idle

    def kill_dul(self: Any) -> None:
        originals["kill_dul"](self)
        wake = link(self.assoc).wake_dul
        if wake is not None:
            wake()

    def dul_run(self: Any) -> None:
        try:
            originals["dul_run"](self)
        finally:
            for end in _WAKE_PAIRS.pop(self, ()):
                end.close()
            assoc_wake = link(self.assoc).wake_reactor
            if assoc_wake is not None:
                assoc_wake.set()  # the reactor checks whether its DUL is alive

    Association, DUL = association.Association, dul.DULServiceProvider
    originals["assoc_init"] = replace(Association, "__init__", assoc_init, fix=fix,
                                      params=("self", "ae", "mode"))
    originals["kill"] = replace(Association, "kill", kill, fix=fix, params=("self",))
    originals["dul_init"] = replace(DUL, "__init__", dul_init, fix=fix,
                                    params=("self", "assoc"))
    originals["kill_dul"] = replace(DUL, "kill_dul", kill_dul, fix=fix, params=("self",))
    originals["dul_run"] = replace(DUL, "run", dul_run, fix=fix, params=("self",))
