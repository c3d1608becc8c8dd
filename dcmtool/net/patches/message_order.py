"""Fix: the P-DATA-TF PDUs of one DIMSE message are queued together, never between another's.

pynetdicom's ``DIMSEServiceProvider.send_msg`` queues a message's PDUs one by one (its command
set, then its data set). Two threads sending on one association at once interleave them: a
requestor's next N-ACTION and its answer to an N-EVENT-REPORT the peer sent meanwhile (the
answer comes from the thread pynetdicom serves the report on), or an SCP's report and its
reactor's response to the next request. The peer then assembles a message from fragments of
two (a message's fragments may not mix with another's): ``dcmtool commit --per-study`` to
serve lost a report, or had a garbled request refused, about one run in twenty. Each
association's messages are now queued under a lock of its own, so a message's PDUs stay
together; the DUL sends them in queue order.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from dcmtool.net.patches._replace import replace

_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def _lock(provider: Any) -> threading.RLock:
    found = _LOCKS.get(provider)
    if found is None:
        with _guard:
            found = _LOCKS.get(provider)
            if found is None:
                # Reentrant: an EVT_DIMSE_SENT handler may send a message of its own.
                found = _LOCKS[provider] = threading.RLock()
    return found


def apply() -> None:
    from pynetdicom import dimse

    original: Any = None

    def send_msg(self: Any, primitive: Any, context_id: int) -> None:
        with _lock(self):
            original(self, primitive, context_id)

    original = replace(dimse.DIMSEServiceProvider, "send_msg", send_msg, fix="message order",
                       params=("self", "primitive", "context_id"))
