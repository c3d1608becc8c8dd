"""Fixes dcmtool carries for pynetdicom 3.0.x: one module per fix, applied explicitly.

The code that builds an AE (``net.association.make_ae``, ``net.acceptor.make_acceptor``)
calls :func:`apply` first. Each fix checks, as it applies, that what it replaces exists with the
signature it was written for (``_replace.replace``): a pynetdicom that changed fails at start
with ``PatchError``, never by silently switching a fix off. Each module's docstring says what
pynetdicom does, what it costs, and what the fix does instead; state the fixes share with
dcmtool's socket code is in ``net.links``, never in attributes hung on pynetdicom's objects.
"""

from __future__ import annotations

import threading

from dcmtool.net.patches import (
    acceptor_guard,
    command_encoding,
    connect_errors,
    context_copy,
    decode_errors,
    dimse_timeouts,
    event_loops,
    incoming,
    message_limits,
    message_order,
    nodelay,
    owned_reading,
    reactor_race,
    report_thread,
    response_hooks,
    retrieve_scp,
    send_lock,
    server_gc,
    server_poll,
    socket_reads,
    state_machine_guard,
    storage_receive,
    tls_accept,
    tls_close,
)
from dcmtool.net.patches._replace import PatchError, check_version

#: In the order of the numbered fixes of the project's history.
FIXES = (nodelay, connect_errors, incoming, context_copy, event_loops, tls_accept,
         command_encoding, socket_reads, reactor_race, retrieve_scp, owned_reading,
         storage_receive, server_poll, send_lock, state_machine_guard, acceptor_guard,
         decode_errors, message_limits, dimse_timeouts, response_hooks,
         report_thread, message_order, tls_close, server_gc)

_applied = False
_lock = threading.Lock()


def apply() -> None:
    """Install every fix once per process (idempotent, thread-safe); ``PatchError`` when the
    installed pynetdicom is not the one they were written for."""
    global _applied
    with _lock:
        if _applied:
            return
        check_version()
        for fix in FIXES:
            fix.apply()
        _applied = True


__all__ = ["FIXES", "PatchError", "apply"]
