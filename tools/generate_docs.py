"""Generate the shell completions and man pages of dcmtool from its CLI.

    python tools/generate_docs.py           # (re)write completions/ and man/
    python tools/generate_docs.py --check   # exit 1 and list stale files, 0 if up to date

``generate()`` returns ``{relative_path: content}`` without writing anything (the test
``tests/test_generated_docs.py`` compares it with the committed files).

The completion scripts come from Typer's own completion machinery, for a fixed shell. The man
pages are roff written from the click command tree of ``dcmtool.cli.app.app``: one page for
``dcmtool`` and one per (sub)command, e.g. ``dcmtool-echo.1`` and ``dcmtool-config-add.1``.
The output depends only on the CLI and ``dcmtool.__version__``: no dates, no terminal width,
no environment.

The work is done in ``tools/docgen/``: ``walk`` (the only module touching Typer and click),
``roff`` (the roff writer), ``compose`` (the pages and scripts) and ``output`` (the files).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

# docgen/ sits beside this script; a test loads the script by path, so tools/ may not be on
# sys.path yet.
_TOOLS = str(Path(__file__).resolve().parent)
if _TOOLS not in sys.path:
    sys.path.insert(0, _TOOLS)

from docgen.compose import HEADER, completion_scripts, generate, man_pages  # noqa: E402
from docgen.output import ROOT, existing_files, stale_files, write_files_to  # noqa: E402
from docgen.walk import COMPLETE_VAR, PROG, command_tree  # noqa: E402

__all__ = [
    "COMPLETE_VAR",
    "HEADER",
    "PROG",
    "ROOT",
    "command_tree",
    "completion_scripts",
    "existing_files",
    "generate",
    "main",
    "man_pages",
    "stale_files",
    "write_files_to",
]

REGENERATE = "python tools/generate_docs.py"


def main(argv: Sequence[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 and list the files that are out of date")
    options = parser.parse_args(argv)
    if options.check:
        problems = stale_files(root)
        for path, state in problems.items():
            print(f"{state}: {path}")
        if problems:
            print(f"generated files are out of date: run `{REGENERATE}`", file=sys.stderr)
            return 1
        print("generated files are up to date")
        return 0
    done = write_files_to(root)
    for path, state in done.items():
        print(f"{'removed' if state == 'extra' else 'wrote'}: {path}")
    print(f"{len(done)} file(s) changed" if done else "generated files are up to date")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # this checkout's dcmtool, even without an install
    sys.exit(main())
