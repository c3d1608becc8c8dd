"""dcmtool serve's query/retrieve SCP with other peers as the SCU (issue #6 item 5).

DCMTK findscu on the Patient/Study Only model, movescu between two dcmtool archives (also
with failed sub-operations), pynetdicom's own findscu/getscu/movescu apps, Orthanc querying
and retrieving through its REST API, character sets (UTF-8, ISO 2022 Japanese, the
``utf8_answers`` option), C-CANCEL, ``case_insensitive_names`` and identifiers the SCP
cannot process. tests/cli/test_serve_qr.py covers the DCMTK matching types already.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.charset import convert_encodings
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from pydicom.valuerep import PersonName
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)
from support.archive import ServedArchive
from support.datasets import write_instance
from support.peers import OrthancServer, run_cli

FINDSCU = "/usr/bin/findscu"
MOVESCU = "/usr/bin/movescu"
STUDY_FIND = StudyRootQueryRetrieveInformationModelFind
PATIENT_FIND = PatientRootQueryRetrieveInformationModelFind

UTF8_NAME = "Wang^XiaoDong=王^小東"
JIS_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"
JIS_CHARSET = ["", "ISO 2022 IR 87"]
LATIN1_NAME = "Müller^Hans"


# ---------------------------------------------------------------------------------------------
# Data and helpers


@dataclass
class Loaded:
    """What ``_write_studies`` wrote, by study key (S1, S2, S3)."""

    study: dict[str, str] = field(default_factory=dict)  # key -> Study Instance UID
    series: dict[str, list[str]] = field(default_factory=dict)
    instances: dict[str, set[str]] = field(default_factory=dict)  # key -> SOP Instance UIDs
    files: dict[str, list[Path]] = field(default_factory=dict)


STUDIES: dict[str, dict[str, Any]] = {
    "S1": dict(PatientID="P1", PatientName="Doe^John", StudyDate="20260105",
               AccessionNumber="A1", StudyDescription="CT HEAD"),
    "S2": dict(PatientID="P1", PatientName="Doe^John", StudyDate="20260210",
               AccessionNumber="A2", StudyDescription="MR KNEE"),
    "S3": dict(PatientID="P2", PatientName="Roe^Jane", StudyDate="20260301",
               AccessionNumber="A3", StudyDescription="CT CHEST"),
}
SERIES_MODALITIES = {"S1": ["CT"], "S2": ["MR", "MR"], "S3": ["CT"]}  # two instances each


def _write_studies(folder: Path) -> Loaded:
    """Two patients, three studies, four series, eight instances, as files in ``folder``."""
    loaded = Loaded()
    for key, attributes in STUDIES.items():
        loaded.study[key] = generate_uid()
        loaded.series[key], loaded.instances[key], loaded.files[key] = [], set(), []
        for series_number, modality in enumerate(SERIES_MODALITIES[key], 1):
            series_uid = generate_uid()
            loaded.series[key].append(series_uid)
            for instance_number in (1, 2):
                path = folder / f"{key}-{series_number}-{instance_number}.dcm"
                ds = write_instance(path, StudyInstanceUID=loaded.study[key],
                                    SeriesInstanceUID=series_uid, Modality=modality,
                                    SeriesNumber=series_number,
                                    InstanceNumber=instance_number, **attributes)
                loaded.instances[key].add(str(ds.SOPInstanceUID))
                loaded.files[key].append(path)
    return loaded


def _store(address: str, path: Path) -> None:
    """``dcmtool store ADDRESS PATH`` in-process; it must store everything."""
    result = run_cli("store", address, path, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def _run(argv: list[str | bytes], cwd: Path | None = None, timeout: float = 60.0
         ) -> subprocess.CompletedProcess[str]:
    """Run a peer program (DCMTK with TCP_NODELAY=1); output decoded leniently."""
    return subprocess.run(argv, capture_output=True, text=True, errors="replace", cwd=cwd,
                          timeout=timeout, stdin=subprocess.DEVNULL,
                          env={"TCP_NODELAY": "1", "PATH": "/usr/bin:/bin"})


def _findscu(ae_title: str, port: int, out: Path, *args: str | bytes) -> list[Dataset]:
    """DCMTK findscu against 127.0.0.1:port; the responses, read back from the files it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    done = _run([FINDSCU, "-aec", ae_title, *args, "-X", "-od", str(out), "127.0.0.1",
                 str(port)])
    assert done.returncode == 0, done.stdout + done.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def _final_move_response(output: str) -> dict[str, int]:
    """Sub-operation counts and status of the final C-MOVE response in ``movescu -d`` output."""
    assert "Received Final Move Response" in output, output[-3000:]
    final = output.rsplit("Received Final Move Response", 1)[1]
    counts = {name: int(value) for name, value in
              re.findall(r"(Remaining|Completed|Failed|Warning) Suboperations\s*:\s*(\d+)", final)}
    status = re.search(r"DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})", final)
    assert status, final
    counts["Status"] = int(status.group(1), 16)
    return counts


