"""dcmtool dump: a file's header one element a line, or as DICOM JSON; bad files are one line.

pydicom's own test files (read with download=False): CT_small.dcm (explicit VR, private tags,
a sequence, native pixels), SC_rgb_jpeg_dcmtk.dcm and SC_rgb_rle_2frame.dcm (encapsulated),
rtplan.dcm (implicit VR, nested sequences), rtplan_truncated.dcm.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from support.datasets import make_dataset, pydicom_test_file, write_instance
from support.peers import run_cli

from dcmtool.errors import ExitCode

#: tag, VR, value and the text after '#' of a dump line; group 1 is the indentation.
LINE = re.compile(r"^( *)(\([0-9A-F]{4},[0-9A-F]{4}\)) (\w\w) (.*?)(?: +# (.*))?$")


def elements(stdout: str) -> dict[str, tuple[str, str, str]]:
    """Top-level element lines of a dump: tag -> (VR, value, label)."""
    found = {}
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match and not match.group(1):
            found[match.group(2)] = (match.group(3), match.group(4).rstrip(),
                                     match.group(5) or "")
    return found


def line(left: str, label: str, depth: int = 0) -> str:
    """A line as dump pads it: the '#' column at 56 characters plus the indentation."""
    return f"{left:<{56 + 2 * depth}} # {label}"


def test_ct_small_one_element_a_line_like_dcmdump() -> None:
    path = pydicom_test_file("CT_small.dcm")
    result = run_cli("dump", path, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "# File Meta Information (always explicit VR little endian)"
    assert "# Data Set: Explicit VR Little Endian (1.2.840.10008.1.2.1)" in lines
    assert line("(0010,0010) PN [CompressedSamples^CT1]", "PatientName") in lines
    found = elements(result.stdout)
    assert found["(0002,0010)"] == ("UI", "[1.2.840.10008.1.2.1]",
                                    "TransferSyntaxUID (Explicit VR Little Endian)")
    assert found["(0002,0001)"] == ("OB", "00\\01", "FileMetaInformationVersion")
    assert found["(0008,0008)"] == ("CS", "[ORIGINAL\\PRIMARY\\AXIAL]", "ImageType")
    assert found["(0008,0050)"] == ("SH", "(no value)", "AccessionNumber")
    assert found["(0028,0010)"] == ("US", "128", "Rows")
    assert found["(0028,0030)"] == ("DS", "[0.661468\\0.661468]", "PixelSpacing")
    assert found["(0009,1001)"] == ("LO", "[GE_GENESIS_FF]", "[Full fidelity]")
    assert found["(0027,1041)"] == ("FL", "-77.20406", "[Image location]")  # float32, short
    assert found["(0043,1029)"] == ("OB", "00\\00\\00\\01\\43\\cf\\52\\14\\... (2068 bytes)",
                                    "[Histogram tables]")
    assert found["(7FE0,0010)"] == ("OW", "<pixel data: 32768 bytes>", "PixelData")
    start = lines.index(line("(0010,1002) SQ <2 items>", "OtherPatientIDsSequence"))
    assert lines[start + 1:start + 7] == [
        "  (FFFE,E000) <item 1 of 2>",
        line("    (0010,0020) LO [ABCD1234]", "PatientID", 2),
        line("    (0010,0022) CS [TEXT]", "TypeOfPatientID", 2),
        "  (FFFE,E000) <item 2 of 2>",
        line("    (0010,0020) LO [1234ABCD]", "PatientID", 2),
        line("    (0010,0022) CS [TEXT]", "TypeOfPatientID", 2),
    ]


@pytest.mark.parametrize(("name", "summary"), [
    ("SC_rgb_jpeg_dcmtk.dcm", "<pixel data: 1724 bytes in 1 fragment, jpeg-baseline>"),
    ("SC_rgb_rle_2frame.dcm", "<pixel data: 1328 bytes in 2 fragments, rle>"),
])
def test_encapsulated_pixel_data_is_a_summary(name: str, summary: str) -> None:
    result = run_cli("dump", pydicom_test_file(name), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert elements(result.stdout)["(7FE0,0010)"] == ("OB", summary, "PixelData")


def test_tag_selection_finds_elements_inside_sequences() -> None:
    path = pydicom_test_file("rtplan.dcm")
    result = run_cli("dump", path, "-k", "BeamName", "--tag", "PatientID",
                     catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        line("(0010,0020) LO [id00001]", "PatientID"),
        line("(300A,00B0) SQ <1 item>", "BeamSequence"),
        "  (FFFE,E000) <item 1 of 1>",
        line("    (300A,00C2) LO [Field 1]", "BeamName", 2),
    ]


@pytest.mark.parametrize("spelling", ["BeamName", "(300A,00C2)", "(300a,00c2)", "300A,00C2",
                                      "300A00C2"])
def test_a_tag_is_a_keyword_or_its_number(spelling: str) -> None:
    result = run_cli("dump", pydicom_test_file("rtplan.dcm"), "-k", spelling,
                     catch_exceptions=False)
    assert result.stdout.splitlines()[-1] == line("    (300A,00C2) LO [Field 1]", "BeamName", 2)


@pytest.mark.parametrize(("spelling", "suggestion"), [
    ("PatientNmae", "; did you mean PatientName?"),
    ("NoSuchThing", ""),
])
def test_unknown_keyword_is_a_usage_error(spelling: str, suggestion: str) -> None:
    result = run_cli("dump", pydicom_test_file("CT_small.dcm"), "-k", spelling)
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""
    assert result.stderr == (
        f"dcmtool: error: unknown keyword or tag '{spelling}'{suggestion}\n"
        "dcmtool: hint: give a keyword such as PatientName, or a tag as (0010,0010)\n")


def test_meta_prints_group_0002_only() -> None:
    result = run_cli("dump", "--meta", pydicom_test_file("CT_small.dcm"), catch_exceptions=False)
    assert result.exit_code == 0
    tags = list(elements(result.stdout))
    assert tags[0] == "(0002,0000)" and "(0002,0010)" in tags
    assert all(tag.startswith("(0002,") for tag in tags)
    assert "# Data Set" not in result.stdout


def test_json_is_the_dicom_json_model_without_bulk_data() -> None:
    result = run_cli("dump", "--json", pydicom_test_file("CT_small.dcm"), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    [model] = json.loads(result.stdout)
    assert model["00020010"] == {"vr": "UI", "Value": ["1.2.840.10008.1.2.1"]}
    assert model["00020001"] == {"vr": "OB", "InlineBinary": "AAE="}
    assert model["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "CompressedSamples^CT1"}]}
    assert model["00280010"] == {"vr": "US", "Value": [128]}
    assert model["00101002"]["Value"][1]["00100020"] == {"vr": "LO", "Value": ["1234ABCD"]}
    assert model["7FE00010"] == {"vr": "OW"}  # Pixel Data: bulk, left out
    assert model["00431029"] == {"vr": "OB"}  # 2068 bytes: bulk, left out
    assert list(model) == sorted(model)
    # What it leaves in reads back with pydicom.
    ds = Dataset.from_json({k: v for k, v in model.items() if not k.startswith("0002")})
    assert ds.PatientName == "CompressedSamples^CT1"


def test_json_tag_selection_keeps_the_sequence_path() -> None:
    result = run_cli("dump", "--json", "-k", "BeamName", pydicom_test_file("rtplan.dcm"),
                     catch_exceptions=False)
    assert json.loads(result.stdout) == [
        {"300A00B0": {"vr": "SQ", "Value": [{"300A00C2": {"vr": "LO", "Value": ["Field 1"]}}]}}]


def test_jsonl_is_one_object_a_line_and_excludes_json() -> None:
    ct, plan = pydicom_test_file("CT_small.dcm"), pydicom_test_file("rtplan.dcm")
    result = run_cli("dump", "--jsonl", "--meta", ct, plan, catch_exceptions=False)
    assert result.exit_code == 0
    models = [json.loads(text) for text in result.stdout.splitlines()]
    assert [m["00020002"]["Value"][0] for m in models] == [
        "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.481.5"]
    assert all(key.startswith("0002") for m in models for key in m)
    both = run_cli("dump", "--json", "--jsonl", ct)
    assert both.exit_code == ExitCode.USAGE
    assert both.stderr == "dcmtool: error: choose one of --json and --jsonl\n"


def test_a_non_dicom_file_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not an image\n" * 20)
    result = run_cli("dump", path)
    assert result.exit_code == ExitCode.ERROR
    assert result.stdout == ""
    assert result.stderr == f"dcmtool: error: {path}: not a DICOM file\n"


def test_truncated_files_are_one_error_line(tmp_path: Path) -> None:
    # pydicom reads both without a word, handing back short values.
    plan = pydicom_test_file("rtplan_truncated.dcm")
    result = run_cli("dump", plan)
    assert result.exit_code == ExitCode.ERROR
    assert result.stdout == ""
    assert result.stderr == (f"dcmtool: error: {plan}: element (300A,00B0) claims 976 bytes "
                             "but only 711 remain (truncated?)\n")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(pydicom_test_file("CT_small.dcm").read_bytes()[:-1000])
    result = run_cli("dump", "--json", cut)
    assert result.exit_code == ExitCode.ERROR
    assert json.loads(result.stdout) == []
    # Pixel Data is followed by 138 bytes of trailing padding: 1000 - 138 of it are gone.
    assert result.stderr == (f"dcmtool: error: {cut}: element (7FE0,0010) claims 32768 bytes "
                             f"but only {32768 - 862} remain (truncated?)\n")


def test_the_other_files_are_still_dumped(tmp_path: Path) -> None:
    ct, plan = pydicom_test_file("CT_small.dcm"), pydicom_test_file("rtplan.dcm")
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 64)
    missing = tmp_path / "missing.dcm"
    result = run_cli("dump", ct, bad, missing, tmp_path, plan, "-k", "PatientID")
    assert result.exit_code == ExitCode.PARTIAL
    assert result.stdout.splitlines() == [
        f"# {ct}",
        line("(0010,0020) LO [1CT1]", "PatientID"),
        line("(0010,1002) SQ <2 items>", "OtherPatientIDsSequence"),
        "  (FFFE,E000) <item 1 of 2>",
        line("    (0010,0020) LO [ABCD1234]", "PatientID", 2),
        "  (FFFE,E000) <item 2 of 2>",
        line("    (0010,0020) LO [1234ABCD]", "PatientID", 2),
        "",
        f"# {plan}",
        line("(0010,0020) LO [id00001]", "PatientID"),
    ]
    assert result.stderr.splitlines() == [
        f"dcmtool: error: {bad}: not a DICOM file",
        f"dcmtool: error: {missing}: no such file",
        f"dcmtool: error: {tmp_path}: is a directory",
    ]
    as_json = run_cli("dump", "--json", ct, bad, plan)
    assert as_json.exit_code == ExitCode.PARTIAL
    assert len(json.loads(as_json.stdout)) == 2


def _odd_file(path: Path) -> Path:
    """A file with long values, a control character and an odd-length US value at the end."""
    ds = make_dataset(
        PatientName="Evil\x1b[2JName",  # ESC [2J clears a terminal
        DeviceSerialNumber="x" * 100,
    )
    ds.add_new(0x00283006, "US", list(range(100)))  # LUT Data: 100 values
    ds.add_new(0x00291010, "OB", bytes(range(256)) * 12)  # 3072 bytes
    write_instance(path, ds, transfer_syntax=ExplicitVRLittleEndian)
    with path.open("ab") as fh:  # (6000,0010) US with 3 bytes: pydicom cannot convert it
        fh.write(b"\x00\x60\x10\x00US\x03\x00\x01\x02\x03")
    return path


def test_long_values_are_cut_unless_full(tmp_path: Path) -> None:
    path = _odd_file(tmp_path / "odd.dcm")
    found = elements(run_cli("dump", path, "-q", catch_exceptions=False).stdout)
    assert found["(0018,1000)"][1] == "[" + "x" * 64 + "...] (100 characters)"
    assert found["(0028,3006)"][1] == "\\".join(map(str, range(16))) + "\\... (100 values)"
    assert found["(0029,1010)"][1] == "00\\01\\02\\03\\04\\05\\06\\07\\... (3072 bytes)"
    full = elements(run_cli("dump", path, "-q", "--full", catch_exceptions=False).stdout)
    assert full["(0018,1000)"][1] == "[" + "x" * 100 + "]"
    assert full["(0028,3006)"][1] == "\\".join(map(str, range(100)))
    assert full["(0029,1010)"] == found["(0029,1010)"]  # binary stays summarized


def test_values_from_the_file_are_escaped(tmp_path: Path) -> None:
    path = _odd_file(tmp_path / "odd.dcm")
    result = run_cli("dump", path, "-k", "PatientName", catch_exceptions=False)
    assert "\x1b" not in result.stdout
    assert elements(result.stdout)["(0010,0010)"][1] == "[Evil\\x1b[2JName]"


def test_a_value_pydicom_cannot_convert_is_shown_as_bytes_with_a_warning(
        tmp_path: Path) -> None:
    path = _odd_file(tmp_path / "odd.dcm")
    result = run_cli("dump", path, "-k", "(6000,0010)", catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout == line("(6000,0010) UN 01\\02\\03", "Overlay Rows") + "\n"
    assert (f"dcmtool: warning: {path}: (6000,0010) cannot be decoded, shown as bytes: "
            "Expected total bytes to be an even multiple of bytes per value\n") in result.stderr
    as_json = run_cli("dump", path, "--json", "-q", "-k", "(6000,0010)", catch_exceptions=False)
    assert json.loads(as_json.stdout) == [{"60000010": {"vr": "UN", "InlineBinary": "AQID"}}]
    assert as_json.stderr == ""


def test_pydicom_warnings_are_one_line_each_and_quiet_drops_them() -> None:
    path = pydicom_test_file("badVR.dcm")
    result = run_cli("dump", path, catch_exceptions=False)
    assert result.exit_code == 0
    assert f"dcmtool: warning: {path}: Invalid value for VR IS: '1A'.\n" in result.stderr
    assert "UserWarning" not in result.stderr and "Please see" not in result.stderr
    assert run_cli("dump", path, "-q", catch_exceptions=False).stderr == ""


def test_help_lists_dump_with_examples() -> None:
    result = run_cli("--help", catch_exceptions=False)
    assert "  dump " in result.stdout
    result = run_cli("dump", "--help", catch_exceptions=False)
    assert result.exit_code == 0
    assert "dcmtool dump ct.dcm -k PatientName" in result.stdout


def test_dump_starts_without_pixel_code_or_rich() -> None:
    """A fresh process: dump never decodes pixels, so numpy and the codecs stay unloaded."""
    probe = (
        "import atexit, json, sys\n"
        "atexit.register(lambda: sys.__stderr__.write('MODULES ' + json.dumps(sorted("
        "sys.modules)) + '\\n'))\n"
        "sys.argv = ['dcmtool', 'dump', sys.argv[1]]\n"
        "from dcmtool.cli.app import main\n"
        "main()\n")
    proc = subprocess.run([sys.executable, "-c", probe,
                           str(pydicom_test_file("SC_rgb_jpeg_dcmtk.dcm"))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "<pixel data: 1724 bytes in 1 fragment, jpeg-baseline>" in proc.stdout
    modules = json.loads(next(x for x in proc.stderr.splitlines()
                              if x.startswith("MODULES "))[8:])
    roots = {m.split(".")[0] for m in modules}
    for name in ("numpy", "pylibjpeg", "openjpeg", "libjpeg", "rle", "imagecodecs", "rich"):
        assert name not in roots, f"dcmtool dump imported {name}"
