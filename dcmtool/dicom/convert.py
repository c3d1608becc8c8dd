"""convert's file side: reading and atomically writing whole data sets, and batches of files
converted in worker processes through the transcoding core (``dicom.transcode``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcmtool.dicom.transcode import (
    EncodeOptions,
    TranscodeError,
    load_imagecodecs,
    transcode,
)
from dcmtool.errors import DcmtoolError, UsageError

# -- files --------------------------------------------------------------------------------


def read_dataset(path: Path) -> Any:
    """The whole data set of a DICOM file. Raises NotDicom or TranscodeError."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(path)
        ds.file_meta.TransferSyntaxUID  # noqa: B018 - a file without it cannot be converted
        return ds
    except InvalidDicomError:
        raise NotDicom(f"{path}: not a DICOM file") from None
    except (AttributeError, KeyError):
        raise NotDicom(f"{path}: no File Meta Information (transfer syntax unknown)") from None
    except (EOFError, ValueError, OSError) as exc:
        raise TranscodeError(f"cannot read: {' '.join(str(exc).split()) or 'truncated'}") \
            from None


class NotDicom(DcmtoolError):
    """An input that is not a DICOM Part 10 file: skipped and counted, not a failure."""


def write_dataset(ds: Any, path: Path) -> int:
    """Write ``ds`` to ``path`` atomically (temporary file in the same folder, then rename).

    The File Meta names dcmtool as the implementation that wrote it. Returns the size.
    A data set read from a file should have been through ``transcode`` first, which parses
    every raw element so that it can be written in its syntax.
    """
    from pydicom import dcmwrite

    from dcmtool.dicom.files import write_atomically
    from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name

    meta = ds.file_meta
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = implementation_version_name()
    # dcmwrite, not save_as: save_as refuses to change the byte order.
    return write_atomically(path, lambda fh: dcmwrite(fh, ds, enforce_file_format=True),
                            durable=True)


# -- batches ------------------------------------------------------------------------------


@dataclass
class ConvertOutcome:
    """What happened to one input file."""

    source: Path
    destination: Path | None
    status: str  # converted | unchanged | failed | skipped
    source_syntax: str = ""
    message: str = ""
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass
class ConvertSummary:
    outcomes: list[ConvertOutcome]
    seconds: float

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


ConvertProgress = Callable[[ConvertOutcome, int, int], None]


@dataclass(frozen=True)
class ConvertJob:
    """One file to convert and where its result goes (picklable: it crosses processes)."""

    source: Path
    destination: Path
    target_uid: str
    options: EncodeOptions


def convert_file(job: ConvertJob) -> ConvertOutcome:
    """Convert one file; every failure becomes an outcome, never an exception."""
    size = 0
    try:
        size = job.source.stat().st_size
        ds = read_dataset(job.source)
        source_uid = str(ds.file_meta.TransferSyntaxUID)
        if source_uid == job.target_uid and job.source.resolve() == job.destination.resolve():
            return ConvertOutcome(job.source, job.destination, "unchanged", source_uid,
                                  "already in the target syntax", size, size)
        transcode(ds, job.target_uid, job.options)
        written = write_dataset(ds, job.destination)
        status = "unchanged" if source_uid == job.target_uid else "converted"
        return ConvertOutcome(job.source, job.destination, status, source_uid, "", size,
                              written)
    except NotDicom as exc:
        return ConvertOutcome(job.source, None, "skipped", "", exc.message, size)
    except DcmtoolError as exc:
        return ConvertOutcome(job.source, None, "failed", "", exc.message, size)
    except MemoryError:
        return ConvertOutcome(job.source, None, "failed", "", "out of memory", size)
    except OSError as exc:
        return ConvertOutcome(job.source, None, "failed", "",
                              f"cannot write: {exc.strerror or exc}", size)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a bad file costs one outcome, never the batch
        detail = " ".join(str(exc).split())
        return ConvertOutcome(job.source, None, "failed", "",
                              f"cannot convert: {type(exc).__name__}: {detail}", size)


def plan_jobs(inputs: list[str], target_uid: str, options: EncodeOptions, *,
              out_dir: Path | None, in_place: bool) -> list[ConvertJob]:
    """Pair each input file with its destination: mirrored under ``out_dir`` or itself."""
    if in_place == (out_dir is not None):
        raise UsageError("give either -o OUTDIR or --in-place")
    if out_dir is not None and len(inputs) == 1 and _names_a_file(out_dir) and \
            Path(inputs[0]).is_file():
        # One file to one file, as cp and dcmconv do: 'convert a.dcm --ts rle -o b.dcm'.
        if Path(inputs[0]).resolve() == out_dir.resolve():
            raise UsageError(f"{inputs[0]}: the output file is the input file",
                             hint="convert the input in place to overwrite it",
                             setting="in_place")
        return [ConvertJob(Path(inputs[0]), out_dir, target_uid, options)]
    jobs: list[ConvertJob] = []
    for item in inputs:
        base = Path(item)
        if base.is_dir():
            files = sorted(p for p in base.rglob("*") if p.is_file()
                           and not p.name.startswith(".dcmtool-"))
            pairs = [(p, p.relative_to(base)) for p in files]
        elif base.is_file():
            pairs = [(base, Path(base.name))]
        else:
            raise UsageError(f"{item}: no such file or folder")
        for source, relative in pairs:
            destination = source if in_place else out_dir / relative  # type: ignore[operator]
            jobs.append(ConvertJob(source, destination, target_uid, options))
    if out_dir is not None:
        for job in jobs:
            if job.source.resolve() == job.destination.resolve():
                raise UsageError(f"{job.source}: the output folder is the input folder",
                                 hint="convert the inputs in place to overwrite them",
                                 setting="in_place")
    return jobs


def _names_a_file(out: Path) -> bool:
    """-o names a file (not a folder to create) when it is no existing folder, does not end
    with a separator and has an extension: out.dcm, CT.1.2.3."""
    return not out.is_dir() and not str(out).endswith(("/", os.sep)) and bool(out.suffix)


def convert(jobs: list[ConvertJob], *, processes: int = 1,
            progress: ConvertProgress | None = None) -> ConvertSummary:
    """Run the jobs, in ``processes`` worker processes when more than one."""
    import time

    started = time.monotonic()
    outcomes: list[ConvertOutcome] = []

    def record(outcome: ConvertOutcome) -> None:
        outcomes.append(outcome)
        if progress:
            progress(outcome, len(outcomes), len(jobs))

    if processes <= 1 or len(jobs) <= 1:
        for job in jobs:
            record(convert_file(job))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # fork keeps start-up cheap (the codecs are imported once, in the parent).
        context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
        _warm_up()
        with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
            chunk = max(1, min(16, len(jobs) // (processes * 4)))
            for outcome in pool.map(convert_file, jobs, chunksize=chunk):
                record(outcome)
    return ConvertSummary(outcomes, time.monotonic() - started)


def _warm_up() -> None:
    """Import the codec stack before forking, so each worker does not pay for it."""
    import pydicom.pixels  # noqa: F401

    load_imagecodecs()


def check(summary: ConvertSummary) -> None:
    """Raise the error that gives the right exit code when some files failed."""
    from dcmtool.errors import PartialFailure

    failed = summary.count("failed")
    if not failed:
        return
    done = summary.count("converted") + summary.count("unchanged")
    first = next(o for o in summary.outcomes if o.status == "failed")
    if done:
        raise PartialFailure(f"{failed} of {failed + done} files failed "
                             f"(first: {first.source}: {first.message})")
    raise DcmtoolError(f"no file was converted (first: {first.source}: {first.message})")
