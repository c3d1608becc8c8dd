"""Storage Commitment Push Model (PS3.4 annex J): what the N-ACTION and N-EVENT-REPORT carry.

Both sides use this module: the SCU (``dcmtool commit``) builds the Action Information and reads
the Event Information, the SCP (``dcmtool serve``) reads the one and builds the other. Nothing
here touches the network.

- N-ACTION, Action Type ID 1 "Request Storage Commitment" (J.3.2.1.1), on the well-known SOP
  instance ``STORAGE_COMMITMENT_INSTANCE``: Transaction UID (0008,1195) and a Referenced SOP
  Sequence (0008,1199) of Referenced SOP Class/Instance UIDs.
- N-EVENT-REPORT (J.3.3.1.1): Event Type ID 1 when every instance was committed, 2 when some
  failed; the Transaction UID of the request, the committed instances in the Referenced SOP
  Sequence (absent under type 2 when none was) and the failed ones in the Failed SOP Sequence
  (0008,1198), each with a Failure Reason (0008,1197).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from dcmtool.dicom.elements import encode_element, explicit_length, padded
from dcmtool.dicom.status import meaning
from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN
from dcmtool.dicom.uids import uid_problem

STORAGE_COMMITMENT_PUSH = "1.2.840.10008.1.20.1"
#: The well-known SOP instance every N-ACTION and N-EVENT-REPORT of the class names (J.3.5).
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"
#: N-ACTION Action Type ID: Request Storage Commitment (J.3.2.1).
REQUEST_COMMITMENT = 1
#: N-EVENT-REPORT Event Type IDs (J.3.3.1): all committed / some failed.
ALL_COMMITTED = 1
SOME_FAILED = 2

#: Failure Reason (0008,1197) values for storage commitment (PS3.4 J.3.3.1.1, PS3.3 C.14.1.1),
#: in words. They reuse DIMSE status codes but mean what happened to one instance.
FAILURE_REASONS: dict[int, str] = {
    0x0110: "processing failure",
    0x0112: "no such object instance",
    0x0119: "class/instance conflict",
    0x0122: "referenced SOP class not supported",
    0x0124: "refused: not authorized",
    0x0131: "duplicate transaction UID",
    0x0213: "resource limitation",
}
#: The reason given for a failed instance when none is known.
PROCESSING_FAILURE = 0x0110


@dataclass(frozen=True)
class Reference:
    """One instance of a commitment request or report; ``failure_reason`` for a failed one."""

    sop_class_uid: str
    sop_instance_uid: str
    failure_reason: int | None = None


def describe_failure(reason: int) -> str:
    """``0x0112 (no such object instance)``; an unknown code gets its DIMSE status words."""
    return f"0x{reason:04X} ({FAILURE_REASONS.get(reason) or meaning(reason)})"


def _check_uid(value: str, what: str) -> str:
    problem = uid_problem(value)
    if problem:
        raise ValueError(f"{what} {value[:80]!r} {problem}")
    return value


def _item(reference: Reference, *, failed: bool) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = reference.sop_class_uid
    item.ReferencedSOPInstanceUID = reference.sop_instance_uid
    if failed:
        reason = reference.failure_reason
        item.FailureReason = PROCESSING_FAILURE if reason is None else reason
    return item


def action_request(transaction_uid: str, references: Sequence[Reference]) -> Dataset:
    """The N-ACTION Action Information asking to commit ``references`` (J.3.2.1.1).

    Raises ``ValueError`` for an invalid Transaction UID, an empty list or an invalid UID in it.
    """
    _check_uid(transaction_uid, "Transaction UID")
    if not references:
        raise ValueError("a storage commitment request needs at least one instance")
    for ref in references:
        _check_uid(ref.sop_class_uid, "Referenced SOP Class UID")
        _check_uid(ref.sop_instance_uid, "Referenced SOP Instance UID")
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.ReferencedSOPSequence = DicomSequence([_item(r, failed=False) for r in references])
    return ds


#: Names in messages, which end in an Error Comment (64 characters): short ones.
_NAMES = {"TransactionUID": "Transaction UID", "ReferencedSOPSequence": "Referenced SOP Sequence",
          "FailedSOPSequence": "Failed SOP Sequence", "FailureReason": "Failure Reason",
          "ReferencedSOPClassUID": "Referenced SOP Class UID",
          "ReferencedSOPInstanceUID": "Referenced SOP Instance UID"}
_ITEM_KEYWORDS = ("ReferencedSOPClassUID", "ReferencedSOPInstanceUID", "FailureReason")

#: What both readers (pydicom's, and the fast one below) hand the checks: keyword -> text,
#: a number (Failure Reason), a list of items for a sequence, ``_NOT_A_SEQUENCE``, or absent.
_Plain = dict[str, Any]
_NOT_A_SEQUENCE = object()


def _value(ds: Dataset, keyword: str) -> Any:
    """An element's value; ``ValueError`` when it cannot be decoded."""
    try:
        return ds.get(keyword)
    except Exception as exc:  # pydicom raises what the bytes make it raise
        raise ValueError(f"the {_NAMES.get(keyword, keyword)} cannot be decoded ({exc})"
                         ) from None


