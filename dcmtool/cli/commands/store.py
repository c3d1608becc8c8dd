"""dcmtool store: send files, folders, globs or a list on stdin to a peer (C-STORE)."""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from dcmtool.cli import console, options
from dcmtool.cli.groups import LoggingOptions, NetworkOptions, logging_options, network_options

if TYPE_CHECKING:
    from dcmtool.scu.store import FileOutcome, StoreSummary

EPILOG = """Examples:

\b
  dcmtool store PACS ./export                 # a folder, recursively
  dcmtool store ORTHANC@127.0.0.1:4242 'study/*.dcm' --report sent.csv
  find /data -name '*.dcm' | dcmtool store PACS -
  dcmtool store 10.0.0.5 104 -aec STORESCP file.dcm
  dcmtool store TESTPACS ./sample --new-uids --set PatientID=TEST01   # a fresh copy each run
  dcmtool store PACS /media/cdrom/DICOMDIR    # what the DICOMDIR references
  dcmtool store PACS ./export --ts jpeg-lossless   # transcode everything on the way

Files are sent as their bytes when the peer accepts their transfer syntax; a compressed file
the peer refuses is decompressed on the fly. Exit code 0 only when every file was stored
(warning statuses count as stored unless --strict), 7 when some failed.
"""


@network_options
@logging_options
def store(
    peer: Annotated[str, typer.Argument(metavar="PEER", help="Node name, AET@HOST:PORT, or "
                                        "HOST PORT.", show_default=False)],
    inputs: Annotated[list[str], typer.Argument(metavar="INPUT...", help="Files, folders, "
                                                "glob patterns, or - for paths on stdin.",
                                                show_default=False)],
    report: Annotated[Optional[Path], typer.Option("--report", metavar="FILE",
                      help="Write every file's outcome to FILE (.json or .csv).",
                      show_default=False)] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Non-DICOM inputs and warning "
                                         "statuses count as failures.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, max=32, metavar="N",
                    help="Parallel associations (whole studies each).")] = 1,
    retries: Annotated[int, typer.Option("--retries", min=0, metavar="N",
                       help="Re-open the association after a connection failure or abort "
                       "and go on from the file that failed, up to N times.")] = 0,
    resume: Annotated[Optional[Path], typer.Option("--resume", metavar="REPORT",
                      help="Skip files that a previous --report lists as stored.",
                      show_default=False)] = None,
    assignments: Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE",
                           help="Set an attribute in every data set sent (repeatable; test "
                           "data).", show_default=False)] = None,
    new_uids: Annotated[bool, typer.Option("--new-uids", help="Give the batch new study, "
                        "series and instance UIDs, consistently (test data).")] = False,
    syntax: Annotated[Optional[str], typer.Option(
        "--ts", metavar="NAME", help="Transcode every file to this transfer syntax and "
        "propose only it (names as in 'dcmtool convert --list'). Lossy only when named.",
        show_default=False)] = None,
    keep_uid: Annotated[bool, typer.Option(
        "--keep-uid", help="With a lossy --ts: keep SOP Instance UIDs (default: new ones).",
    )] = False,
    json_output: options.JsonOutput = False,
    *,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Send DICOM files to a peer (C-STORE), decompressing what it refuses."""
    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.state import overrides, settings
    from dcmtool.config import resolve_peer, split_peer_arguments
    from dcmtool.errors import UsageError

    if syntax is None:
        # Files go as their bytes: start without numpy and the pixel codecs (~150 ms); a file
        # the peer refuses as it is loads them when it is converted (stack.enable_pixels).
        from dcmtool.net.stack import load_network_only

        load_network_only()
    from dcmtool.scu.store import FileOutcome, check, find_files, scan
    from dcmtool.scu.store import store as send

    apply_logging(logging)
    config = settings.config()
    spec: str | tuple[str, int] = peer
    if inputs and peer not in config.nodes:
        grouped = split_peer_arguments([peer, inputs[0]])
        if isinstance(grouped[0], tuple):
            spec, inputs = grouped[0], inputs[1:]
    if not inputs:
        raise UsageError("give at least one INPUT (file, folder, glob or -)")
    flags = overrides(network)
    target = resolve_peer(spec, config, flags)
    scanned = scan(find_files(inputs, sys.stdin))
    instances, skipped = scanned.instances, scanned.not_dicom
    if resume:
        done = _stored_in_report(resume)
        before = len(instances)
        instances = [i for i in instances if str(i.path.resolve()) not in done]
        console.err(f"dcmtool: --resume: {before - len(instances)} file(s) already stored")
    for path in skipped:
        if settings.verbose or strict:
            console.err(f"dcmtool: skipped, not DICOM: {path}")
    if strict and skipped:
        raise UsageError(f"{len(skipped)} input file(s) are not DICOM (--strict)")
    if not instances and not resume:
        broken = f", {len(scanned.broken)} broken" if scanned.broken else ""
        raise UsageError(f"no DICOM files in the inputs ({len(skipped)} other file(s) "
                         f"skipped{broken})")
    if not instances:
        console.out("0 sent: every file was already stored")
        return
    progress = (_Progress({i.path: i.size for i in instances})
                if sys.stderr.isatty() and not settings.quiet else None)

    def retrying(message: str, attempt: int, delay: float) -> None:
        console.err(f"dcmtool: {message}; retry {attempt} of {retries} in {delay:g} s")

    from dcmtool.scu.store import Modifier

    modify = Modifier(assignments or [], new_uids) if (assignments or new_uids) else None
    transfer_syntax, encode = None, None
    if syntax is not None:
        from dcmtool.dicom.transcode import EncodeOptions, target_syntax

        transfer_syntax = target_syntax(syntax).uid
        encode = EncodeOptions(keep_uid=keep_uid)
    stop = threading.Event()
    with _first_interrupt_stops(stop):
        summary = send(target, instances, jobs=jobs, retries=retries, on_file=progress,
                       on_retry=retrying, modify=modify, target=transfer_syntax,
                       encode_options=encode, stop=stop)
    if progress:
        progress.clear()
    summary.skipped = skipped
    # A broken file (truncated, garbled) was never sent: it fails alone, the rest go.
    summary.outcomes += [FileOutcome(path, None, None, f"not sent, not a whole data set: "
                                     f"{problem}") for path, problem in scanned.broken]
    if report:
        _write_report(report, summary.outcomes)
    _print_summary(summary, json_output, strict)
    if summary.interrupted:
        again = f"; rerun with --resume {report}" if report else ""
        console.err(f"dcmtool: interrupted: {summary.not_sent_interrupted} file(s) not "
                    f"sent{again}")
        raise KeyboardInterrupt
    if strict and summary.warnings:
        from dcmtool.errors import PartialFailure

        raise PartialFailure(f"{summary.warnings} file(s) stored with a warning (--strict)")
    check(summary)


class _Progress:
    """files, bytes, rate and ETA on one line of a terminal's stderr."""

    def __init__(self, sizes: dict[Path, int]) -> None:
        import time

        self.sizes = sizes
        self.total_bytes = sum(sizes.values())
        self.bytes = 0
        self.started = time.monotonic()

    def __call__(self, outcome: FileOutcome, done: int, total: int) -> None:
        import time

        self.bytes += self.sizes.get(outcome.path, 0)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = self.bytes / elapsed
        left = (self.total_bytes - self.bytes) / rate if rate else 0.0
        sys.stderr.write(f"\r\x1b[Kstore: {done}/{total} files, {self.bytes / 1e6:.1f}/"
                         f"{self.total_bytes / 1e6:.1f} MB, {rate / 1e6:.1f} MB/s, "
                         f"ETA {left:.0f} s")
        sys.stderr.flush()

    def clear(self) -> None:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()


