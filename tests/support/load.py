"""Concurrent senders for load and crash tests: each stores ``count`` small CT instances of
one study over one association and records what the server acknowledged."""

from __future__ import annotations

import threading
from typing import Any

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
