"""Real parts for the web tests: a database made by the real pipeline, and a real Datasette server.

The database is built by running ``newsmonitor run --once`` over a copy of the seeds plus one
near-duplicate "wire copy" of the first seed (so the cluster page has a duplicate to show).
The server is a subprocess on a free 127.0.0.1 port, polled until it answers.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from ruamel.yaml import YAML

if TYPE_CHECKING:
    from monitor.store import Store

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ROOT / "seeds"
FIRST_SEED = "000_19088d47ecff5c57.txt"
SECOND_SEED = "004_0b04817afffe1035.txt"
WIRE_COPY = "010_wire_copy_of_000.txt"
SECOND_TITLE = "Trump administration to send border patrol officers to arrest migrants in cities"
FIRST_TITLE_START = "Federal agents patrolling the US border will be stationed in"


def build_database(folder: Path, *, database: str = "monitor.db", wire_copy: bool = True) -> Path:
    """Run the real pipeline over the seeds in ``folder``; returns the config file."""
    seeds = folder / "seeds"
    shutil.copytree(SEEDS, seeds)
    if wire_copy:
        text = (seeds / FIRST_SEED).read_text(encoding="utf-8")
        text = text.replace("officials said on Friday", "officials announced on Friday", 1)
        (seeds / WIRE_COPY).write_text(text + "\n\nThis story was updated with comment from officials.\n",
                                       encoding="utf-8")
    config = folder / "monitor.yaml"
    YAML(typ="safe", pure=True).dump(
        {"database": database, "seeds_dir": "seeds", "feeds": [], "keywords": ["border patrol"],
         "log_level": "WARNING"}, config)
    subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "run", "--once"],
                   check=True, capture_output=True, timeout=120)
    return config


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running(command: list[str], port: int, *, timeout: float = 30.0) -> Iterator[str]:
    """Start a server command, wait until it answers on ``port``, yield its base URL, stop it."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}: {process.stdout.read()}")
            try:
                if httpx.get(f"{base}/-/versions.json", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not answer on {base} within {timeout}s")
            time.sleep(0.1)
        yield base
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the process is still there after 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def newsmonitor_serve(config: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "monitor", "--config", str(config), "serve", "--port", str(port)]


# -- a newsroom's store, written through the store's API, for the front page's tests ---------------------

#: Feeds of the newsroom store: (name, url, tags).
NEWSROOM_FEEDS = (("Nordic Wire", "https://nordicwire.example/rss.xml", ("world",)),
                  ("Daily Ledger", "https://dailyledger.example/rss.xml", ("politics",)),
                  ("World Aggregator", "https://aggregator.example/rss.xml", ("world",)),
                  ("Broken Feed", "https://broken.example/rss.xml", ("world",)),
                  ("Gone Feed", "https://gone.example/rss.xml", ("local",)))
QUAKE, VOLCANO, ELECTION, ROADS, AGENTS, OLD, ABSORBED = 1, 2, 3, 4, 5, 6, 7
FILLERS = 30  # stories 101..130: enough for two pages of 25
STORY_TITLES = {QUAKE: "Earthquake shakes the Norway coast", VOLCANO: "Iceland volcano erupts again",
                ELECTION: "Chile votes in a tight presidential election", ROADS: "Police warn of iced roads",
                AGENTS: "ICE agents detain workers at a farm", OLD: "Harbour strike ends after a month"}


def build_newsroom(path: Path, now: datetime | None = None) -> Path:
    """Stories with known outlets, feeds, languages, times, keywords and alerts (see STORY_TITLES)."""
    from monitor.settings import FeedConfig
    from monitor.store import Store, iso

    now = now or datetime.now(UTC)
    with Store.open(path) as store:
        store.sync_feeds([FeedConfig(url=url, name=name, tags=tags) for name, url, tags in NEWSROOM_FEEDS])
        feeds = {row["name"]: row["id"] for row in store.feeds()}
        serial = iter(range(1, 10_000))

        def story(cluster: int, hours_ago: float, reports: list[tuple[str, str, str, str, str]],
                  keywords: tuple[str, ...] = ()) -> None:
            """reports: (feed name or "" for a seed file, host, language, title, text), an hour apart."""
            with store.transaction():
                store.ensure_cluster(cluster, title=reports[0][3])
                for position, (feed, host, language, title, text) in enumerate(reports):
                    n = next(serial)
                    when = iso(now - timedelta(hours=hours_ago - position))
                    store.insert_article({
                        "url": f"https://{host}/{n}" if feed else f"file:///seeds/{host}", "feed_id": feeds.get(feed),
                        "source": host, "title": title, "text": text, "published": when, "fetched_at": when,
                        "language": language, "content_hash": f"h{n}", "cluster_id": cluster,
                        "cluster_score": None if position == 0 else 0.5,
                        "cluster_terms": None if position == 0 else json.dumps(title.lower().split()[:2])})
                store.refresh_cluster(cluster, keywords=keywords)

        story(QUAKE, 5, [("Nordic Wire", "nordicwire.example", "en", STORY_TITLES[QUAKE],
                          "A strong earthquake shook the coast of Norway on Monday. Cretaceous rock cracked."),
                         ("World Aggregator", "bbc.example", "en", "Tremor felt across Norway",
                          "The tremor was felt in Bergen; no injuries were reported."),
                         ("World Aggregator", "yle.example", "fi", "Maanjäristys Norjassa",
                          "Norjan rannikolla tuntui maanjäristys, earthquake.")], keywords=("earthquake",))
        story(VOLCANO, 30, [("Nordic Wire", "nordicwire.example", "en", STORY_TITLES[VOLCANO],
                             "The volcano on Iceland erupted again, the eruption sent ash over Reykjavik.")])
        story(ELECTION, 50, [("Daily Ledger", "dailyledger.example", "es", STORY_TITLES[ELECTION],
                              "Chile votes in a tight election; the presidential race is open."),
                             ("Daily Ledger", "dailyledger.example", "es", "Chile election: the count",
                              "Officials count the election ballots in Santiago.")], keywords=("election",))
        story(ROADS, 70, [("", "roads.txt", "en", STORY_TITLES[ROADS],
                           "Police warned drivers that iced roads made the morning commute dangerous.")])
        story(AGENTS, 90, [("Daily Ledger", "dailyledger.example", "en", STORY_TITLES[AGENTS],
                            "Agents of ICE detained twelve workers; the farm owner said nothing.")])
        story(OLD, 40 * 24, [("Nordic Wire", "nordicwire.example", "en", STORY_TITLES[OLD],
                              "The harbour strike ended after a month of talks.")])
        story(ABSORBED, 6, [("Nordic Wire", "nordicwire.example", "en", "Quake reported off Norway",
                             "An earthquake was reported off Norway.")])
        store.merge_cluster(ABSORBED, QUAKE)
        store.refresh_cluster(QUAKE)
        for n in range(FILLERS):
            story(101 + n, 100 + n, [("Daily Ledger", "dailyledger.example", "en", f"Council meeting number {n}",
                                      f"The council met for the {n}th time and discussed the budget.")])
        _record_alerts(store, now)
        _set_feed_states(store, feeds, now)
    return path


def _record_alerts(store: Store, now: datetime) -> None:
    """Three alerts: one delivered, one failing and due again, one waiting."""
    from monitor.store import iso

    created = iso(now - timedelta(hours=4))
    store.record_alerts([
        {"rule": "quake-watch", "cluster_id": ABSORBED, "step": 0, "reason": "new story in 1 outlet",
         "matched_terms": '["earthquake"]', "sources_at_alert": 1, "articles_at_alert": 1, "created": created,
         "title": "Quake", "message": "m", "delivered_at": created, "attempts": 1},
        {"rule": "quake-watch", "cluster_id": VOLCANO, "step": 0, "reason": "new story in 1 outlet",
         "matched_terms": '["eruption"]', "sources_at_alert": 1, "articles_at_alert": 1, "created": created,
         "title": "Volcano", "message": "m", "attempts": 2, "last_error": "default: connection refused",
         "next_attempt": iso(now + timedelta(minutes=30))},
        {"rule": "elections", "cluster_id": ELECTION, "step": 0, "reason": "new story in 1 outlet",
         "matched_terms": '["election"]', "sources_at_alert": 1, "articles_at_alert": 2, "created": created,
         "title": "Election", "message": "m", "attempts": 0}], watermark=iso(now))


def _set_feed_states(store: Store, feeds: dict[str, int], now: datetime) -> None:
    """A failing feed, a gone one and a healthy one."""
    from monitor.store import iso

    store.update_feed(feeds["Broken Feed"], last_status="error", last_error="HTTP 503 for url",
                      last_http_status=503, consecutive_errors=4, failing_since=iso(now - timedelta(days=1)),
                      last_fetched=iso(now - timedelta(hours=1)), next_due=iso(now + timedelta(hours=2)))
    store.update_feed(feeds["Gone Feed"], last_status="gone", disabled=1, disabled_reason="gone (HTTP 410)",
                      disabled_at=iso(now - timedelta(days=3)), last_http_status=410)
    store.update_feed(feeds["Nordic Wire"], last_status="ok", last_success=iso(now - timedelta(minutes=20)),
                      last_fetched=iso(now - timedelta(minutes=20)), next_due=iso(now + timedelta(minutes=10)))


def newsroom_config(folder: Path, database: str = "monitor.db") -> Path:
    config = folder / "newsroom.yaml"
    YAML(typ="safe", pure=True).dump({"database": database, "seeds_dir": None, "feeds": [],
                                      "log_level": "WARNING"}, config)
    return config
