"""The archives of the qr-* and retrieve-* cases, and the servers the cases start on them.

dcmtool serve as a query/retrieve archive (issue #6) beside Orthanc and DCMTK dcmqrscp, and
dcmtool's move and get commands (issue #7) beside DCMTK's movescu/getscu and pynetdicom's
getscu app. The archives are loaded once per bench run (untimed, shared by every qr-* and
retrieve-* case, see qr_archives) and only read by the cases: each case starts the servers it
needs on them once, and times the clients.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.orthanc import OrthancError, run_orthanc
from support.processes import ManagedProcess, PeerStartError, spawn

from bench.fixture import (
    LOCALHOST,
    NODELAY,
    SERVE_AET,
    DataSet,
    Fixture,
    FreshDir,
    ServerError,
    Tools,
    count_files,
    dicom_echo,
    log_tail,
    start_failure,
)
from bench.orthanc import (
    ORTHANC_AET,
    bench_orthanc_config,
    orthanc_rest,
    require_orthanc,
)

QR_PER_STUDY, QR_SERIES_PER_STUDY = 20, 2  # the index: --qr-studies studies of 20 instances
QR_SUBSET_STUDIES = 500  # dcmqrscp keeps at most 500 studies per storage area
# dcmqrscp's index.dat stops at 32 MiB ("DB ALERT: attempt to seek beyond 33554432 bytes") and
# takes ~8 KB per instance: ~4,170 instances per storage area. The subset (its storage area and
# a second dcmtool serve) is therefore the first 500 studies with 4 instances of each of their 2
# series, and the CT study lives in a storage area of its own.
QR_SUBSET_PER_SERIES = 4
QR_CT_COUNT = 500  # the retrieved study: make_data.py ct, 512x512x16 bit, ~513 KB each
DCMQRSCP_AET, DCMQRSCP_CT_AET, FINDSCU_AET = "DCMQRSCP", "DCMQRCT", "FINDSCU"
MOVESCU_AET, GETSCU_AET = "MOVESCU", "GETSCU"
LOAD_TIMEOUT = 3600.0

@dataclass
class QrArchives:
    """The loaded archives of the qr-* and retrieve-* cases (see qr_archives)."""

    studies: int  # index studies (the CT study comes on top in the full archives)
    instances: int  # in the full archives: the index and the CT study
    index: DataSet
    subset: DataSet
    ct: DataSet
    ct_study: str
    queries: dict[str, str]  # matching key -> value
    matches: dict[str, tuple[int, int]]  # matching key -> studies matched (full, subset)
    base: Path
    parts: dict[str, Path] = field(default_factory=dict)  # loaded: name -> its folder
    timings: dict[str, float] = field(default_factory=dict)  # name -> seconds to load
    noted: set[str] = field(default_factory=set)  # timings already noted under a table

    @property
    def full_label(self) -> str:
        return f"{self.studies + 1:,} studies, {self.instances:,} instances"


def qr_requirements(tools: Tools, *programs: str) -> None:
    for program in ("dcmqrscp", "dcmqridx", "echoscu", *programs):
        tools.dcmtk(program)
    require_orthanc()


def qr_archives(tools: Tools, fx: Fixture, parts: tuple[str, ...]) -> QrArchives:
    """Load (once per bench run, untimed) what a case needs of:

    - ``serve``: a dcmtool serve archive of the index (--qr-studies x 20 small instances) and
      the CT study: the files hard-linked into ROOT/index-SSSSS/ and ROOT/ct/, then
      ``dcmtool serve ROOT --reindex`` (its own way of taking in files; C-STORE would take
      ~4x longer);
    - ``serve-subset``: the same for the subset (500 studies x 8 instances), without the CT;
    - ``orthanc``: an Orthanc storage and index holding what ``serve`` holds, uploaded through
      its REST API (POST /instances, 2 connections);
    - ``dcmqrscp``: DCMTK dcmqrscp's two storage areas, made with dcmqridx: the subset, and
      the CT study alone.

    The serve archives are indexed in the background while Orthanc and dcmqrscp load."""
    qr: QrArchives | None = tools.state.get("qr")
    if qr is None:
        qr = tools.state["qr"] = qr_data(tools, fx)
    missing = [part for part in parts if part not in qr.parts]
    if fx.listing or not missing:
        return qr
    fx.require_free(qr.index.files * 3 * 4096 + 3 * qr.ct.nbytes + 2**30,
                    "the qr archives (the index's files, Orthanc's copy, the CT study)")
    background: list[tuple[str, ManagedProcess, int]] = []
    finished: dict[str, float] = {}  # part -> seconds its reindex took

    def time_it(part: str, proc: ManagedProcess, started: float) -> None:
        proc.process.wait()
        finished[part] = time.monotonic() - started

    try:
        for part, data in (("serve", [qr.index, qr.ct]), ("serve-subset", [qr.subset])):
            if part in missing:
                started = time.monotonic()
                root = unloaded(qr.base / part)
                link_tree(data, root)
                log = qr.base / f"{part}-reindex.log"
                log.unlink(missing_ok=True)
                proc = spawn(f"dcmtool serve --reindex ({part})",
                             [*tools.dcmtool, "serve", str(root), "--reindex"], log,
                             env=tools.base_env)
                fx.on_close(proc.stop)  # on Ctrl-C
                threading.Thread(target=time_it, args=(part, proc, started), daemon=True).start()
                background.append((part, proc, sum(d.files for d in data)))
        if "orthanc" in missing:
            started = time.monotonic()
            load_orthanc(tools, unloaded(qr.base / "orthanc"), [qr.index, qr.ct],
                         qr.instances)
            qr.parts["orthanc"] = qr.base / "orthanc"
            qr.timings["Orthanc (REST upload)"] = time.monotonic() - started
        if "dcmqrscp" in missing:
            started = time.monotonic()
            unloaded(qr.base / "dcmqrscp")
            load_dcmqrscp(tools, qr.base / "dcmqrscp" / "query", qr.subset)
            load_dcmqrscp(tools, qr.base / "dcmqrscp" / "ct", qr.ct)
            qr.parts["dcmqrscp"] = qr.base / "dcmqrscp"
            qr.timings["dcmqrscp (dcmqridx)"] = time.monotonic() - started
        for part, proc, expected in background:
            try:
                status = proc.process.wait(timeout=LOAD_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise ServerError(f"dcmtool serve --reindex ({part}) took over "
                                  f"{LOAD_TIMEOUT:g} s") from None
            text = proc.log_path.read_text(errors="replace")
            if status != 0 or f": {expected} instances" not in text:
                raise ServerError(f"dcmtool serve --reindex ({part}) failed or indexed other "
                                  f"than {expected} instances: exit {status}: "
                                  f"{log_tail(proc.log_path)}")
            qr.parts[part] = qr.base / part
            while part not in finished:  # the thread timing it is about to note it
                time.sleep(0.01)
            qr.timings[f"dcmtool serve --reindex ({part}, beside the others)"] = finished[part]
    finally:
        for _part, proc, _expected in background:
            proc.stop()  # only when something else failed
    fresh = {name: seconds for name, seconds in qr.timings.items() if name not in qr.noted}
    qr.noted.update(fresh)
    fx.note("loaded for the qr cases (untimed, once per bench run): "
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in fresh.items()))
    return qr


def unloaded(part: Path) -> Path:
    """A part's folder, emptied: what an earlier case failed to load is loaded afresh."""
    shutil.rmtree(part, ignore_errors=True)
    return part


