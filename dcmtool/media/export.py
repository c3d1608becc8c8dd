"""``dicomdir create`` and ``add``: copy instances into a file set and write its DICOMDIR.

Every input is read first (``scan``) and the whole set is checked before anything is
written: inconsistent patients, studies or series, duplicate instances that differ, missing
Type 1 keys (invented on request, as dcmmkdir +I does) and truncated files are refused
together, in one message naming the files. Then each file is copied under a PS3.10 file ID
(``DICOM/PAT00001/STU00001/SER00001/IMG00001``): a file whose syntax the profile allows is
copied as its bytes behind a new File Meta (no decoding); the others, and every file that is
re-identified, go through the convert core. The DICOMDIR is written last, so a file set
without one was interrupted. The inputs are only ever read.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from dcmtool.dicom.files import FILE_MODE
from dcmtool.dicom.syntaxes import describe
from dcmtool.dicom.transcode import EXPLICIT, UNCOMPRESSED
from dcmtool.errors import MediaError, UsageError
from dcmtool.media import records
from dcmtool.media.directory import Node, fileset_identity, read_tree, write_dicomdir
from dcmtool.media.plan import Leaf, Plan, plan
from dcmtool.media.profiles import Profile
from dcmtool.media.records import Value
from dcmtool.media.scan import HEAD, NotDicom, Scanned, input_files, scan


@dataclass
class ExportOptions:
    profile: Profile
    lossy: bool = False  # only then are uncompressed images encoded lossy
    invent: bool = False  # fill missing Type 1 record keys, as dcmmkdir +I does
    assignments: Sequence[str] = ()  # "Keyword=Value" set in the copies
    new_uids: bool = False  # new Study/Series/SOP Instance UIDs, consistent across the set
    force: bool = False  # write into an OUT that is not empty


@dataclass
class ExportedFile:
    source: Path
    file_id: tuple[str, ...]
    sop_class_uid: str
    sop_instance_uid: str
    source_syntax: str
    syntax: str
    bytes_written: int


@dataclass
class ExportSummary:
    patients: int
    studies: int
    series: int
    instances: int
    bytes_written: int  # the copies and the DICOMDIR
    seconds: float
    converted: dict[tuple[str, str], int]  # (from syntax name, to syntax name) -> files
    invented: list[str]  # "PAT00001 PatientID: invented 'DCMTOOLPAT000001'"
    skipped: list[Path]  # not DICOM
    files: list[ExportedFile]
    #: Inputs not copied because another input (or, for add, the file set) holds the same
    #: instance with the same content.
    duplicates: list[Path] = field(default_factory=list)


FileProgress = Callable[[Path, int, int], None]  # (source, done, total)


def create(out: Path, inputs: Sequence[str], options: ExportOptions, *,
           stdin: TextIO | None = None, on_file: FileProgress | None = None) -> ExportSummary:
    """Copy the DICOM files ``inputs`` name into a new file set at ``out`` and write
    ``out/DICOMDIR``.

    Parameters
    ----------
    out
        The file set's folder: absent or empty, unless ``options.force`` (then the DICOMDIR
        is replaced and the copies get names no file in it has: nothing is overwritten).
    inputs
        Files, folders, globs, ``-`` (paths on ``stdin``), DICOMDIRs (the files they
        reference), ``dcmtool serve`` archive roots.
    on_file
        Called after each file is written, with (source, done, total).

    Raises
    ------
    MediaError
        Inconsistent input, or ``out`` not empty: nothing was written.
    UsageError
        An input that does not exist, a lossy option the profile has no syntax for, a bad
        assignment.
    """
    started = time.monotonic()
    _check_options(options)
    if out.exists() and not out.is_dir():
        raise MediaError(f"{out}: not a folder")
    if out.is_dir() and any(out.iterdir()) and not options.force:
        raise MediaError(f"{out}: not empty", hint="add to the file set already there, or "
                                                   "write into the folder anyway",
                         setting="force")
    modifier = _modifier(options)
    scanned, skipped = _scan_all(inputs, stdin, modifier, options.profile)
    if not scanned:
        raise UsageError(f"no DICOM files in the inputs ({len(skipped)} other file(s) "
                         "skipped)")
    if options.force and out.is_dir():
        _refuse_inputs_inside(out, scanned)
    layout = plan(out, [], scanned, options.profile, invent=options.invent)
    result = _export(out, layout, options, modifier, on_file)
    size = write_dicomdir(out / "DICOMDIR", layout.roots, fileset_id=_fileset_id(out))
    return _summary(layout, result, skipped, size, started)


def add(dicomdir: Path, inputs: Sequence[str], options: ExportOptions, *,
        stdin: TextIO | None = None, on_file: FileProgress | None = None) -> ExportSummary:
    """Add the files ``inputs`` name to the file set of ``dicomdir`` (a File-set Updater,
    PS3.10 7.2): new files get new file IDs beside the others, the files already there are
    not touched, and the DICOMDIR is rewritten with its records and the new ones (same
    File-set ID and SOP Instance UID). Instances already in the file set with the same
    content are skipped (``duplicates``); with other content, refused.

    Raises MediaError (nothing written) like ``create``, or when ``dicomdir`` is not a
    readable DICOMDIR.
    """
    started = time.monotonic()
    _check_options(options)
    roots = read_tree(dicomdir)
    fileset_id, instance_uid = fileset_identity(dicomdir)
    modifier = _modifier(options)
    scanned, skipped = _scan_all(inputs, stdin, modifier, options.profile)
    out = dicomdir.parent
    layout = plan(out, roots, scanned, options.profile, invent=options.invent)
    result = _export(out, layout, options, modifier, on_file)
    size = 0
    if layout.leaves:  # nothing new (every input already there): the DICOMDIR stays
        size = write_dicomdir(dicomdir, layout.roots, fileset_id=fileset_id,
                              instance_uid=instance_uid)
    return _summary(layout, result, skipped, size, started)


def _check_options(options: ExportOptions) -> None:
    if options.lossy and options.profile.lossy_target is None:
        raise UsageError(f"{options.profile.name} allows no lossy syntax",
                         hint="choose a JPEG or JPEG 2000 profile for lossy images",
                         setting="lossy")


def _modifier(options: ExportOptions) -> Callable[[Any], None] | None:
    if not options.assignments and not options.new_uids:
        return None
    from dcmtool.dicom.modify import Modifier

    return Modifier(options.assignments, options.new_uids)


def _scan_all(inputs: Sequence[str], stdin: TextIO | None,
              modifier: Callable[[Any], None] | None,
              profile: Profile) -> tuple[list[Scanned], list[Path]]:
    """Every input instance once (a path named twice, or a DICOMDIR's files also named
    directly, is read once), and the files that are not DICOM."""
    scanned: list[Scanned] = []
    skipped: list[Path] = []
    seen: set[str] = set()
    shared: dict[Value, Value] = {}
    queue = deque(input_files(inputs, stdin))
    while queue:
        path = queue.popleft()
        key = os.path.abspath(path)
        if key in seen:
            continue
        seen.add(key)
        try:
            found = scan(path, modifier, profile, shared)
        except NotDicom:
            skipped.append(path)
            continue
        except OSError as exc:
            raise MediaError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if isinstance(found, list):
            queue.extendleft(reversed(found))  # a DICOMDIR: its files, in its order
        else:
            scanned.append(found)
    return scanned, skipped


def _refuse_inputs_inside(out: Path, scanned: list[Scanned]) -> None:
    inside = out.resolve()
    for item in scanned:
        if item.path.resolve().is_relative_to(inside):
            raise MediaError(f"{item.path}: an input inside {out}, which is being written",
                             hint="copy the inputs elsewhere first")


def _fileset_id(out: Path) -> str:
    """The folder's name as a File-set ID (CS: 16 of A-Z, 0-9, _ and space)."""
    name = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_"
                   for c in out.resolve().name.upper())
    return name.strip("_")[:16]