def _stored_in_report(path: Path) -> set[str]:
    """Absolute paths a previous --report (JSON or CSV) lists as stored."""
    from dcmtool.errors import UsageError

    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".csv":
            rows: list[dict[str, Any]] = list(csv.DictReader(text.splitlines()))
        else:
            rows = json.loads(text)
        return {str(Path(r["path"]).resolve()) for r in rows
                if r.get("stored") in (True, "True", "true")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--resume {path}: not a store report ({exc})") from None


@contextlib.contextmanager
def _first_interrupt_stops(stop: threading.Event) -> Iterator[None]:
    """The first Ctrl-C sets ``stop`` (the file being sent finishes, the report and the
    summary are written, exit 130); a second one interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def first(_number: int, _frame: Any) -> None:
        console.err("dcmtool: interrupted: finishing the file being sent "
                    "(Ctrl-C again to stop at once)")
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _rows(outcomes: list[FileOutcome]) -> list[dict[str, Any]]:
    return [{"path": str(o.path.resolve()), "sop_instance_uid": o.sop_instance_uid,
             "status": None if o.status is None else f"0x{o.status:04X}",
             "stored": o.stored, "transfer_syntax": o.sent_as, "message": o.message}
            for o in outcomes]


def _write_report(path: Path, outcomes: list[FileOutcome]) -> None:
    rows = _rows(outcomes)
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["path"])
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


def _print_summary(summary: StoreSummary, as_json: bool, strict: bool) -> None:
    from dcmtool.scu.store import INTERRUPTED

    megabytes = summary.bytes_sent / 1e6
    rate = megabytes / summary.seconds if summary.seconds else 0.0
    if as_json:
        console.out(json.dumps({
            "sent": len(summary.outcomes), "stored": summary.stored,
            "warnings": summary.warnings, "failed": summary.failed,
            "skipped": len(summary.skipped), "megabytes": round(megabytes, 3),
            "seconds": round(summary.seconds, 3), "files": _rows(summary.outcomes),
        }, indent=2))
        return
    for outcome in summary.outcomes:
        # Not every file again when the connection failed or the user stopped: said once.
        if not outcome.stored and summary.error is None and \
                outcome.message != INTERRUPTED:
            console.err(f"dcmtool: failed: {outcome.path}: {outcome.message}")
    console.out(f"{len(summary.outcomes)} sent, {summary.stored} stored "
                f"({summary.warnings} with warnings), {summary.failed} failed, "
                f"{len(summary.skipped)} skipped; {megabytes:.2f} MB in "
                f"{summary.seconds:.2f} s ({rate:.1f} MB/s)")
