"""The CLI without a network: messages, exit codes, config editing, option spelling."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.peers import PynetdicomSCP, run_cli
from typer.testing import CliRunner

from dcmtool.cli.app import app
from dcmtool.config import Peer, Timeouts, TlsSettings
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
    for name in ("echo", "store", "find", "move", "get", "mwl", "serve", "convert", "dicomdir",
                 "dump", "config"):
        assert f"  {name} " in result.stdout
    for code, text in EXIT_CODE_MEANINGS.items():
        assert f"{int(code):>4}  {text}" in result.stdout


def test_exit_codes_are_distinct() -> None:
    assert len({int(c) for c in ExitCode}) == len(ExitCode)
    assert ExitCode.INTERRUPTED == 130 and ExitCode.USAGE == 2


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


# ---------------------------------------------------------------------------------------------
# Option groups (dcmtool.cli.groups): each shared flag still reaches the command that takes it


def _network_command(name: str, peer: str, tmp_path: Path) -> list[str]:
    """A command line for ``name`` that resolves ``peer`` and then fails without a server."""
    inputs = tmp_path / "inputs"
    inputs.mkdir(exist_ok=True)
    return {
        "echo": ["echo", peer],
        "store": ["store", peer, str(inputs)],  # no DICOM files: fails after resolving
        "find": ["find", peer],
        "mwl": ["mwl", peer],
        "move": ["move", peer, "--dest", "ELSEWHERE", "-k", "StudyInstanceUID=1.2.3"],
        "get": ["get", peer, "-k", "StudyInstanceUID=1.2.3", "-o", str(tmp_path / "in")],
    }[name]


NETWORK_COMMANDS = ["echo", "find", "get", "move", "mwl", "store"]


@pytest.fixture
def resolved_peers(monkeypatch: pytest.MonkeyPatch) -> list[Peer]:
    """The peers the CLI resolves during the test (the real ``resolve_peer``, watched)."""
    import dcmtool.config

    seen: list[Peer] = []
    real = dcmtool.config.resolve_peer

    def watch(*args: Any, **kwargs: Any) -> Peer:
        peer = real(*args, **kwargs)
        seen.append(peer)
        return peer

    monkeypatch.setattr(dcmtool.config, "resolve_peer", watch)
    return seen


def test_echo_association_carries_the_ae_title_and_pdu_flags(
        pynetdicom_scp: Callable[..., PynetdicomSCP], resolved_peers: list[Peer]) -> None:
    scp = pynetdicom_scp(ae_title="THEM", require_called_aet=True)
    result = run_cli("echo", "127.0.0.1", scp.port, "-aet", "X", "-aec", "THEM",
                     "--max-pdu", "16384", "--acse-timeout", "5", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    record = scp.wait_closed()[0]
    assert (record.calling_ae_title, record.called_ae_title, record.max_pdu) == (
        "X", "THEM", 16384)
    [peer] = resolved_peers
    assert (peer.calling_ae_title, peer.timeouts.acse) == ("X", 5.0)


@pytest.mark.parametrize("command", NETWORK_COMMANDS)
def test_every_network_flag_reaches_the_peer(command: str, closed_port: int, tmp_path: Path,
                                             resolved_peers: list[Peer]) -> None:
    tls = tmp_path / "tls"  # never read: the connection is refused first or the files fail
    line = _network_command(command, f"ANY@127.0.0.1:{closed_port}", tmp_path)
    result = run_cli(*line, "--calling-aet", "US", "--called-aet", "THEM", "--max-pdu", "16384",
                     "--connect-timeout", "1.5", "--acse-timeout", "2.5",
                     "--dimse-timeout", "3.5", "--network-timeout", "4.5",
                     "--tls-cert", tls / "cert.pem", "--tls-key", tls / "key.pem",
                     "--tls-ca", tls / "ca.pem", "--no-hostname-check")
    assert resolved_peers, f"no peer resolved: exit {result.exit_code}, {result.stderr}"
    peer = resolved_peers[0]
    assert (peer.host, peer.port) == ("127.0.0.1", closed_port)
    assert (peer.calling_ae_title, peer.called_ae_title, peer.max_pdu) == ("US", "THEM", 16384)
    assert peer.timeouts == Timeouts(connect=1.5, acse=2.5, dimse=3.5, network=4.5)
    assert peer.tls == TlsSettings(cert=tls / "cert.pem", key=tls / "key.pem",
                                   ca=tls / "ca.pem", check_hostname=False)


@pytest.mark.parametrize("command", NETWORK_COMMANDS)
def test_network_flags_default_to_the_config(command: str, closed_port: int, tmp_path: Path,
                                             resolved_peers: list[Peer]) -> None:
    run_cli(*_network_command(command, f"ANY@127.0.0.1:{closed_port}", tmp_path))
    assert resolved_peers
    peer = resolved_peers[0]
    assert (peer.calling_ae_title, peer.called_ae_title) == ("DCMTOOL", "ANY")
    assert peer.timeouts == Timeouts() and peer.tls == TlsSettings()


@pytest.mark.parametrize("where", ["after the command", "before the command"])
@pytest.mark.parametrize("command", [*NETWORK_COMMANDS, "convert", "serve"])
def test_every_logging_flag_reaches_the_command(command: str, where: str, closed_port: int,
                                                tmp_path: Path) -> None:
    from dcmtool.cli.state import settings

    if command == "convert":
        line = ["convert"]  # no INPUT: a usage error once the flags are applied
    elif command == "serve":
        line = ["serve", str(tmp_path / "archive"), "--reindex"]  # exits after reindexing
    else:
        line = _network_command(command, f"ANY@127.0.0.1:{closed_port}", tmp_path)
    log = tmp_path / "dcmtool.log"
    flags = ["--verbose", "--verbose", "--quiet", "--debug", "--log-file", str(log),
             "--traceback"]
    args = [*line, *flags] if where == "after the command" else [*flags, *line]
    result = run_cli(*args)
    assert "No such option" not in result.output, result.output
    assert (settings.verbose, settings.quiet, settings.debug, settings.traceback) == (
        2, True, True, True)
    assert settings.log_file == log and log.exists()

