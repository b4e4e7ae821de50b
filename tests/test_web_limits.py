"""Datasette as a server others may reach: size and time bounds, arbitrary SQL off, 404s, no secrets shown.

A real ``newsmonitor serve`` subprocess on an ephemeral 127.0.0.1 port over a pipeline-made database,
to which feeds with a token in their URL and an alert whose error names a channel token are added.
The server's memory is read from /proc while it refuses a query that would build an 800 MB value.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from ruamel.yaml import YAML

from monitor.web import datasette_command
from tests.helpers_web import build_database, free_port, newsmonitor_serve, stop

FEED_TOKEN = "feedtoken-8c1f5e"
HOOK_TOKEN = "hooktoken-77aa19c3d2"
PASSWORD = "Hunter2-secret-pw"
SECRET_URL = f"https://example.com/private.xml?token={FEED_TOKEN}"
OLD_URL = f"https://reader:{PASSWORD}@old.example.com/feed.xml?apikey={FEED_TOKEN}"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Server:
    def __init__(self, process: subprocess.Popen[str], client: httpx.Client) -> None:
        self.process = process
        self.client = client


def _config(folder: Path, **web: object) -> Path:
    config = folder / f"monitor-{len(web)}.yaml"
    data = YAML(typ="safe", pure=True).load((folder / "monitor.yaml").read_text())
    data["feeds"] = [{"url": SECRET_URL, "name": "private"}]
    data["channels"] = {"default": [f"json://127.0.0.1:9/hook/{HOOK_TOKEN}"]}
    if web:
        data["web"] = web
    YAML(typ="safe", pure=True).dump(data, config)
    return config


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("limits")
    build_database(folder, wire_copy=False)
    with sqlite3.connect(folder / "monitor.db") as conn:
        conn.execute("INSERT INTO feeds (url, name, in_config, last_status, last_error, consecutive_errors) "
                     "VALUES (?, 'private', 1, 'error', ?, 1)", (SECRET_URL, f"HTTP 500 for url '{SECRET_URL}'"))
        # A feed no longer in the config (its secrets are not registered): masked by pattern alone.
        conn.execute("INSERT INTO feeds (url, name, in_config, last_error) VALUES (?, 'old', 0, ?)",
                     (OLD_URL, f"could not reach {OLD_URL}"))
        cluster = conn.execute("SELECT id FROM clusters LIMIT 1").fetchone()[0]
        conn.execute("INSERT INTO alerts (rule, cluster_id, step, reason, created, title, message, attempts, "
                     "last_error) VALUES ('r', ?, 0, 'new story', '2024-01-01', 't', 'm', 1, ?)",
                     (cluster, f"default: POST json://127.0.0.1:9/hook/{HOOK_TOKEN} refused"))
    return folder


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[Server]:
    with serving(_config(folder)) as running:
        yield running


@contextmanager
def serving(config: Path) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen(newsmonitor_serve(config, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                try:
                    if client.get("/-/versions.json", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "server did not start"
                    time.sleep(0.1)
            yield Server(process, client)
    finally:
        stop(process)


def assert_clean(text: str) -> None:
    leaked = [s for s in (FEED_TOKEN, HOOK_TOKEN, PASSWORD) if s in text]
    assert not leaked, f"{leaked} shown"


@pytest.mark.parametrize("path", [
    "/monitor/feeds", "/monitor/feeds.json", "/monitor/feeds.csv", "/monitor/feeds/1", "/monitor/feed_health",
    "/monitor/feed_health.json", "/monitor/alerts", "/monitor/alerts.json", "/monitor/alerts?_facet=last_error",
    "/monitor.json?sql=select+url,+last_error+from+feeds", "/monitor?sql=select+*+from+feeds",
])
def test_datasette_never_shows_a_feed_or_channel_secret(server: Server, path: str) -> None:
    response = server.client.get(path)
    assert response.status_code == 200, response.text
    assert "***" in response.text or path == "/monitor/feeds/1"  # masked, not left out
    assert_clean(response.text)


def test_the_feed_url_is_still_stored_as_configured(folder: Path) -> None:
    with sqlite3.connect(folder / "monitor.db") as conn:
        assert {r[0] for r in conn.execute("SELECT url FROM feeds")} == {SECRET_URL, OLD_URL}


def test_a_huge_value_is_refused_and_the_server_stays_small(server: Server) -> None:
    before = rss_mb(server.process.pid)
    response = server.client.get("/monitor.json", params={"sql": "select hex(randomblob(400000000))"})
    assert response.status_code == 400 and "too big" in response.json()["error"]
    html = server.client.get("/monitor", params={"sql": "select hex(randomblob(400000000))"})
    assert html.status_code == 400 and "too big" in html.text
    assert rss_mb(server.process.pid) < before + 50


def test_many_large_values_are_stopped_at_the_result_bound(server: Server) -> None:
    before = rss_mb(server.process.pid)
    sql = ("with recursive n(i) as (select 1 union all select i + 1 from n where i < 1000) "
           "select i, hex(randomblob(900000)) from n")  # 1.8 MB a row under the 2 MB value bound: 1.8 GB
    response = server.client.get("/monitor.json", params={"sql": sql})
    assert response.status_code == 400 and "larger than 50 MB" in response.json()["error"]
    assert rss_mb(server.process.pid) < before + 200
    assert server.client.get("/monitor/articles.json").status_code == 200  # and it still serves


def test_returned_rows_and_the_time_limit(server: Server) -> None:
    sql = "with recursive n(i) as (select 1 union all select i + 1 from n where i < 5000) select i from n"
    data = server.client.get("/monitor.json", params={"sql": sql, "_shape": "objects"}).json()
    assert len(data["rows"]) == 1000 and data["truncated"]
    slow = ("with recursive n(i) as (select 1 union all select i + 1 from n where i < 100000000) "
            "select count(*) from n")
    started = time.monotonic()
    response = server.client.get("/monitor.json", params={"sql": slow})
    assert response.status_code == 400 and "interrupted" in response.text.lower()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("path", ["/-/cluster/99999999999999999999999", "/-/cluster/9223372036854775808.json",
                                  "/-/cluster/9223372036854775807", "/-/cluster/0",
                                  "/-/cluster/99999999999999999999999/articles.csv", "/-/cluster/0/articles.json"])
def test_a_cluster_that_cannot_exist_is_404(server: Server, path: str) -> None:
    assert server.client.get(path).status_code == 404


def test_arbitrary_sql_off_is_403_and_the_rest_still_works(folder: Path) -> None:
    with serving(_config(folder, allow_sql=False, max_returned_rows=5)) as off:
        assert off.client.get("/monitor.json", params={"sql": "select 1"}).status_code == 403
        assert off.client.get("/monitor", params={"sql": "select 1"}).status_code == 403
        assert off.client.get("/monitor/latest_clusters.json").status_code == 200
        articles = off.client.get("/monitor/articles.json", params={"_shape": "objects", "_size": "max"}).json()
        assert len(articles["rows"]) <= 5
        cluster = articles["rows"][0]["cluster_id"]
        assert off.client.get(f"/-/cluster/{cluster}").status_code == 200


def test_the_documented_command_carries_the_limits(tmp_path: Path) -> None:
    command = " ".join(datasette_command(tmp_path / "monitor.db"))
    for setting in ("max_returned_rows 1000", "sql_time_limit_ms 3000", "max_csv_mb 10", "default_allow_sql true"):
        assert f"--setting {setting}" in command


def test_the_story_search_is_bounded(server: Server) -> None:
    """Each term is one full-text look-up: a search of 31 terms is refused with a clear error, 30 are read."""
    too_many = " OR ".join(f"word{n}" for n in range(31))
    response = server.client.get("/", params={"q": too_many})
    assert response.status_code == 200 and "31 terms; a search takes at most 30" in response.text
    assert 'data-testid="search-error"' not in server.client.get("/", params={"q": too_many[:-10]}).text
    huge = server.client.get("/", params={"q": "x" * 5000, "page": "99999999999", "min_outlets": "9" * 30})
    assert huge.status_code == 200 and 'data-testid="filter-problem"' in huge.text
