"""What the shell completes: node names, levels, transfer syntax and storage class names.

The shell runs ``dcmtool`` for every Tab: these functions import nothing heavy (the config
file is read with tomllib, not validated; pydicom's UID table only for class keywords).
"""

from __future__ import annotations

import os
from pathlib import Path


def _config_path() -> Path:
    env = os.environ.get("DCMTOOL_CONFIG")
    if env:
        return Path(env).expanduser()
    import typer

    return Path(typer.get_app_dir("dcmtool")) / "config.toml"


def peers(incomplete: str) -> list[str]:
    """Node names of the config file (a broken or missing file completes nothing)."""
    try:
        import tomllib  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]
    try:
        with _config_path().open("rb") as fh:
            nodes = tomllib.load(fh).get("nodes", {})
    except (OSError, ValueError):
        return []
    return sorted(name for name in nodes if name.startswith(incomplete))


def levels(incomplete: str) -> list[str]:
    return [level for level in ("PATIENT", "STUDY", "SERIES", "IMAGE")
            if level.startswith(incomplete.upper())]


def transfer_syntaxes(incomplete: str) -> list[str]:
    """The names ``--ts`` takes (canonical names, not the aliases)."""
    from dcmtool.dicom.syntaxes import TRANSFER_SYNTAXES

    return [ts.name for ts in TRANSFER_SYNTAXES if ts.name.startswith(incomplete.lower())]


def storage_classes(incomplete: str) -> list[str]:
    """Storage SOP class keywords (MRImageStorage), current ones first."""
    from dcmtool.dicom.sopclasses import storage_sop_classes

    lowered = incomplete.lower()
    classes = sorted(storage_sop_classes(), key=lambda c: (c.retired, c.keyword))
    return [c.keyword for c in classes if c.keyword and c.keyword.lower().startswith(lowered)]


def layouts(incomplete: str) -> list[str]:
    from dcmtool.archive.layout import NAMED_LAYOUTS

    return [name for name in NAMED_LAYOUTS if name.startswith(incomplete)]


def duplicates(incomplete: str) -> list[str]:
    return [policy for policy in ("ignore", "reject", "overwrite")
            if policy.startswith(incomplete)]


def retrieve_keys(incomplete: str) -> list[str]:
    """What ``--from-key`` takes."""
    return [key for key in ("StudyInstanceUID", "AccessionNumber", "PatientID",
                            "SeriesInstanceUID", "SOPInstanceUID") if key.startswith(incomplete)]


def media_profiles(incomplete: str) -> list[str]:
    """The application profiles ``dicomdir`` writes (PS3.11)."""
    names = ("STD-GEN-CD", "STD-GEN-DVD-JPEG", "STD-GEN-USB-JPEG", "STD-GEN-DVD-J2K",
             "STD-GEN-USB-J2K", "general")
    return [name for name in names if name.lower().startswith(incomplete.lower())]
