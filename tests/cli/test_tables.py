"""find and mwl tables: short titles, fitted to the terminal, UIDs never cut; tab-separated
values into a pipe, which move --from - reads (issue #14, item 7)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from support.archive import ServedArchive, write_site_config
from support.datasets import write_instance
from support.peers import free_port, run_cli
from support.terminal import Screen, run_on_terminal

from dcmtool.scu.retrieve import read_list

PREFIX = "1.2.826.0.1.3680043.8.498."


def long_uid(tail: int) -> str:
    """A 64-character UID (the longest allowed); the three studies differ in the last digit,
    so a cut UID would make them look alike."""
    return PREFIX + "1" * (64 - len(PREFIX) - 1) + str(tail)


@pytest.fixture
def studies(serve_archive: Callable[..., ServedArchive], tmp_path: Path
            ) -> tuple[ServedArchive, dict[str, str], list[str]]:
    """Three studies of one patient on one day, an archive that can move to our [local] AE,
    and a worklist of one item."""
    local_port = free_port()
    root = tmp_path / "archive"
    (root / "worklist").mkdir(parents=True)
    item = Dataset()
    item.PatientName = "Doe^John"
    item.PatientID = "P1"
    item.AccessionNumber = "W1"
    item.StudyInstanceUID = long_uid(9)
    item.RequestedProcedureID = "RP1"
    item.RequestedProcedureDescription = "CT chest abdomen pelvis with contrast"
    step = Dataset()
    step.Modality = "CT"
    step.ScheduledStationAETitle = "CT01"
    step.ScheduledProcedureStepStartDate = "20261123"
    step.ScheduledProcedureStepStartTime = "080000"
    step.ScheduledProcedureStepID = "S1"
    step.ScheduledProcedureStepDescription = "Chest, abdomen and pelvis, venous phase"
    item.ScheduledProcedureStepSequence = [step]
    item.save_as(root / "worklist" / "1.wl", implicit_vr=False, little_endian=True)
    served = serve_archive(root=root, destinations=(("DCMTOOL", "127.0.0.1", local_port),))
    env = write_site_config(tmp_path / "config.toml", served, local_port)
    uids = [long_uid(tail) for tail in (1, 2, 3)]
    for index, uid in enumerate(uids):
        write_instance(tmp_path / "load" / f"{index}.dcm", StudyInstanceUID=uid,
                       PatientID="P1", PatientName="Doe^John", AccessionNumber=f"ACC{index}",
                       StudyDate="20261123", StudyDescription="CT chest abdomen pelvis with "
                       "contrast, low dose protocol")
    result = run_cli("store", "ARCHIVE", tmp_path / "load", env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return served, env, uids


@pytest.mark.parametrize("columns", [80, 160])
def test_find_table_fits_the_terminal_and_keeps_uids_whole(
        studies: tuple[ServedArchive, dict[str, str], list[str]], columns: int) -> None:
    _, env, uids = studies
    drawn = run_on_terminal(["find", "ARCHIVE"], columns=columns, stderr_tty=False, env=env)
    assert drawn.returncode == 0, drawn.stderr
    screen = Screen(columns).feed(drawn.stdout)
    assert screen.overflows == []
    lines = screen.text()
    for uid in uids:  # whole, on one line: it can be copied into move
        assert any(uid in line for line in lines), (uid, lines)
    header = lines[0]
    assert "Study UID" in header and "Patient" in header
    assert "StudyInstanceUID" not in header and "…" not in drawn.stdout
    if columns == 80:
        assert "dcmtool: left out to fit the terminal: " in drawn.stderr
        assert "(--csv or --json show every key)" in drawn.stderr
    else:
        for title in ("Accession", "Date", "Description", "Images"):
            assert title in header
        assert "ACC2" in drawn.stdout


def test_mwl_table_fits_80_columns(
        studies: tuple[ServedArchive, dict[str, str], list[str]]) -> None:
    _, env, _ = studies
    drawn = run_on_terminal(["mwl", "ARCHIVE"], columns=80, stderr_tty=False, env=env)
    assert drawn.returncode == 0, drawn.stderr
    screen = Screen(80).feed(drawn.stdout)
    assert screen.overflows == []
    assert "Patient" in screen.text()[0] and "Date" in screen.text()[0]
    assert "Doe^John" in drawn.stdout and "…" not in drawn.stdout


def test_find_into_a_pipe_prints_tab_separated_keywords(
        studies: tuple[ServedArchive, dict[str, str], list[str]]) -> None:
    _, env, uids = studies
    result = run_cli("find", "ARCHIVE", env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    header, *rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert "StudyInstanceUID" in header and "PatientName" in header
    assert len(rows) == 3 and all(len(row) == len(header) for row in rows)
    assert sorted(row[header.index("StudyInstanceUID")] for row in rows) == uids
    assert all(cell == cell.strip() for row in rows for cell in row)  # no padding
    assert result.stderr == ""

    worklist = run_cli("mwl", "ARCHIVE", env=env, catch_exceptions=False).stdout.splitlines()
    assert "ScheduledProcedureStepSequence[0].Modality" in worklist[0].split("\t")
    assert len(worklist) == 2 and "\tDoe^John\t" in f"\t{worklist[1]}\t"


def test_find_piped_into_move(studies: tuple[ServedArchive, dict[str, str], list[str]],
                              tmp_path: Path) -> None:
    """``dcmtool find ARCHIVE -k PatientID=P1 | dcmtool move ARCHIVE --from - -o DIR``, two
    real processes and a real pipe."""
    _, env, uids = studies
    out = tmp_path / "in"
    environment = {**os.environ, **env}
    command = [sys.executable, "-m", "dcmtool"]
    find = subprocess.Popen([*command, "find", "ARCHIVE", "-k", "PatientID=P1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
    assert find.stdout is not None
    move = subprocess.run([*command, "move", "ARCHIVE", "--from", "-", "-o", str(out)],
                          stdin=find.stdout, capture_output=True, text=True, env=environment,
                          timeout=60)
    find.stdout.close()
    assert find.wait(timeout=60) == 0
    assert move.returncode == 0, move.stderr
    assert move.stdout.startswith("3 request(s): 3 completed, 0 failed")
    from pydicom import dcmread

    assert sorted(str(dcmread(p).StudyInstanceUID) for p in out.rglob("*.dcm")) == uids


def test_read_list_takes_finds_tab_separated_output() -> None:
    text = ("PatientName\tAccessionNumber\tStudyInstanceUID\n"
            "Doe^John\tA1\t1.2.3\n"
            "Roe^Jane\tA2\t\n")
    assert read_list(text, None) == [("StudyInstanceUID", "1.2.3"), ("AccessionNumber", "A2")]
    assert read_list("StudyInstanceUID\n1.2.3\n1.2.4\n", None) == [
        ("StudyInstanceUID", "1.2.3"), ("StudyInstanceUID", "1.2.4")]
    series = "StudyInstanceUID\tSeriesNumber\tSeriesInstanceUID\n1.2\t1\t1.2.1\n"
    assert read_list(series, None) == [("SeriesInstanceUID", "1.2.1")]


def test_fit_columns_wraps_text_then_drops_the_lowest_rank_never_a_uid() -> None:
    from dcmtool.cli.console import Column, fit_columns

    columns = [Column(title, whole=whole, rank=rank) for title, whole, rank in (
        ("Patient", False, 90), ("Time", False, 30), ("Description", False, 60),
        ("Study UID", True, None), ("Images", False, 40))]
    naturals = [12, 6, 50, 64, 6]
    # Everything fits on one line at 160 (12+6+50+64+6 and four gaps of 2 = 146).
    assert fit_columns(columns, naturals, 160) == naturals
    # At 120 the description wraps, nothing is left out.
    widths = fit_columns(columns, naturals, 120)
    assert widths[3] == 64 and None not in widths
    assert sum(w for w in widths if w) + 2 * 4 == 120
    # At 80: Time goes first, then Images, then the description; the UID stays whole.
    assert fit_columns(columns, naturals, 80) == [12, None, None, 64, None]
    # Narrower than the UID itself: it is still whole (the terminal wraps it, nothing cuts it).
    assert fit_columns(columns, naturals, 40) == [None, None, None, 64, None]
