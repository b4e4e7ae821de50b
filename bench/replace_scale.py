"""What placing articles again costs on a big store: the writer's hold when a late feed arrives.

    .venv/bin/python bench/replace_scale.py                          # 100,000 stored over 100 days; again 7 and 31 days
    .venv/bin/python bench/replace_scale.py --n 20000 --days 7,31 --keep /tmp/big.db

A late feed (``cluster.replace_late``) makes the writer place every article again from its
oldest late report, in one transaction, and nothing else is written meanwhile; so does
``newsmonitor recluster --since``. The store is filled through the writer's own path
(``ingest_article``) with the synthetic stream of ``bench/cluster_scale.py`` (``--per-day``
articles a day, the last one an hour ago), then each ``--days`` figure places again, on a copy
of it, every article of that many days (``monitor.recluster.recluster`` from that date). Printed:
articles placed again, CPU and wall seconds, CPU ms an article, the peak RSS of this process,
and how much the write-ahead log grew; each in a process of its own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cluster_eval import DEFAULT_DATA  # noqa: E402
from bench.cluster_scale import load_texts, stream  # noqa: E402
from monitor.cluster_params import ClusterParams  # noqa: E402
from monitor.ingest import build_clusterer, ingest_article  # noqa: E402
from monitor.models import Article  # noqa: E402
from monitor.recluster import readable_articles, recluster  # noqa: E402
from monitor.store import Store  # noqa: E402


def fill(db: Path, n: int, per_day: int, data: Path) -> float:
    """Store ``n`` synthetic articles, ``per_day`` a day up to an hour ago; returns the CPU seconds it took."""
    texts, end = load_texts(data), datetime.now(UTC) - timedelta(hours=1)
    c0 = time.process_time()
    with Store.open(db) as store:
        clusterer = build_clusterer(store, ClusterParams())
        for doc, _, _ in stream(texts, n, 0.2, per_day):
            when = end - timedelta(days=(n - doc.id) / per_day)
            ingest_article(store, clusterer, Article(
                url=f"https://{doc.source}.example/{doc.id}", title=doc.title, text=doc.text,
                source=f"{doc.source}.example", published=when, fetched_at=when, extraction="text-file"))
    return time.process_time() - c0


def place_again(db: Path, days: float) -> str:
    """Place every article of the last ``days`` days again on ``db``; the figures as a line."""
    wal = db.with_name(db.name + "-wal")
    with Store.open(db) as store:
        since = datetime.now(UTC) - timedelta(days=days)
        count = readable_articles(store, since)
        wal_before = wal.stat().st_size if wal.exists() else 0
        t0, c0 = time.perf_counter(), time.process_time()
        done = recluster(store, ClusterParams(), since=since)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        wal_after = wal.stat().st_size if wal.exists() else 0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (f"again from {days:g} days: {done.articles} of {count} articles placed again, {cpu:.1f} CPU-s, "
            f"{wall:.1f} s wall, {1000 * cpu / max(done.placed, 1):.2f} CPU-ms an article; stories "
            f"{done.stories_before} -> {done.stories_after}; write-ahead log +{(wal_after - wal_before) / 2**20:.0f} "
            f"MB; peak RSS {rss:.0f} MB")


def in_child(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a fresh process, so each figure's peak RSS is its own."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--n", type=int, default=100_000, help="articles stored")
    ap.add_argument("--per-day", type=int, default=1000)
    ap.add_argument("--days", default="7,31", help="place again the articles of this many days (comma-separated)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the filled store here (re-used if present)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp) / "base.db"
        if not base.exists():
            cpu = in_child(fill, base, args.n, args.per_day, args.data)
            print(f"filled {args.n} articles ({args.per_day} a day) in {cpu:.0f} CPU-s", flush=True)
        for days in (float(d) for d in args.days.split(",")):
            copy = Path(tmp) / "again.db"
            shutil.copyfile(base, copy)
            print(in_child(place_again, copy, days), flush=True)
            for path in copy.parent.glob("again.db*"):
                path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