def _scu(served: ServedArchive, *models: str, handlers: list[Any] | None = None) -> Any:
    """An association from an in-process pynetdicom AE to ``served``."""
    ae = AE(ae_title="PYNETDICOM")
    for model in models or (STUDY_FIND,):
        ae.add_requested_context(model, ImplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title,
                         evt_handlers=handlers or [])
    assert assoc.is_established
    return assoc


@dataclass
class FindResult:
    matches: list[Dataset]  # pending identifiers, decoded by pydicom
    final: Dataset  # the final response's status (Status, ErrorComment...)
    raw: list[bytes]  # identifiers as they came over the wire


def _find(served: ServedArchive, identifier: Dataset, model: str = STUDY_FIND) -> FindResult:
    """One C-FIND from an in-process pynetdicom SCU."""
    raw: list[bytes] = []

    def keep_raw(event: Any) -> None:
        if type(event.message).__name__ == "C_FIND_RSP" and event.message.data_set:
            raw.append(event.message.data_set.getvalue())

    assoc = _scu(served, model, handlers=[(evt.EVT_DIMSE_RECV, keep_raw)])
    matches: list[Dataset] = []
    final = Dataset()
    try:
        for status, response in assoc.send_c_find(identifier, model):
            assert "Status" in status, "no response from the SCP"
            if status.Status in (0xFF00, 0xFF01):
                matches.append(response)
            else:
                final = status
    finally:
        assoc.release()
    assert "Status" in final, "no final response"
    return FindResult(matches, final, [r for r in raw if r])


def _query(level: str, **keys: Any) -> Dataset:
    identifier = Dataset()
    for keyword, value in keys.items():
        setattr(identifier, keyword, value)
    identifier.QueryRetrieveLevel = level
    return identifier


@pytest.fixture
def loaded_archive(serve_archive: Callable[..., ServedArchive], tmp_path: Path
                   ) -> tuple[ServedArchive, Loaded]:
    served = serve_archive()
    loaded = _write_studies(tmp_path / "load")
    _store(served.address, tmp_path / "load")
    return served, loaded


# ---------------------------------------------------------------------------------------------
# 1. DCMTK findscu, Patient/Study Only model


@pytest.mark.peer("dcmtk")
def test_findscu_patient_study_only_model(loaded_archive: tuple[ServedArchive, Loaded],
                                          tmp_path: Path) -> None:
    served, loaded = loaded_archive
    patients = _findscu(served.ae_title, served.port, tmp_path / "patients", "-O",
                        "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID",
                        "-k", "PatientName", "-k", "NumberOfPatientRelatedStudies",
                        "-k", "NumberOfPatientRelatedInstances")
    assert {(str(d.PatientID), str(d.PatientName), int(d.NumberOfPatientRelatedStudies),
             int(d.NumberOfPatientRelatedInstances)) for d in patients} == {
        ("P1", "Doe^John", 2, 6), ("P2", "Roe^Jane", 1, 2)}

    studies = _findscu(served.ae_title, served.port, tmp_path / "studies", "-O",
                       "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=P1",
                       "-k", "StudyInstanceUID", "-k", "AccessionNumber",
                       "-k", "ModalitiesInStudy", "-k", "NumberOfStudyRelatedSeries")
    assert {(str(d.AccessionNumber), str(d.StudyInstanceUID), d.ModalitiesInStudy,
             int(d.NumberOfStudyRelatedSeries)) for d in studies} == {
        ("A1", loaded.study["S1"], "CT", 1), ("A2", loaded.study["S2"], "MR", 2)}
    assert all(str(d.PatientID) == "P1" for d in studies)

    # SERIES is not a level of the Patient/Study Only model: 0xA900.
    refused = _run([FINDSCU, "-v", "-aec", served.ae_title, "-O",
                    "-k", "QueryRetrieveLevel=SERIES", "-k", "PatientID=P1",
                    "-k", f"StudyInstanceUID={loaded.study['S2']}", "-k", "SeriesInstanceUID",
                    "127.0.0.1", str(served.port)])
    assert "Error: DataSetDoesNotMatchSOPClass" in refused.stdout + refused.stderr


# ---------------------------------------------------------------------------------------------
# 2. DCMTK movescu from one dcmtool serve to another


