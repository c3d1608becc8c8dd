"""Presentation contexts: the one planner of what to propose, and in how many associations.

An association carries at most 128 presentation contexts (odd IDs 1-255, PS3.8 9.3.2.2). Both
``store`` and serve's C-MOVE sub-operations send files of many SOP classes and syntaxes; both
plan here, so both split at 128 the same way and fall back to the same conversions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from dcmtool.dicom.syntaxes import EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN

#: Presentation context IDs are odd numbers 1-255 (PS3.8 9.3.2.2).
MAX_CONTEXTS = 128

T = TypeVar("T")


@dataclass(frozen=True)
class ContextRequest:
    """One presentation context to propose: a SOP class and the syntaxes we can send it in."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]
    scu_role: bool | None = None  # SCP/SCU role selection (C-GET); None: not proposed
    scp_role: bool | None = None


def build_contexts(requests: Sequence[ContextRequest]) -> list[Any]:
    """pynetdicom presentation contexts for ``requests``, with IDs 1, 3, 5, ..."""
    from pynetdicom.presentation import PresentationContext

    if not requests:
        raise ValueError("at least one presentation context is needed")
    if len(requests) > MAX_CONTEXTS:
        raise ValueError(f"{len(requests)} presentation contexts: the limit is {MAX_CONTEXTS}")
    contexts = []
    for index, request in enumerate(requests):
        cx = PresentationContext()
        cx.context_id = 2 * index + 1
        cx.abstract_syntax = request.abstract_syntax
        cx.transfer_syntax = list(request.transfer_syntaxes)
        if request.scu_role is not None or request.scp_role is not None:
            cx.scu_role = request.scu_role
            cx.scp_role = request.scp_role
        contexts.append(cx)
    return contexts


def role_selection(requests: Sequence[ContextRequest]) -> list[Any]:
    """SCP/SCU Role Selection items (PS3.7 D.3.3.4) for contexts that ask for roles (C-GET)."""
    from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

    items: dict[str, Any] = {}
    for request in requests:
        if request.scu_role is None and request.scp_role is None:
            continue
        item = SCP_SCU_RoleSelectionNegotiation()
        item.sop_class_uid = request.abstract_syntax
        item.scu_role = bool(request.scu_role)
        item.scp_role = bool(request.scp_role)
        items[request.abstract_syntax] = item
    return list(items.values())


def plan_storage(files: Sequence[T], sop_class: Callable[[T], str], syntax: Callable[[T], str],
                 target: str | None = None) -> list[tuple[list[ContextRequest], list[T]]]:
    """Split ``files`` into batches whose presentation contexts fit in one association.

    Per SOP class: one context per transfer syntax the files use, alone (an acceptor offered
    several in one context may pick another: pynetdicom's picks implicit VR, and every file
    would be converted), plus one offering explicit and implicit VR little endian to convert
    to. With a ``target`` syntax: one context per class, in that syntax only. A class's files
    never straddle two batches.
    """
    by_class: dict[str, dict[str, list[T]]] = {}
    for item in files:
        by_class.setdefault(sop_class(item), {}).setdefault(syntax(item), []).append(item)
    batches: list[tuple[list[ContextRequest], list[T]]] = []
    contexts: list[ContextRequest] = []
    batch: list[T] = []
    for uid, by_syntax in by_class.items():
        if target is not None:
            wanted = [ContextRequest(uid, (target,))]
        else:
            wanted = [ContextRequest(uid, (ts,)) for ts in by_syntax]
            wanted.append(ContextRequest(uid, (EXPLICIT_VR_LITTLE_ENDIAN,
                                               IMPLICIT_VR_LITTLE_ENDIAN)))
        if len(contexts) + len(wanted) > MAX_CONTEXTS and contexts:
            batches.append((contexts, batch))
            contexts, batch = [], []
        contexts.extend(wanted[:MAX_CONTEXTS])
        batch.extend(item for group in by_syntax.values() for item in group)
    if contexts:
        batches.append((contexts, batch))
    return batches
