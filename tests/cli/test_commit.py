"""dcmtool commit and store --commit against scripted pynetdicom Storage Commitment SCPs on
loopback: the report on the same association (after or before the N-ACTION response) or on a
new association to our port, failures with their reasons in words, a report that never comes
(its own exit code), a refused request, an abort, and the report file that keeps the
Transaction UIDs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.commitment import CONTEXTS, STORAGE_COMMITMENT, CommitmentScript
from support.datasets import SECONDARY_CAPTURE, write_instance
from support.peers import PynetdicomSCP, free_port, run_cli

from dcmtool.errors import ExitCode

StartSCP = Callable[..., PynetdicomSCP]


@pytest.fixture
def local_port(isolated_config: Path) -> int:
    """Our [local] port on loopback, where a report on a new association comes."""
    port = free_port()
    isolated_config.write_text(f'[local]\nae_title = "WS1"\nbind = "127.0.0.1"\nport = {port}\n',
                               encoding="utf-8")
    return port


def instances(folder: Path, count: int = 3, studies: int = 1) -> list[Any]:
    written = []
    study_uids = [f"1.2.826.0.1.3680043.8.498.{n + 1}" for n in range(studies)]
    for n in range(count):
        written.append(write_instance(folder / f"im{n}.dcm", InstanceNumber=n + 1,
                                      StudyInstanceUID=study_uids[n % studies]))
    return written


def commitment_scp(start: StartSCP, script: CommitmentScript, **options: Any) -> PynetdicomSCP:
    return start(script.handlers(), contexts=CONTEXTS, **options)


def test_report_on_the_same_association_after_the_response(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    written = instances(tmp_path / "in")
    script = CommitmentScript(mode="same")
    scp = commitment_scp(pynetdicom_scp, script)
    result = run_cli("commit", scp.address, tmp_path / "in", "--json", "--wait", "30",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["total"], doc["committed"], doc["failed"]) == (3, 3, 0)
    [request] = script.requests
    assert request.action_type == 1
    assert request.calling_ae_title == "WS1"
    assert sorted(uid for _, uid in request.references) == \
        sorted(str(ds.SOPInstanceUID) for ds in written)
    [transaction] = doc["transactions"]
    assert transaction["transaction_uid"] == request.transaction_uid
    assert transaction["reported_via"] == "same association"
    assert transaction["reporter"] == "ANY-SCP"
    assert script.answers == [0x0000]
    assert {row["result"] for row in doc["instances"]} == {"committed"}
    # one association: the request, the report, released by us after the report
    [record] = scp.wait_closed()
    assert record.outcome == "released"
    assert [cx.abstract_syntax for cx in record.requested_contexts] == [STORAGE_COMMITMENT]
    assert "committed" in result.stderr and "on the same association" in result.stderr


def test_report_before_the_response_is_taken_too(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    instances(tmp_path / "in", 2)
    script = CommitmentScript(mode="before")
    scp = commitment_scp(pynetdicom_scp, script)
    result = run_cli("commit", scp.address, tmp_path / "in", "--json", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["committed"] == 2
    assert script.answers == [0x0000]


def test_report_on_a_new_association_to_our_port(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    instances(tmp_path / "in", 4)
    script = CommitmentScript(mode="new", report_port=local_port)
    scp = commitment_scp(pynetdicom_scp, script)
    result = run_cli("commit", scp.address, tmp_path / "in", "--json", "--wait", "30",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["committed"] == 4 and doc["port"] == local_port
    [transaction] = doc["transactions"]
    assert transaction["reported_via"] == "new association"
    assert transaction["reporter"] == "COMMIT-SCP"
    assert script.answers == [0x0000] and not script.errors


def test_a_reporter_that_proposes_no_roles_is_heard(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    instances(tmp_path / "in", 1)
    script = CommitmentScript(mode="new", report_port=local_port, propose_role=False)
    scp = commitment_scp(pynetdicom_scp, script)
    result = run_cli("commit", scp.address, tmp_path / "in", "--port", local_port,
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert script.answers == [0x0000]


def test_failures_are_said_in_words_and_the_exit_code_is_partial(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    written = instances(tmp_path / "in", 3)
    missing, mismatch = str(written[0].SOPInstanceUID), str(written[1].SOPInstanceUID)
    script = CommitmentScript(mode="same", failures={missing: 0x0112, mismatch: 0x0119})
    scp = commitment_scp(pynetdicom_scp, script)
    result = run_cli("commit", scp.address, tmp_path / "in", "--jsonl")
    assert result.exit_code == ExitCode.PARTIAL, result.output
    rows = {row["sop_instance_uid"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows[missing]["result"] == "failed"
    assert rows[missing]["reason"] == "0x0112 (no such object instance)"
    assert rows[missing]["failure_reason"] == "0x0112"
    assert rows[mismatch]["reason"] == "0x0119 (class/instance conflict)"
    assert rows[str(written[2].SOPInstanceUID)]["result"] == "committed"
    assert rows[missing]["committed"] is False
    assert result.stderr.splitlines()[-1] == "dcmtool: error: 2 of 3 instances not committed"


def test_all_failed_is_a_dimse_failure(pynetdicom_scp: StartSCP, tmp_path: Path,
                                       local_port: int) -> None:
    written = instances(tmp_path / "in", 2)
    script = CommitmentScript(mode="same",
                              failures={str(ds.SOPInstanceUID): 0x0112 for ds in written})
    scp = commitment_scp(pynetdicom_scp, script)
    result = run_cli("commit", scp.address, tmp_path / "in", "--csv")
    assert result.exit_code == ExitCode.DIMSE_FAILURE, result.output
    assert result.stdout.splitlines()[0].startswith("sop_instance_uid,result,reason,")
    assert result.stderr.splitlines()[-1] == (
        "dcmtool: error: no instance was committed (first: 0x0112 (no such object instance))")


def test_no_report_within_the_wait_has_its_own_exit_code_and_the_report_keeps_the_uids(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    instances(tmp_path / "in", 2)
    script = CommitmentScript(mode="never")
    scp = commitment_scp(pynetdicom_scp, script)
    report = tmp_path / "commit.json"
    result = run_cli("commit", scp.address, tmp_path / "in", "--wait", "0.5",
                     "--report", report)
    assert result.exit_code == ExitCode.NOT_REPORTED == 8, result.output
    [request] = script.requests
    assert result.stderr.splitlines()[-2] == (
        "dcmtool: error: no storage commitment report within 0.5 s for 1 of 1 transaction(s) "
        "(2 instance(s)): their outcome is unknown")
    assert result.stderr.splitlines()[-1].startswith(
        "dcmtool: hint: the peer reports on the same association (or on a new association to "
        f"our port {local_port})")
    kept = json.loads(report.read_text(encoding="utf-8"))
    [transaction] = kept["transactions"]
    assert transaction["transaction_uid"] == request.transaction_uid
    assert transaction["status"] == "0x0000" and transaction["reported"] is False
    assert {row["result"] for row in kept["instances"]} == {"not reported"}
    assert {row["committed"] for row in kept["instances"]} == {None}
    assert {row["transaction_uid"] for row in kept["instances"]} == {request.transaction_uid}
    # the association stayed open for the wait, then we released it
    [record] = scp.wait_closed()
    assert record.outcome == "released"


def test_a_refused_request_is_a_dimse_failure_with_the_status(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    instances(tmp_path / "in", 1)
    scp = commitment_scp(pynetdicom_scp, CommitmentScript(status=0x0124))
    result = run_cli("commit", scp.address, tmp_path / "in", "--jsonl")
    assert result.exit_code == ExitCode.DIMSE_FAILURE, result.output
    [row] = map(json.loads, result.stdout.splitlines())
    assert row["result"] == "not requested"
    assert row["reason"] == "the peer refused the request: 0x0124 (not authorised)"
    assert result.stderr.splitlines()[-1] == (
        "dcmtool: error: the peer refused the storage commitment request: "
        "0x0124 (not authorised)")


def test_an_abort_at_the_request_is_exit_5(pynetdicom_scp: StartSCP, tmp_path: Path,
                                           local_port: int) -> None:
    instances(tmp_path / "in", 1)
    scp = commitment_scp(pynetdicom_scp, CommitmentScript(abort=True))
    result = run_cli("commit", scp.address, tmp_path / "in")
    assert result.exit_code == ExitCode.ASSOCIATION_ABORTED, result.output
    assert result.stderr.splitlines()[-2] == (
        f"dcmtool: error: {scp.address} aborted the association during the N-ACTION "
        "(storage commitment request)")


def test_a_peer_without_storage_commitment_is_exit_5(pynetdicom_scp: StartSCP,
                                                     tmp_path: Path, local_port: int) -> None:
    instances(tmp_path / "in", 1)
    scp = pynetdicom_scp()  # Verification only
    result = run_cli("commit", scp.address, tmp_path / "in")
    assert result.exit_code == ExitCode.ASSOCIATION_ABORTED, result.output
    assert "accepted none of the 1 proposed presentation contexts" in result.stderr


def test_a_report_for_another_transaction_is_refused_and_ours_times_out(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    instances(tmp_path / "in", 1)
    script = CommitmentScript(mode="same", wrong_transaction=True)
    scp = commitment_scp(pynetdicom_scp, script)
    result = run_cli("commit", scp.address, tmp_path / "in", "--wait", "0.5")
    assert result.exit_code == ExitCode.NOT_REPORTED, result.output
    assert script.answers == [0x0110]


def test_one_transaction_per_study(pynetdicom_scp: StartSCP, tmp_path: Path,
                                   local_port: int) -> None:
    instances(tmp_path / "in", 6, studies=3)
    # Reports on new associations: pynetdicom as SCP cannot report on the association while
    # the next N-ACTION arrives on it (its requestor side takes any message as its response).
    script = CommitmentScript(mode="new", report_port=local_port)
    scp = commitment_scp(pynetdicom_scp, script)
    result = run_cli("commit", scp.address, tmp_path / "in", "--per-study", "--json",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len(script.requests) == 3 and all(len(r.references) == 2 for r in script.requests)
    assert [t["transaction_uid"] for t in doc["transactions"]] == \
        [r.transaction_uid for r in script.requests]
    assert len({t["study_instance_uid"] for t in doc["transactions"]}) == 3
    assert {t["reported_via"] for t in doc["transactions"]} == {"new association"}
    assert script.answers == [0, 0, 0]


def test_store_report_input_commits_what_was_stored(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    written = instances(tmp_path / "in", 2)
    store_scp = pynetdicom_scp(storage=True)
    sent = tmp_path / "sent.json"
    stored = run_cli("store", store_scp.address, tmp_path / "in", "--report", sent,
                     "--new-uids", catch_exceptions=False)
    assert stored.exit_code == 0, stored.output
    script = CommitmentScript(mode="same")
    scp = commitment_scp(pynetdicom_scp, script)
    result = run_cli("commit", scp.address, sent, "--json", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [request] = script.requests
    # the UIDs the peer has (new ones), not the files' own
    assert {uid for _, uid in request.references} == \
        {str(ds.SOPInstanceUID) for ds in store_scp.stored}
    assert not {uid for _, uid in request.references} & \
        {str(ds.SOPInstanceUID) for ds in written}


def test_store_then_commit_in_one_command(pynetdicom_scp: StartSCP, tmp_path: Path,
                                          local_port: int) -> None:
    instances(tmp_path / "in", 3)
    script = CommitmentScript(mode="new", report_port=local_port)
    scp = pynetdicom_scp(script.handlers(), contexts=CONTEXTS, storage=True)
    report = tmp_path / "sent.csv"
    result = run_cli("store", scp.address, tmp_path / "in", "--commit", "--wait", "30",
                     "--report", report, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "3 sent, 3 stored" in result.stdout
    assert "3 committed, 0 failed" in result.stdout
    rows = report.read_text(encoding="utf-8").splitlines()
    assert "committed" in rows[0].split(",")
    assert all(",True," in row or row.endswith(",True") for row in rows[1:]), rows
    [request] = script.requests
    assert {uid for _, uid in request.references} == \
        {str(ds.SOPInstanceUID) for ds in scp.stored}


def test_store_commit_with_a_failure_is_partial(pynetdicom_scp: StartSCP, tmp_path: Path,
                                                local_port: int) -> None:
    written = instances(tmp_path / "in", 2)
    lost = str(written[0].SOPInstanceUID)
    script = CommitmentScript(mode="same", failures={lost: 0x0112})
    scp = pynetdicom_scp(script.handlers(), contexts=CONTEXTS, storage=True)
    report = tmp_path / "sent.json"
    result = run_cli("store", scp.address, tmp_path / "in", "--commit", "--report", report,
                     "--json")
    assert result.exit_code == ExitCode.PARTIAL, result.output
    doc = json.loads(result.stdout)
    assert (doc["stored"], doc["committed"], doc["not_committed"]) == (2, 1, 1)
    rows = {row["sop_instance_uid"]: row for row in json.loads(report.read_text("utf-8"))}
    assert rows[lost]["committed"] is False
    assert rows[lost]["commitment"] == "0x0112 (no such object instance)"


def test_selection_is_resolved_by_c_find_at_image_level(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    from pydicom.dataset import Dataset
    from pynetdicom import evt

    study = "1.2.826.0.1.3680043.8.498.77"
    uids = [f"{study}.{n}" for n in range(1, 4)]
    queries: list[Dataset] = []

    def on_find(event: Any) -> Any:
        queries.append(event.identifier)
        for uid in uids:
            match = Dataset()
            match.QueryRetrieveLevel = "IMAGE"
            match.StudyInstanceUID = study
            match.SeriesInstanceUID = f"{study}.0"
            match.SOPInstanceUID = uid
            match.SOPClassUID = SECONDARY_CAPTURE
            yield 0xFF00, match
        yield 0x0000, None

    script = CommitmentScript(mode="same")
    scp = pynetdicom_scp([*script.handlers(), (evt.EVT_C_FIND, on_find)],
                         contexts=[*CONTEXTS, "1.2.840.10008.5.1.4.1.2.2.1"])
    result = run_cli("commit", scp.address, "--study", study, "--json",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [query] = queries
    assert query.QueryRetrieveLevel == "IMAGE" and query.StudyInstanceUID == study
    [request] = script.requests
    assert request.references == [(SECONDARY_CAPTURE, uid) for uid in uids]


def test_nothing_to_commit_is_a_usage_error(tmp_path: Path, local_port: int) -> None:
    result = run_cli("commit", "PACS@127.0.0.1:104")
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.splitlines()[0].startswith("dcmtool: error: say what to commit")


def test_a_busy_port_is_said(pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    instances(tmp_path / "in", 1)
    busy = pynetdicom_scp()
    scp = commitment_scp(pynetdicom_scp, CommitmentScript())
    result = run_cli("commit", scp.address, tmp_path / "in", "--port", busy.port)
    assert result.exit_code == ExitCode.ERROR, result.output
    assert result.stderr.startswith(f"dcmtool: error: cannot listen on 127.0.0.1:{busy.port}")
    assert scp.events == []  # nothing requested that could not be reported


def test_release_leaves_the_report_to_a_new_association(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    instances(tmp_path / "in", 2)
    script = CommitmentScript(mode="new", report_port=local_port)
    scp = commitment_scp(pynetdicom_scp, script)
    result = run_cli("commit", scp.address, tmp_path / "in", "--release", "--json",
                     "--wait", "30", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [transaction] = json.loads(result.stdout)["transactions"]
    assert transaction["reported_via"] == "new association"
    [record] = scp.wait_closed()
    assert record.outcome == "released"


def test_a_report_served_off_the_reactor_keeps_it_paused(pynetdicom_scp: StartSCP) -> None:
    """Fix "report thread": pynetdicom serves an N-EVENT-REPORT that arrives on a requestor's
    association on a thread of its own, which cleared the reactor's pause flag when done; a
    send_*() or release() that had paused the reactor meanwhile then spun for ever (commit
    --per-study hung at its second N-ACTION). Served as pynetdicom's thread does, while the
    reactor is paused as a send_*() pauses it, the flag now stays set."""
    import threading
    from io import BytesIO

    from pydicom.dataset import Dataset
    from pynetdicom.dimse_primitives import N_EVENT_REPORT
    from pynetdicom.dsutils import encode

    from dcmtool.config import Peer
    from dcmtool.net.association import open_association
    from dcmtool.net.contexts import ContextRequest
    from dcmtool.net.reports import report_handlers

    scp = commitment_scp(pynetdicom_scp, CommitmentScript())
    peer = Peer(label="scp", host=scp.host, port=scp.port, called_ae_title=scp.ae_title,
                calling_ae_title="WS1")
    answered: list[int] = []

    def on_report(report: Any) -> int:
        answered.append(report.event_type)
        return 0x0000

    info = Dataset()
    info.TransactionUID = "1.2.3.4"
    with open_association(peer, [ContextRequest(STORAGE_COMMITMENT, ("1.2.840.10008.1.2",))],
                          handlers=report_handlers(on_report)) as session:
        assoc = session.assoc
        [context] = assoc.accepted_contexts
        request = N_EVENT_REPORT()
        request.MessageID = 7
        request.AffectedSOPClassUID = STORAGE_COMMITMENT
        request.AffectedSOPInstanceUID = "1.2.840.10008.1.20.1.1"
        request.EventTypeID = 1
        request.EventInformation = BytesIO(encode(info, True, True))
        assoc._reactor_checkpoint.clear()  # as send_*() and release() pause the reactor
        while not assoc._is_paused:
            pass
        server = threading.Thread(target=assoc._serve_request,
                                  args=(request, context.context_id))
        server.start()
        server.join(10)
        paused = assoc._is_paused
        assoc._is_paused = True  # whatever happened, let the release below go through
        assoc._reactor_checkpoint.set()
    assert answered == [1]
    assert paused, "the report's thread cleared the reactor's pause flag"


def test_two_threads_never_interleave_the_pdus_of_their_messages(
        pynetdicom_scp: StartSCP, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fix "message order": the answer to a report (sent on pynetdicom's report thread) and
    the next N-ACTION (sent by commit) went out at once, their P-DATA-TF PDUs mixed, and the
    peer assembled garbage (commit --per-study to serve lost a report one run in twenty).
    Here the N-ACTION's first PDU is held until the echo could have slipped in after it."""
    import threading
    from io import BytesIO

    from pydicom.dataset import Dataset
    from pynetdicom.dimse_messages import DIMSEMessage
    from pynetdicom.dimse_primitives import C_ECHO, N_ACTION
    from pynetdicom.dsutils import encode

    from dcmtool.config import Peer
    from dcmtool.net.association import open_association
    from dcmtool.net.contexts import ContextRequest

    verification = "1.2.840.10008.1.1"
    scp = pynetdicom_scp(contexts=[*CONTEXTS, verification])
    peer = Peer(label="scp", host=scp.host, port=scp.port, called_ae_title=scp.ae_title,
                calling_ae_title="WS1")
    echo_queued = threading.Event()
    original = DIMSEMessage.encode_msg

    def held(self: Any, context_id: int, max_pdu: int) -> Any:
        for number, pdu in enumerate(original(self, context_id, max_pdu)):
            yield pdu
            if number == 0 and type(self).__name__ == "N_ACTION_RQ":
                echo.start()
                echo_queued.wait(0.5)  # the echo gets in now, unless it must wait its turn

    monkeypatch.setattr(DIMSEMessage, "encode_msg", held)
    info = Dataset()
    info.TransactionUID = "1.2.3.4"
    with open_association(peer, [ContextRequest(STORAGE_COMMITMENT, ("1.2.840.10008.1.2",)),
                                 ContextRequest(verification, ("1.2.840.10008.1.2",))]) as s:
        assoc = s.assoc
        ids = {str(cx.abstract_syntax): cx.context_id for cx in assoc.accepted_contexts}
        sent: list[int] = []  # presentation context ID of each P-DATA-TF queued
        queue_pdu = assoc.dul.send_pdu

        def record(primitive: Any) -> None:
            items = getattr(primitive, "presentation_data_value_list", [])  # P-DATA only
            sent.extend(item[0] for item in items)
            queue_pdu(primitive)

        monkeypatch.setattr(assoc.dul, "send_pdu", record)
        action = N_ACTION()
        action.MessageID, action.ActionTypeID = 1, 1
        action.RequestedSOPClassUID = STORAGE_COMMITMENT
        action.RequestedSOPInstanceUID = "1.2.840.10008.1.20.1.1"
        action.ActionInformation = BytesIO(encode(info, True, True))
        request = C_ECHO()
        request.MessageID, request.AffectedSOPClassUID = 2, verification

        def send_echo() -> None:
            assoc.dimse.send_msg(request, ids[verification])
            echo_queued.set()

        echo = threading.Thread(target=send_echo)
        assoc.dimse.send_msg(action, ids[STORAGE_COMMITMENT])
        echo.join(5)
        assoc.abort()
    commitment, echo_id = ids[STORAGE_COMMITMENT], ids[verification]
    assert sent == [commitment, commitment, echo_id]