@pytest.mark.peer("dcmtk")
def test_movescu_between_two_serve_archives(serve_archive: Callable[..., ServedArchive],
                                            serve_process: Callable[..., Any],
                                            isolated_config: Path, tmp_path: Path) -> None:
    """A is a real ``dcmtool serve`` whose config names B as a node; B is in-process."""
    archive_b = serve_archive(ae_title="ARCHIVEB")
    isolated_config.write_text(f'[nodes.B]\nhost = "127.0.0.1"\nport = {archive_b.port}\n'
                               f'ae_title = "ARCHIVEB"\n', encoding="utf-8")
    archive_a = serve_process(ae_title="ARCHIVEA")
    loaded = _write_studies(tmp_path / "load")
    _store(archive_a.address, tmp_path / "load")

    done = _run([MOVESCU, "-d", "-aec", "ARCHIVEA", "-aem", "ARCHIVEB", "-S",
                 "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={loaded.study['S2']}",
                 "127.0.0.1", str(archive_a.port)])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    final = _final_move_response(done.stdout + done.stderr)
    assert final == {"Remaining": 0, "Completed": 4, "Failed": 0, "Warning": 0, "Status": 0}

    assert {str(dcmread(p).SOPInstanceUID) for p in archive_b.files()} == loaded.instances["S2"]
    found = _findscu("ARCHIVEB", archive_b.port, tmp_path / "b", "-S",
                     "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
                     "-k", "AccessionNumber", "-k", "NumberOfStudyRelatedInstances")
    assert [(str(d.StudyInstanceUID), str(d.AccessionNumber),
             int(d.NumberOfStudyRelatedInstances)) for d in found] == [
        (loaded.study["S2"], "A2", 4)]


@pytest.mark.peer("dcmtk")
def test_movescu_with_a_failed_sub_operation_warns(serve_archive: Callable[..., ServedArchive],
                                                   tmp_path: Path) -> None:
    """B refuses duplicates (0x0111) and already holds one instance: 3 sent, 1 failed."""
    from dcmtool.archive.storage import StorePolicy

    archive_b = serve_archive(ae_title="ARCHIVEB",
                              policy=StorePolicy(duplicates="reject", min_free_bytes=0))
    archive_a = serve_archive(destinations=(("ARCHIVEB", archive_b.host, archive_b.port),))
    loaded = _write_studies(tmp_path / "load")
    _store(archive_a.address, tmp_path / "load")
    held = loaded.files["S2"][0]
    _store(archive_b.address, held)
    held_uid = str(dcmread(held).SOPInstanceUID)

    done = _run([MOVESCU, "-d", "-aec", archive_a.ae_title, "-aem", "ARCHIVEB", "-S",
                 "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={loaded.study['S2']}",
                 "127.0.0.1", str(archive_a.port)])
    output = done.stdout + done.stderr
    assert "Warning: SubOperationsCompleteOneOrMoreFailures" in output, output[-3000:]
    final = _final_move_response(output)
    assert final == {"Remaining": 0, "Completed": 3, "Failed": 1, "Warning": 0,
                     "Status": 0xB000}
    # The final response names the instance that failed.
    assert held_uid in output.rsplit("Received Final Move Response", 1)[1]
    # B kept one copy of each.
    assert {str(dcmread(p).SOPInstanceUID) for p in archive_b.files()} == loaded.instances["S2"]
    assert len(archive_b.files()) == 4


@pytest.mark.peer("dcmtk")
def test_movescu_cancel_stops_the_sub_operations(serve_archive: Callable[..., ServedArchive],
                                                 pynetdicom_scp: Callable[..., Any],
                                                 tmp_path: Path) -> None:
    """DCMTK movescu --cancel 2 sends C-CANCEL after two pending responses: the move stops
    with 0xFE00 and counts that add up. The destination takes 10 ms an instance, so the
    60 instances would take longer than the cancel needs to arrive."""
    import threading

    from pynetdicom import evt

    never = threading.Event()

    def slow_store(event: Any) -> int:
        never.wait(0.01)  # a slow destination, not a wait for anything
        return 0x0000

    destination = pynetdicom_scp(ae_title="MOVEDEST", storage=True,
                                 handlers={evt.EVT_C_STORE: slow_store})
    served = serve_archive(destinations=(("MOVEDEST", destination.host, destination.port),))
    study = generate_uid()
    for index in range(60):
        write_instance(tmp_path / "load" / f"{index}.dcm", StudyInstanceUID=study,
                       rows=16, columns=16)
    _store(served.address, tmp_path / "load")
    done = _run([MOVESCU, "-d", "-aec", served.ae_title, "-aem", "MOVEDEST", "-S",
                 "--cancel", "2", "-k", "QueryRetrieveLevel=STUDY",
                 "-k", f"StudyInstanceUID={study}", "127.0.0.1", str(served.port)])
    output = done.stdout + done.stderr
    final = _final_move_response(output)
    assert final["Status"] == 0xFE00, output[-3000:]
    assert final["Remaining"] >= 1 and final["Failed"] == 0
    assert final["Remaining"] + final["Completed"] == 60


