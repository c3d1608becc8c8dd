"""Configuration: the local AE, named peers (nodes) and how a peer argument is resolved.

The file is TOML::

    [local]
    ae_title = "DCMTOOL"
    port = 11113            # storage SCP for C-MOVE to ourselves
    bind = "0.0.0.0"

    [nodes.PACS]
    host = "pacs.example.org"
    port = 104
    ae_title = "PACS"
    calling_ae_title = "WORKSTATION1"   # optional, else [local] ae_title
    max_pdu = 262144
    connect_timeout = 10
    acse_timeout = 30
    dimse_timeout = 60
    network_timeout = 60
    tls_cert = "client.pem"             # with tls_key; tls_ca to verify the peer
    tls_key = "client.key"
    tls_ca = "ca.pem"
    tls_check_hostname = true
    transfer_syntaxes = ["explicit", "jpeg-lossless"]
    retrieve = "move"                   # or "get"

Precedence for every setting: command-line flag > environment variable > node > default.
The CLI applies flag and environment (they arrive here as ``PeerOverrides``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from dcmtool.dicom import syntaxes
from dcmtool.errors import ConfigError, PeerNotFound, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

DEFAULT_AE_TITLE = "DCMTOOL"
DEFAULT_CALLED_AE_TITLE = "ANY-SCP"
DEFAULT_LOCAL_PORT = 11113
DEFAULT_MAX_PDU = 262144
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_ACSE_TIMEOUT = 30.0
DEFAULT_DIMSE_TIMEOUT = 60.0
DEFAULT_NETWORK_TIMEOUT = 60.0

RetrieveMethod = Literal["move", "get"]


@dataclass(frozen=True)
class Timeouts:
    """Seconds; ``None`` means wait forever (pynetdicom's convention)."""

    connect: float | None = DEFAULT_CONNECT_TIMEOUT
    acse: float | None = DEFAULT_ACSE_TIMEOUT
    dimse: float | None = DEFAULT_DIMSE_TIMEOUT
    network: float | None = DEFAULT_NETWORK_TIMEOUT


@dataclass(frozen=True)
class TlsSettings:
    """PEM files for TLS. A CA file makes the peer's certificate verified."""

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    check_hostname: bool = True

    @property
    def enabled(self) -> bool:
        return any((self.cert, self.key, self.ca))


@dataclass(frozen=True)
class LocalAE:
    ae_title: str = DEFAULT_AE_TITLE
    port: int = DEFAULT_LOCAL_PORT
    bind: str = "0.0.0.0"


@dataclass(frozen=True)
class Node:
    """A named peer from the ``[nodes.NAME]`` table."""

    name: str
    host: str
    port: int
    ae_title: str
    calling_ae_title: str | None = None
    max_pdu: int | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    tls: TlsSettings = field(default_factory=TlsSettings)
    transfer_syntaxes: tuple[str, ...] = ()  # UIDs
    retrieve: RetrieveMethod = "move"


@dataclass(frozen=True)
class Config:
    path: Path | None
    local: LocalAE = field(default_factory=LocalAE)
    nodes: Mapping[str, Node] = field(default_factory=dict)
    serve: Mapping[str, Any] = field(default_factory=dict)  # validated by the serve command
    exists: bool = False


@dataclass(frozen=True)
class Peer:
    """A fully resolved peer: everything needed to open an association."""

    label: str  # node name or the address as the user typed it
    host: str
    port: int
    called_ae_title: str
    calling_ae_title: str
    max_pdu: int = DEFAULT_MAX_PDU
    timeouts: Timeouts = field(default_factory=Timeouts)
    tls: TlsSettings = field(default_factory=TlsSettings)
    transfer_syntaxes: tuple[str, ...] = ()
    retrieve: RetrieveMethod = "move"

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.called_ae_title}@{host}:{self.port}"


@dataclass(frozen=True)
class PeerOverrides:
    """Values from flags or environment variables; ``None`` means "not given"."""

    calling_ae_title: str | None = None
    called_ae_title: str | None = None
    max_pdu: int | None = None
    connect_timeout: float | None = None
    acse_timeout: float | None = None
    dimse_timeout: float | None = None
    network_timeout: float | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_no_check_hostname: bool = False


# ---------------------------------------------------------------------------------------------
# Validation

_AE_FORBIDDEN = re.compile(r"[\\\x00-\x1f\x7f]")
_NODE_KEYS = {
    "host", "port", "ae_title", "calling_ae_title", "max_pdu", "connect_timeout",
    "acse_timeout", "dimse_timeout", "network_timeout", "tls_cert", "tls_key", "tls_ca",
    "tls_check_hostname", "transfer_syntaxes", "retrieve",
}
_LOCAL_KEYS = {"ae_title", "port", "bind"}
_TOP_KEYS = {"local", "nodes", "serve"}


