"""How serve says what happened: one summary line per association, counted nouns.

The per-association line is the default log of a server; lines per instance and per request
go to the ``dcmtool.serve.detail`` logger, which the CLI shows with ``-v`` only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``1 context``, ``2 contexts``; ``many`` for irregular plurals (``match``/``matches``)."""
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def megabytes(size: int) -> str:
    """A byte count as people read it in a log line (decimal MB, as the status line)."""
    mb = size / 1e6
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"


@dataclass
class Session:
    """What one association did, for its summary line and the audit trail."""

    who: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    stored: int = 0  # new instances written
    duplicates: int = 0  # acknowledged, the copy already stored kept (duplicate policy)
    failed: int = 0  # refused with a failure status
    size: int = 0  # bytes of the new instances
    first_failure: str | None = None
    requests: dict[str, int] = field(default_factory=dict)  # C-ECHO, C-FIND, ... -> count

    def request(self, service: str) -> None:
        self.requests[service] = self.requests.get(service, 0) + 1

    def refused(self, status: int, message: str) -> None:
        self.failed += 1
        if self.first_failure is None:
            self.first_failure = f"0x{status:04X} {message}"

    @property
    def counts(self) -> dict[str, int]:
        """The audit trail's counts (``stored`` includes duplicates acknowledged, as ever)."""
        return {"stored": self.stored + self.duplicates, "duplicates": self.duplicates,
                "refused": self.failed}

    def summary(self, closing: str | None = None) -> str:
        """``STORESCU@10.0.0.5 -> DCMTOOL: 250 stored (131 MB), 2 duplicates ignored,
        1 failed (first: 0xA900 ...) in 2.1 s``; ``closing`` (how an abort came about) is
        appended after a semicolon."""
        parts = []
        if self.stored or self.duplicates or self.failed or not self.requests:
            parts.append(f"{self.stored} stored" +
                         (f" ({megabytes(self.size)})" if self.stored else ""))
        if self.duplicates:
            parts.append(plural(self.duplicates, "duplicate") + " ignored")
        if self.failed:
            first = self.first_failure or ""
            parts.append(f"{self.failed} failed" +
                         (f" (first: {first[:160]})" if first else ""))
        parts += [plural(count, f"{service} request")
                  for service, count in self.requests.items()]
        host = str(self.who.get("peer", "")).rsplit(":", 1)[0]
        line = (f"{self.who.get('calling_aet') or '?'}@{host} -> "
                f"{self.who.get('called_aet') or '?'}: {', '.join(parts)} in "
                f"{time.monotonic() - self.started:.1f} s")
        return f"{line}; {closing}" if closing else line
