"""dcmtool store: send files, folders, globs or a list on stdin to a peer (C-STORE)."""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from dcmtool.cli import completion, console, options, progress
from dcmtool.cli.commands.commit import Port, Wait
from dcmtool.cli.groups import LoggingOptions, NetworkOptions, logging_options, network_options

if TYPE_CHECKING:
    from dcmtool.scu.commit import CommitResult
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
  dcmtool store PACS ./export --commit --report sent.csv   # then storage commitment
  dcmtool store PACS ./export --dry-run       # what would go as is, converted or refused

Files are sent as their bytes when the peer accepts their transfer syntax; a compressed file
the peer refuses is decompressed on the fly. Exit code 0 only when every file was stored
(warning statuses count as stored unless --strict), 7 when some failed. With --commit,
exit 0 only when every file was stored and committed (8: a report did not come in time).
"""


@network_options
@logging_options
def store(
    peer: Annotated[str, typer.Argument(metavar="PEER", autocompletion=completion.peers,
                                        help="Node name, AET@HOST:PORT, or "
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
        "--ts", metavar="NAME", autocompletion=completion.transfer_syntaxes,
        help="Transcode every file to this transfer syntax and "
        "propose only it (names as in 'dcmtool convert --list'). Lossy only when named.",
        show_default=False)] = None,
    keep_uid: Annotated[bool, typer.Option(
        "--keep-uid", help="With a lossy --ts: keep SOP Instance UIDs (default: new ones).",
    )] = False,
    commit: Annotated[bool, typer.Option(
        "--commit", help="Then ask the peer to commit to keeping what it stored (storage "
        "commitment; see 'dcmtool commit').")] = False,
    wait: Wait = 60.0,
    port: Port = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Negotiate each association with the peer, release it, and print "
        "which files would go as they are, converted (to what) or refused; send nothing.")
    ] = False,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Print the association plan (contexts, associations) without "
        "connecting.")] = False,
    json_output: options.JsonOutput = False,
    *,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Send DICOM files to a peer (C-STORE), decompressing what it refuses."""
    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.state import overrides, settings
    from dcmtool.config import resolve_peer, split_peer_arguments
    from dcmtool.dicom.files import find_files
    from dcmtool.errors import UsageError
    from dcmtool.scu.store import FileOutcome, check, scan
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
    from dcmtool.scu.store_lean import usable

    if syntax is None and not usable(target, modifying=bool(assignments or new_uids),
                                     target=None):
        # pynetdicom's client sends the files as their bytes: import it without numpy and
        # the pixel codecs (~150 ms); a file the peer refuses as it is loads them when it is
        # converted (stack.enable_pixels). The plain-TCP client imports neither.
        from dcmtool.net.stack import load_network_only

        load_network_only()
    scanned = scan(find_files(inputs, sys.stdin))
    instances, skipped = scanned.instances, scanned.not_dicom
    known_uids: dict[str, str] = {}
    earlier: list[dict[str, Any]] = []  # rows of the resumed report for the files skipped
    if resume:
        done, known_uids = _stored_in_report(resume)
        before = len(instances)
        instances = [i for i in instances if str(i.path.resolve()) not in done]
        skipped_now = {str(i.path.resolve()) for i in scanned.instances} - \
            {str(i.path.resolve()) for i in instances}
        earlier = [row for path, row in done.items() if path in skipped_now]
        console.err(f"dcmtool: --resume: {before - len(instances)} file(s) already stored")
    for path in skipped:
        if settings.verbose or strict:
            console.err(f"dcmtool: skipped, not DICOM: {path}")
    if strict and skipped:
        raise UsageError(f"{len(skipped)} input file(s) are not DICOM (--strict)")
    for path, disagreement in scanned.meta_disagrees[:_NAMED]:
        console.err(f"dcmtool: warning: {path}: {disagreement}")
    if len(scanned.meta_disagrees) > _NAMED:
        console.err(f"dcmtool: warning: {len(scanned.meta_disagrees) - _NAMED} more file(s) "
                    "whose File Meta disagrees with the data set")
    if not instances and not resume:
        broken = f", {len(scanned.broken)} broken" if scanned.broken else ""
        raise UsageError(f"no DICOM files in the inputs ({len(skipped)} other file(s) "
                         f"skipped{broken})")
    if not instances:
        if report:
            _write_report(report, [], earlier)
        console.out("0 sent: every file was already stored")
        return

    if dry_run or offline:
        from dcmtool.cli.render_plan import print_plan
        from dcmtool.scu.store_plan import make_plan

        planned = None
        if syntax is not None:
            from dcmtool.dicom.transcode import target_syntax

            planned = target_syntax(syntax).uid
        print_plan(make_plan(None if offline else target, instances, planned), json_output)
        return

    def retrying(message: str, attempt: int, delay: float) -> None:
        console.err(f"dcmtool: {message}; retry {attempt} of {retries} in {delay:g} s")

    from dcmtool.dicom.modify import Modifier

    modify = Modifier(assignments or [], new_uids, known_uids) \
        if (assignments or new_uids) else None
    transfer_syntax, encode = None, None
    if syntax is not None:
        from dcmtool.dicom.transcode import EncodeOptions, target_syntax

        transfer_syntax = target_syntax(syntax).uid
        encode = EncodeOptions(keep_uid=keep_uid)
    stop = threading.Event()
    sizes = {i.path: i.size for i in instances}
    with _first_interrupt_stops(stop), progress.files(
            "store", total=len(instances), size_of=lambda o: sizes.get(o.path, 0),
            total_bytes=sum(sizes.values()), quiet=settings.quiet) as on_file:
        summary = send(target, instances, jobs=jobs, retries=retries, on_file=on_file,
                       on_retry=retrying, modify=modify, target=transfer_syntax,
                       encode_options=encode, stop=stop)
    summary.skipped = skipped
    # A broken file (truncated, garbled) was never sent: it fails alone, the rest go.
    summary.outcomes += [FileOutcome(path, None, None, f"not sent, not a whole data set: "
                                     f"{problem}") for path, problem in scanned.broken]
    commitment = None
    if commit and summary.stored and not summary.interrupted:
        from dcmtool.cli.commands.commit import after_store

        commitment = after_store(target, instances, summary.outcomes, wait=wait, port=port)
    if report:  # with the rows it resumed from: the report stays whole across runs
        _write_report(report, summary.outcomes, earlier, commitment)
    _print_summary(summary, json_output, strict, report, commitment)
    if summary.interrupted:
        again = f"; rerun with --resume {report}" if report else ""
        console.err(f"dcmtool: interrupted: {summary.not_sent_interrupted} file(s) not "
                    f"sent{again}")
        raise KeyboardInterrupt
    if strict and summary.warnings:
        from dcmtool.errors import PartialFailure

        raise PartialFailure(f"{summary.warnings} file(s) stored with a warning (--strict)")
    if commitment is not None:
        from dcmtool.scu.commit import check_after_store

        check_after_store(commitment, not_stored=summary.failed)
    check(summary)


