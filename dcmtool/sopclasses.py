"""SOP class lists built from pydicom's UID registry (so retired classes are included)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

VERIFICATION = "1.2.840.10008.1.1"


@dataclass(frozen=True)
class SopClass:
    uid: str
    name: str
    retired: bool


@cache
def storage_sop_classes(include_retired: bool = True) -> tuple[SopClass, ...]:
    """Every Storage SOP class pydicom knows, ordered by UID.

    Storage Commitment and the DICOMDIR's Media Storage Directory class are not storage
    services and are left out.
    """
    from pydicom._uid_dict import UID_dictionary

    found = []
    for uid, (name, kind, _info, retired, _keyword) in UID_dictionary.items():
        if kind != "SOP Class" or "Storage" not in name:
            continue
        if "Commitment" in name or "Media Storage Directory" in name:
            continue
        is_retired = retired == "Retired" or "(Retired)" in name
        if is_retired and not include_retired:
            continue
        found.append(SopClass(uid, name.replace(" SOP Class", ""), is_retired))
    return tuple(sorted(found, key=lambda s: [int(p) for p in s.uid.split(".")]))


def sop_class_name(uid: str) -> str:
    from pydicom._uid_dict import UID_dictionary

    entry = UID_dictionary.get(uid)
    return entry[0] if entry else uid
