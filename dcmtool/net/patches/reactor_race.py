"""Fix 9: pynetdicom#875, the reactor thread taking a response a requestor waits for.

``send_c_*()`` pauses the reactor thread with a checkpoint, but the reactor's ``_is_paused``
flag can still be ``True`` from the previous pause, so the reactor may take the *response* off
the DIMSE queue ("Received unexpected C-STORE service message") and the requestor then times
out and aborts. The reactor is the only caller of the non-blocking ``get_msg()``; while a
requestor holds the checkpoint, any response it takes is handed back to the front of the
queue, where the requestor's blocking ``get_msg()`` finds it.
"""

from __future__ import annotations

import queue
from typing import Any

from dcmtool.net.patches._replace import replace

#: pynetdicom's own get_msg, kept so a test can show the race without the fix.
ORIGINAL_GET_MSG: Any = None


def apply() -> None:
    from pynetdicom import dimse

    global ORIGINAL_GET_MSG

    def get_msg(self: Any, block: bool = False) -> Any:
        if block:
            return ORIGINAL_GET_MSG(self, block)
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

    ORIGINAL_GET_MSG = replace(dimse.DIMSEServiceProvider, "get_msg", get_msg,
                               fix="pynetdicom#875", params=("self", "block"))