def qr_data(tools: Tools, fx: Fixture) -> QrArchives:
    """The index and the CT study (make_data.py) and the subset's hard links."""
    studies = tools.qr_studies
    started = time.monotonic()
    index = fx.shared_data(("index", "--studies", str(studies), "--per-study",
                            str(QR_PER_STUDY), "--series-per-study", str(QR_SERIES_PER_STUDY)))
    ct = fx.shared_data(("ct", "--count", str(QR_CT_COUNT), "--series", "5"))
    base = tools.tmp / "qr-archives" if fx.listing else Path(
        tempfile.mkdtemp(prefix="qr-archives-", dir=tools.tmp))
    subset_dir = base / "subset-files"
    if fx.listing:
        return QrArchives(studies, studies * QR_PER_STUDY + QR_CT_COUNT, index,
                          DataSet(subset_dir, 0, 0), ct, "STUDY-UID",
                          {"PatientID": "ID", "PatientName": "NAME*", "StudyDate": "A-B",
                           "StudyInstanceUID": ""}, {}, base)
    # The subset: the first 500 studies, 4 instances of each series (index-SSSSS-III.dcm).
    per_series = QR_PER_STUDY // QR_SERIES_PER_STUDY
    subset_dir.mkdir()
    nbytes = files = 0
    for path in sorted(index.dir.iterdir()):
        _, study, number = path.stem.split("-")
        if int(study) < QR_SUBSET_STUDIES and int(number) % per_series < QR_SUBSET_PER_SERIES:
            os.link(path, subset_dir / path.name)
            files += 1
            nbytes += path.stat().st_size
    subset = DataSet(subset_dir, files, nbytes)
    info = index.info
    queries = {key: str(value) for key, value in info["queries"].items()}
    queries["StudyInstanceUID"] = ""
    full, first = info["matches"]["all"], info["matches"][f"first {QR_SUBSET_STUDIES}"]
    matches = {key: (int(full[key]), int(first[key]))
               for key in ("PatientID", "PatientName", "StudyDate")}
    matches["StudyInstanceUID"] = (int(full["all"]) + 1, int(first["all"]))  # + the CT study
    qr = QrArchives(studies, index.files + ct.files, index, subset, ct,
                    str(ct.info["study_uids"][0]), queries, matches, base)
    qr.timings["test data (make_data.py)"] = time.monotonic() - started
    return qr


