"""Media Storage Application Profiles (PS3.11): which transfer syntaxes a file set may hold,
what the others are converted to, and the directory keys a profile adds to PS3.3 F.5.

The general purpose profiles of PS3.11 Annex D (CD-R), and their DVD/USB variants with JPEG
(Annex D.3 and the DVD/USB annexes that follow it) or JPEG 2000, all allow explicit VR little
endian; the JPEG and JPEG 2000 ones add compressed syntaxes. ``general`` is not a DICOM
profile: it keeps every file in its own syntax (a file set for another program, not for a
disc a viewer must open).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dcmtool.dicom.transcode import (
    EXPLICIT,
    J2K,
    J2K_LOSSLESS,
    JPEG_BASELINE,
    JPEG_EXTENDED,
    JPEG_LOSSLESS_SV1,
)
from dcmtool.errors import UsageError


@dataclass(frozen=True)
class RecordExtras:
    """Keys a profile adds to one record type: ``required`` (Type 1) and ``if_present``
    (Type 1C, copied when the instance has a value)."""

    required: tuple[str, ...] = ()
    if_present: tuple[str, ...] = ()


@dataclass(frozen=True)
class Profile:
    name: str
    syntaxes: tuple[str, ...]  # allowed on the media; () = any
    lossless_target: str  # what a compressed file in a syntax not allowed becomes
    lossy_target: str | None  # with lossy=True: what uncompressed images become
    #: Record type -> keys the profile adds to the PS3.3 F.5 ones (PS3.11).
    extras: dict[str, RecordExtras] = field(default_factory=dict, compare=False)

    def allows(self, syntax: str) -> bool:
        return not self.syntaxes or syntax in self.syntaxes

    def lossy_for(self, bits_stored: int) -> str | None:
        """The lossy syntax an uncompressed image with ``bits_stored`` becomes, or None when
        the profile has no lossy syntax that holds it: JPEG baseline holds 8 bits, extended
        12 (PS3.5 A.4.1); JPEG 2000 any."""
        target = self.lossy_target
        if target == JPEG_BASELINE and bits_stored > 8:
            target = JPEG_EXTENDED if JPEG_EXTENDED in self.syntaxes else None
        if target == JPEG_EXTENDED and bits_stored > 12:
            target = None
        return target


_JPEG = (EXPLICIT, JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS_SV1)
_J2K = (EXPLICIT, J2K_LOSSLESS, J2K)

#: PS3.11 D.3.3 (and the DVD/USB JPEG and JPEG 2000 profiles that share its table):
#: additional DICOMDIR keys. Sequences (Referenced Image Sequence) are left out.
_DVD_EXTRAS = {
    "PATIENT": RecordExtras(if_present=("PatientBirthDate", "PatientSex")),
    "SERIES": RecordExtras(if_present=("InstitutionName", "InstitutionAddress",
                                       "PerformingPhysicianName")),
    "IMAGE": RecordExtras(
        required=("Rows", "Columns"),
        if_present=("ImageType", "CalibrationImage", "LossyImageCompressionRatio",
                    "FrameOfReferenceUID", "SynchronizationFrameOfReferenceUID",
                    "NumberOfFrames", "AcquisitionTimeSynchronized", "AcquisitionDateTime",
                    "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")),
}


def _profile(name: str, syntaxes: tuple[str, ...], lossless: str, lossy: str | None,
             extras: dict[str, RecordExtras] | None = None) -> Profile:
    return Profile(name, syntaxes, lossless, lossy, dict(extras or {}))


PROFILES: dict[str, Profile] = {
    p.name: p for p in (
        _profile("STD-GEN-CD", (EXPLICIT,), EXPLICIT, None),
        _profile("STD-GEN-DVD-JPEG", _JPEG, JPEG_LOSSLESS_SV1, JPEG_BASELINE, _DVD_EXTRAS),
        _profile("STD-GEN-USB-JPEG", _JPEG, JPEG_LOSSLESS_SV1, JPEG_BASELINE, _DVD_EXTRAS),
        _profile("STD-GEN-DVD-J2K", _J2K, J2K_LOSSLESS, J2K, _DVD_EXTRAS),
        _profile("STD-GEN-USB-J2K", _J2K, J2K_LOSSLESS, J2K, _DVD_EXTRAS),
        _profile("general", (), EXPLICIT, None),
    )
}


def profile(name: str) -> Profile:
    """The profile called ``name`` (any case). Raises UsageError naming the profiles, with
    the nearest one when ``name`` looks like a typo."""
    wanted = name.strip().upper()
    for key, value in PROFILES.items():
        if key.upper() == wanted:
            return value
    from difflib import get_close_matches

    names = list(PROFILES)
    close = get_close_matches(wanted, [n.upper() for n in names], n=1, cutoff=0.6)
    maybe = ""
    if close:
        maybe = "; did you mean " + next(n for n in names if n.upper() == close[0]) + "?"
    raise UsageError(f"unknown media profile {name!r}{maybe}",
                     hint="choose one of: " + ", ".join(names), setting="profile")
