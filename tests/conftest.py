"""Test configuration: every test runs with its own empty config file and no DCMTOOL_* env."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.archive import serve_archive, serve_process, small_disk  # noqa: F401 - fixtures
from support.peers import *  # noqa: F403 - fixtures for real peers (DCMTK, Orthanc, pynetdicom)


@pytest.fixture(autouse=True)
def isolated_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
                    ) -> Iterator[Path]:
    """Point DCMTOOL_CONFIG at a fresh path and clear every other DCMTOOL_* variable."""
    for name in list(os.environ):
        if name.startswith("DCMTOOL_"):
            monkeypatch.delenv(name)
    path = tmp_path_factory.mktemp("config") / "config.toml"
    path.write_text("# empty: every test starts without nodes\n", encoding="utf-8")
    monkeypatch.setenv("DCMTOOL_CONFIG", str(path))
    yield path
