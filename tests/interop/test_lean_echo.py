"""``dcmtool echo`` through the plain-TCP client (``dcmtool.net.lean``), against real peers.

The client exists for start-up time; each test checks that a user sees what pynetdicom's
client gave before it: the same lines, errors and exit codes, the same request on the wire,
and no pydicom, pynetdicom or numpy in the process. Protocol edge cases (a small maximum PDU,
a peer that releases or aborts, malformed answers) use a scripted peer on a raw socket.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pynetdicom import evt
from support.archive import ServedArchive
from support.peers import (
    DcmtkStoreSCP,
    OrthancServer,
    PynetdicomSCP,
    abort_handler,
    run_cli,
    run_dcmtool,
)
from typer.testing import Result

from dcmtool.config import Peer, Timeouts
from dcmtool.dicom.commands import command, parse_command, uid_value, us
from dcmtool.dicom.identity import IMPLEMENTATION_CLASS_UID, implementation_version_name
from dcmtool.net import framing
from dcmtool.net.lean import client as lean_client
from dcmtool.net.lean import pdus
from dcmtool.scu.echo import echo

VERIFICATION = "1.2.840.10008.1.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"

ScpFactory = Callable[..., PynetdicomSCP]


@pytest.fixture
def lean_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any echo that reaches pynetdicom's client fails the test."""
    import dcmtool.net.association

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pynetdicom's client was used")

    monkeypatch.setattr(dcmtool.net.association, "open_association", refuse)


def via_pynetdicom(*args: str, monkeypatch: pytest.MonkeyPatch) -> Result:
    """``dcmtool echo ARGS`` through pynetdicom's client, as before the plain-TCP one."""
    with monkeypatch.context() as patch:
        patch.setattr(lean_client, "usable", lambda peer: False)
        return run_cli("echo", *args)


def same_text(result: Result) -> tuple[int, str, str]:
    """Exit code, stdout and stderr with the timings (milliseconds, two decimals) blanked."""
    return result.exit_code, re.sub(r"\d+\.\d\d\b", "#", result.stdout), result.stderr


def assert_success(stdout: str, label: str, count: int) -> None:
    out = stdout.splitlines()
    assert out[0].startswith(f"ECHO {label} from DCMTOOL: associated in "), out
    for seq in range(1, count + 1):
        assert out[seq].startswith(f"reply from {label}: seq={seq} status=Success time="), out
    assert out[count + 2].startswith(f"{count} sent, {count} ok, 0 failed, rtt min/avg/max")


# ---------------------------------------------------------------------------------------------
# Real peers: success, several C-ECHOs on one association, what the peer saw


