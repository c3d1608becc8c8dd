"""store: dcmtool's C-STORE client beside DCMTK storescu and pynetdicom's storescu app, in
the clear and over TLS (``store-tls``).

All send the same folder to one DCMTK storescp, started afresh on empty storage for every run
(with --fork, so that the associations of `dcmtool store --jobs N` are served in parallel).
Only the client is timed; after each run the bench counts the files storescp wrote.

Targets (issue #17; rates, so dcmtool/this is dcmtool's speed over the peer's): CT >= 1.1x
storescu, small set >= 0.8x storescu with one association and >= 1.3x with ``--jobs 2``, TLS
>= 1.0x ``storescu +tls``.
"""

from __future__ import annotations

import functools
from dataclasses import replace

from support.processes import ManagedProcess

from bench.certificates import Certificates, make_certificates, require_dcmtk_tls
from bench.fixture import (
    CT_200,
    LOCALHOST,
    NODELAY,
    STORESCP_AET,
    DataSet,
    Fixture,
    ServerProcess,
    Tools,
    count_files,
    dicom_echo,
)
from bench.harness import ITEMS_PER_S, MB_PER_S, Program, Target, Unit, case


def store_receiver(tools: Tools, fx: Fixture, data: DataSet, rows: int,
                   tls: Certificates | None = None) -> ServerProcess:
    """The fresh-per-run storescp of the store cases; with ``tls``, `storescp +tls`, which
    requires a client certificate (and answers its readiness C-ECHO over TLS)."""
    storescp = tools.dcmtk("storescp")
    tools.dcmtk("echoscu")  # the server's readiness check
    out = fx.tempdir(prefix="storescp-") / "out"
    # Set each run's files aside instead of deleting them (see ServerProcess.stop) if there is
    # room for all of them.
    keep = fx.has_room(fx.rounds * rows * data.nbytes)
    if not keep:
        fx.note(f"not enough free disk to keep every run's copy of the data "
                f"({fx.rounds * rows * data.nbytes / 2**30:.1f} GiB): storescp's output is "
                f"deleted between runs, which slows its file creation for every client")
    if tls is None:
        return fx.fresh_server(
            "storescp",
            lambda port: [storescp, "--fork", "-aet", STORESCP_AET, "-od", str(out), str(port)],
            storage=[out], env=NODELAY, aet=STORESCP_AET, count=lambda: count_files(out),
            keep_used=keep)

    def echo_over_tls(proc: ManagedProcess) -> None:
        dicom_echo(tools, STORESCP_AET, server.port, tuple(tls.dcmtk_client()))

    server = fx.fresh_server(
        "storescp-tls",
        lambda port: [storescp, "--fork", *tls.dcmtk_server(), "-aet", STORESCP_AET, "-od",
                      str(out), str(port)],
        storage=[out], env=NODELAY, count=lambda: count_files(out), ready=echo_over_tls,
        keep_used=keep)
    return server


def store_rows(tools: Tools, fx: Fixture, unit: Unit, data: DataSet,
               pynetdicom_subset: tuple[DataSet, str] | None = None) -> list[Program]:
    """dcmtool store, DCMTK storescu and pynetdicom's storescu app sending ``data`` to one
    storescp; with ``pynetdicom_subset`` (a subset of ``data``, a label suffix) the app sends
    that instead. Rows in MB/s carry the instances for the items/s column. The case adds the
    targets and variants."""
    storescu = tools.dcmtk("storescu")
    pynetdicom_data, suffix = pynetdicom_subset or (data, "")
    server = store_receiver(tools, fx, data, rows=4)  # at most 4 rows send the whole set
    peer = [LOCALHOST, str(server.port)]
    shown = [f"{k}={v}" for k, v in server.env.items()] + server.argv_for_port(server.port)

    def row(label: str, argv: list[str], role: str = "peer", env: dict[str, str] | None = None,
            sent: DataSet = data, retries: int = 0) -> Program:
        rate_in_bytes = unit is MB_PER_S
        return Program(label, argv, role=role, env=env or {},
                       work=sent.nbytes if rate_in_bytes else sent.files,
                       items=sent.files if rate_in_bytes else None,
                       before_each=server.start,
                       after_each=functools.partial(server.finish, sent.files), server=shown,
                       retries=retries)

    return [
        row("dcmtool store",
            [*tools.dcmtool, "store", f"{STORESCP_AET}@{LOCALHOST}:{server.port}",
             str(data.dir)], role="dcmtool"),
        row("DCMTK storescu", [storescu, "-aec", STORESCP_AET, *peer, "+sd", str(data.dir)],
            env=NODELAY),
        row("pynetdicom storescu" + suffix,
            [tools.python, "-m", "pynetdicom", "storescu", *peer, str(pynetdicom_data.dir),
             "-aec", STORESCP_AET], sent=pynetdicom_data,
            # pynetdicom#875: now and then its reactor takes a C-STORE response off the queue
            # before send_c_store() can, which waits 30 s (DIMSE timeout) and aborts; the app
            # logs the remaining files as failed and still exits 0. About 1 run in 10 of the
            # CT set here. Such a run is noted and run again (which can only favour it).
            retries=2),
    ]


