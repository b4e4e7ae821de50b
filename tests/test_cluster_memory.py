"""The store is the clusterer's memory: start-up reads it back, late reports find stories
that left memory, and a failed transaction never leaves memory ahead of the store."""

from __future__ import annotations

import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.cluster import Clusterer, ClusterParams, Doc
from monitor.cluster.memory import day_of
from monitor.ingest import Stored, build_clusterer, ingest_article, store_article
from monitor.models import Article
from monitor.pipeline import apply_retention, settle
from monitor.settings import ScheduleSettings
from monitor.store import Store
from monitor.store_memory import StoredMemory
from tests.test_cluster_stream import SPREAD, _stream

SMALL = ClusterParams(hot_docs=6, window_days=3)


def _article(doc: Doc) -> Article:
    return Article(url=f"https://{doc.source}/{doc.id}", title=doc.title, text=doc.text, source=doc.source,
                   published=doc.published, fetched_at=doc.published, extraction="text-file")


def _ingest(store: Store, clusterer: Clusterer, docs: list[Doc]) -> list[int]:
    out = []
    for doc in docs:
        result = ingest_article(store, clusterer, _article(doc))
        assert isinstance(result, Stored)
        out.append(result.article_id)
    return out


def _clusters(store: Store) -> list[tuple[int, int]]:
    return [(r["id"], r["cluster_id"]) for r in store.db.query("SELECT id, cluster_id FROM articles ORDER BY id")]


def decisions(store: Store) -> list[tuple[int, int, int | None, float | None]]:
    """Each article's cluster, the copy it duplicates, and its score: what a decision left."""
    return [tuple(r) for r in store.db.execute(
        "SELECT id, cluster_id, duplicate_of, cluster_score FROM articles ORDER BY id")]


def test_a_restart_reads_kept_state_not_texts_and_decides_as_if_never_stopped(tmp_path: Path) -> None:
    """Two runs over the same stream: one without stopping, one restarted half-way after
    every stored text was emptied (retention).  The restarted clusterer cannot read a
    text, so it works from the kept state, and places every later article the same."""
    docs = [doc for _, doc in _stream(SPREAD)]
    half = len(docs) // 2
    with Store.open(tmp_path / "straight.db") as store:
        clusterer = build_clusterer(store, SMALL)
        _ingest(store, clusterer, docs)
        straight = decisions(store)
        kept = {row[0] for row in store.db.execute("SELECT article_id FROM cluster_docs")}
    # Only what memory holds keeps its state in the store: the rest is never read again.
    assert kept == {a for a, *_ in straight if clusterer.cluster_of(a) is not None}
    assert len(kept) < len(docs)
    with Store.open(tmp_path / "restarted.db") as store:
        _ingest(store, build_clusterer(store, SMALL), docs[:half])
        store.db.execute("UPDATE articles SET text = NULL")
        _ingest(store, build_clusterer(store, SMALL), docs[half:])
        assert decisions(store) == straight


def test_a_late_report_finds_its_story_in_the_store_after_it_left_memory(tmp_path: Path) -> None:
    """The quake story left memory weeks of news ago; a quake report dated then, arriving
    now, joins it through the stored index.  Without the store it starts a story of its own."""
    stream = _stream({"quake": 25, "strike": 18, "flood": 11, "vote": 4, "launch": 0})
    late = next(doc for event, doc in stream if event == "quake")
    rest = [doc for _, doc in stream if doc is not late]
    with Store.open(tmp_path / "m.db") as store:
        clusterer = build_clusterer(store, SMALL)
        ids = dict(zip([d.id for d in rest], _ingest(store, clusterer, rest), strict=True))
        cluster_of = dict(_clusters(store))
        quake = {cluster_of[ids[d.id]] for e, d in stream if e == "quake" and d is not late}
        assert len(quake) == 1
        assert clusterer.cluster_of(ids[rest[0].id]) is None  # left memory
        (late_id,) = _ingest(store, clusterer, [late])
        assert dict(_clusters(store))[late_id] in quake
    alone = Clusterer(SMALL)
    for doc in rest:
        alone.add(doc, alone.decide(doc))
    assert alone.decide(late).is_new_cluster


