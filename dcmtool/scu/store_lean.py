"""C-STORE over dcmtool's plain-TCP client (``net.lean``): no pynetdicom, no pydicom.

``store`` sends over this client whenever the run needs nothing else: files go as their
bytes (no ``--ts``, ``--set`` or ``--new-uids``), over plain TCP or TLS, and nobody reads
pynetdicom's PDU log (``-d``). pynetdicom and pydicom cost more than a small batch's whole
transfer to import. A file whose transfer syntax the peer did not accept is not sent here: it
is left in ``_Pending.convert``, and ``_Group.run`` sends those after the batch over
pynetdicom's client, which converts them (importing pydicom then).

The loop is ``_Group._send``'s: the next file is read while the peer stores one, each
response is checked against its request's Message ID, and a lost association raises its
error with the unanswered file left first, for ``_Group.run`` to retry or give up on.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dcmtool.config import Peer
from dcmtool.dicom.part10 import dataset_offset
from dcmtool.net import framing
from dcmtool.net.lean import client
from dcmtool.scu.store import FileOutcome, Instance, _answered

if TYPE_CHECKING:
    from dcmtool.net.lean.client import LeanAssociation
    from dcmtool.scu.store import _Group, _Pending


def usable(peer: Peer, *, modifying: bool, target: str | None) -> bool:
    """Whether ``store`` sends over dcmtool's own client: files as their bytes, no PDU log."""
    return not modifying and target is None and client.usable(peer)


@dataclass(frozen=True)
class _Ready:
    """A file read to go as it is: its context, where its data set starts, its bytes
    (``None``: too large to hold, streamed from the file)."""

    instance: Instance
    context_id: int
    offset: int
    data: bytes | None


def _prepare(instance: Instance, accepted: dict[str, dict[str, int]]
             ) -> _Ready | FileOutcome | None:
    """What to do with ``instance``: send it (``_Ready``), record an outcome without
    sending it, or ``None``: it needs a conversion (pynetdicom's path)."""
    by_syntax = accepted.get(instance.sop_class_uid)
    if not by_syntax:  # worded as store._send_one words it
        return FileOutcome(instance.path, instance.sop_instance_uid, None,
                           f"the peer refused SOP class {instance.sop_class_uid}")
    context_id = by_syntax.get(instance.transfer_syntax)
    if context_id is None:
        return None
    try:
        offset = instance.dataset_offset
        if offset is None:
            offset = dataset_offset(instance.path)
        if offset is None:  # no File Meta group length: pydicom reads such a file
            return None
        return _Ready(instance, context_id, offset, framing.read_small(instance.path))
    except OSError as exc:
        return FileOutcome(instance.path, instance.sop_instance_uid, None,
                           f"cannot send: {type(exc).__name__}: {exc}")


def send(group: _Group, session: LeanAssociation, pending: _Pending) -> None:
    """Send the pending files in order over ``session``, recording each outcome, leaving the
    ones to convert in ``pending.convert``; raises the association's loss with the unanswered
    file left first in ``pending``."""
    files = pending.files
    accepted = session.accepted_syntaxes()
    message_id = 0
    ahead: _Ready | FileOutcome | None = None
    while files:
        if group.stop.is_set():  # the file before finished
            group._interrupted(files)
            return
        instance = files[0]
        ready = ahead if isinstance(ahead, _Ready) and ahead.instance is instance else \
            _prepare(instance, accepted)
        ahead = None
        if not isinstance(ready, _Ready):
            del files[0]
            if ready is None:
                pending.convert.append(instance)
            else:
                group.record(instance, ready)
            continue
        data_set: Iterable[tuple[bytes | memoryview, bool]]
        if ready.data is None:  # streamed: opened and its first block read before any write,
            try:                # so a file that went away costs its outcome, not the association
                blocks = framing.blocks(instance.path, ready.offset)
                data_set = itertools.chain([next(blocks)], blocks)
            except OSError as exc:
                del files[0]
                group.record(instance, FileOutcome(instance.path, instance.sop_instance_uid,
                                                   None, f"cannot send: {type(exc).__name__}: "
                                                   f"{exc}"))
                continue
        else:
            data_set = [(memoryview(ready.data)[ready.offset:], True)]
        message_id = message_id % 65535 + 1
        pending.in_flight = instance
        answer = None
        if session.send_c_store(ready.context_id, instance.sop_class_uid,
                                instance.sop_instance_uid, message_id, data_set):
            if len(files) > 1:  # read while the peer stores this one
                ahead = _prepare(files[1], accepted)
            answer = session.c_store_response(ready.context_id, message_id)
        if answer is None:
            raise session.lost(f"the C-STORE of {instance.path.name}")
        pending.in_flight = None
        del files[0]
        group.record(instance, _answered(instance, answer[0], answer[1],
                                         instance.transfer_syntax))
