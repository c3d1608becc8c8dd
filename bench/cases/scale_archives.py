"""The archives of the serve-scale-* cases (issue #18): dcmtool serve and Orthanc holding no
instances, 100,000 and 1,000,000 (5,000 and 50,000 studies of 20 instances, the values of
``make_data.py index``), made once per bench run (untimed) and only read by the query cases.

- dcmtool serve: ``bench/scale_index.py`` bulk-loads the rows into an index that
  ``dcmtool serve ROOT --reindex`` created on an empty folder; the files do not exist, and
  the index says that the folder has been walked (meta ``folder_walked``), so that start-up
  does not walk it.
- Orthanc: ``bench/scale_orthanc.py`` clones, in its SQLite index, what Orthanc wrote for the
  first two studies uploaded over REST (POST /instances would take ~50 minutes for 1M here).

Each case starts the servers it needs on them (untimed) and checks that each holds what it
should: serve's index still has every row once serve is up (a serve that walked the folder
at start would have dropped them all), Orthanc counts every instance.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.orthanc import run_orthanc
from support.processes import ManagedProcess, PeerStartError, stop_all

from bench.cases.qr_archives import QrServer, dcmtool_config, load_orthanc, qr_orthanc_config
from bench.fixture import NODELAY, SERVE_AET, Fixture, ServerError, Tools, start_failure
from bench.make_data import index_matches, index_queries
from bench.orthanc import ORTHANC_AET, orthanc_rest, require_orthanc
from bench.scale_index import INDEX_FILE, PER_STUDY, Loaded, LoadError, build
from bench.scale_orthanc import TEMPLATE_STUDIES, CloneError, clone

# size -> (studies, how the rows name it); 1,000,000 = 50,000 studies x 20 instances
SIZES = {"1M": (50_000, "1,000,000"), "100k": (5_000, "100,000"), "empty": (0, "empty")}
SEED = 1
# The queries' values: the patient of make_data.index_queries (in the first 500 studies),
# the same at every size; the wildcard and the date range match more studies as it grows.
QUERIES = index_queries(SEED, SIZES["1M"][0])
ORTHANC_START_TIMEOUT = 300.0


@dataclass
class ScaleArchives:
    base: Path
    serve: dict[str, Loaded] = field(default_factory=dict)  # size -> its archive
    orthanc: dict[str, Path] = field(default_factory=dict)  # size -> storage and index
    timings: dict[str, float] = field(default_factory=dict)  # what was made -> seconds
    noted: set[str] = field(default_factory=set)

    def serve_root(self, size: str) -> Path:
        return self.base / f"serve-{size}"

    def orthanc_dir(self, size: str) -> Path:
        return self.base / f"orthanc-{size}"


def studies(size: str) -> int:
    return SIZES[size][0]


def instances(size: str) -> int:
    return studies(size) * PER_STUDY


def matches(size: str) -> dict[str, int]:
    """Studies each query matches at a size (``StudyInstanceUID``: all of them)."""
    found = index_matches(QUERIES, studies(size), SEED) if studies(size) else {}
    return {"PatientID": found.get("PatientID", 0), "PatientName": found.get("PatientName", 0),
            "StudyDate": found.get("StudyDate", 0), "StudyInstanceUID": studies(size)}


def serve_label(size: str) -> str:
    return f"dcmtool serve, {size}"


def orthanc_label(size: str) -> str:
    return f"Orthanc, {size}"


def scale_archives(tools: Tools, fx: Fixture, parts: tuple[str, ...]) -> ScaleArchives:
    """Make (once per bench run) the named parts: ``serve-SIZE`` and ``orthanc-SIZE``."""
    archives: ScaleArchives | None = tools.state.get("scale")
    if archives is None:
        base = tools.tmp / "scale-archives" if fx.listing else Path(
            tempfile.mkdtemp(prefix="scale-archives-", dir=tools.tmp))
        archives = tools.state["scale"] = ScaleArchives(base)
    if fx.listing:
        return archives
    for part in parts:
        kind, size = part.split("-", 1)
        if kind == "serve" and size not in archives.serve:
            # ~0.76 KB of index per instance, twice while loading (the WAL), and a copy.
            fx.require_free(3 * 800 * instances(size) + 2**30, f"the {part} archive")
            root = archives.serve_root(size)
            shutil.rmtree(root, ignore_errors=True)  # what an earlier case failed to make
            try:
                loaded = build(tools.dcmtool, tools.base_env, root, studies(size), SEED)
            except LoadError as exc:
                raise ServerError(str(exc)) from None
            archives.serve[size] = loaded
            nulls = loaded.unfilled_own()
            archives.timings[f"{part} (bulk load, {loaded.index_bytes / 2**20:,.0f} MiB"
                             + (f"; left NULL: {', '.join(nulls)}" if nulls else "") + ")"] = \
                loaded.seconds
        elif kind == "orthanc" and size not in archives.orthanc:
            fx.require_free(3 * 1200 * instances(size) + 2**30, f"the {part} archive")
            directory = archives.orthanc_dir(size)
            shutil.rmtree(directory, ignore_errors=True)
            started = time.monotonic()
            if studies(size):
                shutil.copytree(orthanc_template(tools, fx, archives), directory)
                try:
                    clone(directory / "index" / "index", studies(size), SEED)
                except CloneError as exc:
                    raise ServerError(str(exc)) from None
            else:
                directory.mkdir()
            archives.orthanc[size] = directory
            if studies(size):
                archives.timings[f"{part} (template copied and cloned)"] = \
                    time.monotonic() - started
    fresh = {name: seconds for name, seconds in archives.timings.items()
             if name not in archives.noted}
    if fresh:
        archives.noted.update(fresh)
        fx.note("made for the serve-scale cases (untimed, once per bench run): "
                + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in fresh.items()))
    return archives


def orthanc_template(tools: Tools, fx: Fixture, archives: ScaleArchives) -> Path:
    """Orthanc's storage and index of the first two studies, uploaded over REST."""
    directory = archives.base / "orthanc-template"
    if (directory / "index" / "index").is_file():
        return directory
    started = time.monotonic()
    data = fx.shared_data(("index", "--studies", str(TEMPLATE_STUDIES)))
    shutil.rmtree(directory, ignore_errors=True)
    load_orthanc(tools, directory, [data], data.files)
    archives.timings["Orthanc's template (2 studies over REST)"] = time.monotonic() - started
    return directory


