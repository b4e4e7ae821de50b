"""Datasette over a real pipeline-made database, through HTTP: metadata, search, canned queries, cluster page.

One ``newsmonitor serve`` subprocess for the module, on a database deliberately not called
``monitor.db`` so the metadata's re-keying to the configured database is exercised too.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from monitor.web import cluster_view, datasette_command, load_metadata, offset_text
from tests.helpers_web import (
    FIRST_SEED,
    FIRST_TITLE_START,
    SECOND_SEED,
    SECOND_TITLE,
    WIRE_COPY,
    build_database,
    free_port,
    newsmonitor_serve,
    running,
)

DB = "news"
DESCRIBED_TABLES = ("articles", "clusters", "feeds", "runs")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_database(tmp_path_factory.mktemp("web"), database=f"{DB}.db")


@pytest.fixture(scope="module")
def database(config: Path) -> Path:
    return config.parent / f"{DB}.db"


@pytest.fixture(scope="module")
def server(config: Path) -> Iterator[httpx.Client]:
    port = free_port()
    with running(newsmonitor_serve(config, port), port) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def rows(client: httpx.Client, path: str, **params: str) -> list[dict]:
    response = client.get(path, params={**params, "_shape": "array"})
    assert response.status_code == 200, response.text
    return response.json()


def test_every_visible_table_and_column_is_described(server: httpx.Client, database: Path) -> None:
    metadata = server.get("/-/metadata.json").json()
    tables = metadata["databases"][DB]["tables"]
    conn = sqlite3.connect(database)
    present = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table in [*DESCRIBED_TABLES, *(["alerts"] if "alerts" in present else [])]:
        assert tables[table]["title"] and tables[table]["description"]
        columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
        missing = [c for c in columns if not tables[table]["columns"].get(c)]
        assert not missing, f"{table}: no description for {missing}"
    listed = {t["name"]: t["hidden"] for t in server.get(f"/{DB}.json").json()["tables"]}
    assert {name for name, hidden in listed.items() if not hidden} - {"alerts"} == set(DESCRIBED_TABLES)
    assert all(listed[name] for name in present if name.startswith(("_", "articles_fts", "alert_state")))


def test_articles_table_shows_labels_sort_and_facets(server: httpx.Client) -> None:
    data = server.get(f"/{DB}/articles.json", params={"_labels": "on", "_shape": "objects"}).json()
    assert data["human_description_en"] == "sorted by fetched_at descending"
    assert set(data["facet_results"]) == {"source", "language"}
    sources = {r["value"] for r in data["facet_results"]["source"]["results"]}
    assert sources == {FIRST_SEED, SECOND_SEED, WIRE_COPY}
    cluster = data["rows"][0]["cluster_id"]
    assert cluster["label"].startswith(SECOND_TITLE)
    html = server.get(f"/{DB}/articles").text
    assert f'<a href="/-/cluster/{cluster["value"]}">{SECOND_TITLE}' in html


def test_articles_table_offers_its_main_columns_only(server: httpx.Client) -> None:
    html = server.get(f"/{DB}/articles").text
    (columns,) = re.findall(r'<a href="(\?_col=[^"]+)">the main columns only</a>', html)
    compact = server.get(f"/{DB}/articles" + columns.replace("&amp;", "&") + "&_size=1")
    assert compact.status_code == 200
    assert '<td class="col-text' not in compact.text and '<td class="col-title' in compact.text
    assert 'rel="next"' in compact.text or "_next=" in compact.text  # paging works without every column


def test_full_text_search_finds_both_seed_articles(server: httpx.Client) -> None:
    found = rows(server, f"/{DB}/articles.json", _search="Albence")
    assert {r["source"] for r in found} >= {FIRST_SEED, SECOND_SEED}
    assert rows(server, f"/{DB}/articles.json", _search="zebrafishology") == []


def test_the_articles_search_box_speaks_the_alert_query_language(server: httpx.Client) -> None:
    both = {r["id"] for r in rows(server, f"/{DB}/articles.json", _search="Albence")}
    assert {r["id"] for r in rows(server, f"/{DB}/articles.json", _search="zebrafishology OR Albence")} == both
    assert {r["id"] for r in rows(server, f"/{DB}/articles.json", _search="Alben*")} == both
    assert [r["source"] for r in rows(server, f"/{DB}/articles.json", _search="title:patrol")] == [SECOND_SEED]
    assert rows(server, f"/{DB}/articles.json", _search="Albence NOT Albence") == []
    assert rows(server, f"/{DB}/articles.json", _search="(Albence")  # unreadable: searched as plain words


def test_latest_clusters_query(server: httpx.Client) -> None:
    (cluster,) = rows(server, f"/{DB}/latest_clusters.json")
    assert cluster["size"] == 2  # the wire copy is a duplicate, counted once
    assert cluster["outlets"] == 3
    assert cluster["outlet_names"] == ", ".join(sorted([FIRST_SEED, SECOND_SEED, WIRE_COPY]))
    assert cluster["tracked_keywords"] == "border patrol"
    assert cluster["last_seen"][10] == " " and len(cluster["last_seen"]) == 16  # readable, UTC, to the minute
    assert f'<a href="/-/cluster/{cluster["cluster"]}">#{cluster["cluster"]}</a>' in server.get(
        f"/{DB}/latest_clusters").text


def test_cluster_articles_query_marks_the_copy(server: httpx.Client) -> None:
    articles = rows(server, f"/{DB}/cluster_articles.json", cluster_id="1")
    assert [a["time"] for a in articles] == sorted(a["time"] for a in articles)
    by_outlet = {a["outlet"]: a for a in articles}
    original = by_outlet[FIRST_SEED]["article"]
    assert by_outlet[WIRE_COPY]["duplicate"] == f"copy of #{original}"
    assert by_outlet[WIRE_COPY]["duplicate_similarity"] > 0.9
    assert by_outlet[SECOND_SEED]["duplicate"] == ""
    assert "albence" in json.loads(by_outlet[SECOND_SEED]["shared_terms"])


def test_search_articles_query_ranks_and_marks_the_words(server: httpx.Client) -> None:
    found = rows(server, f"/{DB}/search_articles.json", term="Albence")
    assert {r["outlet"] for r in found} >= {FIRST_SEED, SECOND_SEED} and all(r["cluster"] == 1 for r in found)
    html = server.get(f"/{DB}/search_articles", params={"term": "Albence"}).text
    assert "<mark>Albence</mark>" in html and '<a href="/-/cluster/1">#1</a>' in html
    assert rows(server, f"/{DB}/search_articles.json", term="albenc") == []  # whole words, not stems


def test_search_clusters_query(server: httpx.Client) -> None:
    (hit,) = rows(server, f"/{DB}/search_clusters.json", term="Albence")
    assert hit["matching_articles"] == 3
    assert rows(server, f"/{DB}/search_clusters.json", term='"protection cities" sanctuary-less') == []


def test_feed_health_query_runs(server: httpx.Client) -> None:
    assert rows(server, f"/{DB}/feed_health.json") == []  # no feeds configured, but the query is valid


def test_cluster_page(server: httpx.Client) -> None:
    response = server.get("/-/cluster/1")
    assert response.status_code == 200
    html = response.text
    assert SECOND_TITLE in html and FIRST_TITLE_START in html
    assert "First reported by" in html
    assert 'data-testid="duplicate-mark"' in html and "copy of" in html
    assert "albence" in html and "border patrol" in html
    data = server.get("/-/cluster/1.json").json()
    assert data["cluster"]["articles"] == 3
    assert data["articles"][0]["first"] and data["articles"][0]["offset"] == "first report"
    assert any(t["term"] == "albence" and t["articles"] >= 1 for t in data["shared_terms"])
    assert server.get("/-/cluster/999").status_code == 404


def test_serves_what_is_written_meanwhile(server: httpx.Client, database: Path) -> None:
    """Like the daemon writing while ``serve`` runs: new feeds and alerts appear without a restart."""
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("INSERT INTO feeds (url, name, last_status, consecutive_errors, in_config) "
                 "VALUES ('http://127.0.0.1:9/feed.xml', 'Local feed', 'error', 3, 1)")
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'alerts'").fetchone():
        assert "alerts" not in [q["name"] for q in server.get(f"/{DB}.json").json()["queries"]]
        conn.execute("CREATE TABLE alerts (id INTEGER PRIMARY KEY, rule TEXT, cluster_id INTEGER, reason TEXT, "
                     "created TEXT, delivered_at TEXT, attempts INTEGER, last_error TEXT)")
    conn.execute("INSERT INTO alerts (rule, cluster_id, reason, created, attempts, last_error) "
                 "VALUES ('sanctuary-cities', 1, 'new', '2024-05-01T08:00:00+00:00', 1, 'connection refused')")
    conn.close()
    (feed,) = rows(server, f"/{DB}/feed_health.json")
    assert feed["name"] == "Local feed" and feed["consecutive_errors"] == 3
    (alert,) = rows(server, f"/{DB}/alerts.json")
    assert (alert["rule"], alert["cluster"], alert["delivery"]) == ("sanctuary-cities", 1, "retrying")
    assert alert["cluster_title"].startswith(SECOND_TITLE)
    assert '<a href="/-/cluster/1">#1</a>' in server.get(f"/{DB}/alerts").text


def test_cluster_page_marks_articles_moved_by_a_split(server: httpx.Client, database: Path) -> None:
    conn = sqlite3.connect(database, isolation_level=None)
    (article,) = conn.execute("SELECT id FROM articles WHERE cluster_id = 1 ORDER BY id DESC LIMIT 1").fetchone()
    conn.execute("UPDATE articles SET split_from = 42 WHERE id = ?", [article])
    html = server.get("/-/cluster/1").text
    assert html.count('data-testid="split-mark"') == 1 and 'href="/-/cluster/42"' in html
    assert "from its join to that story" in html and "re-checked" not in html
    conn.execute("UPDATE articles SET rescored_at = '2024-05-02T08:00:00+00:00' WHERE id = ?", [article])
    conn.close()
    html = server.get("/-/cluster/1").text
    assert "score and terms re-checked against this story" in html and "from its join to that story" not in html
    data = server.get("/-/cluster/1.json").json()
    assert [a["split_from"] for a in data["articles"] if a["id"] == article] == [42]
    assert '<a href="/-/cluster/42">#42</a>' in server.get(f"/{DB}/articles/{article}").text


def test_merged_cluster_page_points_to_the_cluster_that_absorbed_it(server: httpx.Client, database: Path) -> None:
    conn = sqlite3.connect(database, isolation_level=None)
    (article,) = conn.execute("SELECT id FROM articles WHERE cluster_id = 1 ORDER BY id DESC LIMIT 1").fetchone()
    conn.execute("INSERT INTO clusters (id, title, merged_into) VALUES (77, 'An early half of story 1', 1)")
    conn.execute("UPDATE articles SET merged_from = 77 WHERE id = ?", [article])
    conn.close()
    html = server.get("/-/cluster/1").text
    assert html.count('data-testid="merged-mark"') == 1 and 'href="/-/cluster/77"' in html
    gone = server.get("/-/cluster/77").text
    assert 'data-testid="merged-into"' in gone and 'href="/-/cluster/1"' in gone
    assert '<a href="/-/cluster/1">#1</a>' in server.get(f"/{DB}/clusters/77").text
    assert '<a href="/-/cluster/77">#77</a>' in server.get(f"/{DB}/articles/{article}").text
    listed = [r["cluster"] for r in rows(server, f"/{DB}/latest_clusters.json")]
    assert 1 in listed and 77 not in listed


# -- without a server ------------------------------------------------------------------------------------


def test_metadata_is_rekeyed_to_the_database_name(tmp_path: Path) -> None:
    metadata = load_metadata(tmp_path / "news.db")
    assert set(metadata["databases"]) == {"news"}
    assert '"/news/latest_clusters"' in metadata["description_html"]
    assert "/monitor/" not in metadata["description_html"]
    assert set(load_metadata(tmp_path / "monitor.db")["databases"]) == {"monitor"}


def test_documented_datasette_command_names_the_shipped_files(tmp_path: Path) -> None:
    command = datasette_command(tmp_path / "monitor.db", port=8123)
    for flag in ("--metadata", "--template-dir", "--plugins-dir"):
        assert Path(command[command.index(flag) + 1]).exists()


def test_cluster_view_of_a_missing_cluster_is_none(database: Path) -> None:
    with sqlite3.connect(database) as conn:
        assert cluster_view(conn, 12345) is None
        view = cluster_view(conn, 1)
    assert view is not None
    copy = next(a for a in view["articles"] if a["outlet"] == WIRE_COPY)
    assert copy["duplicate_of_outlet"] == FIRST_SEED
    first = next(a for a in view["articles"] if a["outlet"] == FIRST_SEED)
    assert first["copies"] == [copy["id"]]


@pytest.mark.parametrize(("minutes", "text"), [(0, "+0m"), (7, "+7m"), (65, "+1h 05m"), (3 * 1440 + 125, "+3d 2h")])
def test_offset_text(minutes: int, text: str) -> None:
    from datetime import datetime, timedelta

    start = datetime(2024, 5, 1, 8, 0)
    assert offset_text(start, start + timedelta(minutes=minutes)) == text


def test_serve_without_a_database_says_what_to_do(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from monitor.cli import cli

    config = tmp_path / "monitor.yaml"
    config.write_text("database: missing.db\nseeds_dir: seeds\nfeeds: []\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(config), "serve", "--port", "1"], obj={})
    assert result.exit_code == 1
    assert "missing.db: no database yet; run `newsmonitor run --once` first" in result.output
    assert not (tmp_path / "missing.db").exists()  # serving never creates or migrates a database
