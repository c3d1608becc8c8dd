"""DIMSE statuses: the one table of what each code means, and what it makes of a batch.

PS3.7 Annex C sorts statuses into success, warning, failure, cancel and pending; the service
annexes of PS3.4 name the codes. Every service here (store, serve, find, move, get) asks this
module, so a code can never be a warning in one command and a refusal in another.
"""

from __future__ import annotations

from enum import Enum

SUCCESS = 0x0000
PENDING = 0xFF00
PENDING_WITH_WARNINGS = 0xFF01  # optional keys not supported (PS3.4 C.4.1.1.4)
CANCEL = 0xFE00
#: C-MOVE/C-GET final statuses (PS3.4 C.4.2.1.5, C.4.3.1.4).
SUBOPERATIONS_FAILED = 0xA702
SOME_SUBOPERATIONS_FAILED = 0xB000
UNKNOWN_MOVE_DESTINATION = 0xA801
OUT_OF_RESOURCES = 0xA700
IDENTIFIER_DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
DUPLICATE_SOP_INSTANCE = 0x0111

#: Warnings that are not 0xBxxx (PS3.7 C.4: attribute list error, value out of range,
#: optional attributes not supported); every 0xBxxx is a warning too (PS3.4 B.2.3).
_OTHER_WARNINGS = frozenset({0x0001, 0x0107, 0x0116})

#: What the codes mean, in the words of PS3.4/PS3.7, for messages.
MEANINGS: dict[int, str] = {
    SUCCESS: "success",
    PENDING: "pending",
    PENDING_WITH_WARNINGS: "pending, optional keys not supported",
    CANCEL: "cancelled",
    0x0001: "optional attributes not supported",
    0x0105: "no such attribute",
    0x0106: "invalid attribute value",
    0x0107: "attribute list error",
    0x0110: "processing failure",
    DUPLICATE_SOP_INSTANCE: "duplicate SOP instance",
    0x0112: "no such SOP instance",
    0x0116: "attribute value out of range",
    0x0117: "invalid object instance",
    0x0118: "no such SOP class",
    0x0119: "class-instance conflict",
    0x0120: "missing attribute",
    0x0121: "missing attribute value",
    0x0122: "SOP class not supported",
    0x0123: "no such action",
    0x0124: "not authorised",
    0x0211: "unrecognised operation",
    0x0212: "mistyped argument",
    0x0213: "resource limitation",
    OUT_OF_RESOURCES: "out of resources",
    0xA701: "out of resources: unable to calculate the number of matches",
    SUBOPERATIONS_FAILED: "out of resources: unable to perform sub-operations",
    UNKNOWN_MOVE_DESTINATION: "move destination unknown",
    IDENTIFIER_DOES_NOT_MATCH: "identifier does not match SOP class",
    SOME_SUBOPERATIONS_FAILED: "sub-operations completed, one or more failures or warnings",
    0xB006: "elements discarded",
    0xB007: "data set does not match SOP class",
    CANNOT_UNDERSTAND: "unable to process",
}


class Category(Enum):
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    CANCEL = "cancel"
    PENDING = "pending"


def category(status: int) -> Category:
    """PS3.7 Annex C: the category of a status code."""
    if status == SUCCESS:
        return Category.SUCCESS
    if status in (PENDING, PENDING_WITH_WARNINGS):
        return Category.PENDING
    if status == CANCEL:
        return Category.CANCEL
    if status in _OTHER_WARNINGS or status >> 12 == 0xB:
        return Category.WARNING
    return Category.FAILURE


def is_pending(status: int) -> bool:
    return status in (PENDING, PENDING_WITH_WARNINGS)


def is_warning(status: int | None) -> bool:
    return status is not None and category(status) is Category.WARNING


def completed(status: int | None) -> bool:
    """The operation was carried out: success, or success with a warning (an instance whose
    C-STORE answered a warning is stored)."""
    return status is not None and category(status) in (Category.SUCCESS, Category.WARNING)


def is_failure(status: int | None) -> bool:
    """A final status that says the request failed (neither success, warning nor cancel)."""
    return status is not None and category(status) is Category.FAILURE


def meaning(status: int) -> str:
    """Words for a code: the table's, else its category's ("unable to process" for 0xCxxx)."""
    if status in MEANINGS:
        return MEANINGS[status]
    if status >> 12 == 0xC:
        return "unable to process"
    if status >> 8 == 0xA7:
        return "out of resources"
    return category(status).value


def describe(status: int) -> str:
    """``0xA700 (out of resources)``."""
    return f"0x{status:04X} ({meaning(status)})"


# -- the exit-code policy: what a finished operation's statuses make of the process -----------


def raise_for_batch(total: int, failed: int, *, completed: int, first_status: int | None,
                    first_message: str, noun: str = "files") -> None:
    """A batch of operations (C-STOREs): success when none failed, else the typed error whose
    exit code says how it went: partial, all refused by the peer, or none sent."""
    from dcmtool.errors import AssociationAborted, DimseFailure, PartialFailure

    if failed == 0:
        return
    if completed:
        raise PartialFailure(f"{failed} of {total} {noun} failed")
    if first_status is not None:
        raise DimseFailure(f"every file was refused (first: {first_message})",
                           status=first_status)
    raise AssociationAborted(f"no file was stored: {first_message}")


def raise_for_final(status: int | None, service: str, *, comment: str = "",
                    cancelled_by_us: bool = False, hint: str | None = None) -> None:
    """The final response of one request (C-FIND, C-MOVE, C-GET): success and warnings pass,
    and so does a cancel we asked for; anything else is a ``DimseFailure``."""
    from dcmtool.errors import DimseFailure

    if status is None or completed(status) or (status == CANCEL and cancelled_by_us):
        return
    words = "cancelled by the peer" if status == CANCEL else meaning(status)
    detail = f": {comment}" if comment else ""
    raise DimseFailure(f"the peer answered the {service} with 0x{status:04X} ({words}){detail}",
                       status=status, hint=hint)
