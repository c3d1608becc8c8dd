"""What a new user hits first, against dcmtool serve on loopback (issue: first hour)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from support.archive import ServedArchive, write_site_config
from support.datasets import write_instance
from support.peers import free_port, run_cli

Setup = tuple[ServedArchive, dict[str, str], dict[str, Any]]


@pytest.fixture
def setup(serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> Setup:
    """An archive with one CT study of three instances; a config naming it and ourselves."""
    local_port = free_port()
    served = serve_archive(destinations=(("DCMTOOL", "127.0.0.1", local_port),))
    env = write_site_config(tmp_path / "config.toml", served, local_port)
    study = {"study": generate_uid(), "series": generate_uid(), "sops": []}
    for number in range(1, 4):
        path = tmp_path / "load" / f"{number}.dcm"
        write_instance(path, StudyInstanceUID=study["study"],
                       SeriesInstanceUID=study["series"], PatientID="P1", Modality="CT",
                       AccessionNumber="ACC1", InstanceNumber=number)
        study["sops"].append(str(dcmread(path).SOPInstanceUID))
    result = run_cli("store", "ARCHIVE", str(tmp_path / "load"), env=env,
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return served, env, study


def _umask_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@pytest.mark.parametrize("command", ["get", "move"])
def test_retrieving_with_out_writes_plain_files_and_nothing_else(
        setup: Setup, tmp_path: Path, command: str) -> None:
    _, env, study = setup
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")  # files already there are not our business
    (out / "old.dcm").write_bytes(b"not really DICOM")
    result = run_cli(command, "ARCHIVE", "--study", study["study"], "-o", str(out), env=env,
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    expected = sorted(f"{study['study']}/CT.{sop}.dcm" for sop in study["sops"])
    assert written == sorted([*expected, "notes.txt", "old.dcm"])
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [study["study"]]
    for name in expected:
        assert stat.S_IMODE((out / name).stat().st_mode) == _umask_mode()
    assert "force" not in result.stderr and "old.dcm" not in result.stderr


def test_out_with_archive_keeps_an_index_serve_can_open(setup: Setup, tmp_path: Path) -> None:
    _, env, study = setup
    out = tmp_path / "out"
    result = run_cli("get", "ARCHIVE", "--study", study["study"], "-o", str(out), "--archive",
                     env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (out / "index.sqlite").is_file() and (out / "audit.jsonl").is_file()
    assert len(list((out / "P1").rglob("*.dcm"))) == 3


def test_a_flat_layout_names_files_like_dcmtk(setup: Setup, tmp_path: Path) -> None:
    _, env, study = setup
    out = tmp_path / "out"
    result = run_cli("get", "ARCHIVE", "--study", study["study"], "-o", str(out),
                     "--layout", "flat", env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(f"CT.{s}.dcm" for s in study["sops"])


def test_config_add_saves_only_what_was_typed(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    result = run_cli("config", "add", "PACS", "PACS@10.0.0.5:104", "--dimse-timeout", "9",
                     env={"DCMTOOL_CONFIG": str(config), "DCMTOOL_CALLING_AET": "SHELL",
                          "DCMTOOL_ACSE_TIMEOUT": "7", "DCMTOOL_TLS_CA": str(tmp_path)},
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = config.read_text()
    assert "dimse_timeout = 9" in text
    assert "SHELL" not in text and "acse_timeout" not in text and "tls_ca" not in text


@pytest.mark.parametrize("how", ["env", "flag"])
def test_a_named_config_file_that_does_not_exist_is_an_error(tmp_path: Path, how: str) -> None:
    missing = tmp_path / "typo.toml"
    if how == "env":
        result = run_cli("echo", "PACS", env={"DCMTOOL_CONFIG": str(missing)})
        named = "(DCMTOOL_CONFIG)"
    else:
        result = run_cli("--config", str(missing), "echo", "PACS")
        named = "(--config)"
    assert result.exit_code == 1, result.output
    assert f"the config file {missing} {named} does not exist" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("key,said", [
    ("StudyDate=2024-01-01", "did you mean 20240101?"),
    ("StudyDate=20240201-20240101", "ends before it starts"),
    ("PatientNam=DOE", "PatientNam is not a DICOM keyword; did you mean PatientName?"),
    ("patientname=DOE", "did you mean PatientName?"),
])
def test_find_refuses_keys_that_would_match_nothing(setup: Setup, key: str, said: str) -> None:
    _, env, _ = setup
    result = run_cli("find", "ARCHIVE", "-k", key, env=env)
    assert result.exit_code == 2, result.output
    assert said in result.stderr
    assert "Warning" not in result.output and "Traceback" not in result.output


def test_mwl_refuses_a_date_of_no_calendar(setup: Setup) -> None:
    _, env, _ = setup
    result = run_cli("mwl", "ARCHIVE", "--date", "20241301", env=env)
    assert result.exit_code == 2, result.output
    assert "--date: '20241301' is not a date of the calendar" in result.stderr


def test_find_takes_relative_dates_and_findscu_tags(setup: Setup, tmp_path: Path) -> None:
    import datetime

    _, env, study = setup
    recent = generate_uid()
    yesterday = datetime.date.today() - datetime.timedelta(days=1)
    write_instance(tmp_path / "recent.dcm", StudyInstanceUID=recent, PatientID="P2",
                   StudyDate=f"{yesterday:%Y%m%d}")
    assert run_cli("store", "ARCHIVE", str(tmp_path / "recent.dcm"), env=env).exit_code == 0
    for when in ("yesterday", "-7d", "yesterday-"):
        result = run_cli("find", "ARCHIVE", "-k", f"StudyDate={when}", "-k",
                         "StudyInstanceUID", "--csv", env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert recent in result.stdout and study["study"] not in result.stdout, when
    by_tag = run_cli("find", "ARCHIVE", "-k", "0010,0020=P1", "-k", "0008,0050", "--csv",
                     env=env, catch_exceptions=False)
    assert by_tag.exit_code == 0, by_tag.output
    assert study["study"] in by_tag.stdout and "ACC1" in by_tag.stdout
    assert recent not in by_tag.stdout


def test_get_names_the_reason_sub_operations_failed(setup: Setup, tmp_path: Path) -> None:
    _, env, study = setup
    result = run_cli("get", "ARCHIVE", "--study", study["study"], "-o", str(tmp_path / "o"),
                     "--store-classes", "MRImageStorage", env=env)  # the study is CT
    assert result.exit_code == 6, result.output
    assert "0xA702 (" in result.stderr
    assert "3 failed: no presentation context accepted for CT Image Storage" in result.stderr
    assert study["sops"][0] in result.stderr  # the failed instances are named
    assert "hint: the selection holds SOP classes this get did not offer: check " \
        "--store-classes" in result.stderr


@pytest.mark.parametrize("name,said", [
    ("ct", "did you mean CTImageStorage"),
    ("MRImagStorage", "did you mean MRImageStorage"),
])
def test_get_refuses_unknown_storage_class_names(setup: Setup, tmp_path: Path, name: str,
                                                 said: str) -> None:
    _, env, study = setup
    result = run_cli("get", "ARCHIVE", "--study", study["study"], "-o", str(tmp_path / "o"),
                     "--store-classes", name, env=env)
    assert result.exit_code == 2, result.output
    assert said in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("typed", ["ARCHIV", "archive"])
def test_a_mistyped_node_name_suggests_the_configured_one(setup: Setup, typed: str) -> None:
    _, env, _ = setup
    result = run_cli("echo", typed, env=env)
    assert result.exit_code == 2, result.output
    assert "did you mean ARCHIVE?" in result.stderr


def test_help_summaries_are_whole_sentences_at_80_columns() -> None:
    from support.peers import run_dcmtool

    result = run_dcmtool("--help", env={"COLUMNS": "80"})
    assert result.returncode == 0
    commands = result.stdout.split("Commands:")[1].split("Exit codes")[0]
    lines = [line for line in commands.splitlines() if line.strip()]
    assert len(lines) >= 10
    for line in lines:
        assert len(line) <= 80 and not line.endswith("...") and line.endswith("."), line


@pytest.mark.parametrize("args,said", [
    (("echo", "--verbos", "PACS"), "dcmtool: error: no such option: --verbos; did you mean "
                                   "--verbose?\ndcmtool: hint: 'dcmtool echo --help' lists "
                                   "the options\n"),
    (("ech",), "dcmtool: error: no such command 'ech'. Did you mean 'echo'?\n"
               "dcmtool: hint: 'dcmtool --help' lists the commands\n"),
])
def test_click_usage_errors_are_said_like_every_other_error(args: tuple[str, ...],
                                                            said: str) -> None:
    from support.peers import run_dcmtool

    result = run_dcmtool(*args)
    assert result.returncode == 2
    assert result.stderr == said and result.stdout == ""


def test_the_probe_table_explains_itself(pynetdicom_scp: Callable[..., Any]) -> None:
    us_image = "1.2.840.10008.5.1.4.1.1.6.1"
    us_retired = "1.2.840.10008.5.1.4.1.1.6"
    explicit = "1.2.840.10008.1.2.1"
    scp = pynetdicom_scp(contexts=[(us_image, [explicit]), (us_retired, [explicit])])
    result = run_cli("echo", "--probe", scp.address, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    rows = [line for line in lines if line.startswith("Ultrasound Image Storage")]
    assert len(rows) == 2 and any("(retired)" in row for row in rows)
    assert "yes: every syntax of the column accepted; part: some of them" in result.stdout
    assert "j2k = j2k-lossless + j2k-lossy" in result.stdout
    assert "Refused (" in result.stdout and "CT Image Storage" in result.stdout


def test_a_query_to_a_storage_only_peer_says_so(pynetdicom_scp: Callable[..., Any]) -> None:
    scp = pynetdicom_scp(storage=True)
    result = run_cli("find", scp.address, "-k", "PatientID=1")
    assert result.exit_code == 5, result.output
    assert "does not offer Study Root Query/Retrieve Information Model - FIND" in result.stderr
    assert "storage-only" in result.stderr and "--probe" not in result.stderr


@pytest.mark.parametrize("words,expected", [
    ("dcmtool echo OR", ["ORTHANC"]),
    ("dcmtool find PACS -L SE", ["SERIES"]),
    ("dcmtool convert x --ts j2k", ["j2k-lossless", "j2k-lossy"]),
    ("dcmtool get PACS --store-classes MRImageS", ["MRImageStorage"]),
    ("dcmtool get PACS --layout fl", ["flat"]),
])
def test_the_shell_completes_nodes_and_names(tmp_path: Path, words: str,
                                              expected: list[str]) -> None:
    from support.peers import run_dcmtool

    config = tmp_path / "config.toml"
    config.write_text('[nodes.ORTHANC]\nhost = "h"\nport = 4242\nae_title = "ORTHANC"\n'
                      '[nodes.PACS]\nhost = "h"\nport = 104\nae_title = "PACS"\n')
    result = run_dcmtool(env={"DCMTOOL_CONFIG": str(config),
                              "_DCMTOOL_COMPLETE": "complete_bash", "COMP_WORDS": words,
                              "COMP_CWORD": str(len(words.split()) - 1)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == expected


def test_the_wheel_installs_man_pages_and_completions(tmp_path: Path) -> None:
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path), str(root)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("dcmtool-*.whl"))
    names = {name.split(".data/data/", 1)[-1] for name in zipfile.ZipFile(wheel).namelist()}
    assert "share/man/man1/dcmtool.1" in names and "share/man/man1/dcmtool-store.1" in names
    assert "share/bash-completion/completions/dcmtool.bash" in names
