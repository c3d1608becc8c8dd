"""dcmtool move: retrieve with C-MOVE, to a third party or to ourselves (--out DIR)."""

from __future__ import annotations

import sys
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

if TYPE_CHECKING:
    from dcmtool.config import Peer
    from dcmtool.scu.retrieve import RetrieveSummary

EPILOG = """Examples:

\b
  dcmtool move PACS --study 1.2.840.113619.2.1 -o ./in      # to ourselves: [local] port
  dcmtool move PACS --accession A12345 --dest WORKSTATION   # third-party move
  dcmtool move PACS -L SERIES -k StudyInstanceUID=1.2.3 -k SeriesInstanceUID=1.2.3.4 -o ./in
  dcmtool find PACS -k PatientID=123 --jsonl | dcmtool move PACS --from - -o ./in
  dcmtool move PACS --from accessions.txt --from-key AccessionNumber -o ./in

A move to ourselves needs the peer to know our AE title ([local] ae_title) at this host and
[local] port; 0xA801 means it does not. A node's 'retrieve = "get"' makes this command use
C-GET instead. Exit 0 when everything arrived, 7 when some sub-operations failed.
"""



@selection_options
@network_options
@logging_options
def move(
    peer: Annotated[list[str], typer.Argument(metavar="PEER", autocompletion=completion.peers,
                                              help="Node name, "
                    "AET@HOST:PORT, or HOST PORT.", show_default=False)],
    dest: Annotated[Optional[str], typer.Option(
        "--dest", metavar="AET", help="Move destination AE title (default: ourselves, "
        "receiving into --out).", show_default=False)] = None,
    out: options.Out = None,
    selected: SelectionOptions = SelectionOptions(),
    patient_root: options.PatientRoot = False,
    study_root: options.StudyRoot = False,
    patient_study_only: options.PatientStudyOnly = False,
    layout: options.Layout = None,
    as_archive: options.AsArchive = False,
    port: Annotated[Optional[int], typer.Option(
        "--port", min=0, max=65535, metavar="PORT", help="Our storage SCP's port (default "
        "[local] port).", show_default=False)] = None,
    json_output: options.JsonOutput = False,
    *,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Retrieve studies, series or instances with C-MOVE."""
    from dcmtool.net.stack import load_network_only

    load_network_only()  # received data sets are stored as they come: no pixel codecs
    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.network import resolve
    from dcmtool.cli.state import settings

    apply_logging(logging)
    target = resolve(peer, network)
    model = options.model_name(patient_root, study_root, patient_study_only)
    identifiers = selection(target, model, selected)
    local = settings.config().local
    if port is not None:
        from dataclasses import replace

        local = replace(local, port=port)
    if target.retrieve == "get" and dest is None and out is None:
        from dcmtool.errors import UsageError

        raise UsageError("this node retrieves with C-GET: give --out DIR")
    summary = retrieve(target, identifiers, model, out=out, dest=dest, local=local,
                       layout=layout, as_archive=as_archive)
    finish(summary, target, json_output, destination=dest, local=local)


def retrieve(target: Peer, identifiers: list[Any], model: str, *, out: Path | None,
             dest: str | None, local: Any, layout: str | None = None,
             as_archive: bool = False) -> RetrieveSummary:
    """C-MOVE (to ``dest``, or to ourselves into ``out``) or, for a node whose retrieve method
    is get, C-GET into ``out``; one progress bar on a terminal. Shared by move, get and
    dicomdir create --peer."""
    from dcmtool.cli.state import settings

    if target.retrieve == "get" and dest is None:
        from dcmtool.scu.retrieve import GET_MODELS, get

        assert out is not None
        with progress.retrievals("get", requests=len(identifiers),
                                 quiet=settings.quiet) as on_progress:
            return get(target, identifiers, model=GET_MODELS[model], out_dir=out,
                       open_receiver=receiver_opener(out, local, layout, as_archive),
                       on_progress=on_progress)
    from dcmtool.scu.retrieve import MOVE_MODELS
    from dcmtool.scu.retrieve import move as run

    with progress.retrievals("move", requests=len(identifiers),
                             quiet=settings.quiet) as on_progress:
        return run(target, identifiers, model=MOVE_MODELS[model], destination=dest,
                   out_dir=out, local=local,
                   open_receiver=(receiver_opener(out, local, layout, as_archive)
                                  if out else None),
                   on_progress=on_progress)


def selection(peer: Peer, model: str, selected: SelectionOptions) -> list[Any]:
    """The identifiers to retrieve, from the shortcuts, -k keys and --from list."""
    study, series, accession, patient_id = (selected.study, selected.series, selected.accession,
                                            selected.patient_id)
    keys, level, from_list, from_key = (selected.keys, selected.level, selected.from_list,
                                        selected.from_key)
    from dcmtool.errors import UsageError
    from dcmtool.scu.find import MODELS
    from dcmtool.scu.retrieve import build_retrieve_identifier, read_list, resolve

    pairs: list[tuple[str, str]] = []
    pairs += [("StudyInstanceUID", uid) for uid in study or []]
    pairs += [("AccessionNumber", number) for number in accession or []]
    pairs += [("PatientID", value) for value in patient_id or []]
    identifiers: list[Any] = []
    for uid in series or []:
        identifiers.append(_series_identifier(peer, model, uid))
    if from_list:
        if from_key and from_key not in ("StudyInstanceUID", "AccessionNumber", "PatientID",
                                         "SeriesInstanceUID", "SOPInstanceUID"):
            raise UsageError(f"--from-key {from_key}: expected StudyInstanceUID, "
                             "AccessionNumber, PatientID, SeriesInstanceUID or SOPInstanceUID")
        try:
            text = sys.stdin.read() if from_list == "-" else Path(from_list).read_text(
                encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--from {from_list}: {exc.strerror or exc}") from None
        pairs += read_list(text, from_key)
    if keys:
        identifiers.append(build_retrieve_identifier((level or "STUDY").upper(), keys))
    if pairs:
        find_model = MODELS["study" if model == "study" else "patient"]
        identifiers += resolve(peer, pairs, find_model=find_model)
    if not identifiers:
        raise UsageError("say what to retrieve: --study, --series, --accession, --patient-id, "
                         "-k or --from")
    return identifiers


def _series_identifier(peer: Peer, model: str, uid: str) -> Any:
    """A SERIES-level identifier; Study Root wants the study UID too: found by C-FIND."""
    from pydicom.dataset import Dataset

    from dcmtool.errors import DcmtoolError
    from dcmtool.scu.find import MODELS
    from dcmtool.scu.find import find as run

    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.SeriesInstanceUID = uid
    query.StudyInstanceUID = ""
    if model == "patient":
        query.PatientID = ""
    found = run(peer, query, MODELS[model])
    if not found.matches:
        raise DcmtoolError(f"series {uid}: not found on {peer.label}")
    match = found.matches[0]
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    if model == "patient":
        identifier.PatientID = match.get("PatientID", "")
    identifier.StudyInstanceUID = match.StudyInstanceUID
    identifier.SeriesInstanceUID = uid
    return identifier


def receiver_opener(out: Path, local: Any, layout: str | None, as_archive: bool) -> Any:
    """How ``scu.retrieve`` opens the storage SCP that writes into ``out``: on the [local]
    port for a C-MOVE to ourselves, on loopback for a C-GET."""
    from functools import partial

    from dcmtool.scp.receiver import open_receiver

    def opener(listen: bool) -> Any:
        return open_receiver(out, ae_title=local.ae_title, port=local.port, bind=local.bind,
                             layout=layout, listen=listen, as_archive=as_archive)

    return partial(opener)


def finish(summary: RetrieveSummary, peer: Peer, as_json: bool, *, destination: str | None,
           local: Any) -> None:
    """Print the summary (stdout) and per-request problems (stderr); raise for the exit code."""
    import json

    from dcmtool.scu.retrieve import check

    for outcome in summary.outcomes:
        if outcome.failed or (outcome.status not in (0x0000, None)):
            from dcmtool.dicom.status import describe

            status = "no answer" if outcome.status is None else describe(outcome.status)
            console.err(f"dcmtool: {outcome.label}: {status}, {outcome.failed} failed"
                        + (f": {outcome.message}" if outcome.message else ""))
            if outcome.failed_uids:
                more = len(outcome.failed_uids) - 3
                console.err("dcmtool:   failed: " + ", ".join(outcome.failed_uids[:3])
                            + (f" and {more} more (--json lists them)" if more > 0 else ""))
        if outcome.status == 0x0000 and not (outcome.completed or outcome.failed
                                             or outcome.warning):
            console.err(f"dcmtool: {outcome.label}: matched no instance on {peer.label}")
        if summary.out_dir is not None and outcome.received < outcome.expected:
            console.err(f"dcmtool: {outcome.label}: the peer reported {outcome.expected} "
                        f"sent, {outcome.received} arrived")
    completed = sum(o.completed for o in summary.outcomes)
    failed = sum(o.failed for o in summary.outcomes)
    warnings = sum(o.warning for o in summary.outcomes)
    not_written = [str(path) for path in getattr(summary.storage_error, "files", [])]
    if as_json:
        console.out(json.dumps({
            "requests": len(summary.outcomes), "completed": completed, "failed": failed,
            "warnings": warnings, "received": summary.received - len(not_written),
            "not_written": not_written,
            "out": str(summary.out_dir) if summary.out_dir else None,
            "seconds": round(summary.seconds, 3),
            "results": [{"request": o.label, "status": None if o.status is None
                         else f"0x{o.status:04X}", "completed": o.completed,
                         "failed": o.failed, "warnings": o.warning, "received": o.received,
                         "failed_sop_instance_uids": o.failed_uids, "message": o.message}
                        for o in summary.outcomes]}, indent=2))
    else:
        rate = completed / summary.seconds if summary.seconds else 0.0
        where = f"; {summary.received - len(not_written)} received, saved to " \
            f"{summary.out_dir}" if summary.out_dir else ""
        console.out(f"{len(summary.outcomes)} request(s): {completed} completed, {failed} "
                    f"failed, {warnings} warnings{where}; {summary.seconds:.2f} s "
                    f"({rate:.0f} instances/s)")
    check(summary, destination=destination, local=local, peer=peer)
