"""Fix: an N-EVENT-REPORT served on its own thread leaves the reactor's pause flag alone.

pynetdicom serves an N-EVENT-REPORT request that arrives on a requestor's association on a
thread of its own (``DIMSEServiceProvider.receive_primitive``), through the reactor's
``Association._serve_request``, which sets ``_is_paused`` while the service runs and clears it
after. A requestor's ``send_*()`` and ``release()`` pause the reactor and spin until
``_is_paused`` is set; when that thread clears the flag after the reactor has set it and gone
to wait on its checkpoint, nothing sets it again and the requestor spins for ever.
``dcmtool commit --per-study`` hung so at its second N-ACTION while the peer reported the first
transaction on the association (and any single report could hang the release that follows it).
The thread also emptied the reactor's list of C-CANCEL requests.

On any thread but the association's own, an N-EVENT-REPORT is now served the way
``_serve_request`` does it, minus those two writes; the reactor's requests are unchanged.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from dcmtool.net.patches._replace import replace

LOG = logging.getLogger("dcmtool.net")


def apply() -> None:
    from pynetdicom.association import Association
    from pynetdicom.dimse_primitives import N_EVENT_REPORT
    from pynetdicom.sop_class import uid_to_service_class

    original: Any = None

    def _serve_request(self: Any, msg: Any, context_id: int) -> None:
        if threading.current_thread() is self or not isinstance(msg, N_EVENT_REPORT):
            original(self, msg, context_id)
            return
        # PS3.8 7.2.2: after an A-RELEASE-RQ the requestor sends nothing but an abort.
        if getattr(self, "_sent_release", False):
            LOG.info("an N-EVENT-REPORT arrived while releasing the association: ignored")
            return
        if not msg.is_valid_request:
            return
        context = getattr(self, "_accepted_cx", {}).get(context_id)
        if context is None:
            LOG.info("an N-EVENT-REPORT on a presentation context not accepted (%s): "
                     "aborting", context_id)
            self.abort()
            return
        class_uid = str(msg.AffectedSOPClassUID or "")
        try:  # SOP Class Common Extended Negotiation, as pynetdicom does
            class_uid = self.acceptor.accepted_common_extended[class_uid][0]
        except (KeyError, AttributeError, TypeError):
            pass
        try:
            uid_to_service_class(class_uid)(self).SCP(msg, context)
        except Exception as exc:
            LOG.warning("serving an N-EVENT-REPORT failed (%s: %s): aborting",
                        type(exc).__name__, exc)
            self.abort()

    original = replace(Association, "_serve_request", _serve_request, fix="report thread",
                       params=("self", "msg", "context_id"))
