"""Transfer-syntax transcoding: the core that convert, store, serve and dicomdir share.

Decoding goes through pydicom's pixel plugins (pylibjpeg: libjpeg, openjpeg, rle). Encoding
uses pydicom's encoders where it has one (RLE, JPEG-LS through pyjpegls, JPEG 2000 through
openjpeg) and imagecodecs' libjpeg-turbo for the JPEG family, which pydicom cannot encode.
Images of a few pixels, which neither standard forbids, get their own frame encoders: see
``_encode_small_jpeg_ls_frame`` and ``_encode_small_j2k_frame``.

The rules follow PS3.5 section 8 and what DCMTK's dcmcjpeg/dcmdjpeg do:

* colour is encoded from RGB: YBR_FULL/YBR_FULL_422 sources are converted first; JPEG
  baseline stores YBR_FULL_422, JPEG 2000 YBR_RCT (lossless) or YBR_ICT (lossy), the lossless
  JPEG family and JPEG-LS keep RGB; planar configuration becomes 0;
* signed pixels and bits stored below bits allocated are encoded as their stored bits;
* every frame is one fragment behind a basic offset table;
* lossy output sets Lossy Image Compression "01", ratio and method, Derivation Description
  and Code Sequence, ImageType DERIVED, and gets a new SOP Instance UID that references the
  original in the Source Image Sequence, unless the caller keeps the UID;
* a syntax is lossy only when the caller names a lossy one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dcmtool.dicom.syntaxes import (
    TRANSFER_SYNTAXES,
    TransferSyntax,
    describe,
    lookup,
    why_unknown,
)
from dcmtool.errors import DcmtoolError, UsageError

EXPLICIT = "1.2.840.10008.1.2.1"
IMPLICIT = "1.2.840.10008.1.2"
BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
UNCOMPRESSED = frozenset({IMPLICIT, EXPLICIT, BIG_ENDIAN, DEFLATED})

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
JPEG_LOSSLESS_P14 = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS = "1.2.840.10008.1.2.4.80"
JPEG_LS_NEAR = "1.2.840.10008.1.2.4.81"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
RLE = "1.2.840.10008.1.2.5"

#: Encoded by imagecodecs (libjpeg-turbo); the rest of the compressed targets by pydicom.
JPEG_FAMILY = frozenset({JPEG_BASELINE, JPEG_EXTENDED, JPEG_LOSSLESS_P14, JPEG_LOSSLESS_SV1})

#: Lossy Image Compression Method (0028,2114) defined terms, PS3.3 C.7.6.1.1.5.1.
LOSSY_METHODS = {
    JPEG_BASELINE: "ISO_10918_1",
    JPEG_EXTENDED: "ISO_10918_1",
    JPEG_LS_NEAR: "ISO_14495_1",
    J2K: "ISO_15444_1",
}

#: Pixel data elements whose words change order with the byte order of the syntax.
_SWAPPED_VRS = {"OW": 2, "OL": 4, "OF": 4, "OD": 8, "OV": 8}


class TranscodeError(DcmtoolError):
    """One data set cannot be converted; the message says which syntax and why."""


@dataclass(frozen=True)
class EncodeOptions:
    """Tuning for the lossy syntaxes, and whether lossy output keeps its SOP Instance UID."""

    quality: int = 90  # JPEG baseline/extended, 1-100
    ratio: float = 10.0  # JPEG 2000 lossy compression ratio
    near: int = 2  # JPEG-LS near-lossless maximum error
    keep_uid: bool = False


@dataclass(frozen=True)
class Codec:
    """What the installed plugins can do with one transfer syntax."""

    syntax: TransferSyntax
    decode: bool
    encode: bool
    decoders: tuple[str, ...]
    encoders: tuple[str, ...]


def codecs() -> list[Codec]:
    """Decode and encode support for every known transfer syntax, with the plugins' names."""
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.pixels.encoders.base import get_encoder

    rows: list[Codec] = []
    for ts in TRANSFER_SYNTAXES:
        if ts.uid in UNCOMPRESSED:
            rows.append(Codec(ts, True, True, ("pydicom",), ("pydicom",)))
            continue
        decoders: tuple[str, ...] = ()
        try:
            decoders = tuple(get_decoder(ts.uid).available_plugins)
        except (NotImplementedError, ValueError):
            pass
        encoders: tuple[str, ...] = ()
        if ts.uid in JPEG_FAMILY:
            encoders = ("imagecodecs",) if load_imagecodecs() is not None else ()
        else:
            try:
                encoders = tuple(get_encoder(ts.uid).available_plugins)
            except (NotImplementedError, ValueError):
                pass
        rows.append(Codec(ts, bool(decoders), bool(encoders), decoders, encoders))
    return rows


