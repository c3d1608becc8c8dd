"""serve killed (SIGKILL) while eight senders store concurrently, their instances committed in
groups: nothing it acknowledged is lost, what a restart does (``Archive.recover``, without
walking the folder) leaves the index equal to the folder, and a sender's retry of what was
never acknowledged is a success."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
from support.load import check_archive, start_senders

from dcmtool.archive.storage import Archive, StorePolicy
from dcmtool.net.patches import apply as apply_pynetdicom_fixes

SENDERS = 8  # enough that instances of several associations wait on the same commit
PER_SENDER = 100
#: Instances acknowledged (in all) before the kill.
KILL_AFTER = 80


def test_sigkill_during_group_commits_loses_nothing_acknowledged(
        serve_process: Callable[..., Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    apply_pynetdicom_fixes()  # pynetdicom#875 in the senders: a response lost, 30 s waited
    root = tmp_path / "archive"
    served = serve_process(root=root)
    acknowledged: list[str] = []
    sent: list[Any] = []
    started = threading.Event()
    senders = start_senders(served.port, count=PER_SENDER, senders=SENDERS,
                            acknowledged=acknowledged, sent=sent, started=started,
                            start_after=KILL_AFTER, calling="CRASHTEST")
    assert started.wait(60), served.process.log_tail()
    os.killpg(served.process.pid, signal.SIGKILL)  # mid-transfer, no goodbye
    for thread in senders:
        thread.join(60)
    served.process.stop()
    assert KILL_AFTER <= len(acknowledged) < len(sent)  # killed with transfers in flight

    archive = Archive(root, StorePolicy(min_free_bytes=0))
    try:
        # What a restart does, and only that: a walk of the whole folder (the full
        # reconcile, or any os.walk) would make a restart cost the archive's size.
        walks: list[str] = []

        def walk(*args: Any, **kwargs: Any) -> Any:
            walks.append("walked")
            raise AssertionError("recover() walked the whole folder")

        with monkeypatch.context() as patch:
            patch.setattr(Archive, "instance_files", walk)
            patch.setattr(os, "walk", walk)
            report = archive.recover()
        assert not walks
        assert not report.walked
        # The journal keeps the last batch until the next commit: the kill left one to settle.
        assert report.checked >= 1, report
        check_archive(archive, acknowledged)
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
    restarted.process.stop()

    archive = Archive(root, StorePolicy(min_free_bytes=0))
    try:  # each instance sent is stored once, the retried ones too
        check_archive(archive, [str(ds.SOPInstanceUID) for ds in sent])
        assert archive.index.counts()["instances"] == len(sent)
    finally:
        archive.close()
