"""Fixtures for real DICOM peers (pynetdicom in-process, DCMTK, Orthanc) and the CLI runner.

``tests/conftest.py`` does ``from support.peers import *``, so everything in ``__all__`` is a
fixture (or helper, or hook) available to every test. Tests import helpers and types with
``from support.peers import run_cli, ...``.

Rules every fixture here follows:

* Loopback only. In-process servers bind 127.0.0.1 port 0 and read the port back; external
  programs get a port that was free a moment ago and are restarted on other ports if they lose
  the race. (DCMTK 3.6.7 and Orthanc 1.10.1 have no option to bind one interface: they listen
  on all interfaces, which on a loopback-only machine is still just loopback.)
* Readiness is a TCP connect (Orthanc: also ``GET /system``) polled until a deadline; a failure
  reports the exit status and the tail of the process's log.
* Every process is stopped by the fixture that started it (SIGTERM to its process group, wait,
  SIGKILL), also when the test fails. State lives in pytest's temp dirs.
* DCMTK programs are called by absolute path (the venv has pynetdicom's ``storescp`` etc. on
  PATH) with ``TCP_NODELAY=1``.
* A missing program skips the test, or fails it when ``CI=true``: see ``require_program``.
  Tests may also carry ``@pytest.mark.peer("dcmtk")`` (``"orthanc"``, ``"dicom3tools"``):
  the ``pytest_runtest_setup`` hook below applies the same rule before the test runs.

Import order matters: this module imports pynetdicom (hence pydicom with numpy) when conftest
loads it. ``dcmtool echo`` run in-process calls ``dcmtool.net.stack.load_network_only()``, which
hides numpy from pydicom for the rest of the process *if pydicom is not loaded yet*; loading it
here first keeps pixel support intact for every later test in the session.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from support.orthanc import OrthancRest, OrthancServer, modality, start_orthanc
from support.processes import (
    LOOPBACK,
    PEER_PROGRAMS,
    ManagedProcess,
    PeerStartError,
    dcmtk_env,
    free_port,
    in_ci,
    port_accepts,
    require_program,
    start_with_ports,
    stop_all,
    wait_for_port,
)
from support.scp import (
    AssociationRecord,
    DimseRecord,
    PynetdicomSCP,
    RequestedContext,
    abort_handler,
    echo_status_handler,
)

__all__ = [
    "DCMTK_STORESCP",
    "DCMTK_WLMSCPFS",
    "LOOPBACK",
    "ORTHANC",
    "AssociationRecord",
    "DcmtkStoreSCP",
    "DcmtkWorklistSCP",
    "DimseRecord",
    "ManagedProcess",
    "OrthancRest",
    "OrthancServer",
    "PeerStartError",
    "PynetdicomSCP",
    "RequestedContext",
    "abort_handler",
    "closed_port",
    "dcmtk_storescp",
    "dcmtk_wlmscpfs",
    "echo_status_handler",
    "free_port",
    "in_ci",
    "modality",
    "orthanc",
    "orthanc_module",
    "port_accepts",
    "pynetdicom_scp",
    "pytest_runtest_setup",
    "require_program",
    "run_cli",
    "run_dcmtool",
    "silent_listener",
]

DCMTK_STORESCP = "/usr/bin/storescp"
DCMTK_WLMSCPFS = "/usr/bin/wlmscpfs"
DCMTK_DUMP2DCM = "/usr/bin/dump2dcm"
ORTHANC = "/usr/sbin/Orthanc"


# ---------------------------------------------------------------------------------------------
# The peer marker


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``@pytest.mark.peer("dcmtk")``: skip (CI: fail) when that peer is not installed."""
    for marker in item.iter_markers("peer"):
        for name in marker.args:
            if name not in PEER_PROGRAMS:
                pytest.fail(f"@pytest.mark.peer({name!r}): unknown peer, expected one of "
                            f"{sorted(PEER_PROGRAMS)}", pytrace=False)
            for path, package, description in PEER_PROGRAMS[name]:
                require_program(path, package, description)


# ---------------------------------------------------------------------------------------------
# Running dcmtool


