"""dcmtool serve: the folder-backed archive SCP (Verification and Storage)."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from dcmtool.cli import completion, console, options
from dcmtool.cli.groups import LoggingOptions, logging_options
from dcmtool.errors import ExitCode

if TYPE_CHECKING:
    from dcmtool.scp.server import RunningServer

EPILOG = """Examples:

\b
  dcmtool serve                                  # ./dcmtool-archive on 127.0.0.1:11112 as DCMTOOL
  dcmtool serve /data/pacs --port 4242 --aet TESTPACS --bind 0.0.0.0
  dcmtool serve --allow MODALITY1 --allow MODALITY2 --require-called-aet
  dcmtool serve --duplicates reject --on-stored 'echo stored {path}'
  dcmtool serve --on-study-complete './notify.sh {study} {count}' --study-timeout 30
  dcmtool serve --reindex                        # rebuild the index from the files, then exit
  dcmtool serve --rescan                         # check every file against the index, then serve
  dcmtool serve --conformance > conformance.md   # this configuration's conformance statement

Default layout (every value made safe as a path component):

\b
  {PatientID}/{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}.dcm

Hook placeholders (values are shell-quoted): {path} {dir} {sop} {study} {calling_aet}
{called_aet}; --on-study-complete also {count}. Settings can live in the config file's
[serve] table (root, port, ae_title, bind, layout, duplicates, min_free, ...).

C-MOVE destinations are the config file's nodes, by AE title (an unknown one answers
0xA801): add one with 'dcmtool config add NAME AET@HOST:PORT'. serve re-reads the nodes when
the file changes (checked at each C-MOVE) and on SIGHUP, and logs "config reloaded: N nodes";
a file that no longer loads keeps the nodes read before, with a warning.

Modality worklist: C-FIND (MWL) is answered from ROOT/worklist/, DCMTK-style .wl files or
DICOM JSON files, re-read when they change.

Storage commitment (Push Model SCP): an instance is committed when it is indexed, its file is
whole and its SOP class is the one asked for (else failure reason 0x0112 or 0x0119). The
report goes on the requester's association while it stays open, else on a new one to the
node of the calling AE title (serve as SCP); a calling AE with no node is refused (0x0110).

MPPS: N-CREATE and N-SET keep each step in ROOT/mpps/ and the index; a step COMPLETED or
DISCONTINUED takes no more updates (0x0110).

Logging: one line per association on stderr (-v adds one per instance and per request, -q
shows errors only); every event also goes to ROOT/audit.jsonl.

Stopping: Ctrl-C (SIGINT) or SIGTERM stops accepting and lets transfers in progress finish
(a second Ctrl-C aborts them); then serve exits 130 after SIGINT, as any interrupted command,
and 0 after SIGTERM, the way a service manager stops a daemon.

Starting: an instance is acknowledged only once its file and its index rows are on disk, and
the index keeps a journal of the instances being placed, so a start (even after a crash or a
power cut) checks just those and the partial transfers in ROOT/.incoming: a restart takes
the same time with a million instances as with ten. Files added to or deleted from the folder
by hand are found by --rescan (every file) or --reindex (rebuild).
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
                      autocompletion=completion.layouts,
                      help="File layout from {Keyword} placeholders (default below); must "
                      "contain {SOPInstanceUID}.",
                      rich_help_panel=PANEL, show_default=False)] = None,
    duplicates: Annotated[Optional[str], typer.Option("--duplicates",
                          autocompletion=completion.duplicates,
                          metavar="reject|ignore|overwrite",
                          help="A SOP Instance UID already stored: ignore (default) answers "
                          "success and keeps the stored copy, reject answers 0x0111, overwrite "
                          "replaces it.",
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
                         autocompletion=completion.transfer_syntaxes,
                         help="Accept only these transfer syntaxes, preferred in the order "
                         "given (repeatable; names or UIDs).", rich_help_panel=PANEL,
                         show_default=False)] = None,
    reindex: Annotated[bool, typer.Option("--reindex", help="Rebuild the index from the "
                       "files and exit.", rich_help_panel=PANEL)] = False,
    conformance: Annotated[bool, typer.Option(
        "--conformance", help="Print the conformance statement of this configuration "
        "(Markdown; --json for JSON) and exit.", rich_help_panel=PANEL)] = False,
    json_output: options.JsonOutput = False,
    rescan: Annotated[bool, typer.Option("--rescan", help="Walk every file at start: index "
                      "files added by hand, drop rows whose file was deleted (a start "
                      "otherwise checks only what a stop or crash interrupted).",
                      rich_help_panel=PANEL)] = False,
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

    # A server logs one line per association by default, one per instance and request with
    # -v, errors only with -q.
    per_instance = bool(logging.verbose or settings.verbose)
    apply_logging(replace(logging, verbose=max(logging.verbose, 0 if logging.quiet else 1)))
    _detail_on_stderr(per_instance)
    from dcmtool.scp.options import ServeRequest, build_serve_options
    from dcmtool.scp.report import plural
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
    if conformance:
        from dcmtool.cli.render_conformance import print_statement
        from dcmtool.scp.conformance import statement

        print_statement(statement(resolved, duplicates=policy.duplicates,
                                  layout=policy.layout.pattern,
                                  min_free_bytes=policy.min_free_bytes), json_output)
        return
    if json_output:
        from dcmtool.errors import UsageError

        raise UsageError("--json goes with --conformance (serve logs on stderr)")
    if reindex:
        _reindex(archive_root, policy)
        return
    archive, report = open_archive(archive_root, policy, rescan=rescan)
    if not report.consistent:
        console.err(
            f"dcmtool: the index disagreed with {archive_root}: removed "
            f"{plural(report.removed_partial, 'partial transfer')}, indexed "
            f"{plural(report.indexed_orphans, 'file')} it lacked, dropped "
            f"{plural(report.dropped_missing, 'row')} whose file is gone")
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
                f" ({plural(counts['instances'], 'instance')}, "
                f"{plural(counts['studies'], 'study', 'studies')}); Ctrl-C stops")
    if _run_until_signalled(server) == signal.SIGINT:
        raise typer.Exit(int(ExitCode.INTERRUPTED))


