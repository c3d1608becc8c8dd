"""dcmtool serve and DCMTK's storescu (#14): a folder sent twice succeeds both times, as it
does with Orthanc and storescp, and the log says the second copies were ignored."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from support.archive import ServeProcess
from support.datasets import write_instance
from support.peers import require_program
from support.processes import dcmtk_env

STORESCU = "/usr/bin/storescu"


def _storescu(served: ServeProcess, folder: Path) -> subprocess.CompletedProcess[str]:
    program = require_program(STORESCU, "dcmtk", "DCMTK storescu")
    return subprocess.run(
        [program, "-aet", "STORESCU", "-aec", served.ae_title, "+sd", "127.0.0.1",
         str(served.port), str(folder)],
        capture_output=True, text=True, timeout=120, env=dcmtk_env())


def _log_when(served: ServeProcess, pattern: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = served.process.log_path.read_text(encoding="utf-8", errors="replace")
        if re.search(pattern, text, flags=re.MULTILINE):
            return text
        if time.monotonic() > deadline:
            pytest.fail(f"{pattern!r} not in serve's log after {timeout:g} s:\n{text}")
        time.sleep(0.02)


@pytest.mark.peer("dcmtk")
def test_storescu_sends_a_folder_twice_and_both_succeed(
        serve_process: Callable[..., ServeProcess], tmp_path: Path) -> None:
    served = serve_process()
    folder = tmp_path / "study"
    study = generate_uid()
    for index in range(4):
        write_instance(folder / f"{index}.dcm", StudyInstanceUID=study, InstanceNumber=index)
    first = _storescu(served, folder)
    assert first.returncode == 0, first.stdout + first.stderr
    _log_when(served, r"^dcmtool: STORESCU@127\.0\.0\.1 -> DCMTOOL: 4 stored \(")
    second = _storescu(served, folder)
    assert second.returncode == 0, second.stdout + second.stderr
    log = _log_when(served, r"^dcmtool: STORESCU@127\.0\.0\.1 -> DCMTOOL: 0 stored, "
                            r"4 duplicates ignored in \d+\.\d s$")
    assert "warning" not in log and "error" not in log, log
    stored = [p for p in served.root.rglob("*.dcm") if ".incoming" not in p.parts]
    assert len(stored) == 4
