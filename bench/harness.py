"""What a case is (rows, units, targets), the case registry, and the interleaved timing."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.fixture import CaseSkipped, Fixture, ServerError, Tools

DEFAULT_RUNS = 15
DEFAULT_WARMUPS = 2
RUN_TIMEOUT = 120.0  # seconds for one run of one command


# --------------------------------------------------------------------------------------------
# Units and targets


@dataclass(frozen=True)
class Unit:
    """How one run's sample becomes a figure. The sample is the run's time in seconds, or what
    the row's ``measure`` returned (e.g. bytes); ``work`` is items or bytes per run for rates."""

    name: str
    lower_is_better: bool
    convert: Callable[[float, float | None], float]  # (sample, work) -> value


MS = Unit("ms", True, lambda seconds, work: seconds * 1e3)
ITEMS_PER_S = Unit("items/s", False, lambda seconds, work: (work or 0.0) / seconds)
FILES_PER_S = Unit("files/s", False, lambda seconds, work: (work or 0.0) / seconds)
MB_PER_S = Unit("MB/s", False, lambda seconds, work: (work or 0.0) / 1e6 / seconds)
MIB = Unit("MiB", True, lambda nbytes, work: nbytes / 2**20)  # with Program.measure (bytes)


@dataclass(frozen=True)
class Target:
    """A goal on medians, evaluated on the row that carries it.

    ``absolute("<=", 250)`` on dcmtool's row: dcmtool's median <= 250 (in the case's unit).
    ``ratio("<=", 0.6)`` on a peer's row: dcmtool's median <= 0.6 x this peer's median.
    ``versus(">=", 1.0, "DCMTK storescu")`` on any row (e.g. a variant of dcmtool): this row's
    median >= 1.0 x the median of the row labelled "DCMTK storescu" in the same case.
    """

    op: str  # "<=" or ">="
    value: float
    relative: bool
    other: str | None = None  # with versus(): the label of the row this one is compared with

    @classmethod
    def absolute(cls, op: str, value: float) -> Target:
        return cls(op, value, relative=False)

    @classmethod
    def ratio(cls, op: str, factor: float) -> Target:
        return cls(op, factor, relative=True)

    @classmethod
    def versus(cls, op: str, factor: float, label: str) -> Target:
        return cls(op, factor, relative=True, other=label)

    def text(self, unit: Unit) -> str:
        if self.other is not None:
            return f"this {self.op} {self.value:g}x {self.other}"
        if self.relative:
            return f"dcmtool {self.op} {self.value:g}x this"
        return f"{self.op} {self.value:g} {unit.name}"

    def met(self, measured: float) -> bool:
        return measured <= self.value if self.op == "<=" else measured >= self.value


# --------------------------------------------------------------------------------------------
# Commands and cases


@dataclass
class Program:
    """One row: a command to time.

    role: "dcmtool" (the subject, at most one per case), "variant" (dcmtool with other
    options, e.g. ``--jobs 2``: its dcmtool/this column is the subject's median over its own;
    judge it with ``Target.versus``), "peer" (a reference it is compared with), "floor" (a
    lower bound for reference, e.g. the bare interpreter), "info" (informational, e.g. a peer
    in a non-default configuration).
    """

    label: str
    argv: list[str]
    role: str = "peer"
    env: dict[str, str] = field(default_factory=dict)  # on top of the bench's base environment
    target: Target | None = None
    work: float | None = None  # items or bytes per run, for rate units
    items: int | None = None  # with a MB/s unit: items per run, for an extra items/s column
    before_each: Callable[[], None] | None = None  # untimed, before every run (e.g. clear a dir)
    # Untimed, after every successful run, with its time in seconds: returns the sample to
    # record instead of the time (e.g. a server's peak RSS in bytes, for the MIB unit).
    measure: Callable[[float], float] | None = None
    # Untimed, after every successful run (and after measure): check what the run did and
    # clean up, e.g. count what a server stored and stop it. Raising fails the run.
    after_each: Callable[[], None] | None = None
    cwd: str | None = None
    server: list[str] | None = None  # the server the client talks to, `VAR=value` first (shown)
    # A failed run (exit status, or its after_each check) is run again up to this many times,
    # each failure noted under the table; the failed runs' times are dropped. Only for a peer
    # with a known intermittent bug, never for dcmtool's rows.
    retries: int = 0
    # The label of the dcmtool row (role "dcmtool" or "variant") that this row's dcmtool/this
    # column and Target.ratio compare with, when it is not the case's dcmtool row: e.g. a peer
    # on another server than the subject's, compared with dcmtool on that same server.
    subject: str | None = None
    # Seconds one run may take before it is killed and the row is an error (default
    # RUN_TIMEOUT): for a peer known to take minutes where dcmtool takes seconds.
    timeout: float | None = None


Builder = Callable[[Tools, Fixture], list[Program]]


@dataclass
class Case:
    name: str
    unit: Unit
    summary: str
    build: Builder
    runs: int | None = None  # this case's default for --runs / --warmups (slow cases run fewer)
    warmups: int | None = None


# Filled by the @case decorators as bench.cases imports its modules: this order is the order
# of --list and of a bench run without --case.
CASES: dict[str, Case] = {}


