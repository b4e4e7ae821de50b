"""The first alert evaluation of a database with history: time, peak memory, and what fires.

A database without a saved evaluation point (an existing store, alerts just configured) used to
evaluate every cluster ever stored, loading all their texts at once (1.73 GB and 17 s at 50,000
articles in the issue's measurement) and alerting on stories weeks old. Now the first evaluation
looks back ``NEW_RULE_LOOKBACK`` (7 days), as a new rule does, and reads ``CHUNK`` clusters' texts
at a time.

    .venv/bin/python bench/alerts_first_eval.py                 # 50,000 articles over 60 days
    .venv/bin/python bench/alerts_first_eval.py --articles 5000

Each measurement runs in a fresh process (peak RSS is a high-water mark); ``--mode before``
replays the former behaviour (all clusters, one read) on the same code for comparison.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor import alerts
from monitor.settings import settings_from_mapping
from monitor.store import Store

QUERY = '("sanctuary city" OR "sanctuary cities") AND (ICE OR "border patrol")'
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
WORDS = (
    "council", "budget", "river", "harbour", "school", "minister", "police", "weather", "court", "election",
    "market", "storm", "rail", "strike", "hospital", "union", "farmers", "energy", "prices", "festival",
    "museum", "bridge", "airport", "trial", "coast", "flood", "fire",
)


def build(path: Path, articles: int, days: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    store = Store.open(path)
    clusters = max(articles * 2 // 5, 1)
    now_text = NOW.isoformat(timespec="seconds")
    cluster_rows, article_rows = [], []
    for cid in range(1, clusters + 1):
        when = NOW - timedelta(days=rng.uniform(0, days))
        matching = rng.random() < 0.1
        title = ("Border patrol sent to sanctuary cities, ICE says" if matching
                 else " ".join(rng.choice(WORDS) for _ in range(8)).capitalize())
        cluster_rows.append((cid, title, when.isoformat(timespec="seconds"), when.isoformat(timespec="seconds"),
                             now_text))
    for aid in range(1, articles + 1):
        cid = rng.randint(1, clusters) if aid > clusters else aid
        title = cluster_rows[cid - 1][1]
        text = " ".join(rng.choice(WORDS) for _ in range(500))  # ~3.5 KB, a short report
        if "sanctuary" in title:
            text += " Officials in the sanctuary city said ICE and border patrol agents arrived."
        article_rows.append((aid, f"https://outlet-{aid % 40}.example/{aid}", f"outlet-{aid % 40}.example", title,
                             text, "en", cluster_rows[cid - 1][2], cluster_rows[cid - 1][2], f"h{aid}", cid))
    with store.transaction():
        store.db.conn.executemany("INSERT INTO clusters (id, title, first_seen, last_seen, updated_at) "
                                  "VALUES (?, ?, ?, ?, ?)", cluster_rows)
        store.db.conn.executemany(
            "INSERT INTO articles (id, url, source, title, text, language, published, fetched_at, content_hash, "
            "cluster_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", article_rows)
        counts = "FROM articles a WHERE a.cluster_id = clusters.id"
        store.db.execute(f"UPDATE clusters SET size = (SELECT COUNT(*) {counts}), articles = (SELECT COUNT(*) "
                         f"{counts}), sources = (SELECT COUNT(DISTINCT source) {counts})")
    store.close()


def measure(path: Path, mode: str) -> dict[str, object]:
    settings = settings_from_mapping({"database": str(path), "seeds_dir": None,
                                      "alerts": [{"name": "sanctuary", "query": QUERY}]})
    store = Store.open(path)
    store.db.execute("DELETE FROM alerts")
    store.db.execute("DELETE FROM alert_state")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if mode == "before":  # the former first evaluation: every cluster, every text read at once
        alerts.CHUNK = 10**9
        found = alerts.evaluate(settings, store, store.clusters_since(None))
        fired = [m.cluster_id for m in found]
    else:
        alerts.evaluate_and_record(settings, store, now=NOW)
        fired = [row["cluster_id"] for row in store.undelivered_alerts()]
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cutoff = (NOW - alerts.NEW_RULE_LOOKBACK).isoformat(timespec="seconds")
    old = sum(1 for (last_seen,) in (store.db.execute("SELECT last_seen FROM clusters WHERE id = ?", [cid])
                                     .fetchone() for cid in fired) if last_seen < cutoff)
    store.close()
    return {"mode": mode, "seconds": round(seconds, 2), "peak_rss_mb": round(peak / 1024), "rss_growth_mb":
            round((peak - before) / 1024), "alerts": len(fired), "older_than_lookback": old}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--articles", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--db", type=Path, default=None, help="kept between runs (default: /tmp/alerts_bench_N.db)")
    parser.add_argument("--mode", choices=("before", "after"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = args.db or Path(f"/tmp/alerts_bench_{args.articles}.db")
    if args.mode:
        print(json.dumps(measure(path, args.mode)))
        return
    if not path.exists():
        started = time.perf_counter()
        build(path, args.articles, args.days)
        print(f"built {path}: {args.articles} articles over {args.days} days ({time.perf_counter() - started:.0f} s)")
    for mode in ("before", "after"):
        done = subprocess.run([sys.executable, __file__, "--db", str(path), "--mode", mode,
                               "--articles", str(args.articles)], capture_output=True, text=True, check=True)
        result = json.loads(done.stdout)
        print(f"{mode:>6}: {result['seconds']:6.2f} s, peak RSS {result['peak_rss_mb']} MB "
              f"(+{result['rss_growth_mb']} MB while evaluating), {result['alerts']} alerts, "
              f"{result['older_than_lookback']} on stories last seen over 7 days before")


if __name__ == "__main__":
    main()
