"""What ``dcmtool serve`` runs with: the options, their defaults, and the merge of command line
flags over the config file's ``[serve]`` table.

Errors name the setting (``UsageError.setting``); the CLI names the flag that sets it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcmtool.dicom.syntaxes import TRANSFER_SYNTAXES, resolve_uid
from dcmtool.errors import UsageError

#: Seed 004's policy: explicit over implicit, lossless compressed over lossy. Everything is
#: stored as received, so lossy and video syntaxes are accepted too, after the others.
STORAGE_SYNTAX_PREFERENCE = tuple(
    resolve_uid(name) for name in (
        "explicit", "jpeg-lossless", "jpeg-lossless-p14", "jpeg-ls", "j2k-lossless",
        "htj2k-lossless", "htj2k-rpcl", "rle", "deflate", "implicit", "big-endian",
        "jpeg-baseline", "jpeg-extended", "jpeg-ls-near", "j2k-lossy", "htj2k-lossy",
        "mpeg2-mp", "mpeg2-hl", "mpeg4", "mpeg4-bd", "mpeg4-2d", "mpeg4-3d", "mpeg4-stereo",
        "hevc", "hevc-10",
    )
)
assert set(STORAGE_SYNTAX_PREFERENCE) == {ts.uid for ts in TRANSFER_SYNTAXES}


@dataclass(frozen=True)
class ServeOptions:
    ae_title: str = "DCMTOOL"
    port: int = 11112
    bind: str = "127.0.0.1"
    accept_unknown: bool = False
    transfer_syntaxes: tuple[str, ...] = STORAGE_SYNTAX_PREFERENCE  # in order of preference
    require_called_aet: bool = False
    allowed_calling_aets: tuple[str, ...] = ()
    max_associations: int = 100
    max_pdu: int = 262144
    acse_timeout: float | None = 30.0
    dimse_timeout: float | None = 60.0
    network_timeout: float | None = 60.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    on_stored: str | None = None
    on_study_complete: str | None = None
    study_timeout: float = 60.0
    #: C-MOVE destinations: AE title -> (host, port), from the config's nodes.
    destinations: tuple[tuple[str, str, int], ...] = ()
    #: The config file they came from: re-read when it changes, and on SIGHUP
    #: (``scp.destinations``). ``None``: ``destinations`` is all there is.
    config_path: Path | None = None
    max_results: int | None = None  # C-FIND: stop after this many matches (seed 004)
    utf8_answers: bool = False  # C-FIND: answer in ISO_IR 192
    case_insensitive_names: bool = False  # C-FIND: PN matching ignores case
    worklist: Path | None = None  # default ROOT/worklist
    #: The largest command set or identifier held in memory (PS3.7 sets none).
    max_message_bytes: int = 16 << 20


def parse_syntaxes(names: Sequence[str]) -> tuple[str, ...]:
    """Accepted transfer syntaxes (names or UIDs) in the order given; raise ``UsageError``."""
    try:
        return tuple(dict.fromkeys(resolve_uid(n) for n in names))
    except ValueError as exc:
        raise UsageError(str(exc), setting="accept_ts") from None


# ---------------------------------------------------------------------------------------------
# From command line and config file to options


@dataclass(frozen=True)
class ServeRequest:
    """What the user asked for on the command line; ``None`` means "not given"."""

    root: Path | None = None
    port: int | None = None
    ae_title: str | None = None
    bind: str | None = None
    layout: str | None = None
    duplicates: str | None = None
    min_free: str | None = None
    accept_unknown: bool | None = None
    accept_ts: Sequence[str] | None = None
    require_called_aet: bool | None = None
    allow: Sequence[str] | None = None
    max_associations: int | None = None
    max_pdu: int | None = None
    acse_timeout: float | None = None
    dimse_timeout: float | None = None
    network_timeout: float | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    on_stored: str | None = None
    on_study_complete: str | None = None
    study_timeout: float | None = None
    max_results: int | None = None
    utf8_answers: bool | None = None
    case_insensitive_names: bool | None = None
    max_identifier: str | None = None


DEFAULT_ROOT = Path("dcmtool-archive")


def build_serve_options(request: ServeRequest, config: Any) -> tuple[ServeOptions, Any, Path]:
    """Merge flags over the config's ``[serve]`` table over defaults; validate everything.

    Returns the server options, the storage policy and the archive root.
    """
    from dcmtool.archive.layout import DEFAULT_PATTERN, Layout, LayoutError
    from dcmtool.archive.storage import StorePolicy
    from dcmtool.config import parse_size, serve_settings, validate_ae_title

    table = serve_settings(config)

    def pick(name: str, key: str | None = None, default: Any = None) -> Any:
        value = getattr(request, name)
        if value is not None:
            return value
        return table.get(key or name, default)

    try:
        ae_title = validate_ae_title(pick("ae_title", default="DCMTOOL"))
    except ValueError as exc:
        raise UsageError(str(exc), setting="ae_title") from None
    allow = tuple(pick("allow", default=()) or ())
    for title in allow:
        try:
            validate_ae_title(title)
        except ValueError as exc:
            raise UsageError(str(exc), setting="allow") from None
    # Re-sending what was already stored is routine (a retry, a modality resending a
    # study): acknowledge it and keep the first copy, as Orthanc and storescp do.
    duplicates = pick("duplicates", default=StorePolicy.duplicates)
    if duplicates not in ("reject", "ignore", "overwrite"):
        raise UsageError(f"expected reject, ignore or overwrite, got {duplicates!r}",
                         setting="duplicates")
    try:
        min_free = parse_size(str(pick("min_free", default="100M")))
    except ValueError as exc:
        raise UsageError(str(exc), setting="min_free") from None
    try:
        max_identifier = parse_size(str(pick("max_identifier", default="16M")))
    except ValueError as exc:
        raise UsageError(str(exc), setting="max_identifier") from None
    if max_identifier < 64 << 10:
        raise UsageError(f"{max_identifier} bytes is below the smallest useful size, 64K",
                         setting="max_identifier")
    try:
        layout = Layout.parse(pick("layout", default=DEFAULT_PATTERN))
    except LayoutError as exc:
        raise UsageError(str(exc), setting="layout") from None
    accept_ts = pick("accept_ts")
    syntaxes = parse_syntaxes(accept_ts) if accept_ts else STORAGE_SYNTAX_PREFERENCE
    port = pick("port", default=11112)
    if not isinstance(port, int) or not 0 <= port < 65536:
        raise UsageError(f"{port!r} is not a port number", setting="port")
    options = ServeOptions(
        ae_title=ae_title,
        port=port,
        bind=pick("bind", default="127.0.0.1"),
        accept_unknown=bool(pick("accept_unknown", default=False)),
        transfer_syntaxes=syntaxes,
        require_called_aet=bool(pick("require_called_aet", default=False)),
        allowed_calling_aets=allow,
        max_associations=int(pick("max_associations", default=100)),
        max_pdu=int(pick("max_pdu", default=262144)),
        acse_timeout=pick("acse_timeout", default=30.0) or None,  # 0: no timeout
        dimse_timeout=pick("dimse_timeout", default=60.0) or None,
        network_timeout=pick("network_timeout", default=60.0) or None,
        tls_cert=pick("tls_cert"),
        tls_key=pick("tls_key"),
        tls_ca=pick("tls_ca"),
        on_stored=pick("on_stored"),
        on_study_complete=pick("on_study_complete"),
        study_timeout=float(pick("study_timeout", default=60.0)),
        destinations=tuple((node.ae_title, node.host, node.port)
                           for node in getattr(config, "nodes", {}).values()),
        config_path=getattr(config, "path", None),
        max_results=pick("max_results"),
        utf8_answers=bool(pick("utf8_answers", default=False)),
        case_insensitive_names=bool(pick("case_insensitive_names", default=False)),
    )
    policy = StorePolicy(layout=layout, duplicates=duplicates, min_free_bytes=min_free)
    options = dataclasses.replace(options, max_message_bytes=max_identifier)
    root = Path(pick("root", default=DEFAULT_ROOT)).expanduser()
    return options, policy, root
