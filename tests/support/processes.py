"""External peer processes: find the program, pick a port, start, wait on the socket, stop.

Standard library only (pytest is imported where a test is skipped): bench/ uses it too.

Nothing here sleeps hoping a server is up: readiness is a TCP connect to the port (or an HTTP
answer), polled until a deadline, and a failure says why with the tail of the process's log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOOPBACK = "127.0.0.1"

#: How long a peer may take to start listening (Orthanc creates its SQLite index first).
START_TIMEOUT = 30.0
#: How long a peer may take to exit after SIGTERM before it gets SIGKILL.
STOP_TIMEOUT = 10.0

#: What each ``@pytest.mark.peer(NAME)`` needs: (path, Debian package, description).
PEER_PROGRAMS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "dcmtk": (
        ("/usr/bin/storescp", "dcmtk", "DCMTK storescp"),
        ("/usr/bin/wlmscpfs", "dcmtk", "DCMTK wlmscpfs"),
    ),
    "orthanc": (("/usr/sbin/Orthanc", "orthanc", "Orthanc"),),
    "dicom3tools": (("/usr/bin/dciodvfy", "dicom3tools", "dicom3tools dciodvfy"),),
    "gdcm": (("/usr/bin/gdcmconv", "libgdcm-tools", "GDCM gdcmconv"),),
}


class PeerStartError(RuntimeError):
    """A peer process did not come up; the message carries its log tail."""

    def __init__(self, message: str, *, exited: bool = False, log: str = "") -> None:
        super().__init__(message)
        self.exited = exited
        self.log = log


def in_ci() -> bool:
    """``CI=true`` (GitHub Actions, GitLab, ...): a missing peer fails instead of skipping."""
    return os.environ.get("CI", "").strip().lower() == "true"


def require_program(path: str, package: str, description: str | None = None) -> str:
    """Return ``path`` if it is an executable; else skip the test (fail it when CI=true)."""
    # Imported here: the benchmarks (bench/) start their peers with this module, without pytest.
    import pytest

    if os.path.isfile(path) and os.access(path, os.X_OK):
        return path
    what = description or os.path.basename(path)
    reason = f"{what} not installed ({path}): apt-get install {package}"
    if in_ci():
        pytest.fail(f"{reason} [CI=true: peers must not be skipped]", pytrace=False)
    pytest.skip(reason)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (bind port 0, read it, close).

    Another process may take it before ours binds it; ``start_process`` retries with a new port
    when the program fails with "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_accepts(host: str, port: int, timeout: float = 0.25) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:]) or "<empty log>"


@dataclass
class ManagedProcess:
    """A process a fixture started, in its own process group so forked children go with it."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def _signal_group(self, sig: signal.Signals) -> None:
        # The group id is the PID of the process we started (start_new_session=True): this
        # reaches it and the children it forked (wlmscpfs --fork, storescp --fork), nothing else.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait, SIGKILL if it is still there; idempotent."""
        try:
            if self.running():
                self._signal_group(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    self.process.wait(5)
            # Forked children outlive a parent that exited on its own.
            self._signal_group(signal.SIGKILL)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def describe_failure(self, what: str) -> str:
        rc = self.process.poll()
        state = f"exited with status {rc}" if rc is not None else "still running"
        return (f"{self.name} {what} ({state}); command: {' '.join(self.argv)}\n"
                f"--- last lines of {self.log_path} ---\n{self.log_tail()}")


def spawn(name: str, argv: Sequence[str], log_path: Path, *, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> ManagedProcess:
    """Start ``argv`` with stdout and stderr going to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("ab")
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    except BaseException:
        log.close()
        raise
    return ManagedProcess(name, list(argv), log_path, process, log)


def wait_until_ready(proc: ManagedProcess, ready: Callable[[], bool], *, what: str,
                     timeout: float = START_TIMEOUT) -> None:
    """Poll ``ready()`` until it is true; fail early if the process exits, late at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if not proc.running():
            raise PeerStartError(proc.describe_failure(f"exited before {what}"), exited=True,
                                 log=proc.log_tail())
        if ready():
            return
        if time.monotonic() > deadline:
            raise PeerStartError(proc.describe_failure(f"did not {what} within {timeout:g} s"),
                                 log=proc.log_tail())
        time.sleep(0.02)


def wait_for_port(proc: ManagedProcess, port: int, host: str = LOOPBACK, *,
                  timeout: float = START_TIMEOUT) -> None:
    wait_until_ready(proc, lambda: port_accepts(host, port), what=f"listen on {host}:{port}",
                     timeout=timeout)


_PORT_IN_USE = ("address already in use", "cannot bind", "bind failed", "could not bind",
                "errno 98", "eaddrinuse")


def start_with_ports(
    name: str,
    build: Callable[[list[int]], Sequence[str]],
    *,
    ports: int,
    log_path: Path,
    ready: Callable[[ManagedProcess, list[int]], None],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    attempts: int = 3,
) -> tuple[ManagedProcess, list[int]]:
    """Start a program on ``ports`` fresh free ports; retry with new ports if one was taken.

    ``build(ports)`` returns the command line (it may also write a config file naming them);
    ``ready(proc, ports)`` blocks until the program serves, raising ``PeerStartError``.
    """
    last: PeerStartError | None = None
    for _ in range(attempts):
        chosen: list[int] = []
        while len(chosen) < ports:
            port = free_port()
            # Free on loopback but someone listening on another interface's socket would
            # answer our readiness probe in the program's place: skip such ports.
            if port not in chosen and not port_accepts(LOOPBACK, port, timeout=0.1):
                chosen.append(port)
        proc = spawn(name, build(chosen), log_path, env=env, cwd=cwd)
        try:
            ready(proc, chosen)
            if not proc.running():  # the probe reached someone else; ours died
                raise PeerStartError(proc.describe_failure("exited while starting"),
                                     exited=True, log=proc.log_tail())
            return proc, chosen
        except PeerStartError as exc:
            proc.stop()
            last = exc
            if exc.exited and any(s in exc.log.lower() for s in _PORT_IN_USE):
                continue  # lost the race for the port: pick others
            raise
        except BaseException:
            proc.stop()
            raise
    assert last is not None
    raise last


def kill(proc: ManagedProcess) -> None:
    """SIGKILL at once, then reap like ``stop``: for a server whose state is thrown away
    (Orthanc takes ~3.5 s to exit on SIGTERM)."""
    if proc.running():
        proc._signal_group(signal.SIGKILL)
    proc.stop()


def dcmtk_env() -> dict[str, str]:
    """DCMTK honours TCP_NODELAY=1; without it small PDUs wait on Nagle on loopback."""
    return {**os.environ, "TCP_NODELAY": "1"}


def stop_all(processes: Sequence[ManagedProcess]) -> None:
    """Stop several processes: SIGTERM to all first, so slow shutdowns (Orthanc: ~3.5 s)
    overlap, then wait for each (SIGKILL after the timeout)."""
    for proc in processes:
        if proc.running():
            proc._signal_group(signal.SIGTERM)
    errors: list[BaseException] = []
    for proc in processes:
        try:
            proc.stop()
        except BaseException as exc:  # keep stopping the others
            errors.append(exc)
    if errors:
        raise errors[0]
