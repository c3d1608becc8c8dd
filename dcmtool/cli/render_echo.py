"""How echo results look: JSON documents and the probe matrix (data for stdout)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dcmtool.cli import console

if TYPE_CHECKING:
    from dcmtool.net.outcomes import Negotiation
    from dcmtool.scu.echo import EchoResult, ProbeResult


def negotiation_json(negotiation: Negotiation | None) -> dict[str, Any] | None:
    if negotiation is None:
        return None
    return {
        "associate_ms": round(negotiation.associate_ms, 3),
        "implementation_class_uid": negotiation.peer_implementation_class_uid,
        "implementation_version_name": negotiation.peer_implementation_version_name,
        "max_pdu": negotiation.peer_max_pdu,
        "contexts": [
            {"id": cx.context_id, "abstract_syntax": cx.abstract_syntax,
             "transfer_syntaxes": list(cx.transfer_syntaxes), "result": cx.reason}
            for cx in negotiation.contexts
        ],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def result_json(result: EchoResult) -> dict[str, Any]:
    peer = result.peer
    return {
        "peer": peer.label,
        "host": peer.host,
        "port": peer.port,
        "called_ae_title": peer.called_ae_title,
        "calling_ae_title": peer.calling_ae_title,
        "ok": result.succeeded,
        "sent": result.sent,
        "succeeded": result.ok,
        "rtt_ms": {"min": _round(result.rtt_min), "avg": _round(result.rtt_avg),
                   "max": _round(result.rtt_max)},
        "attempts": [
            {"sequence": a.sequence, "status": a.status, "rtt_ms": _round(a.rtt_ms)}
            for a in result.attempts
        ],
        "negotiation": negotiation_json(result.negotiation),
        "error": None if result.error is None else {
            "type": type(result.error).__name__,
            "message": result.error.message,
            "exit_code": int(result.error.exit_code),
        },
    }


def probe_json(result: ProbeResult) -> dict[str, Any]:
    from dcmtool.dicom.sopclasses import sop_class_name
    from dcmtool.dicom.syntaxes import describe

    return {
        "peer": result.peer.label,
        "address": result.peer.address,
        "proposed_contexts": result.proposed,
        "associations": result.associations,
        "implementation_class_uid": result.negotiation.peer_implementation_class_uid
        if result.negotiation else None,
        "implementation_version_name": result.negotiation.peer_implementation_version_name
        if result.negotiation else None,
        "accepted": [
            {"sop_class_uid": uid, "sop_class": sop_class_name(uid),
             "transfer_syntaxes": syntaxes,
             "transfer_syntax_names": [describe(t) for t in syntaxes]}
            for uid, syntaxes in result.accepted.items()
        ],
        "rejected": [
            {"sop_class_uid": uid, "sop_class": sop_class_name(uid), "reason": reason}
            for uid, reason in result.rejected.items()
        ],
    }


def class_labels(uids: list[str]) -> dict[str, str]:
    """A readable, unique name per SOP class: pydicom's name without "SOP Class", and
    "(retired)" where a retired class shares its name with a current one."""
    from dcmtool.dicom.sopclasses import sop_class_name, storage_sop_classes

    retired = {c.uid for c in storage_sop_classes() if c.retired}
    names = {uid: sop_class_name(uid).replace(" SOP Class", "") for uid in uids}
    taken: dict[str, int] = {}
    for name in names.values():
        taken[name] = taken.get(name, 0) + 1
    labels = {}
    for uid, name in names.items():
        if taken[name] > 1:
            name = f"{name} (retired)" if uid in retired else name
            if list(names.values()).count(name) > 1 and uid in retired:
                name = f"{name} {uid}"
        labels[uid] = name
    return labels


def print_probe(result: ProbeResult) -> None:
    from dcmtool.dicom.syntaxes import FAMILIES, TRANSFER_SYNTAXES

    members: dict[str, list[str]] = {}
    names: dict[str, list[str]] = {}
    for ts in TRANSFER_SYNTAXES:
        members.setdefault(ts.family, []).append(ts.uid)
        names.setdefault(ts.family, []).append(ts.name)
    labels = class_labels([*result.accepted, *result.rejected])
    rows = []
    for uid, accepted in result.accepted.items():
        accepted_set = set(accepted)
        cells = []
        for family in FAMILIES:
            got = accepted_set.intersection(members[family])
            cells.append("yes" if len(got) == len(members[family]) else
                         ("part" if got else "-"))
        rows.append([labels[uid], *cells])
    console.print_table(["SOP class", *FAMILIES], rows,
                        title=f"{result.peer.label} ({result.peer.address}) accepts:")
    accepted_contexts = sum(len(v) for v in result.accepted.values())
    console.out(
        f"{len(result.accepted)} of {len(result.accepted) + len(result.rejected)} storage SOP "
        f"classes accepted; {accepted_contexts} of {result.proposed} contexts, "
        f"{result.associations} association{'' if result.associations == 1 else 's'}.")
    console.out("yes: every syntax of the column accepted; part: some of them (--json lists "
                "which); -: none.")
    grouped = [f"{family} = {' + '.join(names[family])}" for family in FAMILIES
               if names[family] != [family]]
    console.out("Columns (as --ts names): " + "; ".join(grouped) + ".")
    if result.rejected:
        refused = sorted(labels[uid] for uid in result.rejected)
        shown = ", ".join(refused[:_REFUSED_SHOWN])
        more = len(refused) - _REFUSED_SHOWN
        console.out(f"Refused ({len(refused)}): {shown}"
                    + (f" and {more} more (--json lists them)." if more > 0 else "."))


#: How many refused classes the table's footer names.
_REFUSED_SHOWN = 20
