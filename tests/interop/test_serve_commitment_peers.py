"""Orthanc 1.10 as Storage Commitment SCU against dcmtool serve, through Orthanc's REST API.

``POST /modalities/{id}/storage-commitment`` makes Orthanc send the N-ACTION to serve and close
its association; serve then reports on a new association to Orthanc (the node of the calling
AE in serve's config), proposing the SCP role; ``GET /storage-commitment/{transaction}`` shows
what Orthanc made of the report. Orthanc 1.10.1 takes an N-EVENT-REPORT only from a modality
it knows with ``AllowStorageCommitment``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE
from support.archive import ServedArchive
from support.datasets import make_dataset
from support.orthanc import OrthancServer, modality

ServeFactory = Callable[..., ServedArchive]
EXPLICIT = "1.2.840.10008.1.2.1"
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
ARCHIVE = "ARCHIVE"
pytestmark = pytest.mark.peer("orthanc")


def store(served: ServedArchive, *datasets: Any) -> None:
    ae = AE("STORER")
    ae.add_requested_context(CT, [EXPLICIT])
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title)
    assert assoc.is_established
    try:
        for ds in datasets:
            assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()


def serve_and_orthanc(serve_archive: ServeFactory, orthanc: Callable[..., OrthancServer],
                      config: Path) -> tuple[ServedArchive, OrthancServer]:
    """serve knows Orthanc as a node, Orthanc knows serve as a modality that may report.
    Each needs the other's port: serve starts first, and its config file gets Orthanc's node
    once Orthanc listens (serve re-reads the file when it changes)."""
    config.write_text("# Orthanc's node comes when it listens\n", encoding="utf-8")
    served = serve_archive(ae_title=ARCHIVE, config_path=config)
    server = orthanc(modalities={
        "archive": modality(ARCHIVE, served.port, AllowStorageCommitment=True)})
    config.write_text(f'[nodes.orthanc]\nhost = "127.0.0.1"\nport = {server.dicom_port}\n'
                      f'ae_title = "{server.aet}"\n', encoding="utf-8")
    return served, server


def commitment(server: OrthancServer, instances: list[tuple[str, str]]) -> str:
    answer = server.rest.post("/modalities/archive/storage-commitment", {
        "DicomInstances": [{"SOPClassUID": c, "SOPInstanceUID": i} for c, i in instances],
        "Timeout": 10})
    return str(answer["ID"])


def report(server: OrthancServer, transaction: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, Any] = server.rest.get(f"/storage-commitment/{transaction}")
        if found["Status"] != "Pending":
            return found
        assert time.monotonic() < deadline, f"no report in Orthanc: {found}\n" + \
            server.log_tail()
        time.sleep(0.05)


def audit(served: ServedArchive) -> list[dict[str, Any]]:
    return [json.loads(line) for line in
            (served.root / "audit.jsonl").read_text(encoding="utf-8").splitlines()]


def test_orthanc_hears_that_serve_committed_what_it_keeps(
        serve_archive: ServeFactory, orthanc: Callable[..., OrthancServer],
        tmp_path: Path) -> None:
    served, server = serve_and_orthanc(serve_archive, orthanc, tmp_path / "serve.toml")
    kept = [make_dataset() for _ in range(3)]
    store(served, *kept)
    transaction = commitment(server, [(CT, str(ds.SOPInstanceUID)) for ds in kept])
    found = report(server, transaction)
    assert found["Status"] == "Success", found
    assert {i["SOPInstanceUID"] for i in found["Success"]} == {ds.SOPInstanceUID for ds in kept}
    assert found["Failures"] == []
    assert found["RemoteAET"] == ARCHIVE
    (record,) = [r for r in audit(served) if r["event"] == "commitment-reported"]
    assert (record["transaction_uid"], record["committed"]) == (transaction, 3)
    assert record["calling_aet"] == server.aet
    assert record["delivered_on"] == "a new association"


def test_orthanc_hears_which_instances_serve_does_not_keep(
        serve_archive: ServeFactory, orthanc: Callable[..., OrthancServer],
        tmp_path: Path) -> None:
    served, server = serve_and_orthanc(serve_archive, orthanc, tmp_path / "serve.toml")
    kept, other_class = make_dataset(), make_dataset()
    store(served, kept, other_class)
    missing = generate_uid()
    transaction = commitment(server, [(CT, str(kept.SOPInstanceUID)), (CT, missing),
                                      (MR, str(other_class.SOPInstanceUID))])
    found = report(server, transaction)
    assert found["Status"] == "Failure", found
    assert [i["SOPInstanceUID"] for i in found["Success"]] == [kept.SOPInstanceUID]
    assert {i["SOPInstanceUID"]: i["FailureReason"] for i in found["Failures"]} == {
        missing: 0x0112, str(other_class.SOPInstanceUID): 0x0119}


def test_an_orthanc_serve_does_not_know_is_refused_and_told_which_node_to_add(
        serve_archive: ServeFactory, orthanc: Callable[..., OrthancServer]) -> None:
    served = serve_archive(ae_title=ARCHIVE)  # no node for Orthanc
    server = orthanc(modalities={
        "archive": modality(ARCHIVE, served.port, AllowStorageCommitment=True)})
    ds = make_dataset()
    store(served, ds)
    from support.orthanc import OrthancError

    with pytest.raises(OrthancError) as refused:
        commitment(server, [(CT, str(ds.SOPInstanceUID))])
    assert refused.value.status >= 400
    (record,) = [r for r in audit(served) if r["event"] == "commitment-refused"]
    assert record["calling_aet"] == server.aet
    assert record["reason"].startswith(f"unknown AE {server.aet}: add it as a node")
