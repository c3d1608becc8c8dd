"""Fix: a PDU that does not decode is one log line, not a traceback.

pynetdicom logs every PDU it cannot decode with ``LOGGER.exception``: a fuzz run here wrote
86 tracebacks for 300 malformed sessions, burying what happened. The decode failure is now
raised as ``MalformedPDU`` with a message that says what and from whom, and pynetdicom's log
record of it loses the traceback (a filter on its DUL logger). The state machine still gets
"invalid PDU" (Evt19) and answers it as PS3.8 says.
"""

from __future__ import annotations

import logging
from typing import Any

from dcmtool.net.patches._replace import replace


class MalformedPDU(ValueError):
    """A PDU from the peer that does not decode."""


class _NoTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MalformedPDU):
            record.exc_info = None
            record.exc_text = None
        return True


_PDU_NAMES = {0x01: "A-ASSOCIATE-RQ", 0x02: "A-ASSOCIATE-AC", 0x03: "A-ASSOCIATE-RJ",
              0x04: "P-DATA-TF", 0x05: "A-RELEASE-RQ", 0x06: "A-RELEASE-RP",
              0x07: "A-ABORT"}


def apply() -> None:
    from pynetdicom import dul

    original: Any = None

    def _decode_pdu(self: Any, bytestream: bytearray) -> Any:
        try:
            return original(self, bytestream)
        except Exception as exc:
            kind = _PDU_NAMES.get(bytestream[0] if bytestream else -1, "PDU")
            assoc = self.assoc
            peer = assoc.requestor if assoc.is_acceptor else assoc.acceptor
            raise MalformedPDU(f"{peer.address}:{peer.port} sent a malformed {kind} "
                               f"({len(bytestream)} bytes): {type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:200]}") from None

    original = replace(dul.DULServiceProvider, "_decode_pdu", _decode_pdu,
                       fix="decode errors", params=("self", "bytestream"))
    logging.getLogger(dul.LOGGER.name).addFilter(_NoTraceback())
