"""dcmtool store --jobs N: worker processes that behave as one association does.

Every test compares what a user sees (the report, the summary, the exit code, what arrived)
with --jobs 1, or checks what only worker processes can get wrong: a worker killed, Ctrl-C
reaching the whole process group, errors and logs crossing from a worker to the command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from support.archive import ServedArchive
from support.datasets import write_instance
from support.peers import free_port, run_cli

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
JPEG_LS = "1.2.840.10008.1.2.4.80"


def _studies(folder: Path, sizes: list[int], sop_class: str = CT,
             prefix: str = "s") -> dict[str, list[str]]:
    """Studies of ``sizes`` files each under ``folder``: {study UID: [SOP instance UIDs]}."""
    studies: dict[str, list[str]] = {}
    for number, count in enumerate(sizes):
        study, series = generate_uid(), generate_uid()
        studies[study] = [
            str(write_instance(folder / f"{prefix}{number}" / f"{index}.dcm",
                               sop_class=sop_class, StudyInstanceUID=study,
                               SeriesInstanceUID=series, InstanceNumber=index + 1
                               ).SOPInstanceUID)
            for index in range(count)]
    return studies


def _sent(folder: Path, peer: str, report: Path, *args: str) -> tuple[Any, dict[str, Any]]:
    """``store --json --report`` and its summary, without the timing fields."""
    result = run_cli("store", peer, str(folder), "--report", str(report), "--json", *args)
    summary = json.loads(result.stdout) if result.stdout.startswith("{") else {}
    for timing in ("seconds", "megabytes"):
        summary.pop(timing, None)
    return result, summary


@pytest.mark.peer("dcmtk")
def test_two_jobs_store_every_study_once_with_the_report_of_one(
        dcmtk_storescp: Callable[..., Any], serve_archive: Callable[..., ServedArchive],
        tmp_path: Path) -> None:
    folder = tmp_path / "in"
    studies = _studies(folder, [5, 4, 3, 2, 1])
    expected = sorted(uid for uids in studies.values() for uid in uids)
    runs = []
    for jobs in ("1", "2"):
        scp = dcmtk_storescp("--fork")
        result, summary = _sent(folder, scp.address, tmp_path / f"dcmtk-{jobs}.json",
                                "--jobs", jobs)
        assert result.exit_code == 0, result.stderr
        received = sorted(dcmread(p, stop_before_pixels=True).SOPInstanceUID
                          for p in scp.received())
        assert received == expected  # each instance once
        runs.append((json.loads((tmp_path / f"dcmtk-{jobs}.json").read_text()), summary))
    assert runs[0] == runs[1]
    assert runs[1][1]["sent"] == runs[1][1]["stored"] == 15

    served = serve_archive()
    result, summary = _sent(folder, served.address, tmp_path / "serve.json", "--jobs", "2")
    assert result.exit_code == 0, result.stderr
    assert summary == runs[0][1]
    assert json.loads((tmp_path / "serve.json").read_text()) == runs[0][0]
    assert sorted(dcmread(p, stop_before_pixels=True).SOPInstanceUID
                  for p in served.files()) == expected
    audit = [json.loads(line) for line in (served.root / "audit.jsonl").read_text().splitlines()]
    assert sum(e["event"] == "association-opened" for e in audit) == 2


def test_a_refused_class_gives_the_same_outcomes_as_one_job(
        pynetdicom_scp: Callable[..., Any], tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _studies(folder, [3, 2], sop_class=CT, prefix="ct")
    _studies(folder, [2, 2], sop_class=MR, prefix="mr")
    outcomes = []
    for jobs in ("1", "2"):
        ct_only = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)],
                                 contexts=[CT])
        result, summary = _sent(folder, ct_only.address, tmp_path / f"{jobs}.json",
                                "--jobs", jobs)
        assert result.exit_code == 7
        outcomes.append((json.loads((tmp_path / f"{jobs}.json").read_text()), summary,
                         result.stderr))
    assert outcomes[0] == outcomes[1]
    rows, summary, _ = outcomes[1]
    assert (summary["stored"], summary["failed"]) == (5, 4)
    assert [row["message"] for row in rows if not row["stored"]] == \
        [f"the peer refused SOP class {MR}"] * 4


def _abort_the_association_at(uid: str, times: int) -> tuple[Callable[[Any], int], list[str]]:
    """A C-STORE handler that aborts instead of answering ``uid`` (the first ``times``)."""
    seen: list[str] = []

    def handler(event: Any) -> int:
        seen.append(str(event.request.AffectedSOPInstanceUID))
        if seen.count(uid) <= times and seen[-1] == uid:
            event.assoc.abort()
        return 0x0000

    return handler, seen


def test_an_abort_mid_batch_counts_exactly_and_resume_sends_the_rest(
        pynetdicom_scp: Callable[..., Any], tmp_path: Path) -> None:
    folder = tmp_path / "in"
    first, second = _studies(folder, [4, 4]).values()  # one study per job, in file order
    handler, seen = _abort_the_association_at(first[1], times=1)
    scp = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, handler)], storage=True)
    report = tmp_path / "report.json"
    result, summary = _sent(folder, scp.address, report, "--jobs", "2")
    assert result.exit_code == 7
    assert {k: summary[k] for k in ("sent", "stored", "failed", "not_sent")} == \
        {"sent": 6, "stored": 5, "failed": 1, "not_sent": 2}
    assert result.stderr.count("2 file(s) not sent; rerun with --resume") == 1
    rows = {row["sop_instance_uid"]: row for row in json.loads(report.read_text())}
    assert rows[first[1]]["message"].startswith("no answer: ")
    assert [rows[uid]["message"].startswith("not sent: ") for uid in first[2:]] == [True] * 2

    resumed = run_cli("store", scp.address, str(folder), "--resume", str(report), "--jobs", "2")
    assert resumed.exit_code == 0, resumed.stderr
    assert "--resume: 5 file(s) already stored" in resumed.stderr
    assert resumed.stdout.startswith("3 sent, 3 stored")
    assert sorted(seen[-3:]) == sorted(first[1:])

    handler, seen = _abort_the_association_at(second[2], times=1)
    retrying = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, handler)], storage=True)
    result, summary = _sent(folder, retrying.address, tmp_path / "retried.json", "--jobs", "2",
                            "--retries", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("retry 1 of 1") == 1  # reported by the worker, said here
    assert (summary["stored"], summary["failed"]) == (8, 0)
    assert sorted(set(seen)) == sorted(first + second) and len(seen) == 9


def _client_process(port: int) -> int:
    """The process holding the TCP connection whose local port is ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:  # gone, or not ours to read
            continue
        if links & inodes and int(pid) != os.getpid():
            return int(pid)
    raise LookupError(f"no process has a connection from port {port}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes: Linux")
