"""The upper-layer PDUs an association requestor sends and reads (PS3.8 9.3), with struct.

Encoding writes what pynetdicom writes for the same request, byte for byte (AE titles padded
with spaces, UIDs unpadded). Parsing is strict: every length is checked against what holds it,
and anything that does not add up raises ``PduError`` saying what, for the client to abort
with. P-DATA-TF PDUs are built by ``net.framing``, the one framing of both clients.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

ASSOCIATE_RQ, ASSOCIATE_AC, ASSOCIATE_RJ = 0x01, 0x02, 0x03
P_DATA_TF, RELEASE_RQ, RELEASE_RP, ABORT = 0x04, 0x05, 0x06, 0x07

#: Names for messages, as PS3.8 spells them.
PDU_NAMES = {ASSOCIATE_RQ: "A-ASSOCIATE-RQ", ASSOCIATE_AC: "A-ASSOCIATE-AC",
             ASSOCIATE_RJ: "A-ASSOCIATE-RJ", P_DATA_TF: "P-DATA-TF",
             RELEASE_RQ: "A-RELEASE-RQ", RELEASE_RP: "A-RELEASE-RP", ABORT: "A-ABORT"}

#: The DICOM Application Context Name (PS3.7 A.2.1).
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"

#: A-ABORT sources (PS3.8 9.3.8): the service user (us, on purpose) or provider (a protocol
#: error); with the provider, reason 2 is "unexpected PDU" and 6 "invalid PDU parameter value".
ABORT_USER, ABORT_PROVIDER = 0x00, 0x02
UNEXPECTED_PDU, INVALID_PARAMETER = 0x02, 0x06

#: Largest association PDU (AC, RJ, ...) read: 128 contexts with long UIDs are ~10 KiB.
MAX_ASSOCIATE_LENGTH = 1 << 20
#: Largest P-DATA-TF read when we set no maximum (0, unlimited).
MAX_UNLIMITED_DATA = 1 << 26


class PduError(ValueError):
    """A PDU that does not parse; the message says which and why."""


def a_pdu(pdu_type: int) -> str:
    """``an A-ABORT``, ``a P-DATA-TF``: the PDU's name for a sentence."""
    name = PDU_NAMES[pdu_type]
    return f"{'an' if name.startswith('A') else 'a'} {name}"


# ---------------------------------------------------------------------------------------------
# Encoding


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def _pdu(pdu_type: int, body: bytes) -> bytes:
    return struct.pack(">BBI", pdu_type, 0, len(body)) + body


def _ae(title: str) -> bytes:
    return title.encode("ascii").ljust(16)[:16]


def associate_rq(*, calling_ae_title: str, called_ae_title: str,
                 contexts: Sequence[tuple[int, str, Sequence[str]]], max_pdu: int,
                 implementation_class_uid: str, implementation_version_name: str) -> bytes:
    """A-ASSOCIATE-RQ (PS3.8 9.3.2) proposing ``contexts``: (ID, abstract syntax, transfer
    syntaxes); user information: maximum length, implementation class UID and version name."""
    items = [_item(0x10, APPLICATION_CONTEXT.encode("ascii"))]
    for context_id, abstract_syntax, transfer_syntaxes in contexts:
        sub_items = _item(0x30, abstract_syntax.encode("ascii")) + b"".join(
            _item(0x40, uid.encode("ascii")) for uid in transfer_syntaxes)
        items.append(_item(0x20, struct.pack(">BBBB", context_id, 0, 0, 0) + sub_items))
    user = (_item(0x51, struct.pack(">I", max_pdu))
            + _item(0x52, implementation_class_uid.encode("ascii"))
            + _item(0x55, implementation_version_name.encode("ascii")))
    items.append(_item(0x50, user))
    header = struct.pack(">HH", 1, 0) + _ae(called_ae_title) + _ae(calling_ae_title) + bytes(32)
    return _pdu(ASSOCIATE_RQ, header + b"".join(items))


def release_rq() -> bytes:
    return _pdu(RELEASE_RQ, bytes(4))


def release_rp() -> bytes:
    return _pdu(RELEASE_RP, bytes(4))


def abort(source: int = ABORT_USER, reason: int = 0) -> bytes:
    return _pdu(ABORT, struct.pack(">BBBB", 0, 0, source, reason))


# ---------------------------------------------------------------------------------------------
# Parsing


