"""dcmtool dump against DCMTK's dcmdump (3.6.7): the same elements, VRs, nesting and values.

For each file both dumps are parsed into (depth, tag, VR, value) rows, items and delimiters
left out. The rows must name the same elements in the same order at the same depth with the
same VR; values are compared where both print them whole: text exactly, numbers exactly,
floats as floats, binary values by their leading bytes, sequences by their item count,
Pixel Data by its length (native) or fragment count (encapsulated). dcmdump names well-known
UIDs (=CTImageStorage) where dcmtool prints the number: those are not compared.

Explicit and implicit VR little endian, big endian, deflated, JPEG, RLE and JPEG 2000 files,
private tags and nested sequences, all from pydicom's test files. dcmdump is called by
absolute path; without it the tests skip (fail when CI=true).
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.datasets import pydicom_test_file
from support.peers import require_program, run_cli

DCMDUMP = "/usr/bin/dcmdump"

#: dcmtool's lines: indentation, tag, VR, value, then '#' and the keyword.
ROW = re.compile(r"^( *)\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\) (\w\w) (.*?) *# (.*)$")
#: dcmdump's: the same, the value may hold '#' ("(Sequence with explicit length #=2)") and
#: the comment is "length, VM Keyword".
DCMDUMP_ROW = re.compile(
    r"^( *)\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\) (\w\w) (.*?) *# *((?:\d+|u/l), *\d+ \S+)$")
NUMBERS = {"US", "SS", "UL", "SL", "SV", "UV", "IS"}
BINARY = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}

FILES = ["CT_small.dcm", "rtplan.dcm", "MR_small_bigendian.dcm", "ExplVR_BigEnd.dcm",
         "image_dfl.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm",
         "examples_overlay.dcm"]


@dataclass(frozen=True)
class Row:
    depth: int
    tag: str
    vr: str
    value: str
    comment: str


def rows(text: str, pattern: re.Pattern[str] = ROW) -> list[Row]:
    found = []
    for line in text.splitlines():
        match = pattern.match(line)
        if match is None or match.group(2).upper() == "FFFE":
            continue
        indent, group, element, vr, value, comment = match.groups()
        found.append(Row(len(indent) // 2, f"({group},{element})".upper(), vr, value, comment))
    return found


def dcmdump(path: Path) -> list[Row]:
    program = require_program(DCMDUMP, "dcmtk")
    # Values come out in the file's character set; the comparison skips non-ASCII text.
    proc = subprocess.run([program, "-q", str(path)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return rows(proc.stdout.decode("latin-1"), DCMDUMP_ROW)


def dcmtool(path: Path) -> list[Row]:
    result = run_cli("dump", "-q", path, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return rows(result.stdout)


def _values(text: str) -> list[str]:
    return text.split("\\")


SKIPPED = "not compared"


def _same_value(theirs: Row, ours: Row) -> str | None:
    """Why the two values differ, None when they agree, SKIPPED when they cannot be
    compared."""
    a, b = theirs.value, ours.value
    if a == "(no value available)":
        return None if b == "(no value)" else f"dcmdump has no value, dcmtool {b!r}"
    if ours.vr == "SQ":
        count = re.search(r"#=(\d+)", a)
        ours_count = re.fullmatch(r"<(\d+) items?>", b)
        assert count and ours_count, (a, b)
        return None if count.group(1) == ours_count.group(1) else f"{a} vs {b}"
    if ours.tag == "(7FE0,0010)":
        fragments = re.search(r"PixelSequence #=(\d+)", a)
        if fragments:  # the items dcmdump counts include the basic offset table
            want = int(fragments.group(1)) - 1
            return None if f" in {want} fragment" in b else f"{want} fragments vs {b}"
        length = theirs.comment.split(",")[0].strip()
        return None if b == f"<pixel data: {length} bytes>" else f"{length} bytes vs {b}"
    if a.startswith("=") or not a.isascii():
        return SKIPPED  # a UID dcmdump names, or text in another character set
    if ours.vr in BINARY:
        mine = _values(b.split("\\...")[0])
        return None if _values(a.rstrip("."))[:len(mine)] == mine else f"{a} vs {b}"
    if a.startswith("[") and b.startswith("["):
        if not a.endswith("]") or not b.endswith("]"):
            return SKIPPED  # one of them cut a long value
        return None if a == b else f"{a} vs {b}"
    if ours.vr in {"FL", "FD"}:
        mine, theirs_values = _values(b.split("\\...")[0]), _values(a.rstrip("."))
        tolerance = 1e-6 if ours.vr == "FL" else 1e-12
        for x, y in zip(mine, theirs_values, strict=False):  # dcmdump cuts long lists
            if not math.isclose(float(x), float(y), rel_tol=tolerance, abs_tol=1e-30):
                return f"{a} vs {b}"
        return None
    if ours.vr in NUMBERS or ours.vr == "AT":
        mine = _values(b.split("\\...")[0])
        shown = [v for v in _values(a.rstrip(".").upper()) if v]
        return None if shown[:len(mine)] == [v.upper() for v in mine][:len(shown)] \
            else f"{a} vs {b}"
    return None if a == b else f"{a} vs {b}"


@pytest.mark.parametrize("name", FILES)
def test_dump_lists_what_dcmdump_lists(name: str) -> None:
    path = pydicom_test_file(name)
    theirs, ours = dcmdump(path), dcmtool(path)
    assert [(r.depth, r.tag, r.vr) for r in ours] == [(r.depth, r.tag, r.vr) for r in theirs]
    same = 0
    differences = []
    for their_row, our_row in zip(theirs, ours, strict=True):
        why = _same_value(their_row, our_row)
        same += why is None
        if why not in (None, SKIPPED):
            differences.append(f"{our_row.tag} {our_row.vr}: {why}")
    assert differences == []
    assert same >= 0.8 * len(ours), f"only {same} of {len(ours)} values compared"


def test_both_refuse_a_truncated_file(tmp_path: Path) -> None:
    program = require_program(DCMDUMP, "dcmtk")
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(pydicom_test_file("CT_small.dcm").read_bytes()[:-1000])
    proc = subprocess.run([program, str(cut)], capture_output=True, timeout=60)
    assert proc.returncode != 0
    assert b"PixelData (7fe0,0010) larger" in proc.stderr
    result = run_cli("dump", cut)
    assert result.exit_code == 1
    assert "element (7FE0,0010) claims 32768 bytes" in result.stderr
