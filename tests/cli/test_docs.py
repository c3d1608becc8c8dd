"""README claims that code can check: the exit-code table, the commands, the example config."""

from __future__ import annotations

import re
from pathlib import Path

from dcmtool.config import load_config, serve_settings
from dcmtool.errors import EXIT_CODE_MEANINGS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_exit_code_table_matches_the_code() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| (.+) \|$", README, flags=re.MULTILINE))
    assert {int(k): v for k, v in rows.items()} == {
        int(code): text for code, text in EXIT_CODE_MEANINGS.items()
    }


def test_ci_runs_the_readme_test_command() -> None:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL)
    test_command = next(b.strip() for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines()


def test_example_config_is_valid() -> None:
    config = load_config(ROOT / "examples" / "config.toml")
    assert {"ORTHANC", "PACS", "SECURE"} <= set(config.nodes)
    assert config.nodes["SECURE"].tls.ca == ROOT / "examples" / "ca.pem"
    serve = serve_settings(config)
    assert serve["root"] == ROOT / "examples" / "dcmtool-archive"
    assert serve["min_free"] == "1G"


def test_readme_config_example_is_valid(tmp_path: Path) -> None:
    block = re.search(r"```toml\n(.*?)```", README, flags=re.DOTALL)
    assert block is not None
    path = tmp_path / "config.toml"
    path.write_text(block.group(1), encoding="utf-8")
    assert set(load_config(path).nodes) == {"PACS", "SECURE"}
