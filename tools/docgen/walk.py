"""The CLI walk: dcmtool's Typer app turned into a plain model of commands and parameters.

This is the only module of the generator that touches Typer or click (their objects, and
Typer's private ``_click`` and ``_completion_shared``), so a Typer upgrade is fixed here. The
model it returns holds strings and booleans only: every fact ``--help`` would show is worked
out here, and the composers never see a click object.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, get_args

PROG = "dcmtool"
# The variable Typer's runtime reads (``_{PROG}_COMPLETE``), so the scripts talk to the CLI.
COMPLETE_VAR = f"_{PROG}_COMPLETE".replace("-", "_").upper()

#: The environment is pinned while generating, so nothing can leak into the output.
PINNED_ENV = {"COLUMNS": "80", "LINES": "24", "TERM": "dumb", "NO_COLOR": "1"}
DROPPED_ENV_PREFIXES = ("DCMTOOL_", "_TYPER_", "_DCMTOOL_", "XDG_")


@contextlib.contextmanager
def pinned_environment() -> Iterator[None]:
    """Fix terminal settings and drop variables that could change the CLI; restore afterwards."""
    changed = [n for n in os.environ if n.startswith(DROPPED_ENV_PREFIXES)] + list(PINNED_ENV)
    saved = {name: os.environ.get(name) for name in changed}
    try:
        for name in changed:
            os.environ.pop(name, None)
        os.environ.update(PINNED_ENV)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------------------------
# The model


@dataclass(frozen=True)
class Param:
    """A visible parameter, with what ``--help`` shows about it already worked out."""

    kind: str  # click's param_type_name: "option" or "argument"
    name: str
    #: Names in the order --help lists them (short ones first).
    opts: tuple[str, ...]
    secondary_opts: tuple[str, ...]
    help: str | None
    required: bool
    #: An option's value placeholder (INTEGER, FILE, {a|b}); an argument's name.
    metavar: str
    #: False for flags and counts: their names stand alone.
    takes_value: bool
    #: An argument that takes several values (``FILE...``).
    repeats: bool
    #: The default worth printing, if any.
    default: str | None
    #: "From 1 to 5." and the like, if the value is bounded.
    range: str | None
    #: An option that may be given more than once.
    multiple: bool
    envvars: tuple[str, ...]
    #: The rich_help_panel the option is listed under in --help.
    panel: str | None

    @property
    def is_option(self) -> bool:
        return self.kind == "option"

    @property
    def is_argument(self) -> bool:
        return self.kind == "argument"


@dataclass
class Command:
    """One command of the tree; hidden commands and parameters are left out."""

    path: tuple[str, ...]
    help: str | None
    short_help: str | None
    epilog: str | None
    #: True, or the deprecation message.
    deprecated: bool | str
    options_metavar: str | None
    subcommand_metavar: str | None
    is_group: bool
    params: list[Param]
    children: list[Command] = field(default_factory=list)
    # Not compared or shown: the parent lists this command among its children.
    parent: Command | None = field(default=None, repr=False, compare=False)

    @property
    def full_name(self) -> str:
        return " ".join(self.path)

    @property
    def page(self) -> str:
        return "-".join(self.path)

    def walk(self) -> Iterator[Command]:
        yield self
        for child in self.children:
            yield from child.walk()

    def ancestors(self) -> list[Command]:
        """From the root down to this command's parent."""
        chain = []
        node = self
        while node.parent is not None:
            node = node.parent
            chain.append(node)
        return chain[::-1]

    def options(self) -> list[Param]:
        return [p for p in self.params if p.is_option]

    def arguments(self) -> list[Param]:
        return [p for p in self.params if p.is_argument]


# --------------------------------------------------------------------------------------------
# The walk


def command_tree(app: Any = None) -> Command:
    """The command tree of ``app`` (dcmtool's), hidden commands left out, in the CLI's order."""
    # Imported here rather than at the top, so inside generate()'s pinned_environment().
    import typer.main

    if app is None:
        from dcmtool.cli.app import app

    command = typer.main.get_command(app)
    return _command(command, (PROG,), _make_context(command, PROG, None), None)


