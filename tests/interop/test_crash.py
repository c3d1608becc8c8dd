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

from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from support.datasets import make_dataset

from dcmtool.archive.storage import Archive, StorePolicy


def _sender(port: int, acknowledged: list[str], sent: list[Any], started: threading.Event,
            count: int) -> None:
    ae = AE("CRASHTEST")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", port, ae_title="DCMTOOL")
    if not assoc.is_established:
        return
    study = generate_uid()
    try:
        for index in range(count):
            ds = make_dataset(rows=64, columns=64, StudyInstanceUID=study,
                              InstanceNumber=index + 1)
            sent.append(ds)
            status = assoc.send_c_store(ds)
            if getattr(status, "Status", None) != 0x0000:
                return  # the server is gone
            acknowledged.append(str(ds.SOPInstanceUID))
            if len(acknowledged) >= 40:
                started.set()
    finally:
        if assoc.is_established:
            assoc.abort()


def test_sigkill_during_concurrent_stores_loses_nothing_acknowledged(
        serve_process: Callable[..., Any], tmp_path: Path) -> None:
    root = tmp_path / "archive"
    served = serve_process(root=root)
    acknowledged: list[str] = []
    sent: list[Any] = []
    started = threading.Event()
    senders = [threading.Thread(target=_sender, args=(served.port, acknowledged, sent,
                                                      started, 400)) for _ in range(4)]
    for thread in senders:
        thread.start()
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
