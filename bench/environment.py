"""What the bench runs on: which dcmtool and Python to time, the environment they get, and
the header lines that describe the machine."""

from __future__ import annotations

import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from bench.fixture import DCMTK_BIN, GDCM_BIN, Tools
from bench.orthanc import ORTHANC

# Python settings in the caller's environment that would distort start-up times.
SCRUBBED_ENV = ("PYTHONPROFILEIMPORTTIME", "PYTHONDEVMODE", "PYTHONTRACEMALLOC", "PYTHONMALLOC",
                "PYTHONINSPECT", "PYTHONVERBOSE", "PYTHONASYNCIODEBUG", "TCP_NODELAY")


def script_interpreter(script: str) -> str | None:
    """The interpreter named on a console script's ``#!`` line, if it exists."""
    try:
        with open(script, "rb") as f:
            first = f.readline(512).decode(errors="replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if not words:
        return None
    candidate = words[0]
    if os.path.basename(candidate) == "env" and len(words) > 1:
        candidate = shutil.which(words[1]) or ""
    return candidate if candidate and os.access(candidate, os.X_OK) else None


def find_tools(python: str | None, dcmtool: str | None) -> tuple[str, list[str]]:
    """(interpreter for `-m pynetdicom`, dcmtool command)."""
    if python is not None:
        python = shutil.which(python) or python
        if dcmtool is not None:
            return python, shlex.split(dcmtool)
        beside = Path(python).parent / "dcmtool"
        if beside.is_file() and script_interpreter(str(beside)) == python:
            return python, [str(beside)]
        return python, [python, "-m", "dcmtool"]
    if dcmtool is None:
        beside = Path(sys.executable).parent / "dcmtool"
        dcmtool = str(beside) if beside.is_file() else shutil.which("dcmtool")
        if dcmtool is None and importlib.util.find_spec("dcmtool") is not None:
            return sys.executable, [sys.executable, "-m", "dcmtool"]
        if dcmtool is None:
            raise SystemExit("bench: no dcmtool next to this Python or on PATH; "
                             "use --python PATH (a Python with dcmtool installed) or --dcmtool")
        command = [dcmtool]
    else:
        command = shlex.split(dcmtool)
    interpreter = script_interpreter(command[0]) or sys.executable
    return interpreter, command


def base_environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in SCRUBBED_ENV and not k.startswith("DCMTOOL_")}
    # The user's config must not matter: an empty one (a named file that is missing is an
    # error, as it should be).
    empty = tmp / "empty-config.toml"
    empty.write_text("", encoding="utf-8")
    env["DCMTOOL_CONFIG"] = str(empty)
    env.setdefault("LC_ALL", "C.UTF-8")
    return env


def probe(argv: list[str], env: dict[str, str]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, env=env, timeout=30, text=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (proc.stdout or proc.stderr).strip()
    return text.splitlines()[0] if proc.returncode == 0 and text else f"unavailable ({text[:80]})"


def describe(tools: Tools) -> list[str]:
    env = tools.base_env
    versions = probe([tools.python, "-c",
                      "import sys, importlib.metadata as m; v = []\n"
                      "for p in ('dcmtool', 'pynetdicom', 'pydicom', 'typer'):\n"
                      "    try: v.append(f'{p} {m.version(p)}')\n"
                      "    except m.PackageNotFoundError: v.append(f'{p} missing')\n"
                      "print(f'python {sys.version.split()[0]}, ' + ', '.join(v))"], env)
    dcmtk = probe([str(DCMTK_BIN / "echoscu"), "--version"], env).strip("$ ")
    gdcm = probe([str(GDCM_BIN / "gdcmconv"), "--version"], env).replace("$Date$", "").strip()
    orthanc = (probe([str(ORTHANC), "--version"], env).split()[-1]
               if ORTHANC.is_file() else "not found")
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    free = shutil.disk_usage(tools.tmp).free / 2**30
    return [
        f"dcmtool:  {shlex.join(tools.dcmtool)}",
        f"python:   {tools.python} ({versions})",
        f"DCMTK:    {DCMTK_BIN} ({dcmtk})",
        f"GDCM:     {GDCM_BIN} ({gdcm})",
        f"Orthanc:  {ORTHANC} ({orthanc})",
        f"host:     {platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load average {load}",
        # Test data and every server's storage live here: on tmpfs, fsync would cost nothing.
        f"temp:     {tools.tmp.parent} ({filesystem_type(tools.tmp)}, {free:.0f} GiB free)",
    ]


def filesystem_type(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts), or "?"."""
    best, kind = "", "?"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    target = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def compile_dcmtool(python: str) -> None:
    """Byte-compile dcmtool as `pip install` would: an editable install (or one made with
    PYTHONDONTWRITEBYTECODE set) would otherwise compile its modules on every start."""
    subprocess.run(
        [python, "-c", "import compileall, os, dcmtool; "
         "compileall.compile_dir(os.path.dirname(dcmtool.__file__), quiet=1)"],
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
        check=False, capture_output=True, timeout=120)
