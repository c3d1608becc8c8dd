"""dcmtool find, mwl, move and get against dcmtool serve (real associations on loopback)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from support.archive import ServedArchive, write_site_config
from support.datasets import write_instance
from support.peers import free_port, run_cli


@pytest.fixture
def setup(serve_archive: Callable[..., ServedArchive], tmp_path: Path
          ) -> tuple[ServedArchive, dict[str, str], dict[str, Any]]:
    """An archive with two studies, a config whose [local] AE it can move to."""
    local_port = free_port()
    served = serve_archive(destinations=(("DCMTOOL", "127.0.0.1", local_port),))
    env = write_site_config(tmp_path / "config.toml", served, local_port)
    studies: dict[str, Any] = {}
    folder = tmp_path / "load"
    for index, (patient, name, accession) in enumerate(
            [("P1", "Doe^John", "ACC1"), ("P2", "Müller^Hans", "ACC2")]):
        study = generate_uid()
        series = generate_uid()
        studies[accession] = {"study": study, "series": series, "files": []}
        for number in range(1, 4):
            path = folder / f"{index}-{number}.dcm"
            write_instance(path, StudyInstanceUID=study, SeriesInstanceUID=series,
                           PatientID=patient, PatientName=name, AccessionNumber=accession,
                           SpecificCharacterSet="ISO_IR 100", InstanceNumber=number)
            studies[accession]["files"].append(path)
    result = run_cli("store", "ARCHIVE", str(folder), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return served, env, studies


def test_find_outputs_parse_back(setup: tuple[ServedArchive, dict[str, str], dict[str, Any]]
                                 ) -> None:
    _, env, studies = setup
    as_json = run_cli("find", "ARCHIVE", "--json", env=env, catch_exceptions=False)
    assert as_json.exit_code == 0, as_json.stderr
    objects = json.loads(as_json.stdout)
    by_accession = {o["00080050"]["Value"][0]: o for o in objects}
    assert set(by_accession) == {"ACC1", "ACC2"}
    assert by_accession["ACC2"]["00100010"]["Value"][0]["Alphabetic"] == "Müller^Hans"
    assert by_accession["ACC1"]["00201208"]["Value"][0] == 3  # NumberOfStudyRelatedInstances

    lines = run_cli("find", "ARCHIVE", "--jsonl", "-k", "PatientID=P1", env=env).stdout
    rows = [json.loads(line) for line in lines.splitlines()]
    assert [r["0020000D"]["Value"][0] for r in rows] == [studies["ACC1"]["study"]]

    table = run_cli("find", "ARCHIVE", "--csv", "-k", "PatientName=M*", env=env).stdout
    parsed = list(csv.DictReader(io.StringIO(table)))
    assert [(r["PatientName"], r["AccessionNumber"]) for r in parsed] == [("Müller^Hans",
                                                                            "ACC2")]
    assert "StudyInstanceUID" in parsed[0] and "ModalitiesInStudy" in parsed[0]

    plain = run_cli("find", "ARCHIVE", "-L", "SERIES", "-k",
                    f"StudyInstanceUID={studies['ACC1']['study']}", env=env).stdout
    assert studies["ACC1"]["series"] in plain and "NumberOfSeriesRelatedInstances" in plain


def test_find_limit_cancels_and_succeeds(
        setup: tuple[ServedArchive, dict[str, str], dict[str, Any]]) -> None:
    _, env, _ = setup
    result = run_cli("find", "ARCHIVE", "--limit", "1", "--jsonl", "-L", "IMAGE", env=env)
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1


def test_find_keys_by_tag_and_only_the_asked(
        setup: tuple[ServedArchive, dict[str, str], dict[str, Any]]) -> None:
    _, env, _ = setup
    result = run_cli("find", "ARCHIVE", "--no-defaults", "--csv", "-k", "(0010,0020)=P2",
                     "-k", "AccessionNumber", env=env)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows == [{"PatientID": "P2", "AccessionNumber": "ACC2",
                     "StudyInstanceUID": rows[0]["StudyInstanceUID"]}]


@pytest.mark.parametrize("args,message", [
    (["-k", "NotAKeyword=1"], "NotAKeyword is not a DICOM keyword"),
    (["-k", "Patient Name=1"], "expected Keyword=Value"),
    (["-L", "FOO"], "--level FOO"),
    (["-P", "-S"], "choose one of -P, -S and -O"),
    (["--json", "--csv"], "choose one of --json, --jsonl and --csv"),
])
def test_find_usage_errors(setup: tuple[ServedArchive, dict[str, str], dict[str, Any]],
                           args: list[str], message: str) -> None:
    _, env, _ = setup
    result = run_cli("find", "ARCHIVE", *args, env=env)
    assert result.exit_code == 2
    assert message in result.stderr


def test_find_failure_status_is_exit_6(
        setup: tuple[ServedArchive, dict[str, str], dict[str, Any]]) -> None:
    _, env, _ = setup
    result = run_cli("find", "ARCHIVE", "-S", "-L", "PATIENT", env=env)  # no such level
    assert result.exit_code == 6
    assert "0xA900" in result.stderr


def test_find_unreachable_peer_is_exit_3(closed_port: int) -> None:
    result = run_cli("find", f"ANY@127.0.0.1:{closed_port}")
    assert result.exit_code == 3
    assert "refused" in result.stderr


def test_move_to_ourselves(setup: tuple[ServedArchive, dict[str, str], dict[str, Any]],
                           tmp_path: Path) -> None:
    _, env, studies = setup
    out = tmp_path / "in"
    result = run_cli("move", "ARCHIVE", "--study", studies["ACC1"]["study"], "-o", out,
                     "--json", env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["completed"], summary["failed"], summary["received"]) == (3, 0, 3)
    received = {str(dcmread(p).SOPInstanceUID) for p in out.rglob("*.dcm")}
    assert received == {str(dcmread(p).SOPInstanceUID) for p in studies["ACC1"]["files"]}


def test_move_by_accession_resolves_with_find(
        setup: tuple[ServedArchive, dict[str, str], dict[str, Any]], tmp_path: Path) -> None:
    _, env, _ = setup
    out = tmp_path / "in"
    result = run_cli("move", "ARCHIVE", "--accession", "ACC2", "-o", out, env=env,
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert "3 completed, 0 failed" in result.stdout
    assert len(list(out.rglob("*.dcm"))) == 3


def test_unknown_destination_explains_what_to_register(
        setup: tuple[ServedArchive, dict[str, str], dict[str, Any]]) -> None:
    _, env, studies = setup
    result = run_cli("move", "ARCHIVE", "--study", studies["ACC1"]["study"], "--dest",
                     "NOBODY", env=env)
    assert result.exit_code == 6
    assert "does not know the move destination NOBODY (0xA801)" in result.stderr
    assert "register NOBODY on ARCHIVE" in result.stderr


def test_find_to_move_pipeline_and_plain_lists(
        setup: tuple[ServedArchive, dict[str, str], dict[str, Any]], tmp_path: Path) -> None:
    _, env, _ = setup
    found = run_cli("find", "ARCHIVE", "--jsonl", env=env, catch_exceptions=False)
    listing = tmp_path / "found.jsonl"
    listing.write_text(found.stdout, encoding="utf-8")
    out = tmp_path / "all"
    result = run_cli("move", "ARCHIVE", "--from", listing, "-o", out, env=env,
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("2 request(s): 6 completed")
    assert len(list(out.rglob("*.dcm"))) == 6

    accessions = tmp_path / "acc.txt"
    accessions.write_text("ACC1\n\nACC2\n", encoding="utf-8")
    out2 = tmp_path / "again"
    result = run_cli("get", "ARCHIVE", "--from", accessions, "--from-key", "AccessionNumber",
                     "-o", out2, env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert len(list(out2.rglob("*.dcm"))) == 6


def test_get_a_series_and_exact_classes(
        setup: tuple[ServedArchive, dict[str, str], dict[str, Any]], tmp_path: Path) -> None:
    _, env, studies = setup
    out = tmp_path / "get"
    result = run_cli("get", "ARCHIVE", "--series", studies["ACC2"]["series"], "-o", out,
                     "--exact-classes", "--json", env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["received"] == 3
    pixels = {str(dcmread(p).SOPInstanceUID): dcmread(p).PixelData for p in out.rglob("*.dcm")}
    for path in studies["ACC2"]["files"]:
        original = dcmread(path)
        assert pixels[str(original.SOPInstanceUID)] == original.PixelData


def test_get_without_a_matching_class_fails_the_sub_operations(
        setup: tuple[ServedArchive, dict[str, str], dict[str, Any]], tmp_path: Path) -> None:
    _, env, studies = setup
    result = run_cli("get", "ARCHIVE", "--study", studies["ACC1"]["study"], "-o",
                     tmp_path / "none", "--store-classes", "1.2.840.10008.5.1.4.1.1.4",
                     env=env)  # MR only; the study is CT
    assert result.exit_code == 6, result.stdout + result.stderr
    assert "0xA702" in result.stderr


def test_mwl_shortcuts(serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    root = tmp_path / "archive"
    (root / "worklist").mkdir(parents=True)
    for index, (modality, date) in enumerate([("CT", "20261123"), ("MR", "20261124")]):
        item = Dataset()
        item.PatientName = f"Patient^{index}"
        item.PatientID = f"WL{index}"
        item.AccessionNumber = f"W{index}"
        item.StudyInstanceUID = generate_uid()
        item.RequestedProcedureID = f"RP{index}"
        step = Dataset()
        step.Modality = modality
        step.ScheduledStationAETitle = "CT01"
        step.ScheduledProcedureStepStartDate = date
        step.ScheduledProcedureStepStartTime = "080000"
        step.ScheduledProcedureStepID = f"S{index}"
        item.ScheduledProcedureStepSequence = [step]
        item.save_as(root / "worklist" / f"{index}.wl", implicit_vr=False, little_endian=True)
    served = serve_archive(root=root)
    result = run_cli("mwl", served.address, "--modality", "MR", "--date",
                     "20261101-20261130", "--csv", catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["AccessionNumber"] for r in rows] == ["W1"]
    assert rows[0]["ScheduledProcedureStepSequence[0].Modality"] == "MR"
    none = run_cli("mwl", served.address, "--station-aet", "OTHER", "--jsonl")
    assert none.exit_code == 0 and none.stdout == ""
    bad = run_cli("mwl", served.address, "--date", "someday")
    assert bad.exit_code == 2 and "--date: 'someday' is not a date" in bad.stderr


def test_a_rejected_find_is_exit_4(serve_archive: Callable[..., ServedArchive]) -> None:
    served = serve_archive(require_called_aet=True, ae_title="ARCHIVE")
    result = run_cli("find", f"WRONG@{served.host}:{served.port}")
    assert result.exit_code == 4, result.stderr
    assert "rejected" in result.stderr and "Traceback" not in result.output


def test_a_peer_that_aborts_a_get_is_exit_5(pynetdicom_scp: Callable[..., Any],
                                           tmp_path: Path) -> None:
    from pynetdicom import evt
    from support.peers import abort_handler

    scp = pynetdicom_scp(handlers=[(evt.EVT_C_GET, abort_handler)],
                         contexts=["1.2.840.10008.5.1.4.1.2.2.3"])
    result = run_cli("get", scp.address, "--study", "1.2.3.4", "-o", tmp_path / "out")
    assert result.exit_code == 5, result.stdout + result.stderr
    assert "aborted" in result.stderr and "Traceback" not in result.output


def test_get_with_small_pdus_receives_large_instances_intact(
        serve_archive: Callable[..., ServedArchive], tmp_path: Path) -> None:
    """dcmtool get reads the instances off the socket itself: data sets spread over many
    PDUs (16 KiB here, with several PDVs) are reassembled byte for byte."""
    import numpy as np

    served = serve_archive()
    study = generate_uid()
    rng = np.random.default_rng(3)
    pixels = {}
    for index in range(4):
        path = tmp_path / "in" / f"{index}.dcm"
        ds = write_instance(path, rows=256, columns=256, StudyInstanceUID=study)
        ds.PixelData = rng.integers(0, 4096, (256, 256), np.uint16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        pixels[str(ds.SOPInstanceUID)] = ds.PixelData
    assert run_cli("store", served.address, str(tmp_path / "in")).exit_code == 0
    out = tmp_path / "out"
    result = run_cli("get", served.address, "--study", study, "-o", out, "--max-pdu", "16384",
                     "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["received"] == 4
    got = {}
    for path in out.rglob("*.dcm"):
        ds = dcmread(path)
        got[str(ds.SOPInstanceUID)] = ds.PixelData
        assert ds.file_meta.SourceApplicationEntityTitle == served.ae_title  # who sent it
    assert got == pixels


def test_get_that_cannot_write_one_instance_refuses_it_and_goes_on(
        setup: tuple[ServedArchive, dict[str, str], dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails (a full disk) answers that sub-operation 0xA700 and the others
    still arrive: exit 7, one failed, nothing half-written left behind."""
    from dcmtool.net import receiving

    _, env, studies = setup
    real_write = receiving._write
    calls = {"n": 0}

    def fail_the_second_file(fd: int, data: Any, failure: Any) -> Any:
        if bytes(data[128:132]) == b"DICM":  # a file's first write (a small one's only one)
            calls["n"] += 1
            if calls["n"] == 2:
                return OSError(28, "No space left on device")
        return real_write(fd, data, failure)

    monkeypatch.setattr(receiving, "_write", fail_the_second_file)
    out = tmp_path / "out"
    result = run_cli("get", "ARCHIVE", "--study", studies["ACC1"]["study"], "-o", out,
                     "--json", env=env)
    assert result.exit_code == 7, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert (summary["completed"], summary["failed"], summary["received"]) == (2, 1, 2)
    assert len(list(out.rglob("*.dcm"))) == 2
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no partial file


