"""The peer argument and network flags shared by the commands that open associations."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dcmtool.cli.groups import NetworkOptions
    from dcmtool.config import Peer


def resolve(peer_args: list[str], network: NetworkOptions) -> Peer:
    """PEER (a node, AET@HOST:PORT) or HOST PORT, with the flags over the config."""
    from dcmtool.cli.state import overrides, settings
    from dcmtool.config import resolve_peer, split_peer_arguments
    from dcmtool.errors import UsageError

    grouped = split_peer_arguments(peer_args)
    if len(grouped) != 1:
        raise UsageError(f"expected one PEER (or HOST PORT), got {' '.join(peer_args)!r}")
    return resolve_peer(grouped[0], settings.config(), overrides(network))