def validate_ae_title(value: object) -> str:
    """Return ``value`` as an AE title or raise ``ValueError`` saying why it is not one."""
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    title = value.strip()
    if not title:
        raise ValueError("an AE title cannot be empty")
    if len(title) > 16:
        raise ValueError(f"{title!r} is longer than 16 characters")
    if _AE_FORBIDDEN.search(title):
        raise ValueError(f"{title!r} contains a backslash or a control character")
    return title


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"expected an integer 1-65535, got {value!r}")
    return value


def _timeout(value: object) -> float | None:
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"expected seconds as a positive number, got {value!r}")
    return float(value)


def _max_pdu(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a byte count (0 = unlimited), got {value!r}")
    if value and value < 4096:
        raise ValueError(f"{value} is below the smallest useful PDU size, 4096")
    return value


class _Checker:
    """Turns a ``ValueError`` from a field validator into a ConfigError naming file and key."""

    def __init__(self, path: Path | None) -> None:
        self.where = str(path) if path else "<config>"

    def __call__(self, table: str, key: str, validate: Any, value: object) -> Any:
        try:
            return validate(value)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self.where}: [{table}] {key}: {exc}") from None

    def fail(self, message: str) -> ConfigError:
        return ConfigError(f"{self.where}: {message}")


def parse_config(data: Mapping[str, Any], path: Path | None = None) -> Config:
    """Validate a decoded TOML document into a ``Config``."""
    check = _Checker(path)
    unknown = set(data) - _TOP_KEYS
    if unknown:
        first = sorted(unknown)[0]
        raise check.fail(f"unknown table or key {first!r} (expected local, nodes, serve)")

    local_raw = data.get("local", {})
    if not isinstance(local_raw, dict):
        raise check.fail("[local] must be a table")
    for key in set(local_raw) - _LOCAL_KEYS:
        raise check.fail(f"[local] {key}: unknown key (expected one of {sorted(_LOCAL_KEYS)})")
    local = LocalAE(
        ae_title=check("local", "ae_title", validate_ae_title,
                       local_raw.get("ae_title", DEFAULT_AE_TITLE)),
        port=check("local", "port", _port, local_raw.get("port", DEFAULT_LOCAL_PORT)),
        bind=check("local", "bind", _string, local_raw.get("bind", "0.0.0.0")),
    )

    nodes_raw = data.get("nodes", {})
    if not isinstance(nodes_raw, dict):
        raise check.fail("[nodes] must be a table of [nodes.NAME] tables")
    nodes: dict[str, Node] = {}
    for name, raw in nodes_raw.items():
        nodes[name] = _parse_node(name, raw, check, path)

    serve = data.get("serve", {})
    if not isinstance(serve, dict):
        raise check.fail("[serve] must be a table")
    return Config(path=path, local=local, nodes=nodes, serve=serve, exists=True)


def _string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _retrieve(value: object) -> RetrieveMethod:
    if value == "move":
        return "move"
    if value == "get":
        return "get"
    raise ValueError(f"expected 'move' or 'get', got {value!r}")


