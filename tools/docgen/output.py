"""The generated directories on disk: which files are missing, stale or extra; rewriting them."""

from __future__ import annotations

from pathlib import Path

from docgen.compose import generate

#: The repository: tools/docgen/output.py is two directories below it.
ROOT = Path(__file__).resolve().parents[2]
#: The directories the generator owns: every file in them is generated (others are stale).
OUTPUT_DIRS = ("completions", "man", "dcmtool/cli/generated")


def existing_files(root: Path = ROOT) -> list[str]:
    """The files now in the generated directories (hidden files such as .gitkeep excepted)."""
    found = []
    for directory in OUTPUT_DIRS:
        base = root / directory
        if base.is_dir():
            found += [p.relative_to(root).as_posix() for p in sorted(base.rglob("*"))
                      if p.is_file() and not p.name.startswith(".")]
    return sorted(found)


def stale_files(root: Path = ROOT, files: dict[str, str] | None = None) -> dict[str, str]:
    """``{path: "missing" | "stale" | "extra"}`` for every file that is not what we generate."""
    files = generate() if files is None else files
    problems = {}
    for path, content in files.items():
        target = root / path
        if not target.is_file():
            problems[path] = "missing"
        elif target.read_text(encoding="utf-8") != content:
            problems[path] = "stale"
    for path in existing_files(root):
        if path not in files:
            problems[path] = "extra"
    return dict(sorted(problems.items()))


def write_files_to(root: Path = ROOT, files: dict[str, str] | None = None) -> dict[str, str]:
    """Write what changed and delete extra files; returns what was done, like stale_files."""
    files = generate() if files is None else files
    problems = stale_files(root, files)
    for path, state in problems.items():
        target = root / path
        if state == "extra":
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(files[path], encoding="utf-8", newline="\n")
    return problems
