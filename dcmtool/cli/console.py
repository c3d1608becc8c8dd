"""Where things are printed: data on stdout, people on stderr, never markup from outside.

Rich is imported only when a table is drawn, so a plain ``dcmtool echo`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from rich.console import Console


def out(line: str = "") -> None:
    """One line of data on stdout."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def err(line: str) -> None:
    """One line for people on stderr."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def error(message: str, hint: str | None = None) -> None:
    err(f"dcmtool: error: {message}")
    if hint:
        err(f"dcmtool: hint: {hint}")


def stdout_console() -> Console:
    from rich.console import Console

    # Text from peers and files is never markup; colour only on a terminal. Piped output keeps
    # whole cells (rich would otherwise assume 80 columns and cut them).
    width = None if sys.stdout.isatty() else 1000
    return Console(file=sys.stdout, markup=False, highlight=False, emoji=False, soft_wrap=False,
                   width=width)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr, markup=False, highlight=False, emoji=False)


@dataclass(frozen=True)
class Column:
    """A table column: its title and how it gives way when the terminal is narrow.

    ``whole`` cells are never wrapped or cut (UIDs, which are copied into other commands);
    other cells wrap. ``rank`` makes the column droppable: when the table does not fit, the
    lowest rank goes first. ``None`` (the default) keeps it.
    """

    title: str
    justify: Literal["left", "right", "center"] = "left"
    whole: bool = False
    rank: int | None = None


#: Wrapping cells narrower than this makes a table harder to read than leaving a column out.
MIN_WRAP = 10
#: A text column is not wrapped narrower than half its longest cell (two lines), up to this.
HALF_UP_TO = 30
#: Between two columns (collapsed padding).
GAP = 2


def fit_columns(columns: Sequence[Column], naturals: Sequence[int], width: int
                ) -> list[int | None]:
    """Each column's width in a table ``width`` cells wide, or None for a column left out.

    ``naturals`` are the widths that show every cell on one line. Text columns wrap first,
    to about two lines (half their natural width, at least ``MIN_WRAP``, at most
    ``HALF_UP_TO``); then droppable columns are left out, lowest rank first (rightmost first
    among equals), until the table fits. Whole columns keep their natural width; only a
    terminal too narrow for them alone makes rich fold them onto a second line (never cut).
    """
    def minimum(index: int) -> int:
        column, natural = columns[index], naturals[index]
        if column.whole:
            return natural
        word = max((len(w) for w in column.title.split()), default=1)
        return min(natural, max(MIN_WRAP, word, min(-(-natural // 2), HALF_UP_TO)))

    kept = list(range(len(columns)))

    def needed() -> int:
        return sum(minimum(i) for i in kept) + GAP * max(len(kept) - 1, 0)

    while needed() > width:
        droppable = [i for i in kept if columns[i].rank is not None]
        if not droppable:
            break
        kept.remove(min(droppable, key=lambda i: (columns[i].rank, -i)))
    widths: list[int | None] = [None] * len(columns)
    for index in kept:
        widths[index] = minimum(index)
    spare = width - needed()
    while spare > 0:  # to the column that lacks the most, one cell at a time
        lacking = max(kept, key=lambda i: naturals[i] - (widths[i] or 0), default=None)
        if lacking is None or naturals[lacking] <= (widths[lacking] or 0):
            break
        widths[lacking] = (widths[lacking] or 0) + 1
        spare -= 1
    return widths


def print_table(columns: Sequence[str | Column], rows: list[list[Any]], *,
                title: str | None = None, justify: dict[str, str] | None = None
                ) -> list[str]:
    """Draw a table on stdout, fitted to the terminal; returns the titles left out.

    Cells are plain text, never interpreted as markup, and never cut: they wrap, except
    ``whole`` columns, which stay on one line. Off a terminal the table is as wide as its
    cells.
    """
    from rich import box
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    specs = [c if isinstance(c, Column) else
             Column(c, justify=(justify or {}).get(c, "left"))  # type: ignore[arg-type]
             for c in columns]
    cells = [["" if cell is None else str(cell) for cell in row] for row in rows]
    naturals = [max([cell_len(spec.title)] + [max(cell_len(line) for line in row[i].split("\n"))
                                              for row in cells])
                for i, spec in enumerate(specs)]
    console = stdout_console()
    widths = fit_columns(specs, naturals, console.width)
    kept = [i for i, w in enumerate(widths) if w is not None]
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", show_edge=False,
                  pad_edge=False, collapse_padding=True)
    for index in kept:
        spec = specs[index]
        table.add_column(spec.title, justify=spec.justify, width=widths[index],
                         overflow="fold", no_wrap=False)
    for row in cells:
        table.add_row(*(Text(row[i]) for i in kept))
    console.print(table)
    return [specs[i].title for i, w in enumerate(widths) if w is None]


class _OneLineFormatter(logging.Formatter):
    def __init__(self, fmt: str, *, tracebacks: bool = False) -> None:
        super().__init__(fmt)
        # On a terminal, clear a status line (serve) before writing over it.
        self.prefix = "\r\x1b[K" if sys.stderr.isatty() else ""
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and not self.tracebacks:
            # What a peer sent wrong is one line; the traceback is for --debug (and
            # --traceback) and the log file.
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None,
                                            "exc_text": None})
        text = super().format(record)
        level = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        return f"{self.prefix}dcmtool: {level}{text}".replace("\n", "\n    ")


class _LibraryFilter(logging.Filter):
    """Drops records of the named libraries below their level."""

    def __init__(self, levels: dict[str, int]) -> None:
        super().__init__()
        self.levels = levels

    def filter(self, record: logging.LogRecord) -> bool:
        library = record.name.split(".", 1)[0]
        return record.levelno >= self.levels.get(library, 0)


def _library_warning(message: Warning | str, category: type[Warning], filename: str,
                     lineno: int, file: Any = None, line: str | None = None) -> None:
    # A library's warning (pydicom on a value it finds odd) is one line of our log, with -v:
    # dcmtool reports what it means for the user itself.
    logging.getLogger("dcmtool.library").info("%s: %s", category.__name__, message)


def configure_logging(verbose: int, quiet: bool, debug: bool, log_file: Path | None) -> None:
    """Logs go to stderr: warnings by default, info with -v, everything with -d."""
    import warnings

    warnings.showwarning = _library_warning
    if debug:
        level = logging.DEBUG
    elif verbose:
        level = logging.INFO
    elif quiet:
        level = logging.ERROR
    else:
        level = logging.WARNING
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_dcmtool", False):
            root.removeHandler(handler)
    stream_handler = logging.StreamHandler(sys.stderr)
    stream_handler.setFormatter(_OneLineFormatter("%(message)s", tracebacks=debug))
    stream_handler.setLevel(level)
    # pydicom resets its logger's level when it is imported (after this runs); a filter on
    # our handler stays. dcmtool reports codec failures itself, in one line.
    stream_handler.addFilter(_LibraryFilter(
        {"pydicom": logging.DEBUG if debug else logging.CRITICAL,
         "pynetdicom": logging.DEBUG if debug else (logging.WARNING if verbose
                                                    else logging.CRITICAL)}))
    stream_handler._dcmtool = True  # type: ignore[attr-defined]
    root.addHandler(stream_handler)
    root.setLevel(min(level, logging.INFO) if log_file else level)
    if log_file:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        file_handler.setLevel(logging.DEBUG if debug else logging.INFO)
        file_handler._dcmtool = True  # type: ignore[attr-defined]
        root.addHandler(file_handler)
    # pynetdicom logs every connection failure as ERROR; dcmtool reports those itself in one
    # line, so its own logs appear only with -d (PDU/DIMSE dumps) or -v (warnings).
    net_level = logging.DEBUG if debug else (logging.WARNING if verbose else logging.CRITICAL)
    logging.getLogger("pynetdicom").setLevel(net_level)
    # pydicom logs a codec failure with its traceback; dcmtool reports it in one line.
    logging.getLogger("pydicom").setLevel(logging.DEBUG if debug else logging.CRITICAL)
