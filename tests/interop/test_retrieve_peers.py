"""find, mwl, move and get against real peers: DCMTK dcmqrscp/wlmscpfs/storescp and Orthanc.

The same small data set (3 patients, 3 studies, 4 series, 5 instances; one of them a
Radiopharmaceutical Radiation Dose SR, a storage class neither DCMTK getscu nor dcmtool offers
by default for C-GET) is loaded into a module-wide dcmqrscp and a module-wide Orthanc. Moves to
ourselves use one [local] port chosen per module (both peers must know it beforehand:
dcmqrscp's HostTable is read at start-up); third-party destinations are registered on
Orthanc at run time (REST ``PUT /modalities``) and on a per-test dcmqrscp (``dcmqrscp``
fixture) at start-up.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import evt
from support.datasets import make_dataset, write_instance
from support.peers import (
    LOOPBACK,
    DcmtkStoreSCP,
    DcmtkWorklistSCP,
    ManagedProcess,
    OrthancServer,
    PynetdicomSCP,
    free_port,
    modality,
    require_program,
    run_cli,
)
from support.processes import dcmtk_env, start_with_ports, stop_all, wait_for_port

DCMQRSCP = "/usr/bin/dcmqrscp"
STORESCU = "/usr/bin/storescu"
GETSCU = "/usr/bin/getscu"

LOCAL_AET = "DCMTOOL"
#: Radiopharmaceutical Radiation Dose SR: in DCMTK's storage lists (so dcmqrscp and Orthanc
#: store it) but not among the 120 classes getscu proposes nor dcmtool's 31 defaults.
RRD_SR = "1.2.840.10008.5.1.4.1.1.88.68"
CT = "1.2.840.10008.5.1.4.1.1.2"


# ---------------------------------------------------------------------------------------------
# The data set


@dataclass(frozen=True)
class Item:
    path: Path
    patient_id: str
    patient_name: str
    study_uid: str
    accession: str
    series_uid: str
    sop_uid: str
    sop_class: str
    modality: str


@dataclass
class Data:
    items: list[Item]

    @property
    def paths(self) -> list[Path]:
        return [i.path for i in self.items]

    def studies(self) -> dict[str, list[Item]]:
        found: dict[str, list[Item]] = {}
        for item in self.items:
            found.setdefault(item.study_uid, []).append(item)
        return found

    def series(self) -> dict[str, list[Item]]:
        found: dict[str, list[Item]] = {}
        for item in self.items:
            found.setdefault(item.series_uid, []).append(item)
        return found

    def by_accession(self, accession: str) -> list[Item]:
        return [i for i in self.items if i.accession == accession]

    def sop_uids(self, items: list[Item] | None = None) -> set[str]:
        return {i.sop_uid for i in (self.items if items is None else items)}


#: (patient ID, name, accession, study date, [(modality, SOP class, instances), ...])
LAYOUT = [
    ("RP1", "Alpha^Ann", "RACC1", "20260110", [("CT", CT, 2), ("CT", CT, 1)]),
    ("RP2", "Beta^Bob", "RACC2", "20260111", [("CT", CT, 1)]),
    ("RP3", "Gamma^Gus", "RACC3", "20260112", [("SR", RRD_SR, 1)]),
]


def sr_dataset(**attributes: Any) -> Dataset:
    """A minimal SR document (no pixel data)."""
    ds = Dataset()
    ds.SOPClassUID = RRD_SR
    ds.SOPInstanceUID = generate_uid()
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    concept = Dataset()
    concept.CodeValue = "113500"
    concept.CodingSchemeDesignator = "DCM"
    concept.CodeMeaning = "Radiopharmaceutical Radiation Dose Report"
    ds.ConceptNameCodeSequence = [concept]
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Data:
    folder = tmp_path_factory.mktemp("retrieve-data")
    items: list[Item] = []
    for patient_id, name, accession, date, series_list in LAYOUT:
        study_uid = generate_uid()
        for series_number, (mod, sop_class, count) in enumerate(series_list, start=1):
            series_uid = generate_uid()
            for number in range(1, count + 1):
                common: dict[str, Any] = dict(
                    PatientID=patient_id, PatientName=name, AccessionNumber=accession,
                    StudyDate=date, StudyTime="101500", StudyID="1", StudyInstanceUID=study_uid,
                    SeriesInstanceUID=series_uid, SeriesNumber=series_number,
                    InstanceNumber=number, Modality=mod, StudyDescription=f"Study of {patient_id}",
                    SeriesDescription=f"Series {series_number}", PatientBirthDate="19700101",
                    PatientSex="O")
                ds = (sr_dataset(**common) if sop_class == RRD_SR
                      else make_dataset(sop_class=sop_class, **common))
                path = folder / f"{ds.SOPInstanceUID}.dcm"
                write_instance(path, ds)
                items.append(Item(path, patient_id, name, study_uid, accession, series_uid,
                                  str(ds.SOPInstanceUID), sop_class, mod))
    return Data(items)


# ---------------------------------------------------------------------------------------------
# DCMTK dcmqrscp


@dataclass
class DcmqrSCP:
    """A running ``dcmqrscp --fork`` with one read/write storage area.

    Not ``--single-process``: DCMTK 3.6.7's dcmqrscp (Debian 3.6.7-9) crashes with SIGSEGV in
    ``DUL_DropAssociation`` after the first association in that mode, whatever the outcome.
    Forked children share the fixture's process group, so stopping it stops them too.
    """

    ae_title: str
    port: int
    storage: Path
    process: ManagedProcess
    hosts: dict[str, int] = field(default_factory=dict)  # AE title -> port (HostTable)
    host: str = LOOPBACK

    @property
    def address(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def load(self, paths: list[Path]) -> None:
        """C-STORE ``paths`` with DCMTK storescu (dcmqrscp accepts any calling AE: Peers ANY)."""
        storescu = require_program(STORESCU, "dcmtk", "DCMTK storescu")
        done = subprocess.run([storescu, "-R", "-aet", "LOADER", "-aec", self.ae_title, self.host,
                               str(self.port), *(str(p) for p in paths)],
                              capture_output=True, text=True, timeout=60, env=dcmtk_env())
        assert done.returncode == 0, f"storescu failed: {done.stderr}\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        return self.process.log_tail(lines)


def dcmqrscp_config(port: int, ae_title: str, storage: Path, hosts: Mapping[str, int]) -> str:
    """A dcmqrscp.cfg: HostTable entries (AE, 127.0.0.1, port) are the move destinations."""
    host_lines = "\n".join(f"dest{n} = ({aet}, {LOOPBACK}, {p})"
                           for n, (aet, p) in enumerate(hosts.items()))
    return (f"NetworkTCPPort  = {port}\nMaxPDUSize      = 16384\nMaxAssociations = 16\n"
            f"HostTable BEGIN\n{host_lines}\nHostTable END\n"
            "VendorTable BEGIN\nVendorTable END\n"
            f"AETable BEGIN\n{ae_title} {storage} RW (100, 1024mb) ANY\nAETable END\n")


def start_dcmqrscp(base: Path, *, ae_title: str = "QRSCP",
                   hosts: Mapping[str, int] | None = None, args: tuple[str, ...] = ()
                   ) -> DcmqrSCP:
    """Write the config, start dcmqrscp on a free port, wait until it accepts connections."""
    hosts = dict(hosts or {})
    program = require_program(DCMQRSCP, "dcmtk", "DCMTK dcmqrscp")
    storage = base / "db"
    storage.mkdir(parents=True, exist_ok=True)
    config = base / "dcmqrscp.cfg"

    def build(ports: list[int]) -> list[str]:
        text = dcmqrscp_config(ports[0], ae_title, storage, hosts)
        config.write_text(text, encoding="utf-8")
        return [program, "--log-level", "info", "--config", str(config), "--fork",
                *args, str(ports[0])]

    proc, (port,) = start_with_ports(
        "dcmqrscp", build, ports=1, log_path=base / "dcmqrscp.log", env=dcmtk_env(), cwd=base,
        ready=lambda p, ports: wait_for_port(p, ports[0]))
    return DcmqrSCP(ae_title, port, storage, proc, hosts)


@pytest.fixture
def dcmqrscp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DcmqrSCP]]:
    """Factory: ``dcmqrscp(*args, ae_title="QRSCP", hosts={AET: port}, load=[paths])``.

    ``hosts`` become its HostTable (the move destinations it knows, all on 127.0.0.1);
    ``load`` is stored into it with storescu before it is returned.
    """
    started: list[ManagedProcess] = []

    def start(*args: str, ae_title: str = "QRSCP", hosts: Mapping[str, int] | None = None,
              load: list[Path] | None = None) -> DcmqrSCP:
        scp = start_dcmqrscp(tmp_path_factory.mktemp("dcmqrscp"), ae_title=ae_title,
                             hosts=hosts or {}, args=args)
        started.append(scp.process)
        if load:
            scp.load(load)
        return scp

    yield start
    stop_all(started)


@pytest.fixture(scope="module")
def local_port() -> int:
    """Our storage SCP's port ([local] port) for moves to ourselves in this module."""
    return free_port()