def test_a_late_report_is_matched_with_pending(pynetdicom_scp: StartSCP, tmp_path: Path,
                                               local_port: int) -> None:
    """The report keeps the Transaction UID: --pending listens for what came late, and brings
    the report up to date."""
    import threading
    import time

    from support.peers import port_accepts

    written = instances(tmp_path / "in", 3)
    script = CommitmentScript(mode="never")
    scp = commitment_scp(pynetdicom_scp, script)
    report = tmp_path / "commit.json"
    first = run_cli("commit", scp.address, tmp_path / "in", "--wait", "0.2", "--report", report)
    assert first.exit_code == ExitCode.NOT_REPORTED, first.output
    [request] = script.requests
    lost = str(written[0].SOPInstanceUID)
    late = CommitmentScript(mode="new", report_port=local_port, failures={lost: 0x0112})

    def report_when_listening() -> None:
        deadline = time.monotonic() + 20
        while not port_accepts("127.0.0.1", local_port) and time.monotonic() < deadline:
            time.sleep(0.01)
        late._report_on_new_association(request)

    reporter = threading.Thread(target=report_when_listening)
    reporter.start()
    second = run_cli("commit", scp.address, "--pending", report, "--wait", "30", "--jsonl")
    reporter.join(10)
    assert second.exit_code == ExitCode.PARTIAL, second.output
    assert late.answers == [0x0000]
    rows = {r["sop_instance_uid"]: r for r in map(json.loads, second.stdout.splitlines())}
    assert rows[lost]["reason"] == "0x0112 (no such object instance)"
    kept = json.loads(report.read_text(encoding="utf-8"))
    assert (kept["committed"], kept["failed"], kept["not_reported"]) == (2, 1, 0)
    [transaction] = kept["transactions"]
    assert transaction["transaction_uid"] == request.transaction_uid
    assert (transaction["reported"], transaction["reported_via"]) == (True, "new association")
    # nothing left to wait for
    third = run_cli("commit", scp.address, "--pending", report)
    assert third.exit_code == 0
    assert third.stderr == f"dcmtool: {report}: no transaction waits for its report\n"


def test_store_commit_keeps_the_store_report_when_it_cannot_listen(
        pynetdicom_scp: StartSCP, tmp_path: Path, local_port: int) -> None:
    instances(tmp_path / "in", 2)
    busy = pynetdicom_scp()
    scp = pynetdicom_scp(CommitmentScript().handlers(), contexts=CONTEXTS, storage=True)
    report = tmp_path / "sent.json"
    result = run_cli("store", scp.address, tmp_path / "in", "--commit", "--port", busy.port,
                     "--report", report)
    assert result.exit_code == ExitCode.ERROR, result.output
    assert result.stdout.startswith("2 sent, 2 stored")
    assert result.stderr.startswith(f"dcmtool: error: cannot listen on 127.0.0.1:{busy.port}")
    rows = json.loads(report.read_text(encoding="utf-8"))
    assert {(row["stored"], row["committed"]) for row in rows} == {(True, None)}
    [why] = {row["commitment"] for row in rows}
    assert why.startswith(f"not requested: cannot listen on 127.0.0.1:{busy.port}: ")
