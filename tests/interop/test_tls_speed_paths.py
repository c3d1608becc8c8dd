"""TLS on dcmtool's socket-owning paths (``net.wire``): store, get, move, a receiver's
C-STOREs, serve's sub-operations and C-FIND pending responses, with DCMTK and pynetdicom peers.

Over TLS one thread at a time may use an SSL object; these paths used to be switched off there.
Each test checks what a user sees (every instance arrives byte for byte, the exit status and
summary) and, through ``socket_paths``, that the owning path really ran on the TLS socket.
"""

from __future__ import annotations

import json
import random
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from support.archive import ServedArchive
from support.datasets import dataset_bytes, make_dataset, pydicom_test_file, write_instance
from support.peers import DcmtkStoreSCP, free_port, in_ci, run_cli, run_dcmtool
from support.processes import dcmtk_env, require_program
from support.tls import Certificates, certificates_fixture  # noqa: F401 - a fixture

from dcmtool.net import owned, wire
from dcmtool.net.lean.client import LeanAssociation

STORESCU, FINDSCU = "/usr/bin/storescu", "/usr/bin/findscu"


# ---------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture
def socket_paths(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the calls of dcmtool's socket-owning code made on TLS sockets, by name:
    ``send_request`` and ``_stream`` (a C-STORE request written by dcmtool, the latter for a
    data set over 32 MB), ``send_c_store`` (a C-STORE request written by dcmtool's own
    client, ``net.lean``, which ``dcmtool store`` uses), ``write_exclusive`` (C-STORE
    responses of a receiving side, pending C-MOVE responses), ``take`` (a thread took an
    association's reading), ``data_set`` (a data set read off the socket by that thread),
    ``flush`` (C-FIND pending responses)."""
    counts: Counter[str] = Counter()

    def spy(owner: Any, name: str, socket_of: Callable[[Any], Any]) -> None:
        original = getattr(owner, name)

        def counted(first: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(socket_of(first), ssl.SSLSocket):
                counts[name] += 1
            return original(first, *args, **kwargs)

        monkeypatch.setattr(owner, name, counted)

    def of_association(assoc: Any) -> Any:
        return getattr(assoc.dul.socket, "socket", None)

    for name in ("send_request", "_stream", "write_exclusive"):
        spy(wire, name, of_association)
    spy(owned.OwnedReader, "take", lambda reader: reader.sock)
    spy(LeanAssociation, "send_c_store", lambda session: session._sock)
    spy(owned.OwnedReader, "data_set", lambda reader: reader.sock)
    spy(wire.PendingWriter, "flush", lambda writer: writer.sock)
    return counts


def dcmtk_tls_program(path: str) -> str:
    """``path`` if this DCMTK program was built with TLS, else skip (fail when CI=true)."""
    program = require_program(path, "dcmtk", f"DCMTK {Path(path).name}")
    done = subprocess.run([program, "--help"], capture_output=True, text=True, timeout=30,
                          env=dcmtk_env())
    if "+tls" not in done.stdout + done.stderr:
        reason = f"this DCMTK {Path(path).name} was built without TLS (no +tls in --help)"
        if in_ci():
            pytest.fail(f"{reason} [CI=true]", pytrace=False)
        pytest.skip(reason)
    return program


def run_dcmtk(program: str, *args: str | Path | int) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([program, *(str(a) for a in args)], capture_output=True, text=True,
                          timeout=120, env=dcmtk_env(), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{Path(program).name} exited {done.returncode}:\n" \
                                 f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def multi_megabyte(path: Path, megabytes: int, seed: int, **attributes: Any) -> Any:
    """A CT image of 2048 columns and ``megabytes`` MiB of random 16-bit pixel data: a PDU
    out of place or lost changes its bytes."""
    rows = megabytes * 2**20 // (2048 * 2)
    ds = make_dataset(rows=rows, columns=2048, **attributes)
    ds.PixelData = random.Random(seed).randbytes(rows * 2048 * 2)
    return write_instance(path, ds)


def instances(folder: Path, *, small: int, megabytes: tuple[int, ...] = (6,),
              **attributes: Any) -> dict[str, Path]:
    """SOP Instance UID -> file: ``small`` 64x64 images and one image of each size in
    ``megabytes``."""
    written: dict[str, Path] = {}
    for index in range(small):
        path = folder / f"small-{index:02}.dcm"
        ds = write_instance(path, rows=64, columns=64, InstanceNumber=index + 1, **attributes)
        written[str(ds.SOPInstanceUID)] = path
    for index, size in enumerate(megabytes):
        path = folder / f"large-{size}mb.dcm"
        written[str(multi_megabyte(path, size, seed=index, **attributes).SOPInstanceUID)] = path
    return written


def by_uid(paths: Iterable[Path]) -> dict[str, Path]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths}


def assert_same_data_sets(sent: dict[str, Path], received: dict[str, Path]) -> None:
    assert set(received) == set(sent)
    for uid, path in sent.items():
        assert dataset_bytes(received[uid]) == dataset_bytes(path), path.name


# ---------------------------------------------------------------------------------------------
# dcmtool store over TLS to DCMTK storescp +tls


@pytest.mark.peer("dcmtk")
def test_store_over_tls_to_dcmtk_storescp_sends_every_byte_on_the_fast_path(
        dcmtk_storescp: Callable[..., DcmtkStoreSCP], certificates: Certificates,
        socket_paths: Counter[str], tmp_path: Path) -> None:
    """20 small images, a 6 MB and a 40 MB one (streamed in blocks: over 32 MB) go out on
    dcmtool's own client over TLS, byte for byte; an RLE file storescp refuses is decompressed
    and sent by pynetdicom after them."""
    c = certificates
    dcmtk_tls_program("/usr/bin/storescp")
    scp = dcmtk_storescp(*c.dcmtk_server())  # uncompressed syntaxes only: RLE is refused
    folder = tmp_path / "send"
    sent = instances(folder, small=20, megabytes=(6, 40))
    rle = dcmread(pydicom_test_file("MR_small_RLE.dcm"))
    rle.SOPInstanceUID = rle.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    rle.save_as(folder / "rle.dcm", enforce_file_format=True)

    result = run_cli("store", *c.dcmtool_client(), scp.address, folder, "--json")
    assert result.exit_code == 0, result.output + scp.log_tail()
    summary = json.loads(result.stdout)
    assert (summary["sent"], summary["stored"], summary["failed"]) == (23, 23, 0)
    received = by_uid(scp.received())
    copy = received.pop(str(rle.SOPInstanceUID))
    assert (dcmread(copy).pixel_array == rle.pixel_array).all()
    assert_same_data_sets(sent, received)
    # Every file in its own syntax went through dcmtool's own client on a TLS socket.
    assert socket_paths["send_c_store"] == 22


# ---------------------------------------------------------------------------------------------
# dcmtool serve over TLS: DCMTK storescu +tls in, dcmtool get and move out, findscu +tls


@pytest.mark.peer("dcmtk")
def test_serve_over_tls_answers_get_and_move_on_the_fast_paths(
        serve_archive: Callable[..., ServedArchive], certificates: Certificates,
        socket_paths: Counter[str], tmp_path: Path) -> None:
    """DCMTK storescu +tls stores a study into serve; dcmtool get over TLS brings it back
    (serve's C-STOREs on the requester's TLS association, read off it by get's thread) and
    move -o too (its pending responses written straight onto the TLS association; the
    sub-association to move's receiver is plain: serve has no TLS for move destinations)."""
    c = certificates
    storescu = dcmtk_tls_program(STORESCU)
    local_port = free_port()
    served = serve_archive(tls_cert=c.server_cert, tls_key=c.server_key, tls_ca=c.ca,
                           destinations=(("DCMTOOL", "127.0.0.1", local_port),))
    config = tmp_path / "config.toml"
    config.write_text(f'[local]\nae_title = "DCMTOOL"\nport = {local_port}\n'
                      f'bind = "127.0.0.1"\n', encoding="utf-8")
    env = {"DCMTOOL_CONFIG": str(config)}
    study = generate_uid()
    sent = instances(tmp_path / "load", small=12, megabytes=(6,), StudyInstanceUID=study)
    run_dcmtk(storescu, *c.dcmtk_client(), "-aet", "TLSSCU", "-aec", served.ae_title,
              "127.0.0.1", served.port, *sent.values())
    address = f"{served.ae_title}@127.0.0.1:{served.port}"

    socket_paths.clear()
    got = run_cli("get", *c.dcmtool_client(), address, "--study", study, "-o",
                  tmp_path / "get", "--json", env=env)
    assert got.exit_code == 0, got.output
    summary = json.loads(got.stdout)
    assert (summary["completed"], summary["failed"], summary["received"]) == (13, 0, 13)
    assert_same_data_sets(sent, by_uid(list((tmp_path / "get").rglob("*.dcm"))))
    assert socket_paths["send_request"] == 13  # serve's sub-operations, written by its thread
    assert socket_paths["data_set"] == 13  # get's thread read each one off the TLS socket

    socket_paths.clear()
    moved = run_cli("move", *c.dcmtool_client(), address, "--study", study, "-o",
                    tmp_path / "move", "--json", env=env)
    assert moved.exit_code == 0, moved.output
    summary = json.loads(moved.stdout)
    assert (summary["completed"], summary["failed"], summary["received"]) == (13, 0, 13)
    assert_same_data_sets(sent, by_uid(list((tmp_path / "move").rglob("*.dcm"))))
    assert socket_paths["write_exclusive"] == 12  # a pending response after all but the last


@pytest.mark.peer("dcmtk")
def test_dcmtk_findscu_over_tls_gets_every_match_from_serve(
        serve_archive: Callable[..., ServedArchive], certificates: Certificates,
        socket_paths: Counter[str], tmp_path: Path) -> None:
    """serve writes C-FIND pending responses straight onto the TLS socket, in batches, while
    pynetdicom's DUL thread may read a C-CANCEL off it: findscu +tls gets every match."""
    c = certificates
    findscu = dcmtk_tls_program(FINDSCU)
    served = serve_archive(tls_cert=c.server_cert, tls_key=c.server_key, tls_ca=c.ca)
    study = generate_uid()
    sent = instances(tmp_path / "load", small=40, megabytes=(), StudyInstanceUID=study)
    address = f"{served.ae_title}@127.0.0.1:{served.port}"
    stored = run_cli("store", *c.dcmtool_client(), address, tmp_path / "load")
    assert stored.exit_code == 0, stored.output

    socket_paths.clear()
    out = tmp_path / "responses"
    out.mkdir()
    run_dcmtk(findscu, *c.dcmtk_client(), "-S", "-aec", served.ae_title, "-k",
              "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={study}", "-k",
              "SeriesInstanceUID", "-k", "SOPInstanceUID", "-X", "-od", out, "127.0.0.1",
              served.port)
    answers = {str(dcmread(p).SOPInstanceUID) for p in out.glob("rsp*.dcm")}
    assert answers == set(sent)
    assert socket_paths["flush"] >= 1


# ---------------------------------------------------------------------------------------------
# A receiver over TLS: the C-STOREs after the first read off the socket (receive_more)


def test_a_tls_receiver_reads_the_c_stores_after_the_first_itself(
        certificates: Certificates, socket_paths: Counter[str], tmp_path: Path) -> None:
    """The storage SCP of ``move -o`` (here started with TLS, which the CLI does not offer)
    answers the first C-STORE through pynetdicom, whose DUL thread writes that answer while
    the receiving thread already owns the TLS socket; it reads the rest itself."""
    from dcmtool.archive.storage import Archive, StorePolicy
    from dcmtool.net import receiving
    from dcmtool.scp.options import ServeOptions
    from dcmtool.scp.server import RunningServer, start_server

    c = certificates
    archive = Archive(tmp_path / "received", StorePolicy(min_free_bytes=0))
    archive.reconcile()
    server: RunningServer | None = None

    def receive_more(assoc: Any, answer_first: Callable[[], None]) -> None:
        assert server is not None
        receiving.receive_more(assoc, server.store_file, server.archive.incoming,
                               answer_first)

    server = start_server(archive, ServeOptions(port=0, tls_cert=c.server_cert,
                                                tls_key=c.server_key, tls_ca=c.ca),
                          receive=receive_more)
    try:
        sent = instances(tmp_path / "send", small=15, megabytes=(6,))
        address = f"DCMTOOL@127.0.0.1:{server.address[1]}"
        result = run_cli("store", *c.dcmtool_client(), address, tmp_path / "send", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["stored"] == 16
    finally:
        server.stop()
    assert_same_data_sets(sent, by_uid(archive.instance_files()))
    assert socket_paths["data_set"] == 15  # all but the first, read by the receiving thread
    assert socket_paths["write_exclusive"] == 15  # and answered by it


# ---------------------------------------------------------------------------------------------
# A peer that aborts in the middle of a TLS store


def storage_scp(handlers: list[Any], certificates: Certificates | None = None) -> Any:
    """A pynetdicom storage SCP on 127.0.0.1 (a kernel-chosen port), on TLS with
    ``certificates``."""
    ae = AE(ae_title="ABORTER")
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, cx.transfer_syntax)
    context = None
    if certificates is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificates.server_cert, certificates.server_key)
    return ae.start_server(("127.0.0.1", 0), block=False, ssl_context=context,
                           evt_handlers=handlers)


def store_to_aborting_peer(folder: Path, when: str, certificates: Certificates | None
                           ) -> tuple[int, dict[str, Any], str]:
    """``dcmtool store FOLDER --json`` (a process: a hang fails the test) to a peer that
    aborts the association ``when``: (exit status, summary, stderr), the peer's address
    replaced by ``PEER``."""
    seen = Counter[str]()

    def answer(event: Any) -> int:
        seen["stores"] += 1
        if when == "instead of the second answer" and seen["stores"] == 2:
            event.assoc.abort()
        return 0x0000

    def abort_inside_a_data_set(event: Any) -> None:
        if type(event.pdu).__name__ == "P_DATA_TF":
            seen["pdus"] += 1
            if seen["pdus"] == 64:  # the first image takes 2 PDUs, the 8 MB one ~500
                # On the DUL thread, whose abort would wait for the DUL itself: ask from aside.
                threading.Thread(target=event.assoc.abort, daemon=True).start()

    handlers: list[Any] = [(evt.EVT_C_STORE, answer)]
    if when == "inside the second data set":
        handlers.append((evt.EVT_PDU_RECV, abort_inside_a_data_set))
    server = storage_scp(handlers, certificates)
    options = [] if certificates is None else ["--tls-ca", str(certificates.ca)]
    address = f"ABORTER@127.0.0.1:{server.server_address[1]}"
    try:
        done = run_dcmtool("store", *options, address, folder, "--json", timeout=60)
    finally:
        server.shutdown()
    return (done.returncode, json.loads(done.stdout.replace(address, "PEER")),
            done.stderr.replace(address, "PEER"))


@pytest.mark.parametrize("when", ["instead of the second answer", "inside the second data set"])
def test_an_abort_from_the_peer_mid_store_ends_a_tls_store_as_in_the_clear(
        certificates: Certificates, tmp_path: Path, when: str) -> None:
    """The peer aborts when the second C-STORE arrives, or while its 8 MB data set is still
    being written: over TLS dcmtool ends at once and reports exactly what it reports in the
    clear: the second instance failed with the association, the third was not sent."""
    folder, study = tmp_path / "send", generate_uid()  # one study: sent in name order
    write_instance(folder / "0.dcm", rows=64, columns=64, StudyInstanceUID=study)
    multi_megabyte(folder / "1.dcm", 8, seed=1, StudyInstanceUID=study)
    write_instance(folder / "2.dcm", rows=64, columns=64, StudyInstanceUID=study)

    plain = store_to_aborting_peer(folder, when, None)
    code, summary, stderr = store_to_aborting_peer(folder, when, certificates)
    assert (code, summary["files"], stderr) == (plain[0], plain[1]["files"], plain[2])
    assert code in (5, 7), stderr  # the association was aborted; a file failed
    assert [f["stored"] for f in summary["files"]] == [True, False, False], summary
    assert (summary["sent"], summary["not_sent"]) == (2, 1), summary
    assert all("aborted" in f["message"] for f in summary["files"][1:]), summary
    assert "Traceback" not in stderr


# ---------------------------------------------------------------------------------------------
# Fix "TLS close": pynetdicom does not close an SSL connection under another thread's SSL call


def test_a_tls_connection_is_not_closed_during_another_threads_ssl_call(
        serve_archive: Callable[..., ServedArchive], certificates: Certificates) -> None:
    """pynetdicom's DUL thread closes connections (after an abort, a failed write) while an
    owning thread may be inside an SSL call, made under the send lock: the close waits for
    that lock, so the SSL object's descriptor is never freed under a read or a write."""
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    from dcmtool.config import Peer, TlsSettings
    from dcmtool.net.association import open_association
    from dcmtool.net.contexts import ContextRequest
    from dcmtool.net.links import link

    c = certificates
    served = serve_archive(tls_cert=c.server_cert, tls_key=c.server_key)
    peer = Peer(label="serve", host="127.0.0.1", port=served.port,
                called_ae_title=served.ae_title, calling_ae_title="CLOSER",
                tls=TlsSettings(ca=c.ca))
    with open_association(peer, [ContextRequest(Verification, ("1.2.840.10008.1.2",))]) as s:
        transport = s.assoc.dul.socket
        closer = threading.Thread(target=transport.close, daemon=True)
        with link(s.assoc).send_lock:  # as a thread inside an SSL call does
            closer.start()
            closer.join(0.5)
            assert closer.is_alive(), "closed under the SSL call"
            assert isinstance(transport.socket, ssl.SSLSocket)
        closer.join(10)
        assert not closer.is_alive()
        assert transport.socket is None
