"""The storage SCP that ``dcmtool get`` and ``dcmtool move -o`` receive into.

Plain files (or, asked for, an archive) in the output folder and a storage SCP feeding them:
listening on the local port for a C-MOVE's sub-associations; for a C-GET, the same handlers
without a listening socket (the instances arrive on the retrieving association itself). The
retrieving client builds none of it itself: the CLI opens a receiver and hands it to
``scu.retrieve``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dcmtool.archive.storage import Archive
from dcmtool.errors import UsageError
from dcmtool.scp.handlers import Handlers, ServerStats
from dcmtool.scp.hooks import CommandHooks
from dcmtool.scp.options import ServeOptions
from dcmtool.scp.server import RunningServer, open_archive, start_server


class GetReceiver:
    """A C-GET's receiver: serve's storage handlers and an archive, and no server (building
    the accepting AE's 200-odd presentation contexts and stopping its listener would cost
    about 0.1 s of every ``dcmtool get``)."""

    def __init__(self, archive: Archive, options: ServeOptions) -> None:
        self.archive = archive
        self.options = options
        self.stats = ServerStats()
        self._hooks = CommandHooks(options)
        self.handlers = Handlers(archive, options, self.stats, self._hooks)
        self._stopped = False

    def handle_store(self, event: Any) -> Any:
        """The C-STORE handler for pynetdicom's own C-GET path (TLS, PDU logging)."""
        return self.handlers.on_store(event)

    def store_file(self, assoc: Any, received: Any, sop_class: str, sop_instance: str,
                   transfer_syntax: str, data: bytes | bytearray | None = None) -> Any:
        """See ``Handlers.store_file``."""
        return self.handlers.store_file(assoc, received, sop_class, sop_instance,
                                        transfer_syntax, data)

    def stop(self, grace: float = 30.0) -> None:
        """Close the archive, which makes every file durable (``NotDurable`` names those
        that could not be)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._hooks.close()
        finally:
            self.archive.close()


def open_receiver(out_dir: Path, *, ae_title: str, port: int, bind: str,
                  layout: str | None, listen: bool, as_archive: bool = False
                  ) -> RunningServer | GetReceiver:
    """Start a receiver into ``out_dir``: a storage SCP listening on ``bind:port``
    (``listen``, for a C-MOVE), else the handlers alone (C-GET); the caller stops it (which
    makes every file durable) before it reports anything.

    Plain files by default (``layout`` "study" unless named), like DCMTK's ``-od``;
    ``as_archive``: an archive like serve's (index, audit, its layout), that ``dcmtool serve
    DIR`` can serve.
    """
    from dcmtool.archive.layout import DEFAULT_PATTERN, NAMED_LAYOUTS, Layout, LayoutError
    from dcmtool.archive.storage import StorePolicy

    default = DEFAULT_PATTERN if as_archive else NAMED_LAYOUTS["study"]
    try:
        pattern = Layout.parse(layout or default)
    except LayoutError as exc:
        raise UsageError(str(exc), setting="layout") from None
    # A retrieval may bring an instance we already have: keep it, count it as received.
    # The peer keeps its copies: each file is fsynced in the background as the next ones
    # arrive, instead of before its answer; stopping the receiver waits for the last ones,
    # before the command reports anything.
    policy = StorePolicy(layout=pattern, duplicates="ignore", min_free_bytes=0,
                         durable_each=False)
    if as_archive:
        archive, _ = open_archive(out_dir, policy, holder="a retrieval receiving into it")
    else:
        try:
            archive = Archive(out_dir, policy, plain=True)
        except OSError as exc:
            raise UsageError(f"--out {out_dir}: {exc.strerror or exc}") from None
    options = ServeOptions(ae_title=ae_title, port=port, bind=bind, max_associations=10)
    try:
        if not listen:
            return GetReceiver(archive, options)
        server = start_server(archive, options)
    except BaseException:
        archive.close()
        raise
    return server
