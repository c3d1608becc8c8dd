"""``dcmtool store`` over the plain-TCP client (``dcmtool.scu.store_lean``), against real peers.

The client exists for start-up time: a store that sends files as their bytes loads neither
pydicom nor pynetdicom. Each test checks what a user sees: the files arrive byte for byte,
refusals, aborts and timeouts read as they did through pynetdicom's client (same outcomes,
messages and exit codes), and a file the peer takes only converted still goes, converted.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import evt
from support.archive import ServedArchive
from support.datasets import dataset_bytes, pydicom_test_file, write_instance
from support.peers import DcmtkStoreSCP, OrthancServer, PynetdicomSCP, run_cli
from typer.testing import Result

from dcmtool.dicom.commands import command, parse_command, uid_value, us
from dcmtool.net import framing
from dcmtool.net.lean import pdus
from dcmtool.scu import store_lean

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
HEAVY = ("pydicom", "pynetdicom", "numpy")

ScpFactory = Callable[..., PynetdicomSCP]


@pytest.fixture
def lean_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any association through pynetdicom's client fails the test."""
    import dcmtool.net.association

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pynetdicom's client was used")

    monkeypatch.setattr(dcmtool.net.association, "open_association", refuse)


def via_pynetdicom(*args: str, monkeypatch: pytest.MonkeyPatch) -> Result:
    """``dcmtool store ARGS`` through pynetdicom's client, as before the plain-TCP one."""
    with monkeypatch.context() as patch:
        patch.setattr(store_lean, "usable", lambda *a, **k: False)
        return run_cli("store", *args)


def files(folder: Path, count: int, **attributes: Any) -> list[Path]:
    paths = [folder / f"{i:02}.dcm" for i in range(count)]
    for index, path in enumerate(paths):
        write_instance(path, InstanceNumber=index + 1, **attributes)
    return paths


def by_uid(paths: Any) -> dict[str, Path]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): Path(p) for p in paths}


def assert_byte_for_byte(sent: list[Path], received: dict[str, Path]) -> None:
    sources = by_uid(sent)
    assert set(received) == set(sources)
    for uid, path in sources.items():
        assert dataset_bytes(received[uid]) == dataset_bytes(path), path.name


def without_timing(result: Result) -> tuple[int, dict[str, Any], str]:
    summary = json.loads(result.stdout)
    for key in ("seconds", "megabytes"):
        summary.pop(key)
    return result.exit_code, summary, result.stderr


# ---------------------------------------------------------------------------------------------
# Real peers: the files arrive as they are