def root_help(app: Any = None) -> str:
    """What ``dcmtool --help`` prints on a terminal of 80 columns or more (click's help is
    never wider than 80)."""
    import typer.main

    if app is None:
        from dcmtool.cli.app import app

    command = typer.main.get_command(app)
    return str(command.get_help(_make_context(command, PROG, None))) + "\n"


def completion_script(shell: str) -> str:
    """Typer's completion script for ``shell``, as ``dcmtool --show-completion`` prints it."""
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell)


def _make_context(command: Any, name: str, parent: Any) -> Any:
    """A context like ``Command.make_context`` builds, without parsing any arguments."""
    from typer import _click

    accepted = inspect.signature(_click.Context.__init__).parameters
    settings = {k: v for k, v in command.context_settings.items() if k in accepted}
    return _click.Context(command, parent=parent, info_name=name, **settings)


def _command(command: Any, path: tuple[str, ...], ctx: Any, parent: Command | None) -> Command:
    is_group = hasattr(command, "list_commands")
    node = Command(
        path=path,
        help=command.help,
        short_help=command.short_help,
        epilog=command.epilog,
        deprecated=command.deprecated,
        options_metavar=command.options_metavar,
        subcommand_metavar=getattr(command, "subcommand_metavar", None),
        is_group=is_group,
        params=[_param(p, ctx) for p in command.get_params(ctx)
                if not getattr(p, "hidden", False)],
        parent=parent,
    )
    if is_group:
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            sub_ctx = _make_context(sub, name, ctx)
            node.children.append(_command(sub, (*path, name), sub_ctx, node))
    return node


def _param(param: Any, ctx: Any) -> Param:
    kind = param.param_type_name
    metavar, takes_value, repeats = "", False, False
    if kind == "option":
        takes_value = option_takes_value(param)
        if takes_value:
            metavar = option_metavar(param)
    elif kind == "argument":
        metavar, repeats = argument_metavar(param)
        takes_value = True
    panel = getattr(param, "rich_help_panel", None)
    return Param(
        kind=kind,
        name=param.name,
        opts=tuple(sorted_opts(param, param.opts)),
        secondary_opts=tuple(sorted_opts(param, param.secondary_opts)),
        help=getattr(param, "help", None),
        required=bool(param.required),
        metavar=metavar,
        takes_value=takes_value,
        repeats=repeats,
        default=default_text(param, ctx),
        range=range_text(param),
        multiple=kind == "option" and bool(param.multiple or getattr(param, "count", False)),
        envvars=tuple(envvars(param, ctx)),
        panel=panel if isinstance(panel, str) else None,
    )


# --------------------------------------------------------------------------------------------
# Parameters: what click's --help would print


def _prefix(opt: str) -> str:
    first = opt[:1]
    if first.isalnum():
        return ""
    return opt[:2] if opt[1:2] == first else first


def sorted_opts(param: Any, opts: Sequence[str]) -> list[str]:
    """Short names first, as click's help does; help option names come from a set: sort them."""
    names = list(opts)
    if getattr(param, "expose_value", True) is False and param.name == "help":
        names.sort()
    return sorted(names, key=lambda o: len(_prefix(o)))


def _click_type_metavar(param: Any) -> str:
    """Typer <= 0.28 keeps click's ParamType on the parameter."""
    kind = getattr(param, "type", None)
    if kind is None:
        return "VALUE"
    choices = getattr(kind, "choices", None)
    if choices:
        values = [c.value if isinstance(c, Enum) else c for c in choices]
        return "{" + "|".join(str(v) for v in values) + "}"
    members = getattr(kind, "types", None)
    if members:
        return " ".join(_click_type_metavar(type("P", (), {"type": m})) for m in members)
    name = str(getattr(kind, "name", "value")).lower()
    if name in ("path", "filename", "file"):
        return "FILE" if getattr(kind, "dir_okay", True) is False else "PATH"
    if name.startswith("int"):
        return "INTEGER"
    if "float" in name:
        return "FLOAT"
    if name in ("boolean", "bool"):
        return "BOOLEAN"
    return "TEXT" if name in ("text", "string") else name.upper()