# ---------------------------------------------------------------------------------------------
# 3. pynetdicom's own apps (python -m pynetdicom findscu|getscu|movescu)


def _pynetdicom_app(app: str, served: ServedArchive, *args: str, cwd: Path
                    ) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pynetdicom", app, "-aec", served.ae_title, *args,
         served.host, str(served.port)],
        capture_output=True, text=True, cwd=cwd, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_pynetdicom_findscu_and_getscu(loaded_archive: tuple[ServedArchive, Loaded],
                                       tmp_path: Path) -> None:
    served, loaded = loaded_archive
    out = tmp_path / "find"
    _pynetdicom_app("findscu", served, "-S", "-w", "-k", "QueryRetrieveLevel=STUDY",
                    "-k", "PatientID=P1", "-k", "StudyInstanceUID", "-k", "AccessionNumber",
                    "-k", "StudyDate", cwd=out)
    found = [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]
    assert sorted((str(d.AccessionNumber), str(d.StudyInstanceUID), str(d.StudyDate))
                  for d in found) == [("A1", loaded.study["S1"], "20260105"),
                                      ("A2", loaded.study["S2"], "20260210")]

    got = tmp_path / "get"
    _pynetdicom_app("getscu", served, "-S", "-od", str(got), "-k", "QueryRetrieveLevel=STUDY",
                    "-k", f"StudyInstanceUID={loaded.study['S2']}", cwd=tmp_path)
    received = {str(dcmread(p).SOPInstanceUID): dcmread(p) for p in got.iterdir()}
    assert set(received) == loaded.instances["S2"]
    for path in loaded.files["S2"]:
        original = dcmread(path)
        copy = received[str(original.SOPInstanceUID)]
        assert copy.PixelData == original.PixelData
        assert str(copy.PatientName) == "Doe^John"


@pytest.mark.peer("dcmtk")
def test_pynetdicom_movescu_to_dcmtk_storescp(serve_archive: Callable[..., ServedArchive],
                                              dcmtk_storescp: Callable[..., Any],
                                              tmp_path: Path) -> None:
    scp = dcmtk_storescp()
    served = serve_archive(destinations=(("STORESCP", "127.0.0.1", scp.port),))
    loaded = _write_studies(tmp_path / "load")
    _store(served.address, tmp_path / "load")
    _pynetdicom_app("movescu", served, "-S", "-aem", "STORESCP",
                    "-k", "QueryRetrieveLevel=SERIES",
                    "-k", f"StudyInstanceUID={loaded.study['S2']}",
                    "-k", f"SeriesInstanceUID={loaded.series['S2'][1]}", cwd=tmp_path)
    received = [dcmread(p) for p in scp.received()]
    assert len(received) == 2
    assert {str(d.SeriesInstanceUID) for d in received} == {loaded.series["S2"][1]}
    assert {str(d.SOPInstanceUID) for d in received} < loaded.instances["S2"]


# ---------------------------------------------------------------------------------------------
# 4. Orthanc queries and retrieves through its REST API


@pytest.fixture(scope="module")
def orthanc_utf8(orthanc_module: Callable[..., OrthancServer]) -> OrthancServer:
    """One Orthanc for the module (stopping one takes ~3.5 s).

    ``DefaultEncoding: Utf8``: Orthanc queries in UTF-8 and keeps answers in it (with its
    default, Latin1, it transcodes answers to Latin-1 and drops every ideograph itself).
    """
    return orthanc_module(extra={"DefaultEncoding": "Utf8"})


@pytest.fixture
def orthanc_peer(orthanc_utf8: OrthancServer) -> OrthancServer:
    orthanc_utf8.rest.clear()
    return orthanc_utf8


def _register(peer: OrthancServer, served: ServedArchive) -> None:
    """Make serve Orthanc's modality "dcmtool" (kept in memory, as if from its config)."""
    peer.rest.put("/modalities/dcmtool", {"AET": served.ae_title, "Host": served.host,
                                          "Port": served.port})


