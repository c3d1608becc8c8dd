"""Fuzzing serve with mutated PDUs (tests/support/fuzz.py): a short profile here, the long one
with ``FUZZ_CASES=20000 python -m pytest tests/cli/test_fuzz.py -s``."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from support import fuzz
from support.load import echo_ok


def test_serve_survives_mutated_sessions(serve_process: Callable[..., Any]) -> None:
    """Hundreds of mutated sessions against a real ``dcmtool serve``: no crash, no thread
    death, no connection held past the timeouts, bounded memory, and the next client is
    served."""
    cases = int(os.environ.get("FUZZ_CASES", "300"))
    seed = int(os.environ.get("FUZZ_SEED", "13"))
    served = serve_process("--acse-timeout", "2", "--network-timeout", "3",
                           "--max-associations", "50")
    host, port = "127.0.0.1", served.port
    session = fuzz.recorded_session(host, port, served.ae_title)
    pid = served.process.pid
    report = fuzz.run(
        host, port, session, cases, seed,
        alive=served.process.running,
        open_connections=lambda: fuzz.open_tcp_connections(pid, port),
        healthy=lambda: echo_ok(host, port, served.ae_title), settle=10.0)
    report.peak_rss_mib = fuzz.peak_rss_mib(pid)
    report.threads = fuzz.threads(pid)
    log = served.process.log_path.read_text(errors="replace")
    # A dead thread prints "Exception in thread"; pynetdicom's DUL reports its own crash.
    report.thread_deaths = log.count("Exception in thread") + log.count("Exception in DUL")
    print(f"\nfuzz (seed {seed}):\n{report.table()}")
    assert report.crashes == 0, served.process.log_tail()
    assert report.thread_deaths == 0, served.process.log_tail(80)
    assert report.hangs == 0
    assert report.peak_rss_mib < 200
    assert report.threads < 10  # listener, hooks: no association's threads left
