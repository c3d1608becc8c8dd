"""C-MOVE destinations: the config file's nodes, re-read while serving.

A C-MOVE names its destination by AE title only; serve knows the addresses from the config
file's ``[nodes]``. ``dcmtool config add ME ...`` while serve runs must not need a restart:
before each lookup the file's identity (inode, size, modification time) is compared with the
one read, a ``stat()`` and nothing more, and the nodes are read again when it changed (or on
``reload()``, which serve calls on SIGHUP). A file that no longer loads keeps the nodes read
before, with a warning.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path

from dcmtool.errors import ConfigError
from dcmtool.scp.report import plural

LOG = logging.getLogger("dcmtool.serve")

#: (AE title, host, port), as ``ServeOptions.destinations``.
Destination = tuple[str, str, int]
_Signature = tuple[int, int, int] | None


class MoveDestinations:
    """AE title -> (host, port), from ``nodes`` and, when ``path`` is given, that file."""

    def __init__(self, nodes: Iterable[Destination], path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._known = {aet: (host, port) for aet, host, port in nodes}
        self._signature = self._identity()

    def lookup(self, ae_title: str) -> tuple[str, int] | None:
        """The address of ``ae_title``, after re-reading the config file if it changed."""
        if self.path is not None and self._identity() != self._signature:
            self.reload("the file changed")
        return self._known.get(ae_title)

    def __len__(self) -> int:
        return len(self._known)

    def reload(self, why: str = "SIGHUP") -> bool:
        """Read the config file's nodes again; ``False`` (and the old nodes kept, with a
        warning) when it cannot be loaded."""
        from dcmtool.config import load_config

        if self.path is None:
            LOG.info("config not reloaded (%s): serving without a config file", why)
            return False
        with self._lock:
            signature = self._identity()
            try:
                config = load_config(self.path)
            except ConfigError as exc:
                self._signature = signature  # warn once per change, not per C-MOVE
                LOG.warning("config not reloaded (%s): %s; keeping the %s read before", why,
                            exc, plural(len(self._known), "node"))
                return False
            self._known = {node.ae_title: (node.host, node.port)
                           for node in config.nodes.values()}
            self._signature = signature
        LOG.info("config reloaded (%s): %s", why, plural(len(self._known), "node"))
        return True

    def _identity(self) -> _Signature:
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns
