"""Progress of long commands: one bar on a terminal's stderr, fitted to its width, then one
summary line; nothing drawn off a terminal or with --quiet (issue #14, item 8).

The real ``dcmtool`` runs in a subprocess on a pseudo-terminal, and a small screen replays
what it drew.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from support.archive import ServedArchive, write_site_config
from support.datasets import write_instance
from support.peers import free_port, run_cli
from support.terminal import Screen, run_on_terminal

#: A 64-character UID: the longest label a retrieval's progress can carry.
STUDY = "1.2.826.0.1.3680043.8.498." + "7" * 38


@pytest.fixture
def archive(serve_archive: Callable[..., ServedArchive], tmp_path: Path
            ) -> tuple[ServedArchive, dict[str, str], Path]:
    """An archive that can move to our [local] AE, a config naming it ARCHIVE, and a folder
    of 40 small files of one study (not stored yet)."""
    local_port = free_port()
    served = serve_archive(destinations=(("DCMTOOL", "127.0.0.1", local_port),))
    env = write_site_config(tmp_path / "config.toml", served, local_port)
    folder = tmp_path / "files"
    series = generate_uid()
    for number in range(40):
        write_instance(folder / f"{number}.dcm", StudyInstanceUID=STUDY,
                       SeriesInstanceUID=series, InstanceNumber=number + 1)
    return served, env, folder


def replay(drawn_stderr: str, columns: int) -> Screen:
    screen = Screen(columns).feed(drawn_stderr)
    assert screen.overflows == [], "a line ran past the right margin"
    assert screen.most_bars == 1, f"{screen.most_bars} bars on the screen at once"
    assert not any("━" in line for line in screen.text()), "the bar was left behind"
    return screen


@pytest.mark.parametrize("columns", [80, 40])
def test_store_draws_one_bar_fitted_to_the_terminal(
        archive: tuple[ServedArchive, dict[str, str], Path], columns: int) -> None:
    _, env, folder = archive
    drawn = run_on_terminal(["store", "ARCHIVE", folder], columns=columns, stdout_tty=False,
                            env=env)
    assert drawn.returncode == 0, drawn.stderr
    screen = replay(drawn.stderr, columns)
    summary = [line for line in screen.text() if line.startswith("store: ")]
    assert len(summary) == 1 and summary[0].startswith("store: 40/40 files"), screen.text()
    assert drawn.stdout.startswith("40 sent, 40 stored")  # the command's summary: stdout


@pytest.mark.parametrize("command", ["get", "move"])
def test_retrievals_draw_one_bar_within_80_columns(
        archive: tuple[ServedArchive, dict[str, str], Path], command: str,
        tmp_path: Path) -> None:
    _, env, folder = archive
    stored = run_cli("store", "ARCHIVE", folder, env=env, catch_exceptions=False)
    assert stored.exit_code == 0, stored.stderr
    drawn = run_on_terminal([command, "ARCHIVE", "--study", STUDY, "-o", tmp_path / "in"],
                            columns=80, stdout_tty=False, env=env)
    assert drawn.returncode == 0, drawn.stderr
    screen = replay(drawn.stderr, 80)
    lines = [line for line in screen.text() if line]
    assert len(lines) == 1 and lines[0].startswith(f"{command}: 1 request in "), lines
    assert drawn.stdout.startswith("1 request(s): 40 completed, 0 failed")


def test_nothing_is_drawn_off_a_terminal_or_with_quiet(
        archive: tuple[ServedArchive, dict[str, str], Path]) -> None:
    _, env, folder = archive
    piped = run_on_terminal(["store", "ARCHIVE", folder], columns=80, stderr_tty=False,
                            env=env)
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""
    assert "40 sent, 40 stored" in piped.stdout
    quiet = run_on_terminal(["convert", folder, "--ts", "implicit", "-o",
                             folder.parent / "converted", "--quiet"], columns=80, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""


def test_convert_draws_one_bar(archive: tuple[ServedArchive, dict[str, str], Path]) -> None:
    _, env, folder = archive
    drawn = run_on_terminal(["convert", folder, "--ts", "implicit", "-o",
                             folder.parent / "converted"], columns=80, stdout_tty=False,
                            env=env)
    assert drawn.returncode == 0, drawn.stderr
    screen = replay(drawn.stderr, 80)
    assert any(line.startswith("convert: 40/40 files in ") for line in screen.text())


def test_the_bar_gives_up_details_before_the_bar() -> None:
    from rich.console import Console

    from dcmtool.cli.progress import Bar

    for width in (80, 50, 30):
        console = Console(file=io.StringIO(), width=width, force_terminal=True,
                          color_system=None)
        bar = Bar("store", total=120, console=console)
        bar.update(37, detail="12.3/45.0 MB, 5.1 MB/s")
        fields = bar._progress.tasks[0].fields
        assert fields["count"] == "37/120 files"
        assert (fields["detail"] != "") == (width == 80)
        rendered = io.StringIO()
        Console(file=rendered, width=width, color_system=None).print(
            bar._progress.make_tasks_table(bar._progress.tasks))
        line, = rendered.getvalue().splitlines()
        assert len(line) <= width and "━" in line and "37/120" in line
        bar.close()
        summary = console.file.getvalue().split("\x1b[2K")[-1]  # what is left on the line
        assert summary.startswith("store: 37/120 files" + (", 12.3/45.0 MB, 5.1 MB/s in "
                                                            if width == 80 else " in "))


def test_importing_the_progress_module_does_not_import_rich() -> None:
    code = ("import sys, dcmtool.cli.progress, dcmtool.cli.commands.store;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr
