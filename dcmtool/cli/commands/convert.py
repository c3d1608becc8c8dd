"""dcmtool convert: transcode files to another transfer syntax, or list what can be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from dcmtool.cli import completion, console, options, progress
from dcmtool.cli.groups import LoggingOptions, logging_options

if TYPE_CHECKING:
    from dcmtool.dicom.convert import ConvertSummary

EPILOG = """Examples:

\b
  dcmtool convert --list                          # what the installed plugins can do
  dcmtool convert ./study --ts explicit -o ./plain
  dcmtool convert ./study --ts jpeg-lossless --in-place --jobs 2
  dcmtool convert ct.dcm --ts j2k-lossy --ratio 20 -o ./web  # new SOP Instance UID

Lossy syntaxes (jpeg-baseline, jpeg-extended, jpeg-ls-near, j2k-lossy) are used only when named.
Their output records Lossy Image Compression, ratio and method and gets a new SOP Instance
UID that references the original, unless --keep-uid. Exit code 7 when some files failed.
"""


@logging_options
def convert(
    inputs: Annotated[Optional[list[str]], typer.Argument(
        metavar="INPUT...", help="Files or folders (recursive).", show_default=False)] = None,
    syntax: Annotated[Optional[str], typer.Option(
        "--ts", "-t", metavar="NAME", autocompletion=completion.transfer_syntaxes,
        help="Target transfer syntax: a name such as explicit, "
        "jpeg-lossless, jpeg-ls, j2k-lossless, rle, or a UID (see --list).",
        show_default=False)] = None,
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", "-o", metavar="OUT", help="Write results under the folder OUT, mirroring "
        "the input folders; with one input file, an OUT with an extension (out.dcm) is the "
        "output file.", show_default=False)] = None,
    in_place: Annotated[bool, typer.Option(
        "--in-place", help="Replace each input (atomically: temporary file, then rename).",
    )] = False,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", min=1, max=64, metavar="N", help="Worker processes.")] = 1,
    keep_uid: Annotated[bool, typer.Option(
        "--keep-uid", help="Lossy output keeps its SOP Instance UID (default: a new one).",
    )] = False,
    quality: Annotated[int, typer.Option(
        "--quality", min=1, max=100, metavar="Q", help="JPEG baseline/extended quality.")] = 90,
    ratio: Annotated[float, typer.Option(
        "--ratio", min=1.0, metavar="R", help="JPEG 2000 lossy compression ratio.")] = 10.0,
    near: Annotated[int, typer.Option(
        "--near", min=1, max=255, metavar="E",
        help="JPEG-LS near-lossless maximum error per sample.")] = 2,
    list_codecs: Annotated[bool, typer.Option(
        "--list", help="List transfer syntaxes and whether they can be decoded and encoded.",
    )] = False,
    json_output: options.JsonOutput = False,
    *,
    logging: LoggingOptions,
) -> None:
    """Transcode DICOM files to another transfer syntax."""
    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.state import settings
    from dcmtool.errors import UsageError

    apply_logging(logging)
    if list_codecs:
        _print_codecs(json_output)
        return
    if not inputs:
        raise UsageError("give at least one INPUT file or folder (or --list)")
    if syntax is None:
        raise UsageError("choose the target with --ts NAME", hint="dcmtool convert --list")
    from dcmtool.dicom.convert import check, plan_jobs
    from dcmtool.dicom.convert import convert as run
    from dcmtool.dicom.transcode import EncodeOptions, target_syntax

    target = target_syntax(syntax)
    encode = EncodeOptions(quality=quality, ratio=ratio, near=near, keep_uid=keep_uid)
    planned = plan_jobs(inputs, target.uid, encode, out_dir=out_dir, in_place=in_place)
    if not planned:
        raise UsageError("no files in the inputs")
    with progress.files("convert", total=len(planned), quiet=settings.quiet) as on_file:
        summary = run(planned, processes=jobs, progress=on_file)
    label = target.name
    if target.lossy:  # never silently: lossy loses data and, by default, renames instances
        label += (" (lossy, SOP Instance UIDs kept)" if keep_uid
                  else " (lossy, new SOP Instance UIDs)")
    _print_summary(summary, label, json_output, settings.verbose > 0)
    check(summary)


def _print_codecs(as_json: bool) -> None:
    from dcmtool.dicom.transcode import codecs

    rows = codecs()
    if as_json:
        console.out(json.dumps([
            {"name": c.syntax.name, "uid": c.syntax.uid, "title": c.syntax.title,
             "aliases": list(c.syntax.aliases),
             "lossy": c.syntax.lossy, "decode": c.decode, "encode": c.encode,
             "decoders": list(c.decoders), "encoders": list(c.encoders)} for c in rows],
            indent=2))
        return
    console.print_table(
        ["name", "uid", "decode", "encode", "lossy", "also called", "plugins"],
        [[c.syntax.name, c.syntax.uid, "yes" if c.decode else "no",
          "yes" if c.encode else "no", "lossy" if c.syntax.lossy else "",
          ", ".join(c.syntax.aliases),
          ", ".join(dict.fromkeys((*c.decoders, *c.encoders)))] for c in rows])


def _print_summary(summary: ConvertSummary, target: str, as_json: bool, verbose: bool) -> None:
    counts = {status: summary.count(status)
              for status in ("converted", "unchanged", "failed", "skipped")}
    megabytes_in = sum(o.bytes_in for o in summary.outcomes if o.status != "skipped") / 1e6
    megabytes_out = sum(o.bytes_out for o in summary.outcomes) / 1e6
    rate = len(summary.outcomes) / summary.seconds if summary.seconds else 0.0
    for outcome in summary.outcomes:
        if outcome.status == "failed":
            console.err(f"dcmtool: failed: {outcome.source}: {outcome.message}")
        elif outcome.status == "skipped" and verbose:
            console.err(f"dcmtool: skipped, not DICOM: {outcome.source}")
    if as_json:
        console.out(json.dumps({
            "target": target, **counts, "seconds": round(summary.seconds, 3),
            "megabytes_in": round(megabytes_in, 3), "megabytes_out": round(megabytes_out, 3),
            "files": [{"source": str(o.source), "destination": str(o.destination)
                       if o.destination else None, "status": o.status,
                       "source_syntax": o.source_syntax, "message": o.message}
                      for o in summary.outcomes]}, indent=2))
        return
    console.out(f"{counts['converted']} converted to {target}, {counts['unchanged']} already "
                f"{target}, {counts['failed']} failed, {counts['skipped']} skipped (not DICOM); "
                f"{megabytes_in:.1f} MB -> {megabytes_out:.1f} MB in {summary.seconds:.2f} s "
                f"({rate:.0f} files/s)")
