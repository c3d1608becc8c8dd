"""dcmtool mwl: query a modality worklist (C-FIND, Modality Worklist Information Model)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from dcmtool.cli import completion, options
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
  dcmtool mwl RIS --modality CT --date today
  dcmtool mwl RIS --station-aet CT01 --date 20261123-20261130 --csv
  dcmtool mwl RIS --patient 'DOE^*' --json
  dcmtool mwl RIS -k 'ScheduledProcedureStepSequence[0].ScheduledPerformingPhysicianName'
"""


@output_options
@network_options
@logging_options
def mwl(
    peer: Annotated[list[str], typer.Argument(metavar="PEER", autocompletion=completion.peers,
                                              help="Node name, "
                    "AET@HOST:PORT, or HOST PORT.", show_default=False)],
    modality: Annotated[Optional[str], typer.Option(
        "--modality", "-m", metavar="MOD", help="Scheduled modality (CT, MR, ...).",
        rich_help_panel=options.QUERY, show_default=False)] = None,
    date: Annotated[Optional[str], typer.Option(
        "--date", metavar="WHEN", help="Scheduled date: YYYYMMDD, a range A-B (open ends: "
        "A- or -B), today, yesterday, tomorrow or -7d (the last 7 days).",
        rich_help_panel=options.QUERY, show_default=False)] = None,
    station_aet: Annotated[Optional[str], typer.Option(
        "--station-aet", metavar="AET", help="Scheduled Station AE Title.",
        rich_help_panel=options.QUERY, show_default=False)] = None,
    patient: Annotated[Optional[str], typer.Option(
        "--patient", metavar="NAME", help="Patient's name (wildcards * ?).",
        rich_help_panel=options.QUERY, show_default=False)] = None,
    keys: options.Keys = None,
    *,
    output: OutputOptions,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Query a modality worklist and print the scheduled procedure steps."""
    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.network import resolve
    from dcmtool.cli.render_find import render
    from dcmtool.scu.find import check
    from dcmtool.scu.mwl import query, worklist_identifier

    apply_logging(logging)
    identifier = worklist_identifier(modality=modality, date=_date(date) if date else None,
                                     station_aet=station_aet, patient=patient,
                                     keys=keys or [])
    target = resolve(peer, network)
    result = query(target, identifier)
    render(result.matches, identifier, output)
    check(result)


def _date(text: str) -> str:
    """--date checked as the key it sets (relative dates resolved), named as --date."""
    from dcmtool.dicom.matching import MatchingValueError, matching_value
    from dcmtool.errors import UsageError

    try:
        return matching_value("DA", text)
    except MatchingValueError as exc:
        raise UsageError(f"--date: {exc}") from None
