"""The results: medians, A/B ratios and target verdicts per row, as a plain-text table and
as the JSON document of ``--json``."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from bench.harness import CaseResult, Row, Unit


def values(row: Row, unit: Unit) -> list[float]:
    return [unit.convert(s, row.program.work) for s in row.samples]


def summarize(result: CaseResult) -> list[dict[str, Any]]:
    """Median/min/max, ratio to dcmtool and target verdicts for each row of a case."""
    unit = result.case.unit
    medians: dict[int, float] = {}
    for i, row in enumerate(result.rows):
        if row.error is None and row.samples:
            medians[i] = statistics.median(values(row, unit))
    subject = next((i for i, r in enumerate(result.rows) if r.program.role == "dcmtool"), None)
    by_label = {r.program.label: i for i, r in enumerate(result.rows)}
    out = []
    for i, row in enumerate(result.rows):
        p = row.program
        vals = values(row, unit) if row.error is None else []
        median = medians.get(i)
        own = by_label.get(p.subject) if p.subject is not None else subject
        base = medians.get(own) if own is not None else None
        ratio = base / median if (base is not None and median and i != own) else None
        target = p.target
        met: bool | None = None
        versus: float | None = None  # with Target.versus: this row's median / the other's
        if target is not None:
            measured = ratio if target.relative else median
            if target.other is not None:
                other = medians.get(by_label.get(target.other, -1))
                measured = versus = median / other if (median is not None and other) else None
            if measured is not None:
                met = target.met(measured)
        out.append({
            "program": p.label,
            "role": p.role,
            "argv": p.argv,
            "env": p.env,
            "server": p.server,
            "unit": unit.name,
            "runs": len(row.samples),
            "median": median,
            "min": min(vals) if vals else None,
            "max": max(vals) if vals else None,
            "samples": vals,
            "items_per_s": items_per_s(row),
            "ratio_dcmtool_over_this": ratio,
            "subject": p.subject,
            "target": target.text(unit) if target else None,
            "met": met,
            "ratio_this_over_target_row": versus,
            "error": row.error,
        })
    return out


def items_per_s(row: Row) -> float | None:
    """Median items/s of a row that says how many items a run moves (``Program.items``)."""
    if row.error is not None or not row.program.items or not row.seconds:
        return None
    return statistics.median(row.program.items / s for s in row.seconds)


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.1f}"


def table(results: list[CaseResult]) -> tuple[str, list[dict[str, Any]]]:
    """The plain-text table and the JSON-ready data."""
    header = ["case", "program", "median", "min", "max", "items/s", "dcmtool/this", "target",
              "met?"]
    lines: list[list[str] | tuple[str, str]] = []  # a tuple: (case, message) for a whole case
    notes: list[str] = []
    data = []
    for result in results:
        name = result.case.name
        if result.error is not None:
            status = "SKIPPED" if result.skipped else "ERROR"
            lines.append((name, f"{status}: {result.error}"))
            data.append({"case": name, "unit": result.case.unit.name,
                         "summary": result.case.summary, "error": result.error,
                         "skipped": result.skipped, "rows": []})
            continue
        rows = summarize(result)
        data.append({"case": name, "unit": result.case.unit.name,
                     "summary": result.case.summary, "runs": result.runs,
                     "warmups": result.warmups, "notes": result.notes, "rows": rows})
        notes += [f"{name}: {note}" for note in result.notes]
        for r in rows:
            if r["error"] is not None:
                notes.append(f"{name} / {r['program']}: {r['error']}")
                lines.append([name, r["program"], "ERROR", "-", "-", "", "-",
                              r["target"] or "", "n/a" if r["target"] else ""])
                continue
            met = {True: "yes", False: "NO", None: "n/a" if r["target"] else ""}[r["met"]]
            if r["role"] == "info" and not met:
                met = "(info)"
            if r["ratio_this_over_target_row"] is not None:  # the ratio its target judges
                met += f" ({r['ratio_this_over_target_row']:.2f}x)"
            ratio = r["ratio_dcmtool_over_this"]
            lines.append([
                name, r["program"], f"{fmt(r['median'])} {r['unit']}", fmt(r["min"]),
                fmt(r["max"]), "" if r["items_per_s"] is None else fmt(r["items_per_s"]),
                f"{ratio:.2f}x" if ratio is not None else "-", r["target"] or "", met,
            ])
    if not any(line[5] for line in lines if isinstance(line, list)):  # no items/s anywhere
        header.pop(5)
        for line in lines:
            if isinstance(line, list):
                line.pop(5)
    cells = [header] + [line for line in lines if isinstance(line, list)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    widths[0] = max([widths[0]] + [len(line[0]) for line in lines if isinstance(line, tuple)])
    right = set(range(2, header.index("dcmtool/this") + 1))

    def render(row: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    text = [render(header), render(["-" * w for w in widths])]
    text += [f"{line[0].ljust(widths[0])}  {line[1]}" if isinstance(line, tuple) else render(line)
             for line in lines]
    if notes:
        text += ["", "Errors and notes:"] + [f"  {note}" for note in notes]
    return "\n".join(text), data


def write_json(path: str, document: dict[str, Any]) -> None:
    """The ``--json`` file: the run's settings and environment, and ``table()``'s data."""
    Path(path).write_text(json.dumps(document, indent=2) + "\n")
