"""retrieve: dcmtool's move and get commands (issue #7) beside DCMTK's movescu/getscu and
pynetdicom's getscu app, retrieving the CT study of ``qr_archives`` from DCMTK dcmqrscp and
from Orthanc.
"""

from __future__ import annotations

from support.processes import free_port

from bench.cases.qr_archives import (
    GETSCU_AET,
    MOVESCU_AET,
    QR_CT_COUNT,
    ReceiveDir,
    dcmtool_config,
    keep_retrieved,
    qr_archives,
    qr_requirements,
    qr_servers,
    retrieve_keys,
)
from bench.fixture import LOCALHOST, NODELAY, SERVE_AET, Fixture, Tools
from bench.harness import ITEMS_PER_S, Program, Target, case


@case("retrieve-move", ITEMS_PER_S, f"C-MOVE of a {QR_CT_COUNT}-instance CT study (512x512x16 "
      "bit) to the client itself: dcmtool move / DCMTK movescu +P, from DCMTK dcmqrscp and "
      "from Orthanc", runs=5, warmups=1)
def retrieve_move_case(tools: Tools, fx: Fixture) -> list[Program]:
    qr_requirements(tools, "movescu")
    qr = qr_archives(tools, fx, ("orthanc", "dcmqrscp"))
    local_port, movescu_port = free_port(), free_port()
    while movescu_port == local_port:
        movescu_port = free_port()
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
