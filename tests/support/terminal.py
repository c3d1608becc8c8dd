"""``dcmtool`` on a pseudo-terminal of a given width, and a small screen that replays what it
drew: what a user sees, line by line, and whether anything ran past the right margin."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class Drawn:
    returncode: int
    stdout: str
    stderr: str


def _terminal(columns: int, rows: int) -> tuple[int, int]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return master, slave


def run_on_terminal(args: Sequence[str | os.PathLike[str]], *, columns: int = 80,
                    rows: int = 24, stdout_tty: bool = True, stderr_tty: bool = True,
                    env: Mapping[str, str] | None = None, timeout: float = 60.0) -> Drawn:
    """Run ``python -m dcmtool ARGS`` with stdout and/or stderr on a terminal ``columns``
    wide (each its own, so they can be told apart; the others are pipes)."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR")}
    environment.update({"COLUMNS": str(columns), "LINES": str(rows), "TERM": "xterm-256color",
                        **(env or {})})
    readers: dict[int, str] = {}
    child_ends: list[int] = []
    streams: dict[str, int] = {}
    for name, tty in (("stdout", stdout_tty), ("stderr", stderr_tty)):
        read_end, write_end = _terminal(columns, rows) if tty else os.pipe()
        readers[read_end] = name
        child_ends.append(write_end)
        streams[name] = write_end
    proc = subprocess.Popen([sys.executable, "-m", "dcmtool", *(str(a) for a in args)],
                            stdin=subprocess.DEVNULL, stdout=streams["stdout"],
                            stderr=streams["stderr"], env=environment, close_fds=True)
    for fd in child_ends:
        os.close(fd)
    output = {"stdout": bytearray(), "stderr": bytearray()}
    deadline = time.monotonic() + timeout
    try:
        while readers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dcmtool {' '.join(map(str, args))} ran for {timeout} s")
            ready, _, _ = select.select(list(readers), [], [], 0.2)
            for fd in ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the terminal's other end is closed
                    chunk = b""
                if chunk:
                    output[readers[fd]] += chunk
                else:
                    os.close(fd)
                    del readers[fd]
        returncode = proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        for fd in readers:
            os.close(fd)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Drawn(returncode, output["stdout"].decode("utf-8", "replace"),
                 output["stderr"].decode("utf-8", "replace"))


_TOKEN = re.compile(r"\x1b\[([0-?]*)[ -/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]"
                    r"|[\r\n\b\x07]|[^\x1b\r\n\b\x07]")


@dataclass
class Screen:
    """Replays terminal output: printable text, CR/LF, cursor up/down/column, erase in line.
    Records every character that ran past the right margin (a wrapped line) and the most bar
    lines (``bar`` characters) on the screen at any moment."""

    columns: int
    bar: str = "━"
    lines: list[list[str]] = field(default_factory=lambda: [[]])
    row: int = 0
    col: int = 0
    overflows: list[str] = field(default_factory=list)
    most_bars: int = 0

    def feed(self, text: str) -> Screen:
        for match in _TOKEN.finditer(text):
            token = match.group(0)
            if match.group(2):
                self._csi(match.group(1), match.group(2))
            elif token == "\r":
                self.col = 0
            elif token == "\n":
                self.row += 1
                self.col = 0
            elif token == "\b":
                self.col = max(self.col - 1, 0)
            elif token[0] in "\x1b\x07":
                pass
            else:
                self._put(token)
            self.most_bars = max(self.most_bars, sum(self.bar in "".join(line)
                                                     for line in self.lines))
        return self

    def text(self) -> list[str]:
        """The screen's lines as they stand, trailing spaces removed."""
        return ["".join(line).rstrip() for line in self.lines]

    def _line(self) -> list[str]:
        while len(self.lines) <= self.row:
            self.lines.append([])
        return self.lines[self.row]

    def _put(self, char: str) -> None:
        width = 2 if unicodedata.east_asian_width(char) in "WF" else 1
        if self.col + width > self.columns:
            self.overflows.append("".join(self._line()) + char)
            self.row += 1
            self.col = 0
        line = self._line()
        while len(line) < self.col + width:
            line.append(" ")
        line[self.col] = char
        if width == 2:
            line[self.col + 1] = ""
        self.col += width

    def _csi(self, parameters: str, final: str) -> None:
        numbers = [int(p) for p in parameters.split(";") if p.isdigit()]
        count = numbers[0] if numbers else 1
        line = self._line()
        if final == "A":
            self.row = max(self.row - count, 0)
        elif final == "B":
            self.row += count
        elif final == "C":
            self.col = min(self.col + count, self.columns - 1)
        elif final == "D":
            self.col = max(self.col - count, 0)
        elif final == "G":
            self.col = count - 1
        elif final == "K":
            mode = numbers[0] if numbers else 0
            if mode == 0:
                del line[self.col:]
            elif mode == 1:
                for index in range(min(self.col + 1, len(line))):
                    line[index] = " "
            else:
                line.clear()
