"""Transfer syntax names, aliases and families.

Users name syntaxes the way DCMTK and Orthanc documentation do (``explicit``, ``jpeg-ls``);
the network layer wants UIDs. This table is the single place that maps one to the other.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class TransferSyntax:
    uid: str
    name: str  # canonical short name used on the command line and in JSON
    title: str  # the DICOM name
    family: str  # column of the --probe acceptance matrix
    aliases: tuple[str, ...] = ()
    compressed: bool = True
    lossy: bool = False


TRANSFER_SYNTAXES: tuple[TransferSyntax, ...] = (
    TransferSyntax("1.2.840.10008.1.2", "implicit", "Implicit VR Little Endian", "implicit",
                   ("implicit-little-endian", "ivrle"), compressed=False),
    TransferSyntax("1.2.840.10008.1.2.1", "explicit", "Explicit VR Little Endian", "explicit",
                   ("explicit-little-endian", "evrle", "little-endian"), compressed=False),
    TransferSyntax("1.2.840.10008.1.2.2", "big-endian", "Explicit VR Big Endian (retired)",
                   "big-endian", ("explicit-big-endian", "evrbe"), compressed=False),
    TransferSyntax("1.2.840.10008.1.2.1.99", "deflate", "Deflated Explicit VR Little Endian",
                   "deflate", ("deflated",)),
    TransferSyntax("1.2.840.10008.1.2.4.50", "jpeg-baseline", "JPEG Baseline (Process 1)",
                   "jpeg-lossy", ("jpeg-8bit",), lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.51", "jpeg-extended", "JPEG Extended (Process 2 & 4)",
                   "jpeg-lossy", ("jpeg-12bit",), lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.57", "jpeg-lossless-p14",
                   "JPEG Lossless, Non-Hierarchical (Process 14)", "jpeg-lossless"),
    TransferSyntax("1.2.840.10008.1.2.4.70", "jpeg-lossless",
                   "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 SV1)",
                   "jpeg-lossless", ("jpeg-lossless-sv1",)),
    TransferSyntax("1.2.840.10008.1.2.4.80", "jpeg-ls", "JPEG-LS Lossless", "jpeg-ls",
                   ("jpeg-ls-lossless", "jpls")),
    TransferSyntax("1.2.840.10008.1.2.4.81", "jpeg-ls-near", "JPEG-LS Lossy (Near-Lossless)",
                   "jpeg-ls", ("jpeg-ls-lossy",), lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.90", "j2k-lossless", "JPEG 2000 (Lossless Only)", "j2k",
                   ("jpeg2000-lossless",)),
    TransferSyntax("1.2.840.10008.1.2.4.91", "j2k-lossy", "JPEG 2000", "j2k",
                   ("jpeg2000-lossy",), lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.201", "htj2k-lossless",
                   "High-Throughput JPEG 2000 (Lossless Only)", "htj2k"),
    TransferSyntax("1.2.840.10008.1.2.4.202", "htj2k-rpcl",
                   "High-Throughput JPEG 2000 with RPCL Options (Lossless Only)", "htj2k"),
    TransferSyntax("1.2.840.10008.1.2.4.203", "htj2k-lossy", "High-Throughput JPEG 2000",
                   "htj2k", lossy=True),
    TransferSyntax("1.2.840.10008.1.2.5", "rle", "RLE Lossless", "rle", ("rle-lossless",)),
    TransferSyntax("1.2.840.10008.1.2.4.100", "mpeg2-mp", "MPEG2 Main Profile / Main Level",
                   "mpeg", lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.101", "mpeg2-hl", "MPEG2 Main Profile / High Level",
                   "mpeg", lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.102", "mpeg4", "MPEG-4 AVC/H.264 High Profile / Level 4.1",
                   "mpeg", lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.103", "mpeg4-bd",
                   "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", "mpeg", lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.104", "mpeg4-2d",
                   "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video", "mpeg", lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.105", "mpeg4-3d",
                   "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video", "mpeg", lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.106", "mpeg4-stereo",
                   "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2", "mpeg", lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.107", "hevc", "HEVC/H.265 Main Profile / Level 5.1",
                   "hevc", lossy=True),
    TransferSyntax("1.2.840.10008.1.2.4.108", "hevc-10",
                   "HEVC/H.265 Main 10 Profile / Level 5.1", "hevc", lossy=True),
)

#: Columns of the probe matrix, in display order.
FAMILIES: tuple[str, ...] = (
    "implicit", "explicit", "big-endian", "deflate", "jpeg-lossy", "jpeg-lossless", "jpeg-ls",
    "j2k", "htj2k", "rle", "mpeg", "hevc",
)

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"

_BY_UID = {ts.uid: ts for ts in TRANSFER_SYNTAXES}
_BY_NAME = {
    key: ts for ts in TRANSFER_SYNTAXES for key in (ts.name, *ts.aliases)
}
#: Names people use for more than one syntax, one of them lossy: never guessed, because
#: guessing lossy loses data and gives the images new UIDs.
AMBIGUOUS: dict[str, tuple[str, ...]] = {
    "jpeg": ("jpeg-lossless", "jpeg-lossless-p14", "jpeg-baseline", "jpeg-extended"),
    "jpeg2000": ("j2k-lossless", "j2k-lossy"),
    "j2k": ("j2k-lossless", "j2k-lossy"),
    "jp2": ("j2k-lossless", "j2k-lossy"),
    "htj2k": ("htj2k-lossless", "htj2k-rpcl", "htj2k-lossy"),
    "jpegls": ("jpeg-ls", "jpeg-ls-near"),
    "mpeg": tuple(ts.name for ts in TRANSFER_SYNTAXES if ts.family == "mpeg"),
}


def lookup(name_or_uid: str) -> TransferSyntax | None:
    """Return the syntax for a short name, alias or UID, or ``None`` if unknown."""
    key = name_or_uid.strip()
    return _BY_UID.get(key) or _BY_NAME.get(key.lower())


def resolve_uid(name_or_uid: str) -> str:
    """Return the UID for a name, alias or UID; raise ``ValueError`` naming the choices."""
    ts = lookup(name_or_uid)
    if ts is not None:
        return ts.uid
    if _looks_like_uid(name_or_uid):
        return name_or_uid  # an unknown but well-formed UID: the peer decides
    names = ", ".join(t.name for t in TRANSFER_SYNTAXES)
    raise ValueError(f"{why_unknown(name_or_uid)} (known: {names})")


def why_unknown(name: str) -> str:
    """Why ``name`` names no syntax: ambiguous (listing the exact names, lossy ones marked),
    a near miss, or unknown."""
    key = name.strip().lower()
    choices = AMBIGUOUS.get(key)
    if choices:
        listed = ", ".join(f"{c} (lossy)" if _BY_NAME[c].lossy else c for c in choices)
        return f"transfer syntax {name!r} is ambiguous: name one of {listed}"
    from difflib import get_close_matches

    close = get_close_matches(key, _BY_NAME, n=1, cutoff=0.75)
    maybe = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown transfer syntax {name!r}{maybe}"


def describe(uid: str) -> str:
    ts = _BY_UID.get(uid)
    return ts.name if ts else uid


def _looks_like_uid(text: str) -> bool:
    parts = text.split(".")
    return 0 < len(text) <= 64 and all(p.isdigit() and (p == "0" or p[0] != "0") for p in parts)


def conversion_target(accepted: Iterable[str]) -> str | None:
    """The syntax to convert a file to when the peer refused its own: never lossy on our
    initiative. Explicit VR little endian, then implicit, then the lossless compressed
    syntaxes in the order accepted; ``None`` when the peer accepted none of those."""
    offered = list(accepted)
    lossless = [uid for uid in offered if (ts := _BY_UID.get(uid)) is not None and not ts.lossy
                and uid != "1.2.840.10008.1.2.2"]  # big endian: a retired dead end
    for uid in (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN):
        if uid in offered:
            return uid
    return lossless[0] if lossless else None
