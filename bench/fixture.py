"""What a case sets up, all undone when it ends: temp dirs, test data, servers.

Servers are started and waited for with the test suite's process helpers
(``tests/support/processes.py``): a free loopback port, the program in its own process group
with its output in a log file, readiness polled on its socket until a deadline, and a stop
that reaches the children it forked.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.processes import (
    LOOPBACK,
    ManagedProcess,
    PeerStartError,
    free_port,
    kill,
    spawn,
    start_with_ports,
    wait_for_port,
)

DCMTK_BIN = Path(os.environ.get("BENCH_DCMTK_BIN", "/usr/bin"))  # DCMTK: always by absolute path
GDCM_BIN = Path(os.environ.get("BENCH_GDCM_BIN", "/usr/bin"))  # GDCM's gdcmconv, likewise
MAKE_DATA = Path(__file__).resolve().with_name("make_data.py")  # test data, run with --python
# Launchers for rows whose figure is not one process's run (see its --help): standard library
# only, run by the bench's own Python; they write what they measured to a JSON report.
LAUNCH = Path(__file__).resolve().with_name("launch.py")
LOCALHOST = LOOPBACK
SERVER_START_TIMEOUT = 15.0
# DCMTK programs get TCP_NODELAY=1 (Debian's build leaves Nagle on otherwise; dcmtool sets
# TCP_NODELAY on its sockets itself).
NODELAY = {"TCP_NODELAY": "1"}
# The AE titles the cases give dcmtool serve and DCMTK storescp.
SERVE_AET, STORESCP_AET = "DCMTOOL", "STORESCP"
# make_data.py's arguments for the 200-image CT study (512x512x16 bit, ~513 KB each, 2 series)
# of store-tls and the retrieve-*-serve / retrieve-*-dcmqrscp cases (Fixture.shared_data key).
CT_200_COUNT = 200
CT_200 = ("ct", "--count", str(CT_200_COUNT), "--series", "2")


class CaseSkipped(Exception):
    """A case cannot run here (e.g. a peer program is missing)."""


class ServerError(Exception):
    """Set-up or a run's check failed: a server, a loader, the test data, a run's output."""


# --------------------------------------------------------------------------------------------
# Tools (which dcmtool, which Python, which DCMTK) and test data


@dataclass(frozen=True)
class DataSet:
    """Files made by make_data.py, flat in one folder (for ``storescu +sd DIR``)."""

    dir: Path
    files: int
    nbytes: int
    # make_data.py's whole JSON summary (e.g. the index's queries and match counts).
    info: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class Tools:
    python: str
    dcmtool: list[str]
    base_env: dict[str, str]
    tmp: Path
    # Test data shared by several cases (Fixture.shared_data), kept until the bench ends.
    shared: dict[tuple[str, ...], DataSet] = field(default_factory=dict)
    # Other set-up shared by several cases (e.g. the loaded archives of the qr-* cases).
    state: dict[str, Any] = field(default_factory=dict)
    qr_studies: int = 5000  # --qr-studies: studies of 20 instances in the qr-* cases' index

    @staticmethod
    def dcmtk(program: str) -> str:
        path = DCMTK_BIN / program
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise CaseSkipped(f"DCMTK {program} not found at {path}")
        return str(path)

    @staticmethod
    def gdcm(program: str) -> str:
        path = GDCM_BIN / program
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise CaseSkipped(f"GDCM {program} not found at {path}")
        return str(path)


# --------------------------------------------------------------------------------------------
# The fixture


class Fixture:
    """Setup helpers for one case; ``close()`` undoes them in reverse order.

    ``listing``: only the commands are wanted (``--list``): test data is not generated.
    """

    def __init__(self, tools: Tools, listing: bool = False, rounds: int = 1) -> None:
        self.tools = tools
        self.listing = listing
        self.rounds = rounds  # runs + warm-ups of each row: what a case may need room for
        self.notes: list[str] = []  # printed under the table
        self._stack = contextlib.ExitStack()

    def close(self) -> None:
        self._stack.close()

    def on_close(self, callback: Callable[[], object]) -> None:
        self._stack.callback(callback)

    def tempdir(self, prefix: str = "case-") -> Path:
        return Path(self._stack.enter_context(
            tempfile.TemporaryDirectory(prefix=prefix, dir=self.tools.tmp)))

    def server(self, argv_for_port: Callable[[int], list[str]], env: dict[str, str] | None = None,
               name: str = "server", timeout: float = SERVER_START_TIMEOUT) -> int:
        """Start a server on a free loopback port (another one if it loses the port to
        someone else), wait until it accepts connections, and register its stop. Returns the
        port."""
        return self.server_process(argv_for_port, env, name, timeout)[1]

    def server_process(self, argv_for_port: Callable[[int], list[str]],
                       env: dict[str, str] | None = None, name: str = "server",
                       timeout: float = SERVER_START_TIMEOUT) -> tuple[ManagedProcess, int]:
        """``server``, returning the process too (e.g. to read its peak RSS)."""
        log_path = self.tempdir(prefix=f"{name}-log-") / f"{name}.log"
        try:
            proc, (port,) = start_with_ports(
                name, lambda ports: argv_for_port(ports[0]), ports=1, log_path=log_path,
                ready=lambda proc, ports: wait_for_port(proc, ports[0], timeout=timeout),
                env={**self.tools.base_env, **(env or {})})
        except PeerStartError as exc:
            raise ServerError(f"{name} did not start: {start_failure(exc)}") from None
        self.on_close(proc.stop)
        return proc, port

    def dcmtk_storescp(self, aet: str = "STORESCP") -> int:
        storescp = self.tools.dcmtk("storescp")
        out = self.tempdir(prefix="storescp-")
        return self.server(
            lambda port: [storescp, "-aet", aet, "-od", str(out), str(port)],
            env=NODELAY, name="storescp")

    def fresh_server(self, name: str, argv_for_port: Callable[[int], list[str]], *,
                     storage: list[Path], env: dict[str, str] | None = None,
                     aet: str | None = None, count: Callable[[], int] | None = None,
                     ready: Callable[[ManagedProcess], None] | None = None,
                     kill_to_stop: bool = False, keep_used: bool = False) -> ServerProcess:
        """A server started afresh, with empty storage, for every run of a row (not started
        yet: give the row ``before_each=server.start, after_each=server.finish``).
        ``ready``: a readiness check beyond its DICOM port (e.g. Orthanc's REST API).
        ``kill_to_stop``: SIGKILL rather than SIGTERM (its storage is thrown away anyway).
        ``keep_used``: set each used storage aside (deleted when the bench ends) instead of
        deleting it between runs; see ``has_room``."""
        server = ServerProcess(self, name, argv_for_port, storage=storage, env=env, aet=aet,
                               count=count, ready=ready, kill_to_stop=kill_to_stop,
                               keep_used=keep_used)
        self.on_close(server.stop)
        return server

    def has_room(self, nbytes: int) -> bool:
        """Whether the temp dir has ``nbytes`` free (and 1 GiB to spare)."""
        return shutil.disk_usage(self.tools.tmp).free >= nbytes + 2**30

    def note(self, text: str) -> None:
        self.notes.append(text)

    def data(self, kind: str, *options: str, timeout: float = 900.0) -> DataSet:
        """Generate a test data set with make_data.py on the bench's Python (which has
        pydicom), into a temp dir removed when the case ends."""
        out = self.tempdir(prefix=f"data-{kind}-")
        if self.listing:
            return DataSet(out, 0, 0)
        return self._make_data(out, kind, *options, timeout=timeout)

    def _make_data(self, out: Path, kind: str, *options: str, timeout: float = 900.0) -> DataSet:
        if not MAKE_DATA.is_file():
            raise CaseSkipped(f"{MAKE_DATA} is missing")
        argv = [self.tools.python, str(MAKE_DATA), str(out), kind, *options]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  env=self.tools.base_env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"cannot make the {kind} data: {exc}") from None
        if proc.returncode != 0:
            raise ServerError(f"cannot make the {kind} data: {shlex.join(argv)}: exit "
                              f"{proc.returncode}: {proc.stderr.strip()[-300:]}")
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        return DataSet(out, int(summary["files"]), int(summary["bytes"]), summary)

    def shared_data(self, key: tuple[str, ...],
                    make: Callable[[Path], DataSet] | None = None) -> DataSet:
        """Test data made once per bench run for every case that asks for the same ``key``,
        in a folder deleted when the bench ends: by ``make(folder)``, else by make_data.py
        with the arguments ``key`` (kind, options...)."""
        if self.listing:
            return DataSet(self.tools.tmp / "shared-data", 0, 0)
        if key not in self.tools.shared:
            out = Path(tempfile.mkdtemp(prefix="shared-data-", dir=self.tools.tmp))
            if make is not None:
                self.tools.shared[key] = make(out)
            else:
                self.tools.shared[key] = self._make_data(out, key[0], *key[1:])
        return self.tools.shared[key]

    def subset(self, data: DataSet, count: int) -> DataSet:
        """The first ``count`` files of a data set (in name order, so whole studies for
        make_data.py's sets), hard-linked (else copied) into a folder of their own."""
        out = self.tempdir(prefix="subset-")
        if self.listing:
            return DataSet(out, 0, 0)
        files = sorted(p for p in data.dir.iterdir() if p.is_file())[:count]
        nbytes = 0
        for path in files:
            try:
                os.link(path, out / path.name)
            except OSError:
                shutil.copyfile(path, out / path.name)
            nbytes += path.stat().st_size
        return DataSet(out, len(files), nbytes)

    def require_free(self, nbytes: int, why: str) -> None:
        """Skip the case unless the bench's temp dir has ``nbytes`` free."""
        free = shutil.disk_usage(self.tools.tmp).free
        if free < nbytes:
            raise CaseSkipped(f"needs {nbytes / 2**30:.1f} GiB free for {why}, only "
                              f"{free / 2**30:.1f} GiB free in {self.tools.tmp.parent}")


class ServerProcess:
    """A server the bench restarts for every run: ``start()`` empties its storage, starts it
    on its port (fixed when created, so the rows' commands can name it) and waits until it
    listens, passes ``ready`` and, with ``aet``, answers a C-ECHO; ``finish()`` checks what it
    stored, stops it and empties the storage again: deleted, or with ``keep_used`` set aside
    until the bench ends (deleting files between runs would slow the next run's file
    creation)."""

    def __init__(self, fx: Fixture, name: str, argv_for_port: Callable[[int], list[str]], *,
                 storage: list[Path], env: dict[str, str] | None, aet: str | None,
                 count: Callable[[], int] | None,
                 ready: Callable[[ManagedProcess], None] | None, kill_to_stop: bool,
                 keep_used: bool) -> None:
        self.fx = fx
        self.keep_used = keep_used
        self.name = name
        self.argv_for_port = argv_for_port
        self.storage = storage
        self.env = env or {}
        self.aet = aet
        self.count = count
        self.ready = ready
        self.kill_to_stop = kill_to_stop
        self.port = free_port()
        self.proc: ManagedProcess | None = None
        self.log_path: Path | None = None
        self._log_dir: Path | None = None
        self._starts = 0

    @property
    def pid(self) -> int:
        if self.proc is None or not self.proc.running():
            raise ServerError(f"{self.name} is not running")
        return self.proc.pid

    def start(self) -> None:
        self.stop()
        if self._log_dir is None:
            self._log_dir = self.fx.tempdir(prefix=f"{self.name}-log-")
        self._starts += 1
        log_path = self.log_path = self._log_dir / f"{self.name}.{self._starts}.log"
        argv = self.argv_for_port(self.port)
        # Kept from the start, so that the fixture stops it also on Ctrl-C while it starts.
        proc = self.proc = spawn(self.name, argv, log_path,
                                 env={**self.fx.tools.base_env, **self.env})
        try:
            wait_for_port(proc, self.port, timeout=SERVER_START_TIMEOUT)
            if self.ready is not None:
                self.ready(proc)
            if self.aet is not None:
                dicom_echo(self.fx.tools, self.aet, self.port)
            return
        except PeerStartError as exc:
            failure = start_failure(exc)
        except ServerError as exc:
            failure = f"{exc}; {shlex.join(argv)}: {log_tail(log_path)}"
        kill(proc)
        self.proc = None
        raise ServerError(f"{self.name} did not start: {failure}")

    def finish(self, expected: int | None = None) -> None:
        """After a run: check that the server stored ``expected`` instances, then stop it."""
        try:
            if expected is not None and self.count is not None:
                stored = self.count()
                if stored != expected:
                    log = log_tail(self.log_path) if self.log_path else ""
                    raise ServerError(f"{self.name} stored {stored} of {expected} instances: "
                                      f"{log}")
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc is not None:
            if self.kill_to_stop:
                kill(self.proc)
            else:
                self.proc.stop()
            self.proc = None
        for directory in self.storage:
            if self.keep_used and directory.is_dir() and any(directory.iterdir()):
                # Deleting thousands of files right before the next run makes ext4 slow to
                # create files nearby (here ~0.5-1 ms per file instead of ~0.02 ms, for some
                # time): a cost of the bench, not of the servers. Set it aside (a rename);
                # the bench's temp dir, trash included, goes when the bench ends.
                trash = self.fx.tools.tmp / "used-storage"
                trash.mkdir(exist_ok=True)
                directory.rename(Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=trash))
                                 / directory.name)
            else:
                shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True, exist_ok=True)


