"""Entry points, and what start-up imports (start-up time is part of the product)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HEAVY = ("numpy", "pylibjpeg", "openjpeg", "libjpeg", "rle", "PIL", "imagecodecs")

PROBE = """
import atexit, json, sys
def report():
    sys.__stderr__.write("MODULES " + json.dumps(sorted(sys.modules)) + "\\n")
atexit.register(report)
sys.argv = ["dcmtool", *json.loads(sys.argv[1])]
from dcmtool.cli.entry import main
main()
"""


def loaded_modules(*args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args))],
                          capture_output=True, text=True, timeout=60)
    line = next(x for x in proc.stderr.splitlines() if x.startswith("MODULES "))
    return {m.split(".")[0] for m in json.loads(line[8:])}, proc


def test_help_imports_no_dicom_stack() -> None:
    roots, proc = loaded_modules("--help")
    assert proc.returncode == 0
    for name in (*HEAVY, "pynetdicom", "pydicom", "rich"):
        assert name not in roots, f"dcmtool --help imported {name}"


def test_help_on_a_wide_terminal_is_the_generated_text_without_the_cli(tmp_path: Path) -> None:
    """``dcmtool --help`` prints the generated text without importing typer, and it is what
    the CLI itself prints, at 80 columns and wider; narrower, the CLI wraps it."""
    from dcmtool.cli import entry

    rendered = {}
    for columns in ("80", "200", "60"):
        env = {**os.environ, "COLUMNS": columns}
        fast = subprocess.run([sys.executable, "-c", PROBE, json.dumps(["--help"])],
                              capture_output=True, text=True, timeout=60, env=env)
        full = subprocess.run(
            [sys.executable, "-c", "import sys; sys.argv[0] = 'dcmtool'\n"
             "from dcmtool.cli.app import main; main()", "--help"],
            capture_output=True, text=True, timeout=60, env=env)
        assert fast.returncode == full.returncode == 0, fast.stderr + full.stderr
        assert fast.stdout == full.stdout, columns
        modules = json.loads(next(x for x in fast.stderr.splitlines()
                                  if x.startswith("MODULES "))[8:])
        loaded_typer = any(m.split(".")[0] in ("typer", "click") for m in modules)
        assert loaded_typer == (columns == "60"), columns
        rendered[columns] = fast.stdout
    assert rendered["80"] == rendered["200"] == entry._generated_help()
    assert rendered["60"] != rendered["80"]


def test_echo_imports_no_dicom_stack() -> None:
    with socket.socket() as closed:  # bound, never listening: connection refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        roots, proc = loaded_modules("echo", f"X@127.0.0.1:{port}")
    assert proc.returncode == 3, proc.stderr
    for name in (*HEAVY, "pynetdicom", "pydicom", "rich"):  # plain TCP: dcmtool's own client
        assert name not in roots, f"dcmtool echo imported {name}"


def test_store_imports_no_dicom_stack(tmp_path: Path) -> None:
    """Files that go as their bytes over plain TCP: the command's own client, and the scan
    reads headers with struct."""
    from support.datasets import write_instance

    write_instance(tmp_path / "a.dcm")
    with socket.socket() as closed:  # bound, never listening: connection refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        roots, proc = loaded_modules("store", f"X@127.0.0.1:{port}", str(tmp_path))
    assert proc.returncode == 3, proc.stderr
    for name in (*HEAVY, "pynetdicom", "pydicom"):
        assert name not in roots, f"dcmtool store imported {name}"


def test_python_dash_m() -> None:
    proc = subprocess.run([sys.executable, "-m", "dcmtool", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    assert "Usage: python -m dcmtool" in proc.stdout or "Usage: dcmtool" in proc.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "dcmtool"
    path = str(script) if script.exists() else shutil.which("dcmtool")
    if path is None:
        pytest.fail("the dcmtool console script is not installed: pip install -e .")
    proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("dcmtool ")


def test_library_never_imports_typer_or_rich() -> None:
    # Also enforced by ruff's banned-api rule; this checks what actually gets imported.
    code = (
        "import sys, dcmtool.config, dcmtool.net.association, dcmtool.scu.echo, dcmtool.net.stack;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer','rich','click')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_network_only_echo_and_probe_work_without_pixel_code(pynetdicom_scp: Any) -> None:
    # In-process tests already have pydicom loaded, so network-only mode is a no-op there;
    # this runs the real start-up path in a fresh process: echo -v, --json and --probe.
    scp = pynetdicom_scp(storage=True)
    probe = """