def link_tree(data: list[DataSet], root: Path) -> None:
    """Hard-link data sets' files into ROOT/<name up to its last '-'>/: a folder per study for
    the index (index-SSSSS-III.dcm) and one for the CT study (ct-NNNNN.dcm)."""
    for dataset in data:
        for path in sorted(dataset.dir.iterdir()):
            folder = root / path.stem.rsplit("-", 1)[0]
            folder.mkdir(parents=True, exist_ok=True)
            os.link(path, folder / path.name)


def qr_orthanc_config(directory: Path, temporary: Path, dicom_port: int, http_port: int,
                      destinations: dict[str, int], load: bool = False) -> dict[str, Any]:
    """The serve cases' private Orthanc, on the storage and index in ``directory``, as a
    query/retrieve SCP; ``destinations`` (AE title -> port) are its C-MOVE modalities."""
    extra: dict[str, Any] = {
        "TemporaryDirectory": str(temporary),
        # Anyone may query and retrieve (calling AEs need no DicomModalities entry); the move
        # destinations are the modalities.
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomCheckModalityHost": False,
        "LimitFindResults": 0,  # Orthanc's defaults, spelled out: all matches
        "LimitFindInstances": 0,
        "SynchronousCMove": True,  # C-MOVE answers when every sub-operation is done
        # Not its default (5 s): the destination is restarted between runs, so an association
        # kept open for reuse would be a dead one.
        "DicomAssociationCloseDelay": 0,
    }
    if load:
        extra["SyncStorageArea"] = False  # loading only: what is timed never writes
    return bench_orthanc_config(directory, dicom_port, http_port, destinations=destinations,
                                extra=extra)


def load_orthanc(tools: Tools, directory: Path, data: list[DataSet], expected: int) -> None:
    """Start Orthanc on ``directory``, wait until its REST API answers, POST every file to
    /instances (two keep-alive connections), check its instance count and stop it (SIGTERM:
    its index stays clean)."""
    try:
        orthanc = run_orthanc(
            require_orthanc(), directory,
            lambda dicom_port, http_port: qr_orthanc_config(
                directory, directory / "tmp", dicom_port, http_port, {}, load=True),
            aet=ORTHANC_AET, env={**tools.base_env, **NODELAY}, timeout=60)
    except PeerStartError as exc:
        raise ServerError(f"loading Orthanc failed: {start_failure(exc)}") from None
    try:
        files = [path for dataset in data for path in sorted(dataset.dir.iterdir())]

        def upload(part: list[Path]) -> None:
            connection = http.client.HTTPConnection(LOCALHOST, orthanc.http_port, timeout=60)
            try:
                for path in part:
                    connection.request("POST", "/instances", path.read_bytes(),
                                       {"Content-Type": "application/dicom"})
                    response = connection.getresponse()
                    body = response.read()
                    if response.status != 200:
                        raise ServerError(f"Orthanc refused {path.name}: HTTP "
                                          f"{response.status}: {body[:200]!r}")
            finally:
                connection.close()

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(upload, [files[0::2], files[1::2]]))
        stored = orthanc_rest(orthanc.http_port).instance_count()
        if stored != expected:
            raise ServerError(f"Orthanc holds {stored} instances, not {expected}: "
                              f"{log_tail(orthanc.log_path)}")
    except (OSError, http.client.HTTPException, OrthancError) as exc:
        raise ServerError(f"loading Orthanc failed: {exc}: {log_tail(orthanc.log_path)}"
                          ) from None
    finally:
        orthanc.process.stop(timeout=120)


def load_dcmqrscp(tools: Tools, area: Path, data: DataSet) -> None:
    """A dcmqrscp storage area indexing ``data``'s files where they are (dcmqridx)."""
    area.mkdir(parents=True)
    files = [str(path) for path in sorted(data.dir.iterdir())]
    for start in range(0, len(files), 1000):
        argv = [tools.dcmtk("dcmqridx"), str(area), *files[start:start + 1000]]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=LOAD_TIMEOUT,
                                  env=tools.base_env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"dcmqridx failed: {exc}") from None
        if proc.returncode != 0 or "E:" in proc.stderr or "E:" in proc.stdout:
            text = (proc.stderr or proc.stdout).strip()
            raise ServerError(f"dcmqridx failed (exit {proc.returncode}): {text[:300]}")


