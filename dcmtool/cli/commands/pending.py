"""Subcommands that exist in the CLI but are not built yet: they say so and fail."""

from __future__ import annotations

from collections.abc import Callable

import typer

from dcmtool.errors import NotImplementedYet

COMMANDS = {
    "dicomdir": "Build a DICOMDIR for media",
}


def make(name: str) -> Callable[[typer.Context], None]:
    def command(ctx: typer.Context) -> None:
        raise NotImplementedYet(f"'dcmtool {name}' is not implemented yet")

    command.__name__ = name
    command.__doc__ = COMMANDS[name] + " (not implemented yet)."
    return command
