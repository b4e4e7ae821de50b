"""Realistic-stream clustering harness: ECB+ published by simulated outlets, ingested by the real daemon.

    .venv/bin/python bench/stream_eval.py                       # topics 1-25, 10 outlets, 30 days, all orders
    .venv/bin/python bench/stream_eval.py --topics 1-5 --orders reverse,in-order --step 3 --keep /tmp/stream

``bench/cluster_eval.py`` streams ECB+ documents straight into the clusterer, every one
dated the same day. Here the same documents take the road real news takes (see
``bench/stream_site.py``): each event gets a day within a month, each report an outlet
that publishes it as an HTML page with site chrome and lists it in its RSS feed, and
``newsmonitor`` fetches, extracts, clusters and stores them as a subprocess, with a
fresh config and database per scenario. The gold label of each stored article is found
by its URL, its cluster read from the database (following ``clusters.merged_into``), and
B-cubed P/R/F1 computed by ``cluster_eval.bcubed``.

Arrival orders:

- ``in-order``: a daemon that polled all month. One ``run --once`` per ``--step`` days on
  one database, the feeds listing only what was published by then (newest first); each
  pass reads back the clusterer's memory from the store.
- ``reverse``: the first poll of feeds holding a month of history: one ``run --once``,
  every feed newest first.
- ``shuffled``: one ``run --once``, items of each feed in random order, feeds in random
  order in the config.
- ``daemon``: ``newsmonitor run`` with a third of the feeds; the rest are added with
  ``newsmonitor feeds add`` while it runs, which it picks up without a restart (live
  reload); stopped with SIGTERM once every page is stored. The added feeds' months arrive late,
  and the writer places the stories again from their oldest report (``cluster.replace_late``).
- ``recluster``: the ``daemon`` scenario, then ``newsmonitor recluster`` on its database,
  which places every article again in publication order.

Needs ``../shared/data/ecb-plus``; without it, says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cluster_eval import DEFAULT_DATA, Item, bcubed, event_losses, load_ecb, run_direct, worst_events  # noqa: E402
from bench.stream_site import Newsroom, Report, plan_reports  # noqa: E402
from monitor.cluster import ClusterParams  # noqa: E402
from monitor.dedup import canonical_url  # noqa: E402

ORDERS = ("in-order", "reverse", "shuffled", "daemon", "recluster")


@dataclass(frozen=True)
class Options:
    """How scenarios run; the defaults are the bench's."""

    step: int = 1  # in-order: simulated days between two passes
    seed: int = 0
    timeout: float = 900.0  # seconds for one pass, or for the daemon to store everything
    concurrency: int = 16  # feeds in flight; their results are stored in the order they complete
    losses: int = 0  # name this many events that lose the most precision and recall


@dataclass(frozen=True)
class Score:
    order: str
    precision: float
    recall: float
    f1: float
    clusters: int
    gold_clusters: int
    stored: int
    expected: int
    seconds: float
    notes: tuple[str, ...] = field(default=())

    def line(self) -> str:
        return (f"stream {self.order}: P {self.precision:.3f} R {self.recall:.3f} F1 {self.f1:.3f} "
                f"clusters {self.clusters} (gold {self.gold_clusters}) stored {self.stored}/{self.expected}  "
                f"{self.seconds:.1f} s")


# --------------------------------------------------------------------------- running newsmonitor


def write_config(folder: Path, feeds: Sequence[tuple[str, str]], options: Options) -> Path:
    """A config of our own per scenario: no seeds, no alerts, no politeness delay, no jitter."""
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "database": "monitor.db",
        "seeds_dir": None,
        # Short intervals: the daemon's next polls bring what fetch.max_pages_per_poll left.
        "feeds": [{"url": url, "name": name, "interval": 5} for url, name in feeds],
        "fetch": {"per_host_delay": 0, "per_host": 4, "concurrency": options.concurrency, "timeout": 30,
                  "fetch_pages": True, "respect_robots": True,
                  "allow_networks": ["127.0.0.0/8"]},  # the outlets listen on 127.0.0.2, 127.0.0.3, ...
        "schedule": {"jitter": 0},
        "log_level": "INFO",
    }
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    path = folder / "monitor.yaml"
    yaml.dump(config, path)
    return path


