"""From the library's settings to the flags that set them: the CLI's half of every error.

The library says what went wrong in DICOM terms and names the setting involved
(``DcmtoolError.setting``); this table names the option a user types.
"""

from __future__ import annotations

from dcmtool.errors import DcmtoolError, UsageError

FLAGS: dict[str, str] = {
    "ae_title": "--aet",
    "calling_ae_title": "--calling-aet",
    "called_ae_title": "--called-aet",
    "acse_timeout": "--acse-timeout",
    "dimse_timeout": "--dimse-timeout",
    "network_timeout": "--network-timeout",
    "tls_files": "--tls-cert/--tls-key/--tls-ca",
    "port": "--port",
    "allow": "--allow",
    "accept_ts": "--accept-ts",
    "duplicates": "--duplicates",
    "min_free": "--min-free",
    "max_identifier": "--max-identifier",
    "layout": "--layout",
    "destination": "--dest AET (a third-party move) or --out DIR (move to dcmtool)",
    "store_classes": "--store-classes",
    "from": "--from",
    "set": "--set",
    "key": "-k",
    "in_place": "--in-place",
    "force": "--force",
    "wait": "--wait",
    "invent": "--invent",
    "lossy": "--lossy",
    "profile": "--profile",
    "add": "dcmtool dicomdir add",
    "reindex": "dcmtool serve --reindex",
    "probe": "dcmtool echo --probe",
    "get": "dcmtool get",
}


def message_and_hint(exc: DcmtoolError) -> tuple[str, str | None]:
    """The line to print and its hint, with the flag of ``exc.setting``: a hint (what to
    change) ends with it; a usage error without one (a bad value) starts with it."""
    flag = FLAGS.get(exc.setting or "")
    if flag is None:
        return exc.message, exc.hint
    if exc.hint:
        return exc.message, f"{exc.hint} ({flag})"
    if isinstance(exc, UsageError):
        return f"{flag}: {exc.message}", None
    return exc.message, f"see {flag}"
