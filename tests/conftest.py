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


@pytest.fixture(autouse=True)
def pydicom_validation() -> Iterator[None]:
    """pydicom's value validation is process-wide; an in-process 'dcmtool serve' sets it to
    ignore (as a server process does): every test starts from pydicom's defaults again."""
    import pydicom.config

    settings = pydicom.config.settings
    saved = (settings.reading_validation_mode, settings.writing_validation_mode)
    yield
    settings.reading_validation_mode, settings.writing_validation_mode = saved
