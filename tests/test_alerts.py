"""Alerts end to end on a real SQLite file, delivered by Apprise to real servers on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from monitor.alerts import CHUNK, evaluate, evaluate_and_record, run_alerts
from monitor.errors import ConfigError
from monitor.settings import settings_from_mapping
from monitor.store import Store
from monitor.store_read import ReadOnlyStore
from tests.conftest import ROOT
from tests.helpers_alerts import (
    SANCTUARY,
    StoryWriter,
    attempts,
    json_url,
    mail_text,
    make_settings,
    posted,
    smtp_server,
)

NOW = datetime(2024, 2, 14, 13, 0, tzinfo=UTC)
BORDER = "Border patrol officers sent to sanctuary cities"
BORDER_TEXT = "Agents will work with ICE in sanctuary cities, officials said."


def recent_alerts(store: Store) -> list[dict[str, Any]]:
    """The alerts as ``alerts list`` reads them: read-only, beside the writer's connection."""
    with ReadOnlyStore(store.path) as reader:
        return reader.recent_alerts()



@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "monitor.db")
    yield store
    store.close()


@pytest.fixture
def hook(web: HTTPServer) -> HTTPServer:
    web.expect_request("/hook", method="POST").respond_with_data("ok")
    return web


def rule(**overrides: object) -> dict[str, object]:
    return {"name": "sanctuary-cities", "query": SANCTUARY, "notify": ["default"], **overrides}


def test_alert_is_recorded_then_delivered_once_per_cluster(tmp_path: Path, store: Store, hook: HTTPServer) -> None:
    settings = make_settings(tmp_path, rules=[rule()], channels={"default": json_url(hook)})
    stories = StoryWriter(store)
    stories.add(1, source="outlet-a", title=BORDER, text=BORDER_TEXT)
    stories.add(2, source="outlet-b", title="Weather", text="Rain over the police station.")

    report = run_alerts(settings, store, now=NOW)

    assert (report.recorded, report.alerts_delivered, report.messages_sent, report.pending) == (1, 1, 1, 0)
    [body] = posted(hook)
    assert body["title"] == f"[sanctuary-cities] {BORDER}"
    assert '"sanctuary cities"' in body["message"] and "ICE" in body["message"]
    [row] = recent_alerts(store)
    assert row["cluster_id"] == 1 and row["delivered_at"] == NOW.isoformat() and row["attempts"] == 1
    assert json.loads(row["matched_terms"]) == ['"sanctuary cities"', "ICE", '"border patrol"']

    # More articles from the same outlet, later passes: the story has been told.
    stories.add(1, source="outlet-a", title="More on it", text="ICE and sanctuary cities again")
    for minutes in (1, 60):
        again = run_alerts(settings, store, now=NOW + timedelta(minutes=minutes))
        assert (again.recorded, again.messages_sent) == (0, 0)
    assert attempts(hook) == 1


def test_message_says_what_matched_and_why(tmp_path: Path, store: Store, hook: HTTPServer) -> None:
    settings = make_settings(tmp_path, rules=[rule()], channels={"default": json_url(hook)})
    stories = StoryWriter(store)
    stories.add(7, source="outlet-a", title=BORDER, text=BORDER_TEXT, when="2024-02-14T08:00:00+00:00")
    stories.add(7, source="outlet-b", title="Agents to protection cities", text="ICE says protection cities ...",
                when="2024-02-14T09:30:00+00:00")
    run_alerts(settings, store, now=NOW)
    message = posted(hook)[0]["message"]
    assert "Rule 'sanctuary-cities' matched: new story in 2 outlets." in message
    assert f"Story: {BORDER}" in message
    assert "2 articles from 2 outlets; first seen 2024-02-14T08:00:00+00:00" in message
    assert 'Matched terms: "sanctuary cities", "protection cities", ICE, "border patrol"' in message
    assert "- Agents to protection cities (outlet-b): https://outlet-b/story/2" in message
    assert "https://outlet-a/story/1" in message


