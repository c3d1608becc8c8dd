"""Modality Worklist SCU (PS3.4 K): the scheduled procedure steps a RIS holds for a modality.

A worklist query is a C-FIND in the Modality Worklist Information Model (no Query/Retrieve
Level); the usual matching keys sit in the first item of the Scheduled Procedure Step
Sequence (PS3.4 K.6.1.2.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dcmtool.config import Peer
from dcmtool.dicom.sopclasses import MODALITY_WORKLIST_FIND
from dcmtool.scu.find import FindResult, build_identifier, find

SPS = "ScheduledProcedureStepSequence[0]"


def worklist_identifier(*, modality: str | None = None, date: str | None = None,
                        station_aet: str | None = None, patient: str | None = None,
                        keys: Sequence[str] = ()) -> Any:
    """The identifier: the default return keys, the common matching keys, then ``keys``
    (``-k``: a key named again replaces the default)."""
    matching = []
    if modality:
        matching.append(f"{SPS}.Modality={modality}")
    if station_aet:
        matching.append(f"{SPS}.ScheduledStationAETitle={station_aet}")
    if date:
        matching.append(f"{SPS}.ScheduledProcedureStepStartDate={date}")
    if patient:
        matching.append(f"PatientName={patient}")
    return build_identifier([*matching, *keys], level=None)


def query(peer: Peer, identifier: Any) -> FindResult:
    """Send the worklist C-FIND; raises the typed errors of ``find``."""
    return find(peer, identifier, MODALITY_WORKLIST_FIND)
