"""serve: dcmtool's archive SCP beside DCMTK storescp and Orthanc, all fed by DCMTK storescu
(one of them, or four at once in serve-ingest-concurrent).

Every run starts each server afresh on empty storage (untimed), times storescu alone, then
checks that the server stored every instance and stops it.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from support.orthanc import wait_for_orthanc
from support.processes import ManagedProcess, free_port

from bench.fixture import (
    LOCALHOST,
    NODELAY,
    SERVE_AET,
    SERVER_START_TIMEOUT,
    STORESCP_AET,
    CaseSkipped,
    DataSet,
    Fixture,
    ServerProcess,
    Tools,
    count_files,
    launch_argv,
    launched,
    peak_rss,
)
from bench.harness import ITEMS_PER_S, MB_PER_S, MIB, Program, Target, case
from bench.orthanc import ORTHANC_AET, bench_orthanc_config, orthanc_rest, require_orthanc


@dataclass
class Receiver:
    """One server of the serve cases, and how a row reaches it."""

    label: str
    role: str
    server: ServerProcess
    aet: str


def dcmtool_serve(tools: Tools, fx: Fixture, keep_used: bool = False) -> Receiver:
    root = fx.tempdir(prefix="serve-") / "archive"
    server = fx.fresh_server(
        "dcmtool-serve",
        lambda port: [*tools.dcmtool, "serve", str(root), "--port", str(port),
                      "--aet", SERVE_AET, "--min-free", "0"],
        storage=[root], aet=SERVE_AET, keep_used=keep_used,
        # Instances only (the default layout ends in .dcm), not .incoming/, the index or audit.
        count=lambda: count_files(root, ".dcm"))
    return Receiver("dcmtool serve", "dcmtool", server, SERVE_AET)


def dcmtk_storescp_receiver(tools: Tools, fx: Fixture, keep_used: bool = False,
                            fork: bool = False) -> Receiver:
    """``fork``: a process per association (``--fork``), for concurrent senders; without it
    storescp takes one association at a time."""
    storescp = tools.dcmtk("storescp")
    out = fx.tempdir(prefix="storescp-") / "out"
    options = ["--fork"] if fork else []
    server = fx.fresh_server(
        "storescp",
        lambda port: [storescp, *options, "-aet", STORESCP_AET, "-od", str(out), str(port)],
        storage=[out], env=NODELAY, aet=STORESCP_AET, count=lambda: count_files(out),
        keep_used=keep_used)
    label = "DCMTK storescp --fork (no index/fsync)" if fork else "DCMTK storescp (no index/fsync)"
    return Receiver(label, "peer", server, STORESCP_AET)


def orthanc_receiver(tools: Tools, fx: Fixture, keep_used: bool = False) -> Receiver:
    orthanc = require_orthanc()
    directory = fx.tempdir(prefix="orthanc-")
    config_path = directory / "orthanc.json"
    http: dict[str, int] = {}

    def argv(port: int) -> list[str]:
        http["port"] = free_port()
        config = bench_orthanc_config(directory, port, http["port"])
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        return [orthanc, str(config_path)]

    def serves_rest(proc: ManagedProcess) -> None:
        # Each run is checked over REST, and Orthanc's HTTP server can come up after its
        # DICOM one: wait for both.
        wait_for_orthanc(proc, aet=ORTHANC_AET, dicom_port=server.port,
                         http_port=http["port"], timeout=SERVER_START_TIMEOUT)

    def count() -> int:
        return orthanc_rest(http["port"]).instance_count()

    server = fx.fresh_server(
        "orthanc", argv, storage=[directory / "storage", directory / "index", directory / "tmp"],
        env=NODELAY,  # its DICOM side is DCMTK: without TCP_NODELAY=1, Nagle stalls it
        aet=ORTHANC_AET, count=count, ready=serves_rest, keep_used=keep_used,
        kill_to_stop=True)  # its storage is thrown away; SIGTERM takes ~5 s to exit
    return Receiver("Orthanc (SQLite, fsync)", "peer", server, ORTHANC_AET)


def peak_rss_of(server: ServerProcess) -> Callable[[float], float]:
    """A row's ``measure``: the server's peak RSS after the run, instead of the run's time."""
    return lambda seconds: peak_rss(server.pid)


def storescu_rows(tools: Tools, fx: Fixture, data: DataSet,
                  targets: dict[str, Target | None] | None = None,
                  measure_rss: bool = False) -> list[Program]:
    """One row per receiver: the same storescu command (one association for the whole set)
    pointed at dcmtool serve, Orthanc and DCMTK storescp, each started afresh per run."""
    storescu = tools.dcmtk("storescu")
    tools.dcmtk("echoscu")  # the servers' readiness check
    # Set each run's storage aside rather than delete it between runs (see ServerProcess.stop),
    # when there is room for every run's copy; never for the 1 GiB instance.
    keep = not measure_rss and fx.has_room(fx.rounds * 3 * data.nbytes)
    if not keep and not measure_rss:
        fx.note(f"not enough free disk to keep every run's copy of the data "
                f"({fx.rounds * 3 * data.nbytes / 2**30:.1f} GiB): storage is deleted between "
                f"runs, which slows file creation for every server")
    receivers = [dcmtool_serve(tools, fx, keep), orthanc_receiver(tools, fx, keep),
                 dcmtk_storescp_receiver(tools, fx, keep)]
    rows = []
    for r in receivers:
        target = (targets or {}).get(r.aet)
        server = r.server
        rows.append(Program(
            r.label, [storescu, "-aec", r.aet, LOCALHOST, str(server.port), "+sd", str(data.dir)],
            role=r.role, env=NODELAY, target=target, work=data.nbytes,
            items=None if measure_rss else data.files,
            before_each=server.start,
            measure=peak_rss_of(server) if measure_rss else None,
            after_each=functools.partial(server.finish, data.files),
            server=[f"{k}={v}" for k, v in server.env.items()] + server.argv_for_port(server.port)))
    return rows


