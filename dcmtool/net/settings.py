"""pynetdicom's process-wide settings (``pynetdicom._config``), set in one place."""

from __future__ import annotations

import logging


def sync_pdu_logging() -> None:
    """Bind pynetdicom's PDU/DIMSE dump handlers only when someone reads them (``-d``).

    They format every PDU and DIMSE message even when the log level drops the text:
    a measurable share of the CPU per small C-STORE.
    """
    from pynetdicom import _config

    verbose = logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)
    _config.LOG_HANDLER_LEVEL = "standard" if verbose else "none"


def send_files_undecoded() -> None:
    """C-STOREs of files send the file's bytes; pynetdicom never decodes them."""
    from pynetdicom import _config

    _config.STORE_SEND_CHUNKED_DATASET = True


def acceptor_settings(*, accept_unknown_classes: bool) -> None:
    """What an SCP of ours needs: received data sets streamed to disk instead of memory,
    storage of classes pynetdicom does not know (when asked), and no pretty-printing of
    every identifier for a log nobody reads."""
    from pynetdicom import _config

    _config.STORE_RECV_CHUNKED_DATASET = True
    _config.UNRESTRICTED_STORAGE_SERVICE = accept_unknown_classes
    verbose = logging.getLogger("pynetdicom").isEnabledFor(logging.DEBUG)
    _config.LOG_REQUEST_IDENTIFIERS = _config.LOG_RESPONSE_IDENTIFIERS = verbose
