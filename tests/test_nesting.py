"""Input nested deep enough to overflow a recursive parser is one error line, not a RecursionError traceback."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from monitor.cli import cli
from tests.conftest import write_config


def _one_line_error(result: object) -> str:
    output = result.output.strip()  # type: ignore[attr-defined]
    assert result.exit_code == 1 and "\n" not in output and "Traceback" not in output, output  # type: ignore
    return output


def test_a_5000_deep_yaml_list_in_the_config_is_one_error_line(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text("keywords: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(path), "status"], catch_exceptions=False)
    assert _one_line_error(result) == f"Error: {path}: invalid YAML: nested too deeply (a config is a few levels deep)"


def test_a_3000_deep_opml_outline_is_one_error_line(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    opml = tmp_path / "deep.opml"
    opml.write_text('<?xml version="1.0"?><opml version="2.0"><body>' + '<outline text="x">' * 3000
                    + '<outline text="f" xmlUrl="https://example.org/rss"/>' + "</outline>" * 3000
                    + "</body></opml>", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(path), "feeds", "import", str(opml)], catch_exceptions=False)
    assert _one_line_error(result) == f"Error: {opml}: outlines nested more than 50 deep; not an OPML feed list"
