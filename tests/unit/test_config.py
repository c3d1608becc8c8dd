"""Config parsing, validation messages, precedence and editing (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dcmtool.config import (
    DEFAULT_MAX_PDU,
    PeerOverrides,
    add_node,
    load_config,
    parse_address,
    remove_node,
    resolve_peer,
    split_peer_arguments,
)
from dcmtool.errors import ConfigError, PeerNotFound, UsageError

GOOD = """
[local]
ae_title = "WS1"
port = 11113

[nodes.PACS]
host = "pacs.example.org"
port = 104
ae_title = "PACS"
calling_ae_title = "WS1-TO-PACS"
max_pdu = 65536
dimse_timeout = 5
transfer_syntaxes = ["explicit", "jpeg-lossless"]
retrieve = "get"

[nodes.ORTHANC]
host = "127.0.0.1"
port = 4242
ae_title = "ORTHANC"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_node_resolves_with_its_settings(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    peer = resolve_peer("PACS", config)
    assert (peer.host, peer.port, peer.called_ae_title) == ("pacs.example.org", 104, "PACS")
    assert peer.calling_ae_title == "WS1-TO-PACS"
    assert peer.max_pdu == 65536
    assert peer.timeouts.dimse == 5.0
    assert peer.transfer_syntaxes == ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.70")
    assert peer.retrieve == "get"


def test_a_node_without_calling_aet_uses_the_local_ae_title(tmp_path: Path) -> None:
    peer = resolve_peer("ORTHANC", load_config(write(tmp_path, GOOD)))
    assert peer.calling_ae_title == "WS1"
    assert peer.max_pdu == DEFAULT_MAX_PDU


def test_flags_override_the_node(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    peer = resolve_peer("PACS", config, PeerOverrides(calling_ae_title="FLAG", max_pdu=32768,
                                                      called_ae_title="OTHER", dimse_timeout=9))
    assert (peer.calling_ae_title, peer.called_ae_title) == ("FLAG", "OTHER")
    assert (peer.max_pdu, peer.timeouts.dimse) == (32768, 9)


def test_addresses_resolve_without_a_config() -> None:
    config = load_config(None)
    peer = resolve_peer("STORESCP@127.0.0.1:11112", config)
    assert (peer.called_ae_title, peer.host, peer.port) == ("STORESCP", "127.0.0.1", 11112)
    assert peer.calling_ae_title == "DCMTOOL"
    peer = resolve_peer(("10.0.0.5", 104), config, PeerOverrides(called_ae_title="X"))
    assert (peer.host, peer.port, peer.called_ae_title) == ("10.0.0.5", 104, "X")
    assert resolve_peer("localhost:104", config).called_ae_title == "ANY-SCP"


def test_ipv6_address_in_brackets() -> None:
    assert parse_address("AE@[::1]:104") == ("AE", "::1", 104)
    assert resolve_peer("AE@[::1]:104", load_config(None)).address == "AE@[::1]:104"


def test_host_port_pairs_are_one_peer() -> None:
    assert split_peer_arguments(["10.0.0.5", "104"]) == [("10.0.0.5", 104)]
    assert split_peer_arguments(["PACS", "ORTHANC"]) == ["PACS", "ORTHANC"]
    assert split_peer_arguments(["A@h:1", "104"]) == ["A@h:1", "104"]


def test_unknown_peer_names_the_configured_nodes(tmp_path: Path) -> None:
    with pytest.raises(PeerNotFound) as info:
        resolve_peer("NOPE", load_config(write(tmp_path, GOOD)))
    assert "ORTHANC, PACS" in info.value.message
    assert info.value.hint and "dcmtool config add" in info.value.hint


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[nodes.PACS]\nhost = "h"\nport = 70000\nae_title = "P"\n',
         "[nodes.PACS] port: expected an integer 1-65535, got 70000"),
        ('[nodes.PACS]\nhost = "h"\nport = 104\nae_title = "A_TITLE_THAT_IS_TOO_LONG"\n',
         "[nodes.PACS] ae_title: 'A_TITLE_THAT_IS_TOO_LONG' is longer than 16 characters"),
        ('[nodes.PACS]\nhost = "h"\nport = 104\n',
         "[nodes.PACS] ae_title: missing"),
        ('[nodes.PACS]\nhost = "h"\nport = 104\nae_title = "P"\ncolour = "red"\n',
         "[nodes.PACS] colour: unknown key"),
        ('[nodes.PACS]\nhost = "h"\nport = 104\nae_title = "P"\nretrieve = "fetch"\n',
         "[nodes.PACS] retrieve: expected 'move' or 'get', got 'fetch'"),
        ('[nodes.PACS]\nhost = "h"\nport = 104\nae_title = "P"\ntransfer_syntaxes = ["mp3"]\n',
         "[nodes.PACS] transfer_syntaxes: unknown transfer syntax 'mp3'"),
        ('[local]\nport = "eleven"\n', "[local] port: expected an integer 1-65535, got 'eleven'"),
        ("[nodes.PACS\n", "invalid TOML"),
    ],
)
def test_errors_name_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = info.value.message
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_a_missing_file_means_defaults(tmp_path: Path) -> None:
    config = load_config(tmp_path / "absent.toml")
    assert not config.exists
    assert config.local.ae_title == "DCMTOOL"
    assert dict(config.nodes) == {}


def test_add_and_remove_keep_the_other_entries(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[serve]\nport = 11112\n')
    node = add_node(path, "NEW", "NEWAE@10.1.2.3:11112", {"calling_ae_title": "ME",
                                                           "max_pdu": None})
    assert (node.ae_title, node.host, node.port, node.calling_ae_title) == (
        "NEWAE", "10.1.2.3", 11112, "ME")
    config = load_config(path)
    assert set(config.nodes) == {"PACS", "ORTHANC", "NEW"}
    assert config.nodes["PACS"].max_pdu == 65536
    assert config.serve == {"port": 11112}
    assert config.local.ae_title == "WS1"
    remove_node(path, "PACS")
    assert set(load_config(path).nodes) == {"ORTHANC", "NEW"}
    with pytest.raises(PeerNotFound):
        remove_node(path, "PACS")


def test_add_refuses_invalid_entries_without_touching_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    with pytest.raises(UsageError):
        add_node(path, "X", "10.0.0.1:104", {})  # no AE title
    with pytest.raises(ConfigError):
        add_node(path, "X", "AE@10.0.0.1:104", {"retrieve": "fetch"})
    assert path.read_text(encoding="utf-8") == GOOD
