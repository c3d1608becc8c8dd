"""convert: `dcmtool convert` (one process, and --jobs 2) beside DCMTK's and GDCM's
converters, which take one file per process: their rows are a shell loop over the folder.

Every run writes into an empty folder (the previous run's output is set aside, untimed); after
it the bench checks that every file is there, in the transfer syntax asked for.
"""

from __future__ import annotations

import functools
import os
import shlex
import struct
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.fixture import DataSet, Fixture, FreshDir, ServerError, Tools
from bench.harness import FILES_PER_S, Program, Target, case

CONVERT_FILES = 200
SYNTAXES = {
    "explicit": "1.2.840.10008.1.2.1",
    "jpeg-lossless": "1.2.840.10008.1.2.4.70",  # process 14, selection value 1
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "rle": "1.2.840.10008.1.2.5",
    "j2k-lossless": "1.2.840.10008.1.2.4.90",
}
# Value representations with a 4-byte length in explicit VR (PS3.5 7.1.2).
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
            b"UT", b"UV"}


def transfer_syntax_of(path: Path) -> str:
    """The Transfer Syntax UID (0002,0010) in a DICOM file's meta information."""
    with open(path, "rb") as f:
        head = f.read(8192)
    if head[128:132] != b"DICM":
        raise ServerError(f"{path.name}: not a DICOM file (no DICM prefix)")
    pos = 132
    while pos + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, pos)
        if group != 0x0002:
            break
        vr = head[pos + 4:pos + 6]
        if vr in LONG_VRS:
            (length,), start = struct.unpack_from("<I", head, pos + 8), pos + 12
        else:
            (length,), start = struct.unpack_from("<H", head, pos + 6), pos + 8
        if element == 0x0010:
            return head[start:start + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos = start + length
    raise ServerError(f"{path.name}: no Transfer Syntax UID in its meta information")


class OutputDir(FreshDir):
    """A row's output folder, empty before each run (see FreshDir); ``check()`` (after each
    run) wants ``expected`` files, each in the transfer syntax ``uid``, and with
    ``pixels_like`` (a folder of native originals) pixel data equal to the original's last
    bytes (native output: the pixel data comes last)."""

    def __init__(self, fx: Fixture, name: str, expected: int, uid: str, keep_used: bool,
                 pixels_like: Path | None = None, pixel_bytes: int = 0) -> None:
        super().__init__(fx, f"convert-{name}-", keep_used)
        self.expected = expected
        self.uid = uid
        self.pixels_like = pixels_like
        self.pixel_bytes = pixel_bytes

    def check(self) -> None:
        files = sorted(p for p in self.path.iterdir() if p.is_file())
        if len(files) != self.expected:
            raise ServerError(f"wrote {len(files)} files of {self.expected}")
        for path in files:
            found = transfer_syntax_of(path)
            if found != self.uid:
                raise ServerError(f"{path.name}: transfer syntax {found}, not {self.uid}")
            if self.pixels_like is not None:
                original = self.pixels_like / path.name
                if tail_bytes(path, self.pixel_bytes) != tail_bytes(original, self.pixel_bytes):
                    raise ServerError(f"{path.name}: pixel data differs from the original's")


def tail_bytes(path: Path, count: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(-count, os.SEEK_END)
        return f.read(count)


def per_file(program: list[str], source: Path, out: Path) -> list[str]:
    """A shell loop running ``program IN OUT`` once per file of ``source``: how DCMTK's and
    GDCM's converters do a folder. Stops at the first failure."""
    script = f'for f in "$1"/*; do {shlex.join(program)} "$f" "$2/${{f##*/}}" || exit 1; done'
    return ["/bin/sh", "-c", script, "sh", str(source), str(out)]


def ct_body(fx: Fixture) -> DataSet:
    """The codec cases' originals: 200 CT slices of make_data.py's synthetic chest (512x512,
    16 bit signed), explicit VR little endian; made once per bench run."""
    fx.require_free(2**30, "the CT slices and their converted copies")
    return fx.shared_data(("ct-body", "--count", str(CONVERT_FILES)))


def ct_body_jpeg_lossless(tools: Tools, fx: Fixture) -> DataSet:
    """The same slices as JPEG lossless (process 14, SV1), made by DCMTK dcmcjpeg (untimed,
    once per bench run), so that dcmtool decodes another encoder's files."""
    dcmcjpeg = tools.dcmtk("dcmcjpeg")
    originals = ct_body(fx)

    def make(out: Path) -> DataSet:
        sources = sorted(p for p in originals.dir.iterdir() if p.is_file())

        def encode(path: Path) -> int:
            subprocess.run([dcmcjpeg, "+e1", str(path), str(out / path.name)], check=True,
                           capture_output=True, timeout=60, env=tools.base_env)
            return (out / path.name).stat().st_size

        try:
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
                sizes = list(pool.map(encode, sources))
        except (OSError, subprocess.SubprocessError) as exc:
            raise ServerError(f"dcmcjpeg could not make the JPEG lossless input: {exc}") from None
        return DataSet(out, len(sizes), sum(sizes))

    return fx.shared_data(("ct-body", "--count", str(CONVERT_FILES), "dcmcjpeg +e1"), make)


def convert_rows(tools: Tools, fx: Fixture, data: DataSet, ts: str,
                 dcmtk: tuple[str, list[str]] | None, gdcm: tuple[str, list[str]],
                 reference: str, pixels_like: Path | None = None) -> list[Program]:
    """dcmtool convert with one process and with --jobs 2, then DCMTK's converter (``dcmtk``:
    label and command before IN OUT) and gdcmconv, all from ``data`` to ``ts``. The targets
    (from the issue): dcmtool >= 0.6x the ``reference`` tool ("dcmtk" or "gdcm") with one
    process, >= 1.0x with --jobs 2; the other tool's row is a peer without a target."""
    uid = SYNTAXES[ts]
    peers = [("dcmtk", *dcmtk)] if dcmtk is not None else []
    peers.append(("gdcm", *gdcm))
    labels = {1: "dcmtool convert", 2: "dcmtool convert --jobs 2"}
    rows_count = 2 + len(peers)
    # Keep every run's output until the case ends (see OutputDir) if it fits.
    keep = fx.has_room(fx.rounds * rows_count * data.nbytes * (2 if ts == "explicit" else 1))
    pixel_bytes = 512 * 512 * 2

    def row(label: str, argv_for: Callable[[Path], list[str]], role: str,
            name: str) -> Program:
        out = OutputDir(fx, name, data.files, uid, keep, pixels_like, pixel_bytes)
        return Program(label, argv_for(out.path), role=role, work=data.files,
                       before_each=out.prepare, after_each=out.check)

    def dcmtool(jobs: int) -> Callable[[Path], list[str]]:
        extra = ["--jobs", str(jobs)] if jobs > 1 else []
        return lambda out: [*tools.dcmtool, "convert", str(data.dir), "--ts", ts, "-o",
                            str(out), *extra]

    rows = [row(labels[1], dcmtool(1), "dcmtool", "dcmtool"),
            row(labels[2], dcmtool(2), "variant", "dcmtool-jobs2")]
    for name, label, program in peers:
        peer = row(label, functools.partial(per_file, program, data.dir), "peer", name)
        if name == reference:
            peer.target = Target.ratio(">=", 0.6)
            rows[1].target = Target.versus(">=", 1.0, label)
        rows.append(peer)
    return rows


@case("convert-decompress-jpeg", FILES_PER_S, f"{CONVERT_FILES} CT slices (512x512, 16 bit "
      "signed) from JPEG lossless SV1 to explicit VR little endian: dcmtool convert (1 and 2 "
      "jobs) / DCMTK dcmdjpeg / GDCM gdcmconv --raw, one process per file", runs=5, warmups=1)
def convert_decompress_jpeg_case(tools: Tools, fx: Fixture) -> list[Program]:
    dcmdjpeg, gdcmconv = tools.dcmtk("dcmdjpeg"), tools.gdcm("gdcmconv")
    data = ct_body_jpeg_lossless(tools, fx)
    # The native output's pixel data must be the original's, byte for byte.
    originals = None if fx.listing else ct_body(fx).dir
    return convert_rows(tools, fx, data, "explicit", ("DCMTK dcmdjpeg", [dcmdjpeg]),
                        ("GDCM gdcmconv --raw", [gdcmconv, "--raw"]), "dcmtk",
                        pixels_like=originals)


@case("convert-jpeg-lossless", FILES_PER_S, f"{CONVERT_FILES} CT slices (512x512, 16 bit "
      "signed) from explicit VR little endian to JPEG lossless SV1: dcmtool convert (1 and 2 "
      "jobs) / DCMTK dcmcjpeg +e1 / GDCM gdcmconv --jpeg, one process per file", runs=5,
      warmups=1)
def convert_jpeg_lossless_case(tools: Tools, fx: Fixture) -> list[Program]:
    dcmcjpeg, gdcmconv = tools.dcmtk("dcmcjpeg"), tools.gdcm("gdcmconv")
    return convert_rows(tools, fx, ct_body(fx), "jpeg-lossless",
                        ("DCMTK dcmcjpeg +e1", [dcmcjpeg, "+e1"]),
                        ("GDCM gdcmconv --jpeg", [gdcmconv, "--jpeg"]), "dcmtk")


@case("convert-jpeg-ls", FILES_PER_S, f"{CONVERT_FILES} CT slices (512x512, 16 bit signed) "
      "from explicit VR little endian to JPEG-LS lossless: dcmtool convert (1 and 2 jobs) / "
      "DCMTK dcmcjpls / GDCM gdcmconv --jpegls, one process per file", runs=5, warmups=1)
def convert_jpeg_ls_case(tools: Tools, fx: Fixture) -> list[Program]:
    dcmcjpls, gdcmconv = tools.dcmtk("dcmcjpls"), tools.gdcm("gdcmconv")
    return convert_rows(tools, fx, ct_body(fx), "jpeg-ls", ("DCMTK dcmcjpls", [dcmcjpls]),
                        ("GDCM gdcmconv --jpegls", [gdcmconv, "--jpegls"]), "dcmtk")


@case("convert-rle", FILES_PER_S, f"{CONVERT_FILES} CT slices (512x512, 16 bit signed) from "
      "explicit VR little endian to RLE lossless: dcmtool convert (1 and 2 jobs) / DCMTK "
      "dcmcrle / GDCM gdcmconv --rle, one process per file", runs=5, warmups=1)
def convert_rle_case(tools: Tools, fx: Fixture) -> list[Program]:
    dcmcrle, gdcmconv = tools.dcmtk("dcmcrle"), tools.gdcm("gdcmconv")
    return convert_rows(tools, fx, ct_body(fx), "rle", ("DCMTK dcmcrle", [dcmcrle]),
                        ("GDCM gdcmconv --rle", [gdcmconv, "--rle"]), "dcmtk")


@case("convert-j2k", FILES_PER_S, f"{CONVERT_FILES} CT slices (512x512, 16 bit signed) from "
      "explicit VR little endian to JPEG 2000 lossless: dcmtool convert (1 and 2 jobs) / GDCM "
      "gdcmconv --j2k (DCMTK has no JPEG 2000 codec), one process per file", runs=5, warmups=1)
def convert_j2k_case(tools: Tools, fx: Fixture) -> list[Program]:
    gdcmconv = tools.gdcm("gdcmconv")
    return convert_rows(tools, fx, ct_body(fx), "j2k-lossless", None,
                        ("GDCM gdcmconv --j2k", [gdcmconv, "--j2k"]), "gdcm")

