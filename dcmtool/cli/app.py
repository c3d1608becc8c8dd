"""The root of the CLI: global options, the subcommands, and the one place errors become exit
codes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

from dcmtool.cli import console
from dcmtool.cli.groups import LoggingOptions, logging_options
from dcmtool.cli.guard import guarded
from dcmtool.cli.state import Settings, settings
from dcmtool.errors import EXIT_CODE_MEANINGS, ExitCode


def exit_code_table() -> str:
    return "\n".join(f"{int(code):>4}  {text}" for code, text in EXIT_CODE_MEANINGS.items())


HELP = """DICOM network utilities: verify peers, send, query, retrieve, serve an archive.

A PEER is a node name from the config file, AET@HOST:PORT, or HOST PORT with --called-aet.
"""

# "\b" keeps click from re-wrapping the paragraph that follows it.
EPILOG = "Exit codes:\n\n\b\n" + exit_code_table()

#: The sub-apps (several commands under one name) and the callback of each.
GROUP_CALLBACKS = {"mpps": "mpps_root", "dicomdir": "dicomdir_root", "config": "config_root"}


def load_command(name: str) -> Any:
    """Build the click command of subcommand ``name`` from its module: only the command run
    (or asked for help) is imported and has its options built."""
    import importlib

    import typer.main

    module = importlib.import_module(f"dcmtool.cli.commands.{name}")
    holder = typer.Typer(rich_markup_mode=None, pretty_exceptions_enable=False,
                         add_completion=False)
    if name in GROUP_CALLBACKS:
        callback = getattr(module, GROUP_CALLBACKS[name])
        holder.add_typer(module.app, name=name, short_help=SUMMARIES[name],
                         callback=guarded(callback) if name == "config" else callback)
    else:
        holder.command(name, epilog=module.EPILOG, short_help=SUMMARIES[name])(
            guarded(getattr(module, name)))
    return typer.main.get_group(holder).commands[name]


class _LazyCommands(dict[str, Any]):
    """The root's commands: every name is listed (for --help, "did you mean" and completion),
    a command is built the first time it is looked up."""

    def __init__(self) -> None:
        super().__init__()

    def keys(self) -> Any:
        return SUMMARIES.keys()

    def __contains__(self, name: object) -> bool:
        return name in SUMMARIES

    def __iter__(self) -> Any:
        return iter(SUMMARIES)

    def __len__(self) -> int:
        return len(SUMMARIES)

    def __getitem__(self, name: str) -> Any:
        return self._load(name)

    def get(self, name: str, default: Any = None) -> Any:
        return self._load(name) if name in SUMMARIES else default

    def items(self) -> Any:
        return [(name, self._load(name)) for name in SUMMARIES]

    def values(self) -> Any:
        return [self._load(name) for name in SUMMARIES]

    def _load(self, name: str) -> Any:
        if not super().__contains__(name):
            super().__setitem__(name, load_command(name))
        return super().__getitem__(name)


class LazyGroup(TyperGroup):
    """The root command: lists the subcommands from ``SUMMARIES`` and imports one only when
    it runs, so ``dcmtool --help`` and ``dcmtool echo`` do not pay for the others."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands()

    def list_commands(self, ctx: Any) -> list[str]:
        return list(SUMMARIES)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(list(SUMMARIES.items()))


