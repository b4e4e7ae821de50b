"""Placing stored articles again, in publication order, in one transaction: late feeds and ``newsmonitor recluster``."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cluster_eval import DEFAULT_DATA, load_ecb
from bench.stream_site import plan_reports
from monitor.cli import cli
from monitor.cluster import ClusterParams
from monitor.engine import Engine, feed_states, open_runtime
from monitor.ingest import build_clusterer, store_article
from monitor.lock import InstanceLock
from monitor.models import Article
from monitor.pipeline import settle
from monitor.recluster import late_articles, late_since, readable_articles, recluster
from monitor.settings import load_settings
from monitor.store import Store, now_iso
from tests.conftest import write_config
from tests.feedserver import Entry, FeedServer, recent, story
from tests.helpers_daemon import config as helper_config
from tests.helpers_daemon import one_pass, query, write_until
from tests.test_cluster_memory import decisions
from tests.test_cluster_rehome import _article, stories_by_url

LATE_OUTLETS = 3  # outlets 0-2 are the feeds added late, their month of history read after the others'


def _stream() -> list[tuple[Article, int]]:
    """ECB+ dev topics 9-16 dated over a month (date seed 0) with their outlets, in publication order. With
    outlets 0-2 read after the month of the others, these topics come out in other stories (14 against 17)."""
    if not (DEFAULT_DATA / "ecb-plus" / "ECB+").is_dir():
        pytest.skip(f"ECB+ data not present under {DEFAULT_DATA}")
    reports = sorted(plan_reports(load_ecb(DEFAULT_DATA, range(9, 17)), outlets=10, days=30, seed=0),
                     key=lambda r: r.published)
    return [(Article(url=f"https://{r.outlet}.example/{n}", title=r.item.title, text=r.item.text,
                     source=f"{r.outlet}.example", published=r.published, fetched_at=r.published,
                     extraction="text-file"), r.outlet) for n, r in enumerate(reports)]


def _settled(store: Store, articles: list[Article]) -> None:
    clusterer = build_clusterer(store, ClusterParams())
    for article in articles:
        store_article(store, article)
    list(settle(store, clusterer, {}, keywords=()))


def _with_a_late_feed(store: Store, stream: list[tuple[Article, int]]) -> None:
    """The other outlets a settle a day, as a daemon polling them all month; then the late outlets' month."""
    days: dict[object, list[Article]] = {}
    for article, outlet in stream:
        if outlet >= LATE_OUTLETS:
            days.setdefault(article.published.date(), []).append(article)
    for day in days.values():
        _settled(store, day)
    _settled(store, [article for article, outlet in reversed(stream) if outlet < LATE_OUTLETS])


@pytest.fixture(scope="module")
def late_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database that read the late outlets' month after the others' (``_with_a_late_feed``), built once."""
    path = tmp_path_factory.mktemp("late") / "late.db"
    with Store.open(path) as store:
        _with_a_late_feed(store, _stream())
    return path


@pytest.fixture
def late_store(late_built: Path, tmp_path: Path) -> Iterator[Store]:
    """A copy of ``late_built`` of the test's own."""
    shutil.copyfile(late_built, tmp_path / "m.db")
    with Store.open(tmp_path / "m.db") as store:
        yield store


def _snapshot(store: Store) -> str:
    """Every row the clusterer and its stories are made of, as one digest."""
    digest = hashlib.sha256()
    for sql in ("SELECT id, cluster_id, duplicate_of, cluster_score, cluster_terms, split_from, merged_from "
                "FROM articles ORDER BY id", "SELECT * FROM clusters ORDER BY id",
                "SELECT * FROM cluster_docs ORDER BY article_id", "SELECT * FROM cluster_states ORDER BY cluster_id",
                "SELECT * FROM cluster_keys ORDER BY key, day, cluster_id"):
        for row in store.db.execute(sql):
            digest.update(repr(row).encode())
    return digest.hexdigest()


