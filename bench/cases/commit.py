"""commit: storage commitment (issue 16). dcmtool commit asks dcmtool serve and Orthanc, each
holding the same 10,000 small instances, to commit 500 or all 10,000 of them; the figure is
the time from the N-ACTION to the report (the transaction's ``seconds`` in dcmtool commit's
``--report``), so the client's start and its scan of the files do not count: it is the SCPs'
time to check what they keep and report it.

The archives are loaded once per bench run (untimed): serve's by ``dcmtool serve --reindex``
over hard links (its own way of taking in files, as the qr cases load theirs), Orthanc's by
POST /instances. Each case starts both servers once; serve knows the client as a node (it
reports only to AEs it can reach) and so does Orthanc (DicomModalities, AllowStorageCommitment).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from support.orthanc import modality, run_orthanc
from support.processes import PeerStartError, free_port, spawn

from bench.cases.qr_archives import LOAD_TIMEOUT, load_orthanc
from bench.fixture import (
    LOCALHOST,
    NODELAY,
    SERVE_AET,
    DataSet,
    Fixture,
    ServerError,
    Tools,
    dicom_echo,
    log_tail,
    start_failure,
)
from bench.harness import MS, Program, Target, case
from bench.orthanc import ORTHANC_AET, bench_orthanc_config, require_orthanc

COMMIT_TOTAL = 10_000  # small instances (64x64x16 bit) in each archive
COMMIT_AET = "COMMITSCU"  # the client's AE title, a node of serve and a modality of Orthanc
WAIT = "1200"  # --wait: far above any time measured, so a slow report is a slow figure
#: Orthanc 1.10.1 takes minutes for 10,000: its time per instance grows with the transaction
#: (here ~2 ms at 500, ~4 ms at 2,000, 31-36 ms at 10,000: 314-360 s), so its runs may.
ORTHANC_RUN_TIMEOUT = 1200.0


@dataclass
class CommitArchives:
    data: DataSet
    serve_root: Path
    orthanc_dir: Path


def commit_archives(tools: Tools, fx: Fixture) -> CommitArchives:
    """The 10,000 instances, and serve's and Orthanc's archives of them (once per bench run)."""
    found: CommitArchives | None = tools.state.get("commit")
    if found is not None:
        return found
    data = fx.shared_data(("small", "--count", str(COMMIT_TOTAL), "--series", "100"))
    base = tools.tmp / "commit-archives" if fx.listing else Path(
        tempfile.mkdtemp(prefix="commit-archives-", dir=tools.tmp))
    archives = CommitArchives(data, base / "serve", base / "orthanc")
    if fx.listing:
        return archives
    fx.require_free(4 * data.nbytes + 2**30, "the commit archives (serve's and Orthanc's)")
    (archives.serve_root / "small").mkdir(parents=True)
    for path in sorted(data.dir.iterdir()):
        os.link(path, archives.serve_root / "small" / path.name)
    log = base / "serve-reindex.log"
    proc = spawn("dcmtool serve --reindex (commit)",
                 [*tools.dcmtool, "serve", str(archives.serve_root), "--reindex"], log,
                 env=tools.base_env)
    fx.on_close(proc.stop)  # on Ctrl-C
    load_orthanc(tools, archives.orthanc_dir, [data], data.files)  # meanwhile
    try:
        status = proc.process.wait(timeout=LOAD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise ServerError(f"dcmtool serve --reindex took over {LOAD_TIMEOUT:g} s") from None
    if status != 0 or f": {data.files} instances" not in log.read_text(errors="replace"):
        raise ServerError(f"dcmtool serve --reindex failed or indexed other than "
                          f"{data.files} instances: exit {status}: {log_tail(log)}")
    tools.state["commit"] = archives
    return archives


def client_config(fx: Fixture, port: int) -> Path:
    """One config file for both: the client's [local] (its AE title and the port it listens
    on for reports) and, for serve, the client as a node (where a report may go)."""
    path = fx.tempdir(prefix="dcmtool-config-") / "config.toml"
    path.write_text(f'[local]\nae_title = "{COMMIT_AET}"\nport = {port}\nbind = "{LOCALHOST}"\n'
                    f'\n[nodes.{COMMIT_AET}]\nhost = "{LOCALHOST}"\nport = {port}\n'
                    f'ae_title = "{COMMIT_AET}"\n')
    return path


def start_serve(tools: Tools, fx: Fixture, archives: CommitArchives, config: Path) -> int:
    def argv(port: int) -> list[str]:
        return [*tools.dcmtool, "serve", str(archives.serve_root), "--port", str(port),
                "--aet", SERVE_AET, "--min-free", "0"]

    port = fx.server(argv, env={"DCMTOOL_CONFIG": str(config)}, name="dcmtool-serve",
                     timeout=300)
    dicom_echo(tools, SERVE_AET, port)
    return port


def start_orthanc(tools: Tools, fx: Fixture, archives: CommitArchives, client_port: int) -> int:
    """Orthanc on the loaded storage and index, knowing the client as a modality."""
    own = fx.tempdir(prefix="orthanc-")
    modalities = {COMMIT_AET.lower(): modality(COMMIT_AET, client_port,
                                               AllowStorageCommitment=True)}
    try:
        server = run_orthanc(
            require_orthanc(), own,
            lambda dicom_port, http_port: bench_orthanc_config(
                archives.orthanc_dir, dicom_port, http_port,
                extra={"TemporaryDirectory": str(own / "tmp"), "DicomModalities": modalities,
                       "DicomCheckModalityHost": False}),
            aet=ORTHANC_AET, env={**tools.base_env, **NODELAY}, timeout=120)
    except PeerStartError as exc:
        raise ServerError(f"orthanc did not start: {start_failure(exc)}") from None
    fx.on_close(server.stop)
    dicom_echo(tools, ORTHANC_AET, server.dicom_port)
    return server.dicom_port


def report_seconds(report: Path, expected: int, where: str) -> float:
    """A row's ``measure``: N-ACTION to report, from the run's --report (every instance must
    have been committed, or the run fails)."""
    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
        [transaction] = doc["transactions"]
    except (OSError, ValueError, KeyError) as exc:
        raise ServerError(f"{where}: no usable commit report: {exc}") from None
    if doc["committed"] != expected or transaction["seconds"] is None:
        raise ServerError(f"{where}: {doc['committed']} of {expected} committed")
    return float(transaction["seconds"])


def measured(report: Path, expected: int, where: str, _seconds: float) -> float:
    return report_seconds(report, expected, where)


def commit_case(count: int, runs: int, warmups: int) -> None:
    @case(f"commit-{count}", MS, f"storage commitment of {count:,} small instances: dcmtool "
          f"commit to dcmtool serve / Orthanc, each holding {COMMIT_TOTAL:,}; N-ACTION to "
          "report", runs=runs, warmups=warmups)
    def build(tools: Tools, fx: Fixture) -> list[Program]:
        tools.dcmtk("echoscu")  # the servers' readiness check
        require_orthanc()
        archives = commit_archives(tools, fx)
        files = archives.data if count == COMMIT_TOTAL else fx.subset(archives.data, count)
        port = free_port()
        config = client_config(fx, port)
        env = {"DCMTOOL_CONFIG": str(config)}
        servers = {"serve": 0, "orthanc": 0}
        if not fx.listing:
            servers = {"serve": start_serve(tools, fx, archives, config),
                       "orthanc": start_orthanc(tools, fx, archives, port)}
        out = fx.tempdir(prefix="commit-reports-")
        rows = []
        for label, aet, server, extra, role in (
                ("dcmtool serve (same association)", SERVE_AET, "serve", [], "dcmtool"),
                ("Orthanc (new association)", ORTHANC_AET, "orthanc", [], "peer"),
                ("dcmtool serve (--release: new association)", SERVE_AET, "serve",
                 ["--release"], "variant")):
            report = out / f"{server}{len(extra)}.json"
            rows.append(Program(
                label,
                [*tools.dcmtool, "commit", f"{aet}@{LOCALHOST}:{servers[server]}",
                 str(files.dir), "--wait", WAIT, "--report", str(report), "-q", *extra],
                role=role, env=env,
                measure=functools.partial(measured, report, count, label),
                timeout=ORTHANC_RUN_TIMEOUT if server == "orthanc" else None))
        rows[1].target = Target.ratio("<=", 0.5)  # issue 16: serve <= 0.5x Orthanc's time
        return rows


# Orthanc takes ~6 minutes a run at 10,000: 3 runs and no warm-up (a warm-up of that length
# would only cost time; the servers were started and answered a C-ECHO before).
commit_case(500, runs=5, warmups=1)
commit_case(COMMIT_TOTAL, runs=3, warmups=0)