def _plain(ds: Dataset) -> _Plain:
    """The attributes the checks need, read by pydicom."""
    found: _Plain = {}
    value = _value(ds, "TransactionUID")
    if value is not None:
        found["TransactionUID"] = str(value)
    for keyword in ("ReferencedSOPSequence", "FailedSOPSequence"):
        items = _value(ds, keyword)
        if items is None:
            continue
        if not isinstance(items, DicomSequence):
            found[keyword] = _NOT_A_SEQUENCE
            continue
        found[keyword] = [{name: item_value for name in _ITEM_KEYWORDS
                           if (item_value := _value(item, name)) is not None}
                          for item in items]
    return found


def _transaction_uid(plain: _Plain) -> str:
    value = plain.get("TransactionUID")
    if value is None or not str(value).strip():
        raise ValueError("no Transaction UID (0008,1195)")
    return _check_uid(str(value).strip(), "Transaction UID")


def _references(plain: _Plain, keyword: str, *, failed: bool) -> list[Reference]:
    """The items of ``keyword`` (a sequence, possibly absent: then []), checked."""
    items = plain.get(keyword)
    if items is None:
        return []
    if items is _NOT_A_SEQUENCE:
        raise ValueError(f"the {_NAMES[keyword]} is not a sequence")
    found = []
    for number, item in enumerate(items, 1):
        where = f"{_NAMES[keyword]} item {number}"
        values = {}
        for name in ("ReferencedSOPClassUID", "ReferencedSOPInstanceUID"):
            value = item.get(name)
            if value is None or not str(value).strip():
                raise ValueError(f"{where}: no {_NAMES[name]}")
            values[name] = _check_uid(str(value).strip(), f"{where}: {_NAMES[name]}")
        reason: int | None = None
        if failed:
            raw = item.get("FailureReason")
            if raw is not None and raw != "":
                try:
                    reason = int(raw)
                except (TypeError, ValueError):
                    raise ValueError(f"{where}: Failure Reason {raw!r} is not a number"
                                     ) from None
        found.append(Reference(values["ReferencedSOPClassUID"],
                               values["ReferencedSOPInstanceUID"], reason))
    return found


def _action(plain: _Plain) -> tuple[str, list[Reference]]:
    transaction_uid = _transaction_uid(plain)
    if plain.get("ReferencedSOPSequence") is None:
        raise ValueError("no Referenced SOP Sequence (0008,1199)")
    references = _references(plain, "ReferencedSOPSequence", failed=False)
    if not references:
        raise ValueError("the Referenced SOP Sequence (0008,1199) is empty")
    return transaction_uid, references


def parse_action(ds: Dataset) -> tuple[str, list[Reference]]:
    """(Transaction UID, references) of an N-ACTION's Action Information.

    Raises ``ValueError`` for a missing or invalid Transaction UID and for a missing, empty or
    malformed Referenced SOP Sequence; its message is short enough for an Error Comment (LO,
    64 characters) unless it quotes a long value.
    """
    return _action(_plain(ds))


def parse_action_data(data: bytes, transfer_syntax: str) -> tuple[str, list[Reference]] | None:
    """``parse_action`` of the encoded Action Information, read with struct: thousands of
    references in milliseconds where pydicom takes a second. ``None`` for what it does not
    read (another transfer syntax than implicit or explicit VR little endian, unusual
    encodings): the caller then decodes with pydicom and calls ``parse_action``. Raises the
    same ``ValueError``s."""
    plain = _read_plain(data, transfer_syntax)
    return None if plain is None else _action(plain)


