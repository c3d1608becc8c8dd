"""What a new user hits first, against real peers (issue: first hour with dcmtool)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from support.archive import ServedArchive
from support.datasets import pydicom_test_file
from support.peers import run_cli

#: pydicom's RT files name one SOP Instance UID in the File Meta and another in the data set.
DISAGREEING = ("rtplan.dcm", "rtdose.dcm")


def _data_set_uids() -> set[str]:
    return {str(dcmread(pydicom_test_file(name)).SOPInstanceUID) for name in DISAGREEING}


def test_store_sends_the_data_sets_uid_to_serve(
        serve_archive: Callable[..., ServedArchive]) -> None:
    served = serve_archive()
    result = run_cli("store", served.address, *(pydicom_test_file(n) for n in DISAGREEING))
    assert result.exit_code == 0, result.output
    assert result.stderr.count("the File Meta disagrees with the data set") == 2
    # the whole UIDs, never cut
    for name in DISAGREEING:
        ds = dcmread(pydicom_test_file(name))
        assert str(ds.file_meta.MediaStorageSOPInstanceUID) in result.stderr
        assert str(ds.SOPInstanceUID) in result.stderr
    stored = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in served.files()}
    assert stored == _data_set_uids()


@pytest.mark.peer("dcmtk")
def test_store_sends_the_data_sets_uid_to_dcmtk_storescp(
        dcmtk_storescp: Callable[..., Any]) -> None:
    scp = dcmtk_storescp()
    result = run_cli("store", scp.address, *(pydicom_test_file(n) for n in DISAGREEING))
    assert result.exit_code == 0, result.output
    received = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in scp.received()}
    assert received == _data_set_uids()


def test_an_abort_mid_batch_is_said_once_and_resume_keeps_the_new_uids(
        pynetdicom_scp: Callable[..., Any], tmp_path: Path) -> None:
    import csv

    from pydicom.uid import generate_uid
    from pynetdicom import evt
    from support.datasets import write_instance

    study = generate_uid()
    files = [tmp_path / "in" / f"{i}.dcm" for i in range(5)]
    for path in files:
        write_instance(path, StudyInstanceUID=study)
    received: list[Any] = []

    def abort_third(event: Any) -> int:
        if len(received) == 2:
            event.assoc.abort()
            return 0x0000
        received.append(event.dataset)
        return 0x0000

    scp = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, abort_third)], storage=True)
    report = tmp_path / "sent.csv"
    result = run_cli("store", scp.address, str(tmp_path / "in"), "--new-uids", "--report",
                     str(report))
    assert result.exit_code == 7, result.output
    assert result.stderr.count("not sent") == 1
    assert f"2 file(s) not sent; rerun with --resume {report}" in result.stderr
    assert "dcmtool: failed:" in result.stderr and result.stderr.count("dcmtool: failed:") == 1
    assert result.stdout.startswith("3 sent, 2 stored (0 with warnings), 1 failed, 2 not sent,")
    rows = list(csv.DictReader(report.open(encoding="utf-8")))
    stored = [r for r in rows if r["stored"] == "True"]
    assert len(stored) == 2
    new_study = stored[0]["study_instance_uid"]
    assert new_study != study and {r["original_study_instance_uid"] for r in stored} == {study}
    assert {r["sop_instance_uid"] for r in stored} == {str(d.SOPInstanceUID) for d in received}
    originals = {str(dcmread(p).SOPInstanceUID) for p in files}
    assert {r["original_sop_instance_uid"] for r in stored} <= originals

    received.clear()
    again = pynetdicom_scp(handlers=[(evt.EVT_C_STORE,
                                      lambda e: received.append(e.dataset) or 0x0000)],
                           storage=True)
    whole = tmp_path / "whole.json"
    result = run_cli("store", again.address, str(tmp_path / "in"), "--new-uids", "--resume",
                     str(report), "--report", str(whole))
    assert result.exit_code == 0, result.output
    assert len(received) == 3
    assert {str(d.StudyInstanceUID) for d in received} == {new_study}  # the same new study
    # the new report is whole: the two stored before and the three stored now
    import json

    rows = json.loads(whole.read_text())
    assert len(rows) == 5 and all(r["stored"] is True for r in rows)
    assert {r["study_instance_uid"] for r in rows} == {new_study}
