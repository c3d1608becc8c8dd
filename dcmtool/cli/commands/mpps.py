"""dcmtool mpps: report a procedure step to a peer (Modality Performed Procedure Step)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from dcmtool.cli import completion, console, options
from dcmtool.cli.groups import LoggingOptions, NetworkOptions, logging_options, network_options
from dcmtool.cli.guard import guarded

if TYPE_CHECKING:
    from dcmtool.config import Peer
    from dcmtool.scu.mpps import StepResult


EPILOG = """Examples:

\b
  dcmtool mwl RIS --station-aet CT01 --json > item.json
  STEP=$(dcmtool mpps RIS create --from-worklist item.json)
  dcmtool store PACS ./exam --report sent.json
  dcmtool mpps RIS complete "$STEP" --report sent.json
  dcmtool mpps RIS discontinue "$STEP" --reason 110514
  dcmtool mpps RIS create -k Modality=CT -k PatientID=123 -k 'PatientName=DOE^JOHN'

A step is created IN PROGRESS (N-CREATE) and its UID printed on stdout; 'complete' and
'discontinue' end it (N-SET), after which it cannot change. PEER is a node name or
AET@HOST:PORT. Exit 6 when the peer refuses a request (its status and comment are said).
"""

app = typer.Typer(
    rich_markup_mode=None,
    help="Report a procedure step to a peer (MPPS): create it IN PROGRESS, then complete or "
    "discontinue it.",
    no_args_is_help=True,
    epilog=EPILOG,
)


def mpps_root(
    ctx: typer.Context,
    peer: Annotated[str, typer.Argument(metavar="PEER", autocompletion=completion.peers,
                                        help="Node name or AET@HOST:PORT.",
                                        show_default=False)],
) -> None:
    """Report a procedure step to a peer (MPPS)."""
    ctx.obj = peer




def _target(ctx: typer.Context, network: NetworkOptions, logging: LoggingOptions) -> Peer:
    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.network import resolve

    apply_logging(logging)
    return resolve([str(ctx.obj)], network)


StepUid = Annotated[str, typer.Argument(metavar="STEP_UID", help="The step's SOP Instance "
                                        "UID, as 'create' printed it.", show_default=False)]


@app.command("create")
@guarded
@network_options
@logging_options
def create_command(
    ctx: typer.Context,
    from_worklist: Annotated[Optional[str], typer.Option(
        "--from-worklist", metavar="FILE", help="The worklist item performed: 'dcmtool mwl "
        "--json' output or a DICOM file (- for stdin).", show_default=False)] = None,
    item: Annotated[Optional[int], typer.Option(
        "--item", min=1, metavar="N", help="Which item of --from-worklist (1 is the first).",
        show_default=False)] = None,
    keys: Annotated[Optional[list[str]], typer.Option(
        "--key", "-k", metavar="KEY=VALUE", help="Set an attribute (over the worklist "
        "item's; without a worklist item, an unscheduled step: Modality at least).",
        show_default=False)] = None,
    json_output: options.JsonOutput = False,
    *,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Create a step IN PROGRESS (N-CREATE); its UID goes to stdout."""
    from datetime import datetime

    from dcmtool.dicom.mpps import create_request
    from dcmtool.errors import UsageError
    from dcmtool.scu.mpps import check, create, read_worklist_item

    target = _target(ctx, network, logging)
    if from_worklist is None and not keys:
        raise UsageError("say what was performed: --from-worklist FILE, or -k keys "
                         "(Modality=CT at least)")
    worklist = read_worklist_item(from_worklist, item) if from_worklist else None
    try:
        attributes = create_request(worklist_item=worklist, keys=keys or [],
                                    station_ae=target.calling_ae_title, now=datetime.now())
    except ValueError as exc:
        raise UsageError(str(exc), setting="key") from None
    result = create(target, attributes)
    _print(result, json_output)
    check(result, target)


