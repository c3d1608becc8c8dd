"""The root of the CLI: global options, the subcommands, and the one place errors become exit
codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer

from dcmtool.cli import console
from dcmtool.cli.commands import config as config_cmd
from dcmtool.cli.commands import convert as convert_cmd
from dcmtool.cli.commands import echo as echo_cmd
from dcmtool.cli.commands import find as find_cmd
from dcmtool.cli.commands import get as get_cmd
from dcmtool.cli.commands import move as move_cmd
from dcmtool.cli.commands import mwl as mwl_cmd
from dcmtool.cli.commands import pending
from dcmtool.cli.commands import serve as serve_cmd
from dcmtool.cli.commands import store as store_cmd
from dcmtool.cli.groups import LoggingOptions, logging_options
from dcmtool.cli.state import Settings, settings
from dcmtool.errors import EXIT_CODE_MEANINGS, DcmtoolError, ExitCode

F = TypeVar("F", bound=Callable[..., Any])


def exit_code_table() -> str:
    return "\n".join(f"{int(code):>4}  {text}" for code, text in EXIT_CODE_MEANINGS.items())


HELP = """DICOM network utilities: verify peers, send, query, retrieve, serve an archive.

A PEER is a node name from the config file, AET@HOST:PORT, or HOST PORT with --called-aet.
"""

# "\b" keeps click from re-wrapping the paragraph that follows it.
EPILOG = "Exit codes:\n\n\b\n" + exit_code_table()

app = typer.Typer(
    name="dcmtool",
    help=HELP,
    epilog=EPILOG,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help text names [local] and [nodes.NAME]: not markup
    context_settings={"help_option_names": ["-h", "--help"]},
)


def guarded(function: F) -> F:
    """Run a command, turning library errors and Ctrl-C into one line and an exit code."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except DcmtoolError as exc:
            if settings.traceback:
                raise
            from dcmtool.cli.flags import message_and_hint

            console.error(*message_and_hint(exc))
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            if settings.traceback:
                raise
            console.err("dcmtool: interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BrokenPipeError:
            # stdout closed early (`| head`): stop quietly, as other Unix tools do.
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(int(ExitCode.ERROR)) from None
        except OSError as exc:
            if settings.traceback:
                raise
            where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
            console.error(f"{exc.strerror or exc}{where}")
            raise typer.Exit(int(ExitCode.ERROR)) from None
        except Exception as exc:
            if settings.traceback:
                raise
            console.error(f"internal error: {type(exc).__name__}: {exc}",
                          "run again with --traceback and report it")
            raise typer.Exit(int(ExitCode.ERROR)) from None

    return wrapper  # type: ignore[return-value]


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
    from dcmtool.cli.state import default_config_path

    fresh = Settings(
        config_path=config or default_config_path(),
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


app.command("echo", epilog=echo_cmd.EPILOG)(guarded(echo_cmd.echo))
app.command("store", epilog=store_cmd.EPILOG)(guarded(store_cmd.store))
app.command("find", epilog=find_cmd.EPILOG)(guarded(find_cmd.find))
app.command("mwl", epilog=mwl_cmd.EPILOG)(guarded(mwl_cmd.mwl))
app.command("move", epilog=move_cmd.EPILOG)(guarded(move_cmd.move))
app.command("get", epilog=get_cmd.EPILOG)(guarded(get_cmd.get))
for _name, _summary in pending.COMMANDS.items():
    app.command(
        _name,
        help=f"{_summary}; not implemented yet.",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(guarded(pending.make(_name)))
app.command("serve", epilog=serve_cmd.EPILOG)(guarded(serve_cmd.serve))
app.command("convert", epilog=convert_cmd.EPILOG)(guarded(convert_cmd.convert))
app.add_typer(config_cmd.app, name="config", callback=guarded(config_cmd.config_root))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="dcmtool")
