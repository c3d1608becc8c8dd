"""dcmtool commit: ask a peer to commit to keeping instances (Storage Commitment Push Model)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from dcmtool.cli import completion, console
from dcmtool.cli.groups import (
    LoggingOptions,
    NetworkOptions,
    OutputOptions,
    SelectionOptions,
    logging_options,
    network_options,
    output_options,
    selection_options,
)

if TYPE_CHECKING:
    from dcmtool.config import Peer
    from dcmtool.scu.commit import CommitResult, Requested

EPILOG = """Examples:

\b
  dcmtool commit PACS ./export                    # files and folders, recursively
  dcmtool commit PACS sent.json                   # what a 'store --report' lists as stored
  dcmtool commit PACS --study 1.2.840.113619.2.1  # the peer is asked what the study holds
  dcmtool find PACS -k PatientID=123 --jsonl | dcmtool commit PACS --from -
  dcmtool commit PACS ./export --per-study --wait 300 --report commit.json
  dcmtool commit PACS --pending commit.json --wait 3600   # reports that came late

The peer answers each request at once and reports the outcome later: on the same association,
kept open up to --wait seconds, or on a new association to our [local] port (--port), for
which it must know our AE title at this host and port. Exit 0 only when every instance was
committed, 7 when some were not, 6 when none was, 8 when a report did not come within --wait
(the outcome is unknown; --report keeps the transaction UIDs).
"""

Wait = Annotated[float, typer.Option(
    "--wait", min=0, metavar="SECONDS", help="How long to wait for the peer's reports after "
    "the requests.")]
PerStudy = Annotated[bool, typer.Option(
    "--per-study", help="One transaction (N-ACTION) per study instead of one for all.")]
Port = Annotated[Optional[int], typer.Option(
    "--port", min=0, max=65535, metavar="PORT", help="Where the peer may report on a new "
    "association (default [local] port).", show_default=False)]


@selection_options
@output_options
@network_options
@logging_options
def commit(
    peer: Annotated[str, typer.Argument(metavar="PEER", autocompletion=completion.peers,
                                        help="Node name, AET@HOST:PORT, or HOST PORT.",
                                        show_default=False)],
    inputs: Annotated[Optional[list[str]], typer.Argument(
        metavar="INPUT...", help="Files, folders, a DICOMDIR, a 'store --report' file, or - "
        "for paths on stdin.", show_default=False)] = None,
    wait: Wait = 60.0,
    per_study: PerStudy = False,
    report: Annotated[Optional[Path], typer.Option(
        "--report", metavar="FILE", help="Keep the transaction UIDs and every instance's "
        "result in FILE (.json, or .csv rows).", show_default=False)] = None,
    port: Port = None,
    pending: Annotated[Optional[Path], typer.Option(
        "--pending", metavar="REPORT", help="Request nothing: wait on our port for the reports "
        "a previous --report lists as not reported, and bring REPORT up to date.",
        show_default=False)] = None,
    release: Annotated[bool, typer.Option(
        "--release", help="Release the association once the requests are answered: the "
        "peer reports on a new association to our port.")] = False,
    selected: SelectionOptions = SelectionOptions(),
    *,
    output: OutputOptions,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Ask a peer to commit to keeping instances (storage commitment)."""
    from dcmtool.cli import render_commit
    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.state import overrides, settings
    from dcmtool.config import resolve_peer, split_peer_arguments
    from dcmtool.scu.commit import check
    from dcmtool.scu.commit import commit as run

    apply_logging(logging)
    config = settings.config()
    spec: str | tuple[str, int] = peer
    inputs = list(inputs or [])
    if inputs and peer not in config.nodes:
        grouped = split_peer_arguments([peer, inputs[0]])
        if isinstance(grouped[0], tuple):
            spec, inputs = grouped[0], inputs[1:]
    target = resolve_peer(spec, config, overrides(network))
    if pending is not None:
        late(target, pending, inputs, selected, wait=wait, port=port, output=output)
        return
    items = requested(target, inputs, selected)
    result = run(target, items, wait=wait, per_study=per_study,
                 local=local_ae(port), on_progress=render_commit.progress(settings.verbose),
                 keep_open=not release)
    if report:
        render_commit.write_report(report, result, target)
    render_commit.say_problems(result)
    if result.error is None:
        render_commit.print_results(result, target, output)
        if not settings.quiet:
            console.err(f"dcmtool: {render_commit.summary(result)}")
    check(result)


