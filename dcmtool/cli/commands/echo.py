"""dcmtool echo: C-ECHO like ping, several peers at once, and --probe."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from dcmtool.cli import completion, console, options, render_echo
from dcmtool.cli.groups import LoggingOptions, NetworkOptions, logging_options, network_options

if TYPE_CHECKING:
    from dcmtool.config import Peer
    from dcmtool.net.outcomes import Negotiation
    from dcmtool.scu.echo import EchoAttempt, EchoResult

EPILOG = """Examples:

\b
  dcmtool echo PACS                      # a node from the config file
  dcmtool echo ORTHANC@127.0.0.1:4242 -c 5 -i 0.2
  dcmtool echo 10.0.0.5 104 -aec STORESCP -v
  dcmtool echo --all --json              # every configured node, concurrently
  dcmtool echo --probe PACS              # which SOP classes and syntaxes it accepts
"""


@network_options
@logging_options
def echo(
    peers: Annotated[
        Optional[list[str]],
        typer.Argument(metavar="PEER", autocompletion=completion.peers,
                       help="Node name, AET@HOST:PORT, or HOST PORT.",
                       show_default=False),
    ] = None,
    all_nodes: Annotated[
        bool, typer.Option("--all", help="Echo every node in the config file.")
    ] = False,
    count: Annotated[
        int, typer.Option("--count", "-c", min=1, metavar="N", help="C-ECHO requests per peer.")
    ] = 1,
    interval: Annotated[
        float, typer.Option("--interval", "-i", min=0, metavar="SECONDS",
                     help="Seconds between requests.")
    ] = 1.0,
    probe: Annotated[
        bool,
        typer.Option("--probe", help="Propose every storage SOP class with every transfer "
                     "syntax and print what the peer accepts."),
    ] = False,
    conformance: Annotated[
        bool,
        typer.Option("--conformance", help="With --probe: print what was observed as a "
                     "conformance statement (Markdown; --json for JSON)."),
    ] = False,
    json_output: options.JsonOutput = False,
    *,
    network: NetworkOptions,
    logging: LoggingOptions,
) -> None:
    """Verify peers with C-ECHO: round-trip times like ping, or --probe what they accept."""
    from dcmtool.cli.app import apply_logging
    from dcmtool.cli.state import overrides, settings
    from dcmtool.config import resolve_peer, split_peer_arguments
    from dcmtool.errors import UsageError

    apply_logging(logging)
    config = settings.config()
    specs: list[str | tuple[str, int]] = split_peer_arguments(peers or [])
    if all_nodes:
        if not config.nodes:
            raise UsageError(f"--all: no nodes configured in {config.path}",
                             hint="add one with: dcmtool config add NAME AET@HOST:PORT")
        specs += list(config.nodes)
    if not specs:
        raise UsageError("give a PEER (node name, AET@HOST:PORT or HOST PORT) or --all")
    flags = overrides(network)
    resolved = [resolve_peer(spec, config, flags) for spec in specs]

    from dcmtool.scu.echo import uses_pynetdicom

    if probe or any(uses_pynetdicom(peer) for peer in resolved):
        # pynetdicom's client, with only the network stack: no numpy, no pixel codecs.
        # (A plain echo needs neither: start-up time is part of the product.)
        from dcmtool.net.stack import load_network_only

        load_network_only()
    if conformance and not probe:
        raise UsageError("--conformance goes with --probe (what the peer accepts)")
    if probe:
        if len(resolved) != 1:
            raise UsageError("--probe takes exactly one PEER")
        _run_probe(resolved[0], json_output, settings.verbose, conformance)
    elif len(resolved) == 1 and not json_output:
        _run_single(resolved[0], count, interval, settings.verbose)
    else:
        _run_many(resolved, count, interval, json_output)


def _status_text(status: int | None) -> str:
    if status is None:
        return "no response"
    return "Success" if status == 0 else f"0x{status:04X}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _print_negotiation(negotiation: Negotiation) -> None:
    from dcmtool.dicom.syntaxes import describe

    console.out(f"  peer implementation class UID: {negotiation.peer_implementation_class_uid}")
    console.out(f"  peer implementation version:   {negotiation.peer_implementation_version_name}")
    console.out(f"  peer max PDU:                  {negotiation.peer_max_pdu}")
    for cx in negotiation.contexts:
        syntaxes = ", ".join(describe(t) for t in cx.transfer_syntaxes)
        console.out(f"  context {cx.context_id}: {cx.abstract_syntax} {cx.reason} ({syntaxes})")


def _run_single(peer: Peer, count: int, interval: float, verbose: int) -> None:
    from dcmtool.scu.echo import echo as do_echo

    def associated(p: Peer, negotiation: Negotiation) -> None:
        where = p.label if p.label == p.address else f"{p.label} ({p.address})"
        console.out(f"ECHO {where} from {p.calling_ae_title}: "
                    f"associated in {negotiation.associate_ms:.2f} ms")
        if verbose:
            _print_negotiation(negotiation)

    def attempt(p: Peer, a: EchoAttempt) -> None:
        console.out(f"reply from {p.label}: seq={a.sequence} status={_status_text(a.status)} "
                    f"time={_ms(a.rtt_ms)} ms")

    stop = threading.Event()
    try:
        result = do_echo(peer, count=count, interval=interval, on_attempt=attempt,
                         on_associated=associated, stop=stop)
    except KeyboardInterrupt:
        stop.set()
        raise
    if result.negotiation is not None:
        console.out(f"--- {peer.label} echo statistics ---")
        console.out(f"{result.sent} sent, {result.ok} ok, {result.sent - result.ok} failed, "
                    f"rtt min/avg/max = {_ms(result.rtt_min)}/{_ms(result.rtt_avg)}/"
                    f"{_ms(result.rtt_max)} ms")
    if result.error:
        raise result.error


def _run_many(peers: list[Peer], count: int, interval: float, as_json: bool) -> None:
    from dcmtool.errors import DcmtoolError, PartialFailure
    from dcmtool.scu.echo import echo_many

    results = echo_many(peers, count=count, interval=interval)
    if as_json:
        import json

        console.out(json.dumps([render_echo.result_json(r) for r in results], indent=2))
    else:
        rows = [
            [r.peer.label, r.peer.address, "ok" if r.succeeded else _short_error(r),
             r.sent, r.ok,
             _ms(r.negotiation.associate_ms if r.negotiation else None),
             _ms(r.rtt_min), _ms(r.rtt_avg), _ms(r.rtt_max)]
            for r in results
        ]
        console.print_table(
            ["PEER", "ADDRESS", "RESULT", "SENT", "OK", "ASSOC ms", "MIN ms", "AVG ms", "MAX ms"],
            rows,
            justify={c: "right" for c in ("SENT", "OK", "ASSOC ms", "MIN ms", "AVG ms", "MAX ms")},
        )
    failed = [r for r in results if not r.succeeded]
    if not failed:
        return
    for r in failed:
        if not as_json and r.error is not None:
            console.err(f"dcmtool: {r.peer.label}: {r.error.message}")
    if len(failed) < len(results):
        raise PartialFailure(f"{len(failed)} of {len(results)} peers failed")
    # Every peer failed: the first peer's error gives the exit code.
    first = failed[0].error
    raise first if first is not None else DcmtoolError("echo failed")


def _short_error(result: EchoResult) -> str:
    return result.error.message if result.error else "failed"


def _run_probe(peer: Peer, as_json: bool, verbose: int, conformance: bool = False) -> None:
    from dcmtool.scu.echo import probe

    def progress(done: int, total: int) -> None:
        if verbose:
            console.err(f"dcmtool: probe: association {done} of {total}")

    result = probe(peer, on_progress=progress)
    if conformance:
        from dcmtool.cli.render_conformance import print_observed

        print_observed(result, as_json)
        return
    if as_json:
        import json

        console.out(json.dumps(render_echo.probe_json(result), indent=2))
        return
    render_echo.print_probe(result)
