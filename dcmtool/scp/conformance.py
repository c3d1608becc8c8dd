"""serve's conformance statement, from its live configuration (``serve --conformance``).

What is accepted comes from the accepting AE itself: it is built as ``serve`` builds it
(``server.acceptor_settings``, ``acceptor.make_acceptor``, not listening) and its supported
presentation contexts are read back, so the statement cannot claim a context serve would
refuse or omit one it accepts. Policies, keys and statuses come from the modules that apply
them (``archive.index``, ``archive.query``, ``scp.worklist``, ``dicom.status``). The result
is plain data (JSON-ready); the CLI renders it in the form of a DICOM conformance statement
(PS3.2), as Markdown.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from dcmtool.dicom import status
from dcmtool.dicom.commitment import STORAGE_COMMITMENT_PUSH
from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
from dcmtool.dicom.mpps import MPPS_SOP_CLASS
from dcmtool.dicom.sopclasses import (
    MODALITY_WORKLIST_FIND,
    QR_MODELS,
    VERIFICATION,
    sop_class_name,
)
from dcmtool.scp.options import ServeOptions

#: The statuses each service answers with (PS3.4 annexes; codes from ``dicom.status``).
STATUSES: dict[str, tuple[int, ...]] = {
    "C-ECHO": (status.SUCCESS,),
    "C-STORE": (status.SUCCESS, status.DUPLICATE_SOP_INSTANCE, 0x0116, status.OUT_OF_RESOURCES,
                status.IDENTIFIER_DOES_NOT_MATCH, status.CANNOT_UNDERSTAND),
    "C-FIND": (status.SUCCESS, status.PENDING, status.CANCEL,
               status.IDENTIFIER_DOES_NOT_MATCH, status.CANNOT_UNDERSTAND),
    "C-MOVE": (status.SUCCESS, status.PENDING, status.SOME_SUBOPERATIONS_FAILED,
               status.SUBOPERATIONS_FAILED, status.UNKNOWN_MOVE_DESTINATION, status.CANCEL,
               status.IDENTIFIER_DOES_NOT_MATCH, status.CANNOT_UNDERSTAND),
    "C-GET": (status.SUCCESS, status.PENDING, status.SOME_SUBOPERATIONS_FAILED,
              status.SUBOPERATIONS_FAILED, status.CANCEL, status.IDENTIFIER_DOES_NOT_MATCH,
              status.CANNOT_UNDERSTAND),
    "N-ACTION (Storage Commitment)": (status.SUCCESS, 0x0110),
    "N-CREATE / N-SET (MPPS)": (status.SUCCESS, 0x0110, 0x0111, 0x0112),
}

_MATCHING_TYPES = (
    "single value (all VRs; PN matches with or without trailing empty components)",
    "universal (empty key)",
    "wildcard * and ? (not for UI, DA, TM, DT)",
    "range (DA, TM, DT, open ranges included)",
    "list of UIDs (UI, backslash separated)",
    "sequence (the first item's values, wildcards allowed)",
    "Modalities / SOP Classes in Study: a study matches when one of its series (instances) "
    "has one of the values",
)


def statement(options: ServeOptions, *, duplicates: str = "ignore", layout: str = "",
              min_free_bytes: int = 0) -> dict[str, Any]:
    """The conformance statement of a ``serve`` with these options (JSON-ready)."""
    from dcmtool.archive.index import INSTANCE_KEYS, PATIENT_KEYS, SERIES_KEYS, STUDY_KEYS
    from dcmtool.archive.query import COMPUTED_KEYS
    from dcmtool.dicom.elements import CODECS
    from dcmtool.scp.worklist import REQUIRED_KEYS, REQUIRED_STEP_KEYS

    contexts = accepted_contexts(options, min_free_bytes)
    tls = bool(options.tls_cert)
    return {
        "implementation": {"class_uid": IMPLEMENTATION_CLASS_UID,
                           "version_name": implementation_version_name()},
        "application_entity": {
            "ae_title": options.ae_title, "bind": options.bind, "port": options.port,
            "max_pdu": options.max_pdu, "max_associations": options.max_associations,
            "acse_timeout": options.acse_timeout, "dimse_timeout": options.dimse_timeout,
            "network_timeout": options.network_timeout,
            "called_ae_title_checked": options.require_called_aet,
            "calling_ae_titles_allowed": list(options.allowed_calling_aets) or None,
            "tls": tls, "tls_client_certificates_required": tls and bool(options.tls_ca),
            "asynchronous_operations_window": "not negotiated (one operation at a time)",
            "association_initiation": "C-MOVE sub-operations to the config file's nodes; "
                                      "Storage Commitment N-EVENT-REPORTs when the requester "
                                      "has gone",
        },
        "services": _services(contexts),
        "storage": {
            "transfer_syntax_preference": list(options.transfer_syntaxes),
            "selection_policy": "of the syntaxes a context proposes, the first in this list; "
                                "data sets are stored as received, never re-encoded",
            "unknown_sop_classes_accepted": options.accept_unknown,
            "duplicates": duplicates,
            "min_free_bytes": min_free_bytes,
            "layout": layout,
            "durability": "acknowledged once the file is fsynced, its index rows committed "
                          "and its folder entry fsynced",
        },
        "query_retrieve": {
            "models": [sop_class_name(uid) for uid in QR_MODELS
                       if uid in {c["abstract_syntax"] for c in contexts}],
            "keys": {"PATIENT": list(PATIENT_KEYS), "STUDY": list(STUDY_KEYS),
                     "SERIES": list(SERIES_KEYS), "IMAGE": list(INSTANCE_KEYS)},
            "computed_return_keys": list(COMPUTED_KEYS),
            "matching_types": list(_MATCHING_TYPES),
            "relational_queries": False,
            "case_insensitive_names": options.case_insensitive_names,
            "max_results": options.max_results,
            "move_destinations": [f"{aet} {host}:{port}"
                                  for aet, host, port in options.destinations],
        },
        "worklist": {
            "folder": str(options.worklist) if options.worklist else "ROOT/worklist",
            "required_return_keys": list(REQUIRED_KEYS),
            "required_step_keys": list(REQUIRED_STEP_KEYS),
        },
        "character_sets": {
            "stored": "as received, any",
            "answered_in": "the stored character set, or ISO_IR 192 when the rows of one "
                           "answer differ" + (" (always ISO_IR 192: --utf8-answers)"
                                              if options.utf8_answers else ""),
            "encoded_without_pydicom": sorted(k for k in CODECS if k),
        },
        "statuses": {service: [{"code": f"0x{code:04X}", "meaning": status.meaning(code)}
                               for code in codes] for service, codes in STATUSES.items()},
    }


def accepted_contexts(options: ServeOptions, min_free_bytes: int = 0) -> list[dict[str, Any]]:
    """The presentation contexts serve's AE accepts: abstract syntax, transfer syntaxes in
    order of preference, and the roles (SCU too: a C-GET requester's storage contexts)."""
    from dcmtool.net import acceptor
    from dcmtool.scp.server import acceptor_settings

    with tempfile.TemporaryDirectory() as scratch:
        ae = acceptor.make_acceptor(acceptor_settings(options, min_free_bytes),
                                    incoming=Path(scratch))
        return [{"abstract_syntax": str(cx.abstract_syntax),
                 "transfer_syntaxes": [str(ts) for ts in cx.transfer_syntax],
                 "roles": ["SCP", "SCU"] if cx.scu_role else ["SCP"]}
                for cx in ae.supported_contexts]


def _services(contexts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for cx in contexts:
        uid = cx["abstract_syntax"]
        service = ("Verification" if uid == VERIFICATION else
                   "Query/Retrieve" if uid in QR_MODELS else
                   "Modality Worklist" if uid == MODALITY_WORKLIST_FIND else
                   "Storage Commitment" if uid == STORAGE_COMMITMENT_PUSH else
                   "Modality Performed Procedure Step" if uid == MPPS_SOP_CLASS else "Storage")
        groups.setdefault(service, []).append({**cx, "name": sop_class_name(uid)})
    return [{"service": name, "sop_classes": items} for name, items in groups.items()]