@case("serve-ingest-ct", MB_PER_S, "storescu sends 500 CT images (512x512x16 bit, ~513 KB) "
      "in one association to dcmtool serve / Orthanc / DCMTK storescp", runs=9, warmups=1)
def serve_ingest_ct_case(tools: Tools, fx: Fixture) -> list[Program]:
    tools.dcmtk("storescu")
    fx.require_free(2**30, "500 CT images and one stored copy")
    data = fx.data("ct", "--count", "500", "--series", "5")
    return storescu_rows(tools, fx, data, targets={ORTHANC_AET: Target.ratio(">=", 1.5)})


@case("serve-ingest-small", MB_PER_S, "storescu sends 2,000 small images (64x64x16 bit, "
      "~9 KB) in one association to dcmtool serve / Orthanc / DCMTK storescp", runs=9,
      warmups=1)
def serve_ingest_small_case(tools: Tools, fx: Fixture) -> list[Program]:
    tools.dcmtk("storescu")
    fx.require_free(2**28, "2,000 small images and one stored copy")
    data = fx.data("small", "--count", "2000", "--series", "20")
    return storescu_rows(tools, fx, data, targets={ORTHANC_AET: Target.ratio(">=", 1.0)})


@case("serve-rss", MIB, "peak RSS (VmHWM) of each server receiving one 1 GiB multi-frame "
      "instance from storescu", runs=3, warmups=0)
def serve_rss_case(tools: Tools, fx: Fixture) -> list[Program]:
    tools.dcmtk("storescu")
    if not Path("/proc/self/status").is_file():
        raise CaseSkipped("needs /proc/PID/status (Linux) for the peak RSS")
    # The 1 GiB file, one stored copy at a time (servers are emptied after each run), slack.
    fx.require_free(3 * 2**30, "a 1 GiB instance and its stored copy")
    data = fx.data("big", "--size", "1GiB")
    rows = storescu_rows(tools, fx, data, measure_rss=True)
    rows[0].target = Target.absolute("<=", 150)
    return rows


CONCURRENT_SENDERS = 4


def split_folders(fx: Fixture, data: DataSet, parts: int) -> list[Path]:
    """The data set's files in name order, hard-linked into ``parts`` folders of consecutive
    files (for make_data.py small with --studies PARTS: a study each)."""
    base = fx.tempdir(prefix="senders-")
    folders = [base / f"sender-{i + 1}" for i in range(parts)]
    if fx.listing:
        return folders
    files = sorted(p for p in data.dir.iterdir() if p.is_file())
    for i, folder in enumerate(folders):
        folder.mkdir()
        for path in files[i * len(files) // parts:(i + 1) * len(files) // parts]:
            os.link(path, folder / path.name)
    return folders


def report_seconds(report: Path, _seconds: float) -> float:
    return launched(report, "seconds")


@case("serve-ingest-concurrent", ITEMS_PER_S, f"{CONCURRENT_SENDERS} DCMTK storescu at once, each "
      "sending its own 500 small images (64x64x16 bit, a study each) in one association, to "
      "dcmtool serve / Orthanc / DCMTK storescp --fork", runs=9, warmups=1)
def serve_ingest_concurrent_case(tools: Tools, fx: Fixture) -> list[Program]:
    storescu = tools.dcmtk("storescu")
    tools.dcmtk("echoscu")  # the servers' readiness check
    fx.require_free(2**28, "2,000 small images and one stored copy")
    data = fx.data("small", "--count", "2000", "--series", "20", "--studies",
                   str(CONCURRENT_SENDERS))
    folders = split_folders(fx, data, CONCURRENT_SENDERS)
    keep = fx.has_room(fx.rounds * 3 * data.nbytes)
    if not keep:
        fx.note("not enough free disk to keep every run's copy of the data: storage is "
                "deleted between runs, which slows file creation for every server")
    receivers = [dcmtool_serve(tools, fx, keep), orthanc_receiver(tools, fx, keep),
                 dcmtk_storescp_receiver(tools, fx, keep, fork=True)]
    reports = fx.tempdir(prefix="parallel-reports-")
    rows = []
    for r in receivers:
        server = r.server
        report = reports / f"{server.name}.json"
        rows.append(Program(
            r.label,
            launch_argv("parallel", report, *[a for f in folders for a in ("--each", str(f))],
                        "--", storescu, "-aec", r.aet, LOCALHOST, str(server.port), "+sd",
                        "{}"),
            role=r.role, env=NODELAY, work=data.files, before_each=server.start,
            measure=functools.partial(report_seconds, report),
            after_each=functools.partial(server.finish, data.files),
            server=[f"{k}={v}" for k, v in server.env.items()] + server.argv_for_port(server.port)))
    # Issue #18: 4 concurrent senders of small instances >= 1.5x Orthanc with 4.
    rows[1].target = Target.ratio(">=", 1.5)
    fx.note(f"bench/launch.py parallel starts the {CONCURRENT_SENDERS} storescu (TCP_NODELAY=1) "
            "at once and waits for all: the figure is 2,000 over the time from the start of "
            "the first to the end of the last (the launcher's own start is not in it)")
    return rows
