"""Fix: a DIMSE timeout is told apart from an abort by the peer.

pynetdicom's blocking ``get_msg()`` returns ``(None, None)`` both when the peer aborted or
closed the connection (the state machine puts that pair on the queue to wake the waiter) and
when nothing came within the DIMSE timeout, after which pynetdicom (and dcmtool) abort the
association themselves. Error messages said "the peer aborted the association" in both cases.
Here the timeout is recorded on the association's ``Link`` (``dimse_timeout_fired``), so the
message can say that dcmtool gave up waiting, after how long, and which setting changes it.

It wraps the ``get_msg`` of fix 9 (``reactor_race``, applied before it), whose blocking
branch is pynetdicom's own: a queue read bounded by the DIMSE timeout.
"""

from __future__ import annotations

import queue
from typing import Any

from dcmtool.net.links import link
from dcmtool.net.patches._replace import replace


def apply() -> None:
    from pynetdicom import dimse

    previous: Any = None

    def get_msg(self: Any, block: bool = False) -> Any:
        if not block:
            return previous(self, block)
        timeout = self.dimse_timeout
        try:
            return self.msg_queue.get(block=True, timeout=timeout)
        except queue.Empty:
            if timeout is not None:
                link(self.assoc).dimse_timeout_fired = float(timeout)
            return None, None

    previous = replace(dimse.DIMSEServiceProvider, "get_msg", get_msg, fix="DIMSE timeouts",
                       params=("self", "block"))