def can_encode(uid: str) -> bool:
    return any(c.syntax.uid == uid and c.encode for c in codecs())


def target_syntax(name: str) -> TransferSyntax:
    """The syntax a user named, checked to be one this installation can write."""
    ts = lookup(name)
    if ts is None:
        names = ", ".join(c.syntax.name for c in codecs() if c.encode)
        raise UsageError(why_unknown(name), hint=f"choose one of: {names}")
    if not can_encode(ts.uid):
        names = ", ".join(c.syntax.name for c in codecs() if c.encode)
        raise UsageError(f"cannot encode {ts.name} ({ts.title}) with the installed plugins",
                         hint=f"choose one of: {names}")
    return ts


def transcode(ds: Any, target_uid: str, options: EncodeOptions | None = None) -> Any:
    """Convert ``ds`` (with file_meta) to ``target_uid`` in place and return it.

    Raises TranscodeError naming the source and target syntax when the pixel data cannot be
    decoded or cannot be represented in the target.
    """
    options = options or EncodeOptions()
    source_uid = str(ds.file_meta.TransferSyntaxUID)
    _parse_all(ds)  # also for a copy in the same syntax: write_dataset relies on it
    if source_uid == target_uid:
        return ds
    target = lookup(target_uid)
    if target is None:
        raise TranscodeError(f"unknown target transfer syntax {target_uid}")
    has_pixels = "PixelData" in ds
    source_lossy = bool(lookup(source_uid) and lookup(source_uid).lossy)  # type: ignore[union-attr]
    if has_pixels and source_uid not in UNCOMPRESSED:
        _decompress(ds, source_uid)
    elif source_uid == BIG_ENDIAN:
        _swap_words(ds)
        ds.file_meta.TransferSyntaxUID = EXPLICIT  # the words are little endian now
    if source_lossy and ds.get("LossyImageCompression") != "01":
        ds.LossyImageCompression = "01"  # once lossy, always lossy (PS3.3 C.7.6.1.1.5)

    if target_uid in UNCOMPRESSED:
        if target_uid == BIG_ENDIAN:
            _swap_words(ds)
        ds.file_meta.TransferSyntaxUID = target_uid
        _declare_encoding(ds, target_uid)
        return ds
    if not has_pixels:
        raise TranscodeError(f"cannot write {target.name}: the data set has no Pixel Data "
                             "(compressed syntaxes are for images)")
    _check_profile(ds, target)
    before = len(ds.PixelData)
    if target_uid in JPEG_FAMILY:
        _encode_jpeg(ds, target_uid, options)
    else:
        _encode_pydicom(ds, target_uid, options)
    if target.lossy:
        after = sum(len(f) for f in _fragments(ds))
        _mark_lossy(ds, target_uid, before / max(after, 1), options.keep_uid)
    _declare_encoding(ds, target_uid)
    return ds


def _declare_encoding(ds: Any, target_uid: str) -> None:
    """Make the data set's encoding the target's, as pynetdicom and pydicom's writer check.

    Safe because ``_parse_all`` left no raw element that still depends on the old one.
    """
    implicit = target_uid == IMPLICIT
    ds.set_original_encoding(implicit, target_uid != BIG_ENDIAN, ds.original_character_set)


def _parse_all(ds: Any) -> None:
    """Parse every raw element, so that a file whose VRs disagree with its syntax (implicit
    data under an explicit UID) gets dictionary VRs and can be written in another syntax."""
    for _ in ds.iterall():
        pass


#: Syntaxes whose every frame ends with an EOI/EOC marker (FFD9); RLE has none.
_ENDS_WITH_EOI = JPEG_FAMILY | {JPEG_LS, JPEG_LS_NEAR, J2K_LOSSLESS, J2K,
                                "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202",
                                "1.2.840.10008.1.2.4.203"}


