"""``startup``: the fixed cost of every dcmtool command, beside the bare interpreter."""

from __future__ import annotations

from bench.fixture import Fixture, Tools
from bench.harness import MS, Program, Target, case


@case("startup", MS, "`dcmtool --help`, process start to exit; `python -c pass` is the floor")
def startup_case(tools: Tools, fx: Fixture) -> list[Program]:
    return [
        Program("dcmtool --help", [*tools.dcmtool, "--help"], role="dcmtool",
                target=Target.absolute("<=", 250)),
        # Issue #17: dcmtool --help within 5x the bare interpreter's start (time ratio).
        Program("python -c pass (floor)", [tools.python, "-c", "pass"], role="floor",
                target=Target.ratio("<=", 5.0)),
    ]