def case(name: str, unit: Unit, summary: str, runs: int | None = None,
         warmups: int | None = None) -> Callable[[Builder], Builder]:
    """Register a case. The decorated function does the setup (through the Fixture, which
    tears everything down afterwards) and returns the rows to compare, dcmtool's first.
    ``runs``/``warmups``: the case's own defaults when --runs/--warmups are not given."""

    def register(build: Builder) -> Builder:
        CASES[name] = Case(name, unit, summary, build, runs, warmups)
        return build

    return register


# --------------------------------------------------------------------------------------------
# Running


@dataclass
class Row:
    program: Program
    samples: list[float] = field(default_factory=list)  # seconds (or measured), no warm-ups
    seconds: list[float] = field(default_factory=list)  # the runs' times, always
    error: str | None = None


@dataclass
class CaseResult:
    case: Case
    rows: list[Row]
    error: str | None = None  # setup failed or skipped
    skipped: bool = False
    runs: int = 0
    warmups: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    """One successful run: its time, and the sample recorded (the time, or what was measured)."""

    seconds: float
    sample: float


def run_once(program: Program, base_env: dict[str, str]) -> Run | str:
    """Time one run from process start to exit, then measure and check it (untimed).
    Returns the run, or what went wrong."""
    timed = time_once(program, base_env)
    if isinstance(timed, str):
        return timed
    sample = timed
    if program.measure is not None:
        try:
            sample = float(program.measure(timed))
        except Exception as exc:
            return f"measure failed: {type(exc).__name__}: {exc}"
    if program.after_each is not None:
        try:
            program.after_each()
        except Exception as exc:
            return f"after_each failed: {type(exc).__name__}: {exc}"
    return Run(timed, sample)


def time_once(program: Program, base_env: dict[str, str]) -> float | str:
    """Time one run from process start to exit. Returns its seconds, or what went wrong."""
    if program.before_each is not None:
        try:
            program.before_each()
        except Exception as exc:  # a broken hook is an error row, not a crash
            return f"before_each failed: {type(exc).__name__}: {exc}"
    env = {**base_env, **program.env}
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(program.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, cwd=program.cwd)
    except OSError as exc:
        return f"cannot start: {exc}"
    try:
        out, err = proc.communicate(timeout=program.timeout or RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return f"timed out after {program.timeout or RUN_TIMEOUT:g} s"
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        lines = [x.strip() for x in (err or out).decode(errors="replace").splitlines()]
        lines = [x for x in lines if x]
        text = " | ".join(dict.fromkeys(lines[:1] + lines[-1:])) or "(no output)"
        return f"exit {proc.returncode}: {text[:240]}"
    return elapsed


def case_bug(row: Row, rows: list[Row], unit: Unit) -> str | None:
    """What is wrong with how a case declared this row, if anything (the row is then an error).
    The last check that fails is the one reported."""
    program = row.program
    subjects = {r.program.label for r in rows if r.program.role in ("dcmtool", "variant")}
    if program.subject is not None and program.subject not in subjects:
        return f"case bug: its subject is no dcmtool row: {program.subject}"
    target = program.target
    labels = {r.program.label for r in rows}
    if target is not None and target.other is not None and target.other not in labels:
        return f"case bug: its target names no row of the case: {target.other}"
    if program.retries and program.role in ("dcmtool", "variant"):
        return "case bug: dcmtool's rows must not be run again after a failure"
    if not unit.lower_is_better and not program.work:
        return f"case bug: a {unit.name} row needs Program.work"
    return None


def run_case(case_: Case, tools: Tools, runs: int, warmups: int, progress: Progress) -> CaseResult:
    fx = Fixture(tools, rounds=runs + warmups)
    try:
        progress.update(f"{case_.name}: setting up")
        try:
            programs = case_.build(tools, fx)
        except CaseSkipped as exc:
            return CaseResult(case_, [], error=str(exc), skipped=True)
        except ServerError as exc:
            return CaseResult(case_, [], error=f"setup failed: {exc}")
        except Exception as exc:
            return CaseResult(case_, [], error=f"setup failed: {type(exc).__name__}: {exc}")
        rows = [Row(p) for p in programs]
        for row in rows:
            row.error = case_bug(row, rows, case_.unit)
        rounds = warmups + runs
        for round_ in range(rounds):
            progress.update(f"{case_.name}: round {round_ + 1}/{rounds}")
            for row in rows:  # interleaved: A B C A B C ...
                if row.error is not None:
                    continue  # one failure makes the whole row an error: no partial figures
                outcome = run_once(row.program, tools.base_env)
                for _ in range(row.program.retries if isinstance(outcome, str) else 0):
                    fx.note(f"{row.program.label}: failed in round {round_ + 1}, run again: "
                            f"{outcome}")
                    outcome = run_once(row.program, tools.base_env)
                    if not isinstance(outcome, str):
                        break
                if isinstance(outcome, str):
                    row.error = f"{outcome} (round {round_ + 1})"
                elif round_ >= warmups:
                    row.samples.append(outcome.sample)
                    row.seconds.append(outcome.seconds)
        return CaseResult(case_, rows, runs=runs, warmups=warmups, notes=fx.notes)
    finally:
        fx.close()


class Progress:
    """One self-overwriting status line on stderr, only on a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()

    def update(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(f"\r\033[K{text}")
            sys.stderr.flush()

    def done(self) -> None:
        self.update("")
