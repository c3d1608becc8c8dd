"""dcmtool serve answers C-FIND, C-MOVE, C-GET and worklist queries from real DCMTK clients."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from support.archive import ServedArchive
from support.datasets import write_instance
from support.peers import run_cli

FINDSCU = "/usr/bin/findscu"
MOVESCU = "/usr/bin/movescu"
GETSCU = "/usr/bin/getscu"

pytestmark = pytest.mark.peer("dcmtk")


def _load(served: ServedArchive, tmp_path: Path) -> dict[str, Any]:
    """Two patients, three studies, five series, ten instances; stored through C-STORE."""
    folder = tmp_path / "load"
    studies = {
        "S1": dict(PatientID="P1", PatientName="Doe^John", StudyDate="20260105",
                   AccessionNumber="A1", StudyDescription="CT HEAD"),
        "S2": dict(PatientID="P1", PatientName="Doe^John", StudyDate="20260210",
                   AccessionNumber="A2", StudyDescription="MR KNEE"),
        "S3": dict(PatientID="P2", PatientName="Müller^Hans", StudyDate="20260301",
                   AccessionNumber="A3", StudyDescription="CT CHEST",
                   SpecificCharacterSet="ISO_IR 100"),
    }
    uids: dict[str, Any] = {}
    n = 0
    for key, attributes in studies.items():
        study_uid = generate_uid()
        uids[key] = {"study": study_uid, "series": []}
        modalities = ["MR", "MR"] if key == "S2" else ["CT"]
        for series_number, modality in enumerate(modalities, 1):
            series_uid = generate_uid()
            uids[key]["series"].append(series_uid)
            for instance in range(1, 3):
                n += 1
                write_instance(folder / f"{n}.dcm", StudyInstanceUID=study_uid,
                               SeriesInstanceUID=series_uid, Modality=modality,
                               SeriesNumber=series_number, InstanceNumber=instance,
                               **attributes)
    result = run_cli("store", served.address, str(folder), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return uids


def _findscu(served: ServedArchive, *args: str) -> list[Any]:
    """Run DCMTK findscu, write responses as files, return them as data sets."""
    out = Path(args[-1])
    out.mkdir(parents=True, exist_ok=True)
    command = [FINDSCU, "-aec", served.ae_title, *args[:-1], "-X", "-od", str(out),
               served.host, str(served.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={"TCP_NODELAY": "1"})
    assert done.returncode == 0, done.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


@pytest.fixture
def loaded(serve_archive: Callable[..., ServedArchive], tmp_path: Path
           ) -> tuple[ServedArchive, dict[str, Any]]:
    served = serve_archive()
    return served, _load(served, tmp_path)


@pytest.mark.parametrize("key,expected", [
    ("PatientID=P1", {"A1", "A2"}),                          # single value
    ("PatientName=Doe*", {"A1", "A2"}),                       # wildcard
    ("PatientName=D?e^John", {"A1", "A2"}),                   # single-character wildcard
    ("StudyDate=20260201-20260331", {"A2", "A3"}),            # range
    ("StudyDate=-20260131", {"A1"}),                          # open range
    ("StudyDate=20260301-", {"A3"}),                          # open range
    ("AccessionNumber=", {"A1", "A2", "A3"}),                 # universal
    ("ModalitiesInStudy=", {"A1", "A2", "A3"}),               # return key only
])
def test_study_root_matching_types(loaded: tuple[ServedArchive, dict[str, Any]],
                                   tmp_path: Path, key: str, expected: set[str]) -> None:
    served, _ = loaded
    found = _findscu(served, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", key,
                     "-k", "AccessionNumber", str(tmp_path / "rsp"))
    assert {str(ds.AccessionNumber) for ds in found} == expected


def test_uid_list_and_return_keys(loaded: tuple[ServedArchive, dict[str, Any]],
                                  tmp_path: Path) -> None:
    served, uids = loaded
    wanted = f"{uids['S1']['study']}\\{uids['S3']['study']}"
    found = _findscu(served, "-S", "-k", "QueryRetrieveLevel=STUDY",
                     "-k", f"StudyInstanceUID={wanted}", "-k", "NumberOfStudyRelatedInstances",
                     "-k", "NumberOfStudyRelatedSeries", "-k", "ModalitiesInStudy",
                     "-k", "PatientName", str(tmp_path / "rsp"))
    by_uid = {str(ds.StudyInstanceUID): ds for ds in found}
    assert set(by_uid) == {uids["S1"]["study"], uids["S3"]["study"]}
    s1 = by_uid[uids["S1"]["study"]]
    assert int(s1.NumberOfStudyRelatedInstances) == 2
    assert int(s1.NumberOfStudyRelatedSeries) == 1
    assert s1.ModalitiesInStudy == "CT"
    s3 = by_uid[uids["S3"]["study"]]
    assert str(s3.PatientName) == "Müller^Hans"  # ISO_IR 100 decoded as stored
    # Only what was asked comes back.
    assert "StudyDescription" not in s1 and "AccessionNumber" not in s1


def test_patient_root_levels(loaded: tuple[ServedArchive, dict[str, Any]],
                             tmp_path: Path) -> None:
    served, uids = loaded
    patients = _findscu(served, "-P", "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID",
                        "-k", "NumberOfPatientRelatedStudies", str(tmp_path / "p"))
    assert {(str(d.PatientID), int(d.NumberOfPatientRelatedStudies)) for d in patients} == {
        ("P1", 2), ("P2", 1)}
    series = _findscu(served, "-P", "-k", "QueryRetrieveLevel=SERIES", "-k", "PatientID=P1",
                      "-k", f"StudyInstanceUID={uids['S2']['study']}", "-k", "SeriesInstanceUID",
                      "-k", "Modality", "-k", "NumberOfSeriesRelatedInstances",
                      str(tmp_path / "se"))
    assert {str(d.SeriesInstanceUID) for d in series} == set(uids["S2"]["series"])
    assert {int(d.NumberOfSeriesRelatedInstances) for d in series} == {2}
    images = _findscu(served, "-S", "-k", "QueryRetrieveLevel=IMAGE",
                      "-k", f"StudyInstanceUID={uids['S1']['study']}",
                      "-k", f"SeriesInstanceUID={uids['S1']['series'][0]}",
                      "-k", "SOPInstanceUID", "-k", "InstanceNumber", str(tmp_path / "im"))
    assert sorted(int(d.InstanceNumber) for d in images) == [1, 2]


def test_a_level_the_model_does_not_have_is_refused(loaded: tuple[ServedArchive, dict[str, Any]],
                                                   tmp_path: Path) -> None:
    served, _ = loaded
    command = [FINDSCU, "-v", "-aec", served.ae_title, "-S", "-k", "QueryRetrieveLevel=PATIENT",
               "-k", "PatientID", served.host, str(served.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    # DCMTK's name for 0xA900 (Identifier does not match SOP Class)
    assert "Error: DataSetDoesNotMatchSOPClass" in done.stdout + done.stderr


def test_max_results_stops_with_success(serve_archive: Callable[..., ServedArchive],
                                        tmp_path: Path) -> None:
    served = serve_archive(max_results=2)
    _load(served, tmp_path)
    found = _findscu(served, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
                     str(tmp_path / "rsp"))
    assert len(found) == 2


def test_movescu_to_dcmtk_storescp(serve_archive: Callable[..., ServedArchive],
                                   dcmtk_storescp: Callable[..., Any], tmp_path: Path) -> None:
    scp = dcmtk_storescp()
    served = serve_archive(destinations=(("STORESCP", "127.0.0.1", scp.port),))
    uids = _load(served, tmp_path)
    command = [MOVESCU, "-aec", served.ae_title, "-aem", "STORESCP", "-S",
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uids['S2']['study']}",
               served.host, str(served.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={"TCP_NODELAY": "1"})
    assert done.returncode == 0, done.stderr
    received = [dcmread(p) for p in scp.output_dir.iterdir()]
    assert len(received) == 4
    assert {str(d.StudyInstanceUID) for d in received} == {uids["S2"]["study"]}


def test_move_to_an_unknown_destination_is_a801(loaded: tuple[ServedArchive, dict[str, Any]]
                                                 ) -> None:
    served, uids = loaded
    command = [MOVESCU, "-v", "-aec", served.ae_title, "-aem", "NOBODY", "-S",
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uids['S1']['study']}",
               served.host, str(served.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert "Refused: MoveDestinationUnknown" in done.stdout + done.stderr  # 0xA801


def test_move_converts_for_a_destination_that_refuses_the_stored_syntax(
        serve_archive: Callable[..., ServedArchive], dcmtk_storescp: Callable[..., Any],
        tmp_path: Path) -> None:
    """A JPEG-LS study goes to a storescp that accepts only uncompressed syntaxes."""
    scp = dcmtk_storescp()
    served = serve_archive(destinations=(("STORESCP", "127.0.0.1", scp.port),))
    folder = tmp_path / "jls"
    study = generate_uid()
    for index in range(3):
        write_instance(folder / f"{index}.dcm", StudyInstanceUID=study, rows=32, columns=32)
    result = run_cli("store", served.address, str(folder), "--ts", "jpeg-ls",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    command = [MOVESCU, "-aec", served.ae_title, "-aem", "STORESCP", "-S",
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
               served.host, str(served.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    received = {str(dcmread(p).SOPInstanceUID): dcmread(p) for p in scp.output_dir.iterdir()}
    assert len(received) == 3
    for path in folder.iterdir():
        original = dcmread(path)
        copy = received[str(original.SOPInstanceUID)]
        assert not copy.file_meta.TransferSyntaxUID.is_compressed
        assert (copy.pixel_array == original.pixel_array).all()


def test_getscu_retrieves_a_series(loaded: tuple[ServedArchive, dict[str, Any]],
                                   tmp_path: Path) -> None:
    served, uids = loaded
    out = tmp_path / "get"
    out.mkdir()
    command = [GETSCU, "-aec", served.ae_title, "-S", "-od", str(out),
               "-k", "QueryRetrieveLevel=SERIES",
               "-k", f"StudyInstanceUID={uids['S2']['study']}",
               "-k", f"SeriesInstanceUID={uids['S2']['series'][1]}",
               served.host, str(served.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={"TCP_NODELAY": "1"})
    assert done.returncode == 0, done.stderr
    received = [dcmread(p) for p in out.iterdir()]
    assert len(received) == 2
    assert {str(d.SeriesInstanceUID) for d in received} == {uids["S2"]["series"][1]}


def test_worklist_answers_findscu_w(serve_archive: Callable[..., ServedArchive],
                                    tmp_path: Path) -> None:
    from pydicom.dataset import Dataset

    root = tmp_path / "archive"
    worklist = root / "worklist"
    worklist.mkdir(parents=True)
    for index, modality in enumerate(["CT", "MR"]):
        item = Dataset()
        item.SpecificCharacterSet = "ISO_IR 100"
        item.PatientName = f"Patient^{modality}"
        item.PatientID = f"WL{index}"
        item.AccessionNumber = f"ACC{index}"
        item.StudyInstanceUID = generate_uid()
        item.RequestedProcedureID = f"RP{index}"
        step = Dataset()
        step.Modality = modality
        step.ScheduledStationAETitle = "SCANNER1"
        step.ScheduledProcedureStepStartDate = "20261123"
        step.ScheduledProcedureStepStartTime = "090000"
        step.ScheduledProcedureStepID = f"SPS{index}"
        item.ScheduledProcedureStepSequence = [step]
        item.save_as(worklist / f"item{index}.wl", implicit_vr=False, little_endian=True)
    served = serve_archive(root=root)
    out = tmp_path / "wl"
    out.mkdir()
    command = [FINDSCU, "-W", "-aec", served.ae_title, "-X", "-od", str(out),
               "-k", "ScheduledProcedureStepSequence[0].Modality=MR",
               "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate="
                     "20261101-20261130",
               "-k", "PatientName", "-k", "AccessionNumber",
               served.host, str(served.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = [dcmread(p) for p in out.glob("rsp*.dcm")]
    assert [str(d.AccessionNumber) for d in found] == ["ACC1"]
    assert str(found[0].PatientName) == "Patient^MR"


def test_a_move_whose_requester_aborts_still_finishes(
        serve_archive: Callable[..., ServedArchive], dcmtk_storescp: Callable[..., Any],
        tmp_path: Path) -> None:
    """Seed 004: if the requesting association drops, the sub-operations finish."""
    import time

    from pynetdicom import AE

    scp = dcmtk_storescp()
    served = serve_archive(destinations=(("STORESCP", "127.0.0.1", scp.port),))
    folder = tmp_path / "many"
    study = generate_uid()
    for index in range(40):
        write_instance(folder / f"{index}.dcm", StudyInstanceUID=study, rows=64, columns=64)
    assert run_cli("store", served.address, str(folder)).exit_code == 0
    ae = AE(ae_title="LEAVER")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.2.2.2")
    assoc = ae.associate(served.host, served.port, ae_title=served.ae_title)
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study
    for status, _ in assoc.send_c_move(identifier, "STORESCP",
                                       "1.2.840.10008.5.1.4.1.2.2.2"):
        if status and status.Status == 0xFF00:
            assoc.abort()  # gone after the first pending response
            break
    audit = served.root / "audit.jsonl"

    def finished() -> bool:
        return '"move-finished"' in audit.read_text(encoding="utf-8")

    deadline = time.monotonic() + 30
    while not finished() and time.monotonic() < deadline:
        time.sleep(0.1)  # bounded wait: the rest goes out on an association of the server's
    assert finished()
    assert len(list(scp.output_dir.iterdir())) == 40


def test_getscu_with_a_small_pdu_gets_large_instances_intact(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    """C-GET sub-operations are framed to the requester's maximum PDU, not ours, and never
    interleave with the pending C-GET responses on the same association."""
    import numpy as np

    served = serve_archive()
    study = generate_uid()
    rng = np.random.default_rng(9)
    pixels = {}
    for index in range(6):
        path = tmp_path / "in" / f"{index}.dcm"
        ds = write_instance(path, rows=256, columns=256, StudyInstanceUID=study)
        ds.PixelData = rng.integers(0, 4096, (256, 256), np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        pixels[str(ds.SOPInstanceUID)] = ds.PixelData
    assert run_cli("store", served.address, str(tmp_path / "in")).exit_code == 0
    out = tmp_path / "got"
    out.mkdir()
    command = [GETSCU, "-aec", served.ae_title, "--max-pdu", "16384", "-S", "-od", str(out),
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
               served.host, str(served.port)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60,
                          env={"TCP_NODELAY": "1"})
    assert done.returncode == 0, done.stderr
    assert "E:" not in done.stderr, done.stderr
    received = {str(dcmread(p).SOPInstanceUID): dcmread(p).PixelData for p in out.iterdir()}
    assert received == pixels
