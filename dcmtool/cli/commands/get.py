"""dcmtool get: retrieve with C-GET over the same association (no inbound port needed)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from dcmtool.cli import completion, console, options, progress
from dcmtool.cli.commands.move import finish, receiver_opener, selection
from dcmtool.cli.groups import (
    LoggingOptions,
    NetworkOptions,
    SelectionOptions,
    logging_options,
    network_options,
    selection_options,
)

EPILOG = """Examples:

\b
  dcmtool get PACS --study 1.2.840.113619.2.1 -o ./in
  dcmtool get PACS --accession A12345 -o ./in --store-classes 1.2.840.10008.5.1.4.1.1.2
  dcmtool find PACS -k StudyDate=20260101 --jsonl | dcmtool get PACS --from - -o ./in

C-GET needs a presentation context for every SOP class it receives, and one association
holds 128. A peer sends each file in a context of its syntax, or converts it (or fails it
when it cannot), so classes get a context per compressed syntax as far as 128 allows. By
default dcmtool offers 31 common storage classes (CT, MR, CR and DX with a context per
syntax, the others uncompressed and with their compressed syntaxes in one context);
--store-classes names others, --exact-classes asks the peer first (C-FIND at IMAGE level)
which classes the selection holds, and in which transfer syntaxes.
"""


@selection_options
@network_options
@logging_options
def get(
    peer: Annotated[list[str], typer.Argument(metavar="PEER", autocompletion=completion.peers,
                                              help="Node name, "
                    "AET@HOST:PORT, or HOST PORT.", show_default=False)],
    out: options.Out = None,
    selected: SelectionOptions = SelectionOptions(),
    store_classes: Annotated[Optional[list[str]], typer.Option(
        "--store-classes", metavar="CLASS", autocompletion=completion.storage_classes,
        help="SOP classes to receive, by keyword "
        "(MRImageStorage) or UID (repeatable; default: 31 common storage classes).",
        show_default=False)] = None,
    exact_classes: Annotated[bool, typer.Option(
        "--exact-classes", help="Ask the peer (C-FIND, IMAGE level) which SOP classes the "
        "selection holds, and in which transfer syntaxes, and offer exactly those.")] = False,
    patient_root: options.PatientRoot = False,
    study_root: options.StudyRoot = False,
    patient_study_only: options.PatientStudyOnly = False,
    layout: options.Layout = None,
    as_archive: options.AsArchive = False,
    json_output: options.JsonOutput = False,
    *,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Retrieve studies, series or instances with C-GET into --out DIR."""
    from dcmtool.net.stack import load_network_only

    load_network_only()  # received data sets are stored as they come: no pixel codecs
    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.network import resolve
    from dcmtool.cli.state import settings
    from dcmtool.errors import UsageError
    from dcmtool.scu.retrieve import COMMON_STORAGE_CLASSES, GET_MODELS, holdings_in
    from dcmtool.scu.retrieve import get as run

    apply_logging(logging)
    if out is None:
        raise UsageError("give --out DIR: where the retrieved instances go")
    target = resolve(peer, network)
    model = options.model_name(patient_root, study_root, patient_study_only)
    identifiers = selection(target, model, selected)
    classes = _storage_classes(store_classes or [])
    held: dict[str, set[str]] = {}
    if exact_classes:
        held = holdings_in(target, identifiers, model)
        if not held:
            console.err(f"dcmtool: {target.label} named no SOP Class UID at IMAGE level; "
                        "offering the default storage classes")
        classes += held
    local = settings.config().local
    with progress.retrievals("get", requests=len(identifiers),
                             quiet=settings.quiet) as on_progress:
        summary = run(target, identifiers, model=GET_MODELS[model], out_dir=out,
                      open_receiver=receiver_opener(out, local, layout, as_archive),
                      store_classes=classes or COMMON_STORAGE_CLASSES, held=held,
                      per_syntax=True, on_progress=on_progress)
    _explain_failures(summary, chose_classes=bool(exact_classes or store_classes))
    finish(summary, target, json_output, destination=None, local=None)


def _storage_classes(names: list[str]) -> list[str]:
    """--store-classes as UIDs: keywords and UIDs, a typo is a usage error naming near
    misses (pynetdicom would otherwise warn on both sides and propose nothing useful)."""
    from dcmtool.dicom.sopclasses import storage_class_uid
    from dcmtool.errors import UsageError

    uids = []
    for name in names:
        try:
            uids.append(storage_class_uid(name))
        except ValueError as exc:
            raise UsageError(f"--store-classes: {exc}", setting="store_classes") from None
    return uids


def _explain_failures(summary: Any, *, chose_classes: bool) -> None:
    """A hint that fits why sub-operations failed: classes we did not offer only when the
    peer says so (or says nothing and the default classes were offered)."""
    failed = [o for o in summary.outcomes if o.failed]
    if not failed:
        return
    reasons = " ".join(o.message for o in failed).lower()
    if "presentation context" in reasons:
        console.err("dcmtool: hint: the selection holds SOP classes this get did not offer: "
                    + ("check --store-classes" if chose_classes else
                       "try --exact-classes, or name them with --store-classes"))
    elif not reasons.strip() and not chose_classes:
        console.err("dcmtool: hint: the peer gave no reason; if the selection holds SOP "
                    "classes this get did not offer, try --exact-classes; the peer's log "
                    "says more")