def event_report(transaction_uid: str, committed: Sequence[Reference],
                 failed: Sequence[Reference],
                 retrieve_ae_title: str | None = None) -> tuple[int, Dataset]:
    """(Event Type ID, Event Information) reporting a transaction's outcome (J.3.3.1.1).

    ``failed`` references without a ``failure_reason`` are reported with 0x0110 (processing
    failure). ``retrieve_ae_title``: where the committed instances can be retrieved from.
    """
    _check_uid(transaction_uid, "Transaction UID")
    if not committed and not failed:
        raise ValueError("a storage commitment report needs at least one instance")
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    if retrieve_ae_title:
        ds.RetrieveAETitle = retrieve_ae_title
    if committed:
        ds.ReferencedSOPSequence = DicomSequence([_item(r, failed=False) for r in committed])
    if failed:
        ds.FailedSOPSequence = DicomSequence([_item(r, failed=True) for r in failed])
        return SOME_FAILED, ds
    return ALL_COMMITTED, ds


def parse_event_report(event_type: int, ds: Dataset
                       ) -> tuple[str, list[Reference], list[Reference]]:
    """(Transaction UID, committed, failed with their reasons) of an N-EVENT-REPORT.

    Lenient where peers differ harmlessly (a type 1 report that also lists failures: they are
    returned as failed); raises ``ValueError`` for an unknown Event Type ID, a missing
    Transaction UID, or items without their UIDs.
    """
    return _report(event_type, _plain(ds))


def parse_event_report_data(event_type: int, data: bytes, transfer_syntax: str
                            ) -> tuple[str, list[Reference], list[Reference]] | None:
    """``parse_event_report`` of the encoded Event Information, read with struct; ``None``
    when the caller must decode it with pydicom (see ``parse_action_data``)."""
    plain = _read_plain(data, transfer_syntax)
    return None if plain is None else _report(event_type, plain)


def _report(event_type: int, plain: _Plain) -> tuple[str, list[Reference], list[Reference]]:
    if event_type not in (ALL_COMMITTED, SOME_FAILED):
        raise ValueError(f"Event Type ID {event_type} is not a storage commitment result "
                         f"(expected {ALL_COMMITTED} or {SOME_FAILED})")
    transaction_uid = _transaction_uid(plain)
    committed = _references(plain, "ReferencedSOPSequence", failed=False)
    failed = _references(plain, "FailedSOPSequence", failed=True)
    if event_type == SOME_FAILED and not failed:
        raise ValueError("Event Type ID 2 (failures) without a Failed SOP Sequence (0008,1198)")
    return transaction_uid, committed, failed


# -- the fast reader and writer (implicit and explicit VR little endian) -----------------------

_TAGS = {0x00081195: "TransactionUID", 0x00081199: "ReferencedSOPSequence",
         0x00081198: "FailedSOPSequence", 0x00081150: "ReferencedSOPClassUID",
         0x00081155: "ReferencedSOPInstanceUID", 0x00081197: "FailureReason"}
_SEQUENCES = {0x00081198, 0x00081199}
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF


class _Unusual(Exception):
    """Something the fast reader leaves to pydicom."""


def _read_plain(data: bytes, transfer_syntax: str) -> _Plain | None:
    if transfer_syntax not in (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN):
        return None
    try:
        plain, _end = _read_data_set(memoryview(data), 0, len(data),
                                     transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN, False)
    except (_Unusual, struct.error, UnicodeDecodeError):
        return None
    return plain