def _check_codestreams(ds: Any, source_uid: str) -> None:
    """Refuse truncated codestreams: some decoders return partial images without an error."""
    from pydicom.encaps import generate_frames

    if source_uid not in _ENDS_WITH_EOI:
        return
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        for index, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=frames)):
            tail = bytes(frame[-8:]).rstrip(b"\x00")  # even-length padding: 00, some use FF
            if not (tail.endswith(b"\xff\xd9") or tail.endswith(b"\xff\xd9\xff")):
                raise TranscodeError(
                    f"cannot decode {describe(source_uid)} pixel data: frame {index + 1} is "
                    "truncated (no end-of-image marker)")
    except (ValueError, EOFError, KeyError) as exc:
        raise TranscodeError(f"cannot decode {describe(source_uid)} pixel data: "
                             f"{' '.join(str(exc).split())}") from None


def _decompress(ds: Any, source_uid: str) -> None:
    _check_codestreams(ds, source_uid)
    try:
        # The instance stays the same one (pydicom would give it a new UID by default).
        ds.decompress(generate_instance_uid=False, as_rgb=True)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # Rust codecs panic with BaseException subclasses
        detail = " ".join(str(exc).split())  # one line: codecs report several
        raise TranscodeError(f"cannot decode {describe(source_uid)} pixel data: {detail}") \
            from None
    if "PixelData" in ds and ds.get("BitsAllocated", 8) > 8:
        ds["PixelData"].VR = "OW"


