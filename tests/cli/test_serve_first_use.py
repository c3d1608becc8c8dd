"""dcmtool serve as a first-time user meets it (#14): a folder sent twice, the log, Ctrl-C,
a C-MOVE to a node added while serving, a peer that resets after the release, and what a
DIMSE timeout says."""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)
from support.archive import ServedArchive, ServeProcess
from support.datasets import write_instance
from support.peers import run_cli

from dcmtool.config import Config
from dcmtool.scp.options import ServeRequest, build_serve_options

ServeFactory = Callable[..., ServeProcess]
VERIFICATION = "1.2.840.10008.1.1"


def wait_for_log(served: ServeProcess, pattern: str, count: int = 1,
                 timeout: float = 20.0) -> str:
    """The serve process's log once ``pattern`` (a regex) matches ``count`` of its lines;
    fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        text = served.process.log_path.read_text(encoding="utf-8", errors="replace")
        if len(re.findall(pattern, text, flags=re.MULTILINE)) >= count:
            return text
        if time.monotonic() > deadline or not served.process.running():
            pytest.fail(f"{pattern!r} not in serve's log after {timeout:g} s:\n{text}")
        time.sleep(0.02)


def _study(folder: Path, count: int) -> str:
    study = generate_uid()
    for index in range(count):
        write_instance(folder / f"{index}.dcm", StudyInstanceUID=study, InstanceNumber=index)
    return study


def _store(served: ServeProcess, folder: Path) -> Any:
    return run_cli("store", served.address, str(folder), "--calling-aet", "SENDER")


# ---------------------------------------------------------------------------------------------
# Duplicates: a folder sent again is acknowledged, the first copy kept


def test_a_folder_sent_twice_is_acknowledged_both_times(serve_process: ServeFactory,
                                                        tmp_path: Path) -> None:
    """Orthanc and storescp accept a re-send; so does serve by default: success, the stored
    copy kept as it was, and the log says the duplicates were ignored."""
    served = serve_process()
    _study(tmp_path / "study", 3)
    first = _store(served, tmp_path / "study")
    assert first.exit_code == 0, first.stderr
    files = sorted(p for p in served.root.rglob("*.dcm") if ".incoming" not in p.parts)
    before = [p.read_bytes() for p in files]
    again = _store(served, tmp_path / "study")
    assert again.exit_code == 0, again.stderr
    assert [p.read_bytes() for p in files] == before
    log = wait_for_log(served, r"SENDER@127\.0\.0\.1 -> DCMTOOL: 0 stored, 3 duplicates "
                               r"ignored in \d+\.\d s$")
    assert re.search(r"^dcmtool: SENDER@127\.0\.0\.1 -> DCMTOOL: 3 stored \([\d.]+ MB\) in "
                     r"\d+\.\d s$", log, flags=re.MULTILINE), log


def test_reject_is_still_there_and_the_default_is_ignore(serve_process: ServeFactory,
                                                         tmp_path: Path) -> None:
    _, policy, _ = build_serve_options(ServeRequest(), Config(path=None))
    assert policy.duplicates == "ignore"
    served = serve_process("--duplicates", "reject")
    _study(tmp_path / "study", 1)
    assert _store(served, tmp_path / "study").exit_code == 0
    again = _store(served, tmp_path / "study")
    assert again.exit_code == 6 and "0x0111" in again.stderr, again.stderr
    wait_for_log(served, r"^dcmtool: warning: SENDER@127\.0\.0\.1 -> DCMTOOL: 0 stored, 1 failed "
                         r"\(first: 0x0111 duplicate SOP Instance UID")


# ---------------------------------------------------------------------------------------------
# The log: one line per association by default, one per instance with -v


@pytest.mark.parametrize("verbose", [False, True])
def test_one_line_per_association_and_per_instance_only_with_v(
        serve_process: ServeFactory, tmp_path: Path, verbose: bool) -> None:
    served = serve_process(*(["-v"] if verbose else []))
    _study(tmp_path / "study", 3)
    assert _store(served, tmp_path / "study").exit_code == 0
    log = wait_for_log(served, r"SENDER@127\.0\.0\.1 -> DCMTOOL: 3 stored")
    instance_lines = [line for line in log.splitlines() if ": stored " in line]
    accepted = [line for line in log.splitlines() if "accepted" in line]
    if verbose:
        assert len(instance_lines) == 3, log
        assert accepted and re.search(r"accepted, \d+ presentation contexts?$", accepted[0])
    else:
        assert (instance_lines, accepted) == ([], []), log
    # Every line of the association is short: the long ones (file paths, UIDs) need -v.
    summary = next(line for line in log.splitlines() if "SENDER@" in line)
    assert len(summary) < 100, summary


# ---------------------------------------------------------------------------------------------
# Stopping: Ctrl-C exits 130 (the exit-code table), SIGTERM 0 (a service manager's stop)


@pytest.mark.parametrize(("number", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_a_signal_stops_gracefully_with_the_documented_exit_code(
        serve_process: ServeFactory, tmp_path: Path, number: int, code: int) -> None:
    served = serve_process()
    _study(tmp_path / "study", 1)
    assert _store(served, tmp_path / "study").exit_code == 0
    os.kill(served.process.pid, number)
    assert served.process.process.wait(30) == code, served.process.log_tail()
    log = served.process.log_path.read_text(encoding="utf-8")
    assert "dcmtool: stopped: 1 stored, 0 refused in 1 association\n" in log, log


def test_the_help_says_how_serve_stops_and_where_moves_go() -> None:
    result = run_cli("serve", "--help", env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    text = " ".join(result.stdout.split())
    assert "exits 130 after SIGINT" in text and "0 after SIGTERM" in text
    assert "C-MOVE destinations are the config file's nodes" in text
    assert "on SIGHUP" in text and "ROOT/worklist/" in text


# ---------------------------------------------------------------------------------------------
# C-MOVE to a node added while serving


def _move(served: ServeProcess, study: str, destination: str) -> list[int]:
    """C-MOVE ``study`` to ``destination`` from a pynetdicom requester: the statuses."""
    ae = AE(ae_title="REQUESTER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", served.port, ae_title=served.ae_title)
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    try:
        return [int(status.Status) for status, _ in assoc.send_c_move(
            identifier, destination, StudyRootQueryRetrieveInformationModelMove)]
    finally:
        assoc.release()


def test_a_node_added_while_serving_is_a_move_destination(
        serve_process: ServeFactory, pynetdicom_scp: Callable[..., Any], tmp_path: Path) -> None:
    """serve started before 'dcmtool config add': the C-MOVE finds the node all the same
    (the file changed, so its nodes are read again), and the log says so."""
    served = serve_process()
    study = _study(tmp_path / "study", 2)
    assert _store(served, tmp_path / "study").exit_code == 0
    destination = pynetdicom_scp(ae_title="ME", storage=True)
    assert _move(served, study, "ME")[-1] == 0xA801  # not configured yet
    added = run_cli("config", "add", "MINE", destination.address)
    assert added.exit_code == 0, added.stderr
    assert _move(served, study, "ME")[-1] == 0x0000
    assert len(destination.stored) == 2
    wait_for_log(served, r"config reloaded \(the file changed\): 1 node$")


def test_sighup_rereads_the_nodes_and_a_broken_file_keeps_them(
        serve_process: ServeFactory, pynetdicom_scp: Callable[..., Any], tmp_path: Path,
        isolated_config: Path) -> None:
    served = serve_process()
    study = _study(tmp_path / "study", 1)
    assert _store(served, tmp_path / "study").exit_code == 0
    destination = pynetdicom_scp(ae_title="ME", storage=True)
    assert run_cli("config", "add", "MINE", destination.address).exit_code == 0
    os.kill(served.process.pid, signal.SIGHUP)
    wait_for_log(served, r"config reloaded \(SIGHUP\): 1 node$")
    isolated_config.write_text("[nodes.MINE\nbroken", encoding="utf-8")
    os.kill(served.process.pid, signal.SIGHUP)
    wait_for_log(served, r"warning: config not reloaded \(SIGHUP\): .*invalid TOML.*; keeping "
                         r"the 1 node read before$")
    assert served.process.running()
    assert _move(served, study, "ME")[-1] == 0x0000
    assert len(destination.stored) == 1


# ---------------------------------------------------------------------------------------------
# A peer that resets the connection after the release


def _item(kind: int, data: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(data)) + data


def _associate_rq(called: str, calling: str) -> bytes:
    """A-ASSOCIATE-RQ for Verification, implicit VR (PS3.8 9.3.2)."""
    body = struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16)
    body += bytes(32) + _item(0x10, b"1.2.840.10008.3.1.1.1")
    body += _item(0x20, bytes([1, 0, 0, 0]) + _item(0x30, VERIFICATION.encode())
                  + _item(0x40, b"1.2.840.10008.1.2"))
    body += _item(0x50, _item(0x51, struct.pack(">I", 16384)) + _item(0x52, b"1.2.3.4"))
    return struct.pack(">BxI", 0x01, len(body)) + body


def _read_pdu(sock: socket.socket) -> int:
    header = b""
    while len(header) < 6:
        chunk = sock.recv(6 - len(header))
        assert chunk, "connection closed"
        header += chunk
    kind, length = struct.unpack(">BxI", header)
    while length:
        length -= len(sock.recv(length))
    return int(kind)


def test_a_reset_after_the_release_is_a_debug_line(serve_process: ServeFactory) -> None:
    """Some peers close the socket with the A-RELEASE-RP unread: the kernel sends a reset.
    After a completed release that is no error: one debug line, no traceback (-d shows
    tracebacks, so their absence here means there are none)."""
    served = serve_process("-d")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(_associate_rq(served.ae_title, "RESETTER"))
            assert _read_pdu(sock) == 0x02  # A-ASSOCIATE-AC
            sock.sendall(struct.pack(">BxI", 0x05, 4) + bytes(4))  # A-RELEASE-RQ
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    wait_for_log(served, r"^dcmtool: RESETTER@127\.0\.0\.1 -> DCMTOOL: 0 stored in ", 3)
    log = wait_for_log(served, r"^dcmtool: debug: 127\.0\.0\.1:\d+ closed the connection with "
                               r"a reset (after|during) the release ", 3)
    assert "Traceback" not in log and "dcmtool: error:" not in log, log
    assert "aborted" not in log, log


# ---------------------------------------------------------------------------------------------
# The DIMSE timeout: dcmtool gave up waiting, after how long, and which option changes it


def test_a_dimse_timeout_says_dcmtool_gave_up(pynetdicom_scp: Callable[..., Any]) -> None:
    released = threading.Event()

    def slow_find(event: Any) -> Any:
        released.wait(10)
        yield 0x0000, None

    scp = pynetdicom_scp(handlers={evt.EVT_C_FIND: slow_find},
                         contexts=[StudyRootQueryRetrieveInformationModelFind])
    try:
        result = run_cli("find", scp.address, "-k", "PatientID=1", "--dimse-timeout", "0.5")
    finally:
        released.set()
    assert result.exit_code == 5
    assert result.stderr == (
        f"dcmtool: error: no answer from {scp.address} to the C-FIND within 0.5 s: dcmtool "
        "gave up waiting and aborted the association\n"
        "dcmtool: hint: a slow peer needs a longer DIMSE timeout (--dimse-timeout)\n")


def _load_in_process(served: ServedArchive, folder: Path) -> str:
    study = _study(folder, 1)
    assert run_cli("store", served.address, str(folder)).exit_code == 0
    return study


def test_serve_says_when_it_gave_up_on_a_move_destination(
        serve_archive: Callable[..., ServedArchive], pynetdicom_scp: Callable[..., Any],
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    released = threading.Event()

    def slow_store(event: Any) -> int:
        released.wait(10)
        return 0x0000

    destination = pynetdicom_scp(ae_title="SLOW", handlers={evt.EVT_C_STORE: slow_store},
                                 contexts=[CTImageStorage])
    served = serve_archive(dimse_timeout=0.5,
                           destinations=(("SLOW", destination.host, destination.port),))
    study = _load_in_process(served, tmp_path / "study")
    ae = AE(ae_title="REQUESTER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    try:
        with caplog.at_level("WARNING", logger="dcmtool.serve"):
            assoc = ae.associate(served.host, served.port, ae_title=served.ae_title)
            try:
                statuses = [int(s.Status) for s, _ in assoc.send_c_move(
                    identifier, "SLOW", StudyRootQueryRetrieveInformationModelMove)]
            finally:
                assoc.release()
    finally:
        released.set()
    assert statuses[-1] == 0xA702
    assert "C-MOVE: no answer from SLOW within 0.5 s (--dimse-timeout): dcmtool gave up and " \
        "aborted the sub-association" in caplog.messages


def test_serve_says_when_it_gave_up_on_a_get_requester(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """A C-GET requester that never answers its C-STORE sub-operation: the association's
    line says dcmtool aborted it after the DIMSE timeout, not that the peer did."""
    released = threading.Event()
    served = serve_archive(dimse_timeout=0.5)
    study = _load_in_process(served, tmp_path / "study")

    def silent_store(event: Any) -> int:
        released.wait(10)
        return 0x0000

    ae = AE(ae_title="GETTER")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    try:
        with caplog.at_level("INFO", logger="dcmtool.serve"):
            assoc = ae.associate(served.host, served.port, ae_title=served.ae_title,
                                 ext_neg=[build_role(CTImageStorage, scp_role=True)],
                                 evt_handlers=[(evt.EVT_C_STORE, silent_store)])
            assert assoc.is_established
            list(assoc.send_c_get(identifier, StudyRootQueryRetrieveInformationModelGet))
            released.set()
            assoc.join(10)
            deadline = time.monotonic() + 10
            while not any("GETTER@" in m for m in caplog.messages):
                assert time.monotonic() < deadline, caplog.messages
                time.sleep(0.02)
    finally:
        released.set()
    (line,) = [m for m in caplog.messages if "GETTER@" in m]
    assert line.endswith("; no answer within 0.5 s (--dimse-timeout): dcmtool gave up and "
                         "aborted the association"), line