def _orthanc_query(peer: OrthancServer, level: str, query: dict[str, str]
                   ) -> tuple[str, list[dict[str, Any]]]:
    """POST /modalities/dcmtool/query; (query id, answers as simplified tags)."""
    answer = peer.rest.post("/modalities/dcmtool/query", {"Level": level, "Query": query})
    return answer["ID"], peer.rest.get(f"/queries/{answer['ID']}/answers?expand&simplify")


@pytest.mark.peer("orthanc")
def test_orthanc_queries_and_retrieves_from_serve(serve_archive: Callable[..., ServedArchive],
                                                  orthanc_peer: OrthancServer,
                                                  tmp_path: Path) -> None:
    peer = orthanc_peer
    served = serve_archive(destinations=((peer.aet, "127.0.0.1", peer.dicom_port),))
    loaded = _write_studies(tmp_path / "load")
    _store(served.address, tmp_path / "load")
    _register(peer, served)

    query_id, answers = _orthanc_query(peer, "Study", {"PatientID": "P1", "AccessionNumber": "",
                                                       "StudyInstanceUID": ""})
    by_accession = {a["AccessionNumber"]: a for a in answers}
    assert set(by_accession) == {"A1", "A2"}
    assert by_accession["A2"]["StudyInstanceUID"] == loaded.study["S2"]
    index = [a["AccessionNumber"] for a in answers].index("A2")
    content = peer.rest.get(f"/queries/{query_id}/answers/{index}/content?simplify")
    assert content["PatientID"] == "P1"

    _, series = _orthanc_query(peer, "Series", {"StudyInstanceUID": loaded.study["S2"],
                                                "SeriesInstanceUID": "", "Modality": ""})
    assert sorted((s["SeriesInstanceUID"], s["Modality"]) for s in series) == sorted(
        (uid, "MR") for uid in loaded.series["S2"])

    assert peer.rest.instance_count() == 0
    peer.rest.post(f"/queries/{query_id}/answers/{index}/retrieve",
                   {"TargetAet": peer.aet, "Synchronous": True})
    assert peer.rest.sop_instance_uids() == loaded.instances["S2"]
    studies = [peer.rest.get(f"/studies/{s}") for s in peer.rest.get("/studies")]
    assert [s["MainDicomTags"]["StudyInstanceUID"] for s in studies] == [loaded.study["S2"]]


# ---------------------------------------------------------------------------------------------
# 5. Character sets


@pytest.fixture
def charset_archive(serve_archive: Callable[..., ServedArchive], tmp_path_factory: Any
                    ) -> Callable[..., ServedArchive]:
    """Factory: an archive holding one patient per character set (UTF-8, ISO 2022 Japanese,
    Latin-1), each stored through C-STORE with its name encoded by pydicom."""

    def start(**options: Any) -> ServedArchive:
        served = serve_archive(**options)
        folder = tmp_path_factory.mktemp("charsets")
        for pid, name, charset in (("U8", UTF8_NAME, "ISO_IR 192"),
                                   ("JP", JIS_NAME, JIS_CHARSET),
                                   ("L1", LATIN1_NAME, "ISO_IR 100")):
            write_instance(folder / f"{pid}.dcm", PatientID=pid, PatientName=name,
                           SpecificCharacterSet=charset)
        _store(served.address, folder)
        return served

    return start


def _charset(ds: Dataset) -> list[str]:
    value = ds.SpecificCharacterSet
    return [value] if isinstance(value, str) else list(value)


@pytest.mark.peer("dcmtk")
@pytest.mark.parametrize("charset,name,pid", [
    ("ISO_IR 192", UTF8_NAME, "U8"),
    ("\\ISO 2022 IR 87", JIS_NAME, "JP"),
], ids=["utf8", "iso2022-ir87"])
def test_findscu_matches_and_returns_names_in_their_character_set(
        charset_archive: Callable[..., ServedArchive], tmp_path: Path, charset: str, name: str,
        pid: str) -> None:
    served = charset_archive()
    encoded = PersonName(name).encode(convert_encodings(charset.split("\\")))
    found = _findscu(served.ae_title, served.port, tmp_path / "rsp", "-S",
                     "-k", "QueryRetrieveLevel=STUDY", "-k", f"(0008,0005)={charset}",
                     "-k", b"PatientName=" + encoded, "-k", "PatientID")
    assert [str(d.PatientID) for d in found] == [pid]
    assert str(found[0].PatientName) == name  # decoded by pydicom with the response's charset
    assert "\\".join(_charset(found[0])) == charset  # the stored character set