def newsmonitor_command(config: Path, *args: str) -> list[str]:
    """``newsmonitor --config CONFIG ARGS``, as ``python -m monitor`` run from the repository (cwd=ROOT), not
    the venv's ``newsmonitor`` script: the same CLI, from the checkout this harness sits in, even if the venv's
    editable install points elsewhere."""
    return [sys.executable, "-m", "monitor", "--config", str(config), *args]


def run_once(config: Path, options: Options) -> str:
    """One ``run --once``; its summary line. A failed pass stops the harness with newsmonitor's stderr."""
    done = subprocess.run(newsmonitor_command(config, "run", "--once"), cwd=ROOT, text=True,
                          capture_output=True, timeout=options.timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"run --once failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with (config.parent / "newsmonitor.log").open("a", encoding="utf-8") as log:  # kept with --keep
        log.write(done.stderr)
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def cli(config: Path, *args: str) -> str:
    done = subprocess.run(newsmonitor_command(config, *args), cwd=ROOT, text=True, capture_output=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"newsmonitor {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return done.stdout.strip()


def query(database: Path, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` over a read-only connection, closed at once (the daemon may be writing)."""
    with closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=30)) as conn:
        return conn.execute(sql).fetchall()


def stored_urls(database: Path) -> set[str]:
    """URLs (as listed and canonical) of the stored articles; empty while there is no database yet."""
    if not database.exists():
        return set()
    try:
        rows = query(database, "SELECT url, canonical_url FROM articles")
    except sqlite3.OperationalError:  # not created yet, or the schema is being made
        return set()
    return {url for row in rows for url in row if url}


def wait_until(condition: Callable[[], bool], *, timeout: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """Poll ``condition`` until it holds, the deadline passes, or the process watched dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if not alive():
            return condition()
        time.sleep(0.2)
    return condition()


# --------------------------------------------------------------------------- scenarios


def pass_horizons(reports: Sequence[Report], step: int) -> list[datetime]:
    """Midnights ``step`` days apart from the first report's day until every report is published."""
    first = min(r.published for r in reports).replace(hour=0, minute=0, second=0, microsecond=0)
    last = max(r.published for r in reports)
    horizons = [first + timedelta(days=step)]
    while horizons[-1] < last:
        horizons.append(horizons[-1] + timedelta(days=step))
    return horizons


def scenario_in_order(room: Newsroom, folder: Path, options: Options) -> list[str]:
    """One pass per step; each pass sees what was published by its simulated midnight."""
    config = write_config(folder, list(zip(room.feed_urls, room.names, strict=True)), options)
    horizons = pass_horizons(room.reports, options.step)
    summary = ""
    for horizon in horizons:
        room.expose(until=horizon)
        summary = run_once(config, options)
    return [f"{len(horizons)} passes {options.step} day(s) apart; last: {summary}"]


def scenario_single_pass(room: Newsroom, folder: Path, options: Options, *, shuffled: bool) -> list[str]:
    """The first poll of feeds holding the whole month: newest first, or items and feeds shuffled."""
    feeds = list(zip(room.feed_urls, room.names, strict=True))
    if shuffled:
        random.Random(f"{options.seed}-feeds").shuffle(feeds)
    room.expose(shuffle_seed=options.seed if shuffled else None)
    config, wanted = write_config(folder, feeds, options), {room.url(r) for r in room.reports}
    summaries = [run_once(config, options)]
    # A poll fetches at most fetch.max_pages_per_poll pages a feed; the next polls bring the rest.
    while not wanted <= stored_urls(folder / "monitor.db") and len(summaries) < 20:
        summaries.append(run_once(config, options))
    return [f"{len(summaries)} pass(es) until every page was stored; first: {summaries[0]}"]


def _start_daemon(config: Path, log: TextIO) -> subprocess.Popen[str]:
    return subprocess.Popen(newsmonitor_command(config, "run"), cwd=ROOT, text=True, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _stop_daemon(process: subprocess.Popen[str]) -> int:
    """SIGTERM, as systemd sends it; the daemon finishes the article in hand and exits 0."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError("the daemon did not stop within 120 s of SIGTERM") from None


def _wait_stored(database: Path, urls: set[str], process: subprocess.Popen[str], timeout: float) -> bool:
    return wait_until(lambda: urls <= stored_urls(database), timeout=timeout, alive=lambda: process.poll() is None)


def scenario_daemon(room: Newsroom, folder: Path, options: Options) -> list[str]:
    """The daemon with a third of the feeds; the rest added with ``feeds add`` while it runs,
    which it picks up without a restart (live reload); stopped once every page is stored."""
    feeds = list(zip(room.feed_urls, room.names, strict=True))
    first = max(1, len(feeds) // 3)
    config = write_config(folder, feeds[:first], options)
    database = folder / "monitor.db"
    room.expose()
    first_urls = {room.url(r) for r in room.reports if r.outlet < first}
    with (folder / "daemon.log").open("a") as log:
        daemon = _start_daemon(config, log)
        try:
            wait_until(lambda: not first_urls or bool(first_urls & stored_urls(database)),
                       timeout=options.timeout, alive=lambda: daemon.poll() is None)
            said = [cli(config, "feeds", "add", url, "--name", name, "--interval", "5") for url, name in feeds[first:]]
            complete = _wait_stored(database, {room.url(r) for r in room.reports}, daemon, options.timeout)
        finally:
            code = _stop_daemon(daemon)
    return [f"started with {first} feeds, {len(feeds) - first} added with `feeds add` while it ran "
            f"({said[-1].splitlines()[-1] if said else '-'}); every page stored without a restart: {complete}; "
            f"exit code after SIGTERM: {code}"]


def scenario_recluster(room: Newsroom, folder: Path, options: Options) -> list[str]:
    """The daemon scenario, then ``newsmonitor recluster`` on its database once the daemon has stopped."""
    notes = scenario_daemon(room, folder, options)
    return [*notes, cli(folder / "monitor.yaml", "recluster").splitlines()[-1]]


# --------------------------------------------------------------------------- scoring


def cluster_of_url(database: Path) -> dict[str, int]:
    """Each stored URL (listed and canonical) to its live cluster, following ``merged_into`` chains."""
    merged = dict(query(database, "SELECT id, merged_into FROM clusters WHERE merged_into IS NOT NULL"))
    rows = query(database, "SELECT url, canonical_url, cluster_id FROM articles")
    out: dict[str, int] = {}
    for url, canonical, cluster in rows:
        root, seen = cluster, set()
        while root in merged and root not in seen:
            seen.add(root)
            root = merged[root]
        for key in (url, canonical):
            if key:
                out[key] = root
    return out


def score(order: str, room: Newsroom, database: Path, seconds: float, notes: Sequence[str] = (),
          losses: int = 0) -> Score:
    """B-cubed over the stored reports; reports not stored are counted, not scored. With ``losses``,
    the notes end with that many events that lose the most (``cluster_eval.event_losses``)."""
    found = cluster_of_url(database) if database.exists() else {}
    pred, gold = [], []
    for report in room.reports:
        url = room.url(report)
        cluster = found.get(url, found.get(canonical_url(url)))
        if cluster is not None:
            pred.append(cluster)
            gold.append(report.item.gold)
    p, r, f = bcubed(pred, gold) if pred else (0.0, 0.0, 0.0)
    if losses and pred:
        notes = [*notes, *worst_events(event_losses(pred, gold), losses, 1)]
    return Score(order, p, r, f, len(set(pred)), len({rep.item.gold for rep in room.reports}), len(pred),
                 len(room.reports), seconds, tuple(notes))


def diagnostics(room: Newsroom, database: Path) -> list[str]:
    """What extraction made of the pages: dates of undated feed items, fallbacks, chrome left in the text."""
    rows = {url: (published, extraction, text or "") for url, published, extraction, text in
            query(database, "SELECT url, published, extraction, text FROM articles")}
    dates: Counter[str] = Counter()
    leaks: Counter[str] = Counter()
    for report in room.reports:
        published, _, text = rows.get(room.url(report), (None, None, ""))
        if not report.dated and room.url(report) in rows:
            dates[_date_kind(published, report.published)] += 1
        lowered = text.lower()
        leaks["related headlines"] += any(t[:60].lower() in lowered for t in room.related_titles(report))
        leaks["share buttons"] += "share on facebook" in lowered or "tweet" in lowered.split()
        leaks["newsletter promo"] += "newsletter" in lowered
    kinds = Counter(extraction for _, extraction, _ in rows.values())
    return [f"feed items without pubDate: {sum(dates.values())}, stored with published = "
            + (", ".join(f"{k} {n}" for k, n in dates.items()) or "-"),
            "extraction: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()),
            "site chrome in stored text: " + ", ".join(f"{k} {n}" for k, n in leaks.items())]


def _date_kind(stored: str | None, actual: datetime) -> str:
    if stored is None:
        return "none (clustered at fetch time)"
    when = datetime.fromisoformat(stored)
    if when == actual:
        return "the page's exact time"
    if when == actual.replace(hour=0, minute=0, second=0, microsecond=0):
        return "the page's day at 00:00 UTC"
    return f"another time ({when - actual} off)"


def run_order(order: str, room: Newsroom, folder: Path, options: Options) -> Score:
    """One scenario on a fresh folder (config and database), scored from what it stored."""
    if (folder / "monitor.db").exists():
        raise FileExistsError(f"{folder} already holds a database: each scenario needs a fresh folder")
    started = time.monotonic()
    if order == "in-order":
        notes = scenario_in_order(room, folder, options)
    elif order in ("reverse", "shuffled"):
        notes = scenario_single_pass(room, folder, options, shuffled=order == "shuffled")
    elif order == "daemon":
        notes = scenario_daemon(room, folder, options)
    elif order == "recluster":
        notes = scenario_recluster(room, folder, options)
    else:
        raise ValueError(f"unknown order {order!r} (known: {', '.join(ORDERS)})")
    seconds = time.monotonic() - started
    database = folder / "monitor.db"
    if database.exists():
        notes += diagnostics(room, database)
    return score(order, room, database, seconds, notes, options.losses)


# --------------------------------------------------------------------------- without the daemon


def direct_orders(items: Sequence[Item], args: argparse.Namespace) -> dict[str, list[tuple[float, float, float]]]:
    """The same dated plans streamed into the clusterer alone (no pages, feeds or store):
    seconds instead of minutes, for tuning; B-cubed per date seed and order."""
    out: dict[str, list[tuple[float, float, float]]] = {}
    for seed in range(args.seed, args.seed + args.direct):
        reports = plan_reports(items, outlets=args.outlets, days=args.days, seed=seed)
        dated = [(replace(r.item, published=r.published), r) for r in reports]
        by_outlet = sorted(dated, key=lambda pair: (pair[1].outlet, -pair[1].published.timestamp()))
        orders = {
            "in-order": [it for it, _ in sorted(dated, key=lambda pair: pair[1].published)],
            "reverse": [it for it, _ in by_outlet],  # every feed newest first, one feed after another
            "shuffled": random.Random(seed).sample([it for it, _ in dated], len(dated)),
        }
        for order, stream in orders.items():
            out.setdefault(order, []).append(bcubed(run_direct(stream, ClusterParams()), [it.gold for it in stream]))
    return out


# --------------------------------------------------------------------------- command line


def parse_topics(text: str) -> list[int]:
    """``1-25`` or ``1,3,5-7``."""
    topics: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        topics.extend(range(int(low), int(high or low) + 1))
    return topics


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--topics", default="1-25", help="ECB+ dev topics, e.g. 1-25 or 1,3,5-7")
    ap.add_argument("--outlets", type=int, default=10)
    ap.add_argument("--days", type=int, default=30, help="the span the events are spread over")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1, help="run this many date seeds from --seed, then a summary")
    ap.add_argument("--orders", default=",".join(ORDERS), help=f"comma-separated, of {', '.join(ORDERS)}")
    ap.add_argument("--step", type=int, default=1, help="in-order: simulated days between passes")
    ap.add_argument("--concurrency", type=int, default=16,
                    help="fetch.concurrency; 1 polls feeds one by one in config order (a deterministic arrival)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="keep each scenario's config and database here (under seed-N/ORDER)")
    ap.add_argument("--direct", type=int, default=0, metavar="N",
                    help="instead: N date seeds streamed into the clusterer alone (in-order, reverse, shuffled)")
    ap.add_argument("--losses", type=int, default=0, metavar="K",
                    help="after each order, the K events that lose the most B-cubed precision and recall")
    args = ap.parse_args(argv)
    unknown = set(args.orders.split(",")) - set(ORDERS)
    if unknown:
        ap.error(f"unknown orders: {', '.join(sorted(unknown))}")
    return args


def run_seed(items: Sequence[Item], args: argparse.Namespace, seed: int) -> list[Score]:
    """Every order of ``args.orders`` on one date seed's plan, each on a fresh folder."""
    reports = plan_reports(items, outlets=args.outlets, days=args.days, seed=seed)
    options = Options(step=args.step, seed=seed, concurrency=args.concurrency, losses=args.losses)
    print(f"stream: seed {seed}, {len(reports)} reports of {len({r.item.gold for r in reports})} events, "
          f"{args.outlets} outlets, {min(r.published for r in reports):%Y-%m-%d} to "
          f"{max(r.published for r in reports):%Y-%m-%d}, "
          f"{sum(not r.dated for r in reports)} feed items without pubDate")
    scores = []
    with ExitStack() as stack:
        base = args.keep / f"seed-{seed}" if args.keep else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="stream-eval-")))
        room = stack.enter_context(Newsroom(reports, outlets=args.outlets, seed=seed))
        for order in args.orders.split(","):
            result = run_order(order, room, base / order, options)
            print(f"{order}:", *(f"  {note}" for note in result.notes), sep="\n", flush=True)
            scores.append(result)
    for result in scores:
        print(result.line())
    print("stream: " + ", ".join(f"{s.order} F1 {s.f1:.3f}" for s in scores), flush=True)
    return scores


def summary(by_seed: dict[int, list[Score]], target: float = 0.95) -> list[str]:
    """Per order over the date seeds: each seed's F1, the mean and the lowest, how many seeds
    reach the issue's target, and the largest gap to the same seed's in-order F1."""
    f1 = {seed: {s.order: s.f1 for s in scores} for seed, scores in by_seed.items()}
    lines = []
    for order in next(iter(f1.values())):
        got = [by_order[order] for by_order in f1.values()]
        line = (f"seeds {order}: " + " ".join(f"{f:.3f}" for f in got) + f" | mean {statistics.mean(got):.3f} "
                f"min {min(got):.3f}, {sum(f >= target for f in got)} of {len(got)} at {target} or more")
        if order != "in-order" and all("in-order" in by_order for by_order in f1.values()):
            line += f", at most {max(abs(o[order] - o['in-order']) for o in f1.values()):.3f} off in-order"
        lines.append(line)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    if not (args.data / "ecb-plus" / "ECB+").is_dir():
        print(f"stream: ECB+ data not found under {args.data / 'ecb-plus'}; nothing to evaluate")
        return 0
    items = load_ecb(args.data, parse_topics(args.topics))
    if args.direct:
        for order, runs in direct_orders(items, args).items():
            p, r, f = (statistics.mean(x[k] for x in runs) for k in range(3))
            print(f"direct {order}: P {p:.4f} R {r:.4f} F1 {f:.4f} (mean of {len(runs)} date seeds)")
        return 0
    by_seed = {seed: run_seed(items, args, seed) for seed in range(args.seed, args.seed + args.seeds)}
    if args.seeds > 1:
        print(*summary(by_seed), sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