@pytest.fixture(scope="module")
def qr(tmp_path_factory: pytest.TempPathFactory, data: Data, local_port: int
       ) -> Iterator[DcmqrSCP]:
    """A module-wide dcmqrscp holding ``data``, knowing us (DCMTOOL at ``local_port``)."""
    require_program(DCMQRSCP, "dcmtk", "DCMTK dcmqrscp")
    scp = start_dcmqrscp(tmp_path_factory.mktemp("dcmqrscp-module"),
                         hosts={LOCAL_AET: local_port})
    try:
        scp.load(data.paths)
        yield scp
    finally:
        scp.process.stop()


@pytest.fixture(scope="module")
def pacs(orthanc_module: Callable[..., OrthancServer], data: Data, local_port: int
         ) -> OrthancServer:
    """A module-wide Orthanc holding ``data``, knowing us (DCMTOOL at ``local_port``)."""
    server = orthanc_module(modalities={"dcmtool": modality(LOCAL_AET, local_port)})
    for path in data.paths:
        server.rest.upload(path)
    assert server.rest.instance_count() == len(data.items)
    return server


def write_config(path: Path, local_port: int, **nodes: str) -> None:
    """[local] on 127.0.0.1:``local_port``, and ``NAME="AET@HOST:PORT"`` nodes."""
    text = f'[local]\nae_title = "{LOCAL_AET}"\nport = {local_port}\nbind = "{LOOPBACK}"\n'
    for name, address in nodes.items():
        aet, _, rest = address.partition("@")
        host, _, port = rest.rpartition(":")
        text += f'[nodes.{name}]\nhost = "{host}"\nport = {port}\nae_title = "{aet}"\n'
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def config(isolated_config: Path, local_port: int) -> Path:
    """The test's config: [local] DCMTOOL on 127.0.0.1 and the module's local port."""
    write_config(isolated_config, local_port)
    return isolated_config


