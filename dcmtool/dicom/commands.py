"""DIMSE command sets (PS3.7 9.3, E.1): built and parsed with struct, never with pydicom.

A command set is group 0000 in implicit VR little endian, Command Group Length first. Every
request and response dcmtool writes itself (C-STORE, C-GET, pending C-FIND/C-MOVE/C-GET
responses) is packed here, and every command it reads itself is parsed here.
"""

from __future__ import annotations

import re
import struct
from typing import Any

from dcmtool.dicom.elements import encode, padded
from dcmtool.dicom.sopclasses import VERIFICATION

C_STORE_RQ, C_STORE_RSP = 0x0001, 0x8001
C_GET_RQ, C_GET_RSP = 0x0010, 0x8010
C_FIND_RSP, C_MOVE_RSP = 0x8020, 0x8021
C_CANCEL_RQ = 0x0FFF
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
#: Command Data Set Type (0000,0800): no data set follows the command.
NO_DATA_SET = 0x0101
NO_DATA_SET, DATA_SET = 0x0101, 0x0000


def uid_value(text: str) -> bytes:
    """A UI value: ASCII, padded with NUL to even length."""
    return padded("UI", text.encode("ascii"))


def command(fields: list[tuple[int, bytes]]) -> bytes:
    """A command set (group 0000, implicit VR little endian), group length first."""
    body = encode([(0x00000000 | element, "", value) for element, value in fields],
                  implicit=True)
    return encode([(0x00000000, "UL", struct.pack("<I", len(body)))], implicit=True) + body


def store_request(sop_class: str, sop_instance: str, message_id: int, priority: int = 2,
                move_originator: tuple[str, int] | None = None) -> bytes:
    """C-STORE-RQ command set (PS3.7 9.3.1)."""
    fields = [
        (0x0002, uid_value(sop_class)),
        (0x0100, struct.pack("<H", 0x0001)),
        (0x0110, struct.pack("<H", message_id)),
        (0x0700, struct.pack("<H", priority)),
        (0x0800, struct.pack("<H", 0x0000)),  # a data set follows
        (0x1000, uid_value(sop_instance)),
    ]
    if move_originator is not None:
        aet, message = move_originator
        fields.append((0x1030, aet.encode("ascii").ljust(16)[:16]))
        fields.append((0x1031, struct.pack("<H", message)))
    return command(fields)


def echo_request(message_id: int) -> bytes:
    """C-ECHO-RQ command set (PS3.7 9.3.5.1)."""
    return command([(0x0002, uid_value(VERIFICATION)),
                    (0x0100, C_ECHO_RQ.to_bytes(2, "little")),
                    (0x0110, message_id.to_bytes(2, "little")),
                    (0x0800, NO_DATA_SET.to_bytes(2, "little"))])


def find_response_command(sop_class: str, message_id: int, status: int = 0xFF00) -> bytes:
    """C-FIND-RSP command set with a data set following (PS3.7 9.3.2.2)."""
    return command([
        (0x0002, uid_value(sop_class)),
        (0x0100, struct.pack("<H", 0x8020)),
        (0x0120, struct.pack("<H", message_id)),
        (0x0800, struct.pack("<H", 0x0102)),  # a data set follows
        (0x0900, struct.pack("<H", status)),
    ])


def retrieve_response_command(sop_class: str, command_field: int, message_id: int,
                              status: int, remaining: int, completed: int, failed: int,
                              warning: int) -> bytes:
    """A pending C-MOVE-RSP (0x8021) or C-GET-RSP (0x8010) command set, no data set
    (PS3.7 9.3.3.2, 9.3.4.2); counts above 65535 (US) are reported as 65535."""
    def count(value: int) -> bytes:
        return struct.pack("<H", min(max(value, 0), 0xFFFF))

    return command([
        (0x0002, uid_value(sop_class)),
        (0x0100, struct.pack("<H", command_field)),
        (0x0120, struct.pack("<H", message_id)),
        (0x0800, struct.pack("<H", 0x0101)),  # no data set
        (0x0900, struct.pack("<H", status)),
        (0x1020, count(remaining)),
        (0x1021, count(completed)),
        (0x1022, count(failed)),
        (0x1023, count(warning)),
    ])


#: A UID-looking token (digits and dots, at least three components), quoted or not.
_UID_TOKEN = re.compile(r"'?\b\d+(?:\.\d+){2,}\b'?")
#: Error Comment is LO: 64 characters.
ERROR_COMMENT_LIMIT = 64


