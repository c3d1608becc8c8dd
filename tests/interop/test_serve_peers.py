"""``dcmtool serve`` against real peers: DCMTK storescu/storescp, the pynetdicom storescu app,
Orthanc, certificates made with the openssl CLI, and dicom3tools' dciodvfy.

Every test makes real associations to a server on a kernel-chosen (or just-free) port and checks
what a user would notice: the sender's exit status, the files in the archive folder, the rows of
``index.sqlite``, the stored bytes and File Meta Information, the audit log, dcmtool's own lines.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)
from support.archive import ServedArchive, ServeProcess
from support.datasets import dataset_bytes, make_dataset, pydicom_test_file, write_instance
from support.load import write_sender_folder
from support.peers import (
    DcmtkStoreSCP,
    OrthancServer,
    free_port,
    in_ci,
    modality,
    require_program,
    run_cli,
)
from support.processes import dcmtk_env
from support.tls import Certificates, certificates_fixture  # noqa: F401 - a fixture

import dcmtool

STORESCU = "/usr/bin/storescu"
DCMCJPEG = "/usr/bin/dcmcjpeg"
DCIODVFY = "/usr/bin/dciodvfy"

#: dcmtool's identity in the File Meta Information of every stored file.
IMPLEMENTATION_CLASS_UID = "2.25.280742595852762648379511460137954333587"
IMPLEMENTATION_VERSION_NAME = f"DCMTOOL_{dcmtool.__version__}"

#: Names in an archive root that are not instances.
ARCHIVE_FILES = {"index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "audit.jsonl", ".lock"}

ServeFactory = Callable[..., ServedArchive]
ServeProcessFactory = Callable[..., ServeProcess]


# ---------------------------------------------------------------------------------------------
# Helpers


def storescu(*args: str | os.PathLike[str] | int, timeout: float = 120.0
             ) -> subprocess.CompletedProcess[str]:
    """DCMTK's storescu (absolute path: the venv has pynetdicom's on PATH), TCP_NODELAY=1."""
    program = require_program(STORESCU, "dcmtk", "DCMTK storescu")
    return subprocess.run([program, *(str(a) for a in args)], capture_output=True, text=True,
                          timeout=timeout, env=dcmtk_env(), stdin=subprocess.DEVNULL)


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return (f"{' '.join(map(str, done.args))} exited with {done.returncode}\n"
            f"--- stdout ---\n{done.stdout[-3000:]}\n--- stderr ---\n{done.stderr[-3000:]}")


def stored_file(root: Path, relative: str | None) -> Path:
    assert relative is not None, "the instance is not in the index"
    path = root / relative
    assert path.is_file(), f"the index names {relative}, which is not a file under {root}"
    return path


def index_rows(root: Path, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Read ``ROOT/index.sqlite`` directly, as any SQLite client would (a server may run)."""
    db = sqlite3.connect(root / "index.sqlite", timeout=10)
    try:
        db.row_factory = sqlite3.Row
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def instance_files(root: Path) -> set[str]:
    """Every file under ``root`` that is not the index, the audit log or in a hidden folder,
    as ``/``-separated paths relative to ``root`` (what the index's ``path`` column holds)."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        here = Path(dirpath)
        for name in filenames:
            if here == root and name in ARCHIVE_FILES:
                continue
            found.add((here / name).relative_to(root).as_posix())
    return found


def audit_events(root: Path, event: str) -> list[dict[str, Any]]:
    lines = (root / "audit.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    return [r for r in records if r["event"] == event]


def assert_dcmtool_meta(path: Path, *, transfer_syntax: str, sop_class: str, sop_instance: str,
                        source_ae: str) -> None:
    meta = read_file_meta_info(path)
    assert meta.TransferSyntaxUID == transfer_syntax, path
    assert meta.MediaStorageSOPClassUID == sop_class, path
    assert meta.MediaStorageSOPInstanceUID == sop_instance, path
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID, path
    assert meta.ImplementationVersionName == IMPLEMENTATION_VERSION_NAME, path
    assert meta.SourceApplicationEntityTitle == source_ae, path


@dataclass(frozen=True)
class Sample:
    """One DICOM file to send, and what it is."""

    label: str
    path: Path
    transfer_syntax: str
    sop_class: str
    sop_instance: str

    @classmethod
    def read(cls, label: str, path: Path) -> Sample:
        ds = dcmread(path, stop_before_pixels=True)
        meta = ds.file_meta
        # The archive needs these, and a C-STORE sends the data set's own SOP Instance UID.
        for keyword in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID",
                        "SeriesInstanceUID"):
            assert keyword in ds, f"{path.name} has no {keyword}"
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID, path.name
        return cls(label, path, str(meta.TransferSyntaxUID), str(ds.SOPClassUID),
                   str(ds.SOPInstanceUID))


def pydicom_transfer_syntaxes() -> dict[str, list[str]]:
    """Transfer syntax -> names of pydicom's bundled test files in it (read from disk; never
    ``get_testdata_files``, which may download)."""
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    found: dict[str, list[str]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        try:
            ts = read_file_meta_info(path).get("TransferSyntaxUID")
        except Exception:  # not a DICOM file, or no meta
            continue
        if ts:
            found.setdefault(str(ts), []).append(path.name)
    return found


#: One pydicom test file per transfer syntax; the SOP Instance UIDs are all different
#: (pydicom's MR_small* family, for one, shares one UID across several syntaxes).
PYDICOM_SAMPLES = (
    ("implicit LE", "SC_rgb_jpeg_dcmd.dcm", ImplicitVRLittleEndian),
    ("explicit LE", "CT_small.dcm", ExplicitVRLittleEndian),
    ("explicit BE", "ExplVR_BigEnd.dcm", ExplicitVRBigEndian),
    ("deflate", "image_dfl.dcm", DeflatedExplicitVRLittleEndian),
    ("JPEG baseline", "SC_rgb_jpeg_dcmtk.dcm", JPEGBaseline8Bit),
    ("JPEG extended", "JPGExtended.dcm", JPEGExtended12Bit),
    ("JPEG lossless SV1", "SC_rgb_jpeg_gdcm.dcm", JPEGLosslessSV1),
    ("JPEG-LS lossless", "MR_small_jpeg_ls_lossless.dcm", JPEGLSLossless),
    ("J2K lossless", "GDCMJ2K_TextGBR.dcm", JPEG2000Lossless),
    ("J2K", "JPEG2000.dcm", JPEG2000),
)


def transfer_syntax_samples(folder: Path) -> list[Sample]:
    """Files in every transfer syntax pydicom's test data has, plus JPEG process 14.

    Where pydicom's file will not do as it is, it is rewritten with pydicom (pixel data and
    transfer syntax untouched):

    * its JPEG-LS near-lossless files have no Study/Series Instance UID (the archive refuses
      such data sets): the two UIDs are added;
    * its RLE files share their SOP Instance UID with the JPEG lossless SV1 file (SC_rgb_*),
      or carry the UIDs as UN, which storescu cannot send (rtdose_rle*): a fresh UID.

    pydicom has no JPEG lossless process 14 file (.57): DCMTK's dcmcjpeg makes one. pydicom
    3.0's test data has no HTJ2K file, and DCMTK 3.6.7 cannot make one.
    """
    samples = [Sample.read(label, pydicom_test_file(name)) for label, name, _ in PYDICOM_SAMPLES]
    for sample, (_, name, ts) in zip(samples, PYDICOM_SAMPLES, strict=True):
        assert sample.transfer_syntax == ts, f"{name} is no longer in {UID(ts).name}"

    def rewritten(label: str, name: str, ts: str, **changes: str) -> Sample:
        ds = dcmread(pydicom_test_file(name))
        assert ds.file_meta.TransferSyntaxUID == ts, name
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / name, enforce_file_format=True)
        return Sample.read(label, folder / name)

    samples.append(rewritten("JPEG-LS near", "JPEGLSNearLossless_08.dcm", JPEGLSNearLossless,
                             StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid()))
    samples.append(rewritten("RLE", "SC_rgb_rle.dcm", RLELossless,
                             SOPInstanceUID=generate_uid()))

    dcmcjpeg = require_program(DCMCJPEG, "dcmtk", "DCMTK dcmcjpeg")
    p14 = folder / "jpeg_p14.dcm"
    done = subprocess.run([dcmcjpeg, "+el", "+ua", str(pydicom_test_file("MR_small.dcm")),
                           str(p14)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, explain(done)
    samples.append(Sample.read("JPEG lossless P14", p14))
    assert samples[-1].transfer_syntax == JPEGLossless  # 1.2.840.10008.1.2.4.57
    return samples


def dcmtk_profiles(path: Path, samples: Iterable[Sample]) -> None:
    """An association configuration file (``-xf PATH PROFILE``) with two profiles.

    ``SCU`` (storescu): each sample's SOP class proposed with its own transfer syntax only, one
    presentation context per pair, so the acceptor has nothing else to choose and storescu
    nothing to convert. ``SCP`` (storescp): each SOP class accepted in those syntaxes.
    """
    pairs = list(dict.fromkeys((s.sop_class, s.transfer_syntax) for s in samples))
    by_class: dict[str, list[str]] = {}
    for sop, ts in pairs:
        by_class.setdefault(sop, []).append(ts)
    lines = ["[[TransferSyntaxes]]"]
    for n, (_, ts) in enumerate(pairs, 1):
        lines += [f"[One{n}]", f"TransferSyntax1 = {ts}"]
    for n, syntaxes in enumerate(by_class.values(), 1):
        lines.append(f"[All{n}]")
        lines += [f"TransferSyntax{k} = {ts}" for k, ts in enumerate(syntaxes, 1)]
    lines += ["[[PresentationContexts]]", "[Proposed]"]
    lines += [f"PresentationContext{n} = {sop}\\One{n}" for n, (sop, _) in enumerate(pairs, 1)]
    lines.append("[Accepted]")
    lines += [f"PresentationContext{n} = {sop}\\All{n}"
              for n, sop in enumerate(by_class, 1)]
    lines += ["[[Profiles]]", "[SCU]", "PresentationContexts = Proposed",
              "[SCP]", "PresentationContexts = Accepted"]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")


# ---------------------------------------------------------------------------------------------
# 1. DCMTK storescu: every transfer syntax, stored byte for byte


@pytest.mark.peer("dcmtk")
def test_dcmtk_storescu_every_transfer_syntax_is_stored_as_received(
        serve_archive: ServeFactory, dcmtk_storescp: Callable[..., DcmtkStoreSCP],
        tmp_path: Path) -> None:
    samples = transfer_syntax_samples(tmp_path)
    covered = {s.transfer_syntax for s in samples}
    missing = {UID(ts).name: names for ts, names in pydicom_transfer_syntaxes().items()
               if ts not in covered}
    assert not missing, f"pydicom has test files in syntaxes this test does not send: {missing}"
    assert len({s.sop_instance for s in samples}) == len(samples), "SOP Instance UIDs collide"
    profile = tmp_path / "profiles.cfg"
    dcmtk_profiles(profile, samples)
    files = [s.path for s in samples]

    served = serve_archive()
    done = storescu("-xf", profile, "SCU", "-aet", "DCMTKSCU", "-aec", served.ae_title,
                    "-v", served.host, served.port, *files)
    assert done.returncode == 0, explain(done)
    # storescu found a context in each file's own syntax: it converted nothing.
    conversions = [line for line in done.stderr.splitlines()
                   if "Converting transfer syntax" in line]
    assert len(conversions) == len(samples), done.stderr
    for line in conversions:
        before, after = line.split("Converting transfer syntax: ", 1)[1].split(" -> ")
        assert before == after, line

    # What was on the wire, written as received by DCMTK's storescp in bit-preserving mode.
    witness = dcmtk_storescp("+B", "-xf", str(profile), "SCP")
    done = storescu("-xf", profile, "SCU", "-aet", "DCMTKSCU", "-aec", witness.ae_title,
                    "127.0.0.1", witness.port, *files)
    assert done.returncode == 0, explain(done) + "\n" + witness.log_tail()
    wire = {read_file_meta_info(p).MediaStorageSOPInstanceUID: dataset_bytes(p)
            for p in witness.received()}

    rewritten = []
    for sample in samples:
        relative = served.archive.index.instance_path(sample.sop_instance)
        path = stored_file(served.root, relative)
        assert_dcmtool_meta(path, transfer_syntax=sample.transfer_syntax,
                            sop_class=sample.sop_class, sop_instance=sample.sop_instance,
                            source_ae="DCMTKSCU")
        (row,) = index_rows(served.root, "SELECT * FROM instances WHERE SOPInstanceUID = ?",
                            (sample.sop_instance,))
        assert row["transfer_syntax"] == sample.transfer_syntax, sample.label
        assert row["source_ae"] == "DCMTKSCU"
        assert row["size"] == path.stat().st_size
        stored = dataset_bytes(path)
        original = dataset_bytes(sample.path)
        if stored != original:
            # DCMTK re-encoded the data set while sending: the archive must hold what it sent.
            assert wire[sample.sop_instance] != original, (
                f"{sample.label}: DCMTK sent the file's bytes unchanged, the archive stored "
                "something else")
            assert stored == wire[sample.sop_instance], (
                f"{sample.label} ({sample.path.name}): stored bytes differ from those sent")
            rewritten.append(sample.label)
        else:
            assert stored == wire[sample.sop_instance], sample.label
    # DCMTK 3.6.7 sends about half of them re-encoded: it drops trailing padding
    # (CT_small.dcm), re-deflates with its own compression level, ... The others prove the
    # stored bytes equal the file's own.
    assert len(rewritten) < len(samples), rewritten
    assert len(served.files()) == len(samples)


# ---------------------------------------------------------------------------------------------
# 2. pynetdicom's storescu app


def test_pynetdicom_storescu_app_stores(serve_archive: ServeFactory, tmp_path: Path) -> None:
    served = serve_archive()
    ds = write_instance(tmp_path / "one.dcm")
    done = subprocess.run(
        [sys.executable, "-m", "pynetdicom", "storescu", served.host, str(served.port),
         str(tmp_path / "one.dcm"), "-aec", served.ae_title],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, explain(done)
    path = stored_file(served.root, served.archive.index.instance_path(ds.SOPInstanceUID))
    assert_dcmtool_meta(path, transfer_syntax=ExplicitVRLittleEndian, sop_class=ds.SOPClassUID,
                        sop_instance=ds.SOPInstanceUID, source_ae="STORESCU")
    stored = dcmread(path)
    assert stored.PatientID == ds.PatientID
    assert stored.PixelData == ds.PixelData


# ---------------------------------------------------------------------------------------------
# 3. Orthanc sends to serve (its C-STORE SCU, driven through REST)


@pytest.mark.peer("orthanc")
def test_orthanc_stores_into_serve(serve_archive: ServeFactory,
                                   orthanc: Callable[..., OrthancServer]) -> None:
    served = serve_archive()
    server = orthanc(aet="ORTHANC", modalities={"dcmtool": modality(served.ae_title,
                                                                     served.port)})
    source = pydicom_test_file("CT_small.dcm")
    original = Sample.read("CT", source)
    uploaded = server.rest.upload(source)
    answer = server.rest.post("/modalities/dcmtool/store",
                              {"Resources": [uploaded["ID"]], "Synchronous": True})
    assert answer["InstancesCount"] == 1, answer
    assert answer["FailedInstancesCount"] == 0, answer

    (row,) = index_rows(served.root, "SELECT * FROM instances WHERE SOPInstanceUID = ?",
                        (original.sop_instance,))
    assert row["source_ae"] == "ORTHANC"
    assert row["SOPClassUID"] == original.sop_class
    path = stored_file(served.root, row["path"])
    meta = read_file_meta_info(path)
    assert meta.SourceApplicationEntityTitle == "ORTHANC"
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.TransferSyntaxUID == row["transfer_syntax"]
    assert dcmread(path).PixelData == dcmread(source).PixelData
    (stored,) = audit_events(served.root, "instance-stored")
    assert stored["calling_aet"] == "ORTHANC"
    assert stored["sop_instance_uid"] == original.sop_instance


# ---------------------------------------------------------------------------------------------
# 4. 10 concurrent associations x 100 instances


SENDERS = 10
PER_SENDER = 100


@pytest.mark.peer("dcmtk")
def test_ten_concurrent_associations_store_a_thousand_instances(
        serve_archive: ServeFactory, tmp_path: Path) -> None:
    served = serve_archive()
    folders = [tmp_path / f"sender{n}" for n in range(SENDERS)]
    expected = {uid for n, folder in enumerate(folders)
                for uid in write_sender_folder(folder, n, PER_SENDER)}
    assert len(expected) == SENDERS * PER_SENDER
    program = require_program(STORESCU, "dcmtk", "DCMTK storescu")

    senders = [subprocess.Popen(
        [program, "-aet", f"SENDER{n}", "-aec", served.ae_title, "+sd", served.host,
         str(served.port), str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dcmtk_env(),
        stdin=subprocess.DEVNULL) for n, folder in enumerate(folders)]
    try:
        outputs = [p.communicate(timeout=120)[0] for p in senders]
    finally:
        for p in senders:
            if p.poll() is None:
                p.kill()
                p.wait()
    for n, (p, output) in enumerate(zip(senders, outputs, strict=True)):
        assert p.returncode == 0, f"sender {n} exited with {p.returncode}:\n{output[-2000:]}"

    rows = index_rows(served.root, "SELECT SOPInstanceUID, path, source_ae FROM instances")
    assert len(rows) == SENDERS * PER_SENDER
    assert {r["SOPInstanceUID"] for r in rows} == expected
    assert {r["source_ae"] for r in rows} == {f"SENDER{n}" for n in range(SENDERS)}
    assert {r["path"] for r in rows} == instance_files(served.root)
    for row in rows:
        assert (served.root / row["path"]).is_file(), row["path"]
    counts = served.archive.index.counts()
    assert counts == {"patients": SENDERS, "studies": SENDERS, "series": SENDERS,
                      "instances": SENDERS * PER_SENDER}
    stored = audit_events(served.root, "instance-stored")
    assert len(stored) == SENDERS * PER_SENDER
    assert {r["sop_instance_uid"] for r in stored} == expected
    assert not audit_events(served.root, "instance-refused")
    assert len(audit_events(served.root, "association-released")) == SENDERS
    assert list((served.root / ".incoming").iterdir()) == []


# ---------------------------------------------------------------------------------------------
# 5. kill -9 in the middle of a transfer, then restart


def large_instance(path: Path, megabytes: int = 128) -> Dataset:
    """A multi-frame instance with ``megabytes`` MiB of 16-bit pixel data (512x512 frames)."""
    frames = megabytes * 2**20 // (512 * 512 * 2)
    ds = make_dataset(rows=512, columns=512, sop_class="1.2.840.10008.5.1.4.1.1.7.3",
                      NumberOfFrames=frames, Modality="OT")
    ds.PixelData = bytes(range(256)) * (frames * 512 * 512 * 2 // 256)
    return write_instance(path, ds)


def wait_for_growing_partial(incoming: Path, sender: subprocess.Popen[bytes],
                             timeout: float = 30.0) -> Path:
    """Poll ``incoming`` until a partial file is there and has grown between two looks."""
    deadline = time.monotonic() + timeout
    seen: dict[Path, int] = {}
    while time.monotonic() < deadline:
        assert sender.poll() is None, "storescu finished before a partial file was seen"
        for path in incoming.iterdir():
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            if 0 < seen.get(path, -1) < size:
                return path
            seen[path] = size
        time.sleep(0.002)
    raise AssertionError(f"no growing partial file in {incoming} within {timeout:g} s: {seen}")


@pytest.mark.peer("dcmtk")
def test_kill_9_during_a_transfer_then_restart(serve_process: ServeProcessFactory,
                                               tmp_path: Path) -> None:
    program = require_program(STORESCU, "dcmtk", "DCMTK storescu")
    big = tmp_path / "big.dcm"
    ds = large_instance(big)
    served = serve_process()
    root = served.root
    try:
        with (tmp_path / "storescu.log").open("wb") as log:
            sender = subprocess.Popen(
                [program, "-aec", served.ae_title, "127.0.0.1", str(served.port), str(big)],
                stdout=log, stderr=subprocess.STDOUT, env=dcmtk_env(), stdin=subprocess.DEVNULL)
        try:
            partial = wait_for_growing_partial(root / ".incoming", sender)
            os.killpg(served.process.pid, signal.SIGKILL)
            served.process.process.wait(10)
            assert partial.exists(), "the transfer ended before the server was killed"
            assert partial.stat().st_size < big.stat().st_size
            assert sender.wait(60) != 0, "storescu reported success for an interrupted transfer"
        finally:
            if sender.poll() is None:
                sender.kill()
                sender.wait()

        restarted = serve_process(root=root)
        # The restarted server says what it cleaned up, and nothing partial is left anywhere.
        assert "removed 1 partial transfer," in restarted.process.log_tail(), \
            restarted.process.log_tail()
        assert list((root / ".incoming").iterdir()) == []
        assert instance_files(root) == set()
        assert {r["path"] for r in index_rows(root, "SELECT path FROM instances")} == \
            instance_files(root)

        done = storescu("-aec", restarted.ae_title, "127.0.0.1", restarted.port, big)
        assert done.returncode == 0, explain(done)
        rows = index_rows(root, "SELECT path, size FROM instances WHERE SOPInstanceUID = ?",
                          (ds.SOPInstanceUID,))
        assert len(rows) == 1
        path = stored_file(root, rows[0]["path"])
        assert rows[0]["size"] == path.stat().st_size
        assert dataset_bytes(path) == dataset_bytes(big)
        assert {r["path"] for r in index_rows(root, "SELECT path FROM instances")} == \
            instance_files(root)
        assert list((root / ".incoming").iterdir()) == []
    finally:  # ~400 MB that pytest would keep with its last three runs
        big.unlink(missing_ok=True)
        for relative in instance_files(root):
            (root / relative).unlink()
        for leftover in (root / ".incoming").iterdir():
            leftover.unlink()


# ---------------------------------------------------------------------------------------------
# 6. TLS


def assert_one_error_line(stderr: str) -> str:
    # The archive runs in this process: its own log line about the failed handshake lands in
    # the same stderr. It is the server's, not the client's, so it is checked apart.
    lines = [line for line in stderr.strip().splitlines()
             if not line.startswith("dcmtool: warning: TLS handshake with")]
    errors = [line for line in lines if line.startswith("dcmtool: error: ")]
    assert len(errors) == 1, stderr
    assert all(line.startswith(("dcmtool: error: ", "dcmtool: hint: ")) for line in lines), \
        stderr
    return errors[0]


def test_tls_echo(serve_archive: ServeFactory, certificates: Certificates) -> None:
    c = certificates
    served = serve_archive(tls_cert=c.server_cert, tls_key=c.server_key)
    address = f"DCMTOOL@127.0.0.1:{served.port}"

    ok = run_cli("echo", "--tls-ca", c.ca, address)
    assert ok.exit_code == 0, ok.output
    assert "status=Success" in ok.stdout

    # The name in the certificate: localhost is in it too.
    ok = run_cli("echo", "--tls-ca", c.ca, f"DCMTOOL@localhost:{served.port}")
    assert ok.exit_code == 0, ok.output

    plain = run_cli("echo", address)
    assert plain.exit_code in (3, 5), plain.output
    assert_one_error_line(plain.stderr)
    assert "TLS" in plain.stderr, plain.stderr  # the hint: does it expect TLS?

    untrusted = run_cli("echo", "--tls-ca", c.other_ca, address)
    assert untrusted.exit_code == 3, untrusted.output
    line = assert_one_error_line(untrusted.stderr)
    assert "TLS handshake" in line and "CERTIFICATE_VERIFY_FAILED" in line, line


def test_tls_client_certificates_required(serve_archive: ServeFactory,
                                          certificates: Certificates) -> None:
    c = certificates
    served = serve_archive(tls_cert=c.server_cert, tls_key=c.server_key, tls_ca=c.ca)
    address = f"DCMTOOL@127.0.0.1:{served.port}"

    anonymous = run_cli("echo", "--tls-ca", c.ca, address)
    assert anonymous.exit_code in (3, 5), anonymous.output
    assert_one_error_line(anonymous.stderr)

    ok = run_cli("echo", "--tls-ca", c.ca, "--tls-cert", c.client_cert, "--tls-key",
                 c.client_key, address)
    assert ok.exit_code == 0, ok.output
    assert "status=Success" in ok.stdout
    served.stop()  # the release is audited after the A-RELEASE-RP has gone out
    (released,) = audit_events(served.root, "association-released")
    assert released["calling_aet"] == "DCMTOOL"


def test_tls_serve_keeps_accepting_while_a_connection_is_silent(
        serve_archive: ServeFactory, certificates: Certificates) -> None:
    c = certificates
    served = serve_archive(tls_cert=c.server_cert, tls_key=c.server_key, acse_timeout=1.0,
                           network_timeout=1.0)
    silent = socket.create_connection(("127.0.0.1", served.port))  # accepted first
    try:
        echo = run_cli("echo", "--tls-ca", c.ca, "--connect-timeout", "2", "--acse-timeout", "2",
                       f"DCMTOOL@127.0.0.1:{served.port}")
        assert echo.exit_code == 0, echo.output
    finally:
        silent.close()  # unblocks the accept thread, so the fixture can stop the server


def test_tls_get_and_move(serve_archive: ServeFactory, certificates: Certificates,
                          tmp_path: Path) -> None:
    """Over TLS, get and move bring every instance intact (tests/interop/test_tls_speed_paths.py
    shows that they take the socket-owning paths there)."""
    from pydicom.uid import generate_uid

    c = certificates
    local_port = free_port()
    served = serve_archive(tls_cert=c.server_cert, tls_key=c.server_key,
                           destinations=(("DCMTOOL", "127.0.0.1", local_port),))
    config = tmp_path / "config.toml"
    config.write_text(f'[local]\nae_title = "DCMTOOL"\nport = {local_port}\n'
                      f'bind = "127.0.0.1"\n', encoding="utf-8")
    env = {"DCMTOOL_CONFIG": str(config)}
    address = f"DCMTOOL@127.0.0.1:{served.port}"
    study = generate_uid()
    pixels = {}
    for index in range(3):
        ds = write_instance(tmp_path / "load" / f"{index}.dcm", StudyInstanceUID=study)
        pixels[str(ds.SOPInstanceUID)] = ds.PixelData
    stored = run_cli("store", "--tls-ca", c.ca, address, str(tmp_path / "load"), env=env)
    assert stored.exit_code == 0, stored.output
    for operation in ("get", "move"):
        out = tmp_path / operation
        done = run_cli(operation, "--tls-ca", c.ca, address, "--study", study, "-o", out,
                       "--json", env=env)
        assert done.exit_code == 0, done.output
        summary = json.loads(done.stdout)
        assert (summary["completed"], summary["failed"], summary["received"]) == (3, 0, 3)
        got = {str(d.SOPInstanceUID): d.PixelData
               for d in (dcmread(p) for p in out.rglob("*.dcm"))}
        assert got == pixels, operation


@pytest.mark.peer("dcmtk")
def test_dcmtk_storescu_over_tls(serve_archive: ServeFactory, certificates: Certificates,
                                 tmp_path: Path) -> None:
    help_text = storescu("--help").stdout
    if "+tls" not in help_text:
        reason = "this DCMTK storescu was built without TLS support (no +tls in --help)"
        if in_ci():  # Debian's dcmtk has it: in CI its absence is a failure
            pytest.fail(f"{reason} [CI=true]", pytrace=False)
        pytest.skip(reason)
    c = certificates
    served = serve_archive(tls_cert=c.server_cert, tls_key=c.server_key, tls_ca=c.ca)
    ds = write_instance(tmp_path / "tls.dcm")
    done = storescu("+tls", c.client_key, c.client_cert, "+cf", c.ca, "-aet", "TLSSCU",
                    "-aec", served.ae_title, "127.0.0.1", served.port, tmp_path / "tls.dcm")
    assert done.returncode == 0, explain(done)
    path = stored_file(served.root, served.archive.index.instance_path(ds.SOPInstanceUID))
    assert_dcmtool_meta(path, transfer_syntax=ExplicitVRLittleEndian, sop_class=ds.SOPClassUID,
                        sop_instance=ds.SOPInstanceUID, source_ae="TLSSCU")
    assert dataset_bytes(path) == dataset_bytes(tmp_path / "tls.dcm")

    # Without a client certificate, the server refuses the TLS connection: nothing stored.
    other = write_instance(tmp_path / "anonymous.dcm")
    done = storescu("+tla", "+cf", c.ca, "-aec", served.ae_title, "127.0.0.1", served.port,
                    tmp_path / "anonymous.dcm")
    assert done.returncode != 0, explain(done)
    assert served.archive.index.instance_path(other.SOPInstanceUID) is None


# ---------------------------------------------------------------------------------------------
# 7. dciodvfy: what dcmtool adds to a file is valid


def dciodvfy(path: Path) -> list[str]:
    """dciodvfy's findings: its ``Error - ...`` and ``Warning - ...`` lines."""
    program = require_program(DCIODVFY, "dicom3tools", "dicom3tools dciodvfy")
    done = subprocess.run([program, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines()
            if line.startswith(("Error", "Warning"))]


@pytest.mark.peer("dcmtk", "dicom3tools")
def test_stored_ct_validates_with_dciodvfy(serve_archive: ServeFactory) -> None:
    source = pydicom_test_file("CT_small.dcm")
    sample = Sample.read("CT", source)
    served = serve_archive()
    done = storescu("-aec", served.ae_title, served.host, served.port, source)
    assert done.returncode == 0, explain(done)
    path = stored_file(served.root, served.archive.index.instance_path(sample.sop_instance))
    assert_dcmtool_meta(path, transfer_syntax=sample.transfer_syntax,
                        sop_class=sample.sop_class, sop_instance=sample.sop_instance,
                        source_ae="STORESCU")

    found = dciodvfy(path)
    # dciodvfy checks the File Meta Information too (VRs, lengths, VMs of group 0002): an
    # invalid implementation UID, a too long version name or a bad AE title would show here.
    meta = [line for line in found if "FileMetaInformation" in line or "(0x0002," in line]
    assert meta == [], found
    errors = [line for line in found if line.startswith("Error")]
    source_findings = dciodvfy(source)
    source_errors = [line for line in source_findings if line.startswith("Error")]
    assert len(errors) <= len(source_errors), (source_findings, found)
    # Nothing new at all, warnings included: what dcmtool added is clean.
    assert set(found) <= set(source_findings), (source_findings, found)