def _header(data: memoryview, position: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR or None, value length, value start) of the element at ``position``."""
    group, element = struct.unpack_from("<HH", data, position)
    tag = group << 16 | element
    if implicit or group == 0xFFFE:  # item and delimiters carry no VR
        (length,) = struct.unpack_from("<I", data, position + 4)
        return tag, None, length, position + 8
    vr = bytes(data[position + 4:position + 6])
    if not vr.isalpha():
        raise _Unusual("no VR")
    length, start = explicit_length(data, position, vr)
    return tag, vr, length, start


def _read_data_set(data: memoryview, position: int, end: int, implicit: bool,
                   in_item: bool) -> tuple[_Plain, int]:
    """The known elements of a data set (or of an item up to its delimiter)."""
    plain: _Plain = {}
    while position < end:
        tag, vr, length, start = _header(data, position, implicit)
        if tag == _ITEM_END:
            if not in_item:
                raise _Unusual("item delimiter outside an item")
            return plain, start
        if start > end or (length != _UNDEFINED and start + length > end):
            raise _Unusual("truncated")
        sequence = tag in _SEQUENCES if vr is None else vr == b"SQ"
        if tag in _SEQUENCES and vr is not None and vr != b"SQ":
            if length == _UNDEFINED:
                raise _Unusual("undefined length")
            plain[_TAGS[tag]] = _NOT_A_SEQUENCE
            position = start + length
        elif sequence or length == _UNDEFINED:
            if vr is not None and vr != b"SQ":  # UN of undefined length: implicit inside
                raise _Unusual("undefined length")
            items, position = _read_sequence(data, start, length, end, implicit)
            if tag in _SEQUENCES:
                plain[_TAGS[tag]] = items
        else:
            name = _TAGS.get(tag)
            if name == "FailureReason":
                raw = bytes(data[start:start + length])
                plain[name] = struct.unpack("<H", raw)[0] if length == 2 else raw
            elif name is not None:
                plain[name] = bytes(data[start:start + length]).decode("ascii").strip("\0 ")
            position = start + length
    if in_item:
        raise _Unusual("an item without its end")
    return plain, position


def _read_sequence(data: memoryview, position: int, length: int, end: int,
                   implicit: bool) -> tuple[list[_Plain], int]:
    stop = end if length == _UNDEFINED else position + length
    items: list[_Plain] = []
    while position < stop:
        tag, _vr, item_length, start = _header(data, position, True)
        if tag == _SEQUENCE_END:
            if length != _UNDEFINED:
                raise _Unusual("sequence delimiter in a defined length sequence")
            return items, start
        if tag != _ITEM:
            raise _Unusual("not an item")
        if item_length == _UNDEFINED:
            item, position = _read_data_set(data, start, stop, implicit, True)
        else:
            if start + item_length > stop:
                raise _Unusual("truncated item")
            item, _ = _read_data_set(data, start, start + item_length, implicit, False)
            position = start + item_length
        items.append(item)
    if length == _UNDEFINED:
        raise _Unusual("a sequence without its end")
    return items, position


def _uid(tag: int, value: str, implicit: bool) -> bytes:
    return encode_element(tag, "UI", padded("UI", value.encode("ascii")), implicit=implicit)


def _sequence(tag: int, items: list[bytes], implicit: bool) -> bytes:
    body = b"".join(struct.pack("<HHI", 0xFFFE, 0xE000, len(item)) + item for item in items)
    return encode_element(tag, "SQ", body, implicit=implicit)


def encode_event_information(transaction_uid: str, committed: Sequence[Reference],
                             failed: Sequence[Reference], retrieve_ae_title: str | None,
                             transfer_syntax: str) -> bytes | None:
    """``event_report``'s Event Information, encoded with struct for ``transfer_syntax``
    (``None`` for another than implicit or explicit VR little endian: use ``event_report``
    and pydicom). Same checks and content as ``event_report``."""
    if transfer_syntax not in (IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_LITTLE_ENDIAN):
        return None
    implicit = transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN
    _check_uid(transaction_uid, "Transaction UID")
    if not committed and not failed:
        raise ValueError("a storage commitment report needs at least one instance")
    try:
        parts = []
        if retrieve_ae_title:
            parts.append(encode_element(0x00080054, "AE",
                                        padded("AE", retrieve_ae_title.encode("ascii")),
                                        implicit=implicit))
        parts.append(_uid(0x00081195, transaction_uid, implicit))
        if failed:
            parts.append(_sequence(0x00081198, [
                _uid(0x00081150, r.sop_class_uid, implicit)
                + _uid(0x00081155, r.sop_instance_uid, implicit)
                + encode_element(0x00081197, "US", struct.pack(
                    "<H", PROCESSING_FAILURE if r.failure_reason is None else r.failure_reason),
                    implicit=implicit)
                for r in failed], implicit))
        if committed:
            parts.append(_sequence(0x00081199, [
                _uid(0x00081150, r.sop_class_uid, implicit)
                + _uid(0x00081155, r.sop_instance_uid, implicit) for r in committed],
                implicit))
    except (UnicodeEncodeError, struct.error):
        return None
    return b"".join(parts)
