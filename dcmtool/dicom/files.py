"""Files on disk: the inputs a command names, and the mode of the files dcmtool writes.

Inputs are files, folders (recursive), glob patterns or ``-`` (paths on stdin), the same for
every command that reads DICOM files. Files are written to a temporary name first
(``mkstemp``, always 0600) and renamed into place; without a chmod they would stay private
whatever the user's umask says, so they get what the umask gives, as storescp and cp do.
"""

from __future__ import annotations

import glob
import os
import stat
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

from dcmtool.errors import UsageError


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


def find_files(inputs: Sequence[str], stdin: TextIO | None = None) -> Iterator[Path]:
    """Files named by ``inputs``: files, folders (recursive), glob patterns, ``-`` (stdin)."""
    for item in inputs:
        if item == "-":
            source = stdin or sys.stdin
            for line in source:
                if line.strip():
                    yield from find_files([line.strip()])
            continue
        path = Path(item)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            yield path
        elif glob.has_magic(item):
            for match in sorted(glob.glob(item, recursive=True)):
                yield from find_files([match])
        else:
            raise UsageError(f"{item}: no such file or folder")


def referenced_files(path: Path) -> list[Path]:
    """The files a DICOMDIR references (Referenced File ID, relative to its folder)."""
    from pydicom import dcmread

    ds = dcmread(path)
    files = []
    for record in ds.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if file_id:
            parts = [file_id] if isinstance(file_id, str) else list(file_id)
            files.append(path.parent.joinpath(*parts))
    return files


def write_atomically(path: Path, write: Callable[[BinaryIO], object], *, durable: bool) -> int:
    """Write ``path`` through a temporary file beside it, renamed into place: a reader sees
    the old file or the new one, never half of one. The mode is the replaced file's or the
    umask's; ``durable`` fsyncs the data before the rename. Returns the size written."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=".dcmtool-", suffix=".tmp", dir=path.parent)
    try:
        publish(fd, replacing=path)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            size = fh.tell()
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    return size
