"""dcmtool dicomdir: file sets for media (CD, DVD, USB) with a DICOMDIR, written and read."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from dcmtool.cli import completion, console, options, progress
from dcmtool.cli.groups import (
    LoggingOptions,
    NetworkOptions,
    SelectionOptions,
    logging_options,
    network_options,
    selection_options,
)
from dcmtool.cli.guard import guarded

if TYPE_CHECKING:
    from dcmtool.media.directory import Node
    from dcmtool.media.export import ExportOptions, ExportSummary


EPILOG = """Examples:

\b
  dcmtool dicomdir create /media/usb ./export               # STD-GEN-CD: explicit VR files
  dcmtool dicomdir create out ./study --profile STD-GEN-DVD-JPEG
  dcmtool dicomdir create out --peer PACS --study 1.2.840.113619.2.1
  dcmtool dicomdir create out ./study --set PatientName=ANON --set PatientID=X1 --new-uids
  dcmtool dicomdir ls /media/cdrom/DICOMDIR
  dcmtool dicomdir verify /media/cdrom/DICOMDIR
  dcmtool dicomdir add out/DICOMDIR ./more
  dcmtool store PACS /media/cdrom/DICOMDIR                 # send a disc back
"""

app = typer.Typer(
    rich_markup_mode=None,
    help="File sets for media with a DICOMDIR: create, add, ls, verify.",
    no_args_is_help=True,
    epilog=EPILOG,
)


def dicomdir_root() -> None:
    """File sets for media (CD, DVD, USB) with a DICOMDIR: create, add, ls, verify."""




Profile = Annotated[str, typer.Option(
    "--profile", metavar="NAME", autocompletion=completion.media_profiles,
    help="Application profile: STD-GEN-CD (explicit VR little endian only), "
    "STD-GEN-DVD-JPEG / STD-GEN-USB-JPEG (+ JPEG), STD-GEN-DVD-J2K / STD-GEN-USB-J2K "
    "(+ JPEG 2000), or general (every syntax kept).")]
Lossy = Annotated[bool, typer.Option(
    "--lossy", help="With a JPEG or JPEG 2000 profile: encode uncompressed images lossy "
    "(default: lossless).")]
Invent = Annotated[bool, typer.Option(
    "--invent", help="Fill missing Type 1 record keys, as dcmmkdir +I does, and say which.")]
Assignments = Annotated[Optional[list[str]], typer.Option(
    "--set", metavar="KEY=VALUE", help="Set an attribute in every exported copy "
    "(re-identification; the originals are never changed).", show_default=False)]
NewUids = Annotated[bool, typer.Option(
    "--new-uids", help="New study, series and instance UIDs in the copies, consistently.")]


def _export_options(profile_name: str, lossy: bool, invent: bool,
                    assignments: list[str] | None, new_uids: bool,
                    force: bool = False) -> ExportOptions:
    from dcmtool.media.export import ExportOptions
    from dcmtool.media.profiles import profile

    return ExportOptions(profile=profile(profile_name), lossy=lossy, invent=invent,
                         assignments=tuple(assignments or ()), new_uids=new_uids, force=force)


@selection_options
@network_options
@logging_options
def create(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The folder to write: DICOMDIR "
                   "and DICOM/PAT00001/...", show_default=False)],
    inputs: Annotated[Optional[list[str]], typer.Argument(
        metavar="INPUT...", help="Files, folders, globs, - (paths on stdin), a DICOMDIR or a "
        "'dcmtool serve' archive folder.", show_default=False)] = None,
    profile_name: Profile = "STD-GEN-CD",
    lossy: Lossy = False,
    invent: Invent = False,
    assignments: Assignments = None,
    new_uids: NewUids = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Write into an OUT that is not empty.")] = False,
    peer: Annotated[Optional[str], typer.Option(
        "--peer", metavar="PEER", autocompletion=completion.peers,
        help="Retrieve what --study/--accession/--from/-k select from PEER (with its "
        "retrieve method, move or get) and write that.", show_default=False)] = None,
    selected: SelectionOptions = SelectionOptions(),
    json_output: options.JsonOutput = False,
    *,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Write a file set: copies of the inputs under DICOM/, and the DICOMDIR."""
    from dcmtool.cli.app import apply_logging
    from dcmtool.errors import UsageError

    apply_logging(logging)
    export = _export_options(profile_name, lossy, invent, assignments, new_uids, force)
    if peer is None:
        if not inputs:
            raise UsageError("give at least one INPUT (file, folder, glob, - or DICOMDIR), or "
                             "--peer PEER with --study/--accession/--from")
        _print_summary(_run_export(lambda on_file: _create(out, inputs, export, on_file)),
                       json_output)
        return
    if inputs:
        raise UsageError("give INPUTs or --peer, not both")
    _create_from_peer(out, peer, selected, export, network, json_output)


