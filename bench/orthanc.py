"""The bench's private Orthanc: the test suite's config and start-up (tests/support/orthanc.py)
with what the bench measures spelled out, and the program found by ``BENCH_ORTHANC``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from support.orthanc import OrthancRest, modality, orthanc_config

from bench.fixture import LOCALHOST, CaseSkipped

ORTHANC = Path(os.environ.get("BENCH_ORTHANC", "/usr/sbin/Orthanc"))
ORTHANC_AET = "ORTHANC"


def require_orthanc() -> str:
    """The Orthanc program, or the case is skipped."""
    if not (ORTHANC.is_file() and os.access(ORTHANC, os.X_OK)):
        raise CaseSkipped(f"Orthanc not found at {ORTHANC} (BENCH_ORTHANC=/path/Orthanc)")
    return str(ORTHANC)


def bench_orthanc_config(directory: Path, dicom_port: int, http_port: int, *,
                         destinations: Mapping[str, int] | None = None,
                         extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A private Orthanc as ``ORTHANC``: the tests' config (own storage, index and ports under
    ``directory``, no plugins or Lua, HTTP for loopback clients only, every DICOM service for
    any AE), with ``destinations`` (AE title -> port) as its C-MOVE modalities and ``extra``
    on top."""
    return orthanc_config(
        directory, aet=ORTHANC_AET, dicom_port=dicom_port, http_port=http_port,
        modalities={aet.lower(): modality(aet, port) for aet, port in
                    (destinations or {}).items()},
        extra={
            "Name": "dcmtool-bench",
            # What ingest costs: Orthanc's defaults, spelled out (the tests turn fsync off).
            # fsync per file like dcmtool, stored as received; DicomThreadsCount 4 and
            # MaximumPduLength 16384 stay default.
            "SyncStorageArea": True,
            "StorageCompression": False,
            "OverwriteInstances": False,
            **(extra or {}),
        })


def orthanc_rest(http_port: int, timeout: float = 10.0) -> OrthancRest:
    """Orthanc's REST API on loopback (no proxy)."""
    return OrthancRest(f"http://{LOCALHOST}:{http_port}", timeout=timeout)