def test_realert_when_the_story_gains_enough_new_outlets(tmp_path: Path, store: Store, hook: HTTPServer) -> None:
    settings = make_settings(tmp_path, rules=[rule(realert_on_growth=2)], channels={"default": json_url(hook)})
    stories = StoryWriter(store)
    stories.add(1, source="outlet-a", title=BORDER, text=BORDER_TEXT)
    assert run_alerts(settings, store, now=NOW).recorded == 1

    stories.add(1, source="outlet-b", title="Follow-up", text="ICE in sanctuary cities")
    assert run_alerts(settings, store, now=NOW).recorded == 0  # one new outlet is not enough

    stories.add(1, source="outlet-c", title="Reaction", text="Mayors of sanctuary cities respond to ICE")
    grown = run_alerts(settings, store, now=NOW)
    assert (grown.recorded, grown.alerts_delivered) == (1, 1)
    assert run_alerts(settings, store, now=NOW).recorded == 0

    first, second = posted(hook)
    assert "new story in 1 outlet." in first["message"]
    assert "story grew from 1 to 3 outlets" in second["message"]
    steps = [(r["step"], r["sources_at_alert"]) for r in reversed(recent_alerts(store))]
    assert steps == [(0, 1), (1, 3)]


def test_failed_delivery_is_retried_with_backoff(tmp_path: Path, store: Store, web: HTTPServer) -> None:
    web.expect_ordered_request("/hook", method="POST").respond_with_data("down", status=500)
    web.expect_ordered_request("/hook", method="POST").respond_with_data("ok")
    settings = make_settings(tmp_path, rules=[rule()], channels={"default": json_url(web)})
    StoryWriter(store).add(1, source="outlet-a", title=BORDER, text=BORDER_TEXT)

    failed = run_alerts(settings, store, now=NOW)
    assert (failed.recorded, failed.failures, failed.pending, failed.alerts_delivered) == (1, 1, 1, 0)
    [row] = store.undelivered_alerts()
    assert row["attempts"] == 1 and "500" in row["last_error"] and row["last_error"].startswith("default:")
    assert row["next_attempt"] == (NOW + timedelta(seconds=60)).isoformat()

    too_soon = run_alerts(settings, store, now=NOW + timedelta(seconds=30))
    assert too_soon.messages_sent == 0 and attempts(web) == 1

    retried = run_alerts(settings, store, now=NOW + timedelta(seconds=61))
    assert (retried.alerts_delivered, retried.pending) == (1, 0)
    assert attempts(web) == 2 and len(posted(web)) == 1
    [row] = recent_alerts(store)
    assert row["attempts"] == 2 and row["delivered_at"] is not None


def test_backoff_doubles_while_the_channel_stays_down(tmp_path: Path, store: Store, web: HTTPServer) -> None:
    web.expect_request("/hook", method="POST").respond_with_data("down", status=503)
    settings = make_settings(tmp_path, rules=[rule()], channels={"default": json_url(web)})
    StoryWriter(store).add(1, source="outlet-a", title=BORDER, text=BORDER_TEXT)
    when = NOW
    delays = []
    for _ in range(4):
        run_alerts(settings, store, now=when)
        next_attempt = datetime.fromisoformat(store.undelivered_alerts()[0]["next_attempt"])
        delays.append((next_attempt - when).total_seconds())
        when = next_attempt
    assert delays == [60, 120, 240, 480]
    assert attempts(web) == 4


def test_a_target_that_got_the_alert_is_not_sent_it_again(tmp_path: Path, store: Store, web: HTTPServer) -> None:
    calls = []

    def down_then_up(request: Request) -> Response:
        calls.append(request.path)
        return Response("down", status=500) if len(calls) == 1 else Response("ok")

    web.expect_request("/good", method="POST").respond_with_data("ok")
    web.expect_request("/bad", method="POST").respond_with_handler(down_then_up)
    settings = make_settings(tmp_path, rules=[rule()],
                             channels={"default": [json_url(web, "/good"), json_url(web, "/bad")]})
    StoryWriter(store).add(1, source="outlet-a", title=BORDER, text=BORDER_TEXT)
    run_alerts(settings, store, now=NOW)
    assert (attempts(web, "/good"), attempts(web, "/bad")) == (1, 1)
    assert len(store.undelivered_alerts()) == 1
    run_alerts(settings, store, now=NOW + timedelta(minutes=2))
    assert (attempts(web, "/good"), attempts(web, "/bad")) == (1, 2)
    assert store.undelivered_alerts() == []


CRASHING_SENDER = textwrap.dedent("""
    import os, sys
    from datetime import datetime
    from monitor.alerts import run_alerts
    from monitor.settings import load_settings
    from monitor.store import Store

    def crash(url, title, body):
        os._exit(9)  # the process dies after the alert was recorded, before anything is sent

    settings = load_settings(sys.argv[1])
    run_alerts(settings, Store.open(settings.database), now=datetime.fromisoformat(sys.argv[2]), send=crash)
""")


