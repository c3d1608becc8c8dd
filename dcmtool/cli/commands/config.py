"""dcmtool config: where the config file is, what it says, and adding or removing nodes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional, TypeVar

import typer

from dcmtool.cli import completion, console, options

T = TypeVar("T")

app = typer.Typer(
    rich_markup_mode=None,
    help="Show and edit the config file: [local] AE and named peers ([nodes.NAME]).",
    no_args_is_help=True,
    epilog="Examples:\n\n\b\n  dcmtool config add PACS PACS@10.0.0.5:104 --calling-aet WS1\n"
    "  dcmtool config show --json\n  dcmtool config remove PACS",
)


def config_root() -> None:
    """Show and edit the config file."""


def _path() -> Path:
    from dcmtool.cli.state import settings

    assert settings.config_path is not None
    return settings.config_path


def _guard(function: Callable[[], None]) -> Callable[[], None]:
    from dcmtool.cli.guard import guarded

    return guarded(function)


@app.command("path")
def path_command() -> None:
    """Print the config file's path (it may not exist yet)."""
    console.out(str(_path()))


@app.command("show")
def show_command(json_output: options.JsonOutput = False) -> None:
    """Print the config file after validation (nodes, [local], [serve])."""

    def run() -> None:
        from dcmtool.cli.state import settings
        from dcmtool.config import read_document

        path = _path()
        config = settings.config()
        if not config.exists:
            console.err(f"dcmtool: no config file at {path} (defaults apply)")
        document = read_document(path)
        if json_output:
            console.out(json.dumps(document, indent=2, default=str))
            return
        import tomli_w

        console.out(f"# {path}")
        console.out(tomli_w.dumps(document).rstrip())

    _guard(run)()


@app.command("add")
def add_command(
    name: Annotated[str, typer.Argument(metavar="NAME",
                                        help="Node name used on the command line.")],
    address: Annotated[str, typer.Argument(metavar="AET@HOST:PORT",
                                           help="The peer's AE title, host and port.")],
    calling_aet: options.CallingAET = None,
    max_pdu: options.MaxPDU = None,
    connect_timeout: options.ConnectTimeout = None,
    acse_timeout: options.AcseTimeout = None,
    dimse_timeout: options.DimseTimeout = None,
    network_timeout: options.NetworkTimeout = None,
    tls_cert: options.TlsCert = None,
    tls_key: options.TlsKey = None,
    tls_ca: options.TlsCA = None,
    transfer_syntax: Annotated[
        Optional[list[str]],
        typer.Option("--ts", metavar="NAME", autocompletion=completion.transfer_syntaxes,
                     help="Preferred transfer syntax (repeatable).",
                     show_default=False),
    ] = None,
    retrieve: Annotated[
        Optional[str],
        typer.Option("--retrieve", metavar="move|get", help="How 'dcmtool move' retrieves.",
                     show_default=False),
    ] = None,
    *,
    ctx: typer.Context,
) -> None:
    """Add (or replace) a node; other entries of the file are kept."""

    def run() -> None:
        from dcmtool.config import add_node

        def as_str(p: Path | None) -> str | None:
            return None if p is None else str(p.expanduser().resolve())

        def typed(parameter: str, value: T) -> T | None:
            # Only what was typed is saved: DCMTOOL_CALLING_AET and the like in this shell
            # are for this shell, not for the node.
            source = ctx.get_parameter_source(parameter)
            return None if source is not None and source.name == "ENVIRONMENT" else value

        node = add_node(_path(), name, address, {
            "calling_ae_title": typed("calling_aet", calling_aet),
            "max_pdu": typed("max_pdu", max_pdu),
            "connect_timeout": typed("connect_timeout", connect_timeout),
            "acse_timeout": typed("acse_timeout", acse_timeout),
            "dimse_timeout": typed("dimse_timeout", dimse_timeout),
            "network_timeout": typed("network_timeout", network_timeout),
            "tls_cert": as_str(typed("tls_cert", tls_cert)),
            "tls_key": as_str(typed("tls_key", tls_key)),
            "tls_ca": as_str(typed("tls_ca", tls_ca)),
            "transfer_syntaxes": transfer_syntax or None,
            "retrieve": retrieve,
        })
        console.err(f"dcmtool: node {node.name} = {node.ae_title}@{node.host}:{node.port} "
                    f"written to {_path()}")

    _guard(run)()


@app.command("remove")
def remove_command(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Node to remove.")],
) -> None:
    """Remove a node; other entries of the file are kept."""

    def run() -> None:
        from dcmtool.config import remove_node

        remove_node(_path(), name)
        console.err(f"dcmtool: node {name} removed from {_path()}")

    _guard(run)()