#: How many files a warning names before it counts the rest.
_NAMED = 5


def _stored_in_report(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The rows of a previous --report (JSON or CSV) that say stored, by absolute path, and
    the original -> new UIDs it records (--new-uids), so that a resumed batch keeps them."""
    from dcmtool.errors import UsageError
    from dcmtool.scu.store import read_report

    try:
        rows = read_report(path)
    except ValueError as exc:
        raise UsageError(f"--resume {exc}") from None
    stored = {str(Path(r["path"]).resolve()): r for r in rows if r["stored"]}
    renamed = {str(r[f"original_{column}"]): str(r[column]) for r in rows
               for column in _UID_COLUMNS.values()
               if r.get(f"original_{column}") and r.get(column)}
    return stored, renamed


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


#: Report columns of the UIDs --new-uids replaces (each beside "original_" + the column).
_UID_COLUMNS = {"SOPInstanceUID": "sop_instance_uid", "SeriesInstanceUID": "series_instance_uid",
                "StudyInstanceUID": "study_instance_uid"}


def _rows(outcomes: list[FileOutcome], commitment: CommitResult | None = None
          ) -> list[dict[str, Any]]:
    renaming = any(o.renamed for o in outcomes)
    rows = []
    for o in outcomes:
        row: dict[str, Any] = {
            "path": str(o.path.resolve()), "sop_instance_uid": o.sop_instance_uid,
            "status": None if o.status is None else f"0x{o.status:04X}", "stored": o.stored,
            "transfer_syntax": o.sent_as, "message": o.message}
        if renaming:  # the UIDs sent, beside the originals: what the peer now has
            sent = {keyword: (original, new) for keyword, original, new in o.renamed}
            for keyword, column in _UID_COLUMNS.items():
                original, new = sent.get(keyword, (None, None))
                if keyword != "SOPInstanceUID":
                    row[column] = new
                row[f"original_{column}"] = original
        rows.append(row)
    if commitment is not None:
        from dcmtool.cli.render_commit import annotate

        annotate(rows, commitment)
    return rows


def _write_report(path: Path, outcomes: list[FileOutcome],
                  earlier: Sequence[dict[str, Any]] = (),
                  commitment: CommitResult | None = None) -> None:
    """The report: ``earlier`` rows (files a --resume skipped, as the resumed report had
    them) and one row per outcome of this run (with --commit: whether it was committed)."""
    rows = [*(_as_report_row(r) for r in earlier), *_rows(outcomes, commitment)]
    if path.suffix.lower() == ".csv":
        fields = list(dict.fromkeys(key for row in rows for key in row)) or ["path"]
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


def _as_report_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row read back from a CSV report, with JSON's types again."""
    typed = {k: (None if v == "" else v) for k, v in row.items()}
    typed["stored"] = row.get("stored") in (True, "True", "true")
    return typed


def _print_summary(summary: StoreSummary, as_json: bool, strict: bool,
                   report: Path | None = None, commitment: CommitResult | None = None
                   ) -> None:
    from dcmtool.scu.store import INTERRUPTED

    megabytes = summary.bytes_sent / 1e6
    rate = megabytes / summary.seconds if summary.seconds else 0.0
    not_sent = summary.not_sent
    sent = len(summary.outcomes) - not_sent
    if summary.abandoned_by is not None and summary.error is None:
        # An abort in the middle of a batch: said once, with what to do about it.
        abandoned = sum(1 for o in summary.outcomes if o.abandoned)
        again = f"rerun with --resume {report}" if report else \
            "rerun with --report FILE to be able to --resume FILE next time"
        console.err(f"dcmtool: error: {summary.abandoned_by.message}; {abandoned} file(s) "
                    f"not sent; {again}")
    if as_json:
        from dcmtool.cli.render_commit import store_json

        console.out(json.dumps({
            "sent": sent, "stored": summary.stored,
            "warnings": summary.warnings, "failed": summary.failed - not_sent,
            "not_sent": not_sent,
            "skipped": len(summary.skipped), "megabytes": round(megabytes, 3),
            "seconds": round(summary.seconds, 3),
            **(store_json(commitment) if commitment is not None else {}),
            "files": _rows(summary.outcomes, commitment),
        }, indent=2))
        return
    for outcome in summary.outcomes:
        # Not every file again when the connection failed or the user stopped: said once.
        if not outcome.stored and summary.error is None and not outcome.abandoned and \
                outcome.message != INTERRUPTED:
            console.err(f"dcmtool: failed: {outcome.path}: {outcome.message}")
    console.out(f"{sent} sent, {summary.stored} stored ({summary.warnings} with warnings), "
                f"{summary.failed - not_sent} failed, "
                + (f"{not_sent} not sent, " if not_sent else "")
                + f"{len(summary.skipped)} skipped; {megabytes:.2f} MB in "
                f"{summary.seconds:.2f} s ({rate:.1f} MB/s)")
    if commitment is not None:
        from dcmtool.cli.render_commit import print_after_store

        print_after_store(commitment)