def _swap_words(ds: Any) -> None:
    """Byte-swap OW/OL/OF/OD/OV values: pydicom keeps them as read, in the file's order.

    Pixel Data swaps by pixel cell (16 or 32 bits); 8-bit pixels in OW swap as 16-bit words.
    """
    import numpy as np

    def visit(dataset: Any) -> None:
        for elem in dataset:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.tag == 0x7FE00010 and elem.value and not elem.is_undefined_length:
                allocated = int(dataset.get("BitsAllocated", 16))
                if allocated <= 8 and elem.VR != "OW":
                    continue  # 8-bit pixels in OB are bytes
                width = max(2, allocated // 8)
                if allocated > 8:
                    elem.VR = "OW"  # resolve "OB or OW" of data sets built in memory
                _swap(elem, width)
            elif elem.VR in _SWAPPED_VRS and elem.value and not elem.is_undefined_length:
                _swap(elem, _SWAPPED_VRS[elem.VR])

    def _swap(elem: Any, width: int) -> None:
        raw = bytes(elem.value)
        usable = len(raw) - len(raw) % width
        swapped = np.frombuffer(raw[:usable], f">u{width}").astype(f"<u{width}")
        elem.value = swapped.tobytes() + raw[usable:]

    visit(ds)


def _check_profile(ds: Any, target: TransferSyntax) -> None:
    """Refuse, in one line, an image that PS3.5 section 8.2 does not allow in ``target``."""
    from pydicom.pixels.encoders.base import ENCODING_PROFILES

    profiles = ENCODING_PROFILES.get(target.uid)  # type: ignore[call-overload]
    if not profiles:
        return
    samples = int(ds.get("SamplesPerPixel", 1))
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if samples == 3 and photometric in ("YBR_FULL", "YBR_FULL_422", "RGB"):
        photometric = "RGB"  # encoded from RGB; the encoder sets the final value
    representation = int(ds.get("PixelRepresentation", 0))
    allocated = int(ds.BitsAllocated)
    stored = int(ds.get("BitsStored", allocated))
    for pi, spp, reps, allocs, stores in profiles:
        if pi in (photometric, "YBR_FULL_422" if photometric == "RGB" else "",
                  "YBR_RCT" if photometric == "RGB" else "",
                  "YBR_ICT" if photometric == "RGB" else "") and spp == samples \
                and representation in reps and allocated in allocs and stored in stores:
            return
    kind = f"{stored}-bit{' signed' if representation else ''} {photometric}"
    if samples > 1:
        kind += f" ({samples} samples)"
    raise TranscodeError(f"cannot encode {kind} pixels (bits allocated {allocated}) as "
                         f"{target.name}: PS3.5 section 8.2 does not allow them in it",
                         hint="choose another syntax, such as explicit or j2k-lossless")


def _rgb_frames(ds: Any) -> Any:
    """The pixel array, colour as interleaved RGB; updates the Image Pixel module to match."""
    from pydicom.pixels.processing import convert_color_space

    arr = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if int(ds.get("SamplesPerPixel", 1)) == 3:
        if photometric in ("YBR_FULL", "YBR_FULL_422"):
            arr = convert_color_space(arr, "YBR_FULL", "RGB")
            ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    return arr


def _encode_pydicom(ds: Any, target_uid: str, options: EncodeOptions) -> None:
    arr = _rgb_frames(ds)
    kwargs: dict[str, Any] = {}
    if target_uid in (J2K_LOSSLESS, J2K) and ds.get("PhotometricInterpretation") == "RGB":
        # The reversible/irreversible colour transform is what makes colour J2K small.
        ds.PhotometricInterpretation = "YBR_RCT" if target_uid == J2K_LOSSLESS else "YBR_ICT"
    small_j2k = target_uid in (J2K_LOSSLESS, J2K) and min(int(ds.Rows), int(ds.Columns)) < 32
    if small_j2k and target_uid == J2K:
        # pylibjpeg-openjpeg always asks for six resolution levels, which need 32 pixels
        # (2**5) each way; imagecodecs can use fewer, but sets lossy quality by PSNR, not by
        # the compression ratio that ``options.ratio`` promises.
        raise TranscodeError(f"cannot encode a {ds.Rows}x{ds.Columns} image as "
                             f"{describe(target_uid)}: its encoder (pylibjpeg-openjpeg) "
                             "needs at least 32x32 pixels",
                             hint=f"choose {describe(J2K_LOSSLESS)}: an image this small "
                                  "gains nothing from lossy compression")
    if target_uid == J2K:
        kwargs["j2k_cr"] = [options.ratio]
    if target_uid == JPEG_LS_NEAR:
        kwargs["jls_error"] = options.near
    try:
        if small_j2k:
            _encode_frames(ds, arr, target_uid, "imagecodecs", _encode_small_j2k_frame)
        elif target_uid in (JPEG_LS, JPEG_LS_NEAR) and _frame_bytes(ds) < _CHARLS_MARGIN:
            _encode_frames(ds, arr, target_uid, "pyjpegls", _encode_small_jpeg_ls_frame,
                           **kwargs)
        else:
            ds.compress(target_uid, arr, generate_instance_uid=False, **kwargs)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # Rust codecs panic with BaseException subclasses
        detail = " ".join(str(exc).split())
        raise TranscodeError(f"cannot encode as {describe(target_uid)}: {detail}") from None


#: What CharLS itself reserves beyond the raw frame for markers and worst-case expansion
#: (its encoder's estimated destination size is the frame's bytes plus 1024).
_CHARLS_MARGIN = 1024


def _frame_bytes(ds: Any) -> int:
    """One frame's size as the JPEG-LS encoder sees it: bits stored rounded up to bytes."""
    stored = int(ds.get("BitsStored", ds.BitsAllocated))
    return int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * \
        ((stored + 7) // 8)


def _encode_frames(ds: Any, arr: Any, target_uid: str, name: str, encode_frame: Any,
                   **kwargs: Any) -> None:
    """``ds.compress`` with our own frame encoder (a pydicom plugin function, called ``name``
    in errors), for the images pydicom's plugins refuse.

    pydicom's runner still checks the array against the Image Pixel module and cuts it into
    frames sized for Bits Stored, exactly as for its own plugins.
    """
    from pydicom.pixels.encoders.base import EncodeRunner
    from pydicom.pixels.utils import as_pixel_options
    from pydicom.uid import UID

    runner = EncodeRunner(UID(target_uid))
    runner.set_source(arr)
    runner.set_options(**as_pixel_options(ds, **kwargs))
    runner.set_encoders({name: encode_frame})
    runner.validate()
    frames = runner.number_of_frames
    encoded = [runner.encode(None)] if frames == 1 else \
        [runner.encode(index) for index in range(frames)]
    _set_encapsulated(ds, encoded, target_uid)


def _encode_small_jpeg_ls_frame(src: bytes, runner: Any) -> bytes:
    """One JPEG-LS frame through pyjpegls' CharLS core, with room for the output.

    pyjpegls sizes its output buffer at twice the raw frame, which cannot hold the ~40 bytes
    of markers of a frame of a few pixels ("The destination buffer is too small"), and has no
    option to change it. Its core sizes the buffer from the source it is given and reads only
    rows x columns x samples from it, so trailing zeros make the room; the codestream is the
    one pyjpegls would write (P = Bits Stored, colour by pixel, no SPIFF header).
    """
    import importlib

    charls = importlib.import_module("_CharLS")  # pyjpegls' extension module
    samples = int(runner.samples_per_pixel)
    return bytes(charls._encode(
        bytes(src) + bytes(_CHARLS_MARGIN), int(runner.get_option("jls_error", 0)),
        2 if samples > 1 else 0,  # interleave by pixel: _rgb_frames made planar config 0
        int(runner.rows), int(runner.columns), samples, int(runner.bits_stored)))


def _encode_small_j2k_frame(src: bytes, runner: Any) -> bytes:
    """One lossless JPEG 2000 frame with as many resolution levels as the image allows.

    ISO 15444-1 lets an image of any size have fewer resolution levels, but openjpeg refuses
    more than a tile's size allows (2**(levels - 1) <= min(rows, columns)), and
    pylibjpeg-openjpeg always asks for six, so it refuses anything under 32x32. imagecodecs
    drives the same openjpeg and takes the number of resolutions as an option.
    """
    import numpy as np

    try:
        import imagecodecs
    except ImportError:
        raise RuntimeError("imagecodecs is not installed") from None
    if not imagecodecs.JPEG2K.available:
        raise RuntimeError("imagecodecs was built without openjpeg")
    if int(runner.bits_stored) > 24:
        # As pylibjpeg-openjpeg: openjpeg's reversible path silently loses bits above ~26.
        raise ValueError(f"Invalid 'bits_stored' value '{runner.bits_stored}', must be in "
                         "the range [1, 24]")
    rows, columns, samples = int(runner.rows), int(runner.columns), int(runner.samples_per_pixel)
    pixels = rows * columns * samples
    kind = "i" if int(runner.pixel_representation) else "u"
    frame = np.frombuffer(src, f"<{kind}{len(src) // pixels}")
    frame = frame.reshape((rows, columns, samples) if samples > 1 else (rows, columns))
    photometric = str(runner.photometric_interpretation)
    return bytes(imagecodecs.jpeg2k_encode(
        frame, codecformat="J2K",  # PS3.5 A.4.4: the codestream, no JP2 header
        reversible=True, bitspersample=int(runner.bits_stored),
        resolutions=min(6, min(rows, columns).bit_length()),
        mct=photometric in ("YBR_RCT", "YBR_ICT")))


def _set_encapsulated(ds: Any, encoded: list[bytes], target_uid: str) -> None:
    """Pixel Data as one fragment per frame behind a basic offset table (PS3.5 A.4)."""
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate(encoded)
    elem = ds["PixelData"]
    elem.VR = "OB"
    elem.is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = target_uid
    ds._pixel_array = None
    ds._pixel_id = {}


def _encode_jpeg(ds: Any, target_uid: str, options: EncodeOptions) -> None:
    """The JPEG family with libjpeg-turbo: lossless SV1/P14, baseline (8-bit), extended (12)."""
    import numpy as np

    codecs_module = load_imagecodecs()
    if codecs_module is None:
        raise TranscodeError(f"cannot encode as {describe(target_uid)}: imagecodecs is not "
                             "installed")
    samples = int(ds.get("SamplesPerPixel", 1))
    bits_allocated = int(ds.BitsAllocated)
    bits_stored = int(ds.get("BitsStored", bits_allocated))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    lossless = target_uid in (JPEG_LOSSLESS_SV1, JPEG_LOSSLESS_P14)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR" and not lossless:
        raise TranscodeError(f"cannot encode PALETTE COLOR as {describe(target_uid)}: lossy "
                             "JPEG needs greyscale or RGB")
    if not lossless:
        precision = 8 if target_uid == JPEG_BASELINE else (8 if bits_stored <= 8 else 12)
        if bits_stored > precision or signed or (samples == 3 and precision != 8):
            raise TranscodeError(
                f"cannot encode {bits_stored}-bit {'signed ' if signed else ''}"
                f"{photometric} as {describe(target_uid)} (it holds "
                f"{'8' if target_uid == JPEG_BASELINE else '8 or 12'}-bit unsigned pixels)",
                hint="choose a lossless syntax or j2k-lossy for this image")
    elif bits_stored > 16 or bits_allocated > 16:
        raise TranscodeError(f"cannot encode {bits_stored}-bit pixels as "
                             f"{describe(target_uid)} (at most 16 bits)")
    arr = _rgb_frames(ds)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        arr = arr[np.newaxis]
    unsigned = np.uint8 if bits_allocated <= 8 else np.uint16
    encoded: list[bytes] = []
    try:
        for frame in arr:
            if lossless:
                # JPEG has no sign: store the raw bits at the allocated precision, as DCMTK
                # and GDCM do; decoders restore the sign from Pixel Representation. The
                # precision is always given: imagecodecs would label 16-bit data as 12-bit.
                data = frame.view(unsigned) if frame.dtype.kind == "i" else \
                    frame.astype(unsigned, copy=False)
                encoded.append(bytes(codecs_module.jpeg8_encode(
                    # Predictor 1 is SV1's; process 14 allows it too.
                    np.ascontiguousarray(data), lossless=True, predictor=1,
                    bitspersample=8 if bits_allocated <= 8 else 16,
                    colorspace="RGB" if samples == 3 else None,
                    outcolorspace="RGB" if samples == 3 else None)))
            elif samples == 3:
                encoded.append(bytes(codecs_module.jpeg8_encode(
                    np.ascontiguousarray(frame.astype(np.uint8)), level=options.quality,
                    colorspace="RGB", outcolorspace="YCBCR", subsampling="422")))
            else:
                data = frame.astype(unsigned) & ((1 << precision) - 1)
                encoded.append(bytes(codecs_module.jpeg8_encode(
                    np.ascontiguousarray(data), level=options.quality,
                    bitspersample=precision)))
    except Exception as exc:
        detail = " ".join(str(exc).split())
        raise TranscodeError(f"cannot encode as {describe(target_uid)}: {detail}") from None
    _set_encapsulated(ds, encoded, target_uid)
    if samples == 3 and not lossless:
        ds.PhotometricInterpretation = "YBR_FULL_422"


def _fragments(ds: Any) -> list[bytes]:
    from pydicom.encaps import generate_fragments

    return list(generate_fragments(ds.PixelData))


def _mark_lossy(ds: Any, target_uid: str, ratio: float, keep_uid: bool) -> None:
    """What PS3.3 C.7.6.1.1.5 and DCMTK's lossy codecs record about a lossy step."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    method = LOSSY_METHODS.get(target_uid, "")
    ds.LossyImageCompression = "01"
    ratios = [str(r) for r in _multi(ds.get("LossyImageCompressionRatio"))]
    methods = [str(m) for m in _multi(ds.get("LossyImageCompressionMethod"))]
    ds.LossyImageCompressionRatio = [*ratios, f"{ratio:.2f}"[:16]]
    ds.LossyImageCompressionMethod = [*methods, method]
    if "ImageType" in ds:
        image_type = list(_multi(ds.ImageType)) or ["DERIVED"]
        image_type[0] = "DERIVED"
        ds.ImageType = image_type
    description = f"Lossy compression with {describe(target_uid)}, ratio {ratio:.2f}"
    previous = str(ds.get("DerivationDescription", ""))
    ds.DerivationDescription = (f"{previous}; {description}" if previous else description)[:1024]
    code = Dataset()
    code.CodeValue = "113040"
    code.CodingSchemeDesignator = "DCM"
    code.CodeMeaning = "Lossy Compression"
    sequence = list(ds.get("DerivationCodeSequence", []))
    ds.DerivationCodeSequence = [*sequence, code]
    if keep_uid:
        return
    source = Dataset()
    source.ReferencedSOPClassUID = ds.SOPClassUID
    source.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ds.SourceImageSequence = [*list(ds.get("SourceImageSequence", [])), source]
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def _multi(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


_IMAGECODECS: Any = False


def load_imagecodecs() -> Any:
    """imagecodecs when it is installed with a JPEG 8 codec; ``None`` otherwise."""
    global _IMAGECODECS
    if _IMAGECODECS is False:
        try:
            import imagecodecs

            _IMAGECODECS = imagecodecs if imagecodecs.JPEG8.available else None
        except ImportError:
            _IMAGECODECS = None
    return _IMAGECODECS
