"""dcmtool dump: a file's File Meta and data set, readable or as DICOM JSON, like dcmdump."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from dcmtool.cli import console, options
from dcmtool.cli.groups import LoggingOptions, logging_options

if TYPE_CHECKING:
    from dcmtool.dicom.dump import Limits

EPILOG = """Examples:

\b
  dcmtool dump ct.dcm                          # File Meta and data set, one element a line
  dcmtool dump ct.dcm -k PatientName -k StudyInstanceUID
  dcmtool dump plan.dcm -k BeamName            # also inside sequences, with their items
  dcmtool dump --meta *.dcm                    # group 0002 only: syntax, classes, sender
  dcmtool dump --json ct.dcm | jq '.[0]."00100010".Value[0].Alphabetic'

Each line: tag, VR, value, then keyword (or private name) after '#'. Long text and
multi-valued numbers are cut (--full shows them whole); binary values show their first bytes
and length; Pixel Data is a summary (bytes, fragments, transfer syntax). --json prints a JSON
array with one DICOM JSON object (group 0002 included) per file, --jsonl one object a line;
bulk data (Pixel Data, binary values over 1 KiB) keeps its VR without a value. A file that
cannot be read is one error line on stderr and the others are still dumped: exit 1 when no
file could be read, 7 when some could not.
"""


@logging_options
def dump(
    files: Annotated[list[Path], typer.Argument(
        metavar="FILE...", help="DICOM files (Part 10, with File Meta Information).",
        show_default=False)],
    tags: Annotated[Optional[list[str]], typer.Option(
        "--tag", "-k", metavar="KEYWORD", help="Print only this element, wherever it occurs: "
        "a keyword or (gggg,eeee). Repeatable.", show_default=False)] = None,
    meta_only: Annotated[bool, typer.Option(
        "--meta", help="Only the File Meta Information (group 0002).")] = False,
    full: Annotated[bool, typer.Option(
        "--full", help="Print long text and multi-valued numbers whole (binary values and "
        "Pixel Data stay summarized).")] = False,
    json_output: options.JsonOutput = False,
    jsonl: options.JsonLines = False,
    *,
    logging: LoggingOptions,
) -> None:
    """Print the header of DICOM files: File Meta and data set, like dcmdump."""
    from dcmtool.cli.app import apply_logging
    from dcmtool.net.stack import load_network_only

    # A dump never decodes pixels: pydicom without numpy and the codecs starts faster.
    load_network_only()
    from dcmtool.dicom.dump import Limits, json_model, parse_tag
    from dcmtool.errors import ExitCode, UsageError

    apply_logging(logging)
    if json_output and jsonl:
        raise UsageError("choose one of --json and --jsonl")
    only = frozenset(parse_tag(tag) for tag in tags or ())
    limits = Limits.unlimited() if full else Limits()
    models: list[dict[str, Any]] = []
    failed = printed = 0
    for path in files:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = _read(path)
            if ds is None:
                failed += 1
            elif json_output:
                models.append(json_model(ds, data_set=not meta_only, only=only))
            elif jsonl:
                model = json_model(ds, data_set=not meta_only, only=only)
                console.out(json.dumps(model, ensure_ascii=False))
            else:
                _print_text(ds, path, heading=len(files) > 1, first=printed == 0,
                            meta_only=meta_only, only=only, limits=limits)
                printed += 1
        _warn(path, caught)
    if json_output:
        console.out(json.dumps(models, indent=2, ensure_ascii=False))
    if failed:
        raise typer.Exit(int(ExitCode.ERROR if failed == len(files) else ExitCode.PARTIAL))


def _read(path: Path) -> Any:
    """The data set of ``path``, or ``None`` after one error line on stderr."""
    from dcmtool.dicom.convert import NotDicom, read_dataset
    from dcmtool.dicom.dump import printable
    from dcmtool.dicom.part10 import dataset_offset
    from dcmtool.dicom.structure import file_problem
    from dcmtool.errors import DcmtoolError

    name = printable(str(path))
    if path.is_dir():
        console.error(f"{name}: is a directory")
        return None
    if not path.exists():
        console.error(f"{name}: no such file")
        return None
    try:
        ds = read_dataset(path)
    except NotDicom as exc:  # its message names the file
        console.error(printable(str(exc)))
        return None
    except DcmtoolError as exc:
        console.error(f"{name}: {printable(str(exc))}")
        return None
    except Exception as exc:
        # pydicom raises anything at all on a garbled file (zlib.error for a damaged
        # deflated data set, BytesLengthException in the File Meta): bad input, not a bug.
        console.error(f"{name}: cannot read: {printable(' '.join(str(exc).split()))}")
        return None
    # pydicom returns a value cut short by the end of the file without a word: walk it.
    problem = file_problem(path, dataset_offset(path), str(ds.file_meta.TransferSyntaxUID))
    if problem:
        console.error(f"{name}: {printable(problem)}")
        return None
    return ds


def _print_text(ds: Any, path: Path, *, heading: bool, first: bool, meta_only: bool,
                only: frozenset[int], limits: Limits) -> None:
    from dcmtool.dicom.dump import dump_lines, printable

    lines = list(dump_lines(ds, data_set=not meta_only, only=only, limits=limits))
    if heading:  # several files: each under its name, as head(1) does
        lines.insert(0, f"# {printable(str(path))}")
        if not first:
            lines.insert(0, "")
    if lines:
        console.out("\n".join(lines))


def _warn(path: Path, caught: list[warnings.WarningMessage]) -> None:
    """pydicom's warnings about the file (invalid values, a VR switch), once each."""
    from dcmtool.cli.state import settings
    from dcmtool.dicom.dump import printable

    if settings.quiet:
        return
    seen: set[str] = set()
    for warning in caught:
        text = " ".join(str(warning.message).split(" Please see <")[0].split())
        if text not in seen:
            seen.add(text)
            console.err(f"dcmtool: warning: {printable(str(path))}: {printable(text)}")
