"""`feeds add / remove / disable / enable / import` edit only the entry they are about: every other byte of
the config stays, comments stay with what they describe, and OPML round trips keep names, tags and intervals."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import cli
from monitor.settings import load_settings
from tests.conftest import ROOT

LONG_QUERY = ('("sanctuary city" OR "sanctuary cities" OR "protection cities" OR "refuge towns") AND '
              '(ICE OR "border patrol" OR "immigration enforcement")')

# A config as a person keeps it: comments everywhere, a null, a long line, flow lists, quotes, blank lines.
COMMENTED = f"""\
# my monitor -- edited by hand
database: monitor.db   # the store
seeds_dir: null        # no seed files here

# Feeds: the world desk first.
feeds:
  # BBC: the main world feed
  - url: https://feeds.example.org/world.xml
    name: "World desk"       # shown in alerts
    tags: [world, "front page"]
    interval: 15m
    # adaptive: true   (tried it, too slow)

  # Guardian, two lines
  # of comment
  - url: https://guardian.example.com/us/rss
    name: Guardian US
    tags:
      - politics
  - url: https://wire.example.net/feed?a=1&b=2
# Commented-out examples, they describe nothing below:
#   - url: https://feeds.example.net/other.xml

# Tracked terms
keywords:
  - sanctuary city   # singular
  - border patrol

alerts:
  - name: sanctuary
    query: '{LONG_QUERY}'
    notify: []
"""

GUARDIAN = """\
  # Guardian, two lines
  # of comment
  - url: https://guardian.example.com/us/rss
    name: Guardian US
    tags:
      - politics
