"""File Meta Information (PS3.10 7.1) encoded directly, without building a pydicom Dataset.

The archive writes one per received instance, on the receiving thread; pydicom's writer costs
about 0.2 ms a call, this a few microseconds. Always explicit VR little endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_LONG = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"}


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr in (b"UI", b"OB") else b" "
    if vr in _LONG:
        return struct.pack("<HH2sHL", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


@dataclass(frozen=True)
class FileMeta:
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    implementation_class_uid: str
    implementation_version_name: str
    source_ae_title: str | None = None
    receiving_ae_title: str | None = None

    def encode(self) -> bytes:
        """The group-2 elements, group length first (without preamble and 'DICM')."""
        body = [
            _element(2, 0x0001, b"OB", b"\x00\x01"),
            _element(2, 0x0002, b"UI", self.sop_class_uid.encode("ascii", "replace")),
            _element(2, 0x0003, b"UI", self.sop_instance_uid.encode("ascii", "replace")),
            _element(2, 0x0010, b"UI", self.transfer_syntax_uid.encode("ascii", "replace")),
            _element(2, 0x0012, b"UI", self.implementation_class_uid.encode("ascii")),
            _element(2, 0x0013, b"SH", self.implementation_version_name.encode("ascii")),
        ]
        if self.source_ae_title:
            title = self.source_ae_title.encode("ascii", "replace")
            body.append(_element(2, 0x0016, b"AE", title))  # Source AE Title
            body.append(_element(2, 0x0017, b"AE", title))  # Sending AE Title
        if self.receiving_ae_title:
            body.append(_element(2, 0x0018, b"AE",
                                 self.receiving_ae_title.encode("ascii", "replace")))
        rest = b"".join(body)
        return _element(2, 0x0000, b"UL", struct.pack("<L", len(rest))) + rest