def test_a_crash_between_record_and_send_is_sent_after_restart(tmp_path: Path, hook: HTTPServer) -> None:
    config = tmp_path / "monitor.yaml"
    config.write_text(json.dumps({"database": "monitor.db", "seeds_dir": None, "alerts": [rule()],
                                  "channels": {"default": [json_url(hook)]}}))
    store = Store.open(tmp_path / "monitor.db")
    StoryWriter(store).add(1, source="outlet-a", title=BORDER, text=BORDER_TEXT)
    store.close()

    died = subprocess.run([sys.executable, "-c", CRASHING_SENDER, str(config), NOW.isoformat()], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert died.returncode == 9, died.stderr
    assert attempts(hook) == 0

    store = Store.open(tmp_path / "monitor.db")  # the restart
    try:
        [pending] = store.undelivered_alerts()
        assert pending["attempts"] == 0
        settings = settings_from_mapping(json.loads(config.read_text()), path=config)
        report = run_alerts(settings, store, now=NOW)
        assert (report.recorded, report.alerts_delivered) == (0, 1)
        assert len(posted(hook)) == 1
        assert run_alerts(settings, store, now=NOW + timedelta(hours=1)).messages_sent == 0
    finally:
        store.close()


def test_hourly_digest_sends_one_message_listing_all_matches(tmp_path: Path, store: Store,
                                                             hook: HTTPServer) -> None:
    settings = make_settings(tmp_path, rules=[rule(), rule(name="ice", query="ICE")],
                             channels={"default": json_url(hook)}, digest="hourly")
    stories = StoryWriter(store)
    stories.add(1, source="outlet-a", title=BORDER, text=BORDER_TEXT)
    stories.add(2, source="outlet-b", title="ICE raids in Texas", text="ICE agents detained workers.")

    first = run_alerts(settings, store, now=NOW)
    assert (first.recorded, first.messages_sent, first.pending) == (3, 0, 3)
    later = run_alerts(settings, store, now=NOW + timedelta(minutes=30))
    assert later.messages_sent == 0 and attempts(hook) == 0

    digest = run_alerts(settings, store, now=NOW + timedelta(minutes=61))
    assert (digest.messages_sent, digest.alerts_delivered, digest.pending) == (1, 3, 0)
    [body] = posted(hook)
    assert body["title"] == "newsmonitor: 3 new matches"
    assert f"[sanctuary-cities] {BORDER}" in body["message"]
    assert f"[ice] {BORDER}" in body["message"] and "[ice] ICE raids in Texas" in body["message"]


def test_mail_delivery_through_a_local_smtp_server(tmp_path: Path, store: Store) -> None:
    with smtp_server() as (port, inbox):
        url = f"mailto://127.0.0.1:{port}?to=desk@example.com&from=monitor@example.com"
        settings = make_settings(tmp_path, rules=[rule()], channels={"default": url})
        StoryWriter(store).add(1, source="outlet-a", title=BORDER, text=BORDER_TEXT)
        report = run_alerts(settings, store, now=NOW)
        assert report.alerts_delivered == 1, report.errors
        deadline = time.monotonic() + 5
        while not inbox.messages and time.monotonic() < deadline:
            time.sleep(0.05)
    [message] = inbox.messages
    assert message["To"] == "desk@example.com"
    assert message["Subject"] == f"[sanctuary-cities] {BORDER}"
    body = mail_text(message)
    assert "Matched terms:" in body and "https://outlet-a/story/1" in body


def test_unreachable_channel_fails_fast_and_is_kept(tmp_path: Path, store: Store) -> None:
    from tests.helpers_alerts import free_port

    settings = make_settings(tmp_path, rules=[rule()],
                             channels={"default": f"json://127.0.0.1:{free_port()}/hook"})
    StoryWriter(store).add(1, source="outlet-a", title=BORDER, text=BORDER_TEXT)
    started = time.monotonic()
    report = run_alerts(settings, store, now=NOW)
    assert time.monotonic() - started < 5
    assert (report.failures, report.pending) == (1, 1)
    assert "Connection error" in store.undelivered_alerts()[0]["last_error"]


def test_filters_min_sources_languages_and_feeds(tmp_path: Path, store: Store) -> None:
    store.db.execute("INSERT INTO feeds (id, url, name, tags) VALUES (1, 'https://p.example/rss', 'Politico', "
                     "'[\"politics\"]'), (2, 'https://s.example/rss', 'Sport', '[\"sport\"]')")
    stories = StoryWriter(store)
    stories.add(1, source="a", title=BORDER, text=BORDER_TEXT, feed_id=1)
    stories.add(2, source="b", title=BORDER, text=BORDER_TEXT, feed_id=2)
    stories.add(3, source="c", title="Grenzschutz", text="ICE und sanctuary cities", language="de", feed_id=1)
    stories.add(4, source="d", title=BORDER, text=BORDER_TEXT)
    stories.add(4, source="e", title=BORDER, text=BORDER_TEXT, language="en-US")
    clusters = store.clusters_since(None)

    def fired(**filters: object) -> list[int]:
        settings = make_settings(tmp_path, rules=[rule(**filters)], channels={"default": []})
        return [m.cluster_id for m in evaluate(settings, store, clusters)]

    assert fired() == [1, 2, 3, 4]
    assert fired(min_sources=2) == [4]
    assert fired(languages=["en"]) == [1, 2, 4]
    assert fired(languages=["de"]) == [3]
    assert fired(feeds=["tag:politics"]) == [1, 3]
    assert fired(feeds=["Sport"]) == [2]
    assert fired(feeds=["tag:politics"], languages=["en"]) == [1]


def test_only_clusters_changed_since_the_last_evaluation_are_matched(tmp_path: Path, store: Store) -> None:
    settings = make_settings(tmp_path, rules=[rule()], channels={"default": []})
    stories = StoryWriter(store)
    stories.add(1, source="a", title=BORDER, text=BORDER_TEXT)
    assert evaluate_and_record(settings, store, now=NOW) == (1, 1)
    store.db.execute("UPDATE clusters SET updated_at = '2000-01-01T00:00:00+00:00'")
    stories.add(2, source="b", title="Other", text="nothing relevant")
    evaluated, recorded = evaluate_and_record(settings, store, now=NOW)
    assert (evaluated, recorded) == (1, 0)


def test_alerts_without_channel_urls_are_recorded_and_wait(tmp_path: Path, store: Store) -> None:
    settings = make_settings(tmp_path, rules=[rule()], channels={"default": []})
    StoryWriter(store).add(1, source="a", title=BORDER, text=BORDER_TEXT)
    report = run_alerts(settings, store, now=NOW)
    assert (report.recorded, report.messages_sent, report.pending, report.unrouted) == (1, 0, 0, 1)


def test_with_no_channel_configured_alerts_are_recorded_and_listed_not_sent(tmp_path: Path, store: Store) -> None:
    settings = make_settings(tmp_path, rules=[rule()], channels=None)  # notify: [default], and no channels key
    StoryWriter(store).add(1, source="a", title=BORDER, text=BORDER_TEXT)
    report = run_alerts(settings, store, now=NOW)
    assert (report.recorded, report.messages_sent, report.failures, report.unrouted) == (1, 0, 0, 1)
    assert "1 with no channel to send to (add one under `channels:`" in report.summary()
    assert [a["rule"] for a in store.undelivered_alerts()] == ["sanctuary-cities"]


def test_messages_and_digests_link_the_story_page(tmp_path: Path, store: Store, hook: HTTPServer) -> None:
    settings = make_settings(tmp_path, rules=[rule()], channels={"default": json_url(hook)}, digest="hourly",
                             web={"base_url": "https://news.example.org/monitor/"})
    stories = StoryWriter(store)
    stories.add(1, source="a", title=BORDER, text=BORDER_TEXT)
    stories.add(2, source="b", title="ICE agents in sanctuary cities", text="Border patrol and ICE again.")
    run_alerts(settings, store, now=NOW)
    run_alerts(settings, store, now=NOW + timedelta(hours=2))
    [digest] = posted(hook)
    assert "https://news.example.org/monitor/-/cluster/1" in digest["message"]
    assert f"- [sanctuary-cities] {BORDER}: https://news.example.org/monitor/-/cluster/1" in digest["message"]
    assert "Story page: https://news.example.org/monitor/-/cluster/2" in digest["message"]


class CountingStore(Store):
    """The real store; it notes how many clusters' articles each read asked for."""

    reads: list[int]

    def cluster_articles(self, cluster_ids):  # type: ignore[no-untyped-def]
        self.reads.append(len(cluster_ids))
        return super().cluster_articles(cluster_ids)


def test_the_first_evaluation_looks_back_seven_days_and_reads_clusters_in_chunks(tmp_path: Path) -> None:
    """A database with history and no saved evaluation point: only stories active in the documented
    look-back fire, and no more than CHUNK clusters' texts are read at once."""
    store = CountingStore.open(tmp_path / "history.db")
    store.reads = []
    stories = StoryWriter(store)
    for n in range(1, 501):  # 500 matching stories, one a day back from NOW
        when = (NOW - timedelta(days=n - 1, hours=1)).isoformat()
        stories.add(n, source=f"outlet-{n}", title=f"{BORDER} ({n})", text=BORDER_TEXT, when=when)
    settings = make_settings(tmp_path, rules=[rule()], channels=None)
    evaluated, recorded = evaluate_and_record(settings, store, now=NOW)
    assert (evaluated, recorded) == (7, 7)  # last seen within 7 days: stories 1..7, not 500
    assert {a["cluster_id"] for a in store.undelivered_alerts()} == set(range(1, 8))
    assert store.alert_watermark() == store.newest_cluster_update()  # all history counts as seen
    evaluated, recorded = evaluate_and_record(settings, store, now=NOW)  # the watermark's second is looked at
    assert evaluated <= 7 and recorded == 0  # again, but no story older than the look-back, and nothing twice
    store.reads.clear()
    dry = evaluate(settings, store, store.clusters_since(None), ignore_previous=True)  # all 500, as a dry run
    assert len(dry) == 500 and max(store.reads) <= CHUNK and sum(store.reads) == 500
    store.close()


@pytest.mark.parametrize(("config", "expected"), [
    ({"alerts": [{"name": "bad", "query": '"sanctuary city" AND (ICE'}], "channels": {"default": []}},
     "alert rule 'bad': query error at position 26"),
    ({"alerts": [{"name": "r", "query": "ICE", "notify": ["team"]}], "channels": {"default": []}},
     "alert rule 'r' notifies unknown channel 'team' (channels: default)"),
    ({"alerts": [{"name": "r", "query": "ICE"}, {"name": "r", "query": "x"}], "channels": {"default": []}},
     "alert rule name 'r' is used twice"),
    ({"channels": {"default": ["nosuchservice://x"]}}, "channel 'default': Apprise does not understand"),
    ({"digest": {"mode": "weekly"}}, "digest.mode"),
])
def test_bad_alert_config_stops_start_up(tmp_path: Path, config: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(config, path=tmp_path / "monitor.yaml")
    assert expected in str(caught.value)
    assert str(tmp_path / "monitor.yaml") in str(caught.value)


def test_a_channel_may_be_a_single_url(tmp_path: Path) -> None:
    settings = settings_from_mapping({"channels": {"default": "json://127.0.0.1:9/x"}})
    assert settings.channels == {"default": ("json://127.0.0.1:9/x",)}


def test_a_rule_added_later_fires_on_recent_stories_only(tmp_path: Path, store: Store) -> None:
    stories = StoryWriter(store)
    stories.add(1, source="a", title=BORDER, text=BORDER_TEXT, when=(NOW - timedelta(days=2)).isoformat())
    stories.add(2, source="b", title=BORDER, text=BORDER_TEXT, when=(NOW - timedelta(days=30)).isoformat())
    before = make_settings(tmp_path, rules=[], channels={"default": []})
    assert run_alerts(before, store, now=NOW).recorded == 0
    store.db.execute("UPDATE clusters SET updated_at = '2000-01-01T00:00:00+00:00'")  # behind the watermark

    after = make_settings(tmp_path, rules=[rule()], channels={"default": []})
    report = run_alerts(after, store, now=NOW)
    assert report.recorded == 1
    assert [a["cluster_id"] for a in recent_alerts(store)] == [1]
    assert run_alerts(after, store, now=NOW + timedelta(minutes=5)).recorded == 0


def test_rules_are_parsed_at_start_up_not_on_every_evaluation(tmp_path: Path, store: Store,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """monitor/query.py: parsed once at start-up, evaluated against many clusters."""
    import monitor.query

    settings = make_settings(tmp_path, rules=[rule()], channels={"default": []})  # loading parses the rule
    StoryWriter(store).add(1, source="a", title=BORDER, text=BORDER_TEXT)
    clusters = store.clusters_since(None)

    def no_parse(self: object) -> None:
        raise AssertionError("a rule was parsed again at evaluation")

    monkeypatch.setattr(monitor.query._Parser, "parse", no_parse)
    for _ in range(3):
        assert [m.cluster_id for m in evaluate(settings, store, clusters)] == [1]
