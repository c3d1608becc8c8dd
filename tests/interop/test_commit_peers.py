"""dcmtool commit against real Storage Commitment SCPs: Orthanc 1.10 (which reports on a new
association to the AE it knows the calling AE title as) and dcmtool serve (on the same
association while we keep it open, or on a new one to the configured node of the calling AE).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.datasets import write_instance
from support.peers import free_port, modality, run_cli

from dcmtool.errors import ExitCode

OUR_AET = "DCMTOOL-SCU"


def local_config(config: Path, port: int, nodes: str = "") -> None:
    config.write_text(f'[local]\nae_title = "{OUR_AET}"\nbind = "127.0.0.1"\nport = {port}\n'
                      + nodes, encoding="utf-8")


def study(folder: Path, count: int) -> list[Any]:
    uid = "1.2.826.0.1.3680043.8.498.4242"
    return [write_instance(folder / f"{n}.dcm", StudyInstanceUID=uid, InstanceNumber=n + 1)
            for n in range(count)]


@pytest.fixture
def orthanc_scp(orthanc: Callable[..., Any], isolated_config: Path) -> tuple[Any, int]:
    """An Orthanc that knows us (DicomModalities, AllowStorageCommitment) at our port."""
    port = free_port()
    local_config(isolated_config, port)
    server = orthanc(modalities={
        "dcmtool": modality(OUR_AET, port, AllowStorageCommitment=True)})
    return server, port


@pytest.mark.peer("orthanc")
def test_orthanc_commits_what_it_stored(orthanc_scp: tuple[Any, int], tmp_path: Path) -> None:
    server, port = orthanc_scp
    written = study(tmp_path / "in", 3)
    assert server.config["DicomModalities"]["dcmtool"]["Port"] == port
    stored = run_cli("store", server.address, tmp_path / "in", catch_exceptions=False)
    assert stored.exit_code == 0, stored.output
    report = tmp_path / "commit.json"
    result = run_cli("commit", server.address, tmp_path / "in", "--json", "--wait", "30",
                     "--report", report, catch_exceptions=False)
    assert result.exit_code == 0, result.output + server.log_tail()
    doc = json.loads(result.stdout)
    assert (doc["total"], doc["committed"], doc["failed"]) == (3, 3, 0)
    [transaction] = doc["transactions"]
    assert transaction["reported_via"] == "new association"
    assert transaction["reporter"] == server.aet
    assert {row["sop_instance_uid"] for row in doc["instances"]} == \
        {str(ds.SOPInstanceUID) for ds in written}
    assert json.loads(report.read_text(encoding="utf-8"))["transactions"][0][
        "transaction_uid"] == transaction["transaction_uid"]


@pytest.mark.peer("orthanc")
def test_orthanc_says_which_instance_it_does_not_have(orthanc_scp: tuple[Any, int],
                                                      tmp_path: Path) -> None:
    server, _port = orthanc_scp
    written = study(tmp_path / "in", 3)
    missing = tmp_path / "in" / "0.dcm"
    for path in sorted((tmp_path / "in").iterdir())[1:]:
        server.rest.upload(path)
    result = run_cli("commit", server.address, tmp_path / "in", "--jsonl", "--wait", "30")
    assert result.exit_code == ExitCode.PARTIAL, result.output + server.log_tail()
    rows = {row["sop_instance_uid"]: row for row in map(json.loads, result.stdout.splitlines())}
    lost = rows[str(written[0].SOPInstanceUID)]
    assert missing.name in str(lost["source"])
    assert (lost["result"], lost["reason"]) == ("failed", "0x0112 (no such object instance)")
    assert [rows[str(ds.SOPInstanceUID)]["result"] for ds in written[1:]] == \
        ["committed", "committed"]


@pytest.mark.peer("orthanc")
def test_store_then_commit_to_orthanc_in_one_command(orthanc_scp: tuple[Any, int],
                                                     tmp_path: Path) -> None:
    server, _port = orthanc_scp
    study(tmp_path / "in", 4)
    report = tmp_path / "sent.json"
    result = run_cli("store", server.address, tmp_path / "in", "--commit", "--wait", "30",
                     "--report", report, catch_exceptions=False)
    assert result.exit_code == 0, result.output + server.log_tail()
    lines = result.stdout.splitlines()
    assert lines[0].startswith("4 sent, 4 stored")
    assert lines[1].startswith("storage commitment: 4 instance(s): 4 committed, 0 failed; "
                               f"1 of 1 transaction(s) reported on a new association by "
                               f"{server.aet}")
    rows = json.loads(report.read_text(encoding="utf-8"))
    assert {(row["stored"], row["committed"]) for row in rows} == {(True, True)}
    assert len({row["transaction_uid"] for row in rows}) == 1


@pytest.mark.peer("orthanc")
def test_orthanc_that_does_not_know_us_aborts_and_the_hint_says_why(
        orthanc: Callable[..., Any], isolated_config: Path, tmp_path: Path) -> None:
    local_config(isolated_config, free_port())
    server = orthanc()  # no DicomModalities entry for us
    study(tmp_path / "in", 1)
    assert run_cli("store", server.address, tmp_path / "in").exit_code == 0
    result = run_cli("commit", server.address, tmp_path / "in", "--wait", "2")
    assert result.exit_code == ExitCode.ASSOCIATION_ABORTED, result.output
    assert result.stderr.splitlines()[-2:] == [
        f"dcmtool: error: {server.address} aborted the association during the N-ACTION "
        "(storage commitment request)",
        "dcmtool: hint: the peer's log says why; a storage commitment SCP may abort a request "
        f"from an AE title it does not know: it must know {OUR_AET} at this host and port to "
        "report to",
    ]


# -- dcmtool serve as the SCP ------------------------------------------------------------------


def serve_knowing_us(serve_archive: Callable[..., Any], port: int) -> Any:
    """serve with us as a node ([nodes] of its config): where a new association goes."""
    return serve_archive(ae_title="ARCHIVE", destinations=((OUR_AET, "127.0.0.1", port),))


def test_serve_reports_on_the_same_association_we_keep_open(
        serve_archive: Callable[..., Any], isolated_config: Path, closed_port: int,
        tmp_path: Path) -> None:
    local_config(isolated_config, free_port())
    served = serve_knowing_us(serve_archive, closed_port)  # a new association would fail
    written = study(tmp_path / "in", 5)
    assert run_cli("store", served.address, tmp_path / "in").exit_code == 0
    result = run_cli("commit", served.address, tmp_path / "in", "--json", "--wait", "30",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["committed"] == 5
    [transaction] = doc["transactions"]
    assert (transaction["reported_via"], transaction["reporter"]) == \
        ("same association", "ARCHIVE")
    assert {row["sop_instance_uid"] for row in doc["instances"]} == \
        {str(ds.SOPInstanceUID) for ds in written}


def test_serve_reports_on_a_new_association_after_we_release(
        serve_archive: Callable[..., Any], isolated_config: Path, tmp_path: Path) -> None:
    port = free_port()
    local_config(isolated_config, port)
    # serve may try the association first, racing our release (J.3.3.1.2: "this operation may
    # fail because the SCU is free to release at any time"); its DIMSE timeout bounds that.
    served = serve_archive(ae_title="ARCHIVE", destinations=((OUR_AET, "127.0.0.1", port),),
                           dimse_timeout=3)
    study(tmp_path / "in", 3)
    assert run_cli("store", served.address, tmp_path / "in").exit_code == 0
    result = run_cli("commit", served.address, tmp_path / "in", "--release", "--json",
                     "--wait", "30", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [transaction] = json.loads(result.stdout)["transactions"]
    assert (transaction["reported_via"], transaction["reporter"]) == \
        ("new association", "ARCHIVE")


def test_serve_per_study_on_the_same_association(
        serve_archive: Callable[..., Any], isolated_config: Path, closed_port: int,
        tmp_path: Path) -> None:
    local_config(isolated_config, free_port())
    served = serve_knowing_us(serve_archive, closed_port)
    for n in range(6):
        write_instance(tmp_path / "in" / f"{n}.dcm",
                       StudyInstanceUID=f"1.2.826.0.1.3680043.8.498.50{n % 3}")
    assert run_cli("store", served.address, tmp_path / "in").exit_code == 0
    result = run_cli("commit", served.address, tmp_path / "in", "--per-study", "--json",
                     "--wait", "30", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [t["instances"] for t in doc["transactions"]] == [2, 2, 2]
    assert {t["reported_via"] for t in doc["transactions"]} == {"same association"}


def test_serve_fails_what_it_does_not_keep_with_the_reason_in_words(
        serve_archive: Callable[..., Any], isolated_config: Path, closed_port: int,
        tmp_path: Path) -> None:
    local_config(isolated_config, free_port())
    served = serve_knowing_us(serve_archive, closed_port)
    written = study(tmp_path / "in", 3)
    assert run_cli("store", served.address, tmp_path / "in" / "1.dcm",
                   tmp_path / "in" / "2.dcm").exit_code == 0
    # The same instance UID under another class than stored: a class/instance conflict.
    other = write_instance(tmp_path / "other" / "x.dcm", sop_class="1.2.840.10008.5.1.4.1.1.4",
                           SOPInstanceUID=str(written[1].SOPInstanceUID))
    assert str(other.SOPInstanceUID) == str(written[1].SOPInstanceUID)
    result = run_cli("commit", served.address, tmp_path / "in" / "0.dcm",
                     tmp_path / "in" / "2.dcm", tmp_path / "other" / "x.dcm", "--jsonl",
                     "--wait", "30")
    assert result.exit_code == ExitCode.PARTIAL, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(row["result"], row["reason"]) for row in rows] == [
        ("failed", "0x0112 (no such object instance)"),
        ("committed", ""),
        ("failed", "0x0119 (class/instance conflict)"),
    ]


def test_store_commit_to_serve_in_one_command(
        serve_archive: Callable[..., Any], isolated_config: Path, closed_port: int,
        tmp_path: Path) -> None:
    local_config(isolated_config, free_port())
    served = serve_knowing_us(serve_archive, closed_port)
    study(tmp_path / "in", 4)
    result = run_cli("store", served.address, tmp_path / "in", "--commit", "--json",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["stored"], doc["committed"], doc["not_committed"]) == (4, 4, 0)
    assert {row["committed"] for row in doc["files"]} == {True}


def test_serve_refuses_an_ae_it_cannot_report_to(serve_archive: Callable[..., Any],
                                                 isolated_config: Path,
                                                 tmp_path: Path) -> None:
    local_config(isolated_config, free_port())
    served = serve_archive(ae_title="ARCHIVE")  # no nodes
    study(tmp_path / "in", 1)
    assert run_cli("store", served.address, tmp_path / "in").exit_code == 0
    result = run_cli("commit", served.address, tmp_path / "in")
    assert result.exit_code == ExitCode.DIMSE_FAILURE, result.output
    assert result.stderr.splitlines()[-1].startswith(
        "dcmtool: error: the peer refused the storage commitment request: 0x0110 (processing "
        f"failure): unknown AE {OUR_AET}: add it as a node")


# -- MPPS against dcmtool serve ----------------------------------------------------------------


def test_mpps_create_complete_against_serve_and_no_change_after(
        serve_archive: Callable[..., Any], tmp_path: Path) -> None:
    served = serve_archive(ae_title="ARCHIVE")
    written = study(tmp_path / "exam", 2)
    created = run_cli("mpps", served.address, "create", "-aet", "CT01", "-k", "Modality=CT",
                      "-k", "PatientID=P1", "-k", "PatientName=DOE^J", catch_exceptions=False)
    assert created.exit_code == 0, created.output
    [step] = created.stdout.split()
    completed = run_cli("mpps", served.address, "complete", step, "--series-from",
                        tmp_path / "exam", "-aet", "CT01", catch_exceptions=False)
    assert completed.exit_code == 0, completed.output
    again = run_cli("mpps", served.address, "discontinue", step, "-aet", "CT01")
    assert again.exit_code == ExitCode.DIMSE_FAILURE, again.output
    # (serve, in this process, logs its refusal on the same stderr first)
    said = [line for line in again.stderr.splitlines()
            if line.startswith(("dcmtool: error:", "dcmtool: hint:"))]
    assert said == [
        f"dcmtool: error: {served.address} refused the N-SET of step {step}: 0x0110 "
        "(processing failure): performed procedure step already COMPLETED",
        "dcmtool: hint: a step COMPLETED or DISCONTINUED cannot be changed any more "
        "(PS3.4 F.7.2.2)"]
    kept = served.server.handlers.mpps.steps.load(step)  # what serve keeps of the step
    assert kept.PerformedProcedureStepStatus == "COMPLETED"
    assert kept.PerformedStationAETitle == "CT01"
    assert {(str(series.SeriesInstanceUID), str(r.ReferencedSOPInstanceUID))
            for series in kept.PerformedSeriesSequence
            for r in series.ReferencedImageSequence} == \
        {(str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)) for ds in written}


def test_mpps_set_of_an_unknown_step_against_serve(serve_archive: Callable[..., Any]) -> None:
    served = serve_archive(ae_title="ARCHIVE")
    result = run_cli("mpps", served.address, "set", "1.2.826.0.1.3680043.8.498.9", "-k",
                     "PerformedProcedureStepDescription=x")
    assert result.exit_code == ExitCode.DIMSE_FAILURE, result.output
    assert "0x0112 (no such SOP instance)" in result.stderr
