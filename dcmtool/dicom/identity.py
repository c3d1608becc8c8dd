"""dcmtool's DICOM identity: implementation class UID and version name (PS3.7 D.3.3.2)."""

from __future__ import annotations

from dcmtool import __version__

#: A UUID-derived UID (PS3.5 B.2), fixed for dcmtool.
IMPLEMENTATION_CLASS_UID = "2.25.280742595852762648379511460137954333587"


def implementation_version_name() -> str:
    """``DCMTOOL_`` plus the version, cut to the 16 characters DICOM allows."""
    digits = "".join(ch for ch in __version__ if ch.isalnum() or ch in "._")
    return f"DCMTOOL_{digits}"[:16]
