"""Where an instance lives inside the archive folder, whatever its attributes contain.

A pattern like ``{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm``
names DICOM keywords. Each value is reduced to a safe path component: no separators, no NUL,
no leading dot (so never ``.`` or ``..``), bounded length, never empty. The final path is checked
to stay inside the root after symlinks are resolved.
"""

from __future__ import annotations

import hashlib
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATTERN = "{PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm"
#: Layouts by name: ``--layout flat`` as well as a pattern.
NAMED_LAYOUTS = {
    "archive": DEFAULT_PATTERN,  # serve's
    "study": "{StudyInstanceUID}/{Modality}.{SOPInstanceUID}.dcm",  # get/move -o's default
    "flat": "{Modality}.{SOPInstanceUID}.dcm",  # DCMTK's storescp -od naming, plus .dcm
}
MAX_COMPONENT = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")
_UNDERSCORES = re.compile(r"_{2,}")


class LayoutError(ValueError):
    """A pattern that cannot name files safely, or a path that would leave the root."""


@dataclass(frozen=True)
class Layout:
    pattern: str
    keywords: tuple[str, ...]

    @classmethod
    def parse(cls, pattern: str) -> Layout:
        """Check ``pattern`` (or a name of ``NAMED_LAYOUTS``): known keywords only, and
        SOPInstanceUID so that names are unique."""
        from pydicom.datadict import tag_for_keyword

        pattern = NAMED_LAYOUTS.get(pattern, pattern)

        if pattern.startswith("/") or "\\" in pattern:
            raise LayoutError(f"layout {pattern!r}: use a relative pattern with '/' separators")
        keywords: list[str] = []
        for _text, field, spec, conversion in string.Formatter().parse(pattern):
            if field is None:
                continue
            if spec or conversion or tag_for_keyword(field) is None:
                raise LayoutError(f"layout {pattern!r}: {{{field}}} is not a DICOM keyword")
            keywords.append(field)
        if "SOPInstanceUID" not in keywords:
            raise LayoutError(f"layout {pattern!r}: must contain {{SOPInstanceUID}}")
        for part in pattern.split("/"):
            if not part or part in (".", ".."):
                raise LayoutError(f"layout {pattern!r}: empty, '.' or '..' path component")
        return cls(pattern, tuple(dict.fromkeys(keywords)))

    def relative_path(self, values: Mapping[str, object]) -> Path:
        return Path(*self.relative_parts(values))

    def relative_parts(self, values: Mapping[str, object]) -> list[str]:
        """The path's components for ``values`` (each one safe as a name)."""
        safe = {kw: sanitise(values.get(kw)) for kw in self.keywords}
        return [sanitise_literal(p.format_map(safe)) for p in self.pattern.split("/")]

    def resolve(self, root: Path, values: Mapping[str, object]) -> Path:
        """The absolute path for ``values``; raise ``LayoutError`` if it would leave ``root``."""
        root = root.resolve()
        target = (root / self.relative_path(values)).resolve()
        if root not in target.parents:
            raise LayoutError(f"{target} is outside the archive {root}")
        return target


def sanitise(value: object) -> str:
    """One attribute value as one safe path component."""
    text = "" if value is None else str(value)
    cleaned = _UNSAFE.sub("_", text.replace("\x00", ""))
    cleaned = _DOTS.sub("_", cleaned)  # ".." never survives, even inside a name
    cleaned = _UNDERSCORES.sub("_", cleaned).lstrip("._").rstrip("_")  # no hidden names
    if not cleaned:
        return "unknown"
    if len(cleaned) > MAX_COMPONENT:
        # Keep names unique when they are cut: a short digest of the full value.
        digest = hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        cleaned = f"{cleaned[: MAX_COMPONENT - 11]}_{digest}"
    return cleaned


def sanitise_literal(component: str) -> str:
    """A component after formatting (pattern text + values): still no dot-only names."""
    component = component.replace("\x00", "")
    if component.strip(".") == "":
        return "unknown"
    return component
