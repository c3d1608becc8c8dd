"""The mode of the files dcmtool writes: what the umask gives, as storescp and cp do.

Files are written to a temporary name first (``mkstemp``, always 0600) and renamed into
place; without a chmod they would stay private whatever the user's umask says.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def _umask() -> int:
    # Linux reports the umask without changing it; elsewhere it can only be read by setting
    # it, which is done once, when this module is first imported.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Regular files: 0666 less the umask (0644 with the usual 022).
FILE_MODE = 0o666 & ~_umask()


def publish(fd: int, replacing: Path | None = None) -> None:
    """Give a temporary file (open as ``fd``) the mode it should have under its final name:
    the mode of the file it replaces (``convert --in-place``), else the umask's."""
    mode = FILE_MODE
    if replacing is not None:
        try:
            mode = stat.S_IMODE(os.stat(replacing).st_mode)
        except OSError:
            pass
    os.fchmod(fd, mode)
