"""Options shared by the subcommands, declared once and named as DCMTK users know them.

Click parses single-dash multi-letter names (``-aet``) as options in their own right; a test
pins that ``-aet X`` and ``--calling-aet X`` mean the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from dcmtool.cli import completion

NETWORK = "Network"
LOGGING = "Logging"
OUTPUT = "Output"

CallingAET = Annotated[
    Optional[str],
    typer.Option("--calling-aet", "-aet", envvar="DCMTOOL_CALLING_AET", metavar="AET",
                 help="Our AE title (default: [local] ae_title, else DCMTOOL).",
                 rich_help_panel=NETWORK, show_default=False),
]
CalledAET = Annotated[
    Optional[str],
    typer.Option("--called-aet", "-aec", envvar="DCMTOOL_CALLED_AET", metavar="AET",
                 help="The peer's AE title (default: from the node or AET@, else ANY-SCP).",
                 rich_help_panel=NETWORK, show_default=False),
]
MaxPDU = Annotated[
    Optional[int],
    typer.Option("--max-pdu", "-pdu", envvar="DCMTOOL_MAX_PDU", metavar="BYTES", min=0,
                 help="Largest PDU we accept (0 = unlimited; default 262144).",
                 rich_help_panel=NETWORK, show_default=False),
]
ConnectTimeout = Annotated[
    Optional[float],
    typer.Option("--connect-timeout", "-tc", envvar="DCMTOOL_CONNECT_TIMEOUT", metavar="SECONDS",
                 min=0,
                 help="TCP connect timeout in seconds (default 10).", rich_help_panel=NETWORK,
                 show_default=False),
]
AcseTimeout = Annotated[
    Optional[float],
    typer.Option("--acse-timeout", "-ta", envvar="DCMTOOL_ACSE_TIMEOUT", metavar="SECONDS", min=0,
                 help="Wait for association answers, in seconds (default 30).",
                 rich_help_panel=NETWORK, show_default=False),
]
DimseTimeout = Annotated[
    Optional[float],
    typer.Option("--dimse-timeout", "-td", envvar="DCMTOOL_DIMSE_TIMEOUT", metavar="SECONDS", min=0,
                 help="Wait for DIMSE responses, in seconds (default 60).",
                 rich_help_panel=NETWORK, show_default=False),
]
NetworkTimeout = Annotated[
    Optional[float],
    typer.Option("--network-timeout", "-tn", envvar="DCMTOOL_NETWORK_TIMEOUT", metavar="SECONDS",
                 min=0, help="Close an idle association after S seconds (default 60).",
                 rich_help_panel=NETWORK, show_default=False),
]
TlsCert = Annotated[
    Optional[Path],
    typer.Option("--tls-cert", envvar="DCMTOOL_TLS_CERT", metavar="PEM",
                 help="Our certificate (PEM); turns TLS on.", rich_help_panel=NETWORK,
                 show_default=False),
]
TlsKey = Annotated[
    Optional[Path],
    typer.Option("--tls-key", envvar="DCMTOOL_TLS_KEY", metavar="PEM",
                 help="Private key for --tls-cert (PEM).", rich_help_panel=NETWORK,
                 show_default=False),
]
TlsCA = Annotated[
    Optional[Path],
    typer.Option("--tls-ca", envvar="DCMTOOL_TLS_CA", metavar="PEM",
                 help="CA certificates that sign the peer's certificate; turns TLS on.",
                 rich_help_panel=NETWORK, show_default=False),
]
NoHostnameCheck = Annotated[
    bool,
    typer.Option("--no-hostname-check", help="Accept a peer certificate issued for another name.",
                 rich_help_panel=NETWORK),
]

Verbose = Annotated[
    int,
    typer.Option("--verbose", "-v", count=True, help="More detail (-v: negotiation, info logs).",
                 rich_help_panel=LOGGING, show_default=False),
]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="Only errors on stderr.", rich_help_panel=LOGGING)
]
Debug = Annotated[
    bool,
    typer.Option("--debug", "-d", help="Debug logs, including PDU and DIMSE messages.",
                 rich_help_panel=LOGGING),
]
LogFile = Annotated[
    Optional[Path],
    typer.Option("--log-file", metavar="FILE", help="Also write logs to FILE.",
                 rich_help_panel=LOGGING, show_default=False),
]
Traceback = Annotated[
    bool,
    typer.Option("--traceback", help="Show the Python traceback of an error (for bug reports).",
                 rich_help_panel=LOGGING),
]

JsonOutput = Annotated[
    bool,
    typer.Option("--json", help="Print the results as JSON on stdout.", rich_help_panel=OUTPUT),
]

QUERY = "Query"

Keys = Annotated[
    Optional[list[str]],
    typer.Option("--key", "-k", metavar="KEY=VALUE",
                 help="Matching key (Keyword=Value, (gggg,eeee)=Value, Seq[0].Keyword=Value) or, "
                 "without a value, a return key. Repeatable.", rich_help_panel=QUERY,
                 show_default=False),
]
PatientRoot = Annotated[
    bool, typer.Option("--patient-root", "-P", help="Patient Root information model.",
                       rich_help_panel=QUERY)
]
StudyRoot = Annotated[
    bool, typer.Option("--study-root", "-S", help="Study Root information model (default).",
                       rich_help_panel=QUERY)
]
PatientStudyOnly = Annotated[
    bool, typer.Option("--patient-study-only", "-O",
                       help="Patient/Study Only information model (retired).",
                       rich_help_panel=QUERY)
]
JsonLines = Annotated[
    bool, typer.Option("--jsonl", help="One DICOM JSON object per line on stdout.",
                       rich_help_panel=OUTPUT)
]
CsvOutput = Annotated[
    bool, typer.Option("--csv", help="CSV on stdout, one column per key.",
                       rich_help_panel=OUTPUT)
]
Out = Annotated[
    Optional[Path],
    typer.Option("--out", "-o", metavar="DIR", help="Write the retrieved instances into DIR "
                 "as plain files (see --layout; --archive for an indexed archive).",
                 show_default=False),
]
Layout = Annotated[
    Optional[str],
    typer.Option("--layout", metavar="PATTERN", autocompletion=completion.layouts,
                 help="File names under --out: 'study' "
                 "(default: STUDYUID/CT.SOPUID.dcm), 'flat' (CT.SOPUID.dcm, like DCMTK -od), "
                 "'archive' (serve's) or a pattern of {Keyword}s.", show_default=False),
]
AsArchive = Annotated[
    bool,
    typer.Option("--archive", help="Make --out an archive like 'dcmtool serve' keeps (index, "
                 "audit trail, serve's layout), that 'dcmtool serve DIR' can serve."),
]
FromList = Annotated[
    Optional[str],
    typer.Option("--from", metavar="FILE", help="Retrieve each entry of FILE (- for stdin): "
                 "find's output (tab-separated into a pipe, or --jsonl), a CSV, or one value "
                 "per line (Study Instance UIDs or accession numbers).", show_default=False),
]
FromKey = Annotated[
    Optional[str],
    typer.Option("--from-key", metavar="KEYWORD", autocompletion=completion.retrieve_keys,
                 help="What the plain values of --from are: "
                 "StudyInstanceUID, AccessionNumber, PatientID, SeriesInstanceUID.",
                 show_default=False),
]


def model_name(patient_root: bool, study_root: bool, patient_study_only: bool) -> str:
    """The information model the -P/-S/-O flags choose (Study Root by default)."""
    from dcmtool.errors import UsageError

    if patient_root + study_root + patient_study_only > 1:
        raise UsageError("choose one of -P, -S and -O")
    return "patient" if patient_root else "patient-study" if patient_study_only else "study"


SELECT = "Selection"

Study = Annotated[
    Optional[list[str]],
    typer.Option("--study", metavar="UID", help="Study Instance UID (repeatable).",
                 rich_help_panel=SELECT, show_default=False),
]
Series = Annotated[
    Optional[list[str]],
    typer.Option("--series", metavar="UID", help="Series Instance UID (repeatable).",
                 rich_help_panel=SELECT, show_default=False),
]
Accession = Annotated[
    Optional[list[str]],
    typer.Option("--accession", metavar="N", help="Accession number, resolved by C-FIND "
                 "(repeatable).", rich_help_panel=SELECT, show_default=False),
]
PatientIdSelection = Annotated[
    Optional[list[str]],
    typer.Option("--patient-id", metavar="ID", help="Patient ID (repeatable).",
                 rich_help_panel=SELECT, show_default=False),
]
RetrieveLevel = Annotated[
    Optional[str],
    typer.Option("--level", "-L", metavar="LEVEL", autocompletion=completion.levels,
                 help="Level of the -k identifier "
                 "(default STUDY).", rich_help_panel=SELECT, show_default=False),
]
