"""A private Orthanc for tests: temporary config, storage and index, free ports, REST helper.

Facts about Orthanc 1.10.1 (the Debian package) that shaped this:

* There is no option to choose the listening interface: the DICOM port and the HTTP port bind
  every interface (0.0.0.0). ``"RemoteAccessAllowed": false`` makes the HTTP server refuse any
  client that is not on loopback, which is the best 1.10.1 offers.
* The Debian package ships plugins (/usr/share/orthanc/plugins) and a system config in
  /etc/orthanc; our own config file with ``"Plugins": []`` loads none of them and shares no
  state with a system instance (own ports, own storage and index).
* ``AcceptedTransferSyntaxes`` (since 1.9.0, wildcards allowed) limits what the C-STORE SCP
  accepts; ``PUT /tools/accepted-transfer-syntaxes`` changes it at run time.
* ``DicomAlwaysAllowEcho``/``Store``/``Find``/``FindWorklist``/``Get``/``Move`` all exist;
  without the last four, C-FIND/C-GET/C-MOVE from an unregistered AE are refused.
* ``DicomAssociationCloseDelay`` (default 5 s) keeps Orthanc's own SCU associations open after
  a C-MOVE; 0 closes them at once, so a move destination sees the release immediately.
* Its DICOM side is DCMTK 3.6.7 (implementation class UID 1.2.276.0.7230010.3.0.3.6.7,
  version OFFIS_DCMTK_367, max PDU 16384 from ``MaximumPduLength``), so it honours
  ``TCP_NODELAY=1`` in the environment: without it a C-ECHO takes ~45 ms on loopback (Nagle
  and delayed ACKs), with it ~3 ms. (``"TcpNoDelay"`` in the config is for HTTP only.)
* Start-up takes ~0.1 s; SIGTERM to exit takes ~3.5 s (HTTP server 2 s, DICOM server 1 s),
  whatever ``KeepAlive``/``HttpThreadsCount`` say: stop several servers in parallel.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.processes import (
    LOOPBACK,
    START_TIMEOUT,
    ManagedProcess,
    dcmtk_env,
    port_accepts,
    require_program,
    start_with_ports,
    wait_until_ready,
)

ORTHANC = "/usr/sbin/Orthanc"


class OrthancError(RuntimeError):
    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


class OrthancRest:
    """JSON over HTTP to one Orthanc, with urllib (no proxy: it is on loopback)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # An http_proxy in the environment must not catch requests to 127.0.0.1.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(self, method: str, path: str, body: Any = None,
                content_type: str | None = None, timeout: float | None = None) -> Any:
        url = self.base_url + (path if path.startswith("/") else "/" + path)
        data: bytes | None
        if body is None:
            data = None
        elif isinstance(body, bytes | bytearray):
            data = bytes(body)
            content_type = content_type or "application/octet-stream"
        elif isinstance(body, str):
            data = body.encode("utf-8")
            content_type = content_type or "text/plain"
        else:
            data = json.dumps(body).encode("utf-8")
            content_type = content_type or "application/json"
        req = urllib.request.Request(url, data=data, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            with self._opener.open(req, timeout=timeout or self.timeout) as response:
                raw = response.read()
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raise OrthancError(method, url, exc.code,
                               exc.read().decode("utf-8", "replace")) from None
        if "json" in kind:
            return json.loads(raw) if raw else None
        return raw

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    # Conveniences for tests -----------------------------------------------------------------

    def system(self) -> dict[str, Any]:
        return self.get("/system")

    def statistics(self) -> dict[str, Any]:
        return self.get("/statistics")

    def instance_count(self) -> int:
        return int(self.statistics()["CountInstances"])

    def instances(self) -> list[str]:
        return list(self.get("/instances"))

    def sop_instance_uids(self) -> set[str]:
        found = set()
        for orthanc_id in self.instances():
            tags = self.get(f"/instances/{orthanc_id}/simplified-tags")
            found.add(tags["SOPInstanceUID"])
        return found

    def upload(self, dicom: bytes | Path) -> dict[str, Any]:
        """Store a DICOM file through REST (POST /instances); returns Orthanc's answer."""
        data = dicom.read_bytes() if isinstance(dicom, Path) else dicom
        return self.post("/instances", data, content_type="application/dicom")

    def clear(self) -> None:
        """Delete every patient (so a module-shared Orthanc can start a test empty)."""
        for patient in self.get("/patients"):
            self.delete(f"/patients/{patient}")

    def accepted_transfer_syntaxes(self) -> list[str]:
        return list(self.get("/tools/accepted-transfer-syntaxes"))

    def set_accepted_transfer_syntaxes(self, uids: list[str]) -> None:
        self.put("/tools/accepted-transfer-syntaxes", uids)


@dataclass
class OrthancServer:
    aet: str
    dicom_port: int
    http_port: int
    config: dict[str, Any]
    config_path: Path
    directory: Path
    process: ManagedProcess
    rest: OrthancRest = field(init=False)
    host: str = LOOPBACK

    def __post_init__(self) -> None:
        self.rest = OrthancRest(self.url)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def address(self) -> str:
        """``AET@127.0.0.1:PORT``, as dcmtool takes a peer."""
        return f"{self.aet}@{self.host}:{self.dicom_port}"

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)

    def stop(self) -> None:
        self.process.stop()


