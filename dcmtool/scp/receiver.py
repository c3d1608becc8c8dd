"""The storage SCP that ``dcmtool get`` and ``dcmtool move -o`` receive into.

Plain files (or, asked for, an archive) in the output folder and a storage SCP feeding them:
listening on the local port for a C-MOVE's sub-associations, or on loopback port 0 for a C-GET,
where nothing connects to it (its store handler serves the C-GET association). The retrieving
client builds none of it itself: the CLI opens a receiver and hands it to ``scu.retrieve``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from dcmtool.errors import UsageError
from dcmtool.scp.server import RunningServer, open_archive, start_server


def open_receiver(out_dir: Path, *, ae_title: str, port: int, bind: str,
                  layout: str | None, listen: bool, as_archive: bool = False) -> RunningServer:
    """Start a receiver into ``out_dir``; the caller stops it (which makes every file
    durable) before it reports anything.

    Plain files by default (``layout`` "study" unless named), like DCMTK's ``-od``;
    ``as_archive``: an archive like serve's (index, audit, its layout), that ``dcmtool serve
    DIR`` can serve.
    """
    from dcmtool.archive.layout import DEFAULT_PATTERN, NAMED_LAYOUTS, Layout, LayoutError
    from dcmtool.archive.storage import Archive, StorePolicy
    from dcmtool.scp.options import ServeOptions

    default = DEFAULT_PATTERN if as_archive else NAMED_LAYOUTS["study"]
    try:
        pattern = Layout.parse(layout or default)
    except LayoutError as exc:
        raise UsageError(str(exc), setting="layout") from None
    # A retrieval may bring an instance we already have: keep it, count it as received.
    # The peer keeps its copies: the files are made durable together when the receiver
    # stops, before the command reports anything, instead of one fsync per instance.
    policy = StorePolicy(layout=pattern, duplicates="ignore", min_free_bytes=0,
                         durable_each=False)
    if as_archive:
        archive, _ = open_archive(out_dir, policy, holder="a retrieval receiving into it")
    else:
        try:
            archive = Archive(out_dir, policy, plain=True)
        except OSError as exc:
            raise UsageError(f"--out {out_dir}: {exc.strerror or exc}") from None
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
