"""The archive SCP behind ``dcmtool serve``: a folder + SQLite archive behind pynetdicom.

``start_server`` builds the accepting AE (``net.acceptor``), binds the handlers
(``scp.handlers``) and listens in background threads; ``RunningServer.stop`` lets transfers
finish and closes the archive. Options and their merge with the config file are in
``scp.options``, the hook commands in ``scp.hooks``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from dcmtool.archive.storage import Archive
from dcmtool.errors import DcmtoolError
from dcmtool.net import acceptor
from dcmtool.net.links import ReceiveHandler
from dcmtool.scp.handlers import Handlers, ServerStats
from dcmtool.scp.hooks import CommandHooks
from dcmtool.scp.options import ServeOptions

LOG = logging.getLogger("dcmtool.serve")

__all__ = ["RunningServer", "ServeOptions", "ServerStats", "lenient_value_reading", "open_archive",
           "start_server"]


class RunningServer:
    """A started archive SCP. ``stop()`` stops accepting, lets transfers finish, closes."""

    def __init__(self, archive: Archive, options: ServeOptions,
                 receive: ReceiveHandler | None = None) -> None:
        self.archive = archive
        self.options = options
        self.stats = ServerStats()
        self._hooks = CommandHooks(options)
        self.handlers = Handlers(archive, options, self.stats, self._hooks)
        self._stopped = threading.Event()
        settings = acceptor_settings(options, archive.policy.min_free_bytes)
        self.ae = acceptor.make_acceptor(settings, incoming=archive.incoming,
                                         retrieve=self.handlers.retrieve,
                                         receive=receive or self._receive_more)
        try:
            tls = acceptor.server_tls(options.tls_cert, options.tls_key, options.tls_ca)
            self._server: Any = acceptor.start(self.ae, (options.bind, options.port), tls,
                                               self.handlers.bindings())
        except BaseException:
            self._hooks.close()
            raise

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def handle_store(self, event: Any) -> Any:
        """The C-STORE handler, for associations this server did not accept (C-GET)."""
        return self.handlers.on_store(event)

    def _receive_more(self, assoc: Any, answer_first: Any) -> None:
        # After the first C-STORE of an association (answered through pynetdicom), the ones
        # that follow are read off the socket: pynetdicom's DIMSE machinery costs more per
        # instance than the archive's own work.
        from dcmtool.net import receiving

        receiving.receive_more(assoc, self.store_file, self.archive.incoming, answer_first)

    def store_file(self, assoc: Any, received: Any, sop_class: str,
                   sop_instance: str, transfer_syntax: str,
                   data: bytes | bytearray | None = None) -> Any:
        """See ``Handlers.store_file``."""
        return self.handlers.store_file(assoc, received, sop_class, sop_instance,
                                        transfer_syntax, data)

    def stop(self, grace: float = 30.0) -> None:
        """Stop accepting; wait up to ``grace`` s for open associations; close the index."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        deadline = time.monotonic() + grace
        acceptor.shut_down(self._server, grace, on_abort=lambda: LOG.warning(
            "aborting an association still open after %.0f s", grace))
        self.handlers.commitment.close(max(0.0, deadline - time.monotonic()))
        self._hooks.close()
        self.archive.close()

    def reload_destinations(self, why: str = "SIGHUP") -> bool:
        """Re-read the config file's nodes (the C-MOVE destinations) now; ``False`` when it
        cannot be loaded (the nodes read before stay, with a logged warning)."""
        return self.handlers.destinations.reload(why)

    def abort_open(self) -> None:
        """Abort every open association (a second Ctrl-C while stopping)."""
        for assoc in list(self._server.active_associations):
            assoc.abort()

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()


def acceptor_settings(options: ServeOptions, min_free_bytes: int) -> acceptor.AcceptorSettings:
    """What serve's accepting AE is built with (also read by ``scp.conformance``)."""
    return acceptor.AcceptorSettings(
        ae_title=options.ae_title, transfer_syntaxes=options.transfer_syntaxes,
        max_associations=options.max_associations, max_pdu=options.max_pdu,
        acse_timeout=options.acse_timeout, dimse_timeout=options.dimse_timeout,
        network_timeout=options.network_timeout,
        require_called_aet=options.require_called_aet,
        allowed_calling_aets=options.allowed_calling_aets,
        accept_unknown_classes=options.accept_unknown,
        max_message_bytes=options.max_message_bytes,
        min_free_bytes=min_free_bytes)


def lenient_value_reading() -> None:
    """For a server process: values that break VR rules are the sender's business, stored as
    received, without a warning per element (pydicom's process-wide setting; the server sets
    it when it starts, a client that merely receives into a folder does not)."""
    import pydicom.config

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE


def start_server(archive: Archive, options: ServeOptions,
                 receive: ReceiveHandler | None = None) -> RunningServer:
    """Start the SCP on ``options.bind:options.port`` in background threads.

    ``receive`` reads the C-STOREs after the first of an association (default: straight off
    the socket, ``net.receiving.receive_more``). Raises ``DcmtoolError`` when the port cannot
    be bound or the TLS files are unusable.
    """
    return RunningServer(archive, options, receive)


def open_archive(root: Path, policy: Any, *, holder: str = "dcmtool serve",
                 rescan: bool = False) -> tuple[Archive, Any]:
    """Open (creating if needed) the archive for this process alone, and settle what a
    stop or crash left (``Archive.recover``: proportional to that, not to the archive; with
    ``rescan``, ``Archive.reconcile``: every file); ``ArchiveInUse`` when another process has
    it open."""
    from dcmtool.archive.index import IndexFailure

    try:
        archive = Archive(root, policy, holder=holder)
    except IndexFailure as exc:
        raise DcmtoolError(str(exc), hint="rebuild the index from the files",
                           setting="reindex") from None
    except OSError as exc:
        raise DcmtoolError(f"cannot open the archive {root}: {exc.strerror or exc}") from None
    try:
        report = archive.reconcile() if rescan else archive.recover()
    except BaseException:
        archive.close()
        raise
    return archive, report
