"""Replacing a pynetdicom attribute, loudly: a fix whose target changed must not switch off."""

from __future__ import annotations

import inspect
from typing import Any

#: The pynetdicom minor version the fixes were written for (pyproject pins it too).
PINNED_MINOR = "3.0."


class PatchError(RuntimeError):
    """pynetdicom is not what a fix was written for: it cannot be applied."""


def check_version() -> None:
    import pynetdicom

    version = str(pynetdicom.__version__)
    if not version.startswith(PINNED_MINOR):
        raise PatchError(f"dcmtool's pynetdicom fixes were written for pynetdicom "
                         f"{PINNED_MINOR}x, not {version}: install pynetdicom~={PINNED_MINOR}0")


def replace(owner: Any, name: str, new: Any, *, fix: str,
            params: tuple[str, ...] | None = None) -> Any:
    """Set ``owner.name`` to ``new`` and return what was there.

    Raises ``PatchError`` when ``owner`` has no ``name``, or (with ``params``) when the
    function or property getter there does not take exactly those parameters: pynetdicom
    changed, and the fix would misbehave or silently do nothing.
    """
    where = f"{getattr(owner, '__module__', '')}.{getattr(owner, '__name__', owner)}.{name}"
    try:
        original = inspect.getattr_static(owner, name)
    except AttributeError:
        raise PatchError(f"fix {fix!r}: pynetdicom has no {where}") from None
    if params is not None:
        function: Any = original.fget if isinstance(original, property) else original
        try:
            found = tuple(inspect.signature(function).parameters)
        except (TypeError, ValueError):
            found = ()
        if found != params:
            raise PatchError(f"fix {fix!r}: pynetdicom's {where} takes {found}, "
                             f"the fix expects {params}")
    setattr(owner, name, new)
    return original


def require(owner: Any, *names: str, fix: str) -> None:
    """Raise ``PatchError`` unless ``owner`` has every one of ``names`` (attributes a fix
    reads without replacing them)."""
    for name in names:
        try:
            inspect.getattr_static(owner, name)
        except AttributeError:
            raise PatchError(f"fix {fix!r}: pynetdicom has no "
                             f"{getattr(owner, '__name__', owner)}.{name}") from None
