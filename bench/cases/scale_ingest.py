"""serve-scale-ingest: 2,000 real small instances sent by DCMTK storescu (one association, as in
serve-ingest-small) to dcmtool serve and Orthanc holding 1,000,000 / 100,000 / no instances.

A run adds 2,000 instances, so each server runs on a copy of its archive made before every run
(untimed): the pristine archive of ``scale_archives`` copied and fsync'd (so that none of the
copy is written back during the timed run), the server started on it and C-ECHOed. After the
run the server must have stored all 2,000 (serve: files on disk, the archive has no others;
Orthanc: its instance count over REST), then the copy's index is deleted (one large file) and
the rest, the 2,000 new files, set aside until the bench ends (see ServerProcess.stop: deleting
thousands of files slows the next run's file creation).
"""

from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

from support.orthanc import wait_for_orthanc
from support.processes import ManagedProcess, free_port

from bench.cases.scale_archives import (
    SIZES,
    ScaleArchives,
    instances,
    orthanc_label,
    scale_archives,
    serve_label,
)
from bench.fixture import (
    LOCALHOST,
    NODELAY,
    SERVE_AET,
    SERVER_START_TIMEOUT,
    Fixture,
    ServerProcess,
    Tools,
    count_files,
)
from bench.harness import Program, Target
from bench.orthanc import ORTHANC_AET, bench_orthanc_config, orthanc_rest, require_orthanc
from bench.scale_index import INDEX_FILE, copy_archive

EVERY_PART = tuple(f"{kind}-{size}" for kind in ("serve", "orthanc") for size in SIZES)
INGEST_COUNT = 2_000


class RestoredArchive:
    """A copy of a pristine archive at ``path``, made afresh before every run."""

    def __init__(self, fx: Fixture, name: str, pristine: Path, big: list[str]) -> None:
        self.fx = fx
        self.name = name
        self.pristine = pristine
        self.path = fx.tempdir(prefix=f"ingest-{name}-") / "archive"
        self.big = big  # files of the copy deleted after a run (its index), not set aside
        self.copied = False

    def restore(self) -> None:
        if self.path.exists():
            for relative in self.big:
                for path in self.path.glob(relative + "*"):  # with -wal, -shm, -journal
                    path.unlink()
            trash = self.fx.tools.tmp / "used-storage"
            trash.mkdir(exist_ok=True)
            self.path.rename(Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=trash))
                             / "archive")
        seconds = copy_archive(self.pristine, self.path)
        if not self.copied:
            self.copied = True
            self.fx.note(f"{self.name}: copying the pristine archive before a run (untimed, "
                         f"with fsync) took {seconds:.1f} s the first time")


def serve_row(tools: Tools, fx: Fixture, archives: ScaleArchives, size: str,
              storescu: list[str], data_files: int) -> Program:
    archive = RestoredArchive(fx, f"serve-{size}", archives.serve_root(size), [INDEX_FILE])
    server = fx.fresh_server(
        "dcmtool-serve",
        lambda port: [*tools.dcmtool, "serve", str(archive.path), "--port", str(port),
                      "--aet", SERVE_AET, "--min-free", "0"],
        storage=[], aet=SERVE_AET,
        count=lambda: count_files(archive.path, ".dcm"))  # the bulk-loaded rows have no file
    return row(serve_label(size), "dcmtool" if size == "1M" else "variant", storescu,
               SERVE_AET, server, archive, data_files, data_files)


def orthanc_row(tools: Tools, fx: Fixture, archives: ScaleArchives, size: str,
                storescu: list[str], data_files: int) -> Program:
    orthanc = require_orthanc()
    archive = RestoredArchive(fx, f"orthanc-{size}", archives.orthanc_dir(size),
                              ["index/index"])
    config_path = archive.path.parent / "orthanc.json"
    http: dict[str, int] = {}

    def argv(port: int) -> list[str]:
        http["port"] = free_port()
        config = bench_orthanc_config(archive.path, port, http["port"])
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        return [orthanc, str(config_path)]

    def serves_rest(proc: ManagedProcess) -> None:
        wait_for_orthanc(proc, aet=ORTHANC_AET, dicom_port=server.port,
                         http_port=http["port"], timeout=SERVER_START_TIMEOUT)

    server = fx.fresh_server(
        "orthanc", argv, storage=[], env=NODELAY, aet=ORTHANC_AET,
        count=lambda: orthanc_rest(http["port"], timeout=60).instance_count(),
        ready=serves_rest, kill_to_stop=True)  # the copy is thrown away
    program = row(orthanc_label(size), "peer", storescu, ORTHANC_AET, server, archive,
                  data_files, instances(size) + data_files)
    program.subject = serve_label(size)
    return program


def row(label: str, role: str, storescu: list[str], aet: str, server: ServerProcess,
        archive: RestoredArchive, sent: int, expected: int) -> Program:
    def before() -> None:
        archive.restore()
        server.start()

    return Program(
        label, [storescu[0], "-aec", aet, LOCALHOST, str(server.port), *storescu[1:]],
        role=role, env=NODELAY, work=sent, before_each=before,
        after_each=functools.partial(server.finish, expected),
        server=[f"{k}={v}" for k, v in server.env.items()] + server.argv_for_port(server.port))


def scale_ingest_rows(tools: Tools, fx: Fixture) -> list[Program]:
    storescu_program = tools.dcmtk("storescu")
    tools.dcmtk("echoscu")  # the servers' readiness check
    require_orthanc()
    archives = scale_archives(tools, fx, EVERY_PART)
    data = fx.data("small", "--count", str(INGEST_COUNT), "--series", "20")
    storescu = [storescu_program, "+sd", str(data.dir)]
    rows = [serve_row(tools, fx, archives, size, storescu, data.files) for size in SIZES]
    rows += [orthanc_row(tools, fx, archives, size, storescu, data.files) for size in SIZES]
    # Issue #18: ingest into 1M >= 0.8x the rate into an empty archive (on serve's 1M row).
    rows[0].target = Target.versus(">=", 0.8, serve_label("empty"))
    return rows
