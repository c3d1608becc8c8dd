"""``echo``: one C-ECHO association including process start, against DCMTK storescp.

Targets (issue #17; times, so dcmtool/this is dcmtool's time over the peer's): <= 0.5x
pynetdicom's echoscu app and <= 5x DCMTK echoscu (with TCP_NODELAY=1).
"""

from __future__ import annotations

from bench.fixture import LOCALHOST, NODELAY, STORESCP_AET, Fixture, Tools
from bench.harness import MS, Program, Target, case


@case("echo", MS, "one C-ECHO association including process start, against DCMTK storescp")
def echo_case(tools: Tools, fx: Fixture) -> list[Program]:
    echoscu = tools.dcmtk("echoscu")
    port = fx.dcmtk_storescp(aet=STORESCP_AET)
    echoscu_argv = [echoscu, "-aec", STORESCP_AET, LOCALHOST, str(port)]
    return [
        Program("dcmtool echo", [*tools.dcmtool, "echo", f"{STORESCP_AET}@{LOCALHOST}:{port}"],
                role="dcmtool"),
        Program("DCMTK echoscu (TCP_NODELAY=1)", echoscu_argv, env=NODELAY,
                target=Target.ratio("<=", 5.0)),
        Program("pynetdicom echoscu",
                [tools.python, "-m", "pynetdicom", "echoscu", LOCALHOST, str(port),
                 "-aec", STORESCP_AET],
                target=Target.ratio("<=", 0.5)),
        # Informational: DCMTK's client with Nagle on (Debian's default); the server keeps
        # TCP_NODELAY=1. With neither end setting it, a C-ECHO takes about 100 ms here.
        Program("DCMTK echoscu (no TCP_NODELAY)", echoscu_argv, role="info"),
    ]
