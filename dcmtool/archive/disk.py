"""fsync and folder creation: what makes a stored file durable, and the threads that do it.

An fsync releases the GIL, so they run in a small pool beside the CPU work of the threads
that receive (``SYNC``), or one at a time behind the receiving when nothing waits for them
(``BEHIND``: get and move -o, whose peer keeps its copies).
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

#: fsync calls run here, beside the CPU work of the association's thread.
SYNC = ThreadPoolExecutor(max_workers=4, thread_name_prefix="dcmtool-fsync")
#: durable_each=False: one fsync at a time behind the receiving (less in its way than four).
BEHIND = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dcmtool-fsync-behind")


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_if_present(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):  # replaced since (duplicate policy: overwrite)
        fsync_file(path)


def fsync_directory(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        if os.name != "nt":  # Windows has no directory fds; elsewhere (EMFILE...) not durable
            raise
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_directory(path: Path, *, sync: bool = True) -> list[Path]:
    """Create ``path``; the folders whose entries changed (each new directory's parent),
    fsynced now unless ``sync`` is false (then the caller does, before it reports)."""
    created = []
    probe = path
    while not probe.exists():
        created.append(probe)
        probe = probe.parent
    path.mkdir(parents=True, exist_ok=True)
    parents = [directory.parent for directory in reversed(created)]
    if sync:
        for parent in parents:
            fsync_directory(parent)
    return parents