@case("store-ct", MB_PER_S, "500 CT images (512x512x16 bit, ~513 KB) sent to DCMTK storescp "
      "by dcmtool store / DCMTK storescu / pynetdicom's storescu app", runs=5, warmups=1)
def store_ct_case(tools: Tools, fx: Fixture) -> list[Program]:
    tools.dcmtk("storescu")
    fx.require_free(2**30, "500 CT images and one stored copy")
    data = fx.data("ct", "--count", "500", "--series", "5")
    dcmtool, storescu, pynetdicom = store_rows(tools, fx, MB_PER_S, data)
    storescu.target = Target.ratio(">=", 1.1)  # issue #17 (the store issue: 1.0x)
    pynetdicom.target = Target.ratio(">=", 4.0)
    return [dcmtool, storescu, pynetdicom]


@case("store-small", ITEMS_PER_S, "2,000 small images (64x64x16 bit, ~9 KB; 20 studies of "
      "100) sent to DCMTK storescp by dcmtool store (1 and 2 jobs) / DCMTK storescu / "
      "pynetdicom's storescu app (on 200 of them)", runs=5, warmups=1)
def store_small_case(tools: Tools, fx: Fixture) -> list[Program]:
    tools.dcmtk("storescu")
    fx.require_free(2**28, "2,000 small images and their stored copies")
    data = fx.data("small", "--count", "2000", "--series", "20", "--studies", "20")
    # pynetdicom's app waits ~40 ms per small instance on loopback: it leaves Nagle's
    # algorithm on, so each data set PDU waits for the server's delayed ACK of the command
    # PDU. The whole set would take ~90 s a run; two studies give its rate.
    dcmtool, storescu, pynetdicom = store_rows(
        tools, fx, ITEMS_PER_S, data,
        pynetdicom_subset=(fx.subset(data, 200), " (200 of 2,000)"))
    # Issue #17: one association >= 0.8x storescu (one association too), --jobs 2 >= 1.3x
    # (the store issue asked for 0.5x and 1.0x).
    jobs = replace(dcmtool, label="dcmtool store --jobs 2", argv=[*dcmtool.argv, "--jobs", "2"],
                   role="variant", target=Target.versus(">=", 1.3, storescu.label))
    storescu.target = Target.ratio(">=", 0.8)
    pynetdicom.target = Target.ratio(">=", 4.0)
    return [dcmtool, jobs, storescu, pynetdicom]


@case("store-tls", MB_PER_S, "200 CT images (512x512x16 bit, ~513 KB) over TLS to DCMTK "
      "storescp +tls (client certificate required) by dcmtool store / DCMTK storescu +tls",
      runs=5, warmups=1)
def store_tls_case(tools: Tools, fx: Fixture) -> list[Program]:
    storescu = tools.dcmtk("storescu")
    require_dcmtk_tls(tools, "storescp", "storescu", "echoscu")
    certificates = make_certificates(fx)
    fx.require_free(2**29, "200 CT images and their stored copies")
    data = fx.shared_data(CT_200)
    server = store_receiver(tools, fx, data, rows=2, tls=certificates)
    shown = [f"{k}={v}" for k, v in server.env.items()] + server.argv_for_port(server.port)

    def row(label: str, argv: list[str], role: str = "peer",
            env: dict[str, str] | None = None) -> Program:
        return Program(label, argv, role=role, env=env or {}, work=data.nbytes,
                       items=data.files, before_each=server.start,
                       after_each=functools.partial(server.finish, data.files), server=shown)

    dcmtool = row("dcmtool store (TLS)",
                  [*tools.dcmtool, "store", *certificates.dcmtool_client(),
                   f"{STORESCP_AET}@{LOCALHOST}:{server.port}", str(data.dir)], role="dcmtool")
    dcmtk = row("DCMTK storescu +tls",
                [storescu, *certificates.dcmtk_client(), "-aec", STORESCP_AET, LOCALHOST,
                 str(server.port), "+sd", str(data.dir)], env=NODELAY)
    dcmtk.target = Target.ratio(">=", 1.0)  # issue #17
    return [dcmtool, dcmtk]
