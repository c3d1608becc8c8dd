"""What dcmtool keeps beside pynetdicom's objects: explicit state, never attributes hung on them.

Two kinds: ``AeHooks``, what an AE of ours does in place of pynetdicom's defaults (set by the
code that builds the AE), and ``Link``, one association's state shared by the fixes in
``net.patches`` and the socket code in ``net.wire`` (locks, the owned reader, wake-ups).
Both live in weak dictionaries keyed by pynetdicom's objects, so they go when those go.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Runs a C-MOVE/C-GET request in place of pynetdicom's loop: (service, request, context,
#: "move" or "get").
RetrieveHandler = Callable[[Any, Any, Any, str], None]
#: Receives the C-STOREs of an association after pynetdicom answered the first:
#: (association, answer the first C-STORE).
ReceiveHandler = Callable[[Any, Callable[[], None]], None]


@dataclass(eq=False)
class AeHooks:
    """What an AE does instead of pynetdicom's default (``None``: pynetdicom's)."""

    #: Received data sets are streamed into this folder, behind dcmtool's File Meta (fix 3).
    incoming: Path | None = None
    #: C-MOVE/C-GET requests run dcmtool's sub-operation loop (fix 10).
    retrieve: RetrieveHandler | None = None
    #: C-STOREs after the first are read off the socket (fix 12).
    receive: ReceiveHandler | None = None
    #: The largest command set or in-memory data set accepted (``patches.message_limits``).
    max_message_bytes: int | None = None
    #: Stop writing a received data set when less is free in ``incoming`` (fix 3).
    min_free_bytes: int = 0


_AE_HOOKS: weakref.WeakKeyDictionary[Any, AeHooks] = weakref.WeakKeyDictionary()


def configure_ae(ae: Any, *, incoming: Path | None = None,
                 retrieve: RetrieveHandler | None = None,
                 receive: ReceiveHandler | None = None,
                 max_message_bytes: int | None = None,
                 min_free_bytes: int | None = None) -> AeHooks:
    """Give ``ae`` hooks; values not given keep what it had."""
    hooks = _AE_HOOKS.setdefault(ae, AeHooks())
    if min_free_bytes is not None:
        hooks.min_free_bytes = min_free_bytes
    if max_message_bytes is not None:
        hooks.max_message_bytes = max_message_bytes
    if incoming is not None:
        hooks.incoming = incoming
    if retrieve is not None:
        hooks.retrieve = retrieve
    if receive is not None:
        hooks.receive = receive
    return hooks


def ae_hooks(ae: Any) -> AeHooks | None:
    return _AE_HOOKS.get(ae) if ae is not None else None


@dataclass(eq=False)
class Link:
    """One association's state outside pynetdicom."""

    #: Every PDU is written under it, pynetdicom's and ours (fix "send lock"); over TLS an
    #: owned reader's reads too (``owned.OwnedReader``), and a close waits for it (fix "TLS close").
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Held by the DUL thread while it reads a PDU, and while ownership changes hands; over
    #: TLS also by another thread writing while nobody owns the reading (``wire._exclusive``).
    read_lock: threading.Lock = field(default_factory=threading.Lock)
    #: Another thread reads the socket: the DUL leaves it alone (fix 11).
    owned: bool = False
    #: Bytes an owned reader read but leaves to pynetdicom, read by the DUL first (fix 11).
    pushback: bytes = b""
    #: The reader attached for ``wire.send_file`` (store's responses), if any.
    reader: Any = None
    #: SOP class -> {transfer syntax: context ID} we may send on, built once.
    accepted: dict[str, dict[str, int]] | None = None
    #: The last Message ID we used for a request.
    message_id: int = 0
    #: Wakes the association's reactor thread (fix 5).
    wake_reactor: threading.Event | None = None
    #: Wakes its DUL thread (fix 5).
    wake_dul: Callable[[], None] | None = None
    #: The DIMSE timeout (s) that ran out while we waited for the peer: after it dcmtool
    #: aborts the association itself (``patches.dimse_timeouts``, ``owned.OwnedReader``).
    dimse_timeout_fired: float | None = None
    #: Message ID of a request -> what to run once our response to it is queued to the DUL
    #: (``patches.response_hooks``): an N-EVENT-REPORT that must follow an N-ACTION-RSP.
    after_response: dict[int, Callable[[], None]] = field(default_factory=dict)


_LINKS: weakref.WeakKeyDictionary[Any, Link] = weakref.WeakKeyDictionary()
_creating = threading.Lock()


def link(assoc: Any) -> Link:
    """The state of ``assoc`` (a pynetdicom Association), created on first use."""
    found = _LINKS.get(assoc)
    if found is None:
        with _creating:
            found = _LINKS.get(assoc)
            if found is None:
                found = _LINKS[assoc] = Link()
    return found
