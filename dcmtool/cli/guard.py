"""The one place a command's errors become a message on stderr and an exit code.

Its own module, so that sub-apps (config, dicomdir, mpps) wrap their commands with it without
importing the app that imports them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from dcmtool.cli import console
from dcmtool.cli.state import settings
from dcmtool.errors import DcmtoolError, ExitCode

F = TypeVar("F", bound=Callable[..., Any])


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
