"""The CLI without a network: messages, exit codes, config editing, option spelling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dcmtool.cli.app import app
from dcmtool.cli.commands.pending import COMMANDS
from dcmtool.errors import EXIT_CODE_MEANINGS, ExitCode

runner = CliRunner()


def test_version_names_the_dicom_libraries() -> None:
    result = runner.invoke(app, ["--version"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout.startswith("dcmtool ")
    for package in ("pynetdicom", "pydicom", "pylibjpeg"):
        assert f"  {package} " in result.stdout


def test_help_lists_every_subcommand_and_the_exit_codes() -> None:
    result = runner.invoke(app, ["--help"], catch_exceptions=False)
    assert result.exit_code == 0
    for name in ("echo", "store", "find", "move", "get", "mwl", "serve", "convert", "dicomdir"):
        assert f"  {name} " in result.stdout
    for code, text in EXIT_CODE_MEANINGS.items():
        assert f"{int(code):>4}  {text}" in result.stdout


def test_exit_codes_are_distinct() -> None:
    assert len({int(c) for c in ExitCode}) == len(ExitCode)
    assert ExitCode.INTERRUPTED == 130 and ExitCode.USAGE == 2


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_commands_not_built_yet_say_so_and_fail(name: str) -> None:
    result = runner.invoke(app, [name, "PACS", "--some-option"])
    assert result.exit_code == ExitCode.ERROR
    assert result.stdout == ""
    assert result.stderr == f"dcmtool: error: 'dcmtool {name}' is not implemented yet\n"


def test_unknown_option_is_a_usage_error() -> None:
    result = runner.invoke(app, ["echo", "--no-such-option", "PACS"])
    assert result.exit_code == ExitCode.USAGE
    assert "No such option" in result.stderr


def test_unknown_peer_is_a_usage_error_with_a_hint() -> None:
    result = runner.invoke(app, ["echo", "NOWHERE"])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.splitlines() == [
        "dcmtool: error: unknown peer 'NOWHERE': not a configured node (none configured) "
        "nor AET@HOST:PORT",
        "dcmtool: hint: add it with: dcmtool config add NAME AET@HOST:PORT",
    ]


def test_echo_without_peer_says_what_to_give() -> None:
    result = runner.invoke(app, ["echo"])
    assert result.exit_code == ExitCode.USAGE
    assert "give a PEER" in result.stderr


@pytest.mark.parametrize("flag", ["-aet", "--calling-aet"])
def test_dcmtk_style_and_long_options_are_the_same_option(flag: str) -> None:
    # Validation runs before any connection, so an invalid value proves which option it hit.
    result = runner.invoke(app, ["echo", flag, "WAY_TOO_LONG_AE_TITLE", "A@127.0.0.1:1"])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == (
        "dcmtool: error: --calling-aet: 'WAY_TOO_LONG_AE_TITLE' is longer than 16 characters\n"
    )


def test_calling_aet_from_the_environment_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCMTOOL_CALLING_AET", "BAD\\AE")
    result = runner.invoke(app, ["echo", "A@127.0.0.1:1"])
    assert result.exit_code == ExitCode.USAGE
    assert "backslash" in result.stderr


def test_a_broken_config_is_one_line_naming_file_and_key(isolated_config: Path) -> None:
    isolated_config.write_text('[nodes.PACS]\nhost = "h"\nport = "x"\nae_title = "P"\n')
    result = runner.invoke(app, ["echo", "PACS"])
    assert result.exit_code == ExitCode.ERROR
    assert result.stderr == (
        f"dcmtool: error: {isolated_config}: [nodes.PACS] port: expected an integer 1-65535, "
        "got 'x'\n"
    )


def test_traceback_flag_shows_the_exception(isolated_config: Path) -> None:
    isolated_config.write_text("[nodes\n")
    result = runner.invoke(app, ["--traceback", "echo", "PACS"])
    assert result.exit_code != 0
    assert result.exception is not None
    assert type(result.exception).__name__ == "ConfigError"


def test_config_add_show_remove(isolated_config: Path) -> None:
    result = runner.invoke(app, ["config", "path"], catch_exceptions=False)
    assert result.stdout == f"{isolated_config}\n"

    result = runner.invoke(app, ["config", "add", "PACS", "PACS@10.0.0.5:104", "-aet", "WS1",
                                 "--max-pdu", "65536", "--retrieve", "get", "--ts", "explicit"],
                           catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "node PACS = PACS@10.0.0.5:104" in result.stderr
    result = runner.invoke(app, ["config", "add", "ORTHANC", "ORTHANC@127.0.0.1:4242"],
                           catch_exceptions=False)
    assert result.exit_code == 0

    result = runner.invoke(app, ["config", "show", "--json"], catch_exceptions=False)
    document = json.loads(result.stdout)
    assert document["nodes"]["PACS"] == {
        "host": "10.0.0.5", "port": 104, "ae_title": "PACS", "calling_ae_title": "WS1",
        "max_pdu": 65536, "retrieve": "get", "transfer_syntaxes": ["explicit"],
    }
    assert set(document["nodes"]) == {"PACS", "ORTHANC"}

    result = runner.invoke(app, ["config", "show"], catch_exceptions=False)
    assert "[nodes.PACS]" in result.stdout

    result = runner.invoke(app, ["config", "remove", "PACS"], catch_exceptions=False)
    assert result.exit_code == 0
    result = runner.invoke(app, ["config", "show", "--json"], catch_exceptions=False)
    assert set(json.loads(result.stdout)["nodes"]) == {"ORTHANC"}


def test_config_add_rejects_a_bad_address() -> None:
    result = runner.invoke(app, ["config", "add", "X", "nohost"])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr == "dcmtool: error: 'nohost' is not AET@HOST:PORT\n"


def test_config_remove_unknown_node() -> None:
    result = runner.invoke(app, ["config", "remove", "NOPE"])
    assert result.exit_code == ExitCode.USAGE
    assert "no node named 'NOPE'" in result.stderr


def test_peer_text_is_never_markup(isolated_config: Path) -> None:
    # A node name that looks like rich markup must be printed as typed.
    node = 'host = "127.0.0.1"\nport = 1\nae_title = "A"\n'
    isolated_config.write_text(f'[nodes."[bold]X"]\n{node}[nodes."[red]Y[/red]"]\n{node}')
    result = runner.invoke(app, ["echo", "--all", "--connect-timeout", "2"])
    assert result.exit_code == ExitCode.CONNECTION_FAILED
    assert "[bold]X" in result.stdout
    assert "dcmtool: [red]Y[/red]: connection to 127.0.0.1:1 refused" in result.stderr
