"""UID values (PS3.5 9.1): the one check of what a valid UID looks like."""

from __future__ import annotations

import re

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def uid_problem(value: object) -> str | None:
    """Why ``value`` is not a valid UID (PS3.5 9.1), or ``None`` if it is one."""
    text = "" if value is None else str(value)
    if not text:
        return "is empty"
    if len(text) > 64:
        return f"is {len(text)} characters long (the limit is 64)"
    if not _UID.match(text):
        return "is not a valid UID"
    return None
