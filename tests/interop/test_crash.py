"""serve killed (SIGKILL) while four senders store concurrently: nothing it acknowledged is
lost, the index equals the folder after the restart, and a sender's retry of what was never
acknowledged is a success."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from support.load import start_senders

from dcmtool.archive.storage import Archive, StorePolicy


def test_sigkill_during_concurrent_stores_loses_nothing_acknowledged(
        serve_process: Callable[..., Any], tmp_path: Path) -> None:
    root = tmp_path / "archive"
    served = serve_process(root=root)
    acknowledged: list[str] = []
    sent: list[Any] = []
    started = threading.Event()
    senders = start_senders(served.port, count=400, acknowledged=acknowledged, sent=sent,
                            started=started, start_after=40, calling="CRASHTEST")
    assert started.wait(60), served.process.log_tail()
    os.killpg(served.process.pid, signal.SIGKILL)  # mid-transfer, no goodbye
    for thread in senders:
        thread.join(60)
    served.process.stop()
    assert 40 <= len(acknowledged) < len(sent)  # killed with transfers in flight

    archive = Archive(root, StorePolicy(min_free_bytes=0))  # what a restart does first
    try:
        archive.reconcile()
        assert archive.index.paths() == {p.relative_to(archive.root).as_posix()
                                         for p in archive.instance_files()}
        for uid in acknowledged:
            relative = archive.index.instance_path(uid)
            assert relative is not None, f"acknowledged {uid} is not in the index"
            assert (archive.root / relative).is_file()
        assert list((archive.root / ".incoming").iterdir()) == []
    finally:
        archive.close()

    # The senders retry what was never acknowledged; some of it may have been stored just
    # before the kill. In any duplicate policy but reject that re-send is a success.
    restarted = serve_process("--duplicates", "ignore", root=root)
    ae = AE("CRASHTEST")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", restarted.port, ae_title="DCMTOOL")
    assert assoc.is_established
    try:
        unacknowledged = [ds for ds in sent if str(ds.SOPInstanceUID) not in acknowledged]
        assert unacknowledged
        statuses = {assoc.send_c_store(ds).Status for ds in unacknowledged}
    finally:
        assoc.release()
    assert statuses == {0x0000}
