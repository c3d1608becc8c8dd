"""The audit trail: one JSON object per line in ``ROOT/audit.jsonl``.

Like the audit trail of seed 004's ImageServer: associations opened and closed, and every
instance stored or refused with the reason. Lines are flushed as they are written.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    def __init__(self, path: Path | None) -> None:
        """An audit trail appended to ``path``; ``None``: kept nowhere (a folder of files)."""
        self.path = path
        self._lock = threading.Lock()
        self._file: TextIO | None = path.open("a", encoding="utf-8") if path else None

    def write(self, event: str, **fields: Any) -> None:
        line = json.dumps({"time": utc_now(), "event": event, **fields}, ensure_ascii=False,
                          default=str)
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except OSError:
                pass  # a full disk must not stop the archive from answering

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
