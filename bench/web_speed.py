"""Web speed at any size: every page of ``newsmonitor serve`` on a tiny, a 10,000- and a 100,000-article store.

    .venv/bin/python bench/web_speed.py                       # tiny (40), 10,000 and 100,000 articles
    .venv/bin/python bench/web_speed.py --sizes 40 10000      # only these sizes
    .venv/bin/python bench/web_speed.py --keep /tmp/web       # keep (and reuse) the databases there

The databases are built through the store's own API (``Store.open`` runs the migrations, then
``sync_feeds``, ``ensure_cluster``, ``insert_article``, ``refresh_cluster``, ``record_alerts``,
``update_feed``), with a synthetic newsroom stream: feeds of several outlets (an aggregator among
them), stories of 1 to 60 reports from up to 12 outlets over two months, copies, four languages,
alerts delivered, pending and failing, and feeds failing and disabled. Clustering is not run: the
stories are written as the clusterer would leave them, so 100,000 articles take a minute, not hours.

Each page is fetched through a real Datasette (the one ``newsmonitor serve`` builds: our metadata,
templates, plugin and settings) with its ASGI test client: once to warm up, then the median of
``--repeat`` fetches. The target (issue 17): at 10,000 articles each page takes at most 4x its time
on the tiny store, or under 0.25 s; and it stays usable at 100,000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.settings import FeedConfig  # noqa: E402
from monitor.store import Store, iso  # noqa: E402

COMMON = tuple(" ".join((
    "the of and to in a is that for on said was with as by it at from his an be has have are were",
    "government officials report people minister year week police city country told state new two",
    "after over about more than would could public news president spokesman statement")).split())
COUNTRIES = ("Norway", "Iceland", "Chile", "Kenya", "Japan", "Canada", "Peru", "Italy", "Nepal", "Ghana",
             "Brazil", "Turkey", "Spain", "Poland", "Egypt", "Vietnam")
EVENTS = ("earthquake", "flood", "election", "strike", "wildfire", "summit", "protest", "storm", "eruption",
          "merger", "trial", "outbreak", "drought", "landslide", "blackout", "referendum")
LANGUAGES = ("en",) * 14 + ("de", "fr", "es", "no")
RULES = {"quake-watch": "earthquake OR eruption", "elections": "election OR referendum", "storms": "storm*"}
#: The feeds: (name, host, tags); "World Aggregator" brings articles of many hosts.
FEEDS = (("Nordic Wire", "nordicwire.example", ["world"]), ("Daily Ledger", "dailyledger.example", ["politics"]),
         ("Coast Times", "coasttimes.example", ["world"]), ("Metro Post", "metropost.example", ["local"]),
         ("Global Desk", "globaldesk.example", ["world"]), ("Civic Herald", "civicherald.example", ["politics"]),
         ("Market Watcher", "marketwatcher.example", ["business"]), ("Island News", "islandnews.example", ["world"]),
         ("Valley Gazette", "valleygazette.example", ["local"]), ("Broken Feed", "broken.example", ["world"]),
         ("Gone Feed", "gone.example", ["local"]), ("World Aggregator", "aggregator.example", ["world"]))
AGGREGATED_HOSTS = tuple(f"outlet{i}.example" for i in range(40))


def _words(rng: random.Random, topic: list[str], n: int) -> str:
    return " ".join(rng.choice(topic) if rng.random() < 0.12 else rng.choice(COMMON) for _ in range(n))


def build(path: Path, articles: int, *, seed: int = 17, now: datetime | None = None) -> dict[str, int]:
    """A store of ``articles`` synthetic articles at ``path``; returns what the timed pages need."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    start = now - timedelta(days=60)
    with Store.open(path) as store:
        store.sync_feeds([FeedConfig(url=f"https://{host}/rss.xml", name=name, tags=tuple(tags))
                          for name, host, tags in FEEDS])
        feeds = {row["name"]: row["id"] for row in store.feeds()}
        written = 0
        story = 0
        alerts = []
        while written < articles:
            story += 1
            size = min(articles - written, max(1, int(rng.paretovariate(1.3))) if rng.random() < 0.9
                       else rng.randint(10, 60))
            event, country = rng.choice(EVENTS), rng.choice(COUNTRIES)
            topic = [event, country.lower(), f"{event[:3]}{story % 997}x", rng.choice(EVENTS)]
            began = start + timedelta(days=60) * (written / articles) + timedelta(hours=rng.uniform(0, 12))
            title = f"{event.capitalize()} in {country}: {_words(rng, topic, 6)}"
            first_id = None
            with store.transaction():
                store.ensure_cluster(story, title=title)
                for _ in range(size):
                    name, host, _tags = rng.choice(FEEDS[:9] + FEEDS[11:])
                    if name == "World Aggregator":
                        host = rng.choice(AGGREGATED_HOSTS)
                    when = began + timedelta(hours=rng.expovariate(1 / 8))
                    copy = first_id is not None and rng.random() < 0.1
                    article_id = store.insert_article({
                        "url": f"https://{host}/{story}/{written}", "canonical_url": f"https://{host}/{story}/{written}",
                        "guid": f"{host}-{written}", "feed_id": feeds[name], "source": host,
                        "title": title if first_id is None else f"{event.title()} {country}: {_words(rng, topic, 7)}",
                        "text": _words(rng, topic, rng.randint(80, 220)), "published": iso(min(when, now)),
                        "fetched_at": iso(min(when + timedelta(minutes=5), now)), "language": rng.choice(LANGUAGES),
                        "content_hash": f"{story}-{written}", "extraction": "synthetic", "cluster_id": story,
                        "duplicate_of": first_id if copy else None, "duplicate_similarity": 0.95 if copy else None,
                        "cluster_score": None if first_id is None else round(rng.uniform(0.3, 0.9), 3),
                        "cluster_terms": json.dumps(topic[:3]) if first_id is not None else None})
                    first_id = first_id or article_id
                    written += 1
                store.refresh_cluster(story, keywords=[event] if event in ("earthquake", "election") else [])
            for rule, query in RULES.items():
                if any(word.rstrip("*") in (event, topic[3]) for word in query.replace(" OR ", " ").split()):
                    alerts.append({"rule": rule, "cluster_id": story, "step": 0, "reason": "new story",
                                   "matched_terms": json.dumps([event]), "sources_at_alert": 1,
                                   "articles_at_alert": 1, "created": iso(min(began + timedelta(hours=1), now)),
                                   "title": title, "message": title, "attempts": 0})
        for position, alert in enumerate(alerts):
            if position % 3 == 0:
                alert.update(delivered_at=alert["created"], attempts=1)
            elif position % 3 == 1:
                alert.update(attempts=2, last_error="default: connection refused", next_attempt=iso(now))
        store.record_alerts(alerts, watermark=iso(now))
        store.update_feed(feeds["Broken Feed"], last_status="error", last_error="HTTP 503", last_http_status=503,
                          consecutive_errors=7, failing_since=iso(now - timedelta(days=2)),
                          last_fetched=iso(now - timedelta(hours=1)), next_due=iso(now + timedelta(hours=2)))
        store.update_feed(feeds["Gone Feed"], last_status="gone", disabled=1, disabled_reason="410 Gone",
                          disabled_at=iso(now - timedelta(days=5)), last_http_status=410)
        for name in ("Nordic Wire", "Daily Ledger", "Coast Times"):
            store.update_feed(feeds[name], last_status="ok", last_success=iso(now - timedelta(minutes=20)),
                              last_fetched=iso(now - timedelta(minutes=20)), next_due=iso(now + timedelta(minutes=10)))
        latest = store.db.execute("SELECT id FROM clusters ORDER BY last_seen DESC LIMIT 1").fetchone()[0]
    return {"articles": written, "stories": story, "latest_story": latest}


