"""Fix: an SCP can act once its response is on its way (storage commitment on one association).

pynetdicom sends a handler's response after the handler returns and offers no hook for "the
response has been sent". A Storage Commitment SCP answers the N-ACTION first and sends the
N-EVENT-REPORT afterwards, from another thread, on the same association when the requester
keeps it open (PS3.4 J.3.3): started from the handler, that thread could queue its request
before pynetdicom queued the N-ACTION-RSP (``EVT_DIMSE_SENT`` fires before the PDUs are
queued, so it cannot tell either). ``DIMSEServiceProvider.send_msg`` now runs, once a
response's PDUs are queued to the DUL, the callback registered for its Message ID Being
Responded To in ``Link.after_response`` (``net.events.after_response``); PDUs leave in queue
order, so whatever the callback releases goes out after the response.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from dcmtool.net.links import link
from dcmtool.net.patches._replace import replace

LOG = logging.getLogger("dcmtool.net")


def apply() -> None:
    from pynetdicom import dimse

    original: Any = None

    def send_msg(self: Any, primitive: Any, context_id: int) -> None:
        try:
            original(self, primitive, context_id)
        finally:
            responded_to = getattr(primitive, "MessageIDBeingRespondedTo", None)
            if responded_to is not None:
                waiting = link(self.assoc).after_response.pop(int(responded_to), None)
                if waiting is not None:
                    with contextlib.suppress(Exception):
                        waiting()

    original = replace(dimse.DIMSEServiceProvider, "send_msg", send_msg, fix="response hooks",
                       params=("self", "primitive", "context_id"))
