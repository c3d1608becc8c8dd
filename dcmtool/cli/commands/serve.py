"""dcmtool serve: the folder-backed archive SCP (Verification and Storage)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from dcmtool.cli import console, options
from dcmtool.cli.groups import LoggingOptions, logging_options

if TYPE_CHECKING:
    from dcmtool.scp.server import RunningServer

EPILOG = """Examples:

\b
  dcmtool serve                                  # ./dcmtool-archive on 127.0.0.1:11112 as DCMTOOL
  dcmtool serve /data/pacs --port 4242 --aet TESTPACS --bind 0.0.0.0
  dcmtool serve --allow MODALITY1 --allow MODALITY2 --require-called-aet
  dcmtool serve --duplicates overwrite --on-stored 'echo stored {path}'
  dcmtool serve --on-study-complete './notify.sh {study} {count}' --study-timeout 30
  dcmtool serve --reindex                        # rebuild the index from the files, then exit

Default layout (every value made safe as a path component):

\b
  {PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm

Hook placeholders (values are shell-quoted): {path} {dir} {sop} {study} {calling_aet}
{called_aet}; --on-study-complete also {count}. Settings can live in the config file's
[serve] table (root, port, ae_title, bind, layout, duplicates, min_free, ...).
"""

PANEL = "Archive"


@logging_options
def serve(
    root: Annotated[
        Optional[Path],
        typer.Argument(metavar="ROOT", help="Archive folder (default ./dcmtool-archive).",
                       show_default=False),
    ] = None,
    port: Annotated[Optional[int], typer.Option("--port", "-p", min=0, max=65535,
                    metavar="PORT", help="Port to listen on (default 11112; 0 = any free).",
                    show_default=False)] = None,
    aet: Annotated[Optional[str], typer.Option("--aet", "-aet", metavar="AET",
                   help="Our AE title (default DCMTOOL).", show_default=False)] = None,
    bind: Annotated[Optional[str], typer.Option("--bind", metavar="ADDRESS",
                    help="Address to listen on (default 127.0.0.1; 0.0.0.0 for every "
                    "interface).", show_default=False)] = None,
    layout: Annotated[Optional[str], typer.Option("--layout", metavar="PATTERN",
                      help="File layout from {Keyword} placeholders (default below); must "
                      "contain {SOPInstanceUID}.",
                      rich_help_panel=PANEL, show_default=False)] = None,
    duplicates: Annotated[Optional[str], typer.Option("--duplicates",
                          metavar="reject|ignore|overwrite",
                          help="A SOP Instance UID already stored: reject answers 0x0111 "
                          "(default), ignore keeps the stored copy, overwrite replaces it.",
                          rich_help_panel=PANEL, show_default=False)] = None,
    min_free: Annotated[Optional[str], typer.Option("--min-free", metavar="SIZE",
                        help="Refuse instances (0xA700) when less space is free "
                        "(default 100M).", rich_help_panel=PANEL, show_default=False)] = None,
    max_identifier: Annotated[Optional[str], typer.Option(
        "--max-identifier", metavar="SIZE", help="Abort an association whose command set or "
        "identifier grows past SIZE in memory (default 16M; C-STORE data sets go to disk).",
        rich_help_panel=PANEL, show_default=False)] = None,
    accept_unknown: Annotated[bool, typer.Option("--accept-unknown",
                              help="Accept any SOP class as storage, not only those pydicom "
                              "knows.", rich_help_panel=PANEL)] = False,
    accept_ts: Annotated[Optional[list[str]], typer.Option("--accept-ts", metavar="SYNTAX",
                         help="Accept only these transfer syntaxes, preferred in the order "
                         "given (repeatable; names or UIDs).", rich_help_panel=PANEL,
                         show_default=False)] = None,
    reindex: Annotated[bool, typer.Option("--reindex", help="Rebuild the index from the "
                       "files and exit.", rich_help_panel=PANEL)] = False,
    require_called_aet: Annotated[bool, typer.Option("--require-called-aet",
                                  help="Reject associations not addressed to our AE title.",
                                  rich_help_panel=options.NETWORK)] = False,
    allow: Annotated[Optional[list[str]], typer.Option("--allow", metavar="AET",
                     help="Accept only these calling AE titles (repeatable).",
                     rich_help_panel=options.NETWORK, show_default=False)] = None,
    max_associations: Annotated[Optional[int], typer.Option("--max-associations", min=1,
                                metavar="N", help="Concurrent associations (default 100).",
                                rich_help_panel=options.NETWORK,
                                show_default=False)] = None,
    max_pdu: options.MaxPDU = None,
    acse_timeout: options.AcseTimeout = None,
    dimse_timeout: options.DimseTimeout = None,
    network_timeout: options.NetworkTimeout = None,
    tls_cert: options.TlsCert = None,
    tls_key: options.TlsKey = None,
    tls_ca: Annotated[Optional[Path], typer.Option("--tls-ca", metavar="PEM",
                      help="Require client certificates signed by this CA.",
                      rich_help_panel=options.NETWORK, show_default=False)] = None,
    on_stored: Annotated[Optional[str], typer.Option("--on-stored", metavar="CMD",
                         help="Run CMD after each instance is stored.",
                         rich_help_panel="Hooks", show_default=False)] = None,
    on_study_complete: Annotated[Optional[str], typer.Option("--on-study-complete",
                                 metavar="CMD", help="Run CMD when a study has received "
                                 "nothing for --study-timeout seconds.",
                                 rich_help_panel="Hooks", show_default=False)] = None,
    study_timeout: Annotated[Optional[float], typer.Option("--study-timeout", min=0.1,
                             metavar="SECONDS", help="Idle time that completes a study "
                             "(default 60).", rich_help_panel="Hooks",
                             show_default=False)] = None,
    max_results: Annotated[Optional[int], typer.Option(
        "--max-results", min=1, metavar="N", help="C-FIND: answer at most N matches, then "
        "success with a logged warning.", rich_help_panel="Query/Retrieve",
        show_default=False)] = None,
    utf8_answers: Annotated[bool, typer.Option(
        "--utf8-answers", help="C-FIND: answer in UTF-8 (ISO_IR 192) whatever the stored "
        "character set.", rich_help_panel="Query/Retrieve")] = False,
    case_insensitive_names: Annotated[bool, typer.Option(
        "--case-insensitive-names", help="C-FIND: person names match ignoring case.",
        rich_help_panel="Query/Retrieve")] = False,
    *,
    logging: LoggingOptions,
) -> None:
    """Run the archive: receive and keep everything, indexed in SQLite (Ctrl-C stops)."""
    from dataclasses import replace

    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.state import settings

    # A server logs one line per association and per instance by default (-q: errors only).
    apply_logging(replace(logging, verbose=max(logging.verbose, 0 if logging.quiet else 1)))
    from dcmtool.scp.options import ServeRequest, build_serve_options
    from dcmtool.scp.server import lenient_value_reading, open_archive

    lenient_value_reading()

    request = ServeRequest(
        root=root, port=port, ae_title=aet, bind=bind, layout=layout, duplicates=duplicates,
        min_free=min_free, accept_unknown=accept_unknown or None, accept_ts=accept_ts,
        require_called_aet=require_called_aet or None, allow=allow,
        max_associations=max_associations, max_pdu=max_pdu, acse_timeout=acse_timeout,
        dimse_timeout=dimse_timeout, network_timeout=network_timeout, tls_cert=tls_cert,
        tls_key=tls_key, tls_ca=tls_ca, on_stored=on_stored,
        on_study_complete=on_study_complete, study_timeout=study_timeout,
        max_results=max_results, utf8_answers=utf8_answers or None,
        case_insensitive_names=case_insensitive_names or None,
        max_identifier=max_identifier,
    )
    resolved, policy, archive_root = build_serve_options(request, settings.config())
    if reindex:
        _reindex(archive_root, policy)
        return
    archive, report = open_archive(archive_root, policy)
    if not report.consistent:
        console.err(
            f"dcmtool: the index disagreed with {archive_root}: removed "
            f"{report.removed_partial} partial transfer(s), indexed {report.indexed_orphans} "
            f"file(s) it lacked, dropped {report.dropped_missing} row(s) whose file is gone")
    for path in report.unreadable:
        console.err(f"dcmtool: warning: not a readable DICOM file, left alone: {path}")
    from dcmtool.scp.server import start_server

    try:
        server = start_server(archive, resolved)
    except BaseException:
        archive.close()
        raise
    host, bound_port = server.address
    counts = archive.index.counts()
    console.err(f"dcmtool: serving {archive_root} as {resolved.ae_title} on {host}:{bound_port}"
                f" ({counts['instances']} instances, {counts['studies']} studies); "
                "Ctrl-C stops")
    _run_until_signalled(server)


def _reindex(root: Path, policy: Any) -> None:
    from dcmtool.archive.storage import Archive

    archive = Archive(root, policy, holder="dcmtool serve --reindex")
    try:
        def progress(done: int) -> None:
            if done % 1000 == 0:
                console.err(f"dcmtool: reindex: {done} files")

        indexed, unreadable = archive.reindex(progress)
    finally:
        archive.close()
    for path in unreadable:
        console.err(f"dcmtool: warning: not a readable DICOM file: {path}")
    console.err(f"dcmtool: index rebuilt from {root}: {indexed} instances"
                + (f", {len(unreadable)} unreadable file(s)" if unreadable else ""))


def _run_until_signalled(server: RunningServer) -> None:
    stop = threading.Event()
    received: list[int] = []

    def on_signal(number: int, _frame: Any) -> None:
        received.append(number)
        stop.set()

    def on_second_signal(number: int, _frame: Any) -> None:
        console.err("dcmtool: aborting the associations still open")
        server.abort_open()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    status = _StatusLine(server) if sys.stderr.isatty() else None
    try:
        while not stop.wait(1.0 if status else 3600):
            if status:
                status.draw()
        if status:
            status.clear()
        console.err("dcmtool: stopping: no new associations; finishing transfers in progress "
                    "(Ctrl-C again aborts them)")
        for number in previous:
            signal.signal(number, on_second_signal)
        server.stop()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    stats = server.stats
    console.err(f"dcmtool: stopped: {stats.stored} stored, {stats.refused} refused in "
                f"{stats.associations} associations")


class _StatusLine:
    """One line on a terminal's stderr, redrawn in place."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.last = (time.monotonic(), 0)

    def draw(self) -> None:
        s = self.server.stats
        now = time.monotonic()
        then, bytes_then = self.last
        rate = (s.bytes_stored - bytes_then) / max(now - then, 1e-6) / 1e6
        self.last = (now, s.bytes_stored)
        sys.stderr.write(f"\r\x1b[K{s.open_associations} open, {s.associations} associations, "
                         f"{s.stored} stored, {s.refused} refused, "
                         f"{s.bytes_stored / 1e6:.1f} MB, {rate:.1f} MB/s")
        sys.stderr.flush()

    def clear(self) -> None:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
