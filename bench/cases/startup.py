"""``startup``: the fixed cost of every dcmtool command, beside the bare interpreter."""

from __future__ import annotations

from bench.fixture import Fixture, Tools
from bench.harness import MS, Program, Target, case


@case("startup", MS, "`dcmtool --help`, process start to exit; `python -c pass` is the floor")
def startup_case(tools: Tools, fx: Fixture) -> list[Program]:
    return [
        Program("dcmtool --help", [*tools.dcmtool, "--help"], role="dcmtool",
                target=Target.absolute("<=", 250)),
        Program("python -c pass (floor)", [tools.python, "-c", "pass"], role="floor"),
    ]