@pytest.mark.timeout(120)  # the failure this guards against is a parent waiting forever
def test_a_worker_killed_mid_send_does_not_hang_the_command(
        pynetdicom_scp: Callable[..., Any], tmp_path: Path) -> None:
    folder = tmp_path / "in"
    first, second = _studies(folder, [4, 4]).values()
    killed: list[int] = []

    def kill_the_sender(event: Any) -> int:
        # The peer hangs on this file; the test kills the worker process sending it.
        if str(event.request.AffectedSOPInstanceUID) == first[1] and not killed:
            killed.append(_client_process(event.assoc.requestor.port))
            os.kill(killed[0], signal.SIGKILL)
        return 0x0000

    scp = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, kill_the_sender)], storage=True)
    report = tmp_path / "report.json"
    result, summary = _sent(folder, scp.address, report, "--jobs", "2")
    assert result.exit_code == 7
    assert (summary["stored"], summary["not_sent"]) == (5, 3)
    assert killed and killed[0] != os.getpid()
    why = f"a store worker process (pid {killed[0]}) was killed by SIGKILL"
    assert f"{why}; 3 file(s) not sent; rerun with --resume" in result.stderr
    rows = {row["sop_instance_uid"]: row for row in json.loads(report.read_text())}
    assert [rows[uid]["stored"] for uid in first + second] == [True] + [False] * 3 + [True] * 4
    assert {rows[uid]["message"] for uid in first[1:]} == {f"not sent: {why}"}
    resumed = run_cli("store", scp.address, str(folder), "--resume", str(report))
    assert resumed.exit_code == 0, resumed.stderr
    assert resumed.stdout.startswith("3 sent, 3 stored")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes: Linux")
