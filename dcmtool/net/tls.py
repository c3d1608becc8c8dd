"""The client side of TLS: the context both association clients (pynetdicom's and
``net.lean``) wrap their connection with."""

from __future__ import annotations

import ssl

from dcmtool.config import Peer
from dcmtool.errors import DcmtoolError


def tls_client_context(peer: Peer) -> tuple[ssl.SSLContext, str | None] | None:
    """Build the client TLS context from PEM files, or ``None`` when TLS is not configured."""
    tls = peer.tls
    if not tls.enabled:
        return None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca)
        if tls.ca is None:
            # No CA given: encrypt, but there is nothing to verify the peer against.
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context.check_hostname = tls.check_hostname
        if tls.cert:
            context.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as exc:
        raise DcmtoolError(
            f"TLS setup failed: {exc}",
            hint="check the PEM files of the certificate, its key and the CA",
            setting="tls_files",
        ) from None
    return context, (peer.host if context.check_hostname else None)