class FreshDir:
    """A row's output folder (``path``), empty before each run: ``prepare()`` sets the last
    run's files aside (a rename, like ServerProcess.stop) with ``keep_used``, else deletes
    them. Subclasses check a run's output in ``check()`` (the row's ``after_each``)."""

    def __init__(self, fx: Fixture, prefix: str, keep_used: bool) -> None:
        self.base = fx.tempdir(prefix=prefix)
        self.path = self.base / "out"
        self.keep_used = keep_used
        self._used = 0

    def prepare(self) -> None:
        if self.path.exists():
            if self.keep_used:
                self._used += 1
                self.path.rename(self.base / f"used-{self._used}")
            else:
                shutil.rmtree(self.path)
        self.path.mkdir()

    def check(self) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# Helpers for cases


def dicom_echo(tools: Tools, aet: str, port: int, options: tuple[str, ...] = ()) -> None:
    """One C-ECHO with DCMTK echoscu: the server is up on the DICOM level, and warm.
    ``options``: more of echoscu's options (e.g. its TLS ones)."""
    argv = [tools.dcmtk("echoscu"), *options, "-aec", aet, "-to", "10", LOCALHOST, str(port)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              env={**tools.base_env, **NODELAY})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerError(f"C-ECHO failed: {exc}") from None
    if proc.returncode != 0:
        raise ServerError(f"C-ECHO failed: {(proc.stderr or proc.stdout).strip()[-200:]}")


