"""Storage commitment results: one row per instance on stdout, the summary on stderr, and the
report file that keeps the Transaction UIDs (``dcmtool commit``, ``dcmtool store --commit``).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcmtool.cli import console

if TYPE_CHECKING:
    from dcmtool.cli.groups import OutputOptions
    from dcmtool.config import Peer
    from dcmtool.scu.commit import CommitResult, InstanceResult, Transaction

#: The columns of a row, in order (report, CSV, tab-separated output, --jsonl).
COLUMNS = ("sop_instance_uid", "result", "reason", "failure_reason", "sop_class_uid",
           "study_instance_uid", "transaction_uid", "committed", "source")


def row(result: InstanceResult) -> dict[str, Any]:
    from dcmtool.scu.commit import NOT_REPORTED, NOT_REQUESTED

    item = result.item
    return {
        "sop_instance_uid": item.sop_instance_uid,
        "result": result.state,
        "reason": result.message,
        "failure_reason": None if result.failure_reason is None
        else f"0x{result.failure_reason:04X}",
        "sop_class_uid": item.sop_class_uid,
        "study_instance_uid": item.study_instance_uid or None,
        "transaction_uid": result.transaction_uid,
        # None: unknown (no report in time), so that a later report can still say
        "committed": None if result.state in (NOT_REPORTED, NOT_REQUESTED)
        else result.committed,
        "source": item.source or None,
    }


def transaction_json(transaction: Transaction) -> dict[str, Any]:
    seconds = transaction.seconds
    return {
        "transaction_uid": transaction.uid,
        "instances": len(transaction.items),
        "study_instance_uid": transaction.study_instance_uid,
        "status": None if transaction.status is None else f"0x{transaction.status:04X}",
        "reported": transaction.reported,
        "reported_via": transaction.via,
        "reporter": transaction.reporter or None,
        "committed": len(transaction.committed),
        "failed": len(transaction.failed) if transaction.reported else 0,
        "seconds": None if seconds is None else round(seconds, 3),
        "message": transaction.why_not() if not transaction.accepted else None,
    }


def counts(result: CommitResult) -> dict[str, int]:
    from dcmtool.scu.commit import COMMITTED, FAILED, NOT_REPORTED, NOT_REQUESTED

    states = [r.state for r in result.results()]
    return {"total": len(states), "committed": states.count(COMMITTED),
            "failed": states.count(FAILED), "not_reported": states.count(NOT_REPORTED),
            "not_requested": states.count(NOT_REQUESTED)}


def document(result: CommitResult, peer: Peer) -> dict[str, Any]:
    """Everything, as ``--json`` prints it and a ``.json`` report keeps it."""
    return {
        "peer": peer.address, "calling_ae_title": peer.calling_ae_title,
        "port": result.port, **counts(result), "wait": result.wait,
        "seconds": round(result.seconds, 3),
        "transactions": [transaction_json(t) for t in result.transactions],
        "instances": [row(r) for r in result.results()],
    }


def write_report(path: Path, result: CommitResult, peer: Peer) -> None:
    """``.csv``: one row per instance; anything else: the JSON document."""
    if path.suffix.lower() == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
            writer.writeheader()
            writer.writerows(row(r) for r in result.results())
        return
    path.write_text(json.dumps(document(result, peer), indent=2) + "\n", encoding="utf-8")


def update_report(path: Path, result: CommitResult) -> None:
    """Bring a commit report up to date with the late reports in ``result`` (``--pending``):
    the rows and transactions they answer are replaced, the counts recomputed."""
    import tempfile

    fresh = {r["sop_instance_uid"]: r for r in (row(x) for x in result.results())}
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        rows = [fresh.get(r["sop_instance_uid"], r) for r in csv.DictReader(text.splitlines())]
        with tempfile.NamedTemporaryFile("w", newline="", encoding="utf-8", dir=path.parent,
                                         delete=False) as fh:
            writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
            writer.writeheader()
            writer.writerows(rows)
        Path(fh.name).replace(path)
        return
    doc = json.loads(text)
    doc["instances"] = [fresh.get(r["sop_instance_uid"], r) for r in doc["instances"]]
    updated = {t.uid: transaction_json(t) for t in result.transactions}
    doc["transactions"] = [updated.get(t["transaction_uid"], t) for t in doc["transactions"]]
    states = [r["result"] for r in doc["instances"]]
    doc.update(total=len(states), committed=states.count("committed"),
               failed=states.count("failed"), not_reported=states.count("not reported"),
               not_requested=states.count("not requested"))
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent,
                                     delete=False) as fh:
        fh.write(json.dumps(doc, indent=2) + "\n")
    Path(fh.name).replace(path)


def print_results(result: CommitResult, peer: Peer, output: OutputOptions) -> None:
    """One row per instance on stdout: a table on a terminal, tab-separated into a pipe."""
    if output.json_output:
        console.out(json.dumps(document(result, peer), indent=2))
        return
    rows = [row(r) for r in result.results()]
    if output.jsonl:
        for item in rows:
            console.out(json.dumps(item))
        return
    if output.as_csv or not sys.stdout.isatty():
        if output.as_csv:
            writer = csv.DictWriter(sys.stdout, fieldnames=list(COLUMNS), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        else:
            lines = ["\t".join(COLUMNS)] + ["\t".join("" if r[c] is None else str(r[c])
                                                      for c in COLUMNS) for r in rows]
            sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()
        return
    from dcmtool.dicom.sopclasses import sop_class_name

    columns = [console.Column("Result"), console.Column("SOP Instance UID", whole=True),
               console.Column("Class", rank=30), console.Column("Reason", rank=60)]
    cells = [[r["result"], r["sop_instance_uid"], sop_class_name(r["sop_class_uid"]),
              r["reason"]] for r in rows]
    console.print_table(columns, cells)


def summary(result: CommitResult) -> str:
    """``500 instance(s): 498 committed, 2 failed; reported on a new association by ORTHANC
    after 0.42 s``."""
    numbers = counts(result)
    parts = [f"{numbers['committed']} committed", f"{numbers['failed']} failed"]
    if numbers["not_reported"]:
        parts.append(f"{numbers['not_reported']} not reported")
    if numbers["not_requested"]:
        parts.append(f"{numbers['not_requested']} not requested")
    line = f"{numbers['total']} instance(s): {', '.join(parts)}"
    reported = [t for t in result.transactions if t.reported]
    if reported:
        vias = {t.via for t in reported}
        where = ("on the same association" if vias == {"same association"} else
                 "on a new association" if vias == {"new association"} else
                 "on the same and on new associations")
        who = sorted({t.reporter for t in reported if t.reporter})
        slowest = max(t.seconds or 0.0 for t in reported)
        line += (f"; {len(reported)} of {len(result.transactions)} transaction(s) reported "
                 f"{where}" + (f" by {', '.join(who)}" if who else "")
                 + f", {slowest:.2f} s after the request")
    return line


def progress(verbose: int) -> Any:
    """The ``on_progress`` of a commitment: a line per transaction at ``-v``."""

    def report(transaction: Transaction) -> None:
        if not verbose:
            return
        count = len(transaction.items)
        if transaction.reported:
            console.err(f"dcmtool: transaction {transaction.uid}: reported on the "
                        f"{transaction.via} by {transaction.reporter or 'the peer'}: "
                        f"{len(transaction.committed)} committed, "
                        f"{len(transaction.failed)} failed")
        elif transaction.accepted:
            console.err(f"dcmtool: transaction {transaction.uid}: {count} instance(s) "
                        "requested")
        else:
            console.err(f"dcmtool: transaction {transaction.uid}: {transaction.why_not()}")

    return report


def say_problems(result: CommitResult) -> None:
    """What stderr needs beyond the rows: an association that ended early, said once."""
    if result.aborted_by is not None:
        console.err(f"dcmtool: error: {result.aborted_by.message}; "
                    f"{counts(result)['not_requested']} instance(s) not requested")


# -- dcmtool store --commit ------------------------------------------------------------------


def annotate(rows: list[dict[str, Any]], result: CommitResult) -> None:
    """Give store report rows (by SOP Instance UID) their commitment: ``committed`` (true,
    false, or null when unknown), ``commitment`` (the result or failure reason in words) and
    the ``transaction_uid`` a later report would name."""
    by_uid = {r.item.sop_instance_uid: r for r in result.results()}
    for item in rows:
        found = by_uid.get(str(item.get("sop_instance_uid")))
        if found is None or not item.get("stored", True):
            item.update(committed=None, commitment=None, transaction_uid=None)
            continue
        described = row(found)
        item.update(committed=described["committed"],
                    commitment=found.message or found.state,
                    transaction_uid=found.transaction_uid)


def store_json(result: CommitResult) -> dict[str, Any]:
    """What ``store --commit --json`` adds to store's summary."""
    numbers = counts(result)
    return {"committed": numbers["committed"],
            "not_committed": numbers["total"] - numbers["committed"],
            "transactions": [transaction_json(t) for t in result.transactions]}


def print_after_store(result: CommitResult) -> None:
    """Store's summary line is followed by the commitment's."""
    say_problems(result)
    if result.error is None:
        console.out(f"storage commitment: {summary(result)}")