def test_get_makes_every_received_file_durable_before_it_reports(
        setup: tuple[ServedArchive, dict[str, str], dict[str, Any]], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every received file is fsynced once before the command reports success (when each
    is fsynced is tests/interop/test_retrieve_pace.py's subject)."""
    from dcmtool.archive import disk

    _, env, studies = setup
    synced: list[Path] = []
    real_fsync = disk.fsync_file

    def record(path: Path) -> None:
        synced.append(Path(path))
        real_fsync(path)

    monkeypatch.setattr(disk, "fsync_file", record)
    out = tmp_path / "out"
    result = run_cli("get", "ARCHIVE", "--study", studies["ACC2"]["study"], "-o", out,
                     "--json", env=env)
    assert result.exit_code == 0, result.stderr
    received = sorted(out.rglob("*.dcm"))
    assert len(received) == 3
    assert sorted(synced) == received  # each file once


def test_the_move_receiver_hands_other_messages_back_to_pynetdicom(tmp_path: Path) -> None:
    """dcmtool move's storage SCP reads the C-STOREs after the first off the socket; a C-ECHO
    in between goes back to pynetdicom and is answered, later C-STOREs are read again, and
    the release ends the association normally."""
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage, Verification

    from dcmtool.scp.receiver import open_receiver

    out = tmp_path / "out"
    receiver = open_receiver(out, ae_title="RECEIVER", port=free_port(), bind="127.0.0.1",
                             layout=None, listen=True)
    try:
        host, port = receiver.address
        ae = AE(ae_title="SENDER")
        ae.add_requested_context(CTImageStorage)
        ae.add_requested_context(Verification)
        assoc = ae.associate(host, port, ae_title="RECEIVER")
        assert assoc.is_established
        sent = []
        statuses = []
        for index in range(6):
            if index == 3:
                assert assoc.send_c_echo().Status == 0x0000
            ds = write_instance(tmp_path / "in" / f"{index}.dcm", rows=64, columns=64)
            sent.append(str(ds.SOPInstanceUID))
            statuses.append(assoc.send_c_store(tmp_path / "in" / f"{index}.dcm").Status)
        assoc.release()
        assert assoc.is_released
        assert statuses == [0x0000] * 6
    finally:
        receiver.stop(grace=5)
    assert sorted(str(dcmread(p).SOPInstanceUID) for p in out.rglob("*.dcm")) == sorted(sent)


def test_the_move_receiver_owns_the_reading_before_its_first_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fast sender's next C-STORE follows the first answer at once: pynetdicom's DUL must not
    start reading it before dcmtool takes the reading over (seen with Orthanc). The receiver's
    answers are held back 50 ms after they are queued, which widens that window to certain."""
    import time

    from pynetdicom import AE, dimse
    from pynetdicom.sop_class import CTImageStorage

    from dcmtool.scp.receiver import open_receiver

    real_send_msg = dimse.DIMSEServiceProvider.send_msg

    def slow_answer(self: Any, primitive: Any, context_id: int) -> None:
        real_send_msg(self, primitive, context_id)
        if self.assoc.is_acceptor:
            time.sleep(0.05)  # the injected delay, in the receiver's reactor thread

    monkeypatch.setattr(dimse.DIMSEServiceProvider, "send_msg", slow_answer)
    out = tmp_path / "out"
    receiver = open_receiver(out, ae_title="RECEIVER", port=free_port(), bind="127.0.0.1",
                             layout=None, listen=True)
    try:
        host, port = receiver.address
        ae = AE(ae_title="SENDER")
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate(host, port, ae_title="RECEIVER")
        assert assoc.is_established
        statuses = []
        for index in range(4):
            path = tmp_path / "in" / f"{index}.dcm"
            write_instance(path, rows=64, columns=64)
            statuses.append(assoc.send_c_store(path).get("Status"))
        assoc.release()
        assert statuses == [0x0000] * 4
    finally:
        receiver.stop(grace=5)
    assert len(list(out.rglob("*.dcm"))) == 4
