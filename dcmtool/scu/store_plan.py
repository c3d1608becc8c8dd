"""``store --dry-run`` and ``--offline``: the association plan, before anything is sent.

The plan is the one ``store`` follows (``store.plan``: which presentation contexts, in how
many associations). Offline it stops there. Otherwise each association is negotiated with
the peer and released without a C-STORE, and every file gets the outcome ``store`` would
give it before sending (``store.syntax_on_wire``): sent as it is, converted (to what), or
refused (why). What the peer then answers to each C-STORE is not known until it is sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dcmtool.config import Peer
from dcmtool.net.contexts import ContextRequest
from dcmtool.net.outcomes import Negotiation
from dcmtool.scu.store import Instance, associate, plan, syntax_on_wire

AS_IS, CONVERTED, REFUSED, PLANNED = "as is", "converted", "refused", "planned"


@dataclass(frozen=True)
class PlannedFile:
    path: Path
    sop_class_uid: str
    transfer_syntax: str
    association: int  # 1, 2, ... in the order they are opened
    action: str  # AS_IS, CONVERTED, REFUSED; PLANNED offline
    on_wire: str | None = None  # the transfer syntax it would travel in
    reason: str = ""  # why it would be refused


@dataclass(frozen=True)
class PlannedAssociation:
    number: int
    contexts: tuple[ContextRequest, ...]
    files: int
    #: What the peer answered (None offline).
    negotiation: Negotiation | None = None


@dataclass
class StorePlan:
    offline: bool
    associations: list[PlannedAssociation] = field(default_factory=list)
    files: list[PlannedFile] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        """Files per action, every action present."""
        found = Counter(f.action for f in self.files)
        actions = (PLANNED,) if self.offline else (AS_IS, CONVERTED, REFUSED)
        return {action: found.get(action, 0) for action in actions}


def make_plan(peer: Peer | None, instances: Sequence[Instance],
              target: str | None = None) -> StorePlan:
    """The plan for sending ``instances`` (``target``: ``--ts``); with a ``peer``, each
    association negotiated and released. Raises what ``store`` would when the peer cannot be
    reached or rejects an association (``DcmtoolError``)."""
    result = StorePlan(offline=peer is None)
    for number, (contexts, batch) in enumerate(plan(instances, target), 1):
        negotiation = None if peer is None else _negotiate(peer, contexts)
        result.associations.append(PlannedAssociation(number, tuple(contexts), len(batch),
                                                      negotiation))
        accepted: dict[str, set[str]] = {}
        if negotiation is not None:
            for cx in negotiation.accepted:
                accepted.setdefault(cx.abstract_syntax, set()).add(cx.transfer_syntaxes[0])
        for instance in batch:
            result.files.append(_planned(instance, number, negotiation is None,
                                         accepted.get(instance.sop_class_uid, set()), target))
    return result


def _planned(instance: Instance, number: int, offline: bool, accepted: set[str],
             target: str | None) -> PlannedFile:
    file = (instance.path, instance.sop_class_uid, instance.transfer_syntax, number)
    if offline:
        return PlannedFile(*file, PLANNED)
    on_wire, why_not = syntax_on_wire(instance, accepted, target)
    if on_wire is None:
        return PlannedFile(*file, REFUSED, None, why_not)
    return PlannedFile(*file, AS_IS if on_wire == instance.transfer_syntax else CONVERTED,
                       on_wire)


def _negotiate(peer: Peer, contexts: list[ContextRequest]) -> Negotiation:
    """Associate proposing ``contexts``, release at once; what the peer accepted."""
    from dcmtool.net.lean import client

    with associate(peer, contexts, client.usable(peer)) as session:
        negotiation: Negotiation = session.negotiation
        return negotiation
