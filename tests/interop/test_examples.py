"""examples/: the users' jobs as scripts, run as a user would (the installed ``dcmtool`` on
PATH, a config file) against dcmtool serve and DCMTK on loopback."""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from support.archive import ServedArchive, write_site_config
from support.datasets import write_instance
from support.peers import free_port, run_cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run_example(name: str, *args: str | Path, config: Path,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``examples/NAME ARGS`` with this environment's ``dcmtool`` first on PATH."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "dcmtool").exists():
        pytest.fail(f"no dcmtool console script in {bin_dir}: pip install -e .")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
           "DCMTOOL_CONFIG": str(config)}
    return subprocess.run([str(EXAMPLES / name), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture
def site(serve_archive: Callable[..., ServedArchive], tmp_path: Path, closed_port: int
         ) -> tuple[ServedArchive, Path]:
    """dcmtool serve as ARCHIVE, able to move to us; a node DOWN that refuses connections."""
    local_port = free_port()
    served = serve_archive(destinations=(("DCMTOOL", "127.0.0.1", local_port),))
    config = tmp_path / "config.toml"
    write_site_config(config, served, local_port,
                      f'\n[nodes.DOWN]\nhost = "127.0.0.1"\nport = {closed_port}\n'
                      'ae_title = "DOWN"\nconnect_timeout = 2\n')
    return served, config


def _load(served: ServedArchive, folder: Path, config: Path) -> None:
    result = run_cli("store", "ARCHIVE", str(folder), env={"DCMTOOL_CONFIG": str(config)})
    assert result.exit_code == 0, result.output


def test_yesterdays_ct_studies_to_csv(site: tuple[ServedArchive, Path], tmp_path: Path) -> None:
    served, config = site
    yesterday = f"{datetime.date.today() - datetime.timedelta(days=1):%Y%m%d}"
    wanted = generate_uid()
    for name, study, modality, date in (("ct", wanted, "CT", yesterday),
                                        ("mr", generate_uid(), "MR", yesterday),
                                        ("old", generate_uid(), "CT", "20200101")):
        write_instance(tmp_path / "load" / f"{name}.dcm", StudyInstanceUID=study,
                       Modality=modality, StudyDate=date, AccessionNumber=name.upper())
    _load(served, tmp_path / "load", config)
    result = run_example("yesterday-ct.sh", "ARCHIVE", config=config)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["StudyInstanceUID"], r["AccessionNumber"]) for r in rows] == [(wanted, "CT")]


def test_move_a_list_of_accession_numbers(site: tuple[ServedArchive, Path],
                                          tmp_path: Path) -> None:
    served, config = site
    studies = {}
    for accession in ("A1", "A2", "A3"):
        studies[accession] = generate_uid()
        for number in range(2):
            write_instance(tmp_path / "load" / f"{accession}-{number}.dcm",
                           StudyInstanceUID=studies[accession], AccessionNumber=accession)
    _load(served, tmp_path / "load", config)
    (tmp_path / "list.txt").write_text("A1\nA3\n", encoding="utf-8")
    out = tmp_path / "retrieved"
    result = run_example("move-accessions.sh", "ARCHIVE", tmp_path / "list.txt", out,
                         config=config)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["requests"], summary["completed"], summary["received"]) == (2, 4, 4)
    assert sorted(p.name for p in out.iterdir()) == sorted([studies["A1"], studies["A3"]])


def test_echo_sweep_of_every_node(site: tuple[ServedArchive, Path]) -> None:
    _, config = site
    result = run_example("echo-sweep.sh", config=config)
    assert result.returncode == 7, result.stdout + result.stderr  # one of two answered
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert lines["ARCHIVE"].split()[-3] == "ok"
    assert "FAILED: " in lines["DOWN"] and "refused" in lines["DOWN"]


@pytest.mark.peer("dcmtk")
def test_nightly_send_resumes_what_the_last_run_could_not_store(
        dcmtk_storescp: Callable[..., Any], tmp_path: Path) -> None:
    scp = dcmtk_storescp()
    config = tmp_path / "config.toml"
    config.write_text(f'[nodes.STORESCP]\nhost = "{scp.host}"\nport = {scp.port}\n'
                      f'ae_title = "{scp.ae_title}"\n', encoding="utf-8")
    source, state = tmp_path / "export", tmp_path / "state"
    for number in range(4):
        write_instance(source / f"{number}.dcm")
    truncated = source / "truncated.dcm"
    shutil.copy(source / "0.dcm", truncated)
    ds = dcmread(truncated)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(truncated, enforce_file_format=True)
    truncated.write_bytes(truncated.read_bytes()[:-40])  # the pixel data cut short

    first = run_example("nightly-send.sh", "STORESCP", source, state, config=config)
    assert first.returncode == 7, first.stderr  # the truncated file failed, the rest went
    assert "the next run resumes" in first.stderr
    assert len(scp.received()) == 4

    truncated.unlink()  # fixed at the source (here: removed)
    second = run_example("nightly-send.sh", "STORESCP", source, state, config=config)
    assert second.returncode == 0, second.stderr
    assert "4 file(s) already stored" in second.stderr
    assert len(scp.received()) == 4  # nothing sent twice
    done = list(state.glob("done-*.json"))
    assert len(done) == 1 and not (state / "report.json").exists()
    rows = json.loads(done[0].read_text())
    assert len(rows) == 4 and all(r["stored"] for r in rows)


def test_export_a_study_to_media(site: tuple[ServedArchive, Path], tmp_path: Path) -> None:
    served, config = site
    study = generate_uid()
    for number in range(3):
        write_instance(tmp_path / "load" / f"{number}.dcm", StudyInstanceUID=study,
                       InstanceNumber=number + 1)
    _load(served, tmp_path / "load", config)
    out = tmp_path / "usb"
    result = run_example("export-study.sh", "ARCHIVE", study, out, config=config)
    assert result.returncode == 0, result.stderr
    assert "consistent" in result.stdout and study in result.stdout
    assert len(list((out / "DICOM").rglob("IMG*"))) == 3