def received_uids(folder: Path) -> set[str]:
    """SOP Instance UIDs of the instances under an --out folder."""
    found = set()
    for path in folder.rglob("*.dcm"):
        if not any(part.startswith(".") for part in path.relative_to(folder).parts):
            found.add(str(dcmread(path, stop_before_pixels=True).SOPInstanceUID))
    return found


def peer_address(request: pytest.FixtureRequest, name: str) -> str:
    """``qr`` or ``pacs`` by name (for tests parametrized over both peers)."""
    server = request.getfixturevalue(name)
    return str(server.address)


PEERS = [pytest.param("qr", marks=pytest.mark.peer("dcmtk"), id="dcmqrscp"),
         pytest.param("pacs", marks=pytest.mark.peer("orthanc"), id="orthanc")]


def register(request: pytest.FixtureRequest, peer: str, data: Data, aet: str, port: int) -> str:
    """The address of a peer holding ``data`` that knows ``aet`` at 127.0.0.1:``port``.

    Orthanc (module-wide): a ``PUT /modalities`` at run time. dcmqrscp reads its HostTable at
    start-up only: a fresh one from the ``dcmqrscp`` fixture, loaded with ``data``.
    """
    if peer == "pacs":
        server: OrthancServer = request.getfixturevalue("pacs")
        server.rest.put(f"/modalities/{aet.lower()}", modality(aet, port))
        return server.address
    start = request.getfixturevalue("dcmqrscp")
    return str(start(hosts={aet: port}, load=data.paths).address)


def flat(ds: Dataset) -> dict[str, str]:
    """Keyword -> text of a response's top-level elements."""
    return {e.keyword: "" if e.value is None else str(e.value) for e in ds if e.keyword}