@pytest.mark.timeout(120)
def test_a_worker_that_dies_is_reported_by_the_library(pynetdicom_scp: Callable[..., Any],
                                                       tmp_path: Path) -> None:
    from dcmtool.config import Config, resolve_peer
    from dcmtool.dicom.files import find_files
    from dcmtool.errors import PartialFailure
    from dcmtool.scu.store import check, scan, store

    folder = tmp_path / "in"
    first, _ = _studies(folder, [3, 3]).values()
    scp = pynetdicom_scp(storage=True)

    def die_at_the_second_file(ds: Dataset) -> None:  # runs in the worker sending it
        if ds.SOPInstanceUID == first[1]:
            os.kill(os.getpid(), signal.SIGKILL)

    seen: list[tuple[str | None, int]] = []
    summary = store(resolve_peer(scp.address, Config(None)),
                    scan(find_files([str(folder)])).instances, jobs=2,
                    modify=die_at_the_second_file,
                    on_file=lambda outcome, done, total: seen.append((outcome.message, done)))
    assert [done for _, done in seen] == list(range(1, 7))  # in this process, in order
    assert summary.stored == 4 and summary.not_sent == 2
    assert summary.abandoned_by is not None and "killed by SIGKILL" in \
        summary.abandoned_by.message
    with pytest.raises(PartialFailure):
        check(summary)