def test_forgetting_before_a_date_drops_old_stories_and_keeps_what_memory_holds(tmp_path: Path) -> None:
    """Retention's side of the memory: index rows and states of stories before the cut go,
    so the late quake report starts a story of its own; the stories the clusterer holds
    keep their states, and a restart decides as before."""
    stream = _stream({"quake": 25, "strike": 18, "flood": 11, "vote": 4, "launch": 0})
    late = next(doc for event, doc in stream if event == "quake")
    rest = [doc for _, doc in stream if doc is not late]
    cut = max(d.published for e, d in stream if e == "quake") + timedelta(days=1)
    with Store.open(tmp_path / "m.db") as store:
        clusterer = build_clusterer(store, SMALL)
        ids = _ingest(store, clusterer, rest)
        held = {clusterer.cluster_of(i) for i in ids} - {None}
        with store.transaction():
            keys, states = StoredMemory(store).forget_before(cut.timestamp())
        assert keys > 0 and states > 0
        assert store.db.execute("SELECT MIN(day) FROM cluster_keys").fetchone()[0] >= day_of(cut.timestamp())
        kept = {r[0] for r in store.db.execute("SELECT cluster_id FROM cluster_states")}
        assert held <= kept
        restarted = build_clusterer(store, SMALL)
        assert restarted.decide(late) == clusterer.decide(late)
        (late_id,) = _ingest(store, restarted, [late])
        assert dict(_clusters(store))[late_id] == late_id  # a story of its own


def test_the_store_tells_which_cluster_numbers_hold_articles(tmp_path: Path) -> None:
    """What a split asks before naming its new part (``Reviser._free_id``): a number some article is in is
    taken, whether or not the clusterer holds that story; a story merged away leaves its number free."""
    stream = _stream({"quake": 25, "vote": 4})
    with Store.open(tmp_path / "m.db") as store:
        ids = _ingest(store, build_clusterer(store, SMALL), [doc for _, doc in stream])
        stories = {cluster for _, cluster in _clusters(store)}
        assert len(stories) == 2
        memory = StoredMemory(store)
        assert memory.clusters_in_use([*ids, 10_000]) == stories
        gone, into = sorted(stories)
        with store.transaction():
            store.merge_cluster(gone, into)
        assert memory.clusters_in_use(ids) == {into}


def test_retention_forgets_the_memory_of_stories_older_than_it(tmp_path: Path) -> None:
    stream = _stream({"quake": 25, "strike": 18, "launch": 0})
    with Store.open(tmp_path / "m.db") as store:
        ids = _ingest(store, build_clusterer(store, SMALL), [doc for _, doc in stream])
        apply_retention(store, ScheduleSettings(retention_days=20))
        days = [r[0] for r in store.db.execute("SELECT DISTINCT day FROM cluster_keys")]
        cut = day_of((datetime.now(UTC) - timedelta(days=20)).timestamp())
        assert days and min(days) >= cut  # the quake's days went, the strike's and launch's stayed
        quake = {cluster for (e, _), (_, cluster) in zip(stream, _clusters(store), strict=True) if e == "quake"}
        assert len(ids) == len(stream) and len(quake) == 1
        assert not quake & {r[0] for r in store.db.execute("SELECT cluster_id FROM cluster_states")}


