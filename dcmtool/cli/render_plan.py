"""Printing ``store --dry-run`` / ``--offline`` (``scu.store_plan``): a table of what would
happen on stdout, grouped by association, SOP class, transfer syntax and outcome; or JSON
with every file."""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from dcmtool.cli import console

if TYPE_CHECKING:
    from dcmtool.scu.store_plan import StorePlan


def print_plan(plan: StorePlan, as_json: bool) -> None:
    from dcmtool.dicom.sopclasses import sop_class_name
    from dcmtool.dicom.syntaxes import describe
    from dcmtool.scu.store_plan import CONVERTED, REFUSED

    if as_json:
        console.out(json.dumps(plan_json(plan), indent=2))
        return
    groups = Counter((f.association, f.sop_class_uid, f.transfer_syntax, f.action, f.on_wire,
                      f.reason) for f in plan.files)
    for association in plan.associations:
        answered = ""
        if association.negotiation is not None:
            accepted = len(association.negotiation.accepted)
            answered = f", {accepted} accepted by the peer"
        console.out(f"association {association.number}: {len(association.contexts)} "
                    f"presentation context(s){answered}, {association.files} file(s)")
        for index, cx in enumerate(association.contexts):
            syntaxes = " or ".join(describe(ts) for ts in cx.transfer_syntaxes)
            answer = _answer(association.negotiation, index)
            said = "" if not answer else (
                f": accepted as {describe(answer['transfer_syntax'])}" if answer["accepted"]
                else f": refused ({answer['reason']})")
            console.out(f"  context {2 * index + 1}: {sop_class_name(cx.abstract_syntax)} as "
                        f"{syntaxes}{said}")
        for (number, sop_class, syntax, action, on_wire, reason), count in groups.items():
            if number != association.number:
                continue
            what = action
            if action == CONVERTED and on_wire:
                what = f"converted to {describe(on_wire)}"
            elif action == REFUSED:
                what = f"refused: {reason}"
            console.out(f"  {count:>6} file(s), {sop_class_name(sop_class)} in "
                        f"{describe(syntax)}: {what}")
    counts = ", ".join(f"{count} {action}" for action, count in plan.counts.items())
    where = "planned without connecting (--offline)" if plan.offline else \
        "negotiated and released; nothing sent"
    console.out(f"{len(plan.files)} file(s) in {len(plan.associations)} association(s), "
                f"{where}: {counts}")


def plan_json(plan: StorePlan) -> dict[str, Any]:
    return {
        "offline": plan.offline,
        "counts": plan.counts,
        "associations": [{
            "association": a.number,
            "files": a.files,
            "contexts": [{"abstract_syntax": cx.abstract_syntax,
                          "transfer_syntaxes": list(cx.transfer_syntaxes),
                          **_answer(a.negotiation, index)}
                         for index, cx in enumerate(a.contexts)],
        } for a in plan.associations],
        "files": [{"path": str(f.path), "association": f.association,
                   "sop_class_uid": f.sop_class_uid, "transfer_syntax": f.transfer_syntax,
                   "action": f.action, "on_wire": f.on_wire,
                   **({"reason": f.reason} if f.reason else {})} for f in plan.files],
    }


def _answer(negotiation: Any, index: int) -> dict[str, Any]:
    """What the peer said to the context proposed ``index``-th (IDs 1, 3, 5, ...)."""
    if negotiation is None:
        return {}
    result = next((cx for cx in negotiation.contexts if cx.context_id == 2 * index + 1), None)
    if result is None:
        return {"accepted": False, "reason": "no answer"}
    if result.accepted:
        return {"accepted": True, "transfer_syntax": result.transfer_syntaxes[0]}
    return {"accepted": False, "reason": result.reason}