@app.command("set")
@guarded
@network_options
@logging_options
def set_command(
    ctx: typer.Context,
    step: StepUid,
    keys: Annotated[list[str], typer.Option(
        "--key", "-k", metavar="KEY=VALUE", help="An attribute to set (repeatable; "
        "Seq[0].Keyword=Value for items).", show_default=False)],
    json_output: options.JsonOutput = False,
    *,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Change attributes of a step (N-SET)."""
    from dcmtool.scu.mpps import check, keys_dataset, update

    target = _target(ctx, network, logging)
    result = update(target, step, keys_dataset(keys))
    _print(result, json_output)
    check(result, target)


@app.command("complete")
@guarded
@network_options
@logging_options
def complete_command(
    ctx: typer.Context,
    step: StepUid,
    series_from: Annotated[Optional[list[Path]], typer.Option(
        "--series-from", metavar="DIR", help="The performed series: those of the DICOM "
        "files in DIR (or a file; repeatable).", show_default=False)] = None,
    report: Annotated[Optional[Path], typer.Option(
        "--report", metavar="FILE", help="The performed series: what a 'store --report' "
        "FILE lists as stored.", show_default=False)] = None,
    description: Annotated[Optional[str], typer.Option(
        "--description", metavar="TEXT", help="Performed Procedure Step Description.",
        show_default=False)] = None,
    json_output: options.JsonOutput = False,
    *,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """End a step COMPLETED, with the series performed (N-SET)."""
    from datetime import datetime

    from dcmtool.dicom.files import find_files
    from dcmtool.dicom.mpps import COMPLETED, set_request
    from dcmtool.errors import UsageError
    from dcmtool.scu.mpps import check, series_from_files, series_from_store_report, update

    target = _target(ctx, network, logging)
    if not series_from and report is None:
        raise UsageError("say which series were performed: --series-from DIR or --report "
                         "FILE (a store report)")
    series = series_from_store_report(report) if report is not None else []
    if series_from:
        series += series_from_files(find_files([str(p) for p in series_from]))
    if not series:
        raise UsageError("no DICOM instance in --series-from/--report: no series to report")
    modification = set_request(COMPLETED, performed_series=series, now=datetime.now(),
                               description=description)
    result = update(target, step, modification)
    _print(result, json_output)
    if not json_output and result.succeeded:
        count = sum(len(s.instances) for s in series)
        console.err(f"dcmtool: step {step} COMPLETED: {len(series)} series, {count} "
                    "instance(s)")
    check(result, target)


@app.command("discontinue")
@guarded
@network_options
@logging_options
def discontinue_command(
    ctx: typer.Context,
    step: StepUid,
    reason: Annotated[Optional[str], typer.Option(
        "--reason", metavar="CODE", help="Why (CID 9300): a code such as 110514 (incorrect "
        "worklist entry selected), 110513 (unspecified), or VALUE^SCHEME^MEANING.",
        show_default=False)] = None,
    json_output: options.JsonOutput = False,
    *,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """End a step DISCONTINUED, with a reason (N-SET)."""
    from datetime import datetime

    from dcmtool.dicom.mpps import DISCONTINUED, set_request
    from dcmtool.errors import UsageError
    from dcmtool.scu.mpps import check, update

    target = _target(ctx, network, logging)
    try:
        modification = set_request(DISCONTINUED, reason_code=reason, now=datetime.now())
    except ValueError as exc:
        raise UsageError(f"--reason: {exc}") from None
    result = update(target, step, modification)
    _print(result, json_output)
    if not json_output and result.succeeded:
        console.err(f"dcmtool: step {step} DISCONTINUED")
    check(result, target)


def _print(result: StepResult, as_json: bool) -> None:
    """The step's UID on stdout (what a script keeps), or everything as JSON."""
    if as_json:
        console.out(json.dumps({
            "operation": result.operation, "step_uid": result.step_uid,
            "status": f"0x{result.status:04X}" if result.status >= 0 else None,
            "comment": result.comment or None,
            "request": result.request.to_json_dict(suppress_invalid_tags=True),
        }, indent=2, ensure_ascii=False))
    elif result.succeeded:
        console.out(result.step_uid)