def _create(out: Path, inputs: list[str], export: ExportOptions,
            on_file: Any) -> ExportSummary:
    from dcmtool.media.export import create as write

    return write(out, inputs, export, stdin=sys.stdin, on_file=on_file)


def _create_from_peer(out: Path, peer: str, selected: SelectionOptions, export: ExportOptions,
                      network: NetworkOptions, json_output: bool) -> None:
    """Retrieve into a private folder beside OUT, write the media from it, remove it."""
    import shutil
    import tempfile

    from dcmtool.cli.commands.move import retrieve, selection
    from dcmtool.cli.network import resolve
    from dcmtool.cli.state import settings
    from dcmtool.scu.retrieve import check

    target = resolve([peer], network)
    identifiers = selection(target, "study", selected)
    local = settings.config().local
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dcmtool-retrieve-", dir=out.parent))
    try:
        summary = retrieve(target, identifiers, "study", out=staging, dest=None, local=local)
        check(summary, destination=None, local=local, peer=target)
        console.err(f"dcmtool: retrieved {summary.received} instance(s) from {target.label}")
        _print_summary(_run_export(
            lambda on_file: _create(out, [str(staging)], export, on_file)), json_output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@logging_options
def add(
    dicomdir: Annotated[Path, typer.Argument(metavar="DICOMDIR", help="The file set's "
                        "DICOMDIR.", show_default=False)],
    inputs: Annotated[list[str], typer.Argument(
        metavar="INPUT...", help="Files, folders, globs, - (paths on stdin), a DICOMDIR or a "
        "'dcmtool serve' archive folder.", show_default=False)],
    profile_name: Profile = "STD-GEN-CD",
    lossy: Lossy = False,
    invent: Invent = False,
    assignments: Assignments = None,
    new_uids: NewUids = False,
    json_output: options.JsonOutput = False,
    *,
    logging: LoggingOptions,
) -> None:
    """Add files to a file set; what is there is left as it is, the DICOMDIR rewritten."""
    from dcmtool.cli.app import apply_logging
    from dcmtool.media.export import add as extend

    apply_logging(logging)
    export = _export_options(profile_name, lossy, invent, assignments, new_uids)
    _print_summary(_run_export(
        lambda on_file: extend(dicomdir, inputs, export, stdin=sys.stdin, on_file=on_file)),
        json_output)


def _run_export(run: Callable[[Any], ExportSummary]) -> ExportSummary:
    """Run an export with one progress bar on a terminal (the library reports each file)."""
    from dcmtool.cli.state import settings

    bar = progress.bar("dicomdir", quiet=settings.quiet)
    if bar is None:
        return run(None)

    def on_file(source: Path, done: int, total: int) -> None:
        bar.update(completed=done, total=total)

    with bar:
        summary = run(on_file)
        bar.close(f"dicomdir: {summary.instances} instance(s) in {summary.seconds:.1f} s")
    return summary


def _print_summary(summary: ExportSummary, as_json: bool) -> None:
    from dcmtool.dicom.syntaxes import describe

    for line in summary.invented:
        console.err(f"dcmtool: invented: {line}")
    converted = [f"{count} {source} -> {target}"
                 for (source, target), count in sorted(summary.converted.items())]
    if as_json:
        console.out(json.dumps({
            "patients": summary.patients, "studies": summary.studies, "series": summary.series,
            "instances": summary.instances, "bytes": summary.bytes_written,
            "seconds": round(summary.seconds, 3), "skipped": [str(p) for p in summary.skipped],
            "invented": summary.invented,
            "converted": [{"from": s, "to": t, "count": c}
                          for (s, t), c in sorted(summary.converted.items())],
            "files": [{"source": str(f.source), "file_id": "\\".join(f.file_id),
                       "sop_instance_uid": f.sop_instance_uid,
                       "transfer_syntax": describe(f.syntax)} for f in summary.files],
        }, indent=2))
        return
    skipped = f", {len(summary.skipped)} skipped (not DICOM)" if summary.skipped else ""
    console.out(f"{_count(summary.patients, 'patient')}, {_count(summary.studies, 'study')}, "
                f"{_count(summary.series, 'series')}, "
                f"{_count(summary.instances, 'instance')}{skipped}, "
                f"{summary.bytes_written / 1e6:.1f} MB in {summary.seconds:.2f} s"
                + (f"; converted: {', '.join(converted)}" if converted else ""))


def _count(number: int, noun: str) -> str:
    plural = {"study": "studies", "series": "series"}.get(noun, noun + "s")
    return f"{number} {noun if number == 1 else plural}"


def ls(
    dicomdir: Annotated[Path, typer.Argument(metavar="DICOMDIR", help="A DICOMDIR (or the "
                        "folder holding it).", show_default=False)],
    json_output: options.JsonOutput = False,
    as_csv: options.CsvOutput = False,
) -> None:
    """List a file set: patients, studies, series, instance counts, modalities and dates."""
    from dcmtool.media.directory import read_tree

    roots = read_tree(_dicomdir_path(dicomdir))
    if json_output:
        console.out(json.dumps([_node_json(node) for node in roots], indent=2,
                               ensure_ascii=False))
    elif as_csv:
        _print_csv(roots)
    else:
        _print_tree(roots)


def _dicomdir_path(path: Path) -> Path:
    return path / "DICOMDIR" if path.is_dir() else path


def _instances(node: Node) -> int:
    """Records below ``node`` that reference a file (images, SR, ...)."""
    own = 1 if node.file_id and node.record_type not in ("PATIENT", "STUDY", "SERIES") else 0
    return own + sum(_instances(child) for child in node.children)


def _node_json(node: Node) -> dict[str, Any]:
    entry: dict[str, Any] = {"record": node.record_type, **node.values}
    if node.file_id:
        entry["file_id"] = "\\".join(node.file_id)
        entry["sop_instance_uid"] = node.sop_instance_uid
    if node.record_type in ("PATIENT", "STUDY", "SERIES"):
        entry["instances"] = _instances(node)
        entry["children"] = [_node_json(child) for child in node.children]
    return entry


def _print_tree(roots: list[Node]) -> None:
    for patient in roots:
        console.out(f"{patient.record_type} {patient.values.get('PatientName', '')} "
                    f"[{patient.values.get('PatientID', '')}]: "
                    f"{_count(_instances(patient), 'instance')}")
        for study in patient.children:
            values = study.values
            modalities = sorted({s.values.get("Modality", "") for s in study.children} - {""})
            console.out(f"  STUDY {values.get('StudyDate', '')} "
                        f"{values.get('AccessionNumber', '') or '-'} "
                        f"{values.get('StudyDescription', '')!r} {'/'.join(modalities)} "
                        f"{values.get('StudyInstanceUID', '')}: "
                        f"{_count(len(study.children), 'series')}, "
                        f"{_count(_instances(study), 'instance')}")
            for series in study.children:
                values = series.values
                console.out(f"    SERIES {values.get('SeriesNumber', '')} "
                            f"{values.get('Modality', '')} "
                            f"{values.get('SeriesInstanceUID', '')}: "
                            f"{_count(_instances(series), 'instance')}")


def _print_csv(roots: list[Node]) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["PatientID", "PatientName", "StudyInstanceUID", "StudyDate",
                     "AccessionNumber", "SeriesInstanceUID", "Modality", "SeriesNumber",
                     "Instances"])
    for patient in roots:
        for study in patient.children:
            for series in study.children:
                writer.writerow([
                    patient.values.get("PatientID", ""), patient.values.get("PatientName", ""),
                    study.values.get("StudyInstanceUID", ""), study.values.get("StudyDate", ""),
                    study.values.get("AccessionNumber", ""),
                    series.values.get("SeriesInstanceUID", ""),
                    series.values.get("Modality", ""), series.values.get("SeriesNumber", ""),
                    _instances(series)])
    sys.stdout.flush()


