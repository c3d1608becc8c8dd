"""The storage SCP that ``dcmtool get`` and ``dcmtool move -o`` receive into.

An archive in the output folder and a storage SCP feeding it: listening on the local port for a
C-MOVE's sub-associations, or on loopback port 0 for a C-GET, where nothing connects to it (its
store handler serves the C-GET association). The retrieving client builds none of it itself:
the CLI opens a receiver and hands it to ``scu.retrieve``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcmtool.errors import UsageError
from dcmtool.scp.server import RunningServer, open_archive, start_server


def open_receiver(out_dir: Path, *, ae_title: str, port: int, bind: str,
                  layout: str | None, listen: bool) -> RunningServer:
    """Start a receiver into ``out_dir``; the caller stops it (which makes every file
    durable) before it reports anything."""
    from dcmtool.archive.layout import DEFAULT_PATTERN, Layout, LayoutError
    from dcmtool.archive.storage import StorePolicy
    from dcmtool.scp.options import ServeOptions

    try:
        pattern = Layout.parse(layout or DEFAULT_PATTERN)
    except LayoutError as exc:
        raise UsageError(str(exc), setting="layout") from None
    # A retrieval may bring an instance we already have: keep it, count it as received.
    # The peer keeps its copies: the files are made durable together when the receiver
    # stops, before the command reports anything, instead of one fsync per instance.
    policy = StorePolicy(layout=pattern, duplicates="ignore", min_free_bytes=0,
                         durable_each=False)
    archive, _ = open_archive(out_dir, policy, holder="a retrieval receiving into it")
    options = ServeOptions(ae_title=ae_title, port=port if listen else 0,
                           bind=bind if listen else "127.0.0.1", max_associations=10)
    server: RunningServer | None = None

    def receive_more(assoc: Any, answer_first: Callable[[], None]) -> None:
        # C-MOVE: the peer's C-STOREs after the first are read off the socket.
        from dcmtool.net import receiving

        assert server is not None
        receiving.receive_more(assoc, server.store_file, server.archive.incoming,
                               answer_first)

    try:
        server = start_server(archive, options, receive=receive_more if listen else None)
    except BaseException:
        archive.close()
        raise
    return server
