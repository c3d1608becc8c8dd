"""retrieve: dcmtool's move and get commands beside DCMTK's movescu/getscu (and pynetdicom's
getscu app).

- ``retrieve-move``, ``retrieve-get`` (issue #7): the 500-instance CT study of
  ``qr_archives`` from DCMTK dcmqrscp and from Orthanc.
- ``retrieve-{get,move}-{serve,dcmqrscp}`` (issue #17): a 200-instance CT study from dcmtool
  serve and from DCMTK dcmqrscp, each holding only that study (loaded once per bench run, no
  Orthanc and no 100,000-instance index needed).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from support.processes import free_port

from bench.cases.qr_archives import (
    DCMQRSCP_CT_AET,
    GETSCU_AET,
    LOAD_TIMEOUT,
    MOVESCU_AET,
    QR_CT_COUNT,
    QrServer,
    ReceiveDir,
    dcmtool_config,
    keep_retrieved,
    link_tree,
    load_dcmqrscp,
    qr_archives,
    qr_requirements,
    qr_servers,
    retrieve_keys,
    start_dcmqrscp,
    start_qr_serve,
    study_keys,
)
from bench.fixture import (
    CT_200,
    CT_200_COUNT,
    LOCALHOST,
    NODELAY,
    SERVE_AET,
    DataSet,
    Fixture,
    ServerError,
    Tools,
    dicom_echo,
    one_line,
)
from bench.harness import ITEMS_PER_S, Builder, Program, Target, case

# dcmtool move's AE title (and its storage SCP's, the move destination) in the issue #17
# cases: not serve's own (DCMTOOL), so that serve's logs and node table tell them apart.
MOVE_CLIENT_AET = "DCMTOOLSCU"
RETRIEVE_SOURCES = {"serve": "dcmtool serve", "dcmqrscp": "dcmqrscp"}  # case suffix -> label
# Issue #17's targets, on the DCMTK row (instances/s: dcmtool's rate over DCMTK's).
RETRIEVE_TARGETS = {"get": 1.0, "move": 1.2}


def distinct_ports() -> tuple[int, int]:
    first, second = free_port(), free_port()
    while second == first:
        second = free_port()
    return first, second


@case("retrieve-move", ITEMS_PER_S, f"C-MOVE of a {QR_CT_COUNT}-instance CT study (512x512x16 "
      "bit) to the client itself: dcmtool move / DCMTK movescu +P, from DCMTK dcmqrscp and "
      "from Orthanc", runs=5, warmups=1)
def retrieve_move_case(tools: Tools, fx: Fixture) -> list[Program]:
    qr_requirements(tools, "movescu")
    qr = qr_archives(tools, fx, ("orthanc", "dcmqrscp"))
    local_port, movescu_port = distinct_ports()
    # The peers move to dcmtool's own storage SCP ([local]) and to movescu's (+P).
    destinations = {SERVE_AET: local_port, MOVESCU_AET: movescu_port}
    config = dcmtool_config(fx, {}, local=(SERVE_AET, local_port))
    servers = qr_servers(tools, fx, qr, ("dcmqrscp-ct", "orthanc"), config, destinations)
    keep = fx.listing or keep_retrieved(fx, qr, 4)
    rows = []
    for name, server in (("dcmqrscp", servers["dcmqrscp-ct"]), ("orthanc", servers["orthanc"])):
        source = "dcmqrscp" if name == "dcmqrscp" else "Orthanc"
        mine = ReceiveDir(fx, f"dcmtool-move-{name}", QR_CT_COUNT, keep, suffix=".dcm")
        theirs = ReceiveDir(fx, f"movescu-{name}", QR_CT_COUNT, keep)
        dcmtool = Program(
            f"dcmtool move from {source}",
            [*tools.dcmtool, "move", f"{server.aet}@{LOCALHOST}:{server.port}", "--study",
             qr.ct_study, "-o", str(mine.path)],
            role="dcmtool" if name == "dcmqrscp" else "variant",
            env={"DCMTOOL_CONFIG": str(config)}, work=QR_CT_COUNT, before_each=mine.prepare,
            after_each=mine.check, server=server.shown)
        movescu = Program(
            f"DCMTK movescu +P from {source}",
            [tools.dcmtk("movescu"), "-S", "-aet", MOVESCU_AET, "-aem", MOVESCU_AET, "+P",
             str(movescu_port), "-od", str(theirs.path), "-aec", server.aet,
             *retrieve_keys(qr), LOCALHOST, str(server.port)],
            env=NODELAY, work=QR_CT_COUNT, before_each=theirs.prepare, after_each=theirs.check,
            server=server.shown, target=Target.ratio(">=", 1.0),  # issue #7: >= 1.0x DCMTK
            subject=dcmtool.label)
        rows += [dcmtool, movescu]
    return rows


@case("retrieve-get", ITEMS_PER_S, f"C-GET of a {QR_CT_COUNT}-instance CT study (512x512x16 "
      "bit): dcmtool get / DCMTK getscu / pynetdicom's getscu app, from DCMTK dcmqrscp and "
      "from Orthanc", runs=5, warmups=1)
def retrieve_get_case(tools: Tools, fx: Fixture) -> list[Program]:
    qr_requirements(tools, "getscu")
    qr = qr_archives(tools, fx, ("orthanc", "dcmqrscp"))
    servers = qr_servers(tools, fx, qr, ("dcmqrscp-ct", "orthanc"), dcmtool_config(fx, {}))
    keep = fx.listing or keep_retrieved(fx, qr, 6)
    rows = []
    for name, server in (("dcmqrscp", servers["dcmqrscp-ct"]), ("orthanc", servers["orthanc"])):
        source = "dcmqrscp" if name == "dcmqrscp" else "Orthanc"
        mine = ReceiveDir(fx, f"dcmtool-get-{name}", QR_CT_COUNT, keep, suffix=".dcm")
        dcmtk = ReceiveDir(fx, f"getscu-{name}", QR_CT_COUNT, keep)
        app = ReceiveDir(fx, f"pynetdicom-getscu-{name}", QR_CT_COUNT, keep)
        dcmtool = Program(
            f"dcmtool get from {source}",
            [*tools.dcmtool, "get", f"{server.aet}@{LOCALHOST}:{server.port}", "--study",
             qr.ct_study, "-o", str(mine.path)],
            role="dcmtool" if name == "dcmqrscp" else "variant", work=QR_CT_COUNT,
            before_each=mine.prepare, after_each=mine.check, server=server.shown)
        getscu = Program(
            f"DCMTK getscu from {source}",
            [tools.dcmtk("getscu"), "-S", "-aet", GETSCU_AET, "-aec", server.aet,
             *retrieve_keys(qr), "-od", str(dcmtk.path), LOCALHOST, str(server.port)],
            env=NODELAY, work=QR_CT_COUNT, before_each=dcmtk.prepare, after_each=dcmtk.check,
            server=server.shown, target=Target.ratio(">=", 1.0),  # issue #7: >= 1.0x DCMTK
            subject=dcmtool.label)
        pynetdicom = Program(
            f"pynetdicom getscu from {source}",
            [tools.python, "-m", "pynetdicom", "getscu", LOCALHOST, str(server.port), "-aet",
             GETSCU_AET, "-aec", server.aet, "-S", *retrieve_keys(qr), "-od", str(app.path)],
            work=QR_CT_COUNT, before_each=app.prepare, after_each=app.check,
            server=server.shown, subject=dcmtool.label)
        rows += [dcmtool, getscu, pynetdicom]
    return rows


# --------------------------------------------------------------------------------------------
# Issue #17: a 200-instance CT study from dcmtool serve and from DCMTK dcmqrscp


@dataclass(frozen=True)
class StudyArchives:
    """One CT study in a dcmtool serve archive and in a dcmqrscp storage area."""

    data: DataSet
    study: str
    serve_root: Path
    dcmqrscp_area: Path


def study_archives(tools: Tools, fx: Fixture) -> StudyArchives:
    """The CT study of CT_200 (make_data.py, shared with store-tls) loaded, once per bench
    run and untimed, into a dcmtool serve archive (hard links into ROOT/ct/, then `dcmtool
    serve ROOT --reindex`) and a dcmqrscp storage area (dcmqridx, indexing the files where
    they are)."""
    found: StudyArchives | None = tools.state.get("retrieve-ct-200")
    if found is not None:
        return found
    data = fx.shared_data(CT_200)
    base = tools.tmp / "retrieve-archives" if fx.listing else Path(
        tempfile.mkdtemp(prefix="retrieve-archives-", dir=tools.tmp))
    study = "STUDY-UID" if fx.listing else str(data.info["study_uids"][0])
    archives = StudyArchives(data, study, base / "serve", base / "dcmqrscp")
    if fx.listing:
        return archives
    started = time.monotonic()
    link_tree([data], archives.serve_root)
    argv = [*tools.dcmtool, "serve", str(archives.serve_root), "--reindex"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=LOAD_TIMEOUT,
                              env=tools.base_env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerError(f"dcmtool serve --reindex failed: {exc}") from None
    if proc.returncode != 0 or f": {data.files} instances" not in proc.stderr + proc.stdout:
        raise ServerError(f"dcmtool serve --reindex failed or indexed other than {data.files} "
                          f"instances: exit {proc.returncode}: "
                          f"{one_line(proc.stderr + proc.stdout)}")
    load_dcmqrscp(tools, archives.dcmqrscp_area, data)
    fx.note(f"loaded the {data.files}-instance study into dcmtool serve and dcmqrscp "
            f"(untimed, once per bench run): {time.monotonic() - started:.1f} s")
    tools.state["retrieve-ct-200"] = archives
    return archives


def study_retrieve_case(operation: str, source: str) -> Builder:
    """dcmtool get/move -o beside DCMTK getscu / movescu +P, both retrieving the study from
    one server: dcmtool serve or dcmqrscp (started once for the case, on the loaded study)."""
    dcmtk_client = "getscu" if operation == "get" else "movescu"

    def build(tools: Tools, fx: Fixture) -> list[Program]:
        for program in ("dcmqridx", "dcmqrscp", "echoscu", dcmtk_client):
            tools.dcmtk(program)
        archives = study_archives(tools, fx)
        count = CT_200_COUNT
        local_port, movescu_port = distinct_ports()
        # C-MOVE destinations: dcmtool move's own storage SCP and movescu's (+P).
        destinations = ({MOVE_CLIENT_AET: local_port, MOVESCU_AET: movescu_port}
                        if operation == "move" else {})
        if source == "serve":
            server = start_qr_serve(tools, fx, archives.serve_root, "dcmtool serve",
                                    dcmtool_config(fx, destinations))
        else:
            port, shown = start_dcmqrscp(tools, fx, {DCMQRSCP_CT_AET: archives.dcmqrscp_area},
                                         {GETSCU_AET: 104, **destinations})
            server = QrServer("DCMTK dcmqrscp", DCMQRSCP_CT_AET, port, shown, NODELAY)
        if not fx.listing:
            dicom_echo(tools, server.aet, server.port)
        needed = fx.rounds * 2 * archives.data.nbytes
        keep = fx.listing or fx.has_room(needed)
        if not keep:
            fx.note(f"not enough free disk to keep every run's copy ({needed / 2**30:.1f} GiB):"
                    f" received files are deleted between runs")
        mine = ReceiveDir(fx, f"dcmtool-{operation}-{source}", count, keep, suffix=".dcm")
        theirs = ReceiveDir(fx, f"{dcmtk_client}-{source}", count, keep)
        where = RETRIEVE_SOURCES[source]
        peer = [LOCALHOST, str(server.port)]
        env: dict[str, str] = {}
        if operation == "get":
            dcmtk_argv = [tools.dcmtk("getscu"), "-S", "-aet", GETSCU_AET, "-aec", server.aet,
                          *study_keys(archives.study), "-od", str(theirs.path), *peer]
            dcmtk_label = f"DCMTK getscu from {where}"
        else:
            env = {"DCMTOOL_CONFIG": str(dcmtool_config(fx, {},
                                                        local=(MOVE_CLIENT_AET, local_port)))}
            dcmtk_argv = [tools.dcmtk("movescu"), "-S", "-aet", MOVESCU_AET, "-aem", MOVESCU_AET,
                          "+P", str(movescu_port), "-od", str(theirs.path), "-aec", server.aet,
                          *study_keys(archives.study), *peer]
            dcmtk_label = f"DCMTK movescu +P from {where}"
        dcmtool = Program(
            f"dcmtool {operation} from {where}",
            [*tools.dcmtool, operation, f"{server.aet}@{LOCALHOST}:{server.port}", "--study",
             archives.study, "-o", str(mine.path)],
            role="dcmtool", env=env, work=count, before_each=mine.prepare,
            after_each=mine.check, server=server.shown)
        dcmtk = Program(dcmtk_label, dcmtk_argv, env=NODELAY, work=count,
                        before_each=theirs.prepare, after_each=theirs.check,
                        server=server.shown,
                        target=Target.ratio(">=", RETRIEVE_TARGETS[operation]))
        return [dcmtool, dcmtk]

    return build


for _operation, _what in (("get", "C-GET: dcmtool get -o / DCMTK getscu"),
                          ("move", "C-MOVE to the client itself: dcmtool move -o / DCMTK "
                                   "movescu +P")):
    for _source, _server in (("serve", "dcmtool serve"), ("dcmqrscp", "DCMTK dcmqrscp --fork")):
        case(f"retrieve-{_operation}-{_source}", ITEMS_PER_S,
             f"{_what}, a {CT_200_COUNT}-instance CT study (512x512x16 bit) from {_server} "
             f"holding only that study", runs=5, warmups=1)(
            study_retrieve_case(_operation, _source))
