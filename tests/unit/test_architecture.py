"""The architecture holds: layers import one way, pynetdicom's internals stay behind net/,
and its fixes are applied explicitly and fail loudly when pynetdicom changed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dcmtool"

#: What only the network engine may touch: pynetdicom's private modules and attributes.
PRIVATE = re.compile(
    r"pynetdicom(\.| import )(_config|dul|transport|dimse\b|dimse_messages|fsm|acse|"
    r"service_class|dsutils|pdu|_)|_reactor_checkpoint|_is_transport_event|_move_scp|"
    r"_get_scp|_dataset_path|(?<![A-Z])_STORAGE_CLASSES|to_provider_queue|\.dul\.|dcmtool_[a-z]+ =")


def test_the_import_contracts_hold() -> None:
    """cli > scu | scp > archive | net > dicom, checked by import-linter (pyproject.toml)."""
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_pynetdicom_internals_are_touched_only_under_net() -> None:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "net":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if PRIVATE.search(code):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


def test_the_package_top_holds_only_its_face() -> None:
    """Modules at the top of dcmtool/: the package's face, nothing of the layers."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "_version.py", "config.py", "errors.py"]
    layers = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert layers == ["archive", "cli", "dicom", "media", "net", "scp", "scu"]


def test_no_library_module_is_over_600_lines() -> None:
    long = [f"{p.relative_to(PACKAGE)}: {n}" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600]
    assert long == []


def test_importing_the_network_engine_changes_nothing_in_pynetdicom() -> None:
    """The fixes are applied by the code that builds an AE, not as a side effect of imports."""
    script = (
        "import dcmtool.net.association, dcmtool.scp.server, dcmtool.scu.store\n"
        "from pynetdicom import transport, dimse\n"
        "assert transport.AssociationSocket.recv.__module__ == 'pynetdicom.transport'\n"
        "assert dimse.DIMSEServiceProvider.get_msg.__module__ == 'pynetdicom.dimse'\n"
        "from dcmtool.config import Peer\n"
        "from dcmtool.net.association import make_ae\n"
        "make_ae(Peer(label='x', host='127.0.0.1', port=1, called_ae_title='A',\n"
        "             calling_ae_title='B'))\n"
        "assert transport.AssociationSocket.recv.__module__.startswith('dcmtool.net.patches')\n"
        "assert dimse.DIMSEServiceProvider.get_msg.__module__.startswith('dcmtool.net.patches')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


class _Target:
    def method(self, first: int) -> int:
        return first


def test_a_fix_whose_target_is_gone_fails_loudly() -> None:
    from dcmtool.net.patches._replace import PatchError, replace

    with pytest.raises(PatchError, match=r"has no .*_Target\.missing"):
        replace(_Target, "missing", lambda self: None, fix="demo")


def test_a_fix_whose_target_changed_signature_fails_loudly() -> None:
    from dcmtool.net.patches._replace import PatchError, replace

    with pytest.raises(PatchError, match=r"takes \('self', 'first'\)"):
        replace(_Target, "method", lambda self, other: other, fix="demo",
                params=("self", "other"))
    assert _Target().method(3) == 3  # refused: nothing was replaced


def test_another_pynetdicom_minor_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import pynetdicom

    from dcmtool.net.patches._replace import PatchError, check_version

    monkeypatch.setattr(pynetdicom, "__version__", "3.1.0")
    with pytest.raises(PatchError, match=r"written for pynetdicom 3\.0\.x, not 3\.1\.0"):
        check_version()


def test_every_fix_checks_what_it_replaces() -> None:
    """Each fix module replaces through ``replace`` (which asserts), never by setattr."""
    patches = PACKAGE / "net" / "patches"
    for path in sorted(patches.glob("*.py")):
        if path.name.startswith("_"):
            continue
        text = path.read_text(encoding="utf-8")
        assert "replace(" in text, path.name
        assert "setattr(" not in text, path.name
