"""A seeded mutator over valid PDUs, thrown at a DICOM server: what it tried and what broke.

The valid material is recorded from a real session (A-ASSOCIATE-RQ, C-ECHO, C-STORE with a
data set, C-FIND, A-RELEASE-RQ, as pynetdicom writes them). Each case mutates that sequence
(bytes flipped, PDUs cut short or lengthened, lengths rewritten, PDUs dropped, repeated or
reordered, presentation context IDs made even, random PDUs) and sends it on a fresh
connection, reading whatever comes back. The server must stay up, answer the next client, and
release every connection within its timeouts.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass
class FuzzReport:
    cases: int = 0
    answered: int = 0  # cases where the server sent anything back
    crashes: int = 0  # the server process died
    hangs: int = 0  # connections still open after the server's timeouts
    thread_deaths: int = 0  # tracebacks of dead threads in the server's log
    peak_rss_mib: float = 0.0
    threads: int = 0  # the server's threads when every connection is gone
    seconds: float = 0.0

    def table(self) -> str:
        rows = [("hostile inputs tried", self.cases), ("answered", self.answered),
                ("crashes", self.crashes), ("hangs beyond the timeouts", self.hangs),
                ("thread deaths", self.thread_deaths),
                ("peak RSS (MiB)", f"{self.peak_rss_mib:.0f}"),
                ("threads left", self.threads),
                ("seconds", f"{self.seconds:.1f}")]
        return "\n".join(f"| {name} | {value} |" for name, value in rows)


def recorded_session(host: str, port: int, ae_title: str) -> list[bytes]:
    """The PDUs a pynetdicom client writes in one session with the server, in order."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid
    from pynetdicom import AE, transport
    from pynetdicom.sop_class import (
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelFind,
        Verification,
    )

    from support.datasets import make_dataset

    sent: list[bytes] = []
    original = transport.AssociationSocket.send

    def record(self: Any, data: bytes) -> None:
        sent.append(bytes(data))
        original(self, data)

    transport.AssociationSocket.send = record  # type: ignore[method-assign]
    try:
        ae = AE("FUZZER")
        for context in (Verification, CTImageStorage, StudyRootQueryRetrieveInformationModelFind):
            ae.add_requested_context(context)
        assoc = ae.associate(host, port, ae_title=ae_title)
        assert assoc.is_established, "the fuzz target does not associate"
        assoc.send_c_echo()
        assoc.send_c_store(make_dataset(StudyInstanceUID=generate_uid()))
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientID = "*"
        query.StudyInstanceUID = ""
        list(assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind))
        assoc.release()
    finally:
        transport.AssociationSocket.send = original  # type: ignore[method-assign]
    return sent


def _relength(pdu: bytes) -> bytes:
    """A PDU whose length field no longer matches its body."""
    claim = random.choice([0, 1, len(pdu), len(pdu) * 2, 0x7FFFFFFF, 0xFFFFFFFF])
    return pdu[:2] + struct.pack(">I", claim) + pdu[6:]


def _flip(pdu: bytes, rng: random.Random) -> bytes:
    data = bytearray(pdu)
    for _ in range(rng.randint(1, 8)):
        if data:
            data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _even_context(pdu: bytes) -> bytes:
    if pdu[:1] == b"\x04" and len(pdu) > 10:
        data = bytearray(pdu)
        data[10] = (data[10] & 0xFE) or 2  # the first PDV's presentation context ID
        return bytes(data)
    return pdu


def mutate(pdus: list[bytes], rng: random.Random) -> list[bytes]:
    """One hostile case from a valid session."""
    case = list(pdus)
    for _ in range(rng.randint(1, 3)):
        index = rng.randrange(len(case))
        kind = rng.randrange(9)
        pdu = case[index]
        if kind == 0:
            case[index] = _flip(pdu, rng)
        elif kind == 1:
            case[index] = pdu[:rng.randrange(max(1, len(pdu)))]  # cut short
        elif kind == 2:
            random.seed(rng.random())
            case[index] = _relength(pdu)
        elif kind == 3:
            del case[index:]  # the session stops there
            case.append(pdu[:rng.randrange(1, 7)])
        elif kind == 4:
            case.insert(index, pdu)  # repeated
        elif kind == 5:
            other = rng.randrange(len(case))
            case[index], case[other] = case[other], case[index]
        elif kind == 6:
            case[index] = _even_context(pdu)
        elif kind == 7:
            kind_byte = rng.choice([0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0xFF])
            body = rng.randbytes(rng.randrange(0, 64))
            case.insert(index, struct.pack(">BBI", kind_byte, 0, len(body)) + body)
        else:
            case[index] = pdu + rng.randbytes(rng.randrange(1, 32))  # trailing junk
        if not case:
            case = [pdus[0]]
    return case


def send_case(host: str, port: int, case: list[bytes], read_for: float = 0.3) -> bool:
    """Send one case on a fresh connection; whether anything came back."""
    answered = False
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=5) as sock:
        for pdu in case:
            sock.sendall(pdu)
        sock.settimeout(read_for)
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                answered = True
    return answered


def run(host: str, port: int, session: list[bytes], cases: int, seed: int, *,
        alive: Callable[[], bool], open_connections: Callable[[], int],
        healthy: Callable[[], bool], settle: float, workers: int = 8) -> FuzzReport:
    """``cases`` mutated sessions, ``workers`` at a time; then the checks: still running,
    every connection released within ``settle`` seconds, the next client served."""
    rng = random.Random(seed)
    batch = [mutate(session, random.Random(rng.random())) for _ in range(cases)]
    report = FuzzReport(cases=cases)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        report.answered = sum(pool.map(lambda c: send_case(host, port, c), batch))
    deadline = time.monotonic() + settle
    while open_connections() and time.monotonic() < deadline:
        time.sleep(0.05)
    report.hangs = open_connections()
    report.crashes = 0 if alive() and healthy() else 1
    report.seconds = time.monotonic() - started
    return report


def threads(pid: int) -> int:
    """The number of threads of a process (Linux)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a process (Linux), in MiB."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def open_tcp_connections(pid: int, port: int) -> int:
    """Established TCP connections to ``port`` held by process ``pid`` (Linux /proc)."""
    import os

    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] != "0A" and fields[9] in inodes:
                    count += 1  # not LISTEN (0A): a connection
    return count