@pytest.mark.parametrize("charset,name,pid", [
    ("ISO_IR 192", JIS_NAME, "JP"),          # UTF-8 query, ISO 2022 stored
    (JIS_CHARSET, JIS_NAME, "JP"),           # ISO 2022 query
    (JIS_CHARSET, "Yamada^Tarou=山田*", "JP"),  # wildcard within the ideographic group
    ("ISO_IR 192", "*=王^小東", "U8"),
    ("ISO_IR 192", LATIN1_NAME, "L1"),       # UTF-8 query, Latin-1 stored
    ("ISO_IR 100", LATIN1_NAME, "L1"),
], ids=["utf8-jis", "jis-jis", "jis-wildcard", "utf8-wildcard", "utf8-latin1", "latin1"])
def test_pynetdicom_find_in_other_character_sets(charset_archive: Callable[..., ServedArchive],
                                                 charset: Any, name: str, pid: str) -> None:
    served = charset_archive()
    stored_charset = {"U8": ["ISO_IR 192"], "JP": JIS_CHARSET, "L1": ["ISO_IR 100"]}[pid]
    original = {"U8": UTF8_NAME, "JP": JIS_NAME, "L1": LATIN1_NAME}[pid]
    result = _find(served, _query("STUDY", SpecificCharacterSet=charset, PatientName=name,
                                  PatientID=""))
    assert result.final.Status == 0x0000
    matches = result.matches
    assert [str(d.PatientID) for d in matches] == [pid]
    assert _charset(matches[0]) == stored_charset
    assert str(matches[0].PatientName) == original


def test_utf8_answers_convert_every_name_to_utf8(charset_archive: Callable[..., ServedArchive]
                                                 ) -> None:
    served = charset_archive(utf8_answers=True)
    result = _find(served, _query("PATIENT", PatientName="*", PatientID=""), PATIENT_FIND)
    assert result.final.Status == 0x0000
    expected = {"U8": UTF8_NAME, "JP": JIS_NAME, "L1": LATIN1_NAME}
    assert sorted(str(d.PatientID) for d in result.matches) == sorted(expected)
    for response, raw in zip(result.matches, result.raw, strict=True):
        assert _charset(response) == ["ISO_IR 192"]
        name = expected[str(response.PatientID)]
        assert str(response.PatientName) == name
        # On the wire: the name in UTF-8, no ISO 2022 escape sequences.
        assert name.encode("utf-8") in raw and b"\x1b" not in raw


@pytest.mark.peer("orthanc")
def test_orthanc_lists_every_character_set_with_utf8_answers(
        charset_archive: Callable[..., ServedArchive], orthanc_peer: OrthancServer) -> None:
    """Orthanc 1.10.1 refuses a whole answer set holding "\\ISO 2022 IR 87" (HTTP 400,
    "Unsupported value for the SpecificCharacterSet"); with utf8_answers it gets UTF-8 only
    and shows every name right."""
    from support.orthanc import OrthancError

    peer = orthanc_peer
    _register(peer, charset_archive())
    with pytest.raises(OrthancError, match="ISO 2022 IR 87"):
        _orthanc_query(peer, "Patient", {"PatientName": "*", "PatientID": ""})
    _, answers = _orthanc_query(peer, "Patient", {"PatientName": "Wang*", "PatientID": ""})
    assert [(a["PatientID"], a["PatientName"]) for a in answers] == [("U8", UTF8_NAME)]

    _register(peer, charset_archive(utf8_answers=True))
    _, answers = _orthanc_query(peer, "Patient", {"PatientName": "*", "PatientID": ""})
    assert {a["PatientID"]: a["PatientName"] for a in answers} == {
        "U8": UTF8_NAME, "JP": JIS_NAME, "L1": LATIN1_NAME}
    assert {a["SpecificCharacterSet"] for a in answers} == {"ISO_IR 192"}
    _, answers = _orthanc_query(peer, "Patient", {"PatientName": JIS_NAME, "PatientID": ""})
    assert [a["PatientID"] for a in answers] == ["JP"]


