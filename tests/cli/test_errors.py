"""The library says what went wrong in DICOM terms and names the setting; the CLI names the
flag: one table (cli/flags.py), one boundary (cli/app.py)."""

from __future__ import annotations

from pathlib import Path

from support.peers import run_cli

from dcmtool.cli.flags import FLAGS, message_and_hint
from dcmtool.errors import DcmtoolError, UsageError


def test_a_bad_value_starts_with_its_flag() -> None:
    assert message_and_hint(UsageError("'x' is not a port number", setting="port")) == \
        ("--port: 'x' is not a port number", None)


def test_a_hint_ends_with_the_flag_that_acts_on_it() -> None:
    error = DcmtoolError("no answer", hint="raise the ACSE timeout", setting="acse_timeout")
    assert message_and_hint(error) == ("no answer", "raise the ACSE timeout (--acse-timeout)")


def test_errors_without_a_setting_pass_unchanged() -> None:
    assert message_and_hint(DcmtoolError("broken", hint="fix it")) == ("broken", "fix it")


def test_every_setting_the_library_names_has_a_flag() -> None:
    """Each ``setting="..."`` in the library is in the CLI's table."""
    import re

    root = Path(__file__).resolve().parents[2] / "dcmtool"
    named = {match for path in root.rglob("*.py") if "cli" not in path.parts
             for match in re.findall(r'setting="([a-z_]+)"', path.read_text(encoding="utf-8"))}
    assert named and named <= set(FLAGS), sorted(named - set(FLAGS))


def test_the_cli_adds_the_flag_to_a_library_error(tmp_path: Path) -> None:
    result = run_cli("serve", str(tmp_path / "archive"), "--port", "0", "--layout", "{Nope}")
    assert result.exit_code == 2
    assert result.stderr.startswith("dcmtool: error: --layout: ")
