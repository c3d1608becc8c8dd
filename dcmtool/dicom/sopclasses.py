"""SOP class lists built from pydicom's UID registry (so retired classes are included)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

VERIFICATION = "1.2.840.10008.1.1"

# Query/Retrieve information models (PS3.4 C.6) and the Modality Worklist model (PS3.4 K.6).
PATIENT_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.1.1"
PATIENT_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.1.2"
PATIENT_ROOT_GET = "1.2.840.10008.5.1.4.1.2.1.3"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PATIENT_STUDY_ONLY_FIND = "1.2.840.10008.5.1.4.1.2.3.1"
PATIENT_STUDY_ONLY_MOVE = "1.2.840.10008.5.1.4.1.2.3.2"
PATIENT_STUDY_ONLY_GET = "1.2.840.10008.5.1.4.1.2.3.3"
QR_MODELS = (
    PATIENT_ROOT_FIND, STUDY_ROOT_FIND, PATIENT_STUDY_ONLY_FIND,
    PATIENT_ROOT_MOVE, STUDY_ROOT_MOVE, PATIENT_STUDY_ONLY_MOVE,
    PATIENT_ROOT_GET, STUDY_ROOT_GET, PATIENT_STUDY_ONLY_GET,
)
MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"


@dataclass(frozen=True)
class SopClass:
    uid: str
    name: str
    retired: bool
    keyword: str = ""


@cache
def storage_sop_classes(include_retired: bool = True) -> tuple[SopClass, ...]:
    """Every Storage SOP class pydicom knows, ordered by UID.

    Storage Commitment and the DICOMDIR's Media Storage Directory class are not storage
    services and are left out.
    """
    from pydicom._uid_dict import UID_dictionary

    found = []
    for uid, (name, kind, _info, retired, keyword) in UID_dictionary.items():
        if kind != "SOP Class" or "Storage" not in name:
            continue
        if "Commitment" in name or "Media Storage Directory" in name:
            continue
        is_retired = retired == "Retired" or "(Retired)" in name
        if is_retired and not include_retired:
            continue
        found.append(SopClass(uid, name.replace(" SOP Class", ""), is_retired, keyword))
    return tuple(sorted(found, key=lambda s: [int(p) for p in s.uid.split(".")]))


def sop_class_name(uid: str) -> str:
    from pydicom._uid_dict import UID_dictionary

    entry = UID_dictionary.get(uid)
    return entry[0] if entry else uid


def storage_class_uid(name: str) -> str:
    """The UID of a storage SOP class named by its keyword (``MRImageStorage``, any case) or
    UID; ``ValueError`` naming the near misses otherwise."""
    from difflib import get_close_matches

    text = name.strip()
    classes = storage_sop_classes()
    if text and all(part.isdigit() for part in text.split(".")):
        return text  # a UID: unknown ones are the peer's business
    by_keyword = {c.keyword.lower(): c for c in classes if c.keyword}
    found = by_keyword.get(text.lower()) or by_keyword.get(text.lower() + "storage")
    if found is not None:
        return found.uid
    close = get_close_matches(text.lower(), list(by_keyword), n=3, cutoff=0.6)
    close += [k for k in by_keyword if k.startswith(text.lower()) and k not in close][:3]
    maybe = ", ".join(by_keyword[c].keyword for c in close[:3])
    raise ValueError(f"{name!r} is not a storage SOP class keyword or UID"
                     + (f"; did you mean {maybe}?" if maybe else
                        " (keywords as in 'CTImageStorage')"))