# -- writing ------------------------------------------------------------------------------

@dataclass
class _Result:
    files: list[ExportedFile]
    converted: dict[tuple[str, str], int]


#: Copies in flight: a file's creation waits on the file system's journal (most of a
#: copy's time on a disk or USB stick), and threads wait in parallel; the header is encoded
#: by the caller, so a thread only makes system calls (which release the GIL).
_COPY_THREADS = 4


def _export(out: Path, layout: Plan, options: ExportOptions,
            modifier: Callable[[Any], None] | None,
            on_file: FileProgress | None) -> _Result:
    from concurrent.futures import Future, ThreadPoolExecutor

    from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
    from dcmtool.dicom.part10 import FileMeta

    identity = (IMPLEMENTATION_CLASS_UID, implementation_version_name())
    profile = options.profile
    plans = [(leaf, _targets(leaf.scanned, options)) for leaf in layout.leaves]
    _check_decoders(plans)
    made: set[str] = set()
    written: dict[int, int] = {}
    copies: deque[tuple[Leaf, Future[int]]] = deque()
    done = 0

    def report(leaf: Leaf) -> None:
        nonlocal done
        done += 1
        if on_file is not None:
            on_file(leaf.scanned.path, done, len(plans))

    def collect(leaf: Leaf, future: Future[int]) -> None:
        try:
            written[id(leaf)] = future.result()
        except OSError as exc:
            raise MediaError(f"{leaf.scanned.path}: cannot be copied to the file set: "
                             f"{exc.strerror or exc}", hint="the file set has no DICOMDIR "
                             "yet: write it again") from None
        item = leaf.scanned
        leaf.finish(item.sop_instance, item.syntax, item.values, profile)
        report(leaf)

    root = os.fspath(out)
    with ThreadPoolExecutor(_COPY_THREADS, thread_name_prefix="dcmtool-media") as pool:
        try:
            for leaf, targets in plans:
                item = leaf.scanned
                destination = os.path.join(root, *leaf.file_id)
                folder = os.path.dirname(destination)
                if folder not in made:
                    os.makedirs(folder, exist_ok=True)
                    made.add(folder)
                if targets or modifier is not None or item.offset is None:
                    written[id(leaf)] = _convert(item, Path(destination), targets,
                                                 options.lossy, modifier, leaf, profile)
                    report(leaf)
                    continue
                header = FileMeta(item.sop_class, item.sop_instance, item.syntax, *identity,
                                  source_ae_title=item.source_ae).file_header()
                copies.append((leaf, pool.submit(_copy, item, header, destination)))
                while copies and copies[0][1].done():
                    collect(*copies.popleft())
            while copies:
                collect(*copies.popleft())
        finally:
            for _, future in copies:
                future.cancel()
    files: list[ExportedFile] = []
    converted: dict[tuple[str, str], int] = {}
    for leaf, _ in plans:
        item = leaf.scanned
        if leaf.node.transfer_syntax != item.syntax:
            pair = (describe(item.syntax), describe(str(leaf.node.transfer_syntax)))
            converted[pair] = converted.get(pair, 0) + 1
        files.append(ExportedFile(item.path, leaf.file_id, item.sop_class,
                                  str(leaf.node.sop_instance_uid), item.syntax,
                                  str(leaf.node.transfer_syntax), written[id(leaf)]))
    return _Result(files, converted)


