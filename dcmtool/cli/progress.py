"""Progress for long commands: one ``rich.progress`` bar on stderr, then one summary line.

The bar is drawn only when stderr is a terminal and ``--quiet`` was not given; otherwise
nothing is drawn and rich is not even imported (start-up time matters). It is fitted to the
terminal's width on every refresh: the details go first, then the bar shrinks, so it stays one
line and never wraps into copies of itself. When the work ends the bar is erased and one line
says what was done; the command's own summary (stdout) follows as before.

The library reports progress through plain callbacks (``scu.store``'s and
``dicom.convert``'s ``(outcome, done, total)``, ``scu.retrieve``'s ``(Progress)``); the
adapters below implement them on a :class:`Bar`::

    with progress.files("store", total=len(instances), quiet=settings.quiet) as on_file:
        summary = send(..., on_file=on_file)    # on_file is None when nothing is drawn

A command that has no adapter yet uses :func:`bar` and :class:`Bar` directly.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from dcmtool.scu.retrieve import Progress as RetrieveState

#: The narrowest bar worth drawing; the details give way first.
MIN_BAR = 10
#: Room kept for the time column ("--:--", "0:07", "1:02:03") and the gaps between columns.
_TIME = 8
_GAPS = 4


def drawing(quiet: bool = False) -> bool:
    """Whether a bar would be drawn: stderr is a terminal and not ``--quiet``."""
    return not quiet and sys.stderr.isatty()


class Bar:
    """One progress bar on stderr: ``LABEL ━━━━━╸──── 37/120 files  DETAIL  0:07``.

    Parameters
    ----------
    label
        What is running (``store``, ``move 2/3``); shown first and in the summary line.
    total
        The number of units, when known (the bar pulses while it is ``None``).
    unit
        What is counted (``files``, ``instances``).
    console
        Where to draw; by default a console on stderr (tests pass their own).
    """

    def __init__(self, label: str, *, total: int | None = None, unit: str = "files",
                 console: Console | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
        from rich.table import Column

        self.label = label
        self.unit = unit
        self.total = total
        self.completed = 0
        self.detail = ""
        self.started = time.monotonic()
        self.console = console or Console(file=sys.stderr, highlight=False, emoji=False)
        self._closed = False
        # Labels and details hold text from peers (accession numbers): never markup.
        self._progress: Progress = Progress(
            TextColumn("{task.description}", markup=False, table_column=Column(no_wrap=True)),
            BarColumn(bar_width=None, table_column=Column(ratio=1, min_width=1)),
            TextColumn("{task.fields[count]}", markup=False, table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[detail]}", markup=False,
                       table_column=Column(no_wrap=True, overflow="ellipsis")),
            TimeRemainingColumn(compact=True, table_column=Column(no_wrap=True)),
            console=self.console, expand=True, transient=True,
            # Data printed meanwhile stays on stdout; stderr lines (warnings, retries) are
            # printed above the bar.
            redirect_stdout=False, redirect_stderr=True,
        )
        self._task: TaskID = self._progress.add_task(label, total=total, **self._fields())
        self._progress.start()

    def update(self, completed: int | None = None, *, total: int | None = None,
               advance: int = 0, detail: str | None = None, label: str | None = None) -> None:
        """Set (or ``advance``) the count, the total, the detail text or the label."""
        if self._closed:
            return
        if completed is not None:
            self.completed = completed
        self.completed += advance
        if total is not None:
            self.total = total
        if detail is not None:
            self.detail = detail
        if label is not None:
            self.label = label
        self._progress.update(self._task, completed=self.completed, total=self.total,
                              description=self.label, **self._fields())

    def restart(self, *, total: int | None = None, label: str | None = None) -> None:
        """Start the bar over (the next request of a retrieval): count, rate and time."""
        if self._closed:
            return
        self.completed, self.detail = 0, ""
        self.total = total
        self.label = label or self.label
        self._progress.reset(self._task, total=total, description=self.label,
                             **self._fields())

    def close(self, summary: str | None = None) -> None:
        """Erase the bar and print ``summary`` (default: label, count, detail and time) as
        one line fitted to the width. ``summary=""`` prints nothing."""
        if self._closed:
            return
        self._closed = True
        self._progress.stop()
        line = self.summary() if summary is None else summary
        if line:
            from rich.text import Text

            self.console.print(Text(line), no_wrap=True, overflow="ellipsis", crop=True,
                               soft_wrap=False)

    def abandon(self) -> None:
        """Erase the bar without a summary (the command failed or was interrupted)."""
        self.close("")

    def summary(self) -> str:
        """``LABEL: COUNT, DETAIL in TIME``; without the detail when that is too wide."""
        took = f" in {time.monotonic() - self.started:.1f} s"
        line = f"{self.label}: {self._count()}, {self.detail}{took}" if self.detail else ""
        if not line or len(line) > self.console.width:
            line = f"{self.label}: {self._count()}{took}"
        return line

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()

    def _count(self) -> str:
        if self.total is None:
            return f"{self.completed} {self.unit}"
        return f"{self.completed}/{self.total} {self.unit}"

    def _fields(self) -> dict[str, Any]:
        # Fitted here rather than left to rich, which would squeeze the bar to one cell and
        # cut every column: the detail is shown only when it leaves room for a useful bar.
        count = self._count()
        room = self.console.width - len(self.label) - len(count) - _TIME - _GAPS - MIN_BAR
        detail = self.detail if len(self.detail) <= room else ""
        return {"count": count, "detail": detail}


def bar(label: str, *, total: int | None = None, unit: str = "files",
        quiet: bool = False) -> Bar | None:
    """A :class:`Bar` when one is drawn (stderr is a terminal, not ``quiet``), else None."""
    return Bar(label, total=total, unit=unit) if drawing(quiet) else None


class FileProgress:
    """The ``(outcome, done, total)`` callback of ``scu.store`` and ``dicom.convert``.

    ``size_of`` gives an outcome's bytes, so the detail shows megabytes and the rate; it may
    be called from the library's worker threads.
    """

    def __init__(self, bar: Bar, size_of: Callable[[Any], int] | None = None,
                 total_bytes: int = 0) -> None:
        self.bar = bar
        self.size_of = size_of
        self.total_bytes = total_bytes
        self.bytes = 0
        self._lock = threading.Lock()

    def __call__(self, outcome: Any, done: int, total: int) -> None:
        with self._lock:
            detail = None
            if self.size_of is not None:
                self.bytes += self.size_of(outcome)
                elapsed = max(time.monotonic() - self.bar.started, 1e-6)
                detail = (f"{self.bytes / 1e6:.1f}/{self.total_bytes / 1e6:.1f} MB, "
                          f"{self.bytes / 1e6 / elapsed:.1f} MB/s")
            self.bar.update(done, total=total, detail=detail)


class RetrieveProgress:
    """The ``(Progress)`` callback of ``scu.retrieve.move``/``get``: one bar, started over
    for each request (``move 2/3``), counting the sub-operations of the current one."""

    def __init__(self, bar: Bar, label: str, requests: int) -> None:
        self.bar = bar
        self.name = label
        self.requests = requests
        self.request = 0
        self._current: str | None = None
        self._done = 0

    def __call__(self, state: RetrieveState) -> None:
        done = state.completed + state.failed + state.warning
        if state.label != self._current or done < self._done:
            self._current = state.label
            self.request += 1
            label = self.name if self.requests <= 1 else \
                f"{self.name} {min(self.request, self.requests)}/{self.requests}"
            self.bar.restart(total=done + state.remaining, label=label)
        self._done = done
        problems = "".join(f", {count} {what}" for count, what in
                           ((state.failed, "failed"), (state.warning, "warnings")) if count)
        self.bar.update(done, total=done + state.remaining,
                        detail=f"{state.received} received{problems}")

    def summary(self) -> str:
        # The counts arrive in the final responses, which the callback does not see: the
        # command's own summary line gives them.
        requests = f"{self.requests} request" + ("" if self.requests == 1 else "s")
        return f"{self.name}: {requests} in {time.monotonic() - self.bar.started:.1f} s"


@contextmanager
def files(label: str, *, total: int, size_of: Callable[[Any], int] | None = None,
          total_bytes: int = 0, quiet: bool = False) -> Iterator[FileProgress | None]:
    """A bar over ``total`` files; yields the library callback, or None when not drawn."""
    drawn = bar(label, total=total, quiet=quiet)
    if drawn is None:
        yield None
        return
    with drawn:
        yield FileProgress(drawn, size_of, total_bytes)


@contextmanager
def retrievals(label: str, *, requests: int, quiet: bool = False
               ) -> Iterator[RetrieveProgress | None]:
    """A bar over the sub-operations of ``requests`` C-MOVE or C-GET requests; yields the
    library callback, or None when not drawn."""
    drawn = bar(label, unit="instances", quiet=quiet)
    if drawn is None:
        yield None
        return
    adapter = RetrieveProgress(drawn, label, requests)
    try:
        yield adapter
    except BaseException:
        drawn.abandon()
        raise
    drawn.close(adapter.summary())
