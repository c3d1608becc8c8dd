"""The console script. ``dcmtool --help`` prints the text generated from the CLI
(``generated/help.txt``, kept current by ``tools/generate_docs.py --check``) without importing
typer and every option of the CLI: a third of what starting the full CLI costs. Everything
else runs the typer app."""

from __future__ import annotations

import os
import sys

#: click's help is at most 80 columns wide: on a terminal at least that wide the generated
#: text is exactly what it would print.
HELP_COLUMNS = 80


def main() -> None:
    if sys.argv[1:] in (["--help"], ["-h"]) and _columns() >= HELP_COLUMNS \
            and "_DCMTOOL_COMPLETE" not in os.environ:
        text = _generated_help()
        if text is not None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
    from dcmtool.cli.app import main as run

    run()


def _columns() -> int:
    """The terminal width as click sees it (``shutil.get_terminal_size``, without importing
    shutil)."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def _generated_help() -> str | None:
    """The generated text; ``None`` if the install lacks it (then the CLI renders it)."""
    path = os.path.join(os.path.dirname(__file__), "generated", "help.txt")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return None
