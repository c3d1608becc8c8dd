"""``dcmtool store --dry-run`` against DCMTK storescp (uncompressed syntaxes only, its
default) and ``--offline``: the association plan, what the peer accepted, and for every file
whether it would go as it is, converted (to what) or refused, with nothing sent."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.datasets import pydicom_test_file, write_instance
from support.peers import run_cli

EXPLICIT = "1.2.840.10008.1.2.1"
PRIVATE_CLASS = "1.2.826.0.1.3680043.8.498.99999"  # a storage class nobody knows


def three_kinds(folder: Path) -> dict[str, Path]:
    """A file storescp takes as it is, one it takes only converted, one it refuses."""
    folder.mkdir()
    files = {"as is": folder / "ct.dcm", "converted": folder / "j2k.dcm",
             "refused": folder / "private.dcm"}
    write_instance(files["as is"])
    shutil.copyfile(pydicom_test_file("JPEG2000.dcm"), files["converted"])
    write_instance(files["refused"], sop_class=PRIVATE_CLASS)
    return files


def test_dry_run_negotiates_says_what_would_happen_and_sends_nothing(
        dcmtk_storescp: Callable[..., Any], tmp_path: Path) -> None:
    scp = dcmtk_storescp()
    files = three_kinds(tmp_path / "in")
    result = run_cli("store", "--dry-run", "--json", scp.address, str(tmp_path / "in"))
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["offline"] is False
    assert plan["counts"] == {"as is": 1, "converted": 1, "refused": 1}
    actions = {Path(f["path"]).name: f for f in plan["files"]}
    assert actions["ct.dcm"]["action"] == "as is"
    assert actions["j2k.dcm"]["action"] == "converted"
    assert actions["j2k.dcm"]["on_wire"] == EXPLICIT  # storescp: uncompressed only
    assert actions["private.dcm"]["action"] == "refused"
    assert PRIVATE_CLASS in actions["private.dcm"]["reason"]
    contexts = [cx for a in plan["associations"] for cx in a["contexts"]]
    j2k = next(cx for cx in contexts if cx["transfer_syntaxes"] == ["1.2.840.10008.1.2.4.91"])
    assert j2k["accepted"] is False  # what the peer said, context by context
    assert scp.received() == []  # negotiated and released: nothing sent
    assert set(files) == set(plan["counts"])

    text = run_cli("store", "--dry-run", scp.address, str(tmp_path / "in"))
    assert text.exit_code == 0, text.output
    assert "converted to " in text.stdout and "refused: the peer refused SOP class" in \
        text.stdout
    assert "negotiated and released; nothing sent: 1 as is, 1 converted, 1 refused" in \
        text.stdout
    assert scp.received() == []


def test_offline_prints_the_plan_without_connecting(tmp_path: Path) -> None:
    three_kinds(tmp_path / "in")
    with socket.socket() as unused:  # a port nobody listens on: nothing may connect
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = run_cli("store", "--offline", "--json", f"PEER@127.0.0.1:{port}",
                     str(tmp_path / "in"))
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["offline"] is True and plan["counts"] == {"planned": 3}
    proposed = {(cx["abstract_syntax"], tuple(cx["transfer_syntaxes"]))
                for a in plan["associations"] for cx in a["contexts"]}
    # Each file's own syntax alone, plus explicit/implicit VR to convert to, per class.
    assert ("1.2.840.10008.5.1.4.1.1.7", ("1.2.840.10008.1.2.4.91",)) in proposed
    assert (PRIVATE_CLASS, (EXPLICIT, "1.2.840.10008.1.2")) in proposed


def test_dry_run_to_a_peer_that_is_down_fails_as_store_would(tmp_path: Path) -> None:
    three_kinds(tmp_path / "in")
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    result = run_cli("store", "--dry-run", f"PEER@127.0.0.1:{port}", str(tmp_path / "in"))
    stored = run_cli("store", f"PEER@127.0.0.1:{port}", str(tmp_path / "in"))
    assert result.exit_code == stored.exit_code != 0
    assert result.stderr.startswith("dcmtool: error:") and "refused" in result.stderr