def test_new_uids_stay_one_per_study_across_jobs_and_resume(
        pynetdicom_scp: Callable[..., Any], serve_archive: Callable[..., ServedArchive],
        tmp_path: Path) -> None:
    folder = tmp_path / "in"
    studies = _studies(folder, [3, 3, 2])
    # A presentation-state-like reference to an image of the same study.
    study, images = next(iter(studies.items()))
    pointer = dcmread(folder / "s0" / "2.dcm")
    item = Dataset()
    item.ReferencedSOPInstanceUID = images[0]
    pointer.ReferencedImageSequence = [item]
    pointer.save_as(folder / "s0" / "2.dcm", enforce_file_format=True)
    first_run: list[Dataset] = []

    def refuse_the_third(event: Any) -> int:
        first_run.append(event.dataset)
        return 0xA700 if len(first_run) == 3 else 0x0000

    report = tmp_path / "report.json"
    refusing = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, refuse_the_third)], storage=True)
    result, summary = _sent(folder, refusing.address, report, "--jobs", "2", "--new-uids")
    assert result.exit_code == 7 and summary["stored"] == 7
    rows = json.loads(report.read_text())
    new_study = {}
    for row in rows:
        new_study.setdefault(row["original_study_instance_uid"], set()).add(
            row["study_instance_uid"])
    assert sorted(new_study) == sorted(studies)
    assert all(len(uids) == 1 for uids in new_study.values())  # one new UID per study

    served = serve_archive()
    resumed = run_cli("store", served.address, str(folder), "--resume", str(report),
                      "--new-uids", "--jobs", "2")
    assert resumed.exit_code == 0, resumed.stderr
    stored = [dcmread(p) for p in served.files()] + first_run[:2] + first_run[3:]
    assert len(stored) == 8
    by_new_study: dict[str, list[Dataset]] = {}
    for ds in stored:
        by_new_study.setdefault(str(ds.StudyInstanceUID), []).append(ds)
    assert sorted(len(files) for files in by_new_study.values()) == [2, 3, 3]
    assert set(by_new_study) == {uid for uids in new_study.values() for uid in uids}
    copies = by_new_study[next(iter(new_study[study]))]
    pointing = [ds for ds in copies if "ReferencedImageSequence" in ds]
    assert len(pointing) == 1
    target = pointing[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert target in {str(ds.SOPInstanceUID) for ds in copies} and target != images[0]


def test_workers_transcode_and_the_command_commits_what_they_stored(
        serve_archive: Callable[..., ServedArchive], isolated_config: Path, closed_port: int,
        tmp_path: Path) -> None:
    """--ts is applied in the workers; --commit asks for the instances they stored, under
    the UIDs they sent (--new-uids): all of that comes back from the workers' reports."""
    ours = "DCMTOOL-SCU"
    isolated_config.write_text(f'[local]\nae_title = "{ours}"\nbind = "127.0.0.1"\n'
                               f"port = {free_port()}\n", encoding="utf-8")
    served = serve_archive(ae_title="ARCHIVE", destinations=((ours, "127.0.0.1", closed_port),))
    folder = tmp_path / "in"
    studies = _studies(folder, [3, 2])
    result = run_cli("store", served.address, str(folder), "--jobs", "2", "--ts", "jpeg-ls",
                     "--new-uids", "--commit", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["stored"], doc["committed"], doc["not_committed"]) == (5, 5, 0)
    assert {row["transfer_syntax"] for row in doc["files"]} == {JPEG_LS}
    stored = [dcmread(p) for p in served.files()]
    assert {ds.file_meta.TransferSyntaxUID for ds in stored} == {JPEG_LS}
    assert {str(ds.SOPInstanceUID) for ds in stored} == \
        {row["sop_instance_uid"] for row in doc["files"]}
    assert not {str(ds.StudyInstanceUID) for ds in stored} & set(studies)


def test_errors_and_logs_of_the_workers_reach_the_command(
        pynetdicom_scp: Callable[..., Any], closed_port: int, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _studies(folder, [2, 2])
    rejecting = pynetdicom_scp(storage=True, require_calling_aet=["SOMEONE"])
    said = []
    for jobs in ("1", "2"):
        result = run_cli("store", rejecting.address, str(folder), "--jobs", jobs)
        assert result.exit_code == 4  # AssociationRejected, rebuilt from a worker's report
        said.append(result.stderr)
        refused = run_cli("store", f"X@127.0.0.1:{closed_port}", str(folder), "--jobs", jobs)
        assert refused.exit_code == 3
        said.append(refused.stderr)
    assert said[0] == said[2] and said[1] == said[3]
    assert "calling ae title not recognised" in said[2]

    scp = pynetdicom_scp(storage=True)
    result = run_cli("store", scp.address, str(folder), "--jobs", "2", "-d")
    assert result.exit_code == 0, result.stderr
    # pynetdicom's debug log of each worker's association, through this process's logging
    assert result.stderr.count("dcmtool: Requesting Association\n") == 2
    assert result.stderr.count("dcmtool: Association Released\n") == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="worker processes: Linux")
@pytest.mark.timeout(120)
def test_ctrl_c_to_the_process_group_stops_every_job_and_resume_sends_the_rest(
        pynetdicom_scp: Callable[..., Any], tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches every process of the group, the workers too: each
    finishes the file in flight, the rest are reported as interrupted, --resume sends
    them. The peer itself sends the SIGINT when the fourth file arrives, and answers that
    file once the command says it is stopping: no timing involved."""
    process: dict[str, subprocess.Popen[str]] = {}
    arrived: list[str] = []
    lock = threading.Lock()
    said: list[str] = []
    stopping = threading.Event()

    def on_store(event: Any) -> int:
        with lock:
            arrived.append(str(event.request.AffectedSOPInstanceUID))
            fourth = len(arrived) == 4 and "store" in process
        if fourth:
            os.killpg(process["store"].pid, signal.SIGINT)
            stopping.wait(60)  # this job has files left: they must not be sent
        return 0x0000

    def read_stderr(stream: Any) -> None:
        for line in stream:
            said.append(line)
            if "interrupted: finishing the file being sent" in line:
                stopping.set()

    scp = pynetdicom_scp(storage=True, handlers={evt.EVT_C_STORE: on_store})
    folder = tmp_path / "in"
    _studies(folder, [10, 10])
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "dcmtool", "store", scp.address, str(folder),
               "--report", str(report), "--jobs", "2"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as running:
        process["store"] = running
        reader = threading.Thread(target=read_stderr, args=(running.stderr,))
        reader.start()
        assert running.stdout is not None
        out = running.stdout.read()
        returncode = running.wait(60)
        reader.join()
    del process["store"]
    err = "".join(said)
    assert returncode == 130, err
    assert err.count("interrupted: finishing the file being sent") == 1  # the command's
    rows = json.loads(report.read_text())
    stored = sorted(row["sop_instance_uid"] for row in rows if row["stored"])
    assert stored == sorted(arrived)  # every file that went was answered and reported
    assert f"{len(stored)} sent, {len(stored)} stored" in out
    interrupted = [row["message"] for row in rows if not row["stored"]]
    assert interrupted and set(interrupted) == {"not sent: interrupted"}
    assert f"interrupted: {len(interrupted)} file(s) not sent; rerun with --resume" in err
    resumed = run_cli("store", scp.address, str(folder), "--resume", str(report), "--jobs", "2")
    assert resumed.exit_code == 0, resumed.stderr
    assert len(arrived) == 20 and len(set(arrived)) == 20
