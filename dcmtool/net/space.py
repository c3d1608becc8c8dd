"""The free-space rule for data sets streaming to disk: one look every few MiB written, and a
refusal (ENOSPC) once less than the archive's minimum is left, before the disk is full.
Used by both ways a data set arrives (pynetdicom's, ``patches.incoming``; ours,
``receiving``)."""

from __future__ import annotations

import errno
import os

#: Bytes written between two looks at the free space.
CHECK_EVERY = 4 << 20


def below_minimum(folder: str, min_free: int) -> OSError | None:
    """ENOSPC, in words, when less than ``min_free`` bytes are free where ``folder`` is."""
    stat = os.statvfs(folder)
    if stat.f_bavail * stat.f_frsize < min_free:
        return OSError(errno.ENOSPC, f"less than the minimum free space ({min_free >> 20} MiB) "
                       "is left")
    return None