app = typer.Typer(
    name="dcmtool",
    help=HELP,
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    cls=LazyGroup,
    rich_markup_mode=None,  # help text names [local] and [nodes.NAME]: not markup
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    from dcmtool import __version__

    console.out(f"dcmtool {__version__}")
    for package in ("pynetdicom", "pydicom", "typer", "rich", "pylibjpeg",
                    "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle"):
        try:
            console.out(f"  {package} {version(package)}")
        except PackageNotFoundError:
            console.out(f"  {package} not installed")
    console.out(f"  python {sys.version.split()[0]}")
    raise typer.Exit()


@app.callback()
@logging_options
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True,
                     help="Show versions of dcmtool and its DICOM libraries."),
    ] = False,
    config: Annotated[
        Optional[Path],
        typer.Option("--config", envvar="DCMTOOL_CONFIG", metavar="FILE",
                     help="Config file (default: ~/.config/dcmtool/config.toml on Linux; "
                     "'dcmtool config path' prints it).",
                     show_default=False),
    ] = None,
    *,
    logging: LoggingOptions,
) -> None:
    import os

    from dcmtool.cli.state import default_config_path

    named_by = None
    if config is not None:
        named_by = "DCMTOOL_CONFIG" if os.environ.get("DCMTOOL_CONFIG") == str(config) \
            else "--config"
    fresh = Settings(
        config_path=config or default_config_path(),
        config_named_by=named_by,
        traceback=logging.traceback,
        verbose=logging.verbose,
        quiet=logging.quiet,
        debug=logging.debug,
        log_file=logging.log_file,
    )
    settings.__dict__.update(fresh.__dict__)
    console.configure_logging(logging.verbose, logging.quiet, logging.debug, logging.log_file)


def apply_logging(flags: LoggingOptions) -> None:
    """Merge a command's own logging flags (``dcmtool echo -v``) with the global ones."""
    settings.verbose = max(settings.verbose, flags.verbose)
    settings.quiet = settings.quiet or flags.quiet
    settings.debug = settings.debug or flags.debug
    settings.log_file = flags.log_file or settings.log_file
    settings.traceback = settings.traceback or flags.traceback
    console.configure_logging(settings.verbose, settings.quiet, settings.debug, settings.log_file)


#: The one-line summaries of 'dcmtool --help': whole sentences that fit 80 columns (click
#: cuts a docstring's first line with "..." where it is longer).
SUMMARIES = {
    "echo": "Verify peers (C-ECHO); --probe: what they accept.",
    "store": "Send DICOM files to a peer (C-STORE).",
    "commit": "Ask a peer to commit to keeping instances (storage commitment).",
    "find": "Query a peer (C-FIND) and print the matches.",
    "mwl": "Query a modality worklist.",
    "move": "Retrieve with C-MOVE, to us or to a third party.",
    "get": "Retrieve with C-GET into a folder.",
    "mpps": "Report a procedure step: in progress, completed, discontinued.",
    "dicomdir": "Write, list and check media file sets (DICOMDIR).",
    "serve": "Run the archive: store, index, answer queries.",
    "convert": "Transcode DICOM files to another transfer syntax.",
    "dump": "Print a DICOM file's header, like dcmdump.",
    "config": "Show and edit the config file and its nodes.",
}

def main() -> None:
    """Console-script entry point: click's own usage errors are said the way dcmtool says
    every error (one line, a hint, exit 2), not as click's 'Usage: ... Error: ...' block."""
    usage_error, abort = _click_exceptions()
    try:
        code = app(prog_name="dcmtool", standalone_mode=False)
    except usage_error as exc:
        context = getattr(exc, "ctx", None)
        where = context.command_path if context is not None else "dcmtool"
        message = exc.format_message()
        possible = getattr(exc, "possibilities", None)
        if possible:  # NoSuchOption: click's "(Possible options: ...)" as a question
            message = f"{message.split(' (')[0]}; did you mean {' or '.join(possible)}?"
        listed = "the commands" if where == "dcmtool" else "the options"
        console.error(message[:1].lower() + message[1:], f"'{where} --help' lists {listed}")
        sys.exit(int(ExitCode.USAGE))
    except (abort, KeyboardInterrupt):
        console.err("dcmtool: interrupted")
        sys.exit(int(ExitCode.INTERRUPTED))
    sys.exit(code if isinstance(code, int) else 0)


def _click_exceptions() -> tuple[type[Any], type[BaseException]]:
    """Click's UsageError (typer vendors click, privately) and Abort."""
    try:
        from typer._click.exceptions import UsageError
    except ImportError:  # a typer that uses click itself
        from click.exceptions import UsageError  # type: ignore[assignment]
    return UsageError, typer.Abort
