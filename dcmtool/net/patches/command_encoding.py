"""Fix 7: DIMSE command sets encoded with struct (``dicom.commands``).

pydicom's general writer costs ~0.1 ms per message for a dozen group-0000 elements; anything
unusual still falls back to it.
"""

from __future__ import annotations

import struct
from typing import Any

from dcmtool.net.patches._replace import replace


def apply() -> None:
    from pynetdicom import dimse_messages

    from dcmtool.dicom.commands import encode_command_set

    original: Any = None

    def encode(ds: Any, is_implicit_vr: bool, is_little_endian: bool,
               deflated: bool = False) -> bytes | None:
        if is_implicit_vr and is_little_endian and not deflated:
            try:
                fast = encode_command_set(ds)
            except (UnicodeEncodeError, struct.error):
                fast = None
            if fast is not None:
                return fast
        result: bytes | None = original(ds, is_implicit_vr, is_little_endian, deflated)
        return result

    original = replace(dimse_messages, "encode", encode, fix="command encoding",
                       params=("ds", "is_implicit_vr", "is_little_endian", "deflated"))
