"""dcmtool mwl: query a modality worklist (C-FIND, Modality Worklist Information Model)."""

from __future__ import annotations

import datetime
from typing import Annotated, Optional

import typer

from dcmtool.cli import options
from dcmtool.cli.groups import LoggingOptions, NetworkOptions, logging_options, network_options

EPILOG = """Examples:

\b
  dcmtool mwl RIS --modality CT --date today
  dcmtool mwl RIS --station-aet CT01 --date 20261123-20261130 --csv
  dcmtool mwl RIS --patient 'DOE^*' --json
  dcmtool mwl RIS -k 'ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName'
"""

SPS = "ScheduledProcedureStepSequence[0]"


@network_options
@logging_options
def mwl(
    peer: Annotated[list[str], typer.Argument(metavar="PEER", help="Node name, "
                    "AET@HOST:PORT, or HOST PORT.", show_default=False)],
    modality: Annotated[Optional[str], typer.Option(
        "--modality", "-m", metavar="MOD", help="Scheduled modality (CT, MR, ...).",
        rich_help_panel=options.QUERY, show_default=False)] = None,
    date: Annotated[Optional[str], typer.Option(
        "--date", metavar="WHEN", help="today, YYYYMMDD or YYYYMMDD-YYYYMMDD.",
        rich_help_panel=options.QUERY, show_default=False)] = None,
    station_aet: Annotated[Optional[str], typer.Option(
        "--station-aet", metavar="AET", help="Scheduled Station AE Title.",
        rich_help_panel=options.QUERY, show_default=False)] = None,
    patient: Annotated[Optional[str], typer.Option(
        "--patient", metavar="NAME", help="Patient's name (wildcards * ?).",
        rich_help_panel=options.QUERY, show_default=False)] = None,
    keys: options.Keys = None,
    json_output: options.JsonOutput = False,
    jsonl: options.JsonLines = False,
    as_csv: options.CsvOutput = False,
    *,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Query a modality worklist and print the scheduled procedure steps."""
    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.network import resolve
    from dcmtool.cli.render_find import render
    from dcmtool.dicom.sopclasses import MODALITY_WORKLIST_FIND
    from dcmtool.errors import UsageError
    from dcmtool.scu.find import build_identifier, check
    from dcmtool.scu.find import find as run

    apply_logging(logging)
    if json_output + jsonl + as_csv > 1:
        raise UsageError("choose one of --json, --jsonl and --csv")
    shortcuts = []
    if modality:
        shortcuts.append(f"{SPS}.Modality={modality}")
    if station_aet:
        shortcuts.append(f"{SPS}.ScheduledStationAETitle={station_aet}")
    if date:
        shortcuts.append(f"{SPS}.ScheduledProcedureStepStartDate={_date(date)}")
    if patient:
        shortcuts.append(f"PatientName={patient}")
    target = resolve(peer, network)
    identifier = build_identifier([*shortcuts, *(keys or [])], level=None)
    result = run(target, identifier, MODALITY_WORKLIST_FIND)
    render(result.matches, identifier, as_json=json_output, jsonl=jsonl, as_csv=as_csv)
    check(result)


def _date(text: str) -> str:
    from dcmtool.errors import UsageError

    value = text.strip().lower()
    if value == "today":
        return datetime.date.today().strftime("%Y%m%d")
    parts = value.split("-")
    if len(parts) <= 2 and all(p == "" or (len(p) == 8 and p.isdigit()) for p in parts) \
            and any(parts):
        return value
    raise UsageError(f"--date {text!r}: expected today, YYYYMMDD or YYYYMMDD-YYYYMMDD")
