"""dcmtool find: C-FIND from the terminal and from scripts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from dcmtool.cli import completion, console, options
from dcmtool.cli.groups import (
    LoggingOptions,
    NetworkOptions,
    OutputOptions,
    logging_options,
    network_options,
    output_options,
)

EPILOG = """Examples:

\b
  dcmtool find PACS -k PatientName='DOE^*'               # studies (Study Root, STUDY level)
  dcmtool find PACS -k StudyDate=20260101-20260131 --csv > january.csv
  dcmtool find PACS -L SERIES -k StudyInstanceUID=1.2.3 -k BodyPartExamined
  dcmtool find PACS -P -L PATIENT -k PatientID=12345
  dcmtool find PACS -k AccessionNumber=A1 --jsonl | dcmtool move PACS --from - -o ./in
  dcmtool find PACS --limit 10                           # C-CANCEL after 10 matches

Default return keys are asked for at each level (--no-defaults: only the -k keys). Values are
decoded with the Specific Character Set of each response. Exit 0 on success (also after
--limit), 6 when the peer answers with a failure status.
"""


@output_options
@network_options
@logging_options
def find(
    peer: Annotated[list[str], typer.Argument(metavar="PEER", autocompletion=completion.peers,
                                              help="Node name, "
                    "AET@HOST:PORT, or HOST PORT.", show_default=False)],
    keys: options.Keys = None,
    level: Annotated[Optional[str], typer.Option(
        "--level", "-L", metavar="LEVEL", autocompletion=completion.levels,
        help="PATIENT, STUDY (default), SERIES or IMAGE.",
        rich_help_panel=options.QUERY, show_default=False)] = None,
    patient_root: options.PatientRoot = False,
    study_root: options.StudyRoot = False,
    patient_study_only: options.PatientStudyOnly = False,
    from_file: Annotated[Optional[Path], typer.Option(
        "--from", metavar="FILE", help="Start from the query in FILE (DICOM or DICOM JSON).",
        rich_help_panel=options.QUERY, show_default=False)] = None,
    no_defaults: Annotated[bool, typer.Option(
        "--no-defaults", help="Ask only for the -k keys.", rich_help_panel=options.QUERY)] = False,
    charset: Annotated[Optional[str], typer.Option(
        "--charset", metavar="TERM", help="Specific Character Set of the query, e.g. "
        "'ISO_IR 192' for UTF-8 values.", rich_help_panel=options.QUERY,
        show_default=False)] = None,
    limit: Annotated[Optional[int], typer.Option(
        "--limit", min=1, metavar="N", help="Send C-CANCEL after N matches.",
        rich_help_panel=options.QUERY, show_default=False)] = None,
    *,
    output: OutputOptions,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Query a peer (C-FIND) and print the matches."""
    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.network import resolve
    from dcmtool.cli.render_find import render
    from dcmtool.errors import UsageError
    from dcmtool.scu.find import MODELS, build_identifier, check, read_query_file
    from dcmtool.scu.find import find as run

    apply_logging(logging)
    model = options.model_name(patient_root, study_root, patient_study_only)
    base = read_query_file(from_file) if from_file else None
    chosen = (level or (base.get("QueryRetrieveLevel") if base is not None else None) or
              ("PATIENT" if model == "patient" else "STUDY")).upper()
    if chosen not in ("PATIENT", "STUDY", "SERIES", "IMAGE"):
        raise UsageError(f"--level {chosen}: expected PATIENT, STUDY, SERIES or IMAGE")
    target = resolve(peer, network)
    identifier = build_identifier(keys or [], level=chosen, base=base,
                                  defaults=not no_defaults, charset=charset)
    result = run(target, identifier, MODELS[model], limit=limit)
    render(result.matches, identifier, output)
    if not logging.quiet and output.table and sys.stderr.isatty():
        console.err(f"{len(result.matches)} match(es) in {result.seconds * 1000:.0f} ms"
                    + (" (cancelled at --limit)" if result.cancelled else ""))
    check(result)
