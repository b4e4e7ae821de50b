"""Load benchmark: many feeds served on 127.0.0.1, several passes through the real pipeline.

    .venv/bin/python bench/feeds_load.py                 # 1,000 feeds, 4 passes, feed content only
    .venv/bin/python bench/feeds_load.py --pages         # also fetch (small, local) article pages
    .venv/bin/python bench/feeds_load.py --feeds 200 --passes 3

The server runs in a child process (so the peak RSS printed is newsmonitor's
alone) and plays, for 10% of the feeds, one failure each: 500, 503 with
Retry-After, a response slower than the timeout, 404, 410 Gone, a redirect
loop, a body over the byte cap, and a page that is not a feed. Between passes
a fifth of the healthy feeds publish a new entry (new ETag); the others answer
304 to the conditional GET. Each pass is :func:`monitor.engine.run_pass` on a
temporary SQLite database, i.e. ``newsmonitor run --once``: it polls every
enabled feed regardless of backoff (the daemon honours ``next_due``), and a
feed disabled by a 410 is not polled again.

Not a timed test: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.engine import open_runtime, run_pass  # noqa: E402
from monitor.extract import detect_language  # noqa: E402
from monitor.logs import configure_logging  # noqa: E402
from monitor.settings import settings_from_mapping  # noqa: E402
from tests.feedserver import Entry, FeedServer, Request, Response, article_html, rss  # noqa: E402

FAILURES = ("500", "503", "slow", "404", "410", "loop", "huge", "notafeed")
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # fixed dates: stable ETags
TOPICS = ("harbour", "budget", "election", "storm", "museum", "transit", "hospital", "river", "school", "court")


def feed_kind(index: int) -> str:
    """Every tenth feed fails, cycling through the failure kinds."""
    return FAILURES[(index // 10) % len(FAILURES)] if index % 10 == 9 else "ok"


def entries_for(index: int, generation: int) -> list[Entry]:
    """Two standing entries, plus one per generation in which this feed was among the fifth that changed."""
    topic = TOPICS[index % len(TOPICS)]
    published = [g for g in range(1, generation + 1) if (index + g) % 5 == 0]
    slugs = [(f"f{index}-base-{i}", i) for i in range(2)] + [(f"f{index}-g{g}", 100 + g) for g in published]
    return [Entry(slug, f"Desk {index} {topic} report {n}",
                  f"Desk {index} covered the {topic} story, update {n}: officials and residents responded "
                  f"to developments number {n} at desk {index} with statements and questions.",
                  START - timedelta(hours=n % 48))
            for slug, n in slugs]


def serve(port_out: multiprocessing.Queue, feeds: int, pages: bool) -> None:
    """The child process: a FeedServer whose feeds change when ``/_next`` is requested."""
    generation = [0]
    with FeedServer() as server:
        def feed_route(index: int):
            def route(request: Request) -> Response:
                body = rss(server.base, entries_for(index, generation[0]), title=f"Desk {index}").encode()
                etag = f'"{index}-{len(body)}-{hash(body) & 0xffffffff:x}"'
                if request.headers.get("if-none-match") == etag:
                    return Response(304, {"ETag": etag})
                return Response(200, {"Content-Type": "application/rss+xml", "ETag": etag}, body)
            return route

        def page_route(request: Request) -> Response:
            slug = request.path.rsplit("/", 1)[1]
            return Response(200, {"Content-Type": "text/html; charset=utf-8"},
                            article_html(f"Page {slug}", f"Full text of {slug}. " * 20).encode())

        for index in range(feeds):
            path, kind = f"/feed/{index}.xml", feed_kind(index)
            if kind == "ok":
                server.set(path, feed_route(index))
            elif kind in {"500", "404", "410"}:
                server.status(path, int(kind))
            elif kind == "503":
                server.status(path, 503, {"Retry-After": "3600"})
            elif kind == "slow":
                server.slow(path, 6.0)
            elif kind == "loop":
                server.redirect(path, f"/loop/{index}.xml", 302)
                server.redirect(f"/loop/{index}.xml", path, 302)
            elif kind == "huge":
                server.huge(path, 5_000_000)
            else:
                server.set(path, lambda r: Response(200, {"Content-Type": "text/html"}, b"<html>hello</html>"))
        server.set("*", page_route if pages else lambda r: Response(404, {}, b""))
        server.status("/robots.txt", 404)

        def bump(request: Request) -> Response:
            generation[0] += 1
            return Response(200, {}, b"ok")

        def stats(request: Request) -> Response:
            hits = sum(n for p, n in server.hits.items() if not p.startswith("/_"))
            not_modified = sum(n for (p, status), n in server.statuses.items() if status == 304)
            return Response(200, {"Content-Type": "application/json"},
                            json.dumps({"requests": hits, "not_modified": not_modified}).encode())

        server.set("/_next", bump)
        server.set("/_stats", stats)
        port_out.put(server.base)
        threading.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--pages", action="store_true", help="fetch each new entry's (local) page")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warm-langid", action="store_true",
                        help="load py3langid's model once before the workers start (see the note in the output)")
    args = parser.parse_args()
    configure_logging("ERROR")
    if args.warm_langid:
        detect_language("warm up the language identifier before the worker threads race to load it")

    ports: multiprocessing.Queue = multiprocessing.Queue()
    child = multiprocessing.Process(target=serve, args=(ports, args.feeds, args.pages), daemon=True)
    child.start()
    base = ports.get(timeout=60)
    workdir = Path(tempfile.mkdtemp(prefix="feeds_load-"))
    settings = settings_from_mapping({
        "database": "bench.db", "seeds_dir": None, "log_level": "ERROR",
        "feeds": [{"url": f"{base}/feed/{i}.xml", "interval": 900} for i in range(args.feeds)],
        # One host serves every feed here, so the per-host limit is raised to the global one.
        "fetch": {"timeout": 5.0, "max_bytes": 1_000_000, "concurrency": args.concurrency,
                  "per_host": args.concurrency, "per_host_delay": 0, "fetch_pages": args.pages,
                  "allow_networks": ["127.0.0.0/8"]},  # the feeds are served on loopback
    }, path=workdir / "bench.yaml")
    control = httpx.Client()
    print(f"{args.feeds} feeds on {base}, {sum(feed_kind(i) != 'ok' for i in range(args.feeds))} failing; "
          f"pages {'on' if args.pages else 'off'}; concurrency {args.concurrency}; database {settings.database}")
    print(f"{'pass':>4} {'wall s':>7} {'requests':>8} {'304s':>6} {'ok':>5} {'failed':>6} {'new':>6} "
          f"{'articles':>8} {'peak RSS MB':>11}")
    completed = 0
    before = control.get(f"{base}/_stats").json()
    with open_runtime(settings) as runtime:
        store = runtime.store
        for number in range(1, args.passes + 1):
            report = run_pass(runtime)
            after = control.get(f"{base}/_stats").json()
            completed += 1
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"{number:>4} {report.duration:>7.1f} {after['requests'] - before['requests']:>8} "
                  f"{after['not_modified'] - before['not_modified']:>6} {report.feeds_ok:>5} "
                  f"{report.feeds_failed:>6} {report.feeds.added:>6} {store.count('articles'):>8} {peak:>11.0f}")
            before = after
            control.get(f"{base}/_next")
        rows = next(iter(store.db.query(
            "SELECT SUM(consecutive_errors > 0) AS failing, SUM(disabled) AS disabled, "
            "SUM(url_effective IS NOT NULL) AS moved FROM feeds")))
        errors = list(store.db.query("SELECT last_error, COUNT(*) AS n FROM feeds WHERE last_status = 'error' "
                                     "GROUP BY 1 ORDER BY 2 DESC"))
        print(f"passes completed: {completed}; feeds failing now: {rows['failing']}, disabled: {rows['disabled']}")
        for row in errors:
            print(f"  {row['n']:>4} x {row['last_error'][:90]}")
        integrity = store.db.execute("PRAGMA integrity_check").fetchone()[0]
        print(f"integrity_check: {integrity}; database size {settings.database.stat().st_size / 1e6:.1f} MB")
    child.terminate()


if __name__ == "__main__":
    main()