def _reindex(root: Path, policy: Any) -> None:
    from dcmtool.archive.storage import Archive
    from dcmtool.scp.report import plural

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
    console.err(f"dcmtool: index rebuilt from {root}: {plural(indexed, 'instance')}"
                + (f", {plural(len(unreadable), 'unreadable file')}" if unreadable else ""))


def _detail_on_stderr(shown: bool) -> None:
    """Lines per instance and per request (logger ``dcmtool.serve.detail``) reach stderr only
    with -v; a --log-file keeps them all the same."""
    if shown:
        return

    def not_detail(record: logging.LogRecord) -> bool:
        return not record.name.startswith("dcmtool.serve.detail") or \
            record.levelno >= logging.ERROR

    handlers = logging.getLogger().handlers
    kept = any(isinstance(handler, logging.FileHandler) for handler in handlers)
    # Nobody keeps them: not even made (a record per instance costs more than its store).
    logging.getLogger("dcmtool.serve.detail").setLevel(logging.NOTSET if kept else logging.ERROR)
    for handler in handlers:
        if getattr(handler, "_dcmtool", False) and not isinstance(handler, logging.FileHandler):
            handler.addFilter(not_detail)


def _run_until_signalled(server: RunningServer) -> int:
    """Serve until SIGINT or SIGTERM, then stop gracefully; the signal that stopped it.
    SIGHUP re-reads the config file's nodes (the C-MOVE destinations)."""
    from dcmtool.scp.report import plural

    wake = threading.Event()
    received: list[int] = []
    reload_requests: list[int] = []

    def on_signal(number: int, _frame: Any) -> None:
        received.append(number)
        wake.set()

    def on_hangup(number: int, _frame: Any) -> None:
        reload_requests.append(number)
        wake.set()

    def on_second_signal(number: int, _frame: Any) -> None:
        console.err("dcmtool: aborting the associations still open")
        server.abort_open()

    stopping = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, on_signal) for s in stopping}
    hangup = getattr(signal, "SIGHUP", None)  # not on Windows
    if hangup is not None:
        previous[hangup] = signal.signal(hangup, on_hangup)
    status = _StatusLine(server) if sys.stderr.isatty() else None
    try:
        while not received:
            wake.wait(1.0 if status else 3600)
            wake.clear()
            if reload_requests:
                reload_requests.clear()
                server.reload_destinations("SIGHUP")
            if status and not received:
                status.draw()
        if status:
            status.clear()
        console.err("dcmtool: stopping: no new associations; finishing transfers in progress "
                    "(Ctrl-C again aborts them)")
        for number in stopping:
            signal.signal(number, on_second_signal)
        server.stop()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    stats = server.stats
    duplicates = f", {plural(stats.duplicates, 'duplicate')} ignored" if stats.duplicates \
        else ""
    console.err(f"dcmtool: stopped: {stats.stored - stats.duplicates} stored{duplicates}, "
                f"{stats.refused} refused in {plural(stats.associations, 'association')}")
    return received[0]


class _StatusLine:
    """One line on a terminal's stderr, redrawn in place."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.last = (time.monotonic(), 0)

    def draw(self) -> None:
        from dcmtool.scp.report import plural

        s = self.server.stats
        now = time.monotonic()
        then, bytes_then = self.last
        rate = (s.bytes_stored - bytes_then) / max(now - then, 1e-6) / 1e6
        self.last = (now, s.bytes_stored)
        sys.stderr.write(f"\r\x1b[K{s.open_associations} open, "
                         f"{plural(s.associations, 'association')}, "
                         f"{s.stored - s.duplicates} stored, {s.refused} refused, "
                         f"{s.bytes_stored / 1e6:.1f} MB, {rate:.1f} MB/s")
        sys.stderr.flush()

    def clear(self) -> None:
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()