def error_comment(message: str) -> str:
    """``message`` fitted into an Error Comment (LO, 64 characters) without cutting a UID in
    half: a long message loses its UIDs first (the log keeps the whole message), then words."""
    if len(message) <= ERROR_COMMENT_LIMIT:
        return message
    text = " ".join(_UID_TOKEN.sub("", message).split())
    if len(text) <= ERROR_COMMENT_LIMIT:
        return text
    cut = text.rfind(" ", 0, ERROR_COMMENT_LIMIT - 3)
    return text[:cut if cut > 0 else ERROR_COMMENT_LIMIT - 3].rstrip(" ,;:") + "..."


def status_dataset(code: int, comment: str | None = None, error_id: int | None = None) -> Any:
    """What an SCP handler returns: the status, with an Error Comment fitted to 64 characters
    (and an Error ID, for the N-services' 0x0110 processing failures)."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = error_comment(comment)
    if error_id is not None:
        ds.ErrorID = error_id
    return ds


def store_response_command(sop_class: str, sop_instance: str, message_id: int, status: int,
                           comment: str = "") -> bytes:
    """C-STORE-RSP command set, no data set (PS3.7 9.3.1.2)."""
    fields = [
        (0x0002, uid_value(sop_class)),
        (0x0100, struct.pack("<H", 0x8001)),
        (0x0120, struct.pack("<H", message_id)),
        (0x0800, struct.pack("<H", 0x0101)),
        (0x0900, struct.pack("<H", status)),
    ]
    if comment:
        fields.append((0x0902, padded("LO", error_comment(comment).encode("latin-1",
                                                                         "replace"))))
    fields.append((0x1000, uid_value(sop_instance)))
    return command(fields)


def parse_command(command: bytes) -> dict[int, bytes] | None:
    """A command set's group 0000 element values (implicit VR), by element number. Other
    groups are skipped: Orthanc appends (0008,0058) Failed SOP Instance UID List to a
    C-GET response's command set."""
    fields: dict[int, bytes] = {}
    offset = 0
    while offset + 8 <= len(command):
        group, element, length = struct.unpack("<HHI", command[offset:offset + 8])
        if offset + 8 + length > len(command):
            return None
        if group == 0x0000:
            fields[element] = command[offset + 8:offset + 8 + length]
        offset += 8 + length
    return fields if offset == len(command) else None


def us(fields: dict[int, bytes], element: int) -> int | None:
    """A US command element's value."""
    value = fields.get(element)
    return int(struct.unpack("<H", value)[0]) if value is not None and len(value) == 2 \
        else None


def text(fields: dict[int, bytes], element: int) -> str:
    """A text (UI, LO, AE) command element's value, without its padding."""
    return fields.get(element, b"").decode("latin-1").rstrip("\x00 ")


def get_request(model: str, message_id: int) -> bytes:
    """C-GET-RQ (PS3.7 9.3.3.1): medium priority, an identifier follows."""
    return command([
        (0x0002, uid_value(model)),
        (0x0100, struct.pack("<H", C_GET_RQ)),
        (0x0110, struct.pack("<H", message_id)),
        (0x0700, struct.pack("<H", 0x0000)),
        (0x0800, struct.pack("<H", 0x0000)),
    ])


#: VRs that occur in command sets, with the encoding of their text.
_COMMAND_TEXT = {"UI": "ascii", "LO": "latin-1", "SH": "latin-1", "AE": "latin-1",
                 "CS": "latin-1", "ST": "latin-1"}


def encode_command_set(ds: Any) -> bytes | None:
    """A pydicom command set in implicit VR little endian (PS3.7 6.3.1), elements in the
    order given (pydicom keeps them sorted); ``None`` for anything unusual, which the caller
    then leaves to pydicom's writer."""
    parts = []
    for element in ds:
        tag = int(element.tag)
        if tag >> 16:
            return None  # not a command set
        vr, value = element.VR, element.value
        if value is None or value == "":
            encoded = b""
        elif vr in _COMMAND_TEXT and isinstance(value, str):
            encoded = padded(vr, value.encode(_COMMAND_TEXT[vr]))
        elif vr == "US" and isinstance(value, int):
            encoded = struct.pack("<H", value)
        elif vr == "UL" and isinstance(value, int):
            encoded = struct.pack("<L", value)
        else:
            return None
        parts.append(struct.pack("<HHL", 0, tag & 0xFFFF, len(encoded)) + encoded)
    return b"".join(parts)