def run_cli(*args: str | os.PathLike[str] | int, env: Mapping[str, str | None] | None = None,
            catch_exceptions: bool = True, input: str | bytes | None = None) -> Result:
    """Run ``dcmtool ARGS`` in-process with Typer's CliRunner.

    Typer 0.29's runner keeps stdout and stderr apart: ``result.stdout`` has the data,
    ``result.stderr`` the ``dcmtool: error: ...`` lines, ``result.output`` both interleaved.
    ``env`` entries are set (``None``: removed) for the duration of the call. Pass
    ``catch_exceptions=False`` where success is expected, so a traceback is not swallowed.
    """
    import logging

    from dcmtool.cli.app import app

    try:
        return CliRunner().invoke(app, [str(a) for a in args], env=env, input=input,
                                  catch_exceptions=catch_exceptions, prog_name="dcmtool")
    finally:
        # The CLI put log handlers on the root logger that write to CliRunner's stderr, closed
        # now: drop them, or in-process servers' later log lines print "--- Logging error ---".
        root = logging.getLogger()
        for handler in list(root.handlers):
            if getattr(handler, "_dcmtool", False):
                root.removeHandler(handler)


def run_dcmtool(*args: str | os.PathLike[str] | int, env: Mapping[str, str] | None = None,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run ``python -m dcmtool ARGS`` as a real process (this interpreter, so any venv works).

    The environment is this process's (with the test's DCMTOOL_CONFIG) plus ``env``.
    """
    return subprocess.run(
        [sys.executable, "-m", "dcmtool", *(str(a) for a in args)],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


# ---------------------------------------------------------------------------------------------
# Sockets that are not DICOM peers


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, not listening: nobody can take it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never says a word (ACSE timeouts).

    The kernel completes the handshake from the listen backlog; the association request sits
    unread until the test ends and the socket is closed.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((LOOPBACK, 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------
# pynetdicom, in-process


@pytest.fixture
def pynetdicom_scp() -> Iterator[Callable[..., PynetdicomSCP]]:
    """Factory: ``pynetdicom_scp(handlers=(), *, ae_title="ANY-SCP", contexts=None,
    storage=False, echo_status=0x0000, reject=None, store_dir=None, **ae_settings)``.

    Starts an AE on 127.0.0.1 (kernel-chosen port) and returns a ``PynetdicomSCP`` with
    ``.host``, ``.port``, ``.ae_title``, ``.address`` and ``.events`` (one
    ``AssociationRecord`` per association: AE titles, requested contexts, max PDU, DIMSE
    messages, outcome).

    * ``contexts``: SOP class UIDs, ``(uid, [transfer syntaxes])`` or PresentationContexts;
      default: Verification only. ``contexts=[CTImageStorage]`` makes a peer that rejects
      Verification.
    * ``storage=True`` adds every storage SOP class and a C-STORE handler that keeps the
      datasets in ``.stored`` (and writes them to ``store_dir`` if given).
    * ``echo_status``: what the default C-ECHO handler answers.
    * ``handlers``: ``[(evt.EVT_C_ECHO, fn), ...]`` replacing the defaults (see
      ``abort_handler``, ``echo_status_handler``).
    * ``reject=(result, source, reason)``: answer every request with A-ASSOCIATE-RJ.
    * ``ae_settings``: AE attributes, e.g. ``maximum_pdu_size=16384``,
      ``require_called_aet=True``, ``require_calling_aet=["X"]``, ``maximum_associations=1``.
    """
    started: list[PynetdicomSCP] = []

    def start(handlers: Any = (), *, ae_title: str = "ANY-SCP", contexts: Any = None,
              **options: Any) -> PynetdicomSCP:
        scp = PynetdicomSCP(ae_title=ae_title, handlers=handlers, contexts=contexts, **options)
        started.append(scp)
        return scp

    yield start
    for scp in reversed(started):
        scp.shutdown()


# ---------------------------------------------------------------------------------------------
# DCMTK


@dataclass
class DcmtkStoreSCP:
    ae_title: str
    port: int
    output_dir: Path
    process: ManagedProcess
    host: str = LOOPBACK

    @property
    def address(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def received(self) -> list[Path]:
        """Files storescp wrote (sorted), e.g. ``CT.1.2.3...`` in the output directory."""
        return sorted(p for p in self.output_dir.rglob("*") if p.is_file())

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)

    def stop(self) -> None:
        self.process.stop()


@dataclass
class DcmtkWorklistSCP:
    ae_title: str
    port: int
    data_dir: Path  # -dfp: one subfolder per AE title it answers to
    process: ManagedProcess
    host: str = LOOPBACK
    ae_titles: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def folder(self, ae_title: str | None = None) -> Path:
        return self.data_dir / (ae_title or self.ae_title)

    def add_ae_title(self, ae_title: str) -> Path:
        """Answer to another called AE title too (a folder with the lockfile wlmscpfs wants)."""
        folder = self.data_dir / ae_title
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "lockfile").touch()
        if ae_title not in self.ae_titles:
            self.ae_titles.append(ae_title)
        return folder

    def add_file(self, name: str, data: bytes | Path, ae_title: str | None = None) -> Path:
        """Drop a worklist file (``NAME.wl``); wlmscpfs reads the folder on every query."""
        target = self.folder(ae_title) / (name if name.endswith(".wl") else f"{name}.wl")
        target.write_bytes(data.read_bytes() if isinstance(data, Path) else data)
        return target

    def add_dataset(self, name: str, dataset: Any, ae_title: str | None = None) -> Path:
        """Write a pydicom Dataset as a worklist file (little endian explicit, with meta).

        wlmscpfs silently skips files that lack attributes it requires (its log says "is
        incomplete, file will be ignored"): give the Scheduled Procedure Step its station AE
        title, start date and time, modality, ID and description, and the dataset its
        requested procedure ID and description, accession number, Study Instance UID and the
        patient's name, ID, birth date and sex (type 2 may be empty).
        """
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian

        target = self.folder(ae_title) / (name if name.endswith(".wl") else f"{name}.wl")
        if not hasattr(dataset, "file_meta"):
            dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.save_as(target, implicit_vr=False, little_endian=True)
        return target

    def add_dump(self, name: str, dump: str, ae_title: str | None = None) -> Path:
        """Write a worklist file from dcmdump text (as DCMTK's wlistdb examples) with dump2dcm."""
        dump2dcm = require_program(DCMTK_DUMP2DCM, "dcmtk", "DCMTK dump2dcm")
        folder = self.folder(ae_title)
        source = folder / f".{name}.dump"
        source.write_text(dump, encoding="utf-8")
        target = folder / (name if name.endswith(".wl") else f"{name}.wl")
        done = subprocess.run([dump2dcm, str(source), str(target)], capture_output=True,
                              text=True, timeout=30, env=dcmtk_env())
        source.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"dump2dcm failed: {done.stderr or done.stdout}")
        return target

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def dcmtk_storescp(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Callable[..., DcmtkStoreSCP]]:
    """Factory: ``dcmtk_storescp(*args, ae_title="STORESCP", log_level="info")``.

    Starts ``/usr/bin/storescp --aetitle AE --output-directory TMP [args] PORT`` (single
    process); ``args`` are passed through, e.g. ``"--accept-all"``/``"+xa"``,
    ``"--abort-after"``, ``"--ignore"``, ``"-pdu", "16384"``. Returns a ``DcmtkStoreSCP``
    (``.port``, ``.ae_title``, ``.address``, ``.output_dir``, ``.process``, ``.received()``).
    """
    program = require_program(DCMTK_STORESCP, "dcmtk", "DCMTK storescp")
    started: list[ManagedProcess] = []

    def start(*args: str, ae_title: str = "STORESCP", log_level: str = "info") -> DcmtkStoreSCP:
        base = tmp_path_factory.mktemp("storescp")
        output = base / "received"
        output.mkdir()

        def build(ports: list[int]) -> list[str]:
            return [program, "--log-level", log_level, "--aetitle", ae_title,
                    "--output-directory", str(output), *args, str(ports[0])]

        proc, (port,) = start_with_ports(
            "storescp", build, ports=1, log_path=base / "storescp.log", env=dcmtk_env(),
            cwd=base, ready=lambda p, ports: wait_for_port(p, ports[0]))
        started.append(proc)
        return DcmtkStoreSCP(ae_title, port, output, proc)

    yield start
    stop_all(started)


@pytest.fixture
def dcmtk_wlmscpfs(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Callable[..., DcmtkWorklistSCP]]:
    """Factory: ``dcmtk_wlmscpfs(*args, ae_title="WLMSCP", fork=False, log_level="info")``.

    Makes a temporary ``-dfp`` data directory with a subfolder (and its ``lockfile``) for
    ``ae_title``: wlmscpfs rejects any other called AE title ("called AE title not
    recognised"). Drop worklist files in later with ``.add_dataset``/``.add_file``/
    ``.add_dump``; ``.add_ae_title`` answers to one more called AE title. ``fork=False`` runs
    ``--single-process`` (associations one at a time, one PID); ``fork=True`` is wlmscpfs's
    default mode (children are stopped with it: they share its process group).
    """
    program = require_program(DCMTK_WLMSCPFS, "dcmtk", "DCMTK wlmscpfs")
    started: list[ManagedProcess] = []

    def start(*args: str, ae_title: str = "WLMSCP", fork: bool = False,
              log_level: str = "info") -> DcmtkWorklistSCP:
        base = tmp_path_factory.mktemp("wlmscpfs")
        data_dir = base / "worklists"
        data_dir.mkdir()

        def build(ports: list[int]) -> list[str]:
            mode = "--fork" if fork else "--single-process"
            return [program, "--log-level", log_level, mode, "--data-files-path",
                    str(data_dir), *args, str(ports[0])]

        proc, (port,) = start_with_ports(
            "wlmscpfs", build, ports=1, log_path=base / "wlmscpfs.log", env=dcmtk_env(),
            cwd=base, ready=lambda p, ports: wait_for_port(p, ports[0]))
        started.append(proc)
        scp = DcmtkWorklistSCP(ae_title, port, data_dir, proc)
        scp.add_ae_title(ae_title)
        return scp

    yield start
    stop_all(started)


# ---------------------------------------------------------------------------------------------
# Orthanc


def _orthanc_factory(tmp_path_factory: pytest.TempPathFactory
                     ) -> tuple[Callable[..., OrthancServer], Callable[[], None]]:
    require_program(ORTHANC, "orthanc", "Orthanc")
    started: list[OrthancServer] = []

    def start(*, aet: str = "ORTHANC", modalities: Mapping[str, Any] | None = None,
              accepted_transfer_syntaxes: Sequence[str] | None = None,
              check_called_aet: bool = False, extra: Mapping[str, Any] | None = None,
              verbose: bool = False) -> OrthancServer:
        server = start_orthanc(
            tmp_path_factory.mktemp("orthanc"), aet=aet, modalities=modalities,
            accepted_transfer_syntaxes=(None if accepted_transfer_syntaxes is None
                                        else list(accepted_transfer_syntaxes)),
            check_called_aet=check_called_aet, extra=extra, verbose=verbose)
        started.append(server)
        return server

    def stop() -> None:
        stop_all([s.process for s in started])

    return start, stop


@pytest.fixture
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., OrthancServer]]:
    """Factory: ``orthanc(*, aet="ORTHANC", modalities=None, accepted_transfer_syntaxes=None,
    check_called_aet=False, extra=None, verbose=False)`` -> ``OrthancServer``.

    A private Orthanc 1.10 (temporary config, storage and index, no plugins, free DICOM and
    HTTP ports, every DICOM service allowed for any AE). ``modalities`` is
    ``DicomModalities`` (build entries with ``modality(aet, port)``, e.g. C-MOVE
    destinations); ``accepted_transfer_syntaxes`` sets ``AcceptedTransferSyntaxes``; ``extra``
    overrides any other key. The server has ``.aet``, ``.dicom_port``, ``.http_port``,
    ``.address`` and ``.rest`` (``get/post/put/delete``, ``instance_count()``, ``upload()``,
    ``clear()``). Starting takes ~0.1 s; stopping ~3.5 s (Orthanc's own shutdown), so share
    one per module with ``orthanc_module`` where tests allow.
    """
    start, stop = _orthanc_factory(tmp_path_factory)
    yield start
    stop()


@pytest.fixture(scope="module")
def orthanc_module(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[Callable[..., OrthancServer]]:
    """``orthanc`` with module scope: the servers live until the module's last test."""
    start, stop = _orthanc_factory(tmp_path_factory)
    yield start
    stop()