def _targets(item: Scanned, options: ExportOptions) -> list[str]:
    """The syntaxes to try for a file, in order ([]: copy it as it is)."""
    profile = options.profile
    uncompressed = item.syntax in UNCOMPRESSED
    if options.lossy and item.pixels and uncompressed and item.record_type == "IMAGE":
        bits = records.text(item.values.get(records.BITS_STORED)) or "8"
        lossy = profile.lossy_for(int(bits.split("\\")[0]))
        if lossy is not None:
            return list(dict.fromkeys([lossy, profile.lossless_target, EXPLICIT]))
    if profile.allows(item.syntax):
        return []
    if uncompressed or not item.pixels:
        return [EXPLICIT]
    return list(dict.fromkeys([profile.lossless_target, EXPLICIT]))


def _check_decoders(plans: list[tuple[Leaf, list[str]]]) -> None:
    """Refuse, before writing, compressed files no installed plugin can decode."""
    sources = {leaf.scanned.syntax for leaf, targets in plans
               if targets and leaf.scanned.syntax not in UNCOMPRESSED}
    if not sources:
        return
    from dcmtool.dicom.transcode import codecs

    decodable = {codec.syntax.uid for codec in codecs() if codec.decode}
    stuck = [leaf.scanned.path for leaf, targets in plans
             if targets and leaf.scanned.syntax in sources - decodable]
    if stuck:
        problems = [f"{path}: cannot decode its transfer syntax with the installed plugins"
                    for path in stuck]
        raise MediaError(f"{len(stuck)} file(s) need converting and cannot be decoded; "
                         "nothing was written", problems=problems)