def test_a_study_answer_keeps_the_patient_name_of_another_character_set(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    """One patient, two studies: the first stored in UTF-8 with an ideographic name, the
    second in Latin-1 (its name has the alphabetic group only)."""
    served = serve_archive()
    write_instance(tmp_path / "1" / "1.dcm", PatientID="W", PatientName=UTF8_NAME,
                   SpecificCharacterSet="ISO_IR 192", AccessionNumber="X1")
    _store(served.address, tmp_path / "1")
    write_instance(tmp_path / "2" / "2.dcm", PatientID="W", PatientName="Wang^XiaoDong",
                   SpecificCharacterSet="ISO_IR 100", AccessionNumber="X2",
                   StudyDescription="Café")
    _store(served.address, tmp_path / "2")
    result = _find(served, _query("STUDY", PatientID="W", PatientName="", AccessionNumber="",
                                  StudyDescription=""))
    by_accession = {str(d.AccessionNumber): d for d in result.matches}
    assert set(by_accession) == {"X1", "X2"}
    assert str(by_accession["X2"].StudyDescription) == "Café"
    assert str(by_accession["X1"].PatientName) == UTF8_NAME
    # The patient row was written in ISO_IR 192, the second study in ISO_IR 100: an answer
    # mixing rows of different character sets is sent in UTF-8, which holds every value.
    assert str(by_accession["X2"].PatientName) == UTF8_NAME


# ---------------------------------------------------------------------------------------------
# 6. C-CANCEL


def test_c_cancel_stops_a_find_with_fe00(serve_archive: Callable[..., ServedArchive],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """5,000 matching studies; the SCU sends C-CANCEL after the first pending response.

    The index is filled directly (no C-STORE needed to test C-FIND). Loopback buffers hold
    all 5,000 answers before pynetdicom's SCU has read the first, so the server is slowed
    (1 ms a match, server side) to give the C-CANCEL time to arrive: it must then stop long
    before the end, answer 0xFE00, and the association go on working.
    """
    import time

    from pydicom.uid import generate_uid

    from dcmtool.archive import query
    from dcmtool.archive.index import InstanceRecord

    original = query.matches

    def slow_matches(*args: Any, **kwargs: Any) -> Any:
        for match in original(*args, **kwargs):
            time.sleep(0.001)
            yield match

    monkeypatch.setattr(query, "matches", slow_matches)

    served = serve_archive()
    for number in range(5000):
        served.archive.index.add(InstanceRecord(
            values={"PatientID": "MANY", "StudyInstanceUID": generate_uid(),
                    "SeriesInstanceUID": generate_uid(), "SOPInstanceUID": generate_uid(),
                    "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7",
                    "AccessionNumber": f"N{number}"},
            path=f"none/{number}.dcm", size=0, transfer_syntax="1.2.840.10008.1.2.1",
            received_at="2026-11-23T00:00:00Z", source_ae=None))
    msg_id = 7
    assoc = _scu(served)
    try:
        context_id = assoc.accepted_contexts[0].context_id
        statuses: list[int] = []
        for status, _ in assoc.send_c_find(_query("STUDY", PatientID="MANY", AccessionNumber=""),
                                           STUDY_FIND, msg_id=msg_id):
            statuses.append(int(status.Status))
            if len(statuses) == 1:
                assoc.send_c_cancel(msg_id, context_id)
        assert statuses[-1] == 0xFE00, [hex(s) for s in statuses[-3:]]
        assert 1 <= statuses.count(0xFF00) < 5000
        assert assoc.send_c_echo().Status == 0x0000  # the association still works
    finally:
        assoc.release()


# ---------------------------------------------------------------------------------------------
# 7. case_insensitive_names


@pytest.mark.parametrize("insensitive,keys,expected", [
    (False, {"PatientName": "doe^john"}, []),
    (True, {"PatientName": "doe^john"}, ["Doe^John"]),
    (True, {"PatientName": "DOE*"}, ["Doe^John"]),
    (True, {"PatientName": "d?e^JOHN"}, ["Doe^John"]),
    (False, {"PatientName": "Doe^John"}, ["Doe^John"]),
    (True, {"StudyDescription": "ct head"}, []),  # names only: LO keys keep their case
], ids=["off", "on", "on-wildcard", "on-question-mark", "off-exact-case", "on-not-a-name"])
def test_case_insensitive_names(serve_archive: Callable[..., ServedArchive], tmp_path: Path,
                                insensitive: bool, keys: dict[str, str], expected: list[str]
                                ) -> None:
    served = serve_archive(case_insensitive_names=insensitive)
    write_instance(tmp_path / "load" / "1.dcm", PatientName="Doe^John", PatientID="P1",
                   StudyDescription="CT HEAD")
    write_instance(tmp_path / "load" / "2.dcm", PatientName="Roe^Jane", PatientID="P2",
                   StudyDescription="CT HEAD")
    _store(served.address, tmp_path / "load")
    result = _find(served, _query("STUDY", **{"PatientName": "", "PatientID": "P1", **keys}))
    assert result.final.Status == 0x0000
    assert [str(d.PatientName) for d in result.matches] == expected


# ---------------------------------------------------------------------------------------------
# 8. Identifiers the SCP cannot process


@pytest.mark.parametrize("level,comment", [
    ("FOO", "level FOO"),
    ("SERIES", "level SERIES"),  # valid, but not in the Patient/Study Only model below
], ids=["unknown-level", "level-not-in-model"])
def test_a_bad_level_gets_a900_with_an_error_comment(
        loaded_archive: tuple[ServedArchive, Loaded], level: str, comment: str) -> None:
    from pynetdicom.sop_class import PatientStudyOnlyQueryRetrieveInformationModelFind

    served, _ = loaded_archive
    model = STUDY_FIND if level == "FOO" else PatientStudyOnlyQueryRetrieveInformationModelFind
    result = _find(served, _query(level, PatientID="P1", StudyInstanceUID=""), model)
    assert result.matches == []
    assert result.final.Status == 0xA900
    assert comment in str(result.final.get("ErrorComment", ""))


def test_a_missing_level_gets_a900(loaded_archive: tuple[ServedArchive, Loaded]) -> None:
    served, _ = loaded_archive
    identifier = Dataset()
    identifier.PatientID = "P1"
    result = _find(served, identifier)
    assert result.final.Status == 0xA900
    assert "Query/Retrieve Level" in str(result.final.get("ErrorComment", ""))


MALFORMED = {
    # (0008,0052) says 10 bytes, 3 follow
    "truncated-value": b"\x08\x00\x52\x00\x0a\x00\x00\x00STU",
    # no element header parses: tag (ADDE,EFBE) with an absurd length
    "noise": b"\xde\xad\xbe\xef" * 3,
    # a valid level, then PatientName claiming almost 4 GiB: pydicom reads what is there
    # ("Doe"), which matches nobody
    "huge-length": b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY \x10\x00\x10\x00\xf0\xff\xff\xffDoe",
    # a sequence whose item header is garbage
    "broken-sequence": b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY "
                       b"\x08\x00\x11\x11\xff\xff\xff\xff\x12\x34\x56\x78\x08\x00\x00\x00",
}


@pytest.mark.filterwarnings("ignore:VR lookup failed:UserWarning")
@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_identifier_is_answered_and_the_server_carries_on(
        loaded_archive: tuple[ServedArchive, Loaded], monkeypatch: pytest.MonkeyPatch,
        raw: bytes) -> None:
    """The identifier's bytes are replaced after pynetdicom's SCU encoded it (implicit VR)."""
    import pynetdicom.association

    served, _ = loaded_archive
    monkeypatch.setattr(pynetdicom.association, "encode", lambda *args: raw)
    result = _find(served, _query("STUDY", PatientID="P1"))
    monkeypatch.undo()
    # A failure (0xA900 "identifier cannot be decoded" or "level ... missing"), or nothing.
    assert result.matches == [], f"0x{result.final.Status:04X}: {result.matches}"
    assert result.final.Status in (0x0000, 0xA900) or 0xC000 <= result.final.Status <= 0xCFFF
    # The server still answers, on a new association, an echo and a good query.
    assoc = _scu(served)
    try:
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()
    again = _find(served, _query("STUDY", PatientID="P1", AccessionNumber=""))
    assert sorted(str(d.AccessionNumber) for d in again.matches) == ["A1", "A2"]


@pytest.mark.parametrize("operation", ["get", "move"])
def test_a_retrieval_with_a_bad_level_is_refused(serve_archive: Callable[..., ServedArchive],
                                                 pynetdicom_scp: Callable[..., Any],
                                                 tmp_path: Path, operation: str) -> None:
    from pynetdicom import build_role
    from pynetdicom.sop_class import (
        CTImageStorage,
        StudyRootQueryRetrieveInformationModelGet,
        StudyRootQueryRetrieveInformationModelMove,
    )

    destination = pynetdicom_scp(ae_title="MOVEDEST", storage=True)
    served = serve_archive(destinations=(("MOVEDEST", destination.host, destination.port),))
    loaded = _write_studies(tmp_path / "load")
    _store(served.address, tmp_path / "load")
    received: list[Any] = []
    ae = AE(ae_title="PYNETDICOM")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title,
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE,
                                        lambda event: received.append(event) or 0x0000)])
    assert assoc.is_established
    identifier = _query("FOO", StudyInstanceUID=loaded.study["S1"])
    try:
        if operation == "get":
            responses = list(assoc.send_c_get(identifier,
                                              StudyRootQueryRetrieveInformationModelGet))
        else:
            responses = list(assoc.send_c_move(identifier, "MOVEDEST",
                                               StudyRootQueryRetrieveInformationModelMove))
    finally:
        assoc.release()
    assert received == [] and destination.stored == []
    final = responses[-1][0]
    # A retrieval whose identifier is refused (bad level, missing unique key) fails with
    # 0xA900 and a comment, as C-FIND does, never a successful retrieval of nothing.
    assert final.Status == 0xA900, (
        f"0x{final.Status:04X}")