def pages(database: str, latest_story: int, biggest_story: int) -> dict[str, str]:
    return {
        "stories": "/",
        "stories: 7 days, 3+ outlets": "/?period=7d&min_outlets=3",
        "stories: biggest": "/?sort=biggest",
        "stories: language + feed": "/?language=de&feed=tag:world",
        "search: common word": "/?q=government",
        "search: rare AND/OR": "/?q=earthquake AND (norway OR iceland)",
        "search: prefix, NOT": "/?q=storm* NOT summit",
        "alerts inbox": "/-/alerts",
        "feed health": "/-/feeds",
        "story page": f"/-/cluster/{latest_story}",
        "story page: the biggest story": f"/-/cluster/{biggest_story}",
        "story export CSV": f"/-/cluster/{latest_story}/articles.csv",
        "tables (database page)": f"/{database}",
        "articles table": f"/{database}/articles",
        "articles: common-word search": f"/{database}/articles?_search=government",
        "clusters table": f"/{database}/clusters",
        "latest_clusters query": f"/{database}/latest_clusters",
        "alerts query": f"/{database}/alerts",
    }


async def time_pages(path: Path, latest_story: int, repeat: int) -> dict[str, float]:
    from datasette.app import Datasette

    from monitor.settings import WebSettings
    from monitor.web import PLUGINS_DIR, TEMPLATES_DIR, datasette_settings, load_metadata

    web = WebSettings()
    ds = Datasette([str(path)], metadata=load_metadata(path, web=web), template_dir=str(TEMPLATES_DIR),
                   plugins_dir=str(PLUGINS_DIR), settings=datasette_settings(web))
    await ds.invoke_startup()
    timings = {}
    with sqlite3.connect(path) as conn:
        (biggest_story,) = conn.execute("SELECT id FROM clusters ORDER BY articles DESC LIMIT 1").fetchone()
    for name, url in pages(path.stem, latest_story, biggest_story).items():
        response = await ds.client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}\n{response.text[:500]}")
        spent = []
        for _ in range(repeat):
            started = time.perf_counter()
            await ds.client.get(url)
            spent.append(time.perf_counter() - started)
        timings[name] = statistics.median(spent)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[40, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="folder for the databases (reused when already there)")
    args = parser.parse_args(argv)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="web_speed_"))
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, float]] = {}
    for size in args.sizes:
        path = folder / f"monitor_{size}.db"
        info_file = path.with_suffix(".json")
        if not (path.exists() and info_file.exists()):
            path.unlink(missing_ok=True)
            started = time.perf_counter()
            info = build(path, size)
            info_file.write_text(json.dumps(info))
            print(f"built {size:,} articles ({info['stories']:,} stories) in {time.perf_counter() - started:.1f} s",
                  file=sys.stderr)
        info = json.loads(info_file.read_text())
        results[size] = asyncio.run(time_pages(path, info["latest_story"], args.repeat))
    tiny, *larger = args.sizes
    header = f"{'page':32} {tiny:>9,}" + "".join(f" {s:>9,} {'x':>6}" for s in larger)
    print(f"median seconds per page (articles: {', '.join(f'{s:,}' for s in args.sizes)})")
    print(header)
    failed = []
    for name in results[tiny]:
        line = f"{name:32} {results[tiny][name]:9.3f}"
        for size in larger:
            seconds = results[size][name]
            ratio = seconds / results[tiny][name]
            line += f" {seconds:9.3f} {ratio:5.1f}x"
            if size == 10_000 and ratio > 4 and seconds >= 0.25:
                failed.append(name)
        print(line)
    if 10_000 in larger:
        print("target at 10,000 articles (at most 4x tiny, or under 0.25 s):",
              "met by every page" if not failed else f"MISSED by {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
