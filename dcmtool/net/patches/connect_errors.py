"""Fix 2: the reason a TCP connection failed.

pynetdicom logs the ``OSError`` of a failed connect and drops it; dcmtool keeps it, so that it
can say "connection refused" or "timed out" instead of "aborted".
"""

from __future__ import annotations

import socket
import weakref
from typing import Any

from dcmtool.net.patches._replace import replace

#: The OSError of a failed connect, by association.
CONNECT_ERRORS: weakref.WeakKeyDictionary[Any, OSError] = weakref.WeakKeyDictionary()


class _RecordingSocket(socket.socket):
    """A socket that remembers why ``connect`` failed."""

    __slots__ = ("_owner",)
    _owner: Any

    @classmethod
    def adopt(cls, sock: socket.socket, assoc: Any) -> _RecordingSocket:
        new = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        new._owner = weakref.ref(assoc)
        return new

    def connect(self, address: Any) -> None:
        try:
            super().connect(address)
        except OSError as exc:
            assoc = self._owner()
            if assoc is not None:
                CONNECT_ERRORS[assoc] = exc
            raise


def _recording_ssl_class(assoc: Any) -> type:
    import ssl

    ref = weakref.ref(assoc)

    class RecordingSSLSocket(ssl.SSLSocket):
        def connect(self, address: Any) -> None:
            try:
                super().connect(address)
            except OSError as exc:
                owner = ref()
                if owner is not None:
                    CONNECT_ERRORS[owner] = exc
                raise

    return RecordingSSLSocket


def apply() -> None:
    from pynetdicom import transport

    original: Any = None

    def connect(self: Any, primitive: Any) -> None:
        # Record the OSError by intercepting the socket's connect: pynetdicom catches it.
        raw = self.socket
        if raw is not None and not self.tls_args:
            self.socket = _RecordingSocket.adopt(raw, self.assoc)
        elif raw is not None:
            context, _hostname = self.tls_args
            context.sslsocket_class = _recording_ssl_class(self.assoc)
        original(self, primitive)

    original = replace(transport.AssociationSocket, "connect", connect, fix="connect errors",
                       params=("self", "primitive"))
