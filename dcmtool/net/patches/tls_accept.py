"""Fix 6: the TLS handshake of an accepted connection happens on its own thread.

pynetdicom's server does the handshake on its accept thread with no timeout, so one silent
client stops it from accepting anyone (and from shutting down). The handshake now happens on
the connection's own thread, bounded by the ACSE timeout.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from typing import Any

from dcmtool.net.patches._replace import replace

LOG = logging.getLogger("dcmtool.serve")


def apply() -> None:
    from pynetdicom import transport

    original_handle: Any = None

    def get_request(self: Any) -> tuple[Any, Any]:
        client, address = self.socket.accept()
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True,
                                                  do_handshake_on_connect=False)
        return client, address

    def handle(self: Any) -> None:
        sock = self.request
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.settimeout(self.server.ae.acse_timeout)
                sock.do_handshake()
                sock.settimeout(None)
            except (OSError, ValueError) as exc:
                LOG.warning("TLS handshake with %s:%s failed: %s", *self.client_address[:2],
                            getattr(exc, "reason", None) or exc)
                with contextlib.suppress(OSError):
                    sock.close()
                return
        original_handle(self)

    fix = "TLS handshake off the accept thread"
    # A handshake in progress (bounded by the ACSE timeout) must not hold up shutdown.
    replace(transport.ThreadedAssociationServer, "block_on_close", False, fix=fix)
    replace(transport.ThreadedAssociationServer, "daemon_threads", True, fix=fix)
    replace(transport.AssociationServer, "get_request", get_request, fix=fix, params=("self",))
    original_handle = replace(transport.RequestHandler, "handle", handle, fix=fix,
                              params=("self",))
