"""Help text into paragraphs, and paragraphs into roff: pure text, no Typer or click."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# --------------------------------------------------------------------------------------------
# Help text


@dataclass
class Block:
    """A paragraph of click help text; ``verbatim`` for the ``\\b`` blocks click never rewraps."""

    text: str
    verbatim: bool = False


def help_text(text: str | None) -> str:
    """The help as click shows it: dedented, cut at a form feed."""
    if not text:
        return ""
    return inspect.cleandoc(text).partition("\f")[0].strip()


def paragraphs(text: str | None) -> list[Block]:
    """Split help into paragraphs the way click's ``wrap_text(preserve_paragraphs=True)`` does."""
    blocks: list[Block] = []
    current: list[str] = []

    def flush() -> None:
        if not current:
            return
        if current[0].strip() == "\b":
            lines = current[1:]
            indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
            blocks.append(Block("\n".join(x[indent:].rstrip() for x in lines), verbatim=True))
        else:
            blocks.append(Block(" ".join(x.strip() for x in current)))
        current.clear()

    for line in help_text(text).expandtabs().splitlines():
        if line.strip():
            current.append(line)
        else:
            flush()
    flush()
    return blocks


# --------------------------------------------------------------------------------------------
# Escaping


def esc(text: str) -> str:
    """Escape text for roff: backslashes, hyphens (as minus), quotes, non-ASCII characters."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\e")
        elif ch == "-":
            out.append("\\-")
        elif ch == "'":
            out.append("\\(aq")
        elif ch == "`":
            out.append("\\(ga")
        elif ch == "\b":
            continue
        elif ord(ch) > 127:
            out.append(f"\\[u{ord(ch):04X}]")
        else:
            out.append(ch)
    return "".join(out)


def arg(text: str) -> str:
    """A quoted macro argument."""
    return '"' + esc(text).replace('"', "\\(dq") + '"'


def bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def italic(text: str) -> str:
    return f"\\fI{esc(text)}\\fR"


def ref(page: str, section: str) -> str:
    """A reference to another man page: ``name(section)``."""
    return f"\\fB{esc(page)}\\fR({section})"


class Markup:
    """Escape help text; set the CLI's option names (``--probe``, ``-aet``) and `quoted` in bold."""

    def __init__(self, option_names: Iterable[str]) -> None:
        # Longest first, so "--calling-aet" wins over a shorter name it starts with.
        names = sorted(set(option_names), key=lambda n: (-len(n), n))
        alternatives = [r"`([^`\n]+)`"]
        if names:
            options = "|".join(map(re.escape, names))
            alternatives.append(r"(?<![\w\-])(" + options + r")(?![\w\-])")
        self.pattern = re.compile("|".join(alternatives))

    def __call__(self, text: str) -> str:
        out, last = [], 0
        for match in self.pattern.finditer(text):
            out.append(esc(text[last:match.start()]))
            out.append(bold(match.group(1) or match.group(2)))
            last = match.end()
        out.append(esc(text[last:]))
        return "".join(out)


# --------------------------------------------------------------------------------------------
# Pages


class Roff:
    """Collects the lines of a page; text lines never start with a control character."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def macro(self, name: str, *args: str) -> None:
        self.lines.append(" ".join((f".{name}", *args)))

    def text(self, line: str) -> None:
        """A line of already-escaped text."""
        if line.startswith((".", "'")):
            line = "\\&" + line
        self.lines.append(line)

    def section(self, title: str) -> None:
        self.macro("SH", arg(title))

    def blocks(self, blocks: Sequence[Block], markup: Markup, *, in_item: bool) -> None:
        """Paragraphs, after a .SH or (``in_item``) after the tag of a .TP item."""
        for i, block in enumerate(blocks):
            if i:
                self.macro("IP" if in_item else "PP")
            if block.verbatim:
                # .RS inside a .TP body would indent from the section margin, not the body's.
                if not in_item:
                    self.macro("RS", "4")
                self.macro("nf")
                for line in block.text.splitlines():
                    if line:
                        self.text(esc(line))
                    else:
                        self.macro("sp")
                self.macro("fi")
                if not in_item:
                    self.macro("RE")
            else:
                self.text(markup(block.text))

    def render(self) -> str:
        return "\n".join(self.lines) + "\n"