@pytest.mark.peer("dcmtk")
def test_dcmtk_storescp_receives_every_file_byte_for_byte(
        lean_only: None, dcmtk_storescp: Callable[..., DcmtkStoreSCP], tmp_path: Path) -> None:
    scp = dcmtk_storescp()
    sent = files(tmp_path / "in", 5) + files(tmp_path / "implicit", 2, transfer_syntax=IMPLICIT)
    result = run_cli("store", scp.address, str(tmp_path), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("7 sent, 7 stored (0 with warnings), 0 failed, 0 skipped;")
    assert_byte_for_byte(sent, by_uid(scp.output_dir.iterdir()))


def test_dcmtool_serve_receives_every_file_byte_for_byte(
        lean_only: None, serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    served = serve_archive()
    sent = files(tmp_path, 6)
    result = run_cli("store", served.address, str(tmp_path), "--jobs", "2",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert_byte_for_byte(sent, by_uid(served.files()))


@pytest.mark.peer("orthanc")
def test_orthanc_receives_every_file_byte_for_byte(
        lean_only: None, orthanc: Callable[..., OrthancServer], tmp_path: Path) -> None:
    server = orthanc()
    sent = files(tmp_path / "in", 4)
    result = run_cli("store", server.address, str(tmp_path / "in"), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out"
    out.mkdir()
    for index, instance in enumerate(server.rest.instances()):
        (out / f"{index}.dcm").write_bytes(server.rest.get(f"/instances/{instance}/file"))
    assert_byte_for_byte(sent, by_uid(out.iterdir()))


@pytest.mark.peer("dcmtk")
def test_small_pdus_and_streamed_blocks_arrive_byte_for_byte(
        lean_only: None, dcmtk_storescp: Callable[..., DcmtkStoreSCP], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Data sets go in PDUs of the peer's maximum length; above the in-memory limit, block
    by block from the file."""
    monkeypatch.setattr(framing, "STREAM_ABOVE", 50_000)  # the large file: 3 blocks
    scp = dcmtk_storescp("--max-pdu", "4096")
    large = tmp_path / "large.dcm"
    write_instance(large, rows=256, columns=256)
    odd = tmp_path / "odd.dcm"  # a data set 3 bytes over a PDU boundary
    write_instance(odd, rows=1, columns=2045)
    result = run_cli("store", scp.address, str(large), str(odd), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert_byte_for_byte([large, odd], by_uid(scp.output_dir.iterdir()))


def test_a_large_file_gone_before_its_turn_fails_alone(
        lean_only: None, pynetdicom_scp: ScpFactory, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A file streamed from disk that is removed after the scan (here while the file before
    it is being stored) fails on its own, named; the association goes on with the next."""
    from dcmtool.config import load_config, resolve_peer
    from dcmtool.scu.store import scan, store

    monkeypatch.setattr(framing, "STREAM_ABOVE", 50_000)  # "large": streamed in blocks
    scp = pynetdicom_scp(storage=True)
    first, large, last = tmp_path / "a.dcm", tmp_path / "b.dcm", tmp_path / "c.dcm"
    study = generate_uid()  # one study: sent in this order
    write_instance(first, StudyInstanceUID=study)
    write_instance(large, rows=256, columns=256, StudyInstanceUID=study)
    write_instance(last, StudyInstanceUID=study)
    instances = scan([first, large, last]).instances

    def remove_the_large_one(outcome: Any, done: int, total: int) -> None:
        if outcome.path == first:
            large.unlink()

    peer = resolve_peer(scp.address, load_config(None))
    summary = store(peer, instances, on_file=remove_the_large_one)
    by_path = {o.path: o for o in summary.outcomes}
    assert by_path[first].stored and by_path[last].stored
    assert not by_path[large].stored
    assert "FileNotFoundError" in by_path[large].message
    assert summary.abandoned_by is None
    assert len(scp.wait_closed(1)) == 1  # one association, released, not aborted


# ---------------------------------------------------------------------------------------------
# What the peer refuses


@pytest.mark.peer("dcmtk")
def test_a_file_in_a_refused_syntax_is_converted_and_sent(
        dcmtk_storescp: Callable[..., DcmtkStoreSCP], tmp_path: Path) -> None:
    scp = dcmtk_storescp()  # uncompressed syntaxes only
    rle = dcmread(pydicom_test_file("MR_small_RLE.dcm"))
    rle.SOPInstanceUID = rle.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    rle.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    plain = files(tmp_path / "plain", 2)
    report = tmp_path / "report.json"
    result = run_cli("store", scp.address, str(tmp_path / "rle.dcm"), *map(str, plain),
                     "--report", str(report))
    assert result.exit_code == 0, result.stderr
    rows = {Path(r["path"]).name: r for r in json.loads(report.read_text())}
    assert {name: r["transfer_syntax"] for name, r in rows.items()} == {
        "rle.dcm": EXPLICIT, "00.dcm": EXPLICIT, "01.dcm": EXPLICIT}
    received = by_uid(scp.output_dir.iterdir())
    assert (dcmread(received[str(rle.SOPInstanceUID)]).pixel_array == rle.pixel_array).all()
    assert_byte_for_byte(plain, {uid: received[uid] for uid in by_uid(plain)})


def test_a_refused_class_fails_alone_as_before(pynetdicom_scp: ScpFactory, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    scp = pynetdicom_scp(contexts=[CT], handlers=[(evt.EVT_C_STORE, lambda event: 0)])
    files(tmp_path / "ct", 2)
    files(tmp_path / "mr", 2, SOPClassUID=MR)
    args = (scp.address, str(tmp_path), "--json")
    lean = run_cli("store", *args)
    assert lean.exit_code == 7, lean.stderr
    summary = json.loads(lean.stdout)
    assert (summary["stored"], summary["failed"]) == (2, 2)
    assert sorted(f["message"] for f in summary["files"] if not f["stored"]) == \
        [f"the peer refused SOP class {MR}"] * 2
    assert without_timing(lean) == without_timing(via_pynetdicom(*args,
                                                                 monkeypatch=monkeypatch))


def test_a_peer_that_accepts_nothing_fails_every_file_as_before(
        pynetdicom_scp: ScpFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scp = pynetdicom_scp(contexts=[CT])
    files(tmp_path, 2, SOPClassUID=MR)
    args = (scp.address, str(tmp_path), "--json")
    lean = run_cli("store", *args)
    assert lean.exit_code == 5, lean.stderr
    assert {f["message"] for f in json.loads(lean.stdout)["files"]} == \
        {f"the peer refused SOP class {MR}"}
    assert without_timing(lean) == without_timing(via_pynetdicom(*args,
                                                                 monkeypatch=monkeypatch))


def test_statuses_and_error_comments_as_before(pynetdicom_scp: ScpFactory, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    count = {"n": 0}

    def every_second_refused(event: Any) -> Any:
        from pydicom.dataset import Dataset

        count["n"] += 1
        status = Dataset()
        status.Status = 0xA700 if count["n"] % 2 else 0xB000
        status.ErrorComment = "disk full" if count["n"] % 2 else ""
        return status

    scp = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, every_second_refused)], storage=True)
    files(tmp_path, 4)
    args = (scp.address, str(tmp_path), "--json")
    lean = run_cli("store", *args)
    assert lean.exit_code == 7, lean.stderr
    messages = sorted(f["message"] for f in json.loads(lean.stdout)["files"])
    assert messages == ["refused (0xA700): disk full"] * 2 + ["stored with warning (0xB000)"] * 2
    count["n"] = 0
    assert without_timing(lean) == without_timing(via_pynetdicom(*args,
                                                                 monkeypatch=monkeypatch))


# ---------------------------------------------------------------------------------------------
# A peer that aborts, and one that never answers


def _abort_at(number: int) -> Callable[[Any], int]:
    count = {"n": 0}

    def handler(event: Any) -> int:
        count["n"] += 1
        if count["n"] == number:
            event.assoc.abort()
        return 0x0000

    return handler


def test_an_abort_mid_batch_reads_as_before_and_retries_resume(
        pynetdicom_scp: ScpFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files(tmp_path, 4)
    args = (str(tmp_path), "--json")

    def run(via: Callable[..., Result]) -> tuple[int, dict[str, Any], str]:
        scp = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, _abort_at(3))], storage=True)
        code, summary, stderr = without_timing(via(scp.address))
        named = json.loads(json.dumps(summary).replace(scp.address, "PEER"))
        return code, named, stderr.replace(scp.address, "PEER")

    lean = run(lambda address: run_cli("store", address, *args))
    code, summary, stderr = lean
    assert code == 7, stderr
    assert (summary["sent"], summary["stored"], summary["failed"], summary["not_sent"]) == \
        (3, 2, 1, 1)
    assert "PEER aborted the association during the C-STORE of" in stderr
    assert lean == run(lambda address: via_pynetdicom(address, *args, monkeypatch=monkeypatch))

    retried = pynetdicom_scp(handlers=[(evt.EVT_C_STORE, _abort_at(2))], storage=True)
    result = run_cli("store", retried.address, *args, "--retries", "1")
    assert result.exit_code == 0, result.stderr
    assert "retry 1 of 1" in result.stderr
    assert json.loads(result.stdout)["stored"] == 4
    assert len(retried.wait_closed(2)) == 2


class _SilentPeer:
    """Accepts CT in explicit VR, reads one C-STORE and never answers it."""

    def __init__(self) -> None:
        import threading

        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.port = int(self.listener.getsockname()[1])
        self.received: list[int] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _read(self, sock: socket.socket, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError
            data += chunk
        return data

    def _pdu(self, sock: socket.socket) -> tuple[int, bytes]:
        head = self._read(sock, 6)
        self.received.append(head[0])
        return head[0], self._read(sock, struct.unpack(">I", head[2:])[0])

    def _run(self) -> None:
        sock, _ = self.listener.accept()
        sock.settimeout(10)
        try:
            self._pdu(sock)
            item = lambda t, v: struct.pack(">BBH", t, 0, len(v)) + v  # noqa: E731
            body = struct.pack(">HH", 1, 0) + b"RAW".ljust(16) + b"DCMTOOL".ljust(16) + \
                bytes(32) + item(0x10, pdus.APPLICATION_CONTEXT.encode()) + \
                item(0x21, b"\x01\x00\x00\x00" + item(0x40, EXPLICIT.encode())) + \
                item(0x50, item(0x51, struct.pack(">I", 16384)))
            sock.sendall(struct.pack(">BBI", pdus.ASSOCIATE_AC, 0, len(body)) + body)
            while self._pdu(sock)[0] == pdus.P_DATA_TF:
                pass  # the C-STORE, then dcmtool's A-ABORT
        except (OSError, ConnectionError):
            pass
        finally:
            sock.close()


def test_the_dimse_timeout_aborts_and_reports(lean_only: None, tmp_path: Path) -> None:
    peer = _SilentPeer()
    files(tmp_path, 2)
    result = run_cli("store", f"RAW@127.0.0.1:{peer.port}", str(tmp_path), "--dimse-timeout",
                     "0.5", "--json")
    peer.thread.join(10)
    assert result.exit_code == 5, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["stored"], summary["not_sent"]) == (1, 0, 1)
    assert f"no answer from RAW@127.0.0.1:{peer.port} to the C-STORE of 00.dcm within 0.5 s" \
        in result.stderr
    assert peer.received[-1] == pdus.ABORT


def test_a_response_to_another_message_id_aborts(lean_only: None, tmp_path: Path) -> None:
    """The response is checked against its request's Message ID."""
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen: list[int] = []

    def confused_peer() -> None:
        sock, _ = listener.accept()
        peer = _SilentPeer.__new__(_SilentPeer)
        peer.received = seen
        with sock:
            sock.settimeout(10)
            peer._pdu(sock)
            item = lambda t, v: struct.pack(">BBH", t, 0, len(v)) + v  # noqa: E731
            body = struct.pack(">HH", 1, 0) + b"RAW".ljust(16) + b"DCMTOOL".ljust(16) + \
                bytes(32) + item(0x10, pdus.APPLICATION_CONTEXT.encode()) + \
                item(0x21, b"\x01\x00\x00\x00" + item(0x40, EXPLICIT.encode()))
            sock.sendall(struct.pack(">BBI", pdus.ASSOCIATE_AC, 0, len(body)) + body)
            fragments = b""
            while True:
                _, pdu = peer._pdu(sock)
                for _, control, data in pdus.parse_p_data(pdu):
                    if control & 0x01:
                        fragments += data
                    if control == 0x02:  # the data set's last fragment
                        fields = parse_command(fragments)
                        assert fields is not None
                        wrong = (us(fields, 0x0110) or 0) + 1
                        sock.sendall(framing.p_data_tf(1, 0x03, command([
                            (0x0002, uid_value(CT)), (0x0100, struct.pack("<H", 0x8001)),
                            (0x0120, struct.pack("<H", wrong)),
                            (0x0800, struct.pack("<H", 0x0101)),
                            (0x0900, struct.pack("<H", 0))])))
                        try:
                            while True:
                                peer._pdu(sock)
                        except (OSError, ConnectionError):
                            return

    thread = threading.Thread(target=confused_peer, daemon=True)
    thread.start()
    files(tmp_path, 1)
    result = run_cli("store", f"RAW@127.0.0.1:{listener.getsockname()[1]}", str(tmp_path))
    thread.join(10)
    listener.close()
    assert result.exit_code == 5, result.stderr
    assert "sent a message that is not the response to our C-STORE: dcmtool aborted the " \
        "association" in result.stderr
    assert seen[-1] == pdus.ABORT


# ---------------------------------------------------------------------------------------------
# Start-up


LOADED = """
import atexit, json, sys
atexit.register(lambda: sys.__stderr__.write(
    "LOADED " + json.dumps(sorted({m.split(".")[0] for m in sys.modules})) + "\\n"))
sys.argv = ["dcmtool", "store", *sys.argv[1:]]
from dcmtool.cli.entry import main
main()
"""


def _store_process(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    done = subprocess.run([sys.executable, "-c", LOADED, *args], capture_output=True,
                          text=True, timeout=60)
    line = next(x for x in done.stderr.splitlines() if x.startswith("LOADED "))
    return done, set(json.loads(line[7:]))


def test_a_store_process_loads_no_dicom_stack(serve_archive: Callable[..., ServedArchive],
                                              tmp_path: Path) -> None:
    served = serve_archive()
    sent = files(tmp_path, 3)
    done, loaded = _store_process(served.address, str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("3 sent, 3 stored")
    assert not set(HEAVY) & loaded
    assert_byte_for_byte(sent, by_uid(served.files()))


@pytest.mark.peer("dcmtk")
def test_a_store_that_converts_loads_pydicom_then(
        dcmtk_storescp: Callable[..., DcmtkStoreSCP], tmp_path: Path) -> None:
    scp = dcmtk_storescp()
    rle = dcmread(pydicom_test_file("MR_small_RLE.dcm"))
    rle.save_as(tmp_path / "rle.dcm", enforce_file_format=True)
    done, loaded = _store_process(scp.address, str(tmp_path / "rle.dcm"))
    assert done.returncode == 0, done.stderr
    assert {"pydicom", "pynetdicom"} <= loaded
    assert len(list(scp.output_dir.iterdir())) == 1