def type_metavar(param: Any) -> str:
    """A metavar for a parameter that declares none, from its type (INTEGER, FILE, {a|b})."""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return _click_type_metavar(param)
    choices = desc.choices
    if choices:
        values = [c.value if isinstance(c, Enum) else c for c in choices]
        return "{" + "|".join(str(v) for v in values) + "}"
    if desc.is_path:
        return {"file": "FILE", "dir": "DIRECTORY"}.get(desc.path_type, "PATH")
    if desc.is_datetime:
        return "DATETIME"
    annotation = desc.annotation
    if desc.is_list:
        (annotation,) = get_args(annotation) or (str,)
    if desc.is_tuple:
        return " ".join(_scalar_metavar(a) for a in get_args(annotation))
    return _scalar_metavar(annotation)


def _scalar_metavar(annotation: Any) -> str:
    names = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "BOOLEAN", bytes: "TEXT"}
    if annotation in names:
        return names[annotation]
    if isinstance(annotation, type) and issubclass(annotation, os.PathLike):
        return "PATH"
    name = getattr(annotation, "__name__", "VALUE")
    return str(name).upper()


def option_takes_value(param: Any) -> bool:
    return not getattr(param, "is_flag", False) and not getattr(param, "count", False)


def option_metavar(param: Any) -> str:
    metavar = param.metavar or type_metavar(param)
    is_tuple = getattr(getattr(param, "type_descriptor", None), "is_tuple", False) or bool(
        getattr(getattr(param, "type", None), "types", None))
    if param.nargs not in (1, -1) and param.metavar is None and not is_tuple:
        metavar = " ".join([metavar] * param.nargs)
    return str(metavar)


def argument_metavar(param: Any) -> tuple[str, bool]:
    """(name, repeats) of an argument: its metavar, else its name in capitals."""
    name: str = param.metavar or param.name.upper()
    repeats = param.nargs != 1
    if name.endswith("..."):
        name, repeats = name[:-3], True
    return name, repeats


def envvars(param: Any, ctx: Any) -> list[str]:
    """The environment variables a parameter reads, declared or from ``auto_envvar_prefix``."""
    envvar = param.envvar
    if envvar is None:
        prefix = getattr(ctx, "auto_envvar_prefix", None)
        if param.param_type_name == "option" and prefix and param.allow_from_autoenv:
            envvar = f"{prefix}_{param.name.upper()}"
    if envvar is None:
        return []
    return [envvar] if isinstance(envvar, str) else list(envvar)


def default_text(param: Any, ctx: Any) -> str | None:
    """The default worth printing: none for None, False, a count of 0 or an empty list."""
    show = param.show_default
    if isinstance(show, str):
        return show
    if not (show or ctx.show_default):
        return None
    default = param.get_default(ctx, call=False)
    if default is None or default is False:
        return None
    if getattr(param, "is_flag", False) and not param.secondary_opts:
        return None
    if getattr(param, "count", False) and default == 0:
        return None
    if callable(default):
        return "(dynamic)"
    if getattr(param, "is_bool_flag", False) and param.secondary_opts:
        return str((param.opts if default else param.secondary_opts)[0])
    if isinstance(default, (list, tuple)):
        if not default:
            return None
        return ", ".join(_value_text(v) for v in default)
    return _value_text(default)


def _value_text(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def range_text(param: Any) -> str | None:
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is None and high is None:  # Typer <= 0.28: the range lives on click's type
        low, high = getattr(param.type, "min", None), getattr(param.type, "max", None)
    if getattr(param, "count", False) and low == 0 and high is None:
        return None
    if low is not None and high is not None:
        return f"From {low} to {high}."
    if low is not None:
        return f"At least {low}."
    if high is not None:
        return f"At most {high}."
    return None
