"""Concurrent senders for load and crash tests: each stores ``count`` small CT instances of
one study over one association and records what the server acknowledged; folders of
distinct files for external senders (DCMTK storescu +sd); and the check of the archive they
leave (index equals folder, nothing acknowledged lost)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dcmtool.archive.storage import Archive

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def start_senders(port: int, *, count: int, acknowledged: list[str],
                  sent: list[Any] | None = None, started: threading.Event | None = None,
                  start_after: int = 0, senders: int = 4, calling: str = "LOAD",
                  called: str = "DCMTOOL") -> list[threading.Thread]:
    """Start ``senders`` threads; ``started`` is set once ``start_after`` instances were
    acknowledged in all. A sender stops at the first status other than success (the server
    is gone) and aborts its association at the end."""
    from pydicom.uid import generate_uid
    from pynetdicom import AE

    from support.datasets import make_dataset

    def send() -> None:
        ae = AE(calling)
        ae.add_requested_context(CT_IMAGE_STORAGE)
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if not assoc.is_established:
            return
        study = generate_uid()
        try:
            for index in range(count):
                ds = make_dataset(rows=64, columns=64, StudyInstanceUID=study,
                                  InstanceNumber=index + 1)
                if sent is not None:
                    sent.append(ds)
                if getattr(assoc.send_c_store(ds), "Status", None) != 0x0000:
                    return
                acknowledged.append(str(ds.SOPInstanceUID))
                if started is not None and len(acknowledged) >= start_after:
                    started.set()
        finally:
            if assoc.is_established:
                assoc.abort()

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    return threads


def echo_ok(host: str, port: int, called: str, calling: str = "HEALTH") -> bool:
    """Whether a fresh association is accepted and a C-ECHO answered with success."""
    from pynetdicom import AE

    ae = AE(calling)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(host, port, ae_title=called)
    try:
        return bool(assoc.is_established) and assoc.send_c_echo().Status == 0x0000
    finally:
        if assoc.is_established:
            assoc.release()


def write_sender_folder(folder: Path, sender: int, count: int) -> list[str]:
    """``count`` small CT files (16x16) of one patient (``PAT00``, ``PAT01``...), study and
    series in ``folder``, for one ``storescu +sd`` sender; their SOP Instance UIDs.

    pydicom writes the first file; the others are its bytes with another SOP Instance UID of
    the same length (no encoding per file: a few hundred files take milliseconds)."""
    import uuid

    from support.datasets import make_dataset, write_instance

    folder.mkdir(parents=True)
    base = f"2.25.{uuid.uuid4().int % 10**30 + 10**30}.{sender + 1}"
    uids = [f"{base}.{100000 + number}" for number in range(1, count + 1)]
    first = folder / "000001.dcm"
    write_instance(first, make_dataset(rows=16, columns=16, SOPInstanceUID=uids[0],
                                       PatientID=f"PAT{sender:02d}",
                                       PatientName=f"Sender^{sender}"))
    data = first.read_bytes()
    old = uids[0].encode("ascii")
    if data.count(old) != 2:  # MediaStorageSOPInstanceUID and SOPInstanceUID, nothing else
        raise AssertionError(f"{first}: the SOP Instance UID is not there exactly twice")
    for number, uid in enumerate(uids[1:], 2):
        (folder / f"{number:06d}.dcm").write_bytes(data.replace(old, uid.encode("ascii")))
    return uids


def check_archive(archive: Archive, acknowledged: Iterable[str]) -> None:
    """What a sender relies on after a load (or a crash and the restart): the index names
    exactly the instance files in the folder, each indexed file holds the instance its row
    names, every acknowledged instance is indexed, and no partial transfer is left in
    ``.incoming``. An AssertionError says which of these does not hold."""
    from pydicom import dcmread

    on_disk = {p.relative_to(archive.root).as_posix() for p in archive.instance_files()}
    indexed = archive.index.paths()
    assert indexed == on_disk, (f"index and folder differ: {sorted(indexed - on_disk)[:5]} "
                                f"indexed without a file, {sorted(on_disk - indexed)[:5]} "
                                "files without a row")
    rows = {str(row[0]): str(row[1]) for row in
            archive.index.rows("SELECT SOPInstanceUID, path FROM instances")}
    for uid, relative in rows.items():
        held = dcmread(archive.root / relative, stop_before_pixels=True,
                       specific_tags=["SOPInstanceUID"]).SOPInstanceUID
        assert held == uid, f"{relative} holds {held}, its index row says {uid}"
    lost = [uid for uid in acknowledged if uid not in rows]
    assert not lost, f"{len(lost)} acknowledged instance(s) not in the index: {lost[:5]}"
    leftovers = sorted(p.name for p in archive.incoming.iterdir())
    assert not leftovers, f"left in {archive.incoming}: {leftovers[:5]}"
