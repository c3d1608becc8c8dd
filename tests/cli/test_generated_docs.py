"""completions/ and man/ are generated from the CLI by tools/generate_docs.py and kept current.

When a test here fails after a CLI change, run ``python tools/generate_docs.py`` and commit the
files it writes.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Optional

import pytest
import typer
import typer.main
from typer import _click

from dcmtool.cli.app import app
from dcmtool.errors import EXIT_CODE_MEANINGS

ROOT = Path(__file__).resolve().parents[2]
FIX = "run `python tools/generate_docs.py` and commit completions/ and man/"


def _load_generator() -> ModuleType:
    path = ROOT / "tools" / "generate_docs.py"
    spec = importlib.util.spec_from_file_location("generate_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return gen.generate()


def _commands() -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """(path, command, context) for every visible command, walked independently of the tool."""
    root = typer.main.get_command(app)

    def walk(path: tuple[str, ...], command: Any, parent: Any) -> Iterator[Any]:
        settings = {k: v for k, v in command.context_settings.items()
                    if k in ("help_option_names",)}
        ctx = _click.Context(command, parent=parent, info_name=path[-1], **settings)
        yield path, command, ctx
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    yield from walk((*path, name), sub, ctx)

    yield from walk(("dcmtool",), root, None)


def _roff(text: str) -> str:
    return text.replace("\\", "\\e").replace("-", "\\-").replace("'", "\\(aq")


def _page(path: tuple[str, ...]) -> str:
    return "man/" + "-".join(path) + ".1"


# --- the committed files are current ----------------------------------------------------------


def test_generated_files_are_current(generated: dict[str, str]) -> None:
    problems = {path: state for path, state in gen.stale_files(ROOT, generated).items()
                if state != "extra"}
    details = []
    for path, state in problems.items():
        details.append(f"  {state}: {path}")
        if state == "stale":
            old = (ROOT / path).read_text(encoding="utf-8").splitlines()
            diff = difflib.unified_diff(old, generated[path].splitlines(), path, "generated",
                                        lineterm="", n=1)
            details += ["    " + line for line in list(diff)[:20]]
    assert not problems, (
        "generated files are out of date with the CLI:\n" + "\n".join(details) + f"\n{FIX}"
    )


def test_no_stale_extra_files(generated: dict[str, str]) -> None:
    extra = [path for path, state in gen.stale_files(ROOT, generated).items() if state == "extra"]
    assert not extra, (
        f"files in completions/ or man/ that the CLI no longer produces: {extra}; {FIX} "
        "(it deletes them)"
    )


# --- the generator reflects the CLI -----------------------------------------------------------


def test_one_page_per_command(generated: dict[str, str]) -> None:
    pages = {path for path in generated if path.startswith("man/")}
    expected = {_page(path) for path, _, _ in _commands()}
    assert pages == expected
    assert {"man/dcmtool.1", "man/dcmtool-echo.1", "man/dcmtool-config.1",
            "man/dcmtool-config-add.1"} <= pages


def test_each_page_documents_every_option_of_its_command(generated: dict[str, str]) -> None:
    missing = []
    for path, command, ctx in _commands():
        page = generated[_page(path)]
        for param in command.get_params(ctx):
            if getattr(param, "hidden", False):
                continue
            if param.param_type_name == "option":
                wanted = [f"\\fB{_roff(o)}\\fR" for o in (*param.opts, *param.secondary_opts)]
            else:
                name = (param.metavar or param.name.upper()).removesuffix("...")
                wanted = [f"\\fI{_roff(name)}\\fR"]
            if isinstance(param.envvar, str):
                wanted.append(f"\\fB{_roff(param.envvar)}\\fR")
            words = re.findall(r"[A-Za-z0-9]{3,}", param.help or "")
            if words:
                wanted.append(words[0])  # the help text is there
            missing += [f"{_page(path)}: {w}" for w in wanted if w not in page]
    assert not missing, "options of the CLI missing from their man page:\n" + "\n".join(missing)


def test_echo_page_has_escaped_option_names(generated: dict[str, str]) -> None:
    page = generated["man/dcmtool-echo.1"]
    assert "\\fB\\-aet\\fR, \\fB\\-\\-calling\\-aet\\fR \\fIAET\\fR" in page
    assert "--calling-aet" not in page  # every hyphen is escaped


def test_top_page_sections(generated: dict[str, str]) -> None:
    page = generated["man/dcmtool.1"]
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS",
                    "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"):
        assert f'.SH "{section}"' in page
    for code in EXIT_CODE_MEANINGS:
        assert f"\\fB{int(code)}\\fR" in page
    declared = {p.envvar for _, c, ctx in _commands() for p in c.get_params(ctx)
                if isinstance(p.envvar, str)}
    assert "DCMTOOL_CONFIG" in declared
    for name in declared:
        assert f"\\fB{_roff(name)}\\fR" in page
    for path, _, _ in _commands():
        if len(path) == 2:
            assert f"\\fB{_roff(path[1])}\\fR" in page  # listed under COMMANDS


def test_headers(generated: dict[str, str]) -> None:
    for path, content in generated.items():
        assert content.endswith("\n") and not content.endswith("\n\n"), path
        if path.startswith("man/"):
            assert content.startswith(f'.\\" {gen.HEADER}\n'), path
        elif path.endswith("/help.txt"):  # printed as it is by `dcmtool --help`
            assert content.startswith("Usage: dcmtool [OPTIONS] COMMAND"), path
        else:
            assert f"# {gen.HEADER}\n" in content, path
    assert generated["completions/dcmtool.zsh"].startswith("#compdef dcmtool\n")


def test_output_ignores_environment(generated: dict[str, str], isolated_config: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "20")
    monkeypatch.setenv("DCMTOOL_CALLING_AET", "FROM_ENV")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nowhere/xdg")
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    again = gen.generate()
    assert again == generated
    assert os.environ["COLUMNS"] == "20"  # restored
    leaks = [str(isolated_config), "FROM_ENV", "/nowhere"]
    if len(str(Path.home())) > 1:
        leaks.append(str(Path.home()))
    for path, content in again.items():
        for leak in leaks:
            assert leak not in content, f"{path} embeds {leak!r}"


def test_completion_variable_drives_the_cli(generated: dict[str, str]) -> None:
    assert f"{gen.COMPLETE_VAR}=complete_bash" in generated["completions/dcmtool.bash"]
    env = {**os.environ, gen.COMPLETE_VAR: "complete_bash", "COMP_WORDS": "dcmtool config a",
           "COMP_CWORD": "2"}
    done = subprocess.run([sys.executable, "-m", "dcmtool"], env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["add"]


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_pages_render_without_warnings(generated: dict[str, str], tmp_path: Path) -> None:
    for path, content in generated.items():
        if not path.startswith("man/"):
            continue
        source = tmp_path / Path(path).name
        source.write_text(content, encoding="utf-8")
        done = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", str(source)],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0 and not done.stderr, f"{path}: {done.stderr}"


# --- the script -------------------------------------------------------------------------------


def test_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gen.main(["--check"], root=tmp_path) == 1
    assert "missing: man/dcmtool-echo.1" in capsys.readouterr().out

    assert gen.main([], root=tmp_path) == 0
    assert gen.main(["--check"], root=tmp_path) == 0

    gone = tmp_path / "man" / "dcmtool-gone.1"
    gone.write_text("old\n", encoding="utf-8")
    (tmp_path / "man" / "dcmtool-echo.1").write_text("edited\n", encoding="utf-8")
    capsys.readouterr()
    assert gen.main(["--check"], root=tmp_path) == 1
    out = capsys.readouterr().out
    assert "extra: man/dcmtool-gone.1" in out
    assert "stale: man/dcmtool-echo.1" in out

    assert gen.main([], root=tmp_path) == 0
    assert not gone.exists()
    assert gen.stale_files(tmp_path) == {}


class Colour(str, Enum):
    red = "red"
    blue = "blue"


def _toy_app() -> typer.Typer:
    """Kinds of parameters and commands dcmtool does not use (yet)."""
    toy = typer.Typer(rich_markup_mode=None, help="Toy.\n\n.Leading dot, back\\slash, 'quote'.")

    @toy.callback()
    def root() -> None:
        pass

    @toy.command(deprecated=True, epilog="Examples:\n\n\b\n  dcmtool old --colour red")
    def old(
        colour: Annotated[Colour, typer.Option(help="A colour.\n\n\b\n  kept\n  lines")
                          ] = Colour.red,
        flag: Annotated[bool, typer.Option("--flag/--no-flag", help="Toggle.")] = True,
        pair: Annotated[tuple[int, float], typer.Option(help="Pair.")] = (1, 2.0),
        needed: Annotated[str, typer.Option(help="Needed.")] = ...,  # type: ignore[assignment]
        secret: Annotated[int, typer.Option(hidden=True)] = 0,
        level: Annotated[int, typer.Option(min=1, max=5, help="Level \u2014 \u00fcber.")] = 3,
        files: Annotated[Optional[list[Path]], typer.Argument(help="Inputs.")] = None,
    ) -> None:
        """Do the old thing."""

    nested = typer.Typer(rich_markup_mode=None, help="A group.")

    @nested.command()
    def leaf(name: str) -> None:
        """A leaf."""

    @toy.command(hidden=True)
    def invisible() -> None:
        pass

    toy.add_typer(nested, name="nested")
    return toy


def test_other_parameter_kinds_render(tmp_path: Path) -> None:
    """Parameters and commands dcmtool does not use yet still make sound pages."""
    pages = gen.man_pages(_toy_app())
    assert sorted(pages) == ["man/dcmtool-nested-leaf.1", "man/dcmtool-nested.1",
                             "man/dcmtool-old.1", "man/dcmtool.1"]
    page = pages["man/dcmtool-old.1"]
    assert "\\fB\\-\\-colour\\fR \\fI{red|blue}\\fR" in page
    assert "\\fB\\-\\-flag\\fR / \\fB\\-\\-no\\-flag\\fR" in page
    assert "\\fIINTEGER FLOAT\\fR" in page
    assert "Required." in page and "From 1 to 5." in page and "\\[u00FC]ber" in page
    assert "secret" not in page and "invisible" not in pages["man/dcmtool.1"]
    assert "\\&.Leading dot, back\\eslash, \\(aqquote\\(aq." in pages["man/dcmtool.1"]
    assert "dcmtool old \\-\\-colour red" in pages["man/dcmtool.1"]  # examples gathered
    if shutil.which("groff"):
        for path, content in pages.items():
            source = tmp_path / Path(path).name
            source.write_text(content, encoding="utf-8")
            done = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", str(source)],
                                  capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode == 0 and not done.stderr, f"{path}: {done.stderr}"
