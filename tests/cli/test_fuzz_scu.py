"""The SCUs against a hostile SCP: replies recorded from a real ``dcmtool serve``, mutated
(tests/support/fuzz.py), and played back. ``dcmtool echo``, ``find`` and ``store`` (whose
responses are read off the socket by dcmtool itself) must end with a
documented exit code and one error line, never an internal error or a traceback, within
their timeouts. Long profile: FUZZ_SCU_CASES=1000 FUZZ_SEED=N."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

from support import fuzz
from support.archive import ServedArchive
from support.peers import run_cli

#: Exit codes a user may see from echo/find (dcmtool.errors.ExitCode), internal error aside.
DOCUMENTED = {0, 3, 4, 5, 6, 7}


def _read_pdu(sock: socket.socket) -> bytes:
    head = b""
    while len(head) < 6:
        chunk = sock.recv(6 - len(head))
        if not chunk:
            return b""
        head += chunk
    (length,) = struct.unpack(">I", head[2:6])
    body = b""
    while len(body) < length:
        chunk = sock.recv(min(65536, length - len(body)))
        if not chunk:
            break
        body += chunk
    return head + body


@contextlib.contextmanager
def _replaying_scp(replies: list[list[bytes]]) -> Iterator[int]:
    """A listener that answers each request PDU of a connection with the next recorded
    (mutated) reply, connection after connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        index = 0
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            case = replies[index % len(replies)]
            index += 1
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    for reply in case:
                        if not _read_pdu(conn):
                            break
                        conn.sendall(reply)
                    while _read_pdu(conn):  # let the client finish its side
                        pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _recorded_replies(served: ServedArchive, command: list[str]) -> list[bytes]:
    """What serve wrote back during one run of ``command`` (a dcmtool SCU)."""
    from pynetdicom import transport

    replies: list[bytes] = []
    original = transport.AssociationSocket.send

    def record(self: Any, data: bytes) -> None:
        if self.assoc.is_acceptor:
            replies.append(bytes(data))
        original(self, data)

    transport.AssociationSocket.send = record  # type: ignore[method-assign]
    try:
        result = run_cli(*command)
        assert result.exit_code == 0, result.stderr
    finally:
        transport.AssociationSocket.send = original  # type: ignore[method-assign]
    return replies


def test_echo_find_and_store_survive_a_hostile_scp(
        serve_archive: Callable[..., ServedArchive], tmp_path: Any) -> None:
    from support.datasets import write_instance

    served = serve_archive()
    batch = tmp_path / "batch"
    for index in range(3):
        write_instance(batch / f"{index}.dcm", rows=16, columns=16)
    cases = int(os.environ.get("FUZZ_SCU_CASES", "25"))
    rng = random.Random(int(os.environ.get("FUZZ_SEED", "13")))
    for command in (["echo"], ["find", "-k", "PatientID=*"], ["store", str(batch)]):
        replies = _recorded_replies(served, [command[0], served.address, *command[1:]])
        mutated = [fuzz.mutate(replies, random.Random(rng.random())) for _ in range(cases)]
        with _replaying_scp(mutated) as port:
            for _ in range(cases):
                result = run_cli(command[0], f"{served.ae_title}@127.0.0.1:{port}",
                                 *command[1:], "-ta", "1", "-td", "1", "-tn", "1")
                assert result.exit_code in DOCUMENTED, result.stderr
                assert "internal error" not in result.stderr, result.stderr
                assert "Traceback" not in result.output, result.output
