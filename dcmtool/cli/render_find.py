"""Query results on stdout: a table, DICOM JSON (--json), JSON lines (--jsonl) or CSV."""

from __future__ import annotations

import csv
import json
import sys
from typing import Any

from dcmtool.cli import console
from dcmtool.cli.groups import OutputOptions


def columns_for(identifier: Any) -> list[str]:
    """Column names in the identifier's order (sequence keys as Seq[0].Key)."""
    from dcmtool.scu.find import flatten

    return [name for name in flatten(identifier) if name != "QueryRetrieveLevel"]


def render(matches: list[Any], identifier: Any, output: OutputOptions) -> None:
    from dcmtool.scu.find import flatten

    if output.json_output:
        console.out(json.dumps([_json(m) for m in matches], indent=2, ensure_ascii=False))
        return
    if output.jsonl:
        for match in matches:
            console.out(json.dumps(_json(match), ensure_ascii=False))
        return
    columns = columns_for(identifier)
    rows = [flatten(m) for m in matches]
    for row in rows:  # keys the peer sent without being asked still show
        for name in row:
            if name not in columns and name != "QueryRetrieveLevel":
                columns.append(name)
    if output.as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[row.get(c, "") for c in columns] for row in rows])
        sys.stdout.flush()
        return
    console.print_table(columns, [[row.get(c, "") for c in columns] for row in rows])


def _json(ds: Any) -> dict[str, Any]:
    """The DICOM JSON model of one response; values that break their VR are left out."""
    return dict(ds.to_json_dict(suppress_invalid_tags=True))