import atexit, json, sys
atexit.register(lambda: sys.__stderr__.write(
    "HEAVY " + json.dumps(sorted(m for m in sys.modules
                                 if m.split('.')[0] in ('numpy', 'pylibjpeg', 'openjpeg')
                                 or m.startswith('pydicom.pixels.decoders'))) + "\\n"))
sys.argv = ["dcmtool", *json.loads(sys.argv[1])]
from dcmtool.cli.app import main
main()
"""
    for args in (["echo", "-v", scp.address], ["echo", "--json", "-c", "2", "-i", "0",
                                                scp.address],
                 ["echo", "--probe", "--json", scp.address]):
        proc = subprocess.run([sys.executable, "-c", probe, json.dumps(args)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        heavy = next(x for x in proc.stderr.splitlines() if x.startswith("HEAVY "))
        assert json.loads(heavy[6:]) == [], heavy
        if "--probe" in args:
            result = json.loads(proc.stdout)
            ct = next(e for e in result["accepted"]
                      if e["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.2")
            assert "1.2.840.10008.1.2.1" in ct["transfer_syntaxes"]
        elif "--json" in args:
            assert json.loads(proc.stdout)[0]["succeeded"] == 2
        else:
            assert "peer implementation class UID" in proc.stdout


STORE_PROBE = """
import atexit, json, sys
atexit.register(lambda: sys.__stderr__.write(
    "HEAVY " + json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'numpy'
                                 or m.startswith('pydicom.pixels.decoders'))) + "\\n"))
sys.argv = ["dcmtool", *json.loads(sys.argv[1])]
from dcmtool.cli.app import main
main()
"""


def _store_in_a_fresh_process(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    proc = subprocess.run([sys.executable, "-c", STORE_PROBE, json.dumps(["store", *args])],
                          capture_output=True, text=True, timeout=120)
    heavy = next((x for x in proc.stderr.splitlines() if x.startswith("HEAVY ")), "HEAVY []")
    return proc, json.loads(heavy[6:])


def test_store_starts_network_only_and_loads_pixels_when_it_converts(
        pynetdicom_scp: Any, dcmtk_storescp: Any, tmp_path: Path) -> None:
    """store without --ts starts without numpy and the codecs; a file the peer refuses as it
    is loads them, in the same process, and is converted correctly."""
    from pydicom import dcmread
    from pydicom.uid import generate_uid
    from support.datasets import pydicom_test_file, write_instance

    plain = tmp_path / "plain.dcm"
    write_instance(plain)
    proc, heavy = _store_in_a_fresh_process(pynetdicom_scp(storage=True).address, str(plain))
    assert proc.returncode == 0, proc.stderr
    assert heavy == []

    scp = dcmtk_storescp()  # uncompressed syntaxes only: every file below is converted
    files = []
    for name in ("MR_small_jpeg_ls_lossless.dcm", "SC_rgb_rle.dcm", "MR_small_RLE.dcm"):
        ds = dcmread(pydicom_test_file(name))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(tmp_path / name, enforce_file_format=True)
        files.append(tmp_path / name)
    proc, heavy = _store_in_a_fresh_process(scp.address, *map(str, files))
    assert proc.returncode == 0, proc.stderr
    assert "numpy" in heavy  # loaded on demand
    received = {dcmread(p).SOPInstanceUID: p for p in scp.output_dir.iterdir()}
    for path in files:
        original = dcmread(path)
        copy = dcmread(received[original.SOPInstanceUID])
        assert not copy.file_meta.TransferSyntaxUID.is_compressed
        assert (copy.pixel_array == original.pixel_array).all(), path.name
