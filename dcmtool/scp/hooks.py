"""``--on-stored`` and ``--on-study-complete``: shell commands run after instances arrive."""

from __future__ import annotations

import logging
import queue
import shlex
import subprocess
import threading
import time
from typing import Any

from dcmtool.archive.storage import StoreOutcome
from dcmtool.scp.options import ServeOptions

LOG = logging.getLogger("dcmtool.serve")


class CommandHooks:
    """Runs --on-stored / --on-study-complete commands on a worker thread, never on the
    association's own thread (a slow hook must not stall the sender)."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self._jobs: queue.Queue[str | None] = queue.Queue()
        self._studies: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        if options.on_stored or options.on_study_complete:
            self._threads.append(threading.Thread(target=self._run, name="dcmtool-hooks",
                                                  daemon=True))
        if options.on_study_complete:
            self._threads.append(threading.Thread(target=self._watch_studies,
                                                  name="dcmtool-studies", daemon=True))
        for thread in self._threads:
            thread.start()

    @staticmethod
    def expand(template: str, values: dict[str, str]) -> str:
        """Replace {name} placeholders with shell-quoted values (never interpreted)."""
        out = template
        for key, value in values.items():
            out = out.replace("{" + key + "}", shlex.quote(value))
        return out

    def stored(self, outcome: StoreOutcome, calling_ae: str, called_ae: str) -> None:
        if outcome.path is None:
            return
        values = {
            "path": str(outcome.path), "dir": str(outcome.path.parent),
            "sop": outcome.sop_instance_uid or "", "study": outcome.study_instance_uid or "",
            "calling_aet": calling_ae, "called_aet": called_ae,
        }
        if self.options.on_stored:
            self._jobs.put(self.expand(self.options.on_stored, values))
        if self.options.on_study_complete and outcome.study_instance_uid:
            with self._lock:
                entry = self._studies.setdefault(outcome.study_instance_uid, {"count": 0})
                entry.update(values, last=time.monotonic())
                entry["count"] += 1

    def _watch_studies(self) -> None:
        period = max(0.05, min(1.0, self.options.study_timeout / 4))
        while not self._stop.wait(period):
            self._flush_studies(time.monotonic() - self.options.study_timeout)
        self._flush_studies(float("inf"))  # at shutdown, every open study is complete

    def _flush_studies(self, idle_before: float) -> None:
        assert self.options.on_study_complete
        with self._lock:
            done = [uid for uid, e in self._studies.items() if e["last"] <= idle_before]
            entries = [self._studies.pop(uid) for uid in done]
        for entry in entries:
            values = {k: str(v) for k, v in entry.items() if k != "last"}
            self._jobs.put(self.expand(self.options.on_study_complete, values))

    def _run(self) -> None:
        while True:
            command = self._jobs.get()
            if command is None:
                return
            try:
                result = subprocess.run(command, shell=True, capture_output=True, text=True,
                                        timeout=600)
                if result.returncode:
                    LOG.warning("hook exited with %d: %s: %s", result.returncode, command,
                                result.stderr.strip()[:200])
            except (OSError, subprocess.SubprocessError) as exc:
                LOG.warning("hook failed: %s: %s", command, exc)

    def close(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.name == "dcmtool-studies":
                thread.join(timeout)
        self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)