def late(target: Peer, report: Path, inputs: list[str], selected: SelectionOptions, *,
         wait: float, port: int | None, output: OutputOptions) -> None:
    """--pending: the late reports of the transactions REPORT lists as not reported."""
    from dcmtool.cli import render_commit
    from dcmtool.cli.state import settings
    from dcmtool.errors import UsageError
    from dcmtool.scu.commit import await_reports, check
    from dcmtool.scu.commit_inputs import pending_transactions

    if inputs or any(dataclasses.astuple(selected)):
        raise UsageError("--pending requests nothing: give no INPUT or selection with it")
    transactions, calling = pending_transactions(report)
    if not transactions:
        console.err(f"dcmtool: {report}: no transaction waits for its report")
        return
    result = await_reports(transactions, wait=wait, local=local_ae(port),
                           ae_title=calling or target.calling_ae_title,
                           on_progress=render_commit.progress(settings.verbose))
    render_commit.update_report(report, result)
    render_commit.print_results(result, target, output)
    if not settings.quiet:
        console.err(f"dcmtool: {render_commit.summary(result)}")
    check(result)


def local_ae(port: int | None) -> Any:
    """[local] with --port applied."""
    from dcmtool.cli.state import settings

    local = settings.config().local
    return local if port is None else dataclasses.replace(local, port=port)


def after_store(target: Peer, instances: list[Any], outcomes: list[Any], *, wait: float,
                port: int | None) -> CommitResult:
    """``store --commit``: commitment of what the peer stored, by the UIDs it was sent (new
    ones with --new-uids), the class read from each file."""
    from dcmtool.cli import render_commit
    from dcmtool.cli.state import settings
    from dcmtool.scu.commit import Requested
    from dcmtool.scu.commit import commit as run

    by_path = {i.path: i for i in instances}
    items = []
    for outcome in outcomes:
        instance = by_path.get(outcome.path)
        if not outcome.stored or instance is None:
            continue
        renamed = {keyword: new for keyword, _old, new in outcome.renamed}
        items.append(Requested(instance.sop_class_uid,
                               str(outcome.sop_instance_uid or instance.sop_instance_uid),
                               renamed.get("StudyInstanceUID", instance.study_instance_uid),
                               str(instance.path)))
    return run(target, items, wait=wait, local=local_ae(port),
               on_progress=render_commit.progress(settings.verbose))


def requested(target: Peer, inputs: list[str], selected: SelectionOptions) -> list[Requested]:
    """The instances named by files, folders, DICOMDIRs, store reports and the selection
    flags (resolved by C-FIND at IMAGE level on the peer)."""
    from dcmtool.errors import UsageError
    from dcmtool.scu.commit import Requested
    from dcmtool.scu.commit_inputs import from_peer, from_store_report, is_store_report

    items: list[Requested] = []
    files: list[str] = []
    for name in inputs:
        if is_store_report(Path(name)):
            listed, not_stored = from_store_report(Path(name))
            items += listed
            if not_stored:
                console.err(f"dcmtool: {name}: {not_stored} file(s) it lists as not stored "
                            "are left out")
        else:
            files.append(name)
    if files:
        from dcmtool.dicom.files import find_files
        from dcmtool.scu.store import scan

        scanned = scan(find_files(files, sys.stdin))
        items += [Requested.of(i) for i in scanned.instances]
        if scanned.not_dicom:
            console.err(f"dcmtool: skipped {len(scanned.not_dicom)} file(s) that are not DICOM")
        for path, problem in scanned.broken:
            console.err(f"dcmtool: skipped {path}: {problem}")
    if any(dataclasses.astuple(selected)):
        from dcmtool.cli.commands.move import selection
        from dcmtool.dicom.sopclasses import STUDY_ROOT_FIND

        found = from_peer(target, selection(target, "study", selected), STUDY_ROOT_FIND)
        if not found:
            raise UsageError(f"the selection matches no instance on {target.label}")
        items += found
    if not items:
        raise UsageError("say what to commit: files, folders, a store report, --study, "
                         "--series, --accession, --patient-id, -k or --from")
    return items