def indexed_instances(root: Path) -> int:
    """Instance rows in serve's index (read-only, beside a running serve)."""
    try:
        db = sqlite3.connect(f"file:{root / INDEX_FILE}?mode=ro", uri=True)
        try:
            (count,) = db.execute("SELECT COUNT(*) FROM instances").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ServerError(f"cannot read serve's index in {root}: {exc}") from None
    return int(count)


def check_intact(root: Path, expected: int) -> None:
    """serve's index still holds every bulk-loaded row (a start-up that walked the folder
    would have dropped those whose files are missing)."""
    found = indexed_instances(root)
    if found != expected:
        raise ServerError(f"serve's index in {root} holds {found:,} instances, not "
                          f"{expected:,}: did start-up walk the folder and drop the rows whose "
                          f"files are missing?")


@dataclass
class Started:
    """A server of a case on a bulk-loaded archive: how rows reach it, and its process."""

    server: QrServer
    process: ManagedProcess | None  # None when listing


def start_serve(tools: Tools, fx: Fixture, archives: ScaleArchives, size: str) -> Started:
    root = archives.serve_root(size)
    config = dcmtool_config(fx, {})

    def argv(port: int) -> list[str]:
        return [*tools.dcmtool, "serve", str(root), "--port", str(port), "--aet", SERVE_AET,
                "--min-free", "0"]

    env = {"DCMTOOL_CONFIG": str(config)}
    if fx.listing:
        return Started(QrServer(serve_label(size), SERVE_AET, 0, argv(0), env), None)
    proc, port = fx.server_process(argv, env=env, name="dcmtool-serve", timeout=300)
    try:
        check_intact(root, instances(size))
    except ServerError:
        del archives.serve[size]  # no longer what the cases expect: the next one remakes it
        raise
    return Started(QrServer(serve_label(size), SERVE_AET, port, argv(port), env), proc)


def start_orthanc(tools: Tools, fx: Fixture, archives: ScaleArchives, size: str) -> Started:
    """Orthanc on a cloned storage and index (only read: C-FIND never writes)."""
    orthanc = require_orthanc()
    own = fx.tempdir(prefix="orthanc-")
    shown = [orthanc, str(own / "orthanc.json")]
    label = orthanc_label(size)
    if fx.listing:
        return Started(QrServer(label, ORTHANC_AET, 0, shown, NODELAY), None)
    directory = archives.orthanc[size]
    try:
        server = run_orthanc(
            orthanc, own,
            lambda dicom_port, http_port: qr_orthanc_config(
                directory, own / "tmp", dicom_port, http_port, {}),
            aet=ORTHANC_AET, env={**tools.base_env, **NODELAY}, timeout=ORTHANC_START_TIMEOUT)
    except PeerStartError as exc:
        raise ServerError(f"orthanc did not start: {start_failure(exc)}") from None
    fx.on_close(server.stop)
    stored = orthanc_rest(server.http_port, timeout=120).instance_count()
    if stored != instances(size):
        raise ServerError(f"{label} holds {stored:,} instances, not {instances(size):,}")
    return Started(QrServer(label, ORTHANC_AET, server.dicom_port, shown, NODELAY),
                   server.process)


def start_all(tools: Tools, fx: Fixture, archives: ScaleArchives,
              sizes: tuple[str, ...] = tuple(SIZES),
              orthanc_sizes: tuple[str, ...] = tuple(SIZES)) -> dict[str, Started]:
    """serve on each size, then Orthanc on each: ``serve-SIZE`` / ``orthanc-SIZE`` -> it."""
    started = {f"serve-{size}": start_serve(tools, fx, archives, size) for size in sizes}
    started.update({f"orthanc-{size}": start_orthanc(tools, fx, archives, size)
                    for size in orthanc_sizes})
    # All at once when the case ends: Orthanc takes ~3.5 s to exit on SIGTERM.
    fx.on_close(lambda: stop_all([s.process for s in started.values() if s.process]))
    return started
