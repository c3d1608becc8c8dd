"""The command line: ``bench/run [--case NAME,...] [--runs N] ...`` (``python -m bench``)."""

from __future__ import annotations

import argparse
import datetime
import shlex
import signal
import sys
import tempfile
from pathlib import Path

import bench.cases  # noqa: F401 - registers every case in CASES
from bench.environment import base_environment, compile_dcmtool, describe, find_tools
from bench.fixture import Fixture, Tools
from bench.harness import (
    CASES,
    DEFAULT_RUNS,
    DEFAULT_WARMUPS,
    Case,
    Progress,
    run_case,
)
from bench.report import table, write_json


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description="Time dcmtool beside DCMTK and pynetdicom's apps, interleaved, as medians.")
    parser.add_argument("--case", action="append", metavar="NAME",
                        help=f"run only this case (repeatable or comma-separated): "
                             f"{', '.join(CASES)}")
    parser.add_argument("--runs", type=int, metavar="N",
                        help=f"timed runs per command (default {DEFAULT_RUNS}; the slow serve "
                             f"cases default to fewer, see --list)")
    parser.add_argument("--warmups", type=int, metavar="N",
                        help=f"untimed runs per command first (default {DEFAULT_WARMUPS}; "
                             f"fewer for the serve cases)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--python", metavar="PATH",
                        help="interpreter for `-m pynetdicom` (and `-m dcmtool` when it has no "
                             "dcmtool script beside it); default: the one dcmtool runs on")
    parser.add_argument("--dcmtool", metavar="CMD",
                        help="dcmtool command to time (default: next to the running Python, "
                             "else on PATH, else `PYTHON -m dcmtool` with --python)")
    parser.add_argument("--qr-studies", type=int, default=5000, metavar="N",
                        help="studies of 20 small instances in the index the qr-* cases load "
                             "into dcmtool serve and Orthanc (default 5000: 100,000 instances)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--strict", action="store_true",
                        help="exit 3 when a target is not met (errors always exit 1)")
    args = parser.parse_args(argv)
    if (args.runs is not None and args.runs < 1) or (args.warmups is not None
                                                      and args.warmups < 0):
        parser.error("--runs must be >= 1 and --warmups >= 0")
    if args.qr_studies < 1:
        parser.error("--qr-studies must be >= 1")
    names = [n.strip() for item in (args.case or []) for n in item.split(",") if n.strip()]
    selected: list[str] = []
    for name in names:  # a case's name, or a prefix before "-" naming a group of cases
        group = [name] if name in CASES else [c for c in CASES if c.startswith(name + "-")]
        if not group:
            parser.error(f"unknown case {name}; cases: {', '.join(CASES)}")
        selected += [c for c in group if c not in selected]
    args.cases = selected or list(CASES)
    return args


def runs_of(case_: Case, args: argparse.Namespace) -> tuple[int, int]:
    """(timed runs, warm-ups) for a case: the command line's, else the case's, else default."""
    runs = args.runs if args.runs is not None else case_.runs or DEFAULT_RUNS
    warmups = (args.warmups if args.warmups is not None
               else case_.warmups if case_.warmups is not None else DEFAULT_WARMUPS)
    return runs, warmups


def runs_text(cases: list[Case], args: argparse.Namespace) -> str:
    """'15 runs per command after 2 warm-up(s)', with the cases that differ."""
    counts: dict[tuple[int, int], list[str]] = {}
    for case_ in cases:
        counts.setdefault(runs_of(case_, args), []).append(case_.name)
    (runs, warmups), *others = sorted(counts, key=lambda k: -len(counts[k]))
    text = f"{runs} runs per command after {warmups} warm-up(s)"
    if others:
        text += " (" + "; ".join(f"{', '.join(counts[k])}: {k[0]} after {k[1]}"
                                 for k in others) + ")"
    return text


def list_cases(tools: Tools, args: argparse.Namespace) -> None:
    """Print each case with the commands it would compare (servers are started, not timed;
    test data is not generated: its folder is named but empty)."""
    for name, case_ in CASES.items():
        runs, warmups = runs_of(case_, args)
        print(f"{name} ({case_.unit.name}, {runs} runs after {warmups} warm-up(s)): "
              f"{case_.summary}")
        fx = Fixture(tools, listing=True, rounds=runs + warmups)
        try:
            for p in case_.build(tools, fx):
                env = " ".join(f"{k}={v}" for k, v in p.env.items())
                target = f"   [target: {p.target.text(case_.unit)}]" if p.target else ""
                if p.retries:
                    target += f"   [a failed run is run again, up to {p.retries}x]"
                if p.subject:
                    target += f"   [dcmtool/this against: {p.subject}]"
                print(f"  {p.label:<31} {p.role:<7} {env + ' ' if env else ''}"
                      f"{shlex.join(p.argv)}{target}")
                if p.server:
                    print(f"  {'':<31} {'':<7} to: {shlex.join(p.server)}")
        except Exception as exc:
            print(f"  (cannot set up here: {type(exc).__name__}: {exc})")
        finally:
            fx.close()


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C so fixtures stop the servers they started.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    python, dcmtool = find_tools(args.python, args.dcmtool)
    with tempfile.TemporaryDirectory(prefix="dcmtool-bench-") as tmp_name:
        tmp = Path(tmp_name)
        tools = Tools(python=python, dcmtool=dcmtool, base_env=base_environment(tmp), tmp=tmp,
                      qr_studies=args.qr_studies)
        if not args.list:
            compile_dcmtool(python)
        if args.list:
            list_cases(tools, args)
            return 0
        started = datetime.datetime.now().astimezone()
        header = [
            f"dcmtool bench, {started:%Y-%m-%d %H:%M %Z}: "
            f"{runs_text([CASES[n] for n in args.cases], args)}, interleaved (medians, min, "
            f"max over the timed runs)",
            *describe(tools),
        ]
        print("\n".join(header), flush=True)
        progress = Progress(enabled=True)
        results = []
        try:
            for name in args.cases:
                runs, warmups = runs_of(CASES[name], args)
                results.append(run_case(CASES[name], tools, runs, warmups, progress))
        except KeyboardInterrupt:
            progress.done()
            print("bench: interrupted", file=sys.stderr)
            return 130
        progress.done()
    text, data = table(results)
    print()
    print(text)
    print()
    print("dcmtool/this: dcmtool's median / this row's median, in the case's unit "
          "(for ms, below 1.00x means dcmtool is faster).")
    if args.json:
        document = {
            "date": started.isoformat(timespec="seconds"),
            "runs": args.runs,  # null: each case's default (see the cases' own runs)
            "warmups": args.warmups,
            "qr_studies": args.qr_studies,
            "environment": header[1:],
            "python": python,
            "dcmtool": dcmtool,
            "cases": data,
        }
        write_json(args.json, document)
    errors = any(c.get("error") and not c.get("skipped") for c in data) or any(
        r["error"] for c in data for r in c["rows"])
    unmet = any(r["met"] is False for c in data for r in c["rows"])
    if errors:
        return 1
    return 3 if (unmet and args.strict) else 0