def test_recluster_gives_the_stories_of_one_settle_of_everything(late_store: Store, tmp_path: Path) -> None:
    """A feed whose month is read after the others' is placed after the stories they built; placed again, the
    store holds what one settle of everything, as stored, gives; a second recluster changes nothing."""
    stream, late = _stream(), late_store
    with Store.open(tmp_path / "at-once.db") as at_once:
        # The same articles stored in the same order (the same ids), then placed in one settle.
        _settled(at_once, [a for a, outlet in stream if outlet >= LATE_OUTLETS]
                 + [a for a, outlet in reversed(stream) if outlet < LATE_OUTLETS])
        assert stories_by_url(late) != stories_by_url(at_once)
        done = recluster(late, ClusterParams())
        assert stories_by_url(late) == stories_by_url(at_once)
        assert done.articles == len(stream) and done.stories_after == len(stories_by_url(late))
        again = recluster(late, ClusterParams())
        assert stories_by_url(late) == stories_by_url(at_once)
        assert again.kept_numbers == again.stories_after == again.stories_before


@dataclass(frozen=True)
class HalfLate:
    """A database whose late outlets brought only the second half of the month (from ``since``)."""

    path: Path
    since: datetime
    stream: list[tuple[Article, int]]


@pytest.fixture(scope="module")
def half_late(tmp_path_factory: pytest.TempPathFactory) -> HalfLate:
    stream = _stream()
    middle = stream[len(stream) // 2][0].published
    late = [(a, o if a.published >= middle else LATE_OUTLETS) for a, o in stream]
    path = tmp_path_factory.mktemp("half") / "half.db"
    with Store.open(path) as store:
        _with_a_late_feed(store, late)
    return HalfLate(path, min(a.published for a, o in late if o < LATE_OUTLETS), late)


def test_placing_again_from_a_date_leaves_earlier_articles_and_gives_the_stories_of_placing_all_again(
        half_late: HalfLate, tmp_path: Path) -> None:
    """The late outlets bring only the second half of the month: placed again from their oldest report, the
    articles before it stay where they are (unless reading them again moves them, as any settle may), and
    the stories are those of placing every article again."""
    late, since = half_late.stream, half_late.since
    found = []
    for name in ("since", "all"):
        shutil.copyfile(half_late.path, tmp_path / f"{name}.db")
        with Store.open(tmp_path / f"{name}.db") as store:
            before = dict(store.db.execute("SELECT id, cluster_id FROM articles WHERE published < ?",
                                           [since.isoformat()]).fetchall())
            done = recluster(store, ClusterParams(), since=since if name == "since" else None)
            if name == "since":
                assert done.articles == sum(a.published >= since for a, _ in late)
                after = store.db.execute("SELECT id, cluster_id, split_from IS NOT NULL OR merged_from IS NOT NULL "
                                         "FROM articles WHERE published < ?", [since.isoformat()]).fetchall()
                assert all(cluster == before[a] or moved for a, cluster, moved in after)
                assert sum(cluster == before[a] for a, cluster, _ in after) >= 0.9 * len(after)
            found.append(stories_by_url(store))
    assert found[0] == found[1]


def test_placing_again_from_a_date_and_restarting_read_kept_state_and_decide_as_from_the_texts(
        half_late: HalfLate, tmp_path: Path) -> None:
    """Placing again from a date drops the centroids of the stories it takes articles from; the clusterer that
    places them again, and every start-up after, assembles those stories from the kept states of the docs
    they hold, without reading a text. Two runs: one with every text kept, one with the texts before the date
    emptied (retention) before placing again, and all of them before a restart: the same stories, the same
    scores, and the next reports (copies among them) placed alike. Stricter settings, from two days into the
    late feed's weeks, leave held articles in stories no article placed again rejoins."""
    params, since = ClusterParams(threshold=0.5, join_decision="threshold"), half_late.since + timedelta(days=2)
    last = half_late.stream[-1][0].published
    following = [Article(url=f"https://next.example/{it.key}", title=it.title, text=it.text, source="next.example",
                         published=last + timedelta(hours=n), fetched_at=last + timedelta(hours=n),
                         extraction="text-file") for n, it in enumerate(load_ecb(DEFAULT_DATA, [9, 17]))]
    runs = []
    for restart in (False, True):
        shutil.copyfile(half_late.path, tmp_path / f"{restart}.db")
        with Store.open(tmp_path / f"{restart}.db") as store:
            if restart:
                store.db.execute("UPDATE articles SET text = NULL WHERE published < ?", [since.isoformat()])
            clusterer = recluster(store, params, since=since).clusterer
            if restart:
                assert store.db.execute(  # held articles in stories without a kept state
                    "SELECT COUNT(*) FROM cluster_docs d JOIN articles a ON a.id = d.article_id "
                    "WHERE a.cluster_id NOT IN (SELECT cluster_id FROM cluster_states)").fetchone()[0]
                store.db.execute("UPDATE articles SET text = NULL")
                clusterer = build_clusterer(store, params)
            for article in following:
                store_article(store, article)
            list(settle(store, clusterer, {}, keywords=()))
            runs.append(decisions(store))
    assert len({cluster for _, cluster, _, _ in runs[0][-len(following):]}) > 1
    assert sum(copy is not None for _, _, copy, _ in runs[0][-len(following):]) >= 5
    assert runs[1] == runs[0]


def test_old_story_numbers_lead_to_their_stories_and_keep_their_alerts(late_store: Store) -> None:
    """Every number that was a story still leads to a live story holding most of its articles, and an alert
    sent under it counts for that story (it is announced again only when it grows)."""
    store = late_store
    was_in = dict(store.db.execute("SELECT id, cluster_id FROM articles").fetchall())
    before = sorted(set(was_in.values()))
    store.record_alerts([{"rule": "watch", "cluster_id": c, "step": 0, "sources_at_alert": 1,
                          "created": now_iso()} for c in before], watermark=None)
    recluster(store, ClusterParams(threshold=0.3, join_decision="threshold"))  # other settings, other stories
    merged = dict(store.db.execute("SELECT id, merged_into FROM clusters WHERE merged_into IS NOT NULL"))
    now_in = dict(store.db.execute("SELECT id, cluster_id FROM articles").fetchall())
    assert set(now_in.values()) != set(before)
    for old in before:
        live = old
        while live in merged:
            live = merged[live]
        assert live in now_in.values()
        held = [now_in[a] for a, c in was_in.items() if c == old]
        if old not in now_in.values():  # a number no story has now: it points at the biggest successor
            assert held.count(live) == max(held.count(s) for s in set(held))
        assert ("watch", live) in store.latest_alert_steps([live])


def test_an_interrupted_recluster_leaves_everything_as_it_was(late_store: Store) -> None:
    """Ctrl-C (or a crash) half-way: the stories, the articles' places and the clusterer's memory are those
    from before, and the next pass places a new article against them."""
    store = late_store
    before, placings = _snapshot(store), 0

    def interrupt() -> None:
        nonlocal placings
        placings += 1
        if placings == 60:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        recluster(store, ClusterParams(), on_placed=interrupt)
    assert _snapshot(store) == before
    article = _stream()[0][0]
    _settled(store, [replace(article, url=article.url + "-again", text=article.text + " Updated.")])
    assert store.db.execute("SELECT COUNT(*) FROM articles WHERE cluster_id IS NULL").fetchone()[0] == 0


def test_articles_whose_text_was_dropped_stay_where_they_were(late_store: Store) -> None:
    """Retention emptied their text: they cannot be read again, so they keep their stories."""
    stream, store = _stream(), late_store
    store.db.execute("UPDATE articles SET text = NULL WHERE id <= 20")
    old = dict(store.db.execute("SELECT id, cluster_id FROM articles WHERE id <= 20").fetchall())
    done = recluster(store, ClusterParams(threshold=0.3, join_decision="threshold"))
    assert dict(store.db.execute("SELECT id, cluster_id FROM articles WHERE id <= 20").fetchall()) == old
    assert done.articles == len(stream) - 20


def test_the_command_refuses_while_the_daemon_runs_and_reports_what_it_did(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    db = tmp_path / "monitor.db"
    with Store.open(db) as store:
        _settled(store, [article for article, _ in _stream()[:40]])
    with InstanceLock(db):  # this test process plays the running daemon
        refused = CliRunner().invoke(cli, ["--config", str(config), "recluster"])
    assert refused.exit_code == 1 and "another newsmonitor is already running" in refused.output
    done = CliRunner().invoke(cli, ["--config", str(config), "recluster"])
    assert done.exit_code == 0, done.output
    assert "placed 40 articles again:" in done.output and "kept their number" in done.output


def _harbour(prefix: str, days: range) -> list[Entry]:
    """Reports of one story a day apart (``days`` ago), newest first as a feed lists them."""
    return [Entry(f"{prefix}{n}", f"Harbour crane report {n}", story("harbour crane", n), recent(n, hours=24))
            for n in days]


@pytest.mark.parametrize("replace_late", [3, 0])
def test_a_feed_added_with_older_reports_of_a_story_places_the_story_again(tmp_path: Path,
                                                                             replace_late: int) -> None:
    """A pass polls one feed; the next brings a feed added since, whose reports of the same story are older.
    With ``cluster.replace_late`` at 3 the four late reports make the writer place the story again: it is
    numbered after its earliest report, as a first poll of both feeds would number it, and the number it
    had leads there. At 0 they join the story as they come, which keeps the number of its first report read."""
    with FeedServer() as server:
        server.feed("/a.xml", _harbour("a", range(0, 4)))
        server.feed("/b.xml", _harbour("b", range(4, 8)))
        feeds = [{"url": server.url("/a.xml")}]
        one_pass(helper_config(tmp_path, feeds, cluster={"replace_late": replace_late}))
        [first] = query(tmp_path / "monitor.db", "SELECT id FROM articles WHERE url LIKE '%/a3'")
        one_pass(helper_config(tmp_path, [*feeds, {"url": server.url("/b.xml")}],
                               cluster={"replace_late": replace_late}))
    rows = query(tmp_path / "monitor.db", "SELECT url, id, cluster_id FROM articles")
    assert len(rows) == 8 and len({r["cluster_id"] for r in rows}) == 1
    [earliest] = [r["id"] for r in rows if r["url"].endswith("/b7")]
    [story_now] = {r["cluster_id"] for r in rows}
    if replace_late:
        assert story_now == earliest
        [old] = query(tmp_path / "monitor.db", "SELECT merged_into FROM clusters WHERE id = ?", (first["id"],))
        assert old["merged_into"] == earliest
    else:
        assert story_now == first["id"]


def test_late_articles_wait_for_the_polls_in_flight_to_be_placed_again_once(tmp_path: Path) -> None:
    """A settle forced while a feed is still being read (``schedule.settle_every``) leaves late articles
    waiting, so the weeks are placed again once, with every feed of an import, not at each settle."""
    gate = threading.Event()
    with FeedServer() as server:
        server.feed("/a.xml", _harbour("a", range(0, 4)))
        server.feed("/b.xml", _harbour("b", range(4, 8)))
        server.feed("/c.xml", [Entry("c0", "Quarry blast", story("quarry blast", 0), recent(200, hours=24))])
        feed_c = server.route_for("/c.xml")
        server.set("/c.xml", lambda request: gate.wait(30) and feed_c(request))
        feeds = [{"url": server.url(f"/{name}.xml")} for name in "abc"]
        one_pass(helper_config(tmp_path, feeds[:1], cluster={"replace_late": 3}))
        settings = load_settings(helper_config(tmp_path, feeds, cluster={"replace_late": 3},
                                               fetch={"timeout": 30, "per_host": 4}))
        with open_runtime(settings) as runtime, Engine(runtime) as engine:
            runtime.store.sync_feeds(settings.feeds)
            try:
                for feed, state in feed_states(runtime.store, settings.feeds):
                    engine.poll(feed, state)  # a: nothing new (304)
                late = {f"b{n}" for n in range(4, 8)}
                assert write_until(engine, lambda: late <= set(_urls(settings.database)))
                assert engine.busy() and engine.settle() == 0 and engine.place_ready() == 0
                assert {_urls(settings.database)[s] for s in late} == {None}
            finally:
                gate.set()
            engine.drain()
            engine.end_pass("pass")
    placed = _urls(settings.database)
    assert None not in placed.values() and placed["a0"] == placed["b7"] != placed["c0"]
    assert placed["a0"] == query(settings.database, "SELECT id FROM articles WHERE url LIKE '%/b7'")[0]["id"]


def _urls(db: Path) -> dict[str, int | None]:
    return {r["url"].rsplit("/", 1)[-1]: r["cluster_id"] for r in query(db, "SELECT url, cluster_id FROM articles")}


def _crane(n: int, published: datetime, fetched: datetime) -> Article:
    """Report ``n`` of one story, from an outlet of its own."""
    return Article(url=f"https://{n}.example/{n}", title=f"Harbour crane report {n}", text=story("crane", n),
                   source=f"{n}.example", published=published, fetched_at=fetched, extraction="text-file")


def test_a_feed_whose_clock_runs_ahead_does_not_make_the_others_late(tmp_path: Path) -> None:
    """A report dated 20 hours ahead is kept at that date (up to a day after its fetch is a clock's error,
    not a lie); today's reports of the other feeds, six hours old, are not late for it."""
    now = datetime.now(UTC).replace(microsecond=0)
    report = partial(_crane, fetched=now)
    with Store.open(tmp_path / "m.db") as store:
        clusterer = build_clusterer(store, ClusterParams())
        for article in (report(0, now - timedelta(hours=30)), report(1, now + timedelta(hours=20))):
            store_article(store, article)
        list(settle(store, clusterer, {}, keywords=()))
        for n in range(2, 30):
            store_article(store, report(n, now - timedelta(hours=6)))
        assert late_articles(store, clusterer)[0] == 0
        store_article(store, report(30, now - timedelta(hours=26)))
        assert late_articles(store, clusterer)[0] == 1


def test_late_articles_place_again_at_most_the_newest_replace_late_max_articles(tmp_path: Path) -> None:
    """Placing again holds the writer for about 8 ms an article: a busy store's month would hold it for
    minutes. From the oldest late article, but no more than ``replace_late_max`` placed ones (the newest);
    none at all when those are all within a day of the newest, where no late article is."""
    now = datetime.now(UTC).replace(microsecond=0)
    report = partial(_crane, fetched=now)
    with Store.open(tmp_path / "m.db") as store:
        clusterer = build_clusterer(store, ClusterParams())
        placed = [now - timedelta(hours=6 * n) for n in range(40)]  # ten days, newest first
        for n, when in enumerate(placed):
            store_article(store, report(n, when))
        list(settle(store, clusterer, {}, keywords=()))
        for n in range(40, 60):
            store_article(store, report(n, now - timedelta(days=8, hours=n - 40)))
        oldest_late = now - timedelta(days=8, hours=19)
        assert late_since(store, clusterer, ClusterParams()) == oldest_late
        assert late_since(store, clusterer, ClusterParams(replace_late_max=10)) == placed[10] + timedelta(seconds=1)
        assert readable_articles(store, placed[10] + timedelta(seconds=1)) == 10
        assert late_since(store, clusterer, ClusterParams(replace_late_max=3)) is None  # the newest 3: 12 hours
        assert late_since(store, clusterer, ClusterParams(replace_late=21)) is None


def test_a_story_numbered_after_an_article_placed_again_is_placed_again_whole(tmp_path: Path) -> None:
    """A story is numbered after the article that opened it. Placed again from a date under stricter settings,
    that article opens a story of its own again, under its number: the earlier report that had joined it is
    placed again too (it opens its own), rather than kept in a story the opener then re-enters undecided."""
    day = datetime(2026, 11, 10, 12, tzinfo=UTC)
    opener = _article(1, "Storm floods the harbour district",
                      "A storm flooded the harbour district on Tuesday; the port authority closed three piers and "
                      "the ferries stopped. Harbour pilots said water stood a metre deep on the quays.", day)
    earlier = _article(2, "Harbour ferries cancelled",
                       "Ferries from the harbour were cancelled for a second day as the port authority inspected "
                       "the piers. Commuters crowded the bus station instead.", day - timedelta(days=5))
    loose = ClusterParams(join_decision="threshold", threshold=0.01, split_ratio=0, time_penalty=0)
    strict = loose.model_copy(update={"threshold": 0.99})
    with Store.open(tmp_path / "s.db") as store:
        for article in (opener, earlier):  # the earlier report arrives late, and joins the opener's story
            clusterer = build_clusterer(store, loose)
            store_article(store, article)
            list(settle(store, clusterer, {}, keywords=()))
        ids = {url: a for a, url in store.db.execute("SELECT id, url FROM articles")}
        first, late = ids[opener.url], ids[earlier.url]
        assert {c for (c,) in store.db.execute("SELECT cluster_id FROM articles")} == {first}
        assert readable_articles(store, day - timedelta(days=1)) == 2
        done = recluster(store, strict, since=day - timedelta(days=1))
        now_in = dict(store.db.execute("SELECT id, cluster_id FROM articles").fetchall())
        assert done.articles == 2 and now_in == {first: first, late: late}
        assert build_clusterer(store, strict).cluster_of(late) == late  # and the memory agrees