def test_a_transaction_that_fails_after_the_clusterer_learned_leaves_memory_as_the_store(tmp_path: Path) -> None:
    """SQLite refuses to keep the fourth article's state (a trigger raising, as a full disk
    would): its placing is rolled back and the article stays stored without a cluster, the
    clusterer forgets and reads back the store, the next settle places the article, and the
    stream then ends exactly as it does when nothing failed."""
    docs = [doc for _, doc in _stream(SPREAD)][:12]
    with Store.open(tmp_path / "straight.db") as store:
        _ingest(store, build_clusterer(store, SMALL), docs)
        straight = decisions(store)
    with Store.open(tmp_path / "failing.db") as store:
        clusterer = build_clusterer(store, SMALL)
        _ingest(store, clusterer, docs[:3])
        store.db.execute("CREATE TRIGGER full_disk BEFORE INSERT ON cluster_docs "
                         "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        with pytest.raises(sqlite3.DatabaseError):
            ingest_article(store, clusterer, _article(docs[3]))
        assert store.count("articles") == 4 and len(store.unplaced_articles()) == 1
        store.db.execute("DROP TRIGGER full_disk")
        assert len(list(settle(store, clusterer, {}, keywords=()))) == 1
        _ingest(store, clusterer, docs[4:])
        assert decisions(store) == straight


def test_articles_placed_in_one_transaction_are_rolled_back_and_forgotten_together(tmp_path: Path) -> None:
    """A settle places up to 8 articles in one transaction: when the third fails, the two placed
    before it are rolled back with it, the clusterer forgets all three, and the next settle places
    them as if nothing had failed."""
    docs = [doc for _, doc in _stream(SPREAD)][:8]
    with Store.open(tmp_path / "straight.db") as store:
        clusterer = build_clusterer(store, SMALL)
        _ingest(store, clusterer, docs[:5])
        for doc in docs[5:]:
            store_article(store, _article(doc))
        assert len(list(settle(store, clusterer, {}, keywords=()))) >= 3
        straight = decisions(store)
    with Store.open(tmp_path / "failing.db") as store:
        clusterer = build_clusterer(store, SMALL)
        _ingest(store, clusterer, docs[:5])
        for doc in docs[5:]:
            store_article(store, _article(doc))
        ids = store.unplaced_articles()  # in the order they are placed
        store.db.execute(f"CREATE TRIGGER full_disk BEFORE INSERT ON cluster_docs WHEN NEW.article_id = {ids[2]} "
                         "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        with pytest.raises(sqlite3.DatabaseError):
            list(settle(store, clusterer, {}, keywords=()))
        assert store.unplaced_articles() == ids  # none of the three kept its cluster
        assert all(clusterer.cluster_of(article_id) is None for article_id in ids)  # nor does memory
        store.db.execute("DROP TRIGGER full_disk")
        assert len(list(settle(store, clusterer, {}, keywords=()))) >= 3
        assert decisions(store) == straight


def test_a_pass_that_stores_nothing_never_reads_the_memory(tmp_path: Path) -> None:
    """Start-up costs nothing until an article needs placing: an idle pass, or one where
    every entry is already stored, never reads the kept state back."""
    docs = [doc for _, doc in _stream(SPREAD)][:5]
    with Store.open(tmp_path / "m.db") as store:
        _ingest(store, build_clusterer(store, SMALL), docs)
        restarted = build_clusterer(store, SMALL)
        for doc in docs:
            assert not isinstance(ingest_article(store, restarted, _article(doc)), Stored)
        assert restarted.live_docs == 0
        assert restarted.cluster_of(len(docs)) is not None  # read back on first need
        assert restarted.live_docs == len(docs)


def test_dates_only_in_memory_are_the_window_and_latest_arrivals(tmp_path: Path) -> None:
    """Start-up reads back what memory held: the last hot_docs arrivals and the docs
    dated within the window of the newest, no more."""
    stream = [doc for _, doc in _stream(SPREAD)][::-1]
    with Store.open(tmp_path / "m.db") as store:
        live = build_clusterer(store, SMALL)
        ids = _ingest(store, live, stream)  # article ids, in arrival order
        restarted = build_clusterer(store, SMALL)
        newest = max(d.published for d in stream)
        held = {a for a in ids if restarted.cluster_of(a) is not None}
        expected = set(ids[-SMALL.hot_docs:]) | {
            a for a, d in zip(ids, stream, strict=True) if d.published >= newest - timedelta(days=SMALL.window_days)}
        assert held == expected == {a for a in ids if live.cluster_of(a) is not None}


def test_articles_stored_before_states_were_kept_are_read_again_from_their_text(tmp_path: Path) -> None:
    """A database written by an earlier version has articles but no kept states: start-up
    reads those articles' texts again, and a new report still joins its story."""
    stream = _stream({"quake": 3, "vote": 1})
    first = [doc for _, doc in stream[:-1]]
    with Store.open(tmp_path / "m.db") as store:
        ids = _ingest(store, Clusterer(SMALL), first)  # no memory: nothing kept, as before migration 7
        assert store.db.execute("SELECT COUNT(*) FROM cluster_docs").fetchone()[0] == 0
        event, last = stream[-1]
        (last_id,) = _ingest(store, build_clusterer(store, SMALL), [last])
        cluster_of = dict(_clusters(store))
        same = {cluster_of[a] for a, (e, _) in zip(ids, stream, strict=False) if e == event}
        assert cluster_of[last_id] in same


def test_a_wire_copy_after_a_restart_is_still_marked_a_copy(tmp_path: Path) -> None:
    """The near-duplicate index is read back too: a syndicated copy arriving after a restart
    is linked to its first copy, as it is when nothing stopped."""
    _, original = _stream({"quake": 1})[0]
    copy = Doc(2, f"UPDATE: {original.title}", original.text + " Additional reporting by our desk.",
               original.published, "copy.example")
    with Store.open(tmp_path / "m.db") as store:
        (first,) = _ingest(store, build_clusterer(store, SMALL), [original])
        (second,) = _ingest(store, build_clusterer(store, SMALL), [copy])
        duplicate_of = store.db.execute("SELECT duplicate_of FROM articles WHERE id = ?", [second]).fetchone()[0]
    assert duplicate_of == first


def _dated_ecb_day_batches() -> list[Article]:
    """ECB+ topics 19-25 (ten wire copies among them) dated over a month, in daily batches,
    each outlet's reports newest first: what a daemon polling once a day stores."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.cluster_eval import DEFAULT_DATA, load_ecb
    from bench.stream_site import plan_reports

    if not (DEFAULT_DATA / "ecb-plus" / "ECB+").is_dir():
        pytest.skip(f"ECB+ data not present under {DEFAULT_DATA}")
    reports = plan_reports(load_ecb(DEFAULT_DATA, [19, 20, 21, 22, 23, 24, 25]), outlets=10, days=30, seed=0)
    reports.sort(key=lambda r: (r.published.date(), r.outlet, -r.published.timestamp()))
    return [Article(url=f"https://o{r.outlet}.example{r.path}", title=r.item.title, text=r.item.text,
                    source=f"o{r.outlet}.example", published=r.published, fetched_at=r.published,
                    extraction="text-file") for r in reports]


def test_a_daemon_restarted_every_day_decides_as_one_that_never_stopped(tmp_path: Path) -> None:
    """Real reports, with copies among them: restarting before each day's batch (start-up
    reads the kept state back) changes no cluster, no copy link and no score."""
    articles = _dated_ecb_day_batches()
    runs = []
    for restart in (False, True):
        with Store.open(tmp_path / f"restart-{restart}.db") as store:
            clusterer, day = build_clusterer(store, ClusterParams()), None
            for article in articles:
                if restart and article.published.date() != day:
                    clusterer, day = build_clusterer(store, ClusterParams()), article.published.date()
                ingest_article(store, clusterer, article)
            runs.append(decisions(store))
    assert sum(row[2] is not None for row in runs[0]) >= 5  # copies were linked
    assert runs[1] == runs[0]


def test_when_some_kept_states_are_missing_every_recalled_doc_comes_with_its_text(tmp_path: Path) -> None:
    """Start-up reads every doc again from its text when a doc's state is missing (articles stored by an
    earlier version): a doc read without its text would be read again as empty."""
    docs = [doc for _, doc in _stream(SPREAD)][:12]
    with Store.open(tmp_path / "m.db") as store:
        _ingest(store, build_clusterer(store, SMALL), docs)
        memory = StoredMemory(store)
        assert all(r.state is not None and r.doc.text == "" for r in memory.recall(SMALL.hot_docs, 3).docs)
        store.db.execute("DELETE FROM cluster_docs WHERE article_id = (SELECT MIN(article_id) FROM cluster_docs)")
        recalled = memory.recall(SMALL.hot_docs, 3).docs
        texts = dict(store.db.execute("SELECT id, text FROM articles").fetchall())
        assert any(r.state is not None for r in recalled)
        assert all(r.doc.text == texts[r.doc.id] != "" for r in recalled)


def test_a_story_whose_kept_state_was_dropped_is_assembled_from_its_docs_without_their_texts(
        tmp_path: Path) -> None:
    """``monitor.recluster`` drops the centroid of a story it takes articles from: start-up builds that story
    again from the kept states of its docs in memory, reads no text (all emptied here), and places every
    later article as a clusterer that never stopped."""
    docs = [doc for _, doc in _stream(SPREAD)]
    half = 17  # three events, and two reports of the fourth of six, before the restart
    with Store.open(tmp_path / "straight.db") as store:
        _ingest(store, build_clusterer(store, ClusterParams()), docs)
        straight = decisions(store)
    with Store.open(tmp_path / "dropped.db") as store:
        _ingest(store, build_clusterer(store, ClusterParams()), docs[:half])
        # The stories that later articles join, the one with most articles already first.
        joined = Counter(cluster for _, cluster, *_ in straight[half:])
        early = Counter(cluster for _, cluster, *_ in straight[:half] if cluster in joined)
        [(story, _)] = early.most_common(1)
        assert store.db.execute("DELETE FROM cluster_states WHERE cluster_id = ?", [story]).rowcount == 1
        store.db.execute("UPDATE articles SET text = NULL")
        _ingest(store, build_clusterer(store, ClusterParams()), docs[half:])
        assert decisions(store) == straight