def _copy(item: Scanned, header: bytes, destination: str) -> int:
    """The file's data set bytes behind ``header``, a new File Meta (PS3.10 7.1): the
    media's own identity, the data set's UIDs, the source AE title kept."""
    assert item.offset is not None
    source = os.open(item.path, os.O_RDONLY)
    try:
        target = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            if item.size <= HEAD:
                data = os.read(source, HEAD + 1)
                return _write_all(target, header + data[item.offset:])
            written = _write_all(target, header)
            return written + _copy_range(source, target, item.offset)
        finally:
            os.close(target)
    finally:
        os.close(source)


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return len(data)


def _copy_range(source: int, target: int, offset: int) -> int:
    """Copy ``source`` from ``offset`` to its end onto ``target``, in the kernel if it can."""
    total = 0
    chunk = 1 << 24
    copy = getattr(os, "copy_file_range", None)
    while True:
        try:
            if copy is not None:
                count = copy(source, target, chunk, offset + total)
            else:
                count = os.sendfile(target, source, offset + total, chunk)
        except OSError:
            copy = None
            os.lseek(source, offset + total, os.SEEK_SET)
            data = os.read(source, chunk)
            count = _write_all(target, data) if data else 0
        if count == 0:
            return total
        total += count


def _convert(item: Scanned, destination: Path, targets: list[str], lossy: bool,
             modifier: Callable[[Any], None] | None, leaf: Leaf, profile: Profile) -> int:
    """Through the convert core: read whole, re-identify, transcode (the first target that
    takes the image), write atomically."""
    from dcmtool.dicom.convert import read_dataset, write_dataset
    from dcmtool.dicom.transcode import EncodeOptions, TranscodeError, transcode

    try:
        ds = read_dataset(item.path)
        if modifier is not None:
            modifier(ds)
        failures: list[str] = []
        for target in targets or [item.syntax]:
            try:
                # A lossy copy is a new instance (PS3.3 C.7.6.1.1.5): new UID, source kept.
                transcode(ds, target, EncodeOptions(keep_uid=not lossy))
                break
            except TranscodeError as exc:
                failures.append(exc.message)
        else:
            raise TranscodeError("; ".join(failures))
        written = write_dataset(ds, destination)
    except Exception as exc:  # one bad file stops the export: the DICOMDIR is not written
        detail = getattr(exc, "message", None) or " ".join(str(exc).split())
        raise MediaError(f"{item.path}: cannot be written to the file set: {detail}",
                         hint="the file set has no DICOMDIR yet; fix or leave out the file "
                              "and write it again") from None
    tags = records.record_keys(leaf.node.record_type, profile).tags
    leaf.finish(str(ds.SOPInstanceUID), str(ds.file_meta.TransferSyntaxUID),
                records.values_of(ds, tags), profile)
    return written


def _summary(layout: Plan, result: _Result, skipped: list[Path], dicomdir_size: int,
             started: float) -> ExportSummary:
    leaves = layout.leaves
    return ExportSummary(
        patients=len({leaf.patient for leaf in leaves}),
        studies=len({leaf.study for leaf in leaves}),
        series=len({leaf.series for leaf in leaves}),
        instances=len(result.files),
        bytes_written=sum(f.bytes_written for f in result.files) + dicomdir_size,
        seconds=time.monotonic() - started,
        converted=result.converted,
        invented=layout.invented,
        skipped=skipped,
        files=result.files,
        duplicates=layout.duplicates,
    )


__all__ = ["ExportOptions", "ExportSummary", "ExportedFile", "FileProgress", "Node", "add",
           "create"]
