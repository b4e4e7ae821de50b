"""Secrets never leave the process: a feed URL's password and tokens, Apprise channel tokens and topics.

Real parts: Apprise delivering to a real HTTP server on 127.0.0.1 that fails, the real pipeline polling a
real failing feed, the CLI through click's runner; the assertions look at the log output, the stored
``alerts.last_error`` and the command output.
"""

from __future__ import annotations

import io
import logging
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from monitor import redact as redaction
from monitor.alerts import run_alerts
from monitor.cli import cli
from monitor.logs import configure_logging
from monitor.redact import apprise_display, redact, register_apprise_url, url_secrets
from monitor.store import Store
from tests.conftest import write_config
from tests.helpers_alerts import SANCTUARY, StoryWriter, make_settings

NOW = datetime(2024, 2, 14, 13, 0, tzinfo=UTC)
PASSWORD = "Hunter2-secret-pw"
FEED_TOKEN = "feedtoken-8c1f5e"
HOOK_TOKEN = "hooktoken-77aa19c3d2"
TOPIC = "private-topic-5f2b9e"
SECRETS = (PASSWORD, FEED_TOKEN, HOOK_TOKEN, TOPIC)


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    redaction.forget_all()
    yield
    redaction.forget_all()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("DEBUG", "text", stream=stream)
    yield stream
    logging.getLogger().removeHandler(handler)


def assert_clean(text: str) -> None:
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"{leaked} in {text!r}"


@pytest.mark.parametrize(("text", "expected"), [
    (f"https://bob:{PASSWORD}@example.com/feed.xml", "https://bob:***@example.com/feed.xml"),
    (f"GET https://example.com/rss?token={FEED_TOKEN}&x=1 failed", "GET https://example.com/rss?token=***&x=1 failed"),
    ("https://e.com/a?apikey=abc&key=def&api_key=ghi&monkey=ok&keyword=ok",
     "https://e.com/a?apikey=***&key=***&api_key=***&monkey=ok&keyword=ok"),
    ("https://e.com/a?access_token=abc&X-Amz-Signature=def&page=2", "https://e.com/a?access_token=***&X-Amz-Signature=***&page=2"),
    ("no url here, user@example.com and a=b", "no url here, user@example.com and a=b"),
])
def test_patterns_mask_url_passwords_and_secret_parameters(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_registered_apprise_pieces_are_masked_as_plain_strings() -> None:
    register_apprise_url(f"ntfy://{TOPIC}")
    register_apprise_url(f"json://127.0.0.1:8080/hook/{HOOK_TOKEN}")
    assert redact(f"Failed to send ntfy notification to {TOPIC}.") == "Failed to send ntfy notification to ***."
    assert redact(f"POST /hook/{HOOK_TOKEN} failed") == "POST /hook/*** failed"
    assert redact("the hook at 127.0.0.1:8080 failed") == "the hook at 127.0.0.1:8080 failed"  # short, public parts
    assert apprise_display(f"ntfy://{TOPIC}") == "ntfy://***"
    assert apprise_display(f"json://127.0.0.1:8080/hook/{HOOK_TOKEN}") == "json://127.0.0.1:8080/***"
    assert url_secrets(f"https://u:{PASSWORD}@e.com/x?token={FEED_TOKEN}&page=22222222") == [PASSWORD, FEED_TOKEN]
    assert redact(None) is None and redact(3) == 3


def test_a_failed_delivery_leaves_no_token_in_last_error_logs_or_alerts_list(
        tmp_path: Path, web: HTTPServer, log_output: io.StringIO) -> None:
    web.expect_request(f"/hook/{HOOK_TOKEN}", method="POST").respond_with_data(f"bad token {HOOK_TOKEN}", status=500)
    web.expect_request("/", method="POST").respond_with_data(f"no topic {TOPIC}", status=500)  # ntfy posts JSON
    channels = {"default": [f"json://127.0.0.1:{web.port}/hook/{HOOK_TOKEN}",
                            f"ntfy://127.0.0.1:{web.port}/{TOPIC}"]}
    rules = [{"name": "sanctuary", "query": SANCTUARY, "notify": ["default"]}]
    settings = make_settings(tmp_path, rules=rules, channels=channels)
    with Store.open(settings.database) as store:
        StoryWriter(store).add(1, source="outlet-a", title="Border patrol sent to sanctuary cities",
                               text="Agents will work with ICE in sanctuary cities.")
        report = run_alerts(settings, store, now=NOW)
        [row] = store.undelivered_alerts()
    assert report.failures == 2 and len(web.log) == 2  # both reached the server and failed
    assert row["last_error"].startswith("default:") and "500" in report.errors[0]
    assert_clean(row["last_error"])
    assert_clean(" ".join(report.errors))
    assert_clean(report.summary())
    assert_clean(log_output.getvalue())
    assert "alert delivery to channel default failed" in log_output.getvalue()

    # An alert row written before masking existed: `alerts list` masks it on the way out.
    with sqlite3.connect(settings.database) as conn:
        conn.execute("UPDATE alerts SET last_error = ?", (f"default: POST json://127.0.0.1/hook/{HOOK_TOKEN} "
                                                          f"(topic {TOPIC}) failed",))
    config = write_config(tmp_path, seeds_dir=None, channels=channels, alerts=rules)
    for args in (["alerts", "list"], ["alerts", "list", "--json"]):
        result = CliRunner().invoke(cli, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
        assert "last error" in result.output or "last_error" in result.output
        assert_clean(result.output)


def test_a_feed_url_with_a_password_is_refused_without_repeating_it(tmp_path: Path) -> None:
    url = f"https://reader:{PASSWORD}@example.com/private.xml"
    config = write_config(tmp_path, seeds_dir=None, feeds=[{"url": url}])
    result = CliRunner().invoke(cli, ["--config", str(config), "status"])
    assert result.exit_code == 1 and "feeds.0.url" in result.output and "reader:***@example.com" in result.output
    assert_clean(result.output + result.stderr)


def test_a_failing_feed_with_a_token_in_its_url(tmp_path: Path, web: HTTPServer) -> None:
    web.expect_request("/private.xml").respond_with_data("no", status=500)
    url = f"http://127.0.0.1:{web.port}/private.xml?token={FEED_TOKEN}"
    config = write_config(tmp_path, seeds_dir=None, feeds=[{"url": url, "name": "private"}])
    runner = CliRunner()
    polled = runner.invoke(cli, ["--config", str(config), "run", "--once"])
    assert polled.exit_code == 0, polled.output
    assert "feed polled" in polled.stderr and "private.xml?token=***" in polled.stderr  # logged, masked
    assert_clean(polled.output + polled.stderr)
    assert len(web.log) == 1 and web.log[0][0].args["token"] == FEED_TOKEN  # the real URL was polled
    with sqlite3.connect(tmp_path / "monitor.db") as conn:
        assert conn.execute("SELECT url FROM feeds").fetchone()[0] == url  # stored as configured, to poll it
        conn.execute("UPDATE feeds SET last_error = ?", (f"500 for url '{url}' ({PASSWORD})",))
    redaction.register([PASSWORD])  # as the config's other feeds' secrets would be
    for args in (["status"], ["status", "--json"], ["feeds", "list"], ["feeds", "list", "--json"]):
        result = runner.invoke(cli, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
        assert f"127.0.0.1:{web.port}/private.xml" in result.output
        assert_clean(result.output + result.stderr)
