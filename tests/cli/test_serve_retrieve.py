"""dcmtool serve's own C-MOVE / C-GET sub-operation loop, as a requester sees it: the
pending responses and their counts, C-CANCEL, and the bytes that arrive."""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from support.archive import ServedArchive
from support.datasets import write_instance
from support.peers import run_cli


def _load(served: ServedArchive, folder: Path, count: int) -> tuple[str, dict[str, bytes]]:
    """``count`` CT instances of one study in ``served``: (study UID, {SOP Instance UID:
    pixel bytes})."""
    study = generate_uid()
    pixels = {}
    for index in range(count):
        ds = write_instance(folder / f"{index}.dcm", StudyInstanceUID=study, rows=64,
                            columns=64, InstanceNumber=index + 1)
        pixels[str(ds.SOPInstanceUID)] = ds.PixelData
    assert run_cli("store", served.address, str(folder)).exit_code == 0
    return study, pixels


def _study(uid: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = uid
    return identifier


def _requester(served: ServedArchive, received: list[Dataset]) -> Any:
    ae = AE(ae_title="REQUESTER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    ae.add_requested_context(CTImageStorage)

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        return 0x0000

    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title,
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    return assoc


def _counts(status: Dataset) -> tuple[int, int, int, int]:
    return (status.get("NumberOfRemainingSuboperations"),
            status.get("NumberOfCompletedSuboperations"),
            status.get("NumberOfFailedSuboperations"),
            status.get("NumberOfWarningSuboperations"))


@pytest.mark.parametrize("operation", ["get", "move"])
def test_every_sub_operation_is_reported_and_arrives_intact(
        serve_archive: Callable[..., ServedArchive], pynetdicom_scp: Callable[..., Any],
        tmp_path: Path, operation: str) -> None:
    destination = pynetdicom_scp(ae_title="MOVEDEST", storage=True)
    served = serve_archive(destinations=(("MOVEDEST", destination.host, destination.port),))
    study, pixels = _load(served, tmp_path / "load", 6)
    received: list[Dataset] = []
    assoc = _requester(served, received)
    try:
        if operation == "get":
            responses = list(assoc.send_c_get(_study(study),
                                              StudyRootQueryRetrieveInformationModelGet))
        else:
            responses = list(assoc.send_c_move(_study(study), "MOVEDEST",
                                               StudyRootQueryRetrieveInformationModelMove))
    finally:
        assoc.release()
    statuses = [status for status, _ in responses]
    # A pending response after each sub-operation but the last, counting down...
    assert [_counts(s) for s in statuses if s.Status == 0xFF00] == [
        (5 - done, done + 1, 0, 0) for done in range(5)]
    # ...then the final one: success, every sub-operation completed.
    assert statuses[-1].Status == 0x0000
    assert _counts(statuses[-1]) == (0, 6, 0, 0)
    stored = received if operation == "get" else destination.stored
    assert {str(ds.SOPInstanceUID): ds.PixelData for ds in stored} == pixels
    # As stored, not converted: pynetdicom's SCP picks implicit VR from a context that
    # offers both, so the stored syntax is proposed in a context of its own.
    archived = {str(dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
                for p in served.files()}
    assert archived == {"1.2.840.10008.1.2.1"}
    assert {str(ds.file_meta.TransferSyntaxUID) for ds in stored} == archived


def test_a_move_needing_more_than_128_contexts_opens_more_sub_associations(
        serve_archive: Callable[..., ServedArchive], pynetdicom_scp: Callable[..., Any],
        tmp_path: Path) -> None:
    """One study with instances of 129 storage classes: each class's stored syntax needs a
    context of its own, plus one to convert to: 258, more than two associations hold (128,
    PS3.8 9.3.2.2). Every instance arrives, as stored, over three sub-associations (the
    planner splits; it does not drop)."""
    from pynetdicom.presentation import AllStoragePresentationContexts

    from dcmtool.dicom.sopclasses import storage_sop_classes

    destination = pynetdicom_scp(ae_title="MOVEDEST", storage=True)
    served = serve_archive(destinations=(("MOVEDEST", destination.host, destination.port),))
    served_classes = {sop.uid for sop in storage_sop_classes()}
    classes = [str(cx.abstract_syntax) for cx in AllStoragePresentationContexts
               if cx.abstract_syntax in served_classes][:129]
    assert len(classes) == 129
    study = generate_uid()
    for index, sop_class in enumerate(classes):
        write_instance(tmp_path / "load" / f"{index}.dcm", StudyInstanceUID=study, rows=8,
                       columns=8, SOPClassUID=sop_class)
    assert run_cli("store", served.address, str(tmp_path / "load")).exit_code == 0
    assoc = _requester(served, [])
    try:
        responses = list(assoc.send_c_move(_study(study), "MOVEDEST",
                                           StudyRootQueryRetrieveInformationModelMove))
    finally:
        assoc.release()
    final = responses[-1][0]
    assert final.Status == 0x0000
    assert _counts(final) == (0, 129, 0, 0)
    assert sorted(str(ds.SOPClassUID) for ds in destination.stored) == sorted(classes)
    sub_associations = [e for e in destination.events if e.calling_ae_title == served.ae_title]
    assert len(sub_associations) == 3
    assert all(len(e.requested_contexts) <= 128 for e in sub_associations)


def test_c_cancel_stops_a_move_with_fe00(serve_archive: Callable[..., ServedArchive],
                                         pynetdicom_scp: Callable[..., Any],
                                         tmp_path: Path) -> None:
    """The requester cancels while the destination stores the first instance: the move
    stops, and the final response (0xFE00) says how many were done and how many were not."""
    requester: dict[str, Any] = {}
    cancelled = threading.Event()
    arrived: list[str] = []

    def on_store(event: Any) -> int:
        arrived.append(str(event.request.AffectedSOPInstanceUID))
        if not cancelled.is_set():
            assoc, context_id = requester["assoc"], requester["context_id"]
            assoc.send_c_cancel(1, context_id)  # the C-MOVE's Message ID
            cancelled.set()
        return 0x0000

    destination = pynetdicom_scp(ae_title="MOVEDEST", storage=True,
                                 handlers={evt.EVT_C_STORE: on_store})
    served = serve_archive(destinations=(("MOVEDEST", destination.host, destination.port),))
    study, _ = _load(served, tmp_path / "load", 100)
    assoc = _requester(served, [])
    requester["assoc"] = assoc
    requester["context_id"] = next(
        cx.context_id for cx in assoc.accepted_contexts
        if cx.abstract_syntax == StudyRootQueryRetrieveInformationModelMove)
    try:
        responses = list(assoc.send_c_move(_study(study), "MOVEDEST",
                                           StudyRootQueryRetrieveInformationModelMove,
                                           msg_id=1))
    finally:
        assoc.release()
    final, identifier = responses[-1]
    assert cancelled.is_set()
    assert final.Status == 0xFE00
    remaining, completed, failed, warning = _counts(final)
    assert remaining >= 1 and (completed, failed, warning) == (len(arrived), 0, 0)
    assert remaining + completed == 100
    assert identifier is not None and list(identifier.FailedSOPInstanceUIDList or []) == []


def test_pending_response_command_matches_pynetdicom() -> None:
    """The struct-packed pending C-MOVE/C-GET response is the command set pynetdicom
    encodes for the same primitive."""
    from pynetdicom.dimse_messages import C_GET_RSP, C_MOVE_RSP
    from pynetdicom.dimse_primitives import C_GET, C_MOVE
    from pynetdicom.dsutils import encode

    from dcmtool.dicom.commands import retrieve_response_command

    for primitive_class, message_class, field in ((C_MOVE, C_MOVE_RSP, 0x8021),
                                                  (C_GET, C_GET_RSP, 0x8010)):
        primitive = primitive_class()
        primitive.MessageIDBeingRespondedTo = 7
        primitive.AffectedSOPClassUID = StudyRootQueryRetrieveInformationModelMove
        primitive.Status = 0xFF00
        primitive.NumberOfRemainingSuboperations = 3
        primitive.NumberOfCompletedSuboperations = 65535
        primitive.NumberOfFailedSuboperations = 1
        primitive.NumberOfWarningSuboperations = 2
        message = message_class()
        message.primitive_to_message(primitive)
        # 70,000 completed does not fit the US count: it is reported as 65,535.
        ours = retrieve_response_command(str(StudyRootQueryRetrieveInformationModelMove), field,
                                         7, 0xFF00, 3, 70000, 1, 2)
        assert ours == encode(message.command_set, True, True)
        (length,) = struct.unpack("<I", ours[8:12])
        assert length == len(ours) - 12  # the group length counts what follows it


def test_a_destination_that_aborts_fails_the_rest(serve_archive: Callable[..., ServedArchive],
                                                  pynetdicom_scp: Callable[..., Any],
                                                  tmp_path: Path) -> None:
    """The destination aborts during the third C-STORE: the move does not hang, and the
    final response (0xB000) lists every instance that did not arrive."""
    seen: list[str] = []

    def on_store(event: Any) -> int:
        seen.append(str(event.request.AffectedSOPInstanceUID))
        if len(seen) == 3:
            event.assoc.abort()
        return 0x0000

    destination = pynetdicom_scp(ae_title="MOVEDEST", storage=True,
                                 handlers={evt.EVT_C_STORE: on_store})
    served = serve_archive(destinations=(("MOVEDEST", destination.host, destination.port),))
    study, pixels = _load(served, tmp_path / "load", 8)
    assoc = _requester(served, [])
    try:
        responses = list(assoc.send_c_move(_study(study), "MOVEDEST",
                                           StudyRootQueryRetrieveInformationModelMove))
    finally:
        assoc.release()
    final, identifier = responses[-1]
    assert final.Status == 0xB000
    assert _counts(final) == (0, 2, 6, 0)
    assert set(identifier.FailedSOPInstanceUIDList) == set(pixels) - set(seen[:2])


def test_a_file_gone_from_the_archive_fails_one_sub_operation(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    served = serve_archive()
    study, pixels = _load(served, tmp_path / "load", 4)
    missing = sorted(served.files())[1]
    missing_uid = str(dcmread(missing, stop_before_pixels=True).SOPInstanceUID)
    missing.unlink()
    received: list[Dataset] = []
    assoc = _requester(served, received)
    try:
        responses = list(assoc.send_c_get(_study(study),
                                          StudyRootQueryRetrieveInformationModelGet))
    finally:
        assoc.release()
    final, identifier = responses[-1]
    assert final.Status == 0xB000
    assert _counts(final) == (0, 3, 1, 0)
    assert identifier.FailedSOPInstanceUIDList == missing_uid  # one value: pydicom's str
    assert {str(ds.SOPInstanceUID) for ds in received} == set(pixels) - {missing_uid}


def test_a_move_longer_than_the_network_timeout_completes(
        serve_archive: Callable[..., ServedArchive], pynetdicom_scp: Callable[..., Any],
        tmp_path: Path) -> None:
    """The serve reads its sub-association's responses itself: each one must still count as
    traffic for the network (idle) timeout, or a move lasting longer than it is aborted."""
    slow = threading.Event()  # never set: each store waits 10 ms, a slow destination

    def on_store(event: Any) -> int:
        slow.wait(0.01)
        return 0x0000

    destination = pynetdicom_scp(ae_title="MOVEDEST", storage=True,
                                 handlers={evt.EVT_C_STORE: on_store})
    served = serve_archive(network_timeout=0.5,
                           destinations=(("MOVEDEST", destination.host, destination.port),))
    study, _ = _load(served, tmp_path / "load", 100)  # about a second in all
    assoc = _requester(served, [])
    try:
        responses = list(assoc.send_c_move(_study(study), "MOVEDEST",
                                           StudyRootQueryRetrieveInformationModelMove))
    finally:
        assoc.release()
    final, _ = responses[-1]
    assert final.Status == 0x0000
    assert _counts(final) == (0, 100, 0, 0)


def test_c_cancel_stops_a_get_after_the_sub_operation_in_progress(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    """A C-GET requester's C-CANCEL arrives on the association the serve sends on, before
    the response to the C-STORE in progress: exactly one instance is sent."""
    served = serve_archive()
    study, _ = _load(served, tmp_path / "load", 20)
    received: list[Dataset] = []
    requester: dict[str, Any] = {}

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        if len(received) == 1:
            requester["assoc"].send_c_cancel(1, requester["context_id"])
        return 0x0000

    ae = AE(ae_title="REQUESTER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title,
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    requester["assoc"] = assoc
    requester["context_id"] = next(
        cx.context_id for cx in assoc.accepted_contexts
        if cx.abstract_syntax == StudyRootQueryRetrieveInformationModelGet)
    try:
        responses = list(assoc.send_c_get(_study(study),
                                          StudyRootQueryRetrieveInformationModelGet, msg_id=1))
    finally:
        assoc.release()
    final, _ = responses[-1]
    assert final.Status == 0xFE00
    assert _counts(final) == (19, 1, 0, 0)
    assert len(received) == 1