def verify(
    dicomdir: Annotated[Path, typer.Argument(metavar="DICOMDIR", help="A DICOMDIR (or the "
                        "folder holding it).", show_default=False)],
    profile_name: Annotated[Optional[str], typer.Option(
        "--profile", metavar="NAME", autocompletion=completion.media_profiles,
        help="Also check that every file's transfer syntax is one the profile allows.",
        show_default=False)] = None,
) -> None:
    """Check a file set: every referenced file is there, readable and matches its record, and
    no file is left unreferenced. Exit 7 with one line per problem."""
    from dcmtool.errors import PartialFailure
    from dcmtool.media.directory import verify as check
    from dcmtool.media.profiles import profile

    path = _dicomdir_path(dicomdir)
    problems = check(path, profile(profile_name) if profile_name else None)
    for problem in problems:
        console.out(f"{problem.path}: {problem.message}")
    if problems:
        raise PartialFailure(f"{path}: {_count(len(problems), 'problem')}")
    console.out(f"{path}: consistent")


app.command("create", short_help="Write a file set from files or from a peer.")(
    guarded(create))
app.command("add", short_help="Add files to a file set.")(guarded(add))
app.command("ls", short_help="List a file set: patients, studies, series.")(guarded(ls))
app.command("verify", short_help="Check a file set against its files.")(guarded(verify))
