"""Fix: a DIMSE message held in memory has a size limit.

pynetdicom gathers a command set, and any data set that is not a C-STORE's (a C-FIND
identifier, an N-service data set), in memory for as many P-DATA-TF PDUs as the peer sends:
an identifier streamed to 256 MiB added 262 MB to serve. PS3.7 sets no limit, so it is a
setting (``AeHooks.max_message_bytes``, default ``DEFAULT_MAX_MESSAGE_BYTES``); past it the
message is refused like any malformed one (A-ABORT, one log line). C-STORE data sets stream
to a file and are bounded by the disk (fix 3).
"""

from __future__ import annotations

from typing import Any

from dcmtool.net.links import ae_hooks
from dcmtool.net.patches._replace import replace

DEFAULT_MAX_MESSAGE_BYTES = 16 << 20


class MessageTooLarge(ValueError):
    """A command set or in-memory data set past the limit."""


def apply() -> None:
    from pynetdicom import dimse_messages

    original: Any = None

    def decode_msg(self: Any, primitive: Any, assoc: Any = None) -> bool:
        done = bool(original(self, primitive, assoc))
        hooks = ae_hooks(getattr(assoc, "ae", None))
        limit = hooks.max_message_bytes if hooks and hooks.max_message_bytes \
            else DEFAULT_MAX_MESSAGE_BYTES
        held = self.encoded_command_set.tell()
        data_set = getattr(self, "data_set", None)
        if data_set is not None and hasattr(data_set, "tell"):
            held += data_set.tell()
        if held > limit:
            raise MessageTooLarge(f"a DIMSE message past {limit} bytes in memory (the limit "
                                  "for command sets and identifiers)")
        return done

    original = replace(dimse_messages.DIMSEMessage, "decode_msg", decode_msg,
                       fix="message limits", params=("self", "primitive", "assoc"))
