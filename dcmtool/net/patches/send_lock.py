"""Fix: every PDU pynetdicom writes is written under the association's send lock.

dcmtool's own socket code (``net.wire``) writes whole messages from another thread under the
same lock (``links.Link.send_lock``), so PDUs never interleave mid-write. Over TLS a thread
that owns an association's reading also reads under it: no pynetdicom write meanwhile.
"""

from __future__ import annotations

from typing import Any

from dcmtool.net.links import link
from dcmtool.net.patches._replace import replace


def apply() -> None:
    from pynetdicom.dul import DULServiceProvider

    original: Any = None

    def _send(self: Any, pdu: Any) -> None:
        with link(self.assoc).send_lock:
            original(self, pdu)

    original = replace(DULServiceProvider, "_send", _send, fix="send lock",
                       params=("self", "pdu"))