def modality(aet: str, port: int, host: str = LOOPBACK, **options: Any) -> dict[str, Any]:
    """A ``DicomModalities`` entry (for C-MOVE destinations and Orthanc's own SCU)."""
    return {"AET": aet, "Host": host, "Port": port, **options}


def orthanc_config(directory: Path, *, aet: str, dicom_port: int, http_port: int,
                   modalities: Mapping[str, Any] | None = None,
                   accepted_transfer_syntaxes: list[str] | None = None,
                   check_called_aet: bool = False,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "Name": f"dcmtool-test-{aet}",
        "StorageDirectory": str(directory / "storage"),
        "IndexDirectory": str(directory / "index"),
        "TemporaryDirectory": str(directory / "tmp"),
        "StorageCompression": False,
        "SyncStorageArea": False,  # no fsync per instance: faster, and tmp is throw-away
        "Plugins": [],  # the Debian package ships plugins: load none
        "LuaScripts": [],
        "ConcurrentJobs": 2,
        "SaveJobs": False,
        "JobsHistorySize": 10,
        "MetricsEnabled": False,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,  # 1.10.1 cannot bind loopback only; refuse the rest
        "AuthenticationEnabled": False,
        "RegisteredUsers": {},
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "HttpThreadsCount": 8,
        "HttpTimeout": 30,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": check_called_aet,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowFindWorklist": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomCheckModalityHost": False,
        "DicomModalities": dict(modalities or {}),
        "DicomModalitiesInDatabase": False,
        "OrthancPeers": {},
        "DicomScuTimeout": 10,
        "DicomScpTimeout": 30,
        "DicomAssociationCloseDelay": 0,
        "DicomThreadsCount": 4,
        "SynchronousCMove": True,
        "DeidentifyLogs": False,
        "StableAge": 60,
    }
    if accepted_transfer_syntaxes is not None:
        config["AcceptedTransferSyntaxes"] = list(accepted_transfer_syntaxes)
    config.update(extra or {})
    return config


def start_orthanc(directory: Path, *, aet: str = "ORTHANC",
                  modalities: Mapping[str, Any] | None = None,
                  accepted_transfer_syntaxes: list[str] | None = None,
                  check_called_aet: bool = False,
                  extra: Mapping[str, Any] | None = None,
                  verbose: bool = False) -> OrthancServer:
    """Write a config under ``directory``, start Orthanc, wait for HTTP and DICOM."""
    program = require_program(ORTHANC, "orthanc", "Orthanc")

    def config(dicom_port: int, http_port: int) -> dict[str, Any]:
        return orthanc_config(directory, aet=aet, dicom_port=dicom_port, http_port=http_port,
                              modalities=modalities,
                              accepted_transfer_syntaxes=accepted_transfer_syntaxes,
                              check_called_aet=check_called_aet, extra=extra)

    return run_orthanc(program, directory, config, aet=aet,
                       env=dcmtk_env(),  # Orthanc's DICOM stack is DCMTK: TCP_NODELAY=1
                       verbose=verbose)


def wait_for_orthanc(proc: ManagedProcess, *, aet: str, dicom_port: int, http_port: int,
                     timeout: float = START_TIMEOUT) -> None:
    """Block until Orthanc answers ``GET /system`` as ``aet``, then accepts DICOM connections
    (its two servers come up one after the other: either port alone proves nothing)."""
    rest = OrthancRest(f"http://{LOOPBACK}:{http_port}", timeout=2.0)

    def answers() -> bool:
        if not port_accepts(LOOPBACK, http_port):
            return False
        try:
            return bool(rest.system().get("DicomAet") == aet)
        except (OSError, OrthancError, ValueError):
            return False

    wait_until_ready(proc, answers, what=f"answer GET /system on port {http_port}",
                     timeout=timeout)
    wait_until_ready(proc, lambda: port_accepts(LOOPBACK, dicom_port),
                     what=f"accept DICOM connections on port {dicom_port}", timeout=timeout)


def run_orthanc(program: str, directory: Path,
                config_for_ports: Callable[[int, int], dict[str, Any]], *, aet: str,
                env: Mapping[str, str] | None = None, verbose: bool = False,
                timeout: float = START_TIMEOUT) -> OrthancServer:
    """Start ``program`` (an Orthanc) on two free ports with the config
    ``config_for_ports(dicom_port, http_port)``, written to ``directory``/orthanc.json (log:
    orthanc.log beside it); wait until it serves both as ``aet`` (see ``wait_for_orthanc``)."""
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "orthanc.json"
    holder: dict[str, Any] = {}

    def build(ports: list[int]) -> list[str]:
        dicom_port, http_port = ports
        config = config_for_ports(dicom_port, http_port)
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        holder["config"] = config
        return [program, *(["--verbose"] if verbose else []), str(config_path)]

    def ready(proc: ManagedProcess, ports: list[int]) -> None:
        dicom_port, http_port = ports
        wait_for_orthanc(proc, aet=aet, dicom_port=dicom_port, http_port=http_port,
                         timeout=timeout)

    proc, (dicom_port, http_port) = start_with_ports(
        "Orthanc", build, ports=2, log_path=directory / "orthanc.log", ready=ready,
        cwd=directory, env=env,
    )
    return OrthancServer(aet=aet, dicom_port=dicom_port, http_port=http_port,
                         config=holder["config"], config_path=config_path,
                         directory=directory, process=proc)
