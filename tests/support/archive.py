"""``dcmtool serve`` for tests: in-process (port 0) or as a real process."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dcmtool.archive.storage import Archive, StorePolicy
from dcmtool.scp.server import RunningServer, ServeOptions, start_server
from support.processes import ManagedProcess, free_port, spawn, wait_for_port


@dataclass
class ServedArchive:
    """A running in-process archive SCP."""

    server: RunningServer
    root: Path

    @property
    def archive(self) -> Archive:
        return self.server.archive

    @property
    def host(self) -> str:
        return self.server.address[0]

    @property
    def port(self) -> int:
        return self.server.address[1]

    @property
    def ae_title(self) -> str:
        return self.server.options.ae_title

    @property
    def address(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def files(self) -> list[Path]:
        return sorted(self.archive.instance_files())

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def serve_archive(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Callable[..., ServedArchive]]:
    """Factory: ``serve_archive(root=None, policy=StorePolicy(...), **ServeOptions fields)``."""
    running: list[ServedArchive] = []

    def start(root: Path | None = None, policy: StorePolicy | None = None,
              **options: Any) -> ServedArchive:
        root = root or tmp_path_factory.mktemp("archive")
        archive = Archive(root, policy or StorePolicy(min_free_bytes=0))
        archive.reconcile()
        options.setdefault("port", 0)
        server = start_server(archive, ServeOptions(**options))
        served = ServedArchive(server, archive.root)
        running.append(served)
        return served

    yield start
    for served in running:
        served.stop()


@dataclass
class ServeProcess:
    process: ManagedProcess
    root: Path
    port: int
    ae_title: str

    @property
    def address(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"


@pytest.fixture
def serve_process(tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Callable[..., ServeProcess]]:
    """Factory: ``dcmtool serve ROOT --port P [args]`` as a real process, ready on its port."""
    started: list[ManagedProcess] = []

    def start(*args: str, root: Path | None = None, ae_title: str = "DCMTOOL",
              extra_env: dict[str, str] | None = None) -> ServeProcess:
        import os

        root = root or tmp_path_factory.mktemp("served")
        port = free_port()
        argv: Sequence[str] = [sys.executable, "-m", "dcmtool", "serve", str(root), "--port",
                               str(port), "--aet", ae_title, "--min-free", "0", *args]
        env = {**os.environ, **(extra_env or {})}
        log = tmp_path_factory.mktemp("serve-log") / "serve.log"
        proc = spawn("dcmtool serve", argv, log, env=env)
        started.append(proc)
        wait_for_port(proc, port)
        return ServeProcess(proc, root, port, ae_title)

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs mounted for the test: a real ENOSPC, never a faked one. Needs root (CI
    runs as root); elsewhere the test is skipped with the reason (failed when CI=true)."""
    import subprocess

    from support.processes import in_ci

    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode:
        reason = f"cannot mount a small tmpfs (needs root): {result.stderr.strip()}"
        if in_ci():
            pytest.fail(f"{reason} [CI=true: this test must run]", pytrace=False)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def write_site_config(path: Path, served: ServedArchive, local_port: int,
                      extra: str = "") -> dict[str, str]:
    """A config file where ``served`` is the node ARCHIVE and our [local] AE (DCMTOOL on
    ``local_port``) is where it can move to; returns the environment that selects it."""
    path.write_text(
        f'[local]\nae_title = "DCMTOOL"\nport = {local_port}\nbind = "127.0.0.1"\n\n'
        f'[nodes.ARCHIVE]\nhost = "{served.host}"\nport = {served.port}\n'
        f'ae_title = "{served.ae_title}"\n' + extra, encoding="utf-8")
    return {"DCMTOOL_CONFIG": str(path)}