def parse_rows(stdout: str, fmt: str) -> list[dict[str, str]]:
    """find's output parsed back: --json, --jsonl, --csv (the table is checked apart)."""
    if fmt == "json":
        objects = json.loads(stdout)
        assert isinstance(objects, list)
        for obj in objects:  # DICOM JSON: 8-hex-digit tags, each with its VR
            assert all(len(tag) == 8 and "vr" in element for tag, element in obj.items())
        return [flat(Dataset.from_json(obj)) for obj in objects]
    if fmt == "jsonl":
        return [flat(Dataset.from_json(json.loads(line))) for line in stdout.splitlines()]
    assert fmt == "csv"
    return list(csv.DictReader(io.StringIO(stdout)))


def move_json(result: Any) -> dict[str, Any]:
    """The ``--json`` summary of move/get (asserting stdout is exactly that)."""
    return dict(json.loads(result.stdout))


# ---------------------------------------------------------------------------------------------
# find


def find_case(data: Data, level: str) -> tuple[list[str], str, dict[str, dict[str, str]]]:
    """(arguments, unique key, {unique value: {keyword: expected value}}) for one level.

    IMAGE is asked within one study: dcmqrscp answers IMAGE-level queries without a Study
    Instance UID with no match (it does not search across studies below STUDY level).
    """
    if level == "STUDY":
        return [], "StudyInstanceUID", {
            uid: {"AccessionNumber": items[0].accession, "PatientID": items[0].patient_id,
                  "PatientName": items[0].patient_name}
            for uid, items in data.studies().items()}
    if level == "SERIES":
        return ["-L", "SERIES"], "SeriesInstanceUID", {
            uid: {"Modality": items[0].modality, "StudyInstanceUID": items[0].study_uid}
            for uid, items in data.series().items()}
    study = data.items[0].study_uid
    return (["-L", "IMAGE", "-k", f"StudyInstanceUID={study}"], "SOPInstanceUID",
            {i.sop_uid: {"SeriesInstanceUID": i.series_uid, "StudyInstanceUID": study}
             for i in data.items if i.study_uid == study})


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize("level", ["STUDY", "SERIES", "IMAGE"])
@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "table"])
def test_find_levels_and_output_formats(request: pytest.FixtureRequest, config: Path,
                                        data: Data, peer: str, level: str, fmt: str) -> None:
    address = peer_address(request, peer)
    args, unique, expected = find_case(data, level)
    flag = [] if fmt == "table" else [f"--{fmt}"]
    result = run_cli("find", address, *args, *flag, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    if fmt == "table":
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        assert unique in lines[0].split() and "QueryRetrieveLevel" not in result.stdout
        for value, keys in expected.items():
            hits = [line for line in lines if value in line.split()]
            assert len(hits) == 1, f"{value} not in one row of:\n{result.stdout}"
            for text in keys.values():
                assert text in hits[0].split()
        assert len([line for line in lines[1:] if set(line) - set("─- ")]) == len(expected)
        return
    rows = parse_rows(result.stdout, fmt)
    if fmt == "csv":  # a header row of keywords, the identifier's keys first
        header = result.stdout.splitlines()[0].split(",")
        assert unique in header and "QueryRetrieveLevel" not in header
    assert sorted(r[unique] for r in rows) == sorted(expected)
    for row in rows:
        assert {k: row.get(k) for k in expected[row[unique]]} == expected[row[unique]]


@pytest.mark.parametrize("peer", PEERS)
def test_find_limit_cancels_and_prints_one_match(request: pytest.FixtureRequest, config: Path,
                                                 data: Data, peer: str) -> None:
    address = peer_address(request, peer)
    log = request.getfixturevalue("qr").process.log_path if peer == "qr" else None
    logged = log.read_text(errors="replace") if log else ""
    result = run_cli("find", address, "-L", "SERIES", "--limit", "1", "--jsonl",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    rows = parse_rows(result.stdout, "jsonl")
    assert len(rows) == 1 and rows[0]["SeriesInstanceUID"] in data.series()
    if log:  # dcmqrscp had sent every match already: a late cancel, ignored, status 0
        assert "C-CANCEL-RQ" in log.read_text(errors="replace")[len(logged):]


# ---------------------------------------------------------------------------------------------
# mwl against DCMTK wlmscpfs


def worklist_item(patient_id: str, name: str, modality_: str, station: str, date: str
                  ) -> Dataset:
    """A worklist item with everything wlmscpfs requires (it skips incomplete files)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.AccessionNumber = f"W{patient_id}"
    ds.StudyInstanceUID = generate_uid()
    ds.RequestedProcedureID = f"RP{patient_id}"
    ds.RequestedProcedureDescription = f"{modality_} exam"
    ds.ReferringPhysicianName = ""
    step = Dataset()
    step.Modality = modality_
    step.ScheduledStationAETitle = station
    step.ScheduledProcedureStepStartDate = date
    step.ScheduledProcedureStepStartTime = "093000"
    step.ScheduledProcedureStepID = f"SPS{patient_id}"
    step.ScheduledProcedureStepDescription = f"{modality_} step"
    step.ScheduledPerformingPhysicianName = ""
    ds.ScheduledProcedureStepSequence = [step]
    return ds


@pytest.fixture
def worklist(dcmtk_wlmscpfs: Callable[..., DcmtkWorklistSCP]) -> DcmtkWorklistSCP:
    import datetime

    today = datetime.date.today().strftime("%Y%m%d")
    wlm = dcmtk_wlmscpfs(ae_title="WORKLIST")
    wlm.add_dataset("w1", worklist_item("W1", "Doe^Jane", "CT", "CT01", today))
    wlm.add_dataset("w2", worklist_item("W2", "Roe^Rick", "MR", "MR01", today))
    wlm.add_dataset("w3", worklist_item("W3", "Doe^John", "CT", "CT02", "20260115"))
    return wlm


SPS = "ScheduledProcedureStepSequence"


@pytest.mark.peer("dcmtk")
@pytest.mark.parametrize(("args", "expected"), [
    (["--modality", "CT", "--date", "today"], ["W1"]),
    (["--modality", "CT"], ["W1", "W3"]),
    (["--date", "20260115"], ["W3"]),
    (["--date", "20260101-20260131", "--modality", "CT"], ["W3"]),
    (["--station-aet", "MR01"], ["W2"]),
    (["--patient", "Doe*"], ["W1", "W3"]),
    (["-k", f"{SPS}[0].Modality=MR"], ["W2"]),
    ([], ["W1", "W2", "W3"]),
])
def test_mwl_shortcuts_against_wlmscpfs(worklist: DcmtkWorklistSCP, config: Path,
                                        args: list[str], expected: list[str]) -> None:
    result = run_cli("mwl", worklist.address, *args, "--json", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    found = [Dataset.from_json(obj) for obj in json.loads(result.stdout)]
    assert sorted(str(ds.PatientID) for ds in found) == expected
    for ds in found:  # the default return keys came back, inside the step too
        step = ds[SPS][0]
        assert step.ScheduledStationAETitle and step.ScheduledProcedureStepStartDate
        assert ds.AccessionNumber == f"W{ds.PatientID}"


@pytest.mark.peer("dcmtk")
def test_mwl_csv_and_jsonl(worklist: DcmtkWorklistSCP, config: Path) -> None:
    as_csv = run_cli("mwl", worklist.address, "--modality", "MR", "--csv", catch_exceptions=False)
    assert as_csv.exit_code == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["PatientID"], r[f"{SPS}[0].Modality"], r[f"{SPS}[0].ScheduledStationAETitle"])
            for r in rows] == [("W2", "MR", "MR01")]
    jsonl = run_cli("mwl", worklist.address, "--patient", "Doe^J*", "--jsonl",
                    catch_exceptions=False)
    assert jsonl.exit_code == 0, jsonl.stderr
    assert sorted(r["PatientID"] for r in parse_rows(jsonl.stdout, "jsonl")) == ["W1", "W3"]


# ---------------------------------------------------------------------------------------------
# move


@pytest.mark.parametrize("peer", PEERS)
def test_move_to_ourselves(request: pytest.FixtureRequest, config: Path, data: Data,
                           tmp_path: Path, peer: str) -> None:
    address = peer_address(request, peer)
    study = data.items[0].study_uid
    out = tmp_path / "in"
    result = run_cli("move", address, "--study", study, "-o", out, "--json",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = move_json(result)
    wanted = data.sop_uids(data.studies()[study])
    assert (summary["requests"], summary["completed"], summary["failed"],
            summary["received"]) == (1, len(wanted), 0, len(wanted))
    assert summary["results"][0]["status"] == "0x0000"
    assert summary["out"] == str(out)
    assert received_uids(out) == wanted

    # The text summary; --series finds its study first (Study Root wants it), --accession too.
    series = data.items[2]
    out2 = tmp_path / "in2"
    text = run_cli("move", address, "--series", series.series_uid, "--accession", "RACC2",
                   "-o", out2, catch_exceptions=False)
    assert text.exit_code == 0, text.stderr
    assert text.stdout.startswith(f"2 request(s): 2 completed, 0 failed, 0 warnings; "
                                  f"2 received, saved to {out2}; ")
    assert received_uids(out2) == {series.sop_uid, data.by_accession("RACC2")[0].sop_uid}


@pytest.mark.parametrize("peer", PEERS)
def test_third_party_move_to_storescp(request: pytest.FixtureRequest, config: Path,
                                      data: Data, peer: str,
                                      dcmtk_storescp: Callable[..., DcmtkStoreSCP]) -> None:
    storescp = dcmtk_storescp(ae_title="STORESCP")
    address = register(request, peer, data, storescp.ae_title, storescp.port)
    result = run_cli("move", address, "--dest", "STORESCP", "--accession", "RACC1", "--json",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = move_json(result)
    assert (summary["completed"], summary["failed"], summary["received"], summary["out"]) == (
        3, 0, 0, None)
    got = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in storescp.received()}
    assert got == data.sop_uids(data.by_accession("RACC1"))


@pytest.mark.peer("dcmtk")
def test_unknown_move_destination_is_0xa801_exit_6_with_a_hint(
        qr: DcmqrSCP, config: Path, data: Data, local_port: int, tmp_path: Path) -> None:
    study = data.items[0].study_uid
    result = run_cli("move", qr.address, "--dest", "NOBODY", "--study", study)
    assert result.exit_code == 6, result.stderr
    assert (f"dcmtool: error: {qr.address} does not know the move destination NOBODY (0xA801)"
            in result.stderr)
    assert f"dcmtool: hint: register NOBODY on {qr.address} as a DICOM node" in result.stderr

    # A move to ourselves under an AE title the peer does not know: register AET@host:port.
    config.write_text(config.read_text().replace(f'"{LOCAL_AET}"', '"STRANGER"'))
    out = tmp_path / "in"
    ours = run_cli("move", qr.address, "--study", study, "-o", out)
    assert ours.exit_code == 6, ours.stderr
    assert "does not know the move destination STRANGER (0xA801)" in ours.stderr
    assert (f"dcmtool: hint: register STRANGER@<this host>:{local_port} on {qr.address} as a "
            "DICOM node" in ours.stderr)
    assert received_uids(out) == set()


@pytest.mark.peer("orthanc")
def test_orthanc_unknown_move_destination_is_exit_6(pacs: OrthancServer, config: Path,
                                                    data: Data) -> None:
    """Orthanc 1.10 answers an unknown destination with 0xC000, not 0xA801: no hint then."""
    result = run_cli("move", pacs.address, "--dest", "NOBODY", "--study",
                     data.items[0].study_uid)
    assert result.exit_code == 6, result.stderr
    assert "the peer answered 0xC000" in result.stderr


def every_other_store_fails() -> tuple[Callable[[Any], int], list[str]]:
    """A C-STORE handler answering 0xA700 (out of resources) to the 2nd, 4th, ... request."""
    import threading

    lock = threading.Lock()
    refused: list[str] = []
    count = [0]

    def handle(event: Any) -> int:
        with lock:
            count[0] += 1
            if count[0] % 2 == 0:
                refused.append(str(event.request.AffectedSOPInstanceUID))
                return 0xA700
        return 0x0000

    return handle, refused


@pytest.mark.parametrize("peer", PEERS)
def test_move_with_refused_sub_operations_is_exit_7(
        request: pytest.FixtureRequest, config: Path, data: Data, peer: str,
        pynetdicom_scp: Callable[..., PynetdicomSCP]) -> None:
    """A third-party destination refusing every other C-STORE.

    dcmqrscp goes on and ends with 0xB000 and the Failed SOP Instance UID List. Orthanc 1.10
    stops the C-MOVE at the first refusal with 0xC000 (and counts 0 completed), so it gets
    two requests: the first (one instance) completes, the second fails.
    """
    handler, refused = every_other_store_fails()
    scp = pynetdicom_scp([(evt.EVT_C_STORE, handler)], ae_title="HALFSCP", storage=True)
    address = register(request, peer, data, scp.ae_title, scp.port)
    if peer == "qr":
        result = run_cli("move", address, "--dest", "HALFSCP", "--accession", "RACC1", "--json")
        assert result.exit_code == 7, result.stderr
        (outcome,) = move_json(result)["results"]
        assert (outcome["status"], outcome["completed"], outcome["failed"]) == ("0xB000", 2, 1)
        assert outcome["failed_sop_instance_uids"] == refused and len(refused) == 1
        assert "dcmtool: error: 1 sub-operation(s) failed" in result.stderr
    else:
        result = run_cli("move", address, "--dest", "HALFSCP", "--accession", "RACC2",
                         "--accession", "RACC1", "--json")
        assert result.exit_code == 7, result.stderr
        first, second = move_json(result)["results"]
        assert (first["status"], first["completed"], first["failed"]) == ("0x0000", 1, 0)
        assert second["status"] == "0xC000"
        assert "dcmtool: error: 1 request(s) failed" in result.stderr
    assert len(scp.stored) == 0  # our handler replaced the storing one: nothing kept


@pytest.mark.peer("dcmtk")
def test_move_to_ourselves_with_sub_operations_the_peer_cannot_send_is_exit_7(
        qr: DcmqrSCP, config: Path, data: Data, tmp_path: Path) -> None:
    """dcmqrscp proposes DCMTK's 120 common storage classes for its sub-associations: it
    cannot send the Radiopharmaceutical Radiation Dose SR (0xA702, 1 failed)."""
    out = tmp_path / "in"
    result = run_cli("move", qr.address, "--accession", "RACC2", "--accession", "RACC3",
                     "-o", out, "--json")
    assert result.exit_code == 7, result.stderr
    summary = move_json(result)
    assert (summary["completed"], summary["failed"], summary["received"]) == (1, 1, 1)
    assert [r["status"] for r in summary["results"]] == ["0x0000", "0xA702"]
    assert summary["results"][1]["failed_sop_instance_uids"] == [sr_study(data).sop_uid]
    assert "dcmtool: error: 1 request(s) failed; 1 sub-operation(s) failed" in result.stderr
    assert received_uids(out) == data.sop_uids(data.by_accession("RACC2"))


@pytest.mark.peer("dcmtk")
def test_move_failing_for_lack_of_a_context_is_not_blamed_on_the_network(
        qr: DcmqrSCP, config: Path, data: Data, tmp_path: Path) -> None:
    # dcmqrscp cannot send this study's only instance (no context for its class on the
    # sub-association: 0xA702) but it did connect to our storage SCP: that is a failure to
    # report as such, not a network problem to blame on firewalls.
    out = tmp_path / "in"
    result = run_cli("move", qr.address, "--accession", "RACC3", "-o", out)
    assert "0xA702" in result.stderr
    assert "reach this host" not in result.stderr, result.stderr
    assert result.exit_code == 6, result.stderr


# ---------------------------------------------------------------------------------------------
# find -> move


@pytest.mark.parametrize("peer", PEERS)
def test_find_jsonl_then_move_from_file(request: pytest.FixtureRequest, isolated_config: Path,
                                        local_port: int, data: Data, tmp_path: Path,
                                        peer: str) -> None:
    write_config(isolated_config, local_port, NODE=peer_address(request, peer))
    # The CT studies (the SR one: see the tests above and below), by a date range.
    found = run_cli("find", "NODE", "-k", "StudyDate=20260110-20260111", "--jsonl",
                    catch_exceptions=False)
    assert found.exit_code == 0, found.stderr
    listing = tmp_path / "studies.jsonl"
    listing.write_text(found.stdout, encoding="utf-8")
    out = tmp_path / "all"
    result = run_cli("move", "NODE", "--from", listing, "-o", out, "--json",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = move_json(result)
    wanted = data.sop_uids(data.by_accession("RACC1") + data.by_accession("RACC2"))
    assert (summary["requests"], summary["completed"], summary["received"]) == (
        2, len(wanted), len(wanted))
    assert received_uids(out) == wanted

    accessions = tmp_path / "accessions.txt"
    accessions.write_text("RACC2\n\nRACC1\n", encoding="utf-8")
    out2 = tmp_path / "some"
    by_accession = run_cli("move", "NODE", "--from", accessions, "--from-key",
                           "AccessionNumber", "-o", out2, "--json", catch_exceptions=False)
    assert by_accession.exit_code == 0, by_accession.stderr
    assert move_json(by_accession)["requests"] == 2
    assert received_uids(out2) == wanted

    # find --csv | move --from -: the CSV's StudyInstanceUID column.
    as_csv = run_cli("find", "NODE", "-k", "PatientID=RP2", "--csv", catch_exceptions=False)
    out3 = tmp_path / "piped"
    piped = run_cli("move", "NODE", "--from", "-", "-o", out3, input=as_csv.stdout,
                    catch_exceptions=False)
    assert piped.exit_code == 0, piped.stderr
    assert received_uids(out3) == data.sop_uids(data.by_accession("RACC2"))


# ---------------------------------------------------------------------------------------------
# get: SOP classes outside the default lists


def sr_study(data: Data) -> Item:
    return next(i for i in data.items if i.sop_class == RRD_SR)


@pytest.mark.peer("orthanc")
def test_get_exact_classes_retrieves_a_class_outside_the_defaults(
        pacs: OrthancServer, config: Path, data: Data, tmp_path: Path) -> None:
    item = sr_study(data)
    out = tmp_path / "exact"
    result = run_cli("get", pacs.address, "--study", item.study_uid, "-o", out,
                     "--exact-classes", "--json", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = move_json(result)
    assert (summary["completed"], summary["failed"], summary["received"]) == (1, 0, 1)
    files = [p for p in out.rglob("*.dcm") if not p.name.startswith(".")]
    assert [str(dcmread(p).SOPClassUID) for p in files] == [RRD_SR]

    # Without it: the 31 default classes do not include it; Orthanc cannot send it (0xC000).
    out2 = tmp_path / "defaults"
    plain = run_cli("get", pacs.address, "--study", item.study_uid, "-o", out2, "--json")
    assert plain.exit_code == 6, plain.stderr
    (outcome,) = move_json(plain)["results"]
    assert (outcome["status"], outcome["failed"], outcome["received"]) == ("0xC000", 1, 0)
    assert received_uids(out2) == set()

    # --store-classes names it directly.
    out3 = tmp_path / "named"
    named = run_cli("get", pacs.address, "--study", item.study_uid, "-o", out3,
                    "--store-classes", RRD_SR, catch_exceptions=False)
    assert named.exit_code == 0, named.stderr
    assert received_uids(out3) == {item.sop_uid}


@pytest.mark.peer("orthanc")
def test_getscu_defaults_cannot_retrieve_it(pacs: OrthancServer, data: Data,
                                            tmp_path: Path) -> None:
    """The motivation: DCMTK getscu proposes 120 storage classes, not this one."""
    getscu = require_program(GETSCU, "dcmtk", "DCMTK getscu")
    out = tmp_path / "getscu"
    out.mkdir()
    done = subprocess.run([getscu, "-aec", pacs.aet, "-k", "QueryRetrieveLevel=STUDY", "-k",
                           f"StudyInstanceUID={sr_study(data).study_uid}", "-od", str(out),
                           LOOPBACK, str(pacs.dicom_port)],
                          capture_output=True, text=True, timeout=60, env=dcmtk_env())
    assert list(out.iterdir()) == [], done.stderr


@pytest.mark.peer("dcmtk")
def test_get_from_dcmqrscp(qr: DcmqrSCP, config: Path, data: Data, tmp_path: Path) -> None:
    """dcmqrscp's IMAGE-level answers carry no SOP Class UID (its index lacks it), so
    --exact-classes learns nothing there and the defaults are offered: --store-classes it is."""
    item = sr_study(data)
    out0 = tmp_path / "exact"
    exact = run_cli("get", qr.address, "--study", item.study_uid, "-o", out0,
                    "--exact-classes", "--json")
    assert exact.exit_code == 6, exact.stderr
    assert move_json(exact)["results"][0]["status"] == "0xA702"
    assert received_uids(out0) == set()

    out = tmp_path / "sr"
    result = run_cli("get", qr.address, "--study", item.study_uid, "-o", out,
                     "--store-classes", RRD_SR, "--json", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert move_json(result)["received"] == 1
    assert received_uids(out) == {item.sop_uid}

    out2 = tmp_path / "ct"
    ct = run_cli("get", qr.address, "--accession", "RACC1", "-o", out2, "--json",
                 catch_exceptions=False)
    assert ct.exit_code == 0, ct.stderr
    assert received_uids(out2) == data.sop_uids(data.by_accession("RACC1"))