@dataclass
class QrServer:
    label: str
    aet: str
    port: int
    argv: list[str]  # shown by --list and in the JSON
    env: dict[str, str] = field(default_factory=dict)

    @property
    def shown(self) -> list[str]:
        return [f"{k}={v}" for k, v in self.env.items()] + self.argv


def dcmtool_config(fx: Fixture, destinations: dict[str, int],
                   local: tuple[str, int] | None = None) -> Path:
    """A dcmtool config file: [nodes.AET] for each C-MOVE destination (serve moves to its
    nodes) and, with ``local`` (AE title, port), [local] for `dcmtool move` to itself."""
    lines = []
    if local is not None:
        lines += ["[local]", f'ae_title = "{local[0]}"', f"port = {local[1]}",
                  f'bind = "{LOCALHOST}"', ""]
    for aet, port in destinations.items():
        lines += [f"[nodes.{aet}]", f'host = "{LOCALHOST}"', f"port = {port}",
                  f'ae_title = "{aet}"', ""]
    path = fx.tempdir(prefix="dcmtool-config-") / "config.toml"
    path.write_text("\n".join(lines))
    return path


def start_qr_serve(tools: Tools, fx: Fixture, root: Path, label: str,
                   config: Path) -> QrServer:
    def argv(port: int) -> list[str]:
        return [*tools.dcmtool, "serve", str(root), "--port", str(port), "--aet", SERVE_AET,
                "--min-free", "0"]

    env = {"DCMTOOL_CONFIG": str(config)}
    # Before it listens it reconciles its index with the folder (a walk of the whole tree).
    port = 0 if fx.listing else fx.server(argv, env=env, name="dcmtool-serve", timeout=300)
    return QrServer(label, SERVE_AET, port, argv(port), env)


def start_qr_orthanc(tools: Tools, fx: Fixture, qr: QrArchives,
                     destinations: dict[str, int]) -> QrServer:
    """Orthanc on the loaded storage and index, ready once its REST API answers (it says how
    many instances it holds: every one, or the case fails) and it accepts DICOM connections."""
    orthanc = require_orthanc()
    directory = qr.parts.get("orthanc", qr.base / "orthanc")
    own = fx.tempdir(prefix="orthanc-")
    shown = [orthanc, str(own / "orthanc.json")]
    if fx.listing:
        return QrServer("Orthanc, full index", ORTHANC_AET, 0, shown, NODELAY)
    try:
        # Opening a large index takes a while.
        server = run_orthanc(
            orthanc, own,
            lambda dicom_port, http_port: qr_orthanc_config(
                directory, own / "tmp", dicom_port, http_port, destinations),
            aet=ORTHANC_AET, env={**tools.base_env, **NODELAY}, timeout=120)
    except PeerStartError as exc:
        raise ServerError(f"orthanc did not start: {start_failure(exc)}") from None
    fx.on_close(server.stop)
    stored = orthanc_rest(server.http_port, timeout=60).instance_count()
    if stored != qr.instances:
        raise ServerError(f"Orthanc holds {stored} instances, not {qr.instances}")
    return QrServer("Orthanc, full index", ORTHANC_AET, server.dicom_port, shown, NODELAY)


def start_dcmqrscp(tools: Tools, fx: Fixture, areas: dict[str, Path],
                   peers: dict[str, int]) -> tuple[int, list[str]]:
    """DCMTK dcmqrscp with a config file of its own: each storage area (AE title -> folder,
    made with dcmqridx) read-write, at most 500 studies and 1024 MB, any peer; ``peers`` (AE
    title -> port on 127.0.0.1) its HostTable, the C-MOVE destinations. Returns its port (0
    when listing) and its command line. ``--fork`` (its default, spelled out): a process per
    association; never --single-process, in which DCMTK 3.6.7 crashes after one association."""
    dcmqrscp = tools.dcmtk("dcmqrscp")
    config_path = fx.tempdir(prefix="dcmqrscp-") / "dcmqrscp.cfg"

    def argv(port: int) -> list[str]:
        hosts = "\n".join(f"peer{i} = ({aet}, {LOCALHOST}, {peer_port})"
                          for i, (aet, peer_port) in enumerate(peers.items()))
        storage = "\n".join(f"{aet} {area} RW (500, 1024mb) ANY" for aet, area in areas.items())
        config_path.write_text(
            f"NetworkTCPPort = {port}\nMaxPDUSize = 16384\nMaxAssociations = 16\n\n"
            f"HostTable BEGIN\n{hosts}\nHostTable END\n\n"
            "VendorTable BEGIN\nVendorTable END\n\n"
            f"AETable BEGIN\n{storage}\nAETable END\n")
        return [dcmqrscp, "--fork", "-c", str(config_path), str(port)]

    if fx.listing:
        return 0, argv(0)
    port = fx.server(argv, env=NODELAY, name="dcmqrscp")
    return port, [dcmqrscp, "--fork", "-c", str(config_path), str(port)]


