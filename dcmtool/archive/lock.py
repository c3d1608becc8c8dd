"""One process per archive folder: an advisory lock, held from opening to closing.

Two servers on one folder lose data: the second deletes the first one's partial transfers in
``.incoming`` as leftovers of a crash, and a reindex races the index writes. The lock is an
``flock`` on ``ROOT/.lock`` (released by the kernel if the process dies, so a crash never
leaves a stale lock), which also records who holds it, for the message the next one gets.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from dcmtool.errors import DcmtoolError

LOCK_FILE = ".lock"


class ArchiveInUse(DcmtoolError):
    """Another process has the archive folder open."""


class FolderLock:
    """The lock of one archive folder, taken by ``acquire`` and given back by ``release``."""

    def __init__(self, root: Path) -> None:
        self.path = root / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, holder: str) -> None:
        """Take the lock for ``holder`` (what this process does there); ``ArchiveInUse``
        naming the process that has it."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory locks to take
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise ArchiveInUse(
                f"the archive {self.path.parent} is in use by {owner}",
                hint="stop that process, or use another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()} ({holder})\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None