"""
WIRE = "  - url: https://wire.example.net/feed?a=1&b=2\n"


def invoke(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(COMMENTED, encoding="utf-8")
    return path


def text(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def test_feeds_add_inserts_after_the_last_entry_and_changes_nothing_else(config: Path) -> None:
    out = invoke(config, "feeds", "add", "https://new.example/a,b?x=1", "--name", "New: desk", "--tag", "x y",
                 "--interval", "2h", "--fixed")
    assert "added https://new.example/a,b?x=1; no daemon is running" in out
    added = ("  - url: https://new.example/a,b?x=1\n    name: 'New: desk'\n    tags: [x y]\n    interval: 2h\n"
             "    adaptive: false\n")
    assert text(config) == COMMENTED.replace(WIRE, WIRE + added)  # byte for byte elsewhere
    feed = load_settings(config).feeds[-1]
    assert (feed.url, feed.name, feed.tags, feed.interval, feed.adaptive) == (
        "https://new.example/a,b?x=1", "New: desk", ("x y",), 7200.0, False)
    assert "already configured" in invoke(config, "feeds", "add", "https://new.example/a,b?x=1")
    assert text(config) == COMMENTED.replace(WIRE, WIRE + added)


def test_feeds_remove_takes_its_comments_and_nothing_else(config: Path) -> None:
    assert "removed https://guardian.example.com/us/rss" in invoke(config, "feeds", "remove", "guardian us")
    assert text(config) == COMMENTED.replace(GUARDIAN, "")
    invoke(config, "feeds", "remove", "https://feeds.example.org/world.xml")
    first = COMMENTED[COMMENTED.index("  # BBC"):COMMENTED.index("\n\n  # Guardian") + 1]
    assert first.endswith("# adaptive: true   (tried it, too slow)\n")  # its commented-out key went with it
    assert text(config) == COMMENTED.replace(GUARDIAN, "").replace(first, "")
    invoke(config, "feeds", "remove", "wire.example.net")
    emptied = COMMENTED.replace(GUARDIAN, "").replace(first, "").replace(WIRE, "")
    assert text(config) == emptied.replace("feeds:\n", "feeds: []\n")  # an empty list, never a null
    assert load_settings(config).feeds == ()


def test_feeds_disable_and_enable_touch_one_line(config: Path) -> None:
    out = invoke(config, "feeds", "disable", "https://guardian.example.com/us/rss")
    assert "disabled https://guardian.example.com/us/rss; no daemon is running" in out
    assert text(config) == COMMENTED.replace(GUARDIAN, GUARDIAN + "    enabled: false\n")
    assert "already disabled" in invoke(config, "feeds", "disable", "Guardian US")
    listed = invoke(config, "feeds", "list")
    assert "Guardian US\thttps://guardian.example.com/us/rss\tnever polled, DISABLED: disabled in the config" in listed
    assert "enabled https://guardian.example.com/us/rss; no daemon is running" in invoke(
        config, "feeds", "enable", "Guardian US")
    assert text(config) == COMMENTED
    assert "already enabled" in invoke(config, "feeds", "enable", "Guardian US")


def test_an_unknown_feed_names_the_closest(config: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(config), "feeds", "remove", "Guardain US"])
    assert result.exit_code == 1 and "no such feed in the config: Guardain US; did you mean Guardian US?" \
        in result.output
    assert text(config) == COMMENTED


def test_two_adds_on_the_shipped_config_keep_its_layout(tmp_path: Path) -> None:
    shipped = (ROOT / "config" / "monitor.yaml").read_text(encoding="utf-8")
    path = tmp_path / "monitor.yaml"
    path.write_text(shipped, encoding="utf-8")
    invoke(path, "feeds", "add", "https://one.example/rss", "--name", "One")
    invoke(path, "feeds", "add", "https://two.example/rss", "--tag", "politics")
    new = ("feeds:\n  - url: https://one.example/rss\n    name: One\n"
           "  - url: https://two.example/rss\n    tags: [politics]\n")
    assert text(path) == shipped.replace("feeds: []\n", new)
    assert [f.url for f in load_settings(path).feeds] == ["https://one.example/rss", "https://two.example/rss"]


@pytest.mark.parametrize(("before", "after"), [
    ("feeds: [{url: https://a.example/x}]  # flow\n",
     "feeds: [{url: https://a.example/x}, {url: https://b.example/y, name: B}]  # flow\n"),
    ("feeds:   # none yet\nkeywords: []\n",
     "feeds:   # none yet\n  - url: https://b.example/y\n    name: B\nkeywords: []\n"),
    ("feeds: null\n", "feeds:\n  - url: https://b.example/y\n    name: B\n"),
    ("database: m.db", "database: m.db\nfeeds:\n  - url: https://b.example/y\n    name: B\n"),
    ("feeds:\n- url: https://a.example/x\n",
     "feeds:\n- url: https://a.example/x\n- url: https://b.example/y\n  name: B\n"),
    ("feeds:\r\n  - url: https://a.example/x\r\n", "feeds:\r\n  - url: https://a.example/x\r\n"
                                                   "  - url: https://b.example/y\r\n    name: B\r\n"),
])
def test_feeds_add_follows_each_layout(tmp_path: Path, before: str, after: str) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_bytes(before.encode())
    invoke(path, "feeds", "add", "https://b.example/y", "--name", "B")
    assert path.read_bytes().decode() == after


def test_flow_entries_are_removed_and_disabled_in_place(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text("feeds: [{url: https://a.example/x}, {url: https://b.example/y, name: B}]\n", encoding="utf-8")
    invoke(path, "feeds", "disable", "B")
    assert text(path) == "feeds: [{url: https://a.example/x}, {url: https://b.example/y, name: B, enabled: false}]\n"
    invoke(path, "feeds", "remove", "https://a.example/x")
    assert text(path) == "feeds: [{url: https://b.example/y, name: B, enabled: false}]\n"
    invoke(path, "feeds", "remove", "B")
    assert text(path) == "feeds: []\n"


def test_the_config_file_keeps_its_mode(config: Path) -> None:
    config.chmod(0o640)
    invoke(config, "feeds", "add", "https://new.example/rss")
    assert config.stat().st_mode & 0o777 == 0o640


def test_opml_export_then_import_keeps_names_tags_and_intervals(config: Path, tmp_path: Path) -> None:
    invoke(config, "feeds", "add", "https://adaptive.example/rss", "--adaptive", "--interval", "90")
    invoke(config, "feeds", "disable", "wire.example.net")
    exported = tmp_path / "feeds.opml"
    exported.write_text(invoke(config, "feeds", "export"), encoding="utf-8")
    assert 'category="world,front page"' in exported.read_text(encoding="utf-8")
    fresh = tmp_path / "fresh" / "monitor.yaml"
    fresh.parent.mkdir()
    fresh.write_text("database: monitor.db\nseeds_dir: null\nfeeds: []\n", encoding="utf-8")
    assert "imported 4 new feeds (0 already configured)" in invoke(fresh, "feeds", "import", str(exported))
    assert load_settings(fresh).feeds == load_settings(config).feeds
    assert "imported 0 new feeds (4 already configured)" in invoke(fresh, "feeds", "import", str(exported))


def test_opml_import_reads_folders_and_categories(config: Path, tmp_path: Path) -> None:
    opml = tmp_path / "reader.opml"
    opml.write_text("""<?xml version="1.0"?>
<opml version="2.0"><head><title>from a reader</title></head><body>
  <outline text="News">
    <outline type="rss" text="Hill" xmlUrl="https://thehill.example/rss" category="politics,/US/Congress"/>
  </outline>
  <outline type="rss" text="quiet.example" xmlUrl="https://quiet.example/rss" interval="often"/>
</body></opml>""", encoding="utf-8")
    invoke(config, "feeds", "import", str(opml))
    hill, quiet = load_settings(config).feeds[-2:]
    assert (hill.name, hill.tags) == ("Hill", ("News", "politics", "US", "Congress"))
    assert (quiet.name, quiet.interval) == (None, 1800.0)  # the host as its text: nameless; an unreadable interval
