"""Where things are printed: data on stdout, people on stderr, never markup from outside.

Rich is imported only when a table is drawn, so a plain ``dcmtool echo`` stays fast.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def print_table(columns: list[str], rows: list[list[Any]], *, title: str | None = None,
                justify: dict[str, str] | None = None) -> None:
    """Draw a table on stdout; cells are plain text, never interpreted as markup."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    justify = justify or {}
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for column in columns:
        table.add_column(column, justify=justify.get(column, "left"))  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in row))
    stdout_console().print(table)


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


def configure_logging(verbose: int, quiet: bool, debug: bool, log_file: Path | None) -> None:
    """Logs go to stderr: warnings by default, info with -v, everything with -d."""
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