def start_qr_dcmqrscp(tools: Tools, fx: Fixture, qr: QrArchives,
                      peers: dict[str, int]) -> tuple[QrServer, QrServer]:
    """One dcmqrscp serving both storage areas: the subset (AE DCMQRSCP) and the CT study
    (AE DCMQRCT). ``peers``: its HostTable (AE title -> port), the C-MOVE destinations."""
    areas = qr.parts.get("dcmqrscp", qr.base / "dcmqrscp")
    port, shown = start_dcmqrscp(
        tools, fx, {DCMQRSCP_AET: areas / "query", DCMQRSCP_CT_AET: areas / "ct"}, peers)
    return (QrServer("DCMTK dcmqrscp, 500 studies", DCMQRSCP_AET, port, shown, NODELAY),
            QrServer("DCMTK dcmqrscp", DCMQRSCP_CT_AET, port, shown, NODELAY))


def qr_servers(tools: Tools, fx: Fixture, qr: QrArchives, which: tuple[str, ...],
               config: Path, destinations: dict[str, int] | None = None
               ) -> dict[str, QrServer]:
    """Start the named servers ("serve", "serve-subset", "orthanc", "dcmqrscp" for its subset
    area, "dcmqrscp-ct" for its CT area) on the loaded archives, once for the whole case
    (untimed); each must answer a C-ECHO before the case runs. ``destinations`` (AE title ->
    port) are the C-MOVE destinations every server knows; ``config`` is serve's config file,
    which must name them as nodes."""
    destinations = dict(destinations or {})
    servers: dict[str, QrServer] = {}
    for name in which:
        if name == "serve":
            servers[name] = start_qr_serve(tools, fx, qr.parts.get(name, qr.base / name),
                                           "dcmtool serve, full index", config)
        elif name == "serve-subset":
            servers[name] = start_qr_serve(tools, fx, qr.parts.get(name, qr.base / name),
                                           "dcmtool serve, 500 studies", config)
        elif name == "orthanc":
            servers[name] = start_qr_orthanc(tools, fx, qr, destinations)
        elif name in ("dcmqrscp", "dcmqrscp-ct"):
            if "dcmqrscp" not in servers and "dcmqrscp-ct" not in servers:
                peers = {FINDSCU_AET: 104, MOVESCU_AET: 104, GETSCU_AET: 104, **destinations}
                subset, ct = start_qr_dcmqrscp(tools, fx, qr, peers)
            servers[name] = subset if name == "dcmqrscp" else ct
        else:
            raise ValueError(f"no such qr server: {name}")
    if not fx.listing:
        for server in servers.values():
            dicom_echo(tools, server.aet, server.port)
    return servers


class ReceiveDir(FreshDir):
    """A retrieving client's output folder: empty before each run (the last run's set aside,
    or deleted without room), and ``expected`` files ending in ``suffix`` after it."""

    def __init__(self, fx: Fixture, name: str, expected: int, keep_used: bool,
                 suffix: str = "") -> None:
        super().__init__(fx, f"{name}-", keep_used)
        self.expected = expected
        self.suffix = suffix

    def check(self) -> None:
        found = count_files(self.path, self.suffix)
        if found != self.expected:
            raise ServerError(f"received {found} instances of {self.expected}")


def retrieve_keys(qr: QrArchives) -> list[str]:
    return study_keys(qr.ct_study)


def study_keys(study: str) -> list[str]:
    """DCMTK getscu's/movescu's identifier for a whole study."""
    return ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"]


def keep_retrieved(fx: Fixture, qr: QrArchives, rows: int) -> bool:
    """Whether every run's retrieved copy can be kept until the case ends (see Used storage)."""
    needed = fx.rounds * rows * max(qr.ct.nbytes, QR_CT_COUNT * 513_000)
    keep = fx.has_room(needed)
    if not keep:
        fx.note(f"not enough free disk to keep every run's copy ({needed / 2**30:.1f} GiB): "
                f"received files are deleted between runs")
    return keep