def check_header(pdu_type: int, length: int, max_data: int) -> None:
    """Refuse a PDU before reading its body: unknown type, or a length it cannot have.

    ``max_data``: the maximum length we proposed (0: none), which binds P-DATA-TF PDUs.
    """
    if pdu_type not in PDU_NAMES:
        raise PduError(f"an unknown PDU type 0x{pdu_type:02X}")
    if pdu_type in (ASSOCIATE_RJ, RELEASE_RQ, RELEASE_RP, ABORT) and length != 4:
        raise PduError(f"{a_pdu(pdu_type)} of length {length} (PS3.8: 4)")
    limit = (max_data or MAX_UNLIMITED_DATA) if pdu_type == P_DATA_TF else MAX_ASSOCIATE_LENGTH
    if length > limit:
        raise PduError(f"{a_pdu(pdu_type)} of {length} bytes, more than the {limit} allowed")


def _items(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, value) of the items (or sub-items) that make up ``data`` exactly."""
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise PduError(f"{len(data) - offset} stray bytes after the last item")
        item_type, length = struct.unpack_from(">BxH", data, offset)
        if offset + 4 + length > len(data):
            raise PduError(f"item 0x{item_type:02X} of length {length} runs past the end "
                           f"of what holds it ({len(data) - offset - 4} bytes left)")
        yield item_type, data[offset + 4:offset + 4 + length]
        offset += 4 + length


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace").rstrip("\x00 ")


@dataclass(frozen=True)
class Accepted:
    """An A-ASSOCIATE-AC: what the acceptor said about itself and each context."""

    max_pdu: int | None  # its Maximum Length Received (0: unlimited); None: not sent
    implementation_class_uid: str | None
    implementation_version_name: str | None
    #: context ID -> (result, chosen transfer syntax or None)
    contexts: dict[int, tuple[int, str | None]] = field(default_factory=dict)


def parse_associate_ac(body: bytes) -> Accepted:
    """An A-ASSOCIATE-AC's body (PS3.8 9.3.3); unknown items are skipped, as PS3.8 asks."""
    try:
        return _associate_ac(body)
    except PduError as exc:
        raise PduError(f"a malformed A-ASSOCIATE-AC ({exc})") from None


def _associate_ac(body: bytes) -> Accepted:
    if len(body) < 68:
        raise PduError(f"length {len(body)}, shorter than its fixed 68-byte header")
    max_pdu: int | None = None
    class_uid: str | None = None
    version: str | None = None
    contexts: dict[int, tuple[int, str | None]] = {}
    for item_type, value in _items(body[68:]):
        if item_type == 0x21:
            if len(value) < 4:
                raise PduError(f"a presentation context item of length {len(value)}")
            context_id, result = value[0], value[2]
            syntaxes = [_text(v) for t, v in _items(value[4:]) if t == 0x40]
            if result == 0 and len(syntaxes) != 1:
                raise PduError(f"accepted presentation context {context_id} with "
                               f"{len(syntaxes)} transfer syntaxes (PS3.8: one)")
            contexts[context_id] = (result, syntaxes[0] if syntaxes else None)
        elif item_type == 0x50:
            for sub_type, sub in _items(value):
                if sub_type == 0x51:
                    if len(sub) != 4:
                        raise PduError(f"a maximum length sub-item of length {len(sub)}")
                    (max_pdu,) = struct.unpack(">I", sub)
                elif sub_type == 0x52:
                    class_uid = _text(sub) or None
                elif sub_type == 0x55:
                    version = _text(sub) or None
    return Accepted(max_pdu, class_uid, version, contexts)


def parse_associate_rj(body: bytes) -> tuple[int, int, int]:
    """(result, source, reason) of an A-ASSOCIATE-RJ (PS3.8 9.3.4); its length is checked
    by ``check_header``."""
    _, result, source, reason = struct.unpack(">BBBB", body)
    return result, source, reason


def parse_abort(body: bytes) -> tuple[int, int]:
    """(source, reason) of an A-ABORT (PS3.8 9.3.8)."""
    _, _, source, reason = struct.unpack(">BBBB", body)
    return source, reason


def parse_p_data(body: bytes) -> list[tuple[int, int, bytes]]:
    """(context ID, message control header, fragment) of each PDV (PS3.8 9.3.5, E.2)."""
    pdvs = []
    offset = 0
    while offset < len(body):
        if offset + 6 > len(body):
            raise PduError(f"a malformed P-DATA-TF ({len(body) - offset} stray bytes after "
                           "its last PDV)")
        (length,) = struct.unpack_from(">I", body, offset)
        if length < 2 or offset + 4 + length > len(body):
            raise PduError(f"a malformed P-DATA-TF (a PDV of length {length} in "
                           f"{len(body)} bytes)")
        pdvs.append((body[offset + 4], body[offset + 5], body[offset + 6:offset + 4 + length]))
        offset += 4 + length
    if not pdvs:
        raise PduError("an empty P-DATA-TF")
    return pdvs