def _syntax_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of transfer syntax names or UIDs")
    return tuple(syntaxes.resolve_uid(str(v)) for v in value)


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _parse_node(name: str, raw: object, check: _Checker, path: Path | None) -> Node:
    table = f"nodes.{name}"
    if not isinstance(raw, dict):
        raise check.fail(f"[{table}] must be a table")
    for key in set(raw) - _NODE_KEYS:
        raise check.fail(f"[{table}] {key}: unknown key (expected one of {sorted(_NODE_KEYS)})")
    for key in ("host", "port", "ae_title"):
        if key not in raw:
            raise check.fail(f"[{table}] {key}: missing (a node needs host, port and ae_title)")
    base = path.parent if path else Path.cwd()

    def file(key: str) -> Path | None:
        value = raw.get(key)
        if value is None:
            return None
        p = Path(check(table, key, _string, value)).expanduser()
        return p if p.is_absolute() else base / p

    calling = raw.get("calling_ae_title")
    return Node(
        name=name,
        host=check(table, "host", _string, raw["host"]),
        port=check(table, "port", _port, raw["port"]),
        ae_title=check(table, "ae_title", validate_ae_title, raw["ae_title"]),
        calling_ae_title=(
            None if calling is None
            else check(table, "calling_ae_title", validate_ae_title, calling)
        ),
        max_pdu=(
            None if "max_pdu" not in raw else check(table, "max_pdu", _max_pdu, raw["max_pdu"])
        ),
        timeouts=Timeouts(
            connect=check(table, "connect_timeout", _timeout,
                          raw.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
            acse=check(table, "acse_timeout", _timeout,
                       raw.get("acse_timeout", DEFAULT_ACSE_TIMEOUT)),
            dimse=check(table, "dimse_timeout", _timeout,
                        raw.get("dimse_timeout", DEFAULT_DIMSE_TIMEOUT)),
            network=check(table, "network_timeout", _timeout,
                          raw.get("network_timeout", DEFAULT_NETWORK_TIMEOUT)),
        ),
        tls=TlsSettings(
            cert=file("tls_cert"),
            key=file("tls_key"),
            ca=file("tls_ca"),
            check_hostname=check(table, "tls_check_hostname", _bool,
                                 raw.get("tls_check_hostname", True)),
        ),
        transfer_syntaxes=check(table, "transfer_syntaxes", _syntax_list,
                                raw.get("transfer_syntaxes", [])),
        retrieve=check(table, "retrieve", _retrieve, raw.get("retrieve", "move")),
    )


# ---------------------------------------------------------------------------------------------
# Reading and writing


def read_document(path: Path) -> dict[str, Any]:
    """Return the raw TOML document at ``path`` ({} if the file does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        document: dict[str, Any] = tomllib.loads(text)
        return document
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def load_config(path: Path | None) -> Config:
    """Load and validate the config file; a missing file gives the defaults."""
    if path is None:
        return Config(path=None)
    document = read_document(path)
    if not path.exists():
        return Config(path=path)
    return parse_config(document, path)


def write_document(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` atomically (temp file beside it, then rename)."""
    import os
    import tempfile

    import tomli_w

    path.parent.mkdir(parents=True, exist_ok=True)
    data = tomli_w.dumps(document)
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".toml", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_node(path: Path, name: str, address: str, settings: Mapping[str, Any]) -> Node:
    """Add or replace ``[nodes.NAME]`` and keep every other entry of the file."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UsageError(f"node name {name!r}: use letters, digits, '.', '_' or '-'")
    try:
        aet, host, port = parse_address(address)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if aet is None:
        raise UsageError(f"{address!r}: give the node as AET@HOST:PORT")
    document = read_document(path)
    if path.exists():
        parse_config(document, path)  # refuse to rewrite a file we cannot read back
    entry: dict[str, Any] = {"host": host, "port": port, "ae_title": aet}
    entry.update({k: v for k, v in settings.items() if v is not None})
    nodes = document.setdefault("nodes", {})
    nodes[name] = entry
    parsed = parse_config(document, path)  # validates the new entry before writing
    write_document(path, document)
    return parsed.nodes[name]


def remove_node(path: Path, name: str) -> None:
    document = read_document(path)
    nodes = document.get("nodes", {})
    if name not in nodes:
        raise PeerNotFound(f"no node named {name!r} in {path}")
    del nodes[name]
    write_document(path, document)


# ---------------------------------------------------------------------------------------------
# Resolving a peer argument

_ADDRESS = re.compile(r"^(?:(?P<aet>[^@]+)@)?(?P<host>\[[^\]]+\]|[^:\[\]@]+):(?P<port>\d+)$")


def parse_address(text: str) -> tuple[str | None, str, int]:
    """Parse ``[AET@]HOST:PORT`` (IPv6 hosts in brackets); raise ``ValueError``."""
    match = _ADDRESS.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not AET@HOST:PORT")
    aet = match["aet"]
    if aet is not None:
        aet = validate_ae_title(aet)
    host = match["host"].strip("[]")
    port = _port(int(match["port"]))
    return aet, host, port


def split_peer_arguments(args: Sequence[str]) -> list[str | tuple[str, int]]:
    """Group positional peer arguments: ``HOST PORT`` is one peer, anything else one each."""
    if len(args) == 2 and args[1].isdigit() and "@" not in args[0] and ":" not in args[0]:
        return [(args[0], int(args[1]))]
    return list(args)


def closest_node(name: str, nodes: Mapping[str, Any]) -> str | None:
    """The configured node a mistyped name most likely means (case, a letter or two)."""
    from difflib import get_close_matches

    by_case = {node.lower(): node for node in nodes}
    if name.lower() in by_case:
        return by_case[name.lower()]
    close = get_close_matches(name.lower(), list(by_case), n=1, cutoff=0.7)
    return by_case[close[0]] if close else None


def resolve_peer(
    spec: str | tuple[str, int],
    config: Config,
    overrides: PeerOverrides = PeerOverrides(),  # frozen: a safe default
) -> Peer:
    """Turn a node name, ``AET@HOST:PORT`` or ``(HOST, PORT)`` into a ``Peer``.

    Raises
    ------
    PeerNotFound
        ``spec`` is neither a configured node nor an address.
    """
    node: Node | None = None
    if isinstance(spec, tuple):
        host, port = spec
        label = f"{host}:{port}"
        aet = None
        _port(port)
    elif spec in config.nodes:
        node = config.nodes[spec]
        label, host, port, aet = spec, node.host, node.port, node.ae_title
    else:
        try:
            aet, host, port = parse_address(spec)
        except ValueError:
            known = ", ".join(sorted(config.nodes)) or "none configured"
            close = closest_node(spec, config.nodes)
            raise PeerNotFound(
                f"unknown peer {spec!r}: not a configured node ({known}) nor AET@HOST:PORT"
                + (f"; did you mean {close}?" if close else ""),
                hint="add it with: dcmtool config add NAME AET@HOST:PORT",
            ) from None
        label = spec

    o = overrides
    base_timeouts = node.timeouts if node else Timeouts()
    base_tls = node.tls if node else TlsSettings()
    tls = TlsSettings(
        cert=o.tls_cert or base_tls.cert,
        key=o.tls_key or base_tls.key,
        ca=o.tls_ca or base_tls.ca,
        check_hostname=base_tls.check_hostname and not o.tls_no_check_hostname,
    )
    return Peer(
        label=label,
        host=host,
        port=port,
        called_ae_title=o.called_ae_title or aet or DEFAULT_CALLED_AE_TITLE,
        calling_ae_title=(
            o.calling_ae_title
            or (node.calling_ae_title if node else None)
            or config.local.ae_title
        ),
        max_pdu=_first(o.max_pdu, node.max_pdu if node else None, DEFAULT_MAX_PDU),
        timeouts=replace(
            base_timeouts,
            connect=_override_timeout(o.connect_timeout, base_timeouts.connect),
            acse=_override_timeout(o.acse_timeout, base_timeouts.acse),
            dimse=_override_timeout(o.dimse_timeout, base_timeouts.dimse),
            network=_override_timeout(o.network_timeout, base_timeouts.network),
        ),
        tls=tls,
        transfer_syntaxes=node.transfer_syntaxes if node else (),
        retrieve=node.retrieve if node else "move",
    )


def _override_timeout(flag: float | None, base: float | None) -> float | None:
    """A flag or variable of 0 means "no timeout", as 0 does in the config file."""
    if flag is None:
        return base
    return None if flag == 0 else float(flag)


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


# ---------------------------------------------------------------------------------------------
# [serve]

SERVE_KEYS = {
    "root": str, "port": int, "ae_title": str, "bind": str, "layout": str, "duplicates": str,
    "min_free": str, "max_associations": int, "accept_unknown": bool, "accept_ts": list,
    "require_called_aet": bool, "allow": list, "max_pdu": int, "acse_timeout": float,
    "dimse_timeout": float, "network_timeout": float, "tls_cert": str, "tls_key": str,
    "tls_ca": str, "on_stored": str, "on_study_complete": str, "study_timeout": float,
    "max_results": int, "utf8_answers": bool, "case_insensitive_names": bool,
    "max_identifier": str,
}


def serve_settings(config: Config) -> dict[str, Any]:
    """The ``[serve]`` table, type-checked; errors name the file and the key."""
    where = str(config.path) if config.path else "<config>"
    settings: dict[str, Any] = {}
    for key, value in config.serve.items():
        expected = SERVE_KEYS.get(key)
        if expected is None:
            raise ConfigError(f"{where}: [serve] {key}: unknown key "
                              f"(expected one of {sorted(SERVE_KEYS)})")
        ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if expected is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if expected is str and key in ("min_free", "max_identifier") and \
                isinstance(value, int):
            ok, value = True, str(value)
        if not ok:
            raise ConfigError(f"{where}: [serve] {key}: expected {expected.__name__}, "
                              f"got {value!r}")
        if key in ("tls_cert", "tls_key", "tls_ca", "root"):
            path = Path(value).expanduser()
            base = config.path.parent if config.path else Path.cwd()
            value = path if path.is_absolute() else base / path
        settings[key] = value
    return settings


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5GB``, ``0`` -> bytes (powers of 1024); raise ``ValueError``."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size like 500M or 2G")
    number = float(match.group(1))
    unit = (match.group(2) or "").lower()[:1]
    scale = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[unit]
    return int(number * scale)
