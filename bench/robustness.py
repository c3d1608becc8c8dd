"""The robustness report: load held, faults survived, hostile inputs tried, and what was lost.

    python -m bench.robustness [--cases 3000] [--seed 1] [--instances 400]

Runs with dcmtool's own Python (it uses pynetdicom as the senders and the fuzzer's recorder),
against a real ``dcmtool serve`` on loopback, and prints one Markdown table:

* load: four senders storing concurrently; every instance acknowledged must be in the index;
* fault: the server killed (SIGKILL) in the middle of that load and restarted; instances
  acknowledged before the kill and lost after it (must be 0);
* hostile inputs: mutated sessions (tests/support/fuzz.py); crashes, hangs past the timeouts,
  thread deaths, peak RSS (Linux /proc).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import bench  # noqa: F401  (puts tests/ on sys.path for the support helpers)


def _serve(root: Path, log: Path, *args: str) -> Any:
    from support.processes import free_port, spawn, wait_for_port

    port = free_port()
    process = spawn("dcmtool serve", [sys.executable, "-m", "dcmtool", "serve", str(root),
                                      "--port", str(port), "--aet", "DCMTOOL", "--min-free",
                                      "0", *args], log)
    wait_for_port(process, port)
    return process, port


def _indexed(root: Path, uids: list[str]) -> int:
    from dcmtool.archive.storage import Archive, StorePolicy

    archive = Archive(root, StorePolicy(min_free_bytes=0))
    try:
        archive.reconcile()
        return sum(1 for uid in uids if archive.index.instance_path(uid) is not None)
    finally:
        archive.close()


def main(argv: list[str] | None = None) -> int:
    from support import fuzz
    from support.load import echo_ok, start_senders

    from dcmtool.net import patches

    # The senders are pynetdicom clients: without dcmtool's fixes a response can be lost to
    # pynetdicom#875 and a sender stops early, which would count against serve.
    patches.apply()

    parser = argparse.ArgumentParser(prog="python -m bench.robustness")
    parser.add_argument("--cases", type=int, default=3000, help="hostile sessions")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--instances", type=int, default=400, help="per sender")
    options = parser.parse_args(argv)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="dcmtool-robustness-") as work:
        root, logs = Path(work) / "archive", Path(work) / "logs"
        # Load held.
        process, port = _serve(root, logs / "load.log")
        acknowledged: list[str] = []
        started = time.monotonic()
        for thread in start_senders(port, count=options.instances, acknowledged=acknowledged,
                                    calling="ROBUST"):
            thread.join()
        seconds = time.monotonic() - started
        process.stop()
        rows.append(("load: 4 concurrent senders, instances acknowledged",
                     f"{len(acknowledged)} in {seconds:.1f} s"))
        rows.append(("load: acknowledged and indexed",
                     f"{_indexed(root, acknowledged)} of {len(acknowledged)}"))
        # A fault: SIGKILL mid-load, restart.
        process, port = _serve(root, logs / "kill.log")
        before_kill: list[str] = []
        half = threading.Event()
        threads = start_senders(port, count=options.instances, acknowledged=before_kill,
                                started=half, start_after=options.instances, calling="ROBUST")
        half.wait(120)
        os.killpg(process.pid, signal.SIGKILL)
        for thread in threads:
            thread.join(60)
        process.stop()
        lost = len(before_kill) - _indexed(root, before_kill)
        rows.append(("fault: SIGKILL during 4 senders, acknowledged before it",
                     str(len(before_kill))))
        rows.append(("fault: instances lost (must be 0)", str(lost)))
        # Hostile inputs.
        process, port = _serve(root, logs / "fuzz.log", "--acse-timeout", "2",
                               "--network-timeout", "3", "--max-associations", "50")
        try:
            session = fuzz.recorded_session("127.0.0.1", port, "DCMTOOL")

            report = fuzz.run("127.0.0.1", port, session, options.cases, options.seed,
                              alive=process.running,
                              open_connections=lambda: fuzz.open_tcp_connections(
                                  process.pid, port),
                              healthy=lambda: echo_ok("127.0.0.1", port, "DCMTOOL"),
                              settle=15.0)
            report.peak_rss_mib = fuzz.peak_rss_mib(process.pid)
            report.threads = fuzz.threads(process.pid)
        finally:
            process.stop()
        log = (logs / "fuzz.log").read_text(errors="replace")
        report.thread_deaths = log.count("Exception in thread") + log.count("Exception in DUL")
        for line in report.table().splitlines():
            name, value = (cell.strip() for cell in line.strip("|").split("|"))
            rows.append((f"hostile: {name}", value))
    print(f"dcmtool robustness, seed {options.seed}\n")
    print("| figure | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0 if lost == 0 and report.crashes == 0 and report.hangs == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
