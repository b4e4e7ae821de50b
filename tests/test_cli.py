"""The newsmonitor command: feeds management, run --once, clusters, stopping the daemon."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from monitor.cli import cli
from monitor.settings import load_settings
from tests.conftest import ROOT, write_config

COMMENTED = """\
# my monitor
database: monitor.db   # the store
seeds_dir: seeds
feeds:
  # world news
  - url: https://example.com/world.xml
    name: World
"""


def invoke(config: Path, *args: str):
    return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)


def test_feeds_add_keeps_comments_and_is_idempotent(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(COMMENTED, encoding="utf-8")
    result = invoke(config, "feeds", "add", "https://example.org/rss", "--name", "Example", "--tag", "politics")
    assert result.exit_code == 0 and "added https://example.org/rss" in result.output
    assert "already configured" in invoke(config, "feeds", "add", "https://example.org/rss").output
    text = config.read_text(encoding="utf-8")
    assert "# my monitor" in text and "# world news" in text and "# the store" in text
    feeds = load_settings(config).feeds
    assert [f.url for f in feeds] == ["https://example.com/world.xml", "https://example.org/rss"]
    assert feeds[1].tags == ("politics",) and feeds[1].name == "Example"
    listed = invoke(config, "feeds", "list").output
    assert "World\thttps://example.com/world.xml\tnever polled" in listed


def test_feeds_add_takes_an_interval(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(COMMENTED, encoding="utf-8")
    assert invoke(config, "feeds", "add", "https://example.org/rss", "--interval", "15m").exit_code == 0
    assert invoke(config, "feeds", "add", "https://example.org/other").exit_code == 0
    feeds = load_settings(config).feeds
    assert [f.interval for f in feeds[1:]] == [900.0, 1800.0]
    assert "interval" not in config.read_text(encoding="utf-8").split("example.org/other")[1]
    result = CliRunner().invoke(cli, ["--config", str(config), "feeds", "add", "https://x.org/a", "--interval", "soon"])
    assert result.exit_code == 1 and "interval" in result.output


def test_feeds_add_rejects_a_bad_url(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(COMMENTED, encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "feeds", "add", "ftp://x"])
    assert result.exit_code == 1 and "not a valid http(s) URL" in result.output
    assert config.read_text(encoding="utf-8") == COMMENTED


def test_opml_import_and_export_round_trip(tmp_path: Path) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(COMMENTED, encoding="utf-8")
    opml = tmp_path / "feeds.opml"
    opml.write_text("""<?xml version="1.0"?>
<opml version="2.0"><head><title>mine</title></head><body>
  <outline text="Politics">
    <outline type="rss" text="Hill" xmlUrl="https://thehill.example/rss"/>
    <outline type="rss" text="Bad" xmlUrl="gopher://old"/>
  </outline>
  <outline type="rss" text="World again" xmlUrl="https://example.com/world.xml"/>
</body></opml>""", encoding="utf-8")
    result = invoke(config, "feeds", "import", str(opml))
    assert "imported 1 new feeds (1 already configured)" in result.output
    assert "skipped invalid URL: gopher://old" in result.output
    hill = load_settings(config).feeds[-1]
    assert (hill.url, hill.name, hill.tags) == ("https://thehill.example/rss", "Hill", ("Politics",))
    exported = invoke(config, "feeds", "export").output
    assert 'xmlUrl="https://thehill.example/rss"' in exported and 'category="Politics"' in exported
    again = tmp_path / "again.opml"
    again.write_text(exported, encoding="utf-8")
    assert "imported 0 new feeds (2 already configured)" in invoke(config, "feeds", "import", str(again)).output


def test_run_once_then_clusters(tmp_path: Path, seeds_dir: Path, web: HTTPServer) -> None:
    web.expect_request("/down.xml").respond_with_data("no", status=503)
    config = write_config(tmp_path, feeds=[{"url": web.url_for("/down.xml")}])
    result = invoke(config, "run", "--once")
    assert result.exit_code == 0, "a failing feed does not fail the pass"
    assert "2 new articles (2 from seeds), 0 feeds ok, 1 failed; 2 articles in 1 clusters" in result.output
    listing = invoke(config, "clusters", "--limit", "5").output.strip().splitlines()
    assert len(listing) == 1 and listing[0].startswith("#1  2 articles, 2 sources")


def test_clusters_as_json_csv_and_since(tmp_path: Path, seeds_dir: Path) -> None:
    config = write_config(tmp_path, keywords=["border patrol"], web={"base_url": "https://news.example.org"})
    assert invoke(config, "run", "--once").exit_code == 0
    [story] = json.loads(invoke(config, "clusters", "--json").output)
    assert (story["id"], story["size"], story["sources"]) == (1, 2, 2)
    assert "border patrol" in story["keywords"] and story["url"] == "https://news.example.org/-/cluster/1"
    rows = list(csv.DictReader(io.StringIO(invoke(config, "clusters", "--csv").output)))
    assert len(rows) == 1 and rows[0]["title"] == story["title"] and rows[0]["size"] == "2"
    assert "border patrol" in rows[0]["keywords"].split("; ")
    age = datetime.now(UTC) - datetime.fromisoformat(story["last_seen"])
    recent = f"{age.days + 2}d"
    assert json.loads(invoke(config, "clusters", "--json", "--since", recent).output) == [story]
    older = f"{max(age.days - 2, 1)}d" if age.days > 3 else None
    if older:  # the seed story was last seen before that
        assert invoke(config, "clusters", "--since", older).output == f"no clusters seen in the last {older}\n"
    result = CliRunner().invoke(cli, ["--config", str(config), "clusters", "--json", "--csv"])
    assert result.exit_code == 2 and "choose one" in result.output
    result = CliRunner().invoke(cli, ["--config", str(config), "clusters", "--since", "lately"])
    assert result.exit_code == 2 and "--since" in result.output


def test_python_dash_m_monitor_works(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "monitor", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "feeds" in result.stdout and "run" in result.stdout


def test_every_command_has_help_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for name, command in cli.commands.items():
        sub = getattr(command, "commands", None)
        commands += [f"{name} {s}" for s in sub] if sub else [name]
        assert command.help, name
    for command in commands:
        assert f"newsmonitor {command}" in readme, f"README does not document `newsmonitor {command}`"


TEST_TOOLS = {"pytest", "pytest_httpserver", "pytest_timeout", "playwright", "aiosmtpd", "ruff", "sklearn"}


def test_make_run_installs_the_runtime_only_and_make_test_adds_the_test_tools(tmp_path: Path) -> None:
    """`make -n` prints what each target would run on a machine without the virtualenv."""
    venv = tmp_path / ".venv"
    run = subprocess.run(["make", "-n", "run", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True)
    installs = [line for line in run.stdout.splitlines() if "pip install" in line and "--upgrade pip" not in line]
    assert installs == [f"{venv}/bin/pip install --progress-bar on -e ."]  # no --quiet: pip shows its progress
    test = subprocess.run(["make", "-n", "test", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    assert f"{venv}/bin/pip install --progress-bar on -e '.[test]'" in test.stdout
    assert "python3-venv" in run.stdout  # a fresh Debian without it is told what to install


def test_the_package_imports_no_test_tool() -> None:
    """`make run` leaves the test extras out, so nothing under monitor/ may need them."""
    imported = set()
    for path in (ROOT / "monitor").rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("import", "from"):
                imported.add(words[1].split(".")[0])
    assert not imported & TEST_TOOLS
