#!/usr/bin/env python3
"""Small launchers for rows whose figure is not one process's run, standard library only
(run as a script by the bench's own Python). Each writes what it measured as JSON to
``--report FILE``, which the row's ``measure`` reads; it exits 1 when anything failed.

    launch.py parallel --report F --each A --each B ... -- PROGRAM ARGS ({} is each item)
        Start PROGRAM once per item at once and wait for all: {"seconds": from the start of
        the first to the end of the last}.
    launch.py first-echo --report F --port P --aet AET -- SERVER ARGS
        Start SERVER, then C-ECHO it on 127.0.0.1:P (a connection every 5 ms, refused until
        it listens) until one succeeds: {"seconds": from the start to that C-ECHO's answer};
        then stop SERVER (SIGTERM to its process group, untimed).
    launch.py find --report F --port P --aet AET --key K=V ... [--level STUDY]
        One C-FIND (Study Root) on one association, the keys as given (an empty value is a
        return key): {"associate", "first", "whole": seconds; "matches": N}, where "first" is
        from sending the request to the end of the first match's identifier and "whole" to
        the final response. The answers are counted, never decoded: the figure is the
        server's, not a DICOM toolkit's (pynetdicom takes ~28 s to take 50,000 answers that
        DCMTK findscu -q takes in ~4 s).

The DICOM here is the least that a C-ECHO and a C-FIND need (PS3.8 PDUs, PS3.7 command sets,
implicit VR little endian), nothing the bench compares.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

LOCALHOST = "127.0.0.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.9.7433.1.1"  # make_data.py's, bench only
MAX_PDU = 16384  # what DCMTK findscu offers
KEYWORDS = {  # the keys a query may name (Study Root, study level and above)
    "QueryRetrieveLevel": (0x0008, 0x0052), "StudyDate": (0x0008, 0x0020),
    "StudyTime": (0x0008, 0x0030), "AccessionNumber": (0x0008, 0x0050),
    "StudyDescription": (0x0008, 0x1030), "PatientName": (0x0010, 0x0010),
    "PatientID": (0x0010, 0x0020), "StudyInstanceUID": (0x0020, 0x000D),
    "StudyID": (0x0020, 0x0010),
}


class DicomFailure(Exception):
    pass


# --- PDUs and command sets ------------------------------------------------------------------


def item(kind: int, body: bytes) -> bytes:
    return struct.pack(">BxH", kind, len(body)) + body


def text(value: str) -> bytes:
    data = value.encode("ascii")
    return data + (b"\0" if len(data) % 2 else b"")


def element(group: int, number: int, value: bytes) -> bytes:
    """Implicit VR little endian, the value padded to an even length."""
    if len(value) % 2:
        value += b" "
    return struct.pack("<HHI", group, number, len(value)) + value


def command(sop_class: str, field: int, data_set: bool) -> bytes:
    body = b"".join([
        element(0x0000, 0x0002, text(sop_class)),
        element(0x0000, 0x0100, struct.pack("<H", field)),
        element(0x0000, 0x0110, struct.pack("<H", 1)),  # message ID
        *([element(0x0000, 0x0700, struct.pack("<H", 0))] if field == 0x0020 else []),
        element(0x0000, 0x0800, struct.pack("<H", 0x0102 if data_set else 0x0101)),
    ])
    return element(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def p_data(fragment: bytes, is_command: bool) -> bytes:
    header = 0x02 | (0x01 if is_command else 0x00)  # always the last fragment
    pdv = struct.pack(">IBB", len(fragment) + 2, 1, header) + fragment
    return struct.pack(">BxI", 0x04, len(pdv)) + pdv


class Association:
    """One association on 127.0.0.1 with one presentation context (ID 1, implicit VR LE)."""

    def __init__(self, port: int, called: str, abstract: str, timeout: float = 60.0) -> None:
        self.sock = socket.create_connection((LOCALHOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = bytes([1, 0, 0, 0]) + item(0x30, abstract.encode()) + item(
            0x40, IMPLICIT_VR_LE.encode())
        user = item(0x51, struct.pack(">I", MAX_PDU)) + item(
            0x52, IMPLEMENTATION_CLASS_UID.encode())
        body = (struct.pack(">H2x", 1) + called.ljust(16).encode() + b"BENCH".ljust(16)
                + bytes(32) + item(0x10, APPLICATION_CONTEXT.encode()) + item(0x20, context)
                + item(0x50, user))
        self.sock.sendall(struct.pack(">BxI", 0x01, len(body)) + body)
        kind, answer = self.read_pdu()
        if kind != 0x02:
            raise DicomFailure(f"association refused (PDU type {kind:#04x})")
        offset = 68
        while offset < len(answer):
            sub, length = answer[offset], struct.unpack(">H", answer[offset + 2:offset + 4])[0]
            if sub == 0x21 and answer[offset + 6] != 0:
                raise DicomFailure(f"presentation context refused ({answer[offset + 6]})")
            offset += 4 + length

    def read_exact(self, size: int) -> bytes:
        chunks, left = [], size
        while left:
            chunk = self.sock.recv(min(left, 1 << 20))
            if not chunk:
                raise DicomFailure("the server closed the connection")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def read_pdu(self) -> tuple[int, bytes]:
        kind, length = struct.unpack(">BxI", self.read_exact(6))
        return kind, self.read_exact(length)

    def release(self) -> None:
        self.sock.sendall(struct.pack(">BxI", 0x05, 4) + bytes(4))
        try:
            self.read_pdu()  # A-RELEASE-RP
        finally:
            self.sock.close()


def messages(association: Association) -> Iterator[tuple[bool, int | None]]:
    """(True, status) at the end of each command set, (False, None) at the end of each data
    set, as they arrive; other fragments are taken in silently."""
    command_set = b""
    while True:
        kind, body = association.read_pdu()
        if kind != 0x04:
            raise DicomFailure(f"unexpected PDU type {kind:#04x} (0x07: aborted)")
        offset = 0
        while offset < len(body):
            length, _context, header = struct.unpack(">IBB", body[offset:offset + 6])
            fragment = body[offset + 6:offset + 4 + length]
            offset += 4 + length
            if header & 0x01:
                command_set += fragment
                if header & 0x02:
                    yield True, status_of(command_set)
                    command_set = b""
            elif header & 0x02:
                yield False, None


def status_of(command_set: bytes) -> int:
    offset = 0
    while offset + 8 <= len(command_set):
        group, number, length = struct.unpack("<HHI", command_set[offset:offset + 8])
        if (group, number) == (0x0000, 0x0900):
            return int(struct.unpack("<H", command_set[offset + 8:offset + 10])[0])
        offset += 8 + length
    raise DicomFailure("a response without a status")


# --- the three launchers --------------------------------------------------------------------


def parallel(args: argparse.Namespace) -> dict[str, object]:
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in args.each]
        started = time.perf_counter()
        procs = [subprocess.Popen([word.replace("{}", each) for word in args.program],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
                 for each, log in zip(args.each, logs, strict=True)]
        codes = [proc.wait() for proc in procs]
        seconds = time.perf_counter() - started
        for each, code, log in zip(args.each, codes, logs, strict=True):
            if code != 0:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip()[-300:]
                raise DicomFailure(f"{args.program[0]} for {each}: exit {code}: {tail}")
    return {"seconds": seconds, "processes": len(procs)}


def echo_once(port: int, aet: str) -> bool:
    """One C-ECHO; False while the server is not there yet (refused, or closed on us)."""
    try:
        association = Association(port, aet, VERIFICATION, timeout=10.0)
    except (ConnectionRefusedError, ConnectionResetError, DicomFailure):
        return False
    association.sock.sendall(p_data(command(VERIFICATION, 0x0030, False), True))
    is_command, status = next(messages(association))
    association.release()
    if not is_command or status != 0:
        raise DicomFailure(f"C-ECHO answered status {status}")
    return True


def first_echo(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        server = subprocess.Popen(args.program, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while not echo_once(args.port, args.aet):
                if server.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode(errors="replace").strip()[-300:]
                    raise DicomFailure(f"the server exited ({server.returncode}): {tail}")
                if time.perf_counter() - started > args.timeout:
                    raise DicomFailure(f"no C-ECHO answered within {args.timeout:g} s")
                time.sleep(0.005)
            seconds = time.perf_counter() - started
        finally:
            stop(server)
    return {"seconds": seconds}


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def find(args: argparse.Namespace) -> dict[str, object]:
    keys: dict[tuple[int, int], str] = {KEYWORDS["QueryRetrieveLevel"]: args.level}
    for pair in args.key:
        keyword, _, value = pair.partition("=")
        if keyword not in KEYWORDS:
            raise DicomFailure(f"unknown key {keyword} (known: {', '.join(KEYWORDS)})")
        keys[KEYWORDS[keyword]] = value
    identifier = b"".join(element(g, e, text(keys[(g, e)]) if keys[(g, e)] else b"")
                          for g, e in sorted(keys))
    started = time.perf_counter()
    association = Association(args.port, args.aet, STUDY_ROOT_FIND)
    sent = time.perf_counter()
    association.sock.sendall(p_data(command(STUDY_ROOT_FIND, 0x0020, True), True)
                             + p_data(identifier, False))
    first: float | None = None
    matches = 0
    for is_command, status in messages(association):
        if not is_command:
            if first is None:
                first = time.perf_counter() - sent
            continue
        if status in (0xFF00, 0xFF01):
            matches += 1
        elif status == 0x0000:
            break
        else:
            raise DicomFailure(f"C-FIND failed: status {status:#06x} after {matches} matches")
    whole = time.perf_counter() - sent
    association.release()
    return {"associate": sent - started, "first": first, "whole": whole, "matches": matches}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("parallel", "first-echo", "find"))
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--each", action="append", default=[])
    parser.add_argument("--port", type=int)
    parser.add_argument("--aet", default="ANY-SCP")
    parser.add_argument("--key", action="append", default=[])
    parser.add_argument("--level", default="STUDY")
    parser.add_argument("--timeout", type=float, default=600.0)
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    args.program = argv[split + 1:]
    try:
        if args.what == "parallel":
            result = parallel(args)
        elif args.what == "first-echo":
            result = first_echo(args)
        else:
            result = find(args)
    except (OSError, DicomFailure) as exc:
        print(f"launch.py {args.what}: {exc}", file=sys.stderr)
        return 1
    args.report.write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
