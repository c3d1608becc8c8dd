"""The peer argument and network flags shared by the commands that open associations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dcmtool.config import Peer


def resolve(peer_args: list[str], calling_aet: str | None, called_aet: str | None,
            max_pdu: int | None, connect_timeout: float | None, acse_timeout: float | None,
            dimse_timeout: float | None, network_timeout: float | None,
            tls_cert: Path | None, tls_key: Path | None, tls_ca: Path | None,
            no_hostname_check: bool) -> Peer:
    """PEER (a node, AET@HOST:PORT) or HOST PORT, with the flags over the config."""
    from dcmtool.cli.state import overrides, settings
    from dcmtool.config import resolve_peer, split_peer_arguments
    from dcmtool.errors import UsageError

    grouped = split_peer_arguments(peer_args)
    if len(grouped) != 1:
        raise UsageError(f"expected one PEER (or HOST PORT), got {' '.join(peer_args)!r}")
    flags = overrides(calling_aet, called_aet, max_pdu, connect_timeout, acse_timeout,
                      dimse_timeout, network_timeout, tls_cert, tls_key, tls_ca,
                      no_hostname_check)
    return resolve_peer(grouped[0], settings.config(), flags)
