"""A broken config stops start-up with one clear line naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from monitor.cli import cli
from monitor.errors import ConfigError
from monitor.settings import Settings, load_settings


def config_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "monitor.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    message = str(caught.value)
    assert message.startswith(str(path.resolve()))
    return message


def test_minimal_config_is_valid_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "monitor.yaml"
    path.parent.mkdir()
    path.write_text("database: m.db\nseeds_dir: seeds\nfeeds: []\n", encoding="utf-8")
    settings = load_settings(path)
    assert settings.database == path.parent.resolve() / "m.db"
    assert settings.seeds_dir == path.parent.resolve() / "seeds"
    assert settings.fetch.timeout > 0 and settings.feeds == ()


def test_shipped_config_is_valid() -> None:
    settings = load_settings(Path(__file__).resolve().parents[1] / "config" / "monitor.yaml")
    assert settings.database.name == "monitor.db" and settings.seeds_dir.name == "seeds"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    assert "databse: unknown key" in config_error(tmp_path, "databse: m.db\n")


def test_nested_unknown_key_is_named(tmp_path: Path) -> None:
    assert "fetch.timout: unknown key" in config_error(tmp_path, "fetch:\n  timout: 3\n")


def test_wrong_type_is_named(tmp_path: Path) -> None:
    assert "fetch.timeout:" in config_error(tmp_path, "fetch:\n  timeout: soon\n")


def test_bad_feed_url_is_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "feeds:\n  - url: htp://example.com/rss\n")
    assert "feeds.0.url" in message and "not a valid http(s) URL" in message


def test_bad_interval_is_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "feeds:\n  - url: https://example.com/rss\n    interval: often\n")
    assert "feeds.0.interval" in message


def test_broken_yaml_gives_line_and_column(tmp_path: Path) -> None:
    message = config_error(tmp_path, "feeds: [\n  - url: x\n")
    assert "invalid YAML (line" in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")


def test_cli_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "monitor.yaml"
    path.write_text("feeds:\n  - url: not-a-url\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(path), "run", "--once"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "feeds.0.url" in lines[0]


def test_unusable_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "not.db").write_bytes(b"this is not a sqlite database, just text" * 100)
    path = tmp_path / "monitor.yaml"
    path.write_text("database: not.db\nseeds_dir: null\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(path), "run", "--once"])
    assert result.exit_code == 1 and "cannot use the database" in result.output


def test_every_config_key_is_documented_in_the_readme() -> None:
    """Docs never fall behind the settings: each key (and each section's keys) has a row in the README."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    missing = []
    for name, field in Settings.model_fields.items():
        if field.exclude:
            continue
        section = field.annotation
        if name == "cluster":
            assert "`cluster.*`" in readme
        elif isinstance(section, type) and issubclass(section, BaseModel):
            missing += [f"{name}.{key}" for key in section.model_fields if f"{name}.{key}" not in readme]
        elif f"`{name}`" not in readme:
            missing.append(name)
    assert not missing, f"README's configuration table lacks: {missing}"


@pytest.mark.parametrize(("text", "expected"), [
    ("keywords: 5\n", "keywords: expected a list, e.g. [a, b] or one '- item' per line, got 5"),
    ("digest: {mode: weekly}\n", "digest.mode: 'weekly' is not allowed; use one of immediate, hourly, daily"),
    ("log_format: yaml\n", "log_format: 'yaml' is not allowed; use one of text, json"),
    ("databse: m.db\n", "databse: unknown key; did you mean database?"),
    ("fetch: {timout: 3}\n", "fetch.timout: unknown key; did you mean timeout?"),
    ("web: {colour: red}\n", "web.colour: unknown key; allowed here: allow_sql, max_returned_rows"),
    ("fetch: {timeout: 0}\n", "fetch.timeout: must be more than 0, got 0"),
    ("fetch: {concurrency: many}\n", "fetch.concurrency: expected a whole number, got 'many'"),
    ("fetch: 5\n", "fetch: expected a mapping of keys to values (key: value lines), got 5"),
    ("feeds: [{name: x}]\n", "feeds.0.url: missing: this key is required here"),
    ("feeds: [{url: 'https://a.example', interval: -5}]\n", "feeds.0.interval: a duration must be positive, got -5"),
    ("feeds: [{url: 'https://a.example', adaptive: maybe}]\n", "feeds.0.adaptive: expected true or false, got 'maybe'"),
    ("feeds: [{url: 'https://a.example', tags: politics}]\n",
     "feeds.0.tags: expected a list, e.g. [a, b] or one '- item' per line, got 'politics'"),
    ("alerts: [{name: '', query: x}]\n", "alerts.0.name: must not be empty, got ''"),
    ("alerts: [{name: a, query: x, min_sources: 0}]\n", "alerts.0.min_sources: must be at least 1, got 0"),
    ("web: {base_url: news}\n",
     "web.base_url: expected an http(s) address such as https://news.example.org, got 'news'"),
    ("cluster: {threshold: high}\n", "cluster.threshold: expected a number, got 'high'"),
])
def test_config_errors_name_the_key_the_value_and_what_is_allowed(tmp_path: Path, text: str, expected: str) -> None:
    message = config_error(tmp_path, text)
    assert expected in message
    for library_words in ("Input should", "String should", "valid tuple", "Value error,", "pattern"):
        assert library_words not in message