@pytest.mark.peer("dcmtk")
def test_dcmtk_storescp_three_echoes_one_association(
        lean_only: None, dcmtk_storescp: Callable[..., DcmtkStoreSCP]) -> None:
    scp = dcmtk_storescp()
    result = run_cli("echo", scp.address, "-c", "3", "-i", "0", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    assert_success(result.stdout, scp.address, 3)
    log = scp.log_tail(200)
    assert log.count("Received Echo Request") == 3
    assert log.count("Association Acknowledged") == 1  # (the readiness probe only connects)
    assert "Association Release" in log


@pytest.mark.peer("orthanc")
def test_orthanc(lean_only: None, orthanc: Callable[..., OrthancServer]) -> None:
    server = orthanc()
    result = run_cli("echo", server.address, "-c", "3", "-i", "0", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert_success(result.stdout, server.address, 3)


def test_pynetdicom_scp_sees_our_request_and_release(lean_only: None,
                                                     pynetdicom_scp: ScpFactory) -> None:
    scp = pynetdicom_scp()
    result = run_cli("echo", scp.address, "-c", "3", "-i", "0", "-aet", "WS1",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert_success(result.stdout.replace("from WS1", "from DCMTOOL"), scp.address, 3)
    [assoc] = scp.wait_closed()
    assert assoc.outcome == "released"
    assert [(r.command, r.message_id) for r in assoc.requests] == [
        ("C-ECHO-RQ", 1), ("C-ECHO-RQ", 2), ("C-ECHO-RQ", 3)]
    assert (assoc.calling_ae_title, assoc.called_ae_title) == ("WS1", "ANY-SCP")
    [context] = assoc.requested_contexts
    assert (context.context_id, context.abstract_syntax, context.transfer_syntaxes) == (
        1, VERIFICATION, (EXPLICIT, IMPLICIT))
    assert assoc.max_pdu == 262144
    assert assoc.implementation_class_uid == IMPLEMENTATION_CLASS_UID
    assert assoc.implementation_version_name == implementation_version_name()


def test_dcmtool_serve(lean_only: None, serve_archive: Callable[..., ServedArchive]) -> None:
    served = serve_archive(ae_title="ARCHIVE")
    result = run_cli("echo", served.address, "-c", "2", "-i", "0", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert_success(result.stdout, served.address, 2)


def test_a_small_maximum_pdu_peer(lean_only: None, pynetdicom_scp: ScpFactory) -> None:
    scp = pynetdicom_scp(maximum_pdu_size=4096)
    result = run_cli("echo", "-v", scp.address, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "  peer max PDU:                  4096" in result.stdout


@pytest.mark.parametrize("kind", [
    pytest.param("storescp", marks=pytest.mark.peer("dcmtk")),
    pytest.param("orthanc", marks=pytest.mark.peer("orthanc")),
    "pynetdicom",
])
def test_both_clients_negotiate_the_same(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "storescp":
        scp: Any = request.getfixturevalue("dcmtk_storescp")()
        host, port, aet = scp.host, scp.port, scp.ae_title
    elif kind == "orthanc":
        scp = request.getfixturevalue("orthanc")()
        host, port, aet = "127.0.0.1", scp.dicom_port, scp.aet
    else:
        scp = request.getfixturevalue("pynetdicom_scp")()
        host, port, aet = scp.host, scp.port, scp.ae_title
    peer = Peer(label=kind, host=host, port=port, called_ae_title=aet, calling_ae_title="WS1")
    lean, full = echo(peer, count=2, interval=0), echo(peer, count=2, interval=0, lean=False)
    assert lean.error is None and full.error is None, (lean.error, full.error)
    assert [a.status for a in lean.attempts] == [a.status for a in full.attempts] == [0, 0]
    assert lean.negotiation is not None and full.negotiation is not None
    assert dataclasses.replace(lean.negotiation, associate_ms=0) == \
        dataclasses.replace(full.negotiation, associate_ms=0)


# ---------------------------------------------------------------------------------------------
# Failures: the same messages and exit codes as pynetdicom's client


@pytest.mark.parametrize(("scp_options", "args"), [
    pytest.param({"ae_title": "STRICT", "require_called_aet": True}, ("-aec", "WRONG"),
                 id="called-aet-rejected"),
    pytest.param({"require_calling_aet": ["KNOWN"]}, ("-aet", "STRANGER"),
                 id="calling-aet-rejected"),
    pytest.param({"reject": (2, 3, 2)}, (), id="transient-rejection"),
    pytest.param({"contexts": [CT_IMAGE_STORAGE]}, (), id="no-verification-context"),
    pytest.param({"echo_status": 0x0122}, ("-c", "2", "-i", "0"), id="failure-status"),
    pytest.param({}, ("-c", "2", "-i", "0"), id="success"),
])
def test_same_outcome_as_pynetdicoms_client(
        scp_options: dict[str, Any], args: tuple[str, ...], pynetdicom_scp: ScpFactory,
        monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    scp = pynetdicom_scp(**scp_options)
    target = f"{scp.ae_title}@127.0.0.1:{scp.port}"
    before = via_pynetdicom(target, *args, monkeypatch=monkeypatch)
    request.getfixturevalue("lean_only")
    after = run_cli("echo", target, *args)
    assert same_text(after) == same_text(before)
    assert after.exit_code in (0, 4, 5, 6)


def test_rejection_by_serve_reads_as_before(serve_archive: Callable[..., ServedArchive],
                                            monkeypatch: pytest.MonkeyPatch,
                                            request: pytest.FixtureRequest) -> None:
    served = serve_archive(ae_title="ARCHIVE", require_called_aet=True)
    wrong = f"OTHER@127.0.0.1:{served.port}"
    before = via_pynetdicom(wrong, monkeypatch=monkeypatch)
    request.getfixturevalue("lean_only")
    after = run_cli("echo", wrong)
    assert after.exit_code == before.exit_code == 4

    def errors(result: Result) -> list[str]:  # serve, in this process, logs each rejection
        return [line for line in result.stderr.splitlines()
                if line.startswith(("dcmtool: error: ", "dcmtool: hint: "))]

    assert errors(after) == errors(before)
    assert errors(after)[0].startswith(f"dcmtool: error: association rejected permanently by "
                                       f"{wrong}: called ae title not recognised")


@pytest.mark.peer("dcmtk")
def test_verbose_rejection_by_wlmscpfs_reads_as_before(
        dcmtk_wlmscpfs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    # An external peer: no pynetdicom SCP in this process adds its own log lines at -v.
    wlm = dcmtk_wlmscpfs(ae_title="WORKLIST")
    wrong = f"NOSUCHAE@127.0.0.1:{wlm.port}"
    before = via_pynetdicom("-v", wrong, monkeypatch=monkeypatch)
    request.getfixturevalue("lean_only")
    after = run_cli("echo", "-v", wrong)
    assert after.exit_code == before.exit_code == 4
    # pynetdicom's own lines: its client logs them unless it loses the rejection to a race
    # (net.association works around that for the error, not for pynetdicom's log).
    assert after.stderr.splitlines()[:3] == [
        "dcmtool: error: Association Rejected",
        "dcmtool: error: Result: Rejected Permanent, Source: Service User",
        "dcmtool: error: Reason: Called AE title not recognised"]
    assert after.stderr.splitlines()[3:] == before.stderr.splitlines()[-2:]
    assert after.stderr.splitlines()[3].startswith(
        f"dcmtool: error: association rejected permanently by {wrong}: ")


@pytest.mark.peer("dcmtk")
def test_verbose_success_reads_as_before(dcmtk_storescp: Callable[..., DcmtkStoreSCP],
                                         monkeypatch: pytest.MonkeyPatch,
                                         request: pytest.FixtureRequest) -> None:
    scp = dcmtk_storescp()
    before = via_pynetdicom("-v", scp.address, monkeypatch=monkeypatch)
    request.getfixturevalue("lean_only")
    after = run_cli("echo", "-v", scp.address)
    assert same_text(after) == same_text(before)
    assert "  context 1: 1.2.840.10008.1.1 accepted (explicit)" in after.stdout


def test_peer_aborting_during_echo(lean_only: None, pynetdicom_scp: ScpFactory) -> None:
    scp = pynetdicom_scp(handlers=[(evt.EVT_C_ECHO, abort_handler)])
    result = run_cli("echo", scp.address)
    assert result.exit_code == 5, result.stderr
    assert result.stderr.splitlines()[0] == (
        f"dcmtool: error: {scp.address} aborted the association during C-ECHO 1")
    assert "seq=1 status=no response time=- ms" in result.stdout


def test_refused_and_silent_ports_in_a_real_process(closed_port: int,
                                                    silent_listener: int) -> None:
    refused = run_dcmtool("echo", "-v", f"X@127.0.0.1:{closed_port}")
    assert refused.returncode == 3
    assert refused.stderr.splitlines() == [
        "dcmtool: error: Association request failed: unable to connect to remote",
        "dcmtool: error: TCP Initialisation Error: [Errno 111] Connection refused",
        f"dcmtool: error: connection to 127.0.0.1:{closed_port} refused",
        "dcmtool: hint: is the DICOM service running and listening on that port?"]
    silent = run_dcmtool("echo", "-v", f"X@127.0.0.1:{silent_listener}", "-ta", "0.5",
                         timeout=30)
    assert silent.returncode == 3
    assert silent.stderr.splitlines()[:2] == [
        "dcmtool: error: ACSE timeout reached while waiting for response to association "
        "request",
        f"dcmtool: error: X@127.0.0.1:{silent_listener} (127.0.0.1:{silent_listener}) did "
        "not answer the association request within 0.5 s"]


def test_the_association_request_is_byte_for_byte_pynetdicoms() -> None:
    sent = []
    for lean in (True, False):
        with ScriptedPeer(lambda conn: sent.append(conn.read_pdu())) as peer:
            echo(peer.peer(), lean=lean)
    assert sent[0] == sent[1]
    assert sent[0][0] == pdus.ASSOCIATE_RQ


# ---------------------------------------------------------------------------------------------
# A scripted peer on a raw socket: protocol edge cases


class Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(10)
        self.pdus: list[tuple[int, bytes]] = []

    def read_pdu(self) -> tuple[int, bytes]:
        head = self._read(6)
        body = self._read(struct.unpack(">I", head[2:6])[0])
        self.pdus.append((head[0], body))
        return head[0], body

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("dcmtool closed the connection")
            data += chunk
        return data

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def accept(self, max_pdu: int = 16384) -> None:
        """Read the A-ASSOCIATE-RQ; accept context 1 (Verification) in implicit VR."""
        self.read_pdu()
        self.send(associate_ac(max_pdu))

    def command(self) -> tuple[int, dict[int, bytes]]:
        """(PDUs it took, command elements) of the next command dcmtool sends."""
        data, count = b"", 0
        while True:
            pdu_type, body = self.read_pdu()
            assert pdu_type == pdus.P_DATA_TF, pdu_type
            count += 1
            for _, control, fragment in pdus.parse_p_data(body):
                data += fragment
                if control & 0x02:
                    fields = parse_command(data)
                    assert fields is not None
                    return count, fields


class ScriptedPeer:
    """Runs ``script(connection)`` for the first connection to 127.0.0.1 (kernel port)."""

    def __init__(self, script: Callable[[Connection], object]) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = int(self.listener.getsockname()[1])
        self.script = script
        self.error: BaseException | None = None
        self.connection: Connection | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def peer(self, **timeouts: float) -> Peer:
        return Peer(label="RAW", host="127.0.0.1", port=self.port, called_ae_title="RAW",
                    calling_ae_title="DCMTOOL", timeouts=Timeouts(**timeouts))

    def _run(self) -> None:
        sock, _ = self.listener.accept()
        self.connection = Connection(sock)
        try:
            self.script(self.connection)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
        finally:
            sock.close()

    def __enter__(self) -> ScriptedPeer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(10)
        self.listener.close()

    def received(self) -> list[int]:
        """The types of the PDUs the peer read, in order."""
        assert self.connection is not None
        return [pdu_type for pdu_type, _ in self.connection.pdus]


def item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def associate_ac(max_pdu: int, contexts: bytes | None = None) -> bytes:
    body = struct.pack(">HH", 1, 0) + b"RAW".ljust(16) + b"DCMTOOL".ljust(16) + bytes(32) \
        + item(0x10, pdus.APPLICATION_CONTEXT.encode()) \
        + (contexts if contexts is not None else
           item(0x21, b"\x01\x00\x00\x00" + item(0x40, IMPLICIT.encode()))) \
        + item(0x50, item(0x51, struct.pack(">I", max_pdu)) + item(0x52, b"1.2.3.4"))
    return struct.pack(">BBI", pdus.ASSOCIATE_AC, 0, len(body)) + body


def echo_response(message_id: int, status: int = 0) -> bytes:
    return framing.p_data_tf(1, 0x03, command([
        (0x0002, uid_value(VERIFICATION)), (0x0100, struct.pack("<H", 0x8030)),
        (0x0120, struct.pack("<H", message_id)), (0x0800, struct.pack("<H", 0x0101)),
        (0x0900, struct.pack("<H", status))]))


def echo_with(script: Callable[[Connection], object], *args: str) -> tuple[Result, ScriptedPeer]:
    with ScriptedPeer(script) as peer:
        result = run_cli("echo", f"RAW@127.0.0.1:{peer.port}", *args)
    if peer.error is not None:
        raise peer.error
    return result, peer


def test_a_command_is_split_to_the_peers_maximum_pdu(lean_only: None) -> None:
    sizes: list[int] = []

    def strict_peer(conn: Connection) -> None:
        conn.accept(max_pdu=32)
        count, fields = conn.command()
        sizes.extend(len(body) for _, body in conn.pdus[-count:])
        if max(sizes) > 32:  # a strict peer aborts, as PS3.8 allows
            conn.send(pdus.abort(pdus.ABORT_PROVIDER, pdus.INVALID_PARAMETER))
            return
        conn.send(echo_response(us(fields, 0x0110) or 0))
        conn.read_pdu()  # the release request
        conn.send(pdus.release_rp())

    result, peer = echo_with(strict_peer)
    assert result.exit_code == 0, result.stderr
    assert len(sizes) > 1 and max(sizes) <= 32
    assert peer.received()[-1] == pdus.RELEASE_RQ


def test_a_release_request_instead_of_a_response_is_answered(lean_only: None) -> None:
    def releasing_peer(conn: Connection) -> None:
        conn.accept()
        conn.command()
        conn.send(pdus.release_rq())
        conn.read_pdu()  # dcmtool's answer

    result, peer = echo_with(releasing_peer)
    assert result.exit_code == 5
    assert result.stderr.splitlines()[0] == (
        f"dcmtool: error: RAW@127.0.0.1:{peer.port} aborted the association during C-ECHO 1")
    assert "seq=1 status=no response" in result.stdout
    assert peer.received()[-1] == pdus.RELEASE_RP


def test_a_release_collision_is_answered_and_completed(lean_only: None) -> None:
    def colliding_peer(conn: Connection) -> None:
        conn.accept()
        conn.command()
        conn.send(echo_response(1))
        assert conn.read_pdu()[0] == pdus.RELEASE_RQ
        conn.send(pdus.release_rq())  # both release at once (PS3.8 9.2.3)
        assert conn.read_pdu()[0] == pdus.RELEASE_RP
        conn.send(pdus.release_rp())

    result, peer = echo_with(colliding_peer)
    assert result.exit_code == 0, result.stderr
    assert peer.received()[-2:] == [pdus.RELEASE_RQ, pdus.RELEASE_RP]


def test_an_abort_instead_of_an_answer_reads_as_before(
        monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    def aborting_peer(conn: Connection) -> None:
        conn.read_pdu()
        conn.send(pdus.abort())
        conn.sock.recv(1)  # until dcmtool closes

    with ScriptedPeer(aborting_peer) as first:
        before = via_pynetdicom(f"RAW@127.0.0.1:{first.port}", monkeypatch=monkeypatch)
    request.getfixturevalue("lean_only")
    after, peer = echo_with(aborting_peer)
    assert after.exit_code == before.exit_code == 5
    assert after.stderr.replace(str(peer.port), "P") == before.stderr.replace(str(first.port),
                                                                              "P")
    assert "aborted the association request" in after.stderr


@pytest.mark.parametrize(("answer", "what"), [
    (associate_ac(16384, item(0x21, b"\x01\x00\x00\x00" + item(0x40, IMPLICIT.encode())[:-2])),
     "a malformed A-ASSOCIATE-AC (item 0x40 of length 17 runs past the end of what holds it "
     "(15 bytes left))"),
    (b"\x09\x00\x00\x00\x00\x04\x00\x00\x00\x00", "an unknown PDU type 0x09"),
    (framing.p_data_tf(1, 0x03, b"\x00" * 8),
     "a P-DATA-TF in answer to the association request"),
])
def test_a_malformed_answer_aborts_and_says_what(lean_only: None, answer: bytes,
                                                 what: str) -> None:
    def malformed_peer(conn: Connection) -> None:
        conn.read_pdu()
        conn.send(answer)
        conn.read_pdu()  # dcmtool's A-ABORT

    result, peer = echo_with(malformed_peer)
    assert result.exit_code == 5
    assert result.stderr.splitlines()[0] == (
        f"dcmtool: error: RAW@127.0.0.1:{peer.port} sent {what}: dcmtool aborted the "
        "association")
    assert peer.received()[-1] == pdus.ABORT
    assert peer.connection is not None and peer.connection.pdus[-1][1][2] == pdus.ABORT_PROVIDER


def test_a_response_to_another_request_aborts(lean_only: None) -> None:
    def confused_peer(conn: Connection) -> None:
        conn.accept()
        conn.command()
        conn.send(echo_response(99))
        conn.read_pdu()

    result, peer = echo_with(confused_peer)
    assert result.exit_code == 5
    assert "sent a message that is not the response to our C-ECHO: dcmtool aborted the " \
        "association" in result.stderr
    assert peer.received()[-1] == pdus.ABORT


def test_a_command_that_never_ends_aborts(lean_only: None) -> None:
    """A peer that keeps sending command fragments without the last one (within the DIMSE
    timeout) is stopped at 64 KiB, not read into memory for as long as it goes on."""
    def endless_peer(conn: Connection) -> None:
        conn.accept()
        conn.command()
        fragment = framing.p_data_tf(1, 0x01, b"\x00" * 4096)  # a command fragment, never last
        try:
            for _ in range(1024):  # 4 MiB, far past any command set
                conn.sock.sendall(fragment)
        except OSError:  # dcmtool closed: expected
            pass

    result, _ = echo_with(endless_peer, "--dimse-timeout", "30")
    assert result.exit_code == 5
    assert "a command set of more than 65536 bytes" in result.stderr


def test_the_dimse_timeout_aborts(lean_only: None) -> None:
    def silent_peer(conn: Connection) -> None:
        conn.accept()
        conn.command()
        conn.read_pdu()  # nothing answered: dcmtool gives up

    result, peer = echo_with(silent_peer, "--dimse-timeout", "0.5")
    assert result.exit_code == 5
    assert result.stderr.splitlines()[0] == (
        f"dcmtool: error: no answer from RAW@127.0.0.1:{peer.port} to C-ECHO 1 within 0.5 s: "
        "dcmtool gave up waiting and aborted the association")
    assert peer.received()[-1] == pdus.ABORT


def test_an_interval_past_the_network_timeout_says_so(lean_only: None,
                                                     pynetdicom_scp: ScpFactory) -> None:
    # pynetdicom's client aborts an association idle for the network timeout too; there the
    # next C-ECHO ended in an internal error (RuntimeError: not established).
    scp = pynetdicom_scp()
    result = run_cli("echo", scp.address, "-c", "2", "-i", "0.6", "--network-timeout", "0.3")
    assert result.exit_code == 5
    assert "seq=1 status=Success" in result.stdout
    assert "seq=2 status=no response" in result.stdout
    assert result.stderr.splitlines() == [
        f"dcmtool: error: nothing came from {scp.address} within the network timeout (0.3 s): "
        "dcmtool aborted the association",
        "dcmtool: hint: raise the network timeout (also for an interval longer than it) "
        "(--network-timeout)"]
    assert scp.wait_closed()[0].outcome == "aborted"


# ---------------------------------------------------------------------------------------------
# Start-up: no pydicom, pynetdicom or numpy


HEAVY = ("pydicom", "pynetdicom", "numpy")

LIBRARY_ECHO = """
import json, sys
from dcmtool.config import Peer
from dcmtool.scu.echo import echo
peer = Peer(label="p", host="127.0.0.1", port=int(sys.argv[1]), called_ae_title="ANY-SCP",
            calling_ae_title="DCMTOOL")
result = echo(peer, count=2, interval=0)
print(json.dumps({"ok": result.ok, "error": str(result.error),
                  "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_an_echo_loads_no_dicom_stack(pynetdicom_scp: ScpFactory) -> None:
    scp = pynetdicom_scp()
    done = subprocess.run([sys.executable, "-c", LIBRARY_ECHO, str(scp.port)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] == 2, report["error"]
    assert not set(HEAVY) & set(report["loaded"])
    assert len(scp.wait_closed()[0].requests) == 2


def test_importing_the_echo_command_loads_no_dicom_stack() -> None:
    code = ("import json, sys, dcmtool.cli.commands.echo, dcmtool.scu.echo; "
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert not set(HEAVY) & set(json.loads(done.stdout))


@pytest.fixture
def verbose_cli_run(pynetdicom_scp: ScpFactory) -> Iterator[subprocess.CompletedProcess[str]]:
    scp = pynetdicom_scp()
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.__stderr__.write('LOADED ' + ' '.join(sorted("
            "{m.split('.')[0] for m in sys.modules})) + '\\n'))\n"
            "sys.argv = ['dcmtool', 'echo', '-v', '-c', '2', '-i', '0', sys.argv[1]]\n"
            "from dcmtool.cli.entry import main\nmain()\n")
    yield subprocess.run([sys.executable, "-c", code, scp.address], capture_output=True,
                         text=True, timeout=60)


def test_the_echo_command_loads_no_dicom_stack(
        verbose_cli_run: subprocess.CompletedProcess[str]) -> None:
    assert verbose_cli_run.returncode == 0, verbose_cli_run.stderr
    assert "peer implementation class UID" in verbose_cli_run.stdout
    loaded = next(line for line in verbose_cli_run.stderr.splitlines()
                  if line.startswith("LOADED ")).split()[1:]
    assert not set(HEAVY) & set(loaded)