def peak_rss(pid: int) -> float:
    """A running process's peak resident set size in bytes (VmHWM in /proc/PID/status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as exc:
        raise ServerError(f"cannot read the peak RSS of PID {pid}: {exc}") from None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) * 1024  # kB
    raise ServerError(f"no VmHWM in /proc/{pid}/status")


def launch_argv(what: str, report: Path, *options: str) -> list[str]:
    """A row's command that runs ``bench/launch.py WHAT`` (it writes its figures to
    ``report``; read them with ``launched``)."""
    return [sys.executable, str(LAUNCH), what, "--report", str(report), *options]


def launched(report: Path, figure: str, expected_matches: int | None = None) -> float:
    """One figure (seconds) of a launch.py report; with ``expected_matches`` (its find), the
    run fails unless the server answered that many matches."""
    try:
        result = json.loads(report.read_text())
    except (OSError, ValueError) as exc:
        raise ServerError(f"no usable report from launch.py: {exc}") from None
    if expected_matches is not None and result.get("matches") != expected_matches:
        raise ServerError(f"{result.get('matches')} matches, not {expected_matches:,}")
    return float(result[figure])


def count_files(root: Path, suffix: str = "") -> int:
    """Regular files under ``root`` whose name ends with ``suffix``, hidden folders skipped."""
    found = 0
    for _dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += sum(1 for name in filenames if name.endswith(suffix))
    return found


def one_line(text: str, limit: int = 300) -> str:
    """The end of a program's output on one line, for the notes under the table."""
    text = text.strip()
    return (text[-limit:] if text else "(no output)").replace("\n", " | ")


def log_tail(path: Path, limit: int = 300) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return one_line(text, limit)


def start_failure(exc: PeerStartError) -> str:
    """A server's failure to start, on one line: what happened, the command, its log's end."""
    return f"{str(exc).splitlines()[0]}: {one_line(exc.log)}"
