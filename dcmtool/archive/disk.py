"""fsync and folder creation: what makes a stored file durable, and the threads that do it.

An fsync releases the GIL, so they run in a small pool beside the CPU work of the threads
that receive (``SYNC``), or one at a time behind the receiving when nothing waits for them
(``BEHIND``: get and move -o, whose peer keeps its copies).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path


class Job:
    """One fsync handed to a ``Workers`` thread; ``result()`` waits for it (re-raising its
    OSError). A lock as the latch: lighter than a Future, which the receiving thread pays
    for every instance while it holds the GIL."""

    __slots__ = ("_done", "_error")

    def __init__(self) -> None:
        self._done = threading.Lock()
        self._done.acquire()
        self._error: OSError | None = None  # set by the worker before it releases

    def result(self) -> None:
        with self._done:
            pass
        if self._error is not None:
            raise self._error


class Workers:
    """Threads that run fsyncs (``submit``) beside the threads that receive."""

    def __init__(self, count: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[Path], None], Path, Job]] = \
            queue.SimpleQueue()
        self._count, self._name = count, name
        self._started = 0
        self._lock = threading.Lock()

    def submit(self, work: Callable[[Path], None], path: Path) -> Job:
        job = Job()
        if self._started < self._count:
            self._start_one()
        self._queue.put((work, path, job))
        return job

    def _start_one(self) -> None:
        with self._lock:
            if self._started < self._count:
                self._started += 1
                threading.Thread(target=self._run, name=f"{self._name}_{self._started}",
                                 daemon=True).start()

    def _run(self) -> None:
        while True:
            work, path, job = self._queue.get()
            try:
                work(path)
            except OSError as exc:
                job._error = exc
            except Exception as exc:  # a bug: still an error for the waiting store
                job._error = OSError(f"{type(exc).__name__}: {exc}")
            finally:
                job._done.release()


#: fsync calls run here, beside the CPU work of the association's thread.
SYNC = Workers(4, "dcmtool-fsync")
#: durable_each=False: one fsync at a time behind the receiving (less in its way than four).
BEHIND = Workers(1, "dcmtool-fsync-behind")


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
