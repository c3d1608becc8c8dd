"""serve as Modality Performed Procedure Step SCP (PS3.4 F.7): N-CREATE and N-SET, kept.

Each step is a file of the archive (``archive.mpps``) written durably before the requester
hears success, so a restarted archive keeps every step. The rules (required attributes, what
an N-SET may change, no update after COMPLETED or DISCONTINUED) are ``dicom.mpps``'s; this
module applies them, answers, logs one line per step event on ``dcmtool.serve`` and audits it.
Handlers never raise: every outcome is a status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dcmtool.archive.mpps import ProcedureSteps
from dcmtool.archive.storage import Archive
from dcmtool.dicom import mpps
from dcmtool.dicom.commands import status_dataset
from dcmtool.dicom.status import describe
from dcmtool.scp.report import plural

LOG = logging.getLogger("dcmtool.serve")

#: (association) -> {"calling_aet", "called_aet", "peer"}; (association) -> its Session.
Who = Callable[[Any], dict[str, Any]]




def _text(ds: Any, keyword: str) -> str:
    value = ds.get(keyword) if ds is not None else None
    return "" if value is None else str(value).strip()


class MppsSCP:
    """The N-CREATE and N-SET handlers of one server."""

    def __init__(self, archive: Archive, who: Who, session: Callable[[Any], Any]) -> None:
        self.archive = archive
        self._who = who
        self._session = session
        # A retrieving client's plain folder is no archive: it keeps no steps.
        self.steps = None if archive.plain else ProcedureSteps(archive.root, archive.index)
        if self.steps is not None:
            written, dropped = self.steps.reconcile()
            if written or dropped:
                LOG.info("performed procedure steps: %d indexed from their files, %d rows "
                         "without a file dropped", written, dropped)
            rows = self.steps.rows()
            if rows:
                running = sum(row["status"] == mpps.IN_PROGRESS for row in rows)
                LOG.info("%s kept in %s (%d in progress)",
                         plural(len(rows), "performed procedure step"), self.steps.folder,
                         running)

    # -- N-CREATE ---------------------------------------------------------------------------

    def on_create(self, event: Any) -> tuple[Any, Any]:
        try:
            return self._create(event)
        except Exception as exc:  # a bug costs this request, never the association
            LOG.exception("N-CREATE handler failed")
            return status_dataset(mpps.PROCESSING_FAILURE,
                                  f"internal error: {type(exc).__name__}"), None

    def _create(self, event: Any) -> tuple[Any, Any]:
        from pydicom.uid import generate_uid

        who = self._who(event.assoc)
        self._session(event.assoc).request("N-CREATE")
        request = event.request
        given = request.AffectedSOPInstanceUID
        # F.7.2.1.1: the SCP assigns the UID when the SCU gave none, and says so in the answer.
        uid = str(given).strip() if given else generate_uid()
        if str(request.AffectedSOPClassUID) != mpps.MPPS_SOP_CLASS:
            return self._refuse("create", uid, who, 0x0118,
                                f"SOP class {request.AffectedSOPClassUID} is not MPPS"), None
        if self.steps is None:
            return self._refuse("create", uid, who, mpps.PROCESSING_FAILURE,
                                "this storage SCP keeps no performed procedure steps"), None
        try:
            self.steps.path(uid)
        except ValueError as exc:
            return self._refuse("create", uid, who, 0x0117, str(exc)), None
        try:
            attributes = event.attribute_list
        except Exception as exc:
            return self._refuse("create", uid, who, mpps.PROCESSING_FAILURE,
                                f"the attribute list cannot be decoded: {exc}"), None
        refusal = mpps.create_refusal(attributes)
        if refusal is not None:
            return self._refuse("create", uid, who, *refusal), None
        with self.steps.lock:
            if self.steps.exists(uid):
                return self._refuse("create", uid, who, mpps.DUPLICATE_SOP_INSTANCE,
                                    "the performed procedure step already exists"), None
            try:
                self.steps.write(uid, attributes, calling_ae=who["calling_aet"] or None)
            except Exception as exc:
                LOG.error("N-CREATE %s from %s: cannot keep the step: %s", uid,
                          who["calling_aet"], exc)
                return self._refuse("create", uid, who, 0x0213,
                                    f"cannot keep the step: {exc}"), None
        LOG.info("MPPS %s %s by %s: %s, patient %s, %s", uid, "created",
                 who["calling_aet"] or "?", mpps.IN_PROGRESS,
                 _text(attributes, "PatientID") or "-", _text(attributes, "Modality"))
        self.archive.audit.write("mpps-created", sop_instance_uid=uid,
                                 status=mpps.IN_PROGRESS,
                                 patient_id=_text(attributes, "PatientID"),
                                 modality=_text(attributes, "Modality"),
                                 pps_id=_text(attributes, "PerformedProcedureStepID"), **who)
        reply = None
        if not given:
            from pydicom.dataset import Dataset

            reply = Dataset()
            reply.AffectedSOPInstanceUID = uid  # pynetdicom moves it into the response
        return status_dataset(0x0000), reply

    # -- N-SET ------------------------------------------------------------------------------

    def on_set(self, event: Any) -> tuple[Any, Any]:
        try:
            return self._set(event)
        except Exception as exc:
            LOG.exception("N-SET handler failed")
            return status_dataset(mpps.PROCESSING_FAILURE,
                                  f"internal error: {type(exc).__name__}"), None

    def _set(self, event: Any) -> tuple[Any, Any]:
        who = self._who(event.assoc)
        self._session(event.assoc).request("N-SET")
        request = event.request
        uid = str(request.RequestedSOPInstanceUID or "").strip()
        if str(request.RequestedSOPClassUID) != mpps.MPPS_SOP_CLASS:
            return self._refuse("set", uid, who, 0x0118,
                                f"SOP class {request.RequestedSOPClassUID} is not MPPS"), None
        if self.steps is None:
            return self._refuse("set", uid, who, mpps.PROCESSING_FAILURE,
                                "this storage SCP keeps no performed procedure steps"), None
        try:
            change = event.modification_list
        except Exception as exc:
            return self._refuse("set", uid, who, mpps.PROCESSING_FAILURE,
                                f"the modification list cannot be decoded: {exc}"), None
        with self.steps.lock:
            try:
                current = self.steps.load(uid)
            except ValueError:
                current = None  # not a UID: no such step either
            except Exception as exc:
                return self._refuse("set", uid, who, mpps.PROCESSING_FAILURE,
                                    f"the stored step cannot be read: {exc}"), None
            if current is None:
                return self._refuse("set", uid, who, mpps.NO_SUCH_OBJECT_INSTANCE,
                                    "no such performed procedure step"), None
            refusal = mpps.check_set(current, change)
            if refusal is not None:
                code, comment = refusal
                final = _text(current, "PerformedProcedureStepStatus") in mpps.FINAL_STATES
                error_id = mpps.NO_LONGER_UPDATABLE if final else None
                return self._refuse("set", uid, who, code, comment, error_id), None
            for element in change:
                current[element.tag] = element
            try:
                self.steps.write(uid, current, calling_ae=who["calling_aet"] or None)
            except Exception as exc:
                LOG.error("N-SET %s from %s: cannot keep the step: %s", uid,
                          who["calling_aet"], exc)
                return self._refuse("set", uid, who, 0x0213,
                                    f"cannot keep the step: {exc}"), None
        status = _text(current, "PerformedProcedureStepStatus")
        series = current.get("PerformedSeriesSequence") or []
        instances = sum(len(item.get("ReferencedImageSequence") or []) +
                        len(item.get("ReferencedNonImageCompositeSOPInstanceSequence") or [])
                        for item in series)
        LOG.info("MPPS %s set by %s: %s, %d series, %d instances", uid,
                 who["calling_aet"] or "?", status, len(series), instances)
        self.archive.audit.write("mpps-updated", sop_instance_uid=uid, status=status,
                                 series=len(series), instances=instances,
                                 changed=sorted(e.keyword or str(e.tag) for e in change),
                                 **who)
        return status_dataset(0x0000), None

    def _refuse(self, what: str, uid: str, who: dict[str, Any], code: int, comment: str,
                error_id: int | None = None) -> Any:
        LOG.warning("MPPS N-%s %s from %s refused with %s: %s", what.upper(), uid or "?",
                    who["calling_aet"] or "?", describe(code), comment)
        self.archive.audit.write(f"mpps-{what}-refused", sop_instance_uid=uid,
                                 status=f"0x{code:04X}", reason=comment, **who)
        return status_dataset(code, comment, error_id)
